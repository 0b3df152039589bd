//! The connection API over P2P (Steam's `ConnectP2P` / `CreateListenSocketP2P`): the
//! [`Host`] hooks of [`Sockets`] behind the P2P layer (`crate::p2p::layer`).
//!
//! One port (the driver's socket with the P2P transport in front of it) carries every P2P
//! connection: those we dial to an identity and virtual port, and those peers open to one of
//! our P2P listen sockets. Its endpoint holds incoming connections for accept, as a listen
//! socket's does. Which listen socket a connection belongs to is settled at rendezvous: the
//! peer's connect request names the virtual port, [`Host::p2p_incoming`] refuses it (the peer
//! is told why) when nothing listens there, else remembers the session's virtual address for
//! that listen socket; the GNS handshake then arrives from that address. A handshake on the
//! P2P port from any other address (a peer dialling the socket directly) is refused.
//!
//! As for the messages model, status calls and events report the path's address and Steam's
//! `Relayed` / `Fast` flags instead of the virtual address.

use std::net::SocketAddr;

use super::{ConnInfo, ConnOptions, HConn, HListen, ListenEntry, Sockets, SocketsEvent};
use crate::config::Config;
use crate::connection::{ConnectionConfig, ConnectionState, Framing};
use crate::end_reason::{End, EndReason};
use crate::endpoint::{ConnectionHandle, IncomingPolicy, Map};
use crate::eresult::EResult;
use crate::identity::Identity;
use crate::p2p::layer::{Host, P2pLayer, PathView};
use crate::time::Timestamp;

/// How long a rendezvous' claim on a listen socket waits for the peer's handshake (or
/// outlives its connection, for a reconnect on the same session) before it is forgotten.
const CLAIM_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The P2P part of a [`Sockets`] instance.
#[derive(Default)]
pub(super) struct P2pState {
    /// The port P2P connections use, once P2P is on.
    pub(super) port: Option<usize>,
    /// P2P listen sockets by virtual port.
    listen: Map<u32, HListen>,
    /// Sessions peers opened to a listen socket: virtual address -> (listen socket, last
    /// time a connection was there or the claim was made).
    claims: Map<SocketAddr, (HListen, Timestamp)>,
}

impl P2pState {
    /// Listen socket `h` on virtual port `vport` is gone.
    pub(super) fn forget_listen(&mut self, h: HListen, vport: u32) {
        if self.listen.get(&vport) == Some(&h) {
            self.listen.remove(&vport);
        }
        self.claims.retain(|_, (l, _)| *l != h);
    }
}

impl Sockets {
    /// Takes the driver's `port` as the one P2P connections use (the P2P layer runs in front
    /// of it).
    pub fn add_p2p_port(&mut self, port: usize, secret: [u8; 32], unix_at_epoch: u64) {
        // Held for accept, as on a listen socket; `take_p2p_incoming` says which one.
        self.open_port(port, secret, unix_at_epoch, IncomingPolicy::Hold);
        self.p2p.port = Some(port);
    }

    /// A P2P listen socket on virtual port `vport` (Steam's `CreateListenSocketP2P`) whose
    /// connections use `config`: `InvalidState` without P2P, `InvalidParam` when `vport` is
    /// taken.
    pub fn create_listen_socket_p2p(
        &mut self,
        vport: u32,
        config: Config,
    ) -> Result<HListen, EResult> {
        let port = self.p2p.port.ok_or(EResult::InvalidState)?;
        if self.p2p.listen.contains_key(&vport) {
            return Err(EResult::InvalidParam);
        }
        let h = self.handle();
        self.listen.insert(
            h,
            ListenEntry {
                port,
                config,
                vport: Some(vport),
            },
        );
        self.p2p.listen.insert(vport, h);
        Ok(h)
    }

    /// The virtual port of listen socket `h`, if it is a P2P one.
    pub fn listen_virtual_port(&self, h: HListen) -> Option<u32> {
        self.listen.get(&h).and_then(|l| l.vport)
    }

    /// Dials the P2P session at virtual address `at` from the P2P port, expecting `peer` to
    /// prove its identity.
    fn connect_at(
        &mut self,
        now: Timestamp,
        at: SocketAddr,
        peer: &Identity,
        options: ConnOptions,
    ) -> Option<HConn> {
        let port = self.p2p.port?;
        self.dial(now, port, at, Some(peer.clone()), options)
    }

    /// A new connection on the P2P port: its handle, on the listen socket the rendezvous
    /// claimed for its address, with that socket's config; refused (closed) without a claim.
    pub(super) fn take_p2p_incoming(
        &mut self,
        port: usize,
        conn: ConnectionHandle,
    ) -> Option<HConn> {
        let remote = self
            .ports
            .get(port)?
            .as_ref()?
            .endpoint
            .connection(conn)?
            .remote();
        let Some(&(listen, _)) = self.p2p.claims.get(&remote) else {
            if let Some(p) = self.port_mut(port) {
                p.endpoint.close(
                    conn,
                    EndReason::MiscGeneric,
                    "P2P connections come through rendezvous",
                );
            }
            return None;
        };
        let cfg = self
            .listen
            .get(&listen)
            .map(|l| ConnectionConfig::from_config(&l.config, Framing::Raw));
        let now = self.latest;
        if let (Some(cfg), Some(p)) = (cfg, self.port_mut(port)) {
            if let Some(c) = p.endpoint.connection_mut(conn) {
                c.set_config(now, cfg);
            }
        }
        let h = self.handle();
        self.insert_entry(h, port, conn, listen, -1);
        Some(h)
    }

    /// The live connection on the P2P port at `at` (a scan: the endpoint's table is keyed
    /// by connection id, and this runs once per session per housekeeping round).
    fn p2p_conn_at(&self, at: SocketAddr) -> Option<ConnectionHandle> {
        let port = self.p2p.port?;
        let e = &self.ports.get(port)?.as_ref()?.endpoint;
        e.handles().find(|&h| {
            e.connection(h)
                .is_some_and(|c| c.remote() == at && !c.is_dead())
        })
    }

    /// Forgets claims whose session has had no connection for [`CLAIM_IDLE`].
    pub(super) fn prune_p2p(&mut self, now: Timestamp) {
        if self.p2p.claims.is_empty() {
            return;
        }
        let live: Vec<SocketAddr> = self
            .p2p
            .claims
            .keys()
            .copied()
            .filter(|&at| self.p2p_conn_at(at).is_some())
            .collect();
        for at in live {
            if let Some(c) = self.p2p.claims.get_mut(&at) {
                c.1 = now;
            }
        }
        self.p2p
            .claims
            .retain(|_, (_, seen)| now.saturating_since(*seen) < CLAIM_IDLE);
    }
}

impl Host for Sockets {
    fn p2p_incoming(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        at: SocketAddr,
        to_vport: Option<u32>,
    ) -> Result<(), End> {
        let Some(vport) = to_vport else {
            return Err(End::new(
                EndReason::MiscGeneric,
                "P2P connect request without a virtual port (the connection API listens on one)",
            ));
        };
        let Some(&listen) = self.p2p.listen.get(&vport) else {
            return Err(End::new(
                EndReason::MiscGeneric,
                format!("not listening on virtual port {vport} (request from {peer})"),
            ));
        };
        self.p2p.claims.insert(at, (listen, now));
        Ok(())
    }

    fn p2p_failed(&mut self, _now: Timestamp, _peer: &Identity, at: SocketAddr, end: &End) {
        self.p2p.claims.remove(&at);
        let (Some(port), Some(h)) = (self.p2p.port, self.p2p_conn_at(at)) else {
            return;
        };
        if let Some(p) = self.port_mut(port) {
            p.endpoint.fail(h, end.reason, end.debug.clone());
        }
        self.collect(port);
    }

    fn p2p_in_use(&self, _peer: &Identity, at: SocketAddr) -> bool {
        self.p2p_conn_at(at).is_some()
    }

    fn rewrite_event(event: &mut SocketsEvent, route: &dyn Fn(SocketAddr) -> Option<PathView>) {
        if let SocketsEvent::StatusChanged { info, .. } = event {
            if let Some(v) = route(info.remote_address) {
                info.remote_address = v.remote;
                info.flags |= v.flags;
            }
        }
    }
}

/// Why [`P2pLayer::connect_p2p`] did not dial.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConnectP2pError {
    /// P2P is not switched on (no signaling configured).
    #[error("P2P is not enabled on this instance (create it with signaling)")]
    NotEnabled,
    /// An `ip:` identity: dial its address instead.
    #[error("{0} is an address: connect to it by IP address")]
    AddressIdentity(Identity),
    /// The peer is us.
    #[error("cannot connect to our own identity")]
    Ourselves,
    /// A connection to this peer is live (one P2P connection per peer at a time).
    #[error("a P2P connection to {0} is already open (one per peer at a time)")]
    AlreadyConnected(Identity),
    /// The session or connection table is full.
    #[error("too many P2P sessions or connections")]
    Full,
}

impl P2pLayer<Sockets> {
    /// Dials `peer` at its virtual port `vport` through P2P (Steam's `ConnectP2P`): signaling
    /// finds it, ICE finds a path, and the handshake runs on it. Its progress comes as status
    /// events, as for any connection (`FindingRoute` in [`P2pLayer::info`] while ICE looks).
    pub fn connect_p2p(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        vport: u32,
        options: ConnOptions,
    ) -> Result<HConn, ConnectP2pError> {
        if peer.ip_addr().is_some() {
            return Err(ConnectP2pError::AddressIdentity(peer.clone()));
        }
        let Some(t) = self.transport() else {
            return Err(ConnectP2pError::NotEnabled);
        };
        if t.identity() == peer {
            return Err(ConnectP2pError::Ourselves);
        }
        if let Some(at) = t.live_session(peer) {
            if self.inner().p2p_conn_at(at).is_some() {
                return Err(ConnectP2pError::AlreadyConnected(peer.clone()));
            }
            // An idle session (its connection ended moments ago) rendezvoused for another
            // virtual port, or for the peer's own connection: start a fresh one.
            self.end_p2p_session(
                now,
                at,
                &End::new(EndReason::App(1000), "superseded by a new connection"),
            );
        }
        let at = self
            .open(now, peer, Some(vport))
            .ok_or(ConnectP2pError::Full)?;
        self.inner_mut()
            .connect_at(now, at, peer, options)
            .ok_or(ConnectP2pError::Full)
    }

    /// [`Sockets::info`] with the P2P path's address and flags, and Steam's `FindingRoute`
    /// while ICE looks.
    pub fn info(&self, h: HConn) -> Option<ConnInfo> {
        let mut info = self.inner().info(h)?;
        if let Some(v) = self.path_view(info.remote_address) {
            info.remote_address = v.remote;
            info.flags |= v.flags;
            if v.finding_route && info.state == ConnectionState::Connecting {
                info.state = ConnectionState::FindingRoute;
            }
        }
        Some(info)
    }
}

#[cfg(test)]
mod tests;
