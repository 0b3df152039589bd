//! The connection API on the driver: [`SocketsHandle`], what the binding's
//! `NetworkingSockets` holds. One driver task per instance serves every socket it opens: one
//! per listen socket, one (opened on the first connect) for the connections it dials, two per
//! socket pair, and one for P2P connections once P2P is switched on ([`P2pLayer`] in front of
//! it: `connect_p2p`, `create_listen_socket_p2p`).

use std::net::SocketAddr;
use std::sync::Arc;

use netcore::config::Config;
use netcore::crypto::session_setup::LocalSecurity;
use netcore::eresult::{send_flags, EResult};
use netcore::identity::Identity;
use netcore::p2p::layer::{LayerEvent, P2pLayer};
use netcore::sockets::{
    ConnInfo, ConnOptions, ConnectP2pError, HConn, HListen, HPollGroup, Received, Sockets,
    SocketsEvent,
};
use netcore::time::Timestamp;
use tokio::sync::oneshot;

use crate::driver::{BindError, Driver, EventSink, Secrets};
use crate::p2p::{transport_config, P2pError, P2pOptions};
use crate::protocol::Protocol;

impl Protocol for Sockets {
    fn set_config(&mut self, now: Timestamp, config: Config) {
        Sockets::set_config(self, now, config);
    }

    fn is_settled(&self) -> bool {
        Sockets::is_settled(self)
    }

    fn receive_paused(&self) -> bool {
        Sockets::receive_paused(self)
    }

    fn close_all(&mut self) {
        Sockets::close_all(self);
    }
}

/// One message of a [`SocketsHandle::send_batch`].
pub struct OutgoingToConnection<'a> {
    /// The connection.
    pub conn: HConn,
    /// The payload (copied only if the message is accepted).
    pub data: &'a [u8],
    /// Steam send flags.
    pub flags: u32,
    /// The lane.
    pub lane: u16,
}

/// Send flags that ask for no wait: what is due leaves from the caller's thread.
const NOW: u32 = send_flags::NO_NAGLE | send_flags::NO_DELAY | send_flags::USE_CURRENT_THREAD;

/// The application's handle on a running connection-API instance.
pub struct SocketsHandle {
    driver: Driver<P2pLayer<Sockets>>,
}

impl SocketsHandle {
    /// Starts an instance (no socket yet) whose connections use `config` and `security`.
    pub fn start(
        config: Config,
        security: LocalSecurity,
        sink: Arc<dyn EventSink<LayerEvent<SocketsEvent>>>,
    ) -> Result<Self, BindError> {
        let make = |_: Secrets| P2pLayer::new(Sockets::new(config, security));
        let driver = Driver::start(None, make, sink)?;
        Ok(SocketsHandle { driver })
    }

    /// The driver, for an application thread that reads the sockets itself
    /// (`caller_receive.rs`).
    pub fn driver(&self) -> &Driver<P2pLayer<Sockets>> {
        &self.driver
    }

    /// Opens a listen socket on `bind` whose connections use `config`; its handle and the
    /// address bound.
    pub fn create_listen_socket(
        &self,
        bind: &str,
        config: Config,
    ) -> Result<(HListen, SocketAddr), BindError> {
        let mut handle = 0;
        let (_, addr) = self.driver.add_port(bind, |s, port, secrets| {
            handle = s.add_listen_port(port, secrets.secret, secrets.unix_at_epoch, config);
        })?;
        Ok((handle, addr))
    }

    /// Closes a listen socket and the connections accepted through it; false if `h` is none.
    pub fn close_listen_socket(&self, h: HListen) -> bool {
        let (port, _) = self.driver.with(|s, _| s.close_listen_socket(h));
        match port {
            // The P2P port serves every P2P listen socket and connection: it stays.
            Some(port) if Some(port) == self.driver.read(|s| s.p2p_port()) => true,
            Some(port) => {
                self.driver.remove_port(port);
                true
            }
            None => false,
        }
    }

    /// The address listen socket `h` is bound to.
    pub fn listen_address(&self, h: HListen) -> Option<SocketAddr> {
        let port = self.driver.read(|s| s.listen_port(h))?;
        self.driver.local_addr(port)
    }

    /// Opens the socket dialled connections leave from, if it is not open yet: `[::]:0`
    /// (IPv4 and IPv6) where the OS allows it, else `0.0.0.0:0`.
    fn ensure_client_port(&self) -> Result<(), BindError> {
        if self.driver.read(|s| s.client_port().is_some()) {
            return Ok(());
        }
        let add = |bind: &str| {
            self.driver.add_port(bind, |s, port, secrets| {
                if s.client_port().is_none() {
                    s.add_client_port(port, secrets.secret, secrets.unix_at_epoch);
                }
            })
        };
        add("[::]:0").or_else(|_| add("0.0.0.0:0")).map(|_| ())
    }

    /// Dials `remote` (Steam's `ConnectByIPAddress`); `None` if the connection table is full.
    pub fn connect(
        &self,
        remote: SocketAddr,
        options: ConnOptions,
    ) -> Result<Option<HConn>, BindError> {
        self.ensure_client_port()?;
        // The core keeps IPv4 peers as IPv4 addresses; a dual-stack socket reaches them at
        // their mapped address (io.rs maps on send, and received addresses are normalized).
        let remote = netcore::identity::normalize(remote);
        let (h, _) = self.driver.with(|s, now| s.connect(now, remote, options));
        // The handshake's first datagram goes out on the driver.
        self.driver.wake();
        Ok(h)
    }

    /// Accepts a waiting incoming connection.
    pub fn accept(&self, h: HConn) -> EResult {
        let (r, _) = self.driver.with(|s, now| s.accept(now, h));
        if r == EResult::Ok {
            // Our ConnectOK goes out from this thread: no hand-off on the handshake's path.
            self.driver.transmit_here();
        }
        r
    }

    /// Closes a connection (see [`Sockets::close_connection`]).
    pub fn close_connection(&self, h: HConn, reason: i32, debug: &str, linger: bool) -> bool {
        let (closed, _) = self
            .driver
            .with(|s, now| s.close_connection(now, h, reason, debug, linger));
        // The goodbye (or the linger) is the driver's to run.
        self.driver.wake();
        closed
    }

    /// Queues a message on a connection: its message number, or why not.
    pub fn send(&self, h: HConn, data: &[u8], flags: u32, lane: u16) -> Result<u64, EResult> {
        let mut out = Err(EResult::Fail);
        self.send_batch(
            std::iter::once(OutgoingToConnection {
                conn: h,
                data,
                flags,
                lane,
            }),
            |r| out = r,
        );
        out
    }

    /// Queues many messages under one lock and one wake-up (Steam's `SendMessages`);
    /// `on_result` gets one result per message, in order.
    pub fn send_batch<'a>(
        &self,
        messages: impl Iterator<Item = OutgoingToConnection<'a>>,
        mut on_result: impl FnMut(Result<u64, EResult>),
    ) {
        let (urgent, wake) = self.driver.with(|s, now| {
            let mut urgent = false;
            for m in messages {
                let r = s.send(now, m.conn, m.data, m.flags, m.lane);
                urgent |= r.is_ok() && m.flags & NOW != 0;
                on_result(r);
            }
            urgent
        });
        if urgent {
            self.driver.transmit_here();
        } else if wake {
            self.driver.wake();
        }
    }

    /// Sends what Nagle holds on a connection, from this thread.
    pub fn flush(&self, h: HConn) -> EResult {
        let (r, _) = self.driver.with(|s, now| s.flush(now, h));
        if r == EResult::Ok {
            self.driver.transmit_here();
        }
        r
    }

    /// Takes up to `max` messages from a connection, with how many still wait there;
    /// `None` for a bad handle.
    pub fn receive(&self, h: HConn, max: usize) -> Option<(Vec<Received>, usize)> {
        let (r, wake) = self
            .driver
            .with(|s, _| s.receive(h, max).map(|m| (m, s.waiting(h))));
        // Reading may lift a receive pause or a connection's back-pressure: the driver acts
        // on it now rather than at its next timer.
        if wake {
            self.driver.wake();
        }
        r
    }

    /// Takes up to `max` messages from a poll group, with how many still wait there;
    /// `None` for a bad handle.
    pub fn receive_on_poll_group(
        &self,
        g: HPollGroup,
        max: usize,
    ) -> Option<(Vec<Received>, usize)> {
        let (r, wake) = self.driver.with(|s, _| {
            s.receive_on_poll_group(g, max)
                .map(|m| (m, s.waiting_on_poll_group(g)))
        });
        if wake {
            self.driver.wake();
        }
        r
    }

    /// Runs `f` on the instance's state (status calls, user data, names, lanes, groups).
    pub fn with<R>(&self, f: impl FnOnce(&mut Sockets, Timestamp) -> R) -> R {
        let (r, wake) = self.driver.with(|s, now| f(s.inner_mut(), now));
        if wake {
            self.driver.wake();
        }
        r
    }

    /// A connection's status snapshot (for a P2P connection, its path's address and flags).
    pub fn info(&self, h: HConn) -> Option<ConnInfo> {
        self.driver.read(|s| s.info(h))
    }

    /// Makes a connected pair of connections over two loopback sockets (Steam's
    /// `CreateSocketPair`).
    pub fn create_socket_pair(&self) -> Result<Option<(HConn, HConn)>, BindError> {
        let (mut pa, mut pb) = (None, None);
        let (_, addr_a) = self
            .driver
            .add_port("127.0.0.1:0", |_, port, s| pa = Some((port, s)))?;
        let (_, addr_b) = self
            .driver
            .add_port("127.0.0.1:0", |_, port, s| pb = Some((port, s)))?;
        let (Some((a, sa)), Some((b, sb))) = (pa, pb) else {
            return Ok(None);
        };
        let (pair, _) = self.driver.with(|s, now| {
            s.create_socket_pair(
                now,
                a,
                addr_a,
                sa.secret,
                b,
                addr_b,
                sb.secret,
                sa.unix_at_epoch,
            )
        });
        self.driver.wake();
        Ok(pair)
    }

    /// The configuration in force for new connections.
    pub fn config(&self) -> Config {
        self.driver.read(|s| s.inner().config().clone())
    }

    /// Applies validated configuration changes; nothing changes on error.
    pub fn set_config(
        &self,
        changes: &[(String, f64)],
    ) -> Result<(), netcore::config::ConfigError> {
        self.driver.set_config(changes)
    }

    /// The current time on the instance's clock (for message timestamps).
    pub fn now(&self) -> Timestamp {
        self.driver.now()
    }

    /// Stops the instance: lingers (at most [`crate::CLOSE_LINGER`]) for reliable data, then
    /// closes every connection politely and frees the sockets.
    pub fn close(&self) -> Option<oneshot::Receiver<()>> {
        self.driver.close()
    }

    /// Switches P2P on: opens the P2P socket (`[::]:0`, else `0.0.0.0:0`) with the P2P
    /// transport in front of it; gathering starts now. Its address.
    pub fn enable_p2p(&self, options: P2pOptions) -> Result<SocketAddr, P2pError> {
        if self.driver.read(|s| s.is_enabled()) {
            return Err(P2pError::AlreadyEnabled);
        }
        let add = |bind: &str| {
            self.driver.add_port(bind, |s, port, secrets| {
                s.add_p2p_port(port, secrets.secret, secrets.unix_at_epoch);
            })
        };
        let (port, local) = add("[::]:0").or_else(|_| add("0.0.0.0:0"))?;
        let ice_enable = i32::try_from(self.config().p2p_transport_ice_enable).unwrap_or(0);
        let cfg = transport_config(options, local, ice_enable)?;
        self.driver.with(|s, now| s.enable(now, port, cfg));
        // The first STUN and TURN requests are the driver's to send.
        self.driver.wake();
        Ok(local)
    }

    /// A rendezvous blob the signaling service delivered from `from`.
    pub fn receive_signal(&self, from: &Identity, data: &[u8]) {
        self.driver.with(|s, now| s.receive_signal(now, from, data));
        self.driver.wake();
    }

    /// The signaling service could not deliver a blob to `to`.
    pub fn signal_undeliverable(&self, to: &Identity, reason: &str, detail: &str) {
        self.driver
            .with(|s, now| s.signal_undeliverable(now, to, reason, detail));
        self.driver.wake();
    }

    /// Dials `peer` at virtual port `vport` through P2P (Steam's `ConnectP2P`).
    pub fn connect_p2p(
        &self,
        peer: &Identity,
        vport: u32,
        options: ConnOptions,
    ) -> Result<HConn, ConnectP2pError> {
        let (r, _) = self
            .driver
            .with(|s, now| s.connect_p2p(now, peer, vport, options));
        // The rendezvous' first signal and the handshake's first datagram are the driver's.
        self.driver.wake();
        r
    }

    /// A P2P listen socket on virtual port `vport` (Steam's `CreateListenSocketP2P`):
    /// `InvalidState` without P2P, `InvalidParam` when the port is taken.
    pub fn create_listen_socket_p2p(&self, vport: u32, config: Config) -> Result<HListen, EResult> {
        self.driver
            .with(|s, _| s.inner_mut().create_listen_socket_p2p(vport, config))
            .0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::stall_runtime;
    use netcore::connection::ConnectionState;
    use netcore::crypto::identity_key::IdentityKey;
    use std::time::{Duration, Instant};

    struct Discard;
    impl EventSink<LayerEvent<SocketsEvent>> for Discard {
        fn queue(&self, _: Vec<LayerEvent<SocketsEvent>>) {}
        fn wake(&self) {}
    }

    #[test]
    fn a_burst_past_a_connections_receive_limit_waits_in_the_kernel() {
        const BURST: u8 = 60;
        let config = Config {
            recv_buffer_messages: 10,
            ..Config::default()
        };
        let security = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[9; 32]));
        let inst = SocketsHandle::start(config, security, Arc::new(Discard)).expect("start");
        let (a, b) = inst.create_socket_pair().expect("bind").expect("pair");
        let start = Instant::now();
        while [a, b]
            .iter()
            .any(|&h| inst.info(h).map(|i| i.state) != Some(ConnectionState::Connected))
        {
            assert!(start.elapsed() < Duration::from_secs(5), "pair connects");
            std::thread::sleep(Duration::from_millis(1));
        }
        // While the I/O thread cannot run, A's NoNagle sends leave from this thread and pile
        // up in B's kernel buffer: six times B's limit arrives at once.
        stall_runtime(Duration::from_millis(300));
        for i in 0..BURST {
            assert!(inst.send(a, &[i], send_flags::NO_NAGLE, 0).is_ok());
        }
        let mut seq = Vec::new();
        let start = Instant::now();
        while seq.len() < usize::from(BURST) && start.elapsed() < Duration::from_secs(5) {
            let (msgs, _) = inst.receive(b, 100).expect("connection b");
            if msgs.is_empty() {
                std::thread::yield_now();
            }
            seq.extend(msgs.iter().map(|m| m.data[0]));
        }
        // Without the receive pause B decoded whole batches into its 10-message backlog and
        // dropped the rest. A pause can time out (5 ms) on a machine that keeps this reader
        // off the CPU, so the bound leaves room for that.
        assert!(seq.len() >= 45, "{} of {BURST} arrived: {seq:?}", seq.len());
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "in order, once each: {seq:?}"
        );
    }
}
