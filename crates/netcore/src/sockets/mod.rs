//! Steam's connection-oriented API (ISteamNetworkingSockets) over endpoints: listen sockets,
//! connections named by integer handles, per-connection receive queues, poll groups, lane
//! configuration, user data and names, and the status-change events Steam posts.
//!
//! Sans-IO like the rest of the core. An instance owns several endpoints, one per UDP socket
//! (*port*, numbered by the driver): one per listen socket, whose new connections wait for
//! the application's accept ([`IncomingPolicy::Hold`]), and one for the connections it dials.
//! Messages travel with the raw framing: the application names the lane and the payload goes
//! as it is, so a stock GameNetworkingSockets program talks to it with no header of ours.
//!
//! Handles are Steam's: nonzero integers, never reused by one instance (a counter), cheap to
//! pass. A handle the application closed is just invalid.

mod p2p;
mod poll_groups;
mod queue;

use std::collections::VecDeque;
use std::net::SocketAddr;

use crate::config::{Config, MAX_MESSAGE_SIZE};
use crate::connection::{
    Connection, ConnectionConfig, ConnectionState, Framing, SendError, MAX_LANES,
};
use crate::crypto::session_setup::LocalSecurity;
use crate::end_reason::{End, EndReason};
use crate::endpoint::Map;
use crate::endpoint::{
    ConnectionEvent, ConnectionHandle, Endpoint, EndpointSetup, EndpointStats, IncomingPolicy,
};
use crate::eresult::{send_flags, EResult};
use crate::identity::Identity;
use crate::receive_pause::ReceivePause;
use crate::time::Timestamp;
pub use p2p::ConnectP2pError;
use poll_groups::PollGroups;
pub use queue::Received;
use queue::RecvQueue;

/// Steam's `HSteamNetConnection`: 0 is invalid.
pub type HConn = u32;
/// Steam's `HSteamListenSocket`: 0 is invalid.
pub type HListen = u32;
/// Steam's `HSteamNetPollGroup`: 0 is invalid.
pub type HPollGroup = u32;

/// Steam's `k_nSteamNetworkingConnectionInfoFlags_*` values in [`ConnInfo::flags`].
pub mod info_flags {
    /// The connection is not authenticated (the peer proved no identity).
    pub const UNAUTHENTICATED: i32 = 1;
    /// The connection is not encrypted (never: we always encrypt).
    pub const UNENCRYPTED: i32 = 2;
    /// Through a loopback socket pair ([`super::Sockets`] never uses in-process pipes).
    pub const LOOPBACK_BUFFERS: i32 = 4;
    /// A direct path on a LAN (P2P).
    pub const FAST: i32 = 8;
    /// Through a relay.
    pub const RELAYED: i32 = 16;
    /// Over the IPv4/IPv6 protocol (not P2P signaling).
    pub const DUALSTACK: i32 = 32;
}

/// A connection's status snapshot (Steam's `SteamNetConnectionInfo_t`).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// Who the peer is (what it proved, or its address).
    pub identity_remote: Identity,
    /// The application's user data.
    pub user_data: i64,
    /// The listen socket it came through (0 for a connection we dialled).
    pub listen_socket: HListen,
    /// The peer's address.
    pub remote_address: SocketAddr,
    /// Steam's public state.
    pub state: ConnectionState,
    /// How it ended, once it has.
    pub end: Option<End>,
    /// The application's name for it.
    pub name: String,
    /// Steam's `ConnectionInfo` flags ([`info_flags`]).
    pub flags: i32,
}

/// Something the application should hear about.
#[derive(Clone, Debug)]
pub enum SocketsEvent {
    /// Steam's `SteamNetConnectionStatusChangedCallback_t`.
    StatusChanged {
        /// The connection.
        conn: HConn,
        /// Its state and details now.
        info: ConnInfo,
        /// The state it left.
        old: ConnectionState,
    },
    /// Messages wait on a connection whose queue was empty (posted once per such change).
    Messages {
        /// The connection.
        conn: HConn,
        /// Its poll group, 0 if none.
        poll_group: HPollGroup,
    },
}

/// Options of a connect or listen call (Steam's per-connection config values).
#[derive(Clone, Debug, Default)]
pub struct ConnOptions {
    /// Settings for the connection (the instance's where `None`).
    pub config: Option<Config>,
    /// `k_ESteamNetworkingConfig_ConnectionUserData`.
    pub user_data: Option<i64>,
    /// `k_ESteamNetworkingConfig_SymmetricConnect`: a connect to a peer that connects to us
    /// at the same time makes one connection, not two.
    pub symmetric: bool,
}

struct Port {
    endpoint: Endpoint,
    /// The listen socket served here (none: the port for outgoing connections).
    listen: Option<HListen>,
    /// Its listen socket was closed: the port goes once its goodbyes are sent.
    closing: bool,
}

struct ConnEntry {
    port: usize,
    conn: ConnectionHandle,
    listen: HListen,
    user_data: i64,
    name: String,
    poll_group: HPollGroup,
    /// The state the application was last told of.
    reported: ConnectionState,
    /// Lanes configured (1 until `configure_lanes`).
    lanes: usize,
    queue: RecvQueue,
}

struct ListenEntry {
    port: usize,
    config: Config,
    /// The virtual port of a P2P listen socket (`create_listen_socket_p2p`).
    vport: Option<u32>,
}

/// A connection the application closed with linger: it keeps flushing reliable data until
/// acknowledged or `deadline`, then says goodbye.
struct Lingering {
    port: usize,
    conn: ConnectionHandle,
    reason: EndReason,
    debug: String,
    deadline: Timestamp,
}

/// The connection API's state for one instance.
pub struct Sockets {
    config: Config,
    security: LocalSecurity,
    ports: Vec<Option<Port>>,
    /// The port outgoing connections leave from, once opened.
    client_port: Option<usize>,
    conns: Map<HConn, ConnEntry>,
    by_conn: Map<(usize, ConnectionHandle), HConn>,
    listen: Map<HListen, ListenEntry>,
    groups: PollGroups,
    lingering: Vec<Lingering>,
    next_handle: u32,
    next_seq: u64,
    events: VecDeque<SocketsEvent>,
    scratch: Vec<crate::connection::InMessage>,
    /// P2P connections (`p2p.rs`).
    p2p: p2p::P2pState,
    /// The latest `now` seen (a P2P connection taken in an event gets its listen socket's
    /// config with it).
    latest: Timestamp,
    /// Reading paused while a connection's full backlog drains (`crate::receive_pause`).
    pause: ReceivePause<HConn>,
}

/// Longest a lingering close waits for its reliable data to be acknowledged: the connected
/// timeout.
fn linger_limit(c: &Config) -> std::time::Duration {
    std::time::Duration::from_millis(u64::try_from(c.timeout_connected).unwrap_or(10_000))
}

impl Sockets {
    /// An instance with `config` for its connections and `security` for every port.
    pub fn new(config: Config, security: LocalSecurity) -> Self {
        Sockets {
            config,
            security,
            ports: Vec::new(),
            client_port: None,
            conns: Map::default(),
            by_conn: Map::default(),
            listen: Map::default(),
            groups: PollGroups::default(),
            lingering: Vec::new(),
            next_handle: 0,
            next_seq: 0,
            events: VecDeque::new(),
            scratch: Vec::new(),
            p2p: p2p::P2pState::default(),
            latest: Timestamp::ZERO,
            pause: ReceivePause::default(),
        }
    }

    /// The configuration in force for new connections.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the configuration; it applies to existing connections too.
    pub fn set_config(&mut self, now: Timestamp, config: Config) {
        let cfg = ConnectionConfig::from_config(&config, Framing::Raw);
        for p in self.ports.iter_mut().flatten() {
            if p.listen.is_none() {
                p.endpoint.set_config(now, cfg);
            }
        }
        self.config = config;
    }

    fn handle(&mut self) -> u32 {
        // Never 0; a wrap after 4 billion handles skips the ones still in use.
        loop {
            self.next_handle = self.next_handle.wrapping_add(1);
            let h = self.next_handle;
            if h != 0
                && !self.conns.contains_key(&h)
                && !self.listen.contains_key(&h)
                && !self.groups.contains(h)
            {
                return h;
            }
        }
    }

    fn endpoint_setup(&self, secret: [u8; 32], unix_at_epoch: u64) -> EndpointSetup {
        EndpointSetup {
            secret,
            security: self.security.clone(),
            unix_at_epoch,
        }
    }

    fn put_port(&mut self, port: usize, p: Port) {
        if self.ports.len() <= port {
            self.ports.resize_with(port + 1, || None);
        }
        if let Some(slot) = self.ports.get_mut(port) {
            *slot = Some(p);
        }
    }

    /// Puts an endpoint with the instance's config and `policy` for new peers on `port`
    /// (no listen socket of its own).
    fn open_port(
        &mut self,
        port: usize,
        secret: [u8; 32],
        unix_at_epoch: u64,
        policy: IncomingPolicy,
    ) {
        let mut endpoint = Endpoint::new(
            ConnectionConfig::from_config(&self.config, Framing::Raw),
            self.endpoint_setup(secret, unix_at_epoch),
        );
        endpoint.set_incoming(policy);
        self.put_port(
            port,
            Port {
                endpoint,
                listen: None,
                closing: false,
            },
        );
    }

    /// Takes the driver's `port` as the one outgoing connections leave from.
    pub fn add_client_port(&mut self, port: usize, secret: [u8; 32], unix_at_epoch: u64) {
        // Peers reach our dialled connections only; a symmetric connect meets a peer's
        // request through the simultaneous-open rule.
        self.open_port(port, secret, unix_at_epoch, IncomingPolicy::Refuse);
        self.client_port = Some(port);
    }

    /// The port outgoing connections leave from, if opened.
    pub fn client_port(&self) -> Option<usize> {
        self.client_port
    }

    /// Makes the driver's `port` a listen socket with `config` for its connections.
    pub fn add_listen_port(
        &mut self,
        port: usize,
        secret: [u8; 32],
        unix_at_epoch: u64,
        config: Config,
    ) -> HListen {
        let h = self.handle();
        let mut endpoint = Endpoint::new(
            ConnectionConfig::from_config(&config, Framing::Raw),
            self.endpoint_setup(secret, unix_at_epoch),
        );
        endpoint.set_incoming(IncomingPolicy::Hold);
        self.put_port(
            port,
            Port {
                endpoint,
                listen: Some(h),
                closing: false,
            },
        );
        self.listen.insert(
            h,
            ListenEntry {
                port,
                config,
                vport: None,
            },
        );
        h
    }

    /// Makes the driver's ports `a` (at `addr_a`) and `b` (at `addr_b`) a connected pair
    /// (Steam's `CreateSocketPair`): `a` dials `b`, `b` answers at once, and the handshake
    /// runs here, in memory, so both handles are connected on return; their traffic then
    /// goes over the ports' sockets. `None` if the handshake did not complete.
    #[allow(clippy::too_many_arguments)]
    pub fn create_socket_pair(
        &mut self,
        now: Timestamp,
        a: usize,
        addr_a: SocketAddr,
        secret_a: [u8; 32],
        b: usize,
        addr_b: SocketAddr,
        secret_b: [u8; 32],
        unix_at_epoch: u64,
    ) -> Option<(HConn, HConn)> {
        let cfg = ConnectionConfig::from_config(&self.config, Framing::Raw);
        let mut ea = Endpoint::new(cfg, self.endpoint_setup(secret_a, unix_at_epoch));
        ea.set_incoming(IncomingPolicy::Refuse);
        let eb = Endpoint::new(cfg, self.endpoint_setup(secret_b, unix_at_epoch));
        let ca = ea.connect(now, addr_b, None, false)?;
        self.put_port(
            a,
            Port {
                endpoint: ea,
                listen: None,
                closing: false,
            },
        );
        self.put_port(
            b,
            Port {
                endpoint: eb,
                listen: None,
                closing: false,
            },
        );
        let ha = self.handle();
        self.insert_entry(ha, a, ca, 0, -1);
        let mut cb = None;
        for _ in 0..8 {
            for (from, to, from_addr) in [(a, b, addr_a), (b, a, addr_b)] {
                let mut flight = Vec::new();
                if let Some(p) = self.port_mut(from) {
                    p.endpoint
                        .poll_transmit(now, &mut Vec::new(), |_, d| flight.push(d.to_vec()));
                }
                let mut msgs = Vec::new();
                for d in flight {
                    if let Some(p) = self.port_mut(to) {
                        let got = p.endpoint.handle_datagram(now, from_addr, &d, &mut msgs);
                        if to == b && cb.is_none() {
                            cb = got;
                        }
                    }
                }
            }
        }
        let hb = self.handle();
        self.insert_entry(hb, b, cb?, 0, -1);
        self.collect(a);
        self.collect(b);
        let up = |s: &Self, h| s.connection(h).is_some_and(|(_, c)| c.is_connected());
        (up(self, ha) && up(self, hb)).then_some((ha, hb))
    }

    /// The port of listen socket `h`.
    pub fn listen_port(&self, h: HListen) -> Option<usize> {
        self.listen.get(&h).map(|l| l.port)
    }

    /// Closes listen socket `h` and every connection accepted through it (Steam's
    /// `CloseListenSocket`); returns its port for the driver to close, `None` if `h` is no
    /// listen socket. Each connection's peer is told; the application hears nothing more of
    /// them.
    pub fn close_listen_socket(&mut self, h: HListen) -> Option<usize> {
        let l = self.listen.remove(&h)?;
        let handles: Vec<HConn> = self
            .conns
            .iter()
            .filter(|(_, c)| c.listen == h)
            .map(|(&k, _)| k)
            .collect();
        for c in handles {
            self.drop_entry(c, EndReason::App(1000), "listen socket closed", false);
        }
        if let Some(v) = l.vport {
            // The P2P port serves other listen sockets and dialled connections: it stays.
            self.p2p.forget_listen(h, v);
            return Some(l.port);
        }
        if let Some(p) = self.port_mut(l.port) {
            p.closing = true;
            p.endpoint.set_incoming(IncomingPolicy::Refuse);
        }
        Some(l.port)
    }

    fn port_mut(&mut self, port: usize) -> Option<&mut Port> {
        self.ports.get_mut(port).and_then(Option::as_mut)
    }

    /// Dials `remote` from the client port (which the caller opened: `None` otherwise, or
    /// when the table is full).
    pub fn connect(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        options: ConnOptions,
    ) -> Option<HConn> {
        let port = self.client_port?;
        self.dial(now, port, remote, None, options)
    }

    /// Dials `remote` from `port` (expecting `expected` to prove its identity, if given)
    /// with `options`; the new handle.
    fn dial(
        &mut self,
        now: Timestamp,
        port: usize,
        remote: SocketAddr,
        expected: Option<Identity>,
        options: ConnOptions,
    ) -> Option<HConn> {
        let cfg = options
            .config
            .as_ref()
            .map(|c| ConnectionConfig::from_config(c, Framing::Raw));
        let p = self.port_mut(port)?;
        let conn = p
            .endpoint
            .connect(now, remote, expected, options.symmetric)?;
        if let Some(cfg) = cfg {
            if let Some(c) = p.endpoint.connection_mut(conn) {
                c.set_config(now, cfg);
            }
        }
        let h = self.handle();
        self.insert_entry(h, port, conn, 0, options.user_data.unwrap_or(-1));
        // The dial's own None -> Connecting change is reported through the endpoint's event.
        Some(h)
    }

    fn insert_entry(
        &mut self,
        h: HConn,
        port: usize,
        conn: ConnectionHandle,
        listen: HListen,
        user_data: i64,
    ) {
        self.by_conn.insert((port, conn), h);
        self.conns.insert(
            h,
            ConnEntry {
                port,
                conn,
                listen,
                user_data,
                name: String::new(),
                poll_group: 0,
                reported: ConnectionState::None,
                lanes: 1,
                queue: RecvQueue::default(),
            },
        );
    }

    fn connection(&self, h: HConn) -> Option<(&ConnEntry, &Connection)> {
        let e = self.conns.get(&h)?;
        let c = self
            .ports
            .get(e.port)?
            .as_ref()?
            .endpoint
            .connection(e.conn)?;
        Some((e, c))
    }

    fn connection_mut(&mut self, h: HConn) -> Option<&mut Connection> {
        let e = self.conns.get(&h)?;
        let (port, conn) = (e.port, e.conn);
        self.ports
            .get_mut(port)?
            .as_mut()?
            .endpoint
            .connection_mut(conn)
    }

    /// Accepts an incoming connection waiting in `Connecting` (Steam's `AcceptConnection`):
    /// `InvalidParam` for a bad handle, `InvalidState` if it is not waiting.
    pub fn accept(&mut self, now: Timestamp, h: HConn) -> EResult {
        let Some(e) = self.conns.get(&h) else {
            return EResult::InvalidParam;
        };
        if e.listen == 0 {
            return EResult::InvalidParam;
        }
        let (port, conn) = (e.port, e.conn);
        let Some(p) = self.port_mut(port) else {
            return EResult::InvalidParam;
        };
        if !p.endpoint.accept(now, conn) {
            return EResult::InvalidState;
        }
        self.collect(port);
        EResult::Ok
    }

    /// Closes connection `h` (Steam's `CloseConnection`): the peer is told `reason` (an
    /// application code, 1000..=2999, or 0 for the generic one) and `debug`; with `linger`,
    /// reliable data still queued is delivered first (within `timeoutConnected`). The
    /// handle is invalid afterwards. False for a bad handle or reason.
    pub fn close_connection(
        &mut self,
        now: Timestamp,
        h: HConn,
        reason: i32,
        debug: &str,
        linger: bool,
    ) -> bool {
        if !self.conns.contains_key(&h) {
            return false;
        }
        let reason = match reason {
            0 => EndReason::App(1000),
            r if EndReason::is_application(r) => EndReason::from_code(r),
            _ => return false,
        };
        let pending = self.connection(h).is_some_and(|(_, c)| {
            !c.is_dead() && (c.queued_bytes() > 0 || c.unacked_reliable_bytes() > 0)
        });
        if linger && pending {
            if let Some(e) = self.conns.get(&h) {
                self.lingering.push(Lingering {
                    port: e.port,
                    conn: e.conn,
                    reason,
                    debug: debug.to_owned(),
                    deadline: now + linger_limit(&self.config),
                });
            }
            self.drop_entry(h, reason, debug, true);
        } else {
            self.drop_entry(h, reason, debug, false);
        }
        true
    }

    /// Forgets entry `h`, posting its change to `None`. Unless `keep` (a linger), its
    /// connection is closed with `reason` and forgotten too.
    fn drop_entry(&mut self, h: HConn, reason: EndReason, debug: &str, keep: bool) {
        let Some(e) = self.conns.remove(&h) else {
            return;
        };
        self.by_conn.remove(&(e.port, e.conn));
        self.groups.forget_conn(h);
        self.pause.on_read(&h, None, (0, 0));
        let info = self
            .ports
            .get(e.port)
            .and_then(Option::as_ref)
            .and_then(|p| {
                p.endpoint
                    .connection(e.conn)
                    .map(|c| info_of(&e, c, ConnectionState::None))
            });
        if !keep {
            if let Some(p) = self.port_mut(e.port) {
                p.endpoint.close(e.conn, reason, debug);
            }
        }
        if let Some(info) = info {
            if e.reported != ConnectionState::None {
                self.events.push_back(SocketsEvent::StatusChanged {
                    conn: h,
                    info,
                    old: e.reported,
                });
            }
        }
    }

    /// Queues a message on connection `h` (Steam's `SendMessageToConnection`): its message
    /// number on the lane, or `InvalidParam` (bad handle, lane, size or flags),
    /// `NoConnection` (ended), `InvalidState` (not yet connected and `NoDelay`),
    /// `LimitExceeded` (send buffer full), `Ignored` (`NoDelay` and it cannot go now).
    pub fn send(
        &mut self,
        now: Timestamp,
        h: HConn,
        data: &[u8],
        flags: u32,
        lane: u16,
    ) -> Result<u64, EResult> {
        if data.len() > MAX_MESSAGE_SIZE || flags & !send_flags::ALL != 0 {
            return Err(EResult::InvalidParam);
        }
        let Some(e) = self.conns.get(&h) else {
            return Err(EResult::InvalidParam);
        };
        if usize::from(lane) >= e.lanes {
            return Err(EResult::InvalidParam);
        }
        let mtu = usize::try_from(self.config.mtu_packet_size).unwrap_or(1300);
        let Some(c) = self.connection_mut(h) else {
            return Err(EResult::NoConnection);
        };
        if c.is_dead() {
            return Err(EResult::NoConnection);
        }
        if flags & send_flags::NO_DELAY != 0 && (!c.is_connected() || c.queued_bytes() > mtu) {
            return Err(EResult::Ignored);
        }
        let reliable = flags & send_flags::RELIABLE != 0;
        let no_nagle = flags & send_flags::NO_NAGLE != 0;
        c.send(now, i32::from(lane), reliable, no_nagle, data)
            .map_err(|e| match e {
                SendError::BufferFull => EResult::LimitExceeded,
                SendError::Closed => EResult::NoConnection,
            })
    }

    /// Sends what Nagle holds on `h` now.
    pub fn flush(&mut self, now: Timestamp, h: HConn) -> EResult {
        let known = self.conns.contains_key(&h);
        match self.connection_mut(h) {
            None if known => EResult::NoConnection,
            None => EResult::InvalidParam,
            Some(c) if c.is_dead() => EResult::NoConnection,
            Some(c) => {
                c.flush(now);
                EResult::Ok
            }
        }
    }

    /// Takes up to `max` messages waiting on connection `h`; `None` for a bad handle.
    pub fn receive(&mut self, h: HConn, max: usize) -> Option<Vec<Received>> {
        let e = self.conns.get_mut(&h)?;
        let out = e.queue.take(max);
        if let (Some(last), true) = (out.last(), e.poll_group != 0) {
            self.groups.taken_through(h, last.seq);
        }
        self.update_backpressure(h);
        Some(out)
    }

    /// Takes up to `max` messages waiting on poll group `g`, oldest first across its
    /// connections; `None` for a bad handle.
    pub fn receive_on_poll_group(&mut self, g: HPollGroup, max: usize) -> Option<Vec<Received>> {
        let conns = &mut self.conns;
        let out = self.groups.take(g, max, |h, seq| {
            conns.get_mut(&h).and_then(|e| e.queue.take_seq(seq))
        })?;
        let mut seen: Vec<HConn> = out.iter().map(|m| m.conn).collect();
        seen.dedup();
        for h in seen {
            self.update_backpressure(h);
        }
        Some(out)
    }

    /// How many messages wait on connection `h` (0 for a bad handle).
    pub fn waiting(&self, h: HConn) -> usize {
        self.conns.get(&h).map_or(0, |e| e.queue.len())
    }

    /// How many messages wait on poll group `g`'s connections (0 for a bad handle).
    pub fn waiting_on_poll_group(&self, g: HPollGroup) -> usize {
        self.groups.waiting(g)
    }

    fn update_backpressure(&mut self, h: HConn) {
        let max_msgs = usize::try_from(self.config.recv_buffer_messages).unwrap_or(usize::MAX);
        let max_bytes = usize::try_from(self.config.recv_buffer_size).unwrap_or(usize::MAX);
        let queue = self.conns.get(&h).map(|e| &e.queue);
        let blocked = queue.is_some_and(|q| q.at_limit(max_msgs, max_bytes));
        let backlog = queue.map(|q| (q.len(), q.bytes()));
        self.pause.on_read(&h, backlog, (max_msgs, max_bytes));
        if let Some(c) = self.connection_mut(h) {
            c.set_recv_blocked(blocked);
        }
    }

    /// A status snapshot of connection `h`.
    pub fn info(&self, h: HConn) -> Option<ConnInfo> {
        let (e, c) = self.connection(h)?;
        Some(info_of(e, c, c.state()))
    }

    /// Connection `h` itself, for status figures.
    pub fn connection_of(&self, h: HConn) -> Option<&Connection> {
        self.connection(h).map(|(_, c)| c)
    }

    /// Sets the user data of `h`; false for a bad handle.
    pub fn set_user_data(&mut self, h: HConn, data: i64) -> bool {
        self.conns.get_mut(&h).map(|e| e.user_data = data).is_some()
    }

    /// The user data of `h`, `-1` for a bad handle (as Steam).
    pub fn user_data(&self, h: HConn) -> i64 {
        self.conns.get(&h).map_or(-1, |e| e.user_data)
    }

    /// Sets the name of `h`; false for a bad handle.
    pub fn set_name(&mut self, h: HConn, name: &str) -> bool {
        self.conns
            .get_mut(&h)
            .map(|e| e.name = name.chars().take(127).collect())
            .is_some()
    }

    /// The name of `h`.
    pub fn name(&self, h: HConn) -> Option<&str> {
        self.conns.get(&h).map(|e| e.name.as_str())
    }

    /// Steam's `ConfigureConnectionLanes`: `priorities[i]` and `weights[i]` for lane `i`.
    /// `NoConnection` for a bad handle; `InvalidParam` for a lane count outside
    /// 1..=255, fewer lanes than before, mismatched lengths or a zero weight;
    /// `InvalidState` once the connection ended.
    pub fn configure_lanes(&mut self, h: HConn, priorities: &[i32], weights: &[u16]) -> EResult {
        let n = priorities.len();
        let Some(e) = self.conns.get(&h) else {
            return EResult::NoConnection;
        };
        if n == 0 || n > MAX_LANES || weights.len() != n || n < e.lanes || weights.contains(&0) {
            return EResult::InvalidParam;
        }
        let Some(c) = self.connection_mut(h) else {
            return EResult::NoConnection;
        };
        if c.is_dead() {
            return EResult::InvalidState;
        }
        c.configure_lanes(
            priorities
                .iter()
                .copied()
                .zip(weights.iter().copied())
                .collect(),
        );
        if let Some(e) = self.conns.get_mut(&h) {
            e.lanes = n;
        }
        EResult::Ok
    }

    /// A new poll group.
    pub fn create_poll_group(&mut self) -> HPollGroup {
        let g = self.handle();
        self.groups.create(g);
        g
    }

    /// Destroys poll group `g`: its connections leave it, their messages stay on them.
    pub fn destroy_poll_group(&mut self, g: HPollGroup) -> bool {
        if !self.groups.destroy(g) {
            return false;
        }
        for e in self.conns.values_mut().filter(|e| e.poll_group == g) {
            e.poll_group = 0;
        }
        true
    }

    /// Moves connection `h` into poll group `g` (0: out of any), with the messages already
    /// waiting on it. False for a bad connection or group handle.
    pub fn set_poll_group(&mut self, h: HConn, g: HPollGroup) -> bool {
        if g != 0 && !self.groups.contains(g) {
            return false;
        }
        let Some(e) = self.conns.get_mut(&h) else {
            return false;
        };
        if e.poll_group == g {
            return true;
        }
        self.groups.forget_conn(h);
        e.poll_group = g;
        if g != 0 {
            for seq in e.queue.seqs() {
                self.groups.push(g, h, seq);
            }
        }
        true
    }

    /// Handles a datagram on `port` from `from`.
    pub fn handle_datagram(&mut self, now: Timestamp, port: usize, from: SocketAddr, data: &[u8]) {
        self.latest = self.latest.max(now);
        let from = crate::identity::normalize(from);
        let mut msgs = std::mem::take(&mut self.scratch);
        msgs.clear();
        let taken = match self.port_mut(port) {
            Some(p) => p.endpoint.handle_datagram(now, from, data, &mut msgs),
            None => None,
        };
        self.collect(port);
        if let Some(conn) = taken {
            self.deliver(port, conn, now, &mut msgs);
        }
        self.scratch = msgs;
        if !self.lingering.is_empty() {
            // An ack may have settled a lingering close before its deadline.
            self.settle_lingering(now);
        }
    }

    fn deliver(
        &mut self,
        port: usize,
        conn: ConnectionHandle,
        now: Timestamp,
        msgs: &mut Vec<crate::connection::InMessage>,
    ) {
        let Some(&h) = self.by_conn.get(&(port, conn)) else {
            return;
        };
        let max_msgs = usize::try_from(self.config.recv_buffer_messages).unwrap_or(usize::MAX);
        let max_bytes = usize::try_from(self.config.recv_buffer_size).unwrap_or(usize::MAX);
        let peer = self
            .connection(h)
            .map(|(_, c)| c.peer().clone())
            .unwrap_or(Identity::Ip(SocketAddr::from(([0, 0, 0, 0], 0))));
        let Some(e) = self.conns.get_mut(&h) else {
            return;
        };
        let was_empty = e.queue.len() == 0;
        let was_full = e.queue.at_limit(max_msgs, max_bytes);
        for m in msgs.drain(..) {
            let over = e.queue.len() + 1 > max_msgs || e.queue.bytes() + m.data.len() > max_bytes;
            // Reliable data in an accepted packet is already acknowledged: kept past the
            // limit (by at most one packet's worth); back-pressure below stops more.
            if over && m.send_flags & send_flags::RELIABLE == 0 {
                continue;
            }
            self.next_seq += 1;
            let seq = self.next_seq;
            e.queue.push(Received {
                conn: h,
                user_data: e.user_data,
                lane: u16::try_from(m.channel).unwrap_or(0),
                number: m.number,
                flags: m.send_flags,
                received_at: now.max(m.received_at),
                peer: peer.clone(),
                data: m.data,
                seq,
            });
            if e.poll_group != 0 {
                self.groups.push(e.poll_group, h, seq);
            }
        }
        if was_empty && e.queue.len() > 0 {
            self.events.push_back(SocketsEvent::Messages {
                conn: h,
                poll_group: e.poll_group,
            });
        }
        if !was_full && e.queue.at_limit(max_msgs, max_bytes) {
            self.pause.on_full(now, &h);
        }
        self.update_backpressure(h);
    }

    /// Turns the endpoint's connection events on `port` into application events, and gives
    /// each new incoming connection its handle.
    fn collect(&mut self, port: usize) {
        loop {
            let Some(p) = self.port_mut(port) else {
                return;
            };
            let Some(ev) = p.endpoint.poll_event() else {
                return;
            };
            let listen = p.listen;
            self.on_connection_event(port, listen, ev);
        }
    }

    fn on_connection_event(&mut self, port: usize, listen: Option<HListen>, ev: ConnectionEvent) {
        let h = match self.by_conn.get(&(port, ev.conn)) {
            Some(&h) => h,
            None if Some(port) == self.p2p.port => {
                // A P2P connection, for the listen socket its rendezvous named.
                let Some(h) = self.take_p2p_incoming(port, ev.conn) else {
                    return;
                };
                h
            }
            None => {
                // A new incoming connection on a listen socket.
                let Some(l) = listen else {
                    return;
                };
                let h = self.handle();
                self.insert_entry(h, port, ev.conn, l, -1);
                h
            }
        };
        let Some((e, c)) = self.connection(h) else {
            return;
        };
        let new = c.state();
        let old = e.reported;
        if new == old {
            return;
        }
        let info = info_of(e, c, new);
        if let Some(e) = self.conns.get_mut(&h) {
            e.reported = new;
        }
        self.events
            .push_back(SocketsEvent::StatusChanged { conn: h, info, old });
    }

    /// Hands every datagram due now, on every port, to `send(port, to, bytes)`.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        send: &mut dyn FnMut(usize, SocketAddr, &[u8]),
    ) {
        for (i, slot) in self.ports.iter_mut().enumerate() {
            if let Some(p) = slot {
                p.endpoint.poll_transmit(now, buf, |to, d| send(i, to, d));
                if p.closing {
                    // Its goodbyes are out: the driver closes the socket after sending them.
                    *slot = None;
                }
            }
        }
    }

    /// The earliest deadline of any port or lingering close.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let ports = self
            .ports
            .iter()
            .flatten()
            .filter_map(|p| p.endpoint.poll_timeout());
        let linger = self.lingering.iter().map(|l| l.deadline);
        ports.chain(linger).chain(self.pause.deadline()).min()
    }

    /// Whether a connection's backlog just filled and the application is draining it: the
    /// driver should leave datagrams in the kernel's buffer until this turns false (at most
    /// [`crate::receive_pause::MAX_PAUSE`]).
    pub fn receive_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Runs every port's due timers, and ends lingering closes that are done or out of time.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.latest = self.latest.max(now);
        self.pause.on_timeout(now);
        self.prune_p2p(now);
        for i in 0..self.ports.len() {
            if let Some(p) = self.port_mut(i) {
                p.endpoint.handle_timeout(now);
            }
            self.collect(i);
        }
        self.settle_lingering(now);
    }

    fn settle_lingering(&mut self, now: Timestamp) {
        let mut i = 0;
        while i < self.lingering.len() {
            let l = &self.lingering[i];
            let done = self
                .ports
                .get(l.port)
                .and_then(Option::as_ref)
                .and_then(|p| p.endpoint.connection(l.conn))
                .is_none_or(|c| {
                    c.is_dead() || (c.queued_bytes() == 0 && c.unacked_reliable_bytes() == 0)
                });
            if done || now >= l.deadline {
                let l = self.lingering.swap_remove(i);
                if let Some(p) = self.port_mut(l.port) {
                    p.endpoint.close(l.conn, l.reason, &l.debug);
                }
            } else {
                i += 1;
            }
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<SocketsEvent> {
        self.events.pop_front()
    }

    /// Whether events wait.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether every connection has delivered its reliable data (the end of a linger).
    pub fn is_settled(&self) -> bool {
        self.lingering.is_empty()
            && self.ports.iter().flatten().all(|p| {
                p.endpoint.handles().all(|h| {
                    p.endpoint.connection(h).is_none_or(|c| {
                        c.is_dead() || (c.queued_bytes() == 0 && c.unacked_reliable_bytes() == 0)
                    })
                })
            })
    }

    /// Closes every connection politely (the instance is shutting down).
    pub fn close_all(&mut self) {
        let handles: Vec<HConn> = self.conns.keys().copied().collect();
        for h in handles {
            self.drop_entry(h, EndReason::App(1000), "closing", false);
        }
        for l in std::mem::take(&mut self.lingering) {
            if let Some(p) = self.port_mut(l.port) {
                p.endpoint.close(l.conn, l.reason, &l.debug);
            }
        }
    }

    /// Counters of every port's endpoint, summed.
    pub fn endpoint_stats(&self) -> EndpointStats {
        let mut total = EndpointStats::default();
        for p in self.ports.iter().flatten() {
            total.add(&p.endpoint.stats());
        }
        total
    }

    /// The handles of every connection the application holds.
    pub fn handles(&self) -> impl Iterator<Item = HConn> + '_ {
        self.conns.keys().copied()
    }

    /// The listen socket's config, for a listen socket's status.
    pub fn listen_config(&self, h: HListen) -> Option<&Config> {
        self.listen.get(&h).map(|l| &l.config)
    }
}

fn info_of(e: &ConnEntry, c: &Connection, state: ConnectionState) -> ConnInfo {
    let mut flags = 0;
    if matches!(c.peer(), Identity::Ip(_)) {
        flags |= info_flags::UNAUTHENTICATED;
    }
    ConnInfo {
        identity_remote: c.peer().clone(),
        user_data: e.user_data,
        listen_socket: e.listen,
        remote_address: c.remote(),
        state,
        end: c.end().cloned(),
        name: e.name.clone(),
        flags,
    }
}

#[cfg(test)]
mod tests;
