//! The P2P layer: a protocol state (the messages model, the connection API) with the
//! [`P2pTransport`] in front of one of its sockets.
//!
//! ```text
//!   driver (sockets, clock)
//!      |  datagrams on port N               signals in / out (the signaling service)
//!   P2pLayer ---- P2pTransport: STUN, TURN, ICE, rendezvous; virtual address per peer
//!      |  GNS datagrams from / to virtual addresses
//!   Host (Messages, Sockets): handshakes, connections, sessions, as for any address
//! ```
//!
//! Without P2P configured the layer passes everything through (one `Option` test per
//! datagram). With it, datagrams on the P2P port are classified first (`demux`): GNS ones go
//! to the host, from the peer's virtual address when they came on a session's path; STUN,
//! TURN and ICE stay in the transport. What the host sends to a virtual address leaves on
//! that peer's path. The host needs three small hooks ([`Host`]): take a new P2P peer (or
//! refuse it), fail the connection at a virtual address with ICE's or signaling's reason, and
//! say whether a connection is still at one. The layer dereferences to the host, so the
//! driver's calls into the host stay as they are; where P2P changes a call (a send to a peer
//! without a route, a status snapshot) the host's module defines it on `P2pLayer<Host>`.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use super::transport::{P2pConfig, P2pTransport, RouteInfo, SessionSettings, TransportEvent};
use crate::config::Config;
use crate::end_reason::End;
use crate::identity::Identity;
use crate::sans_io::SansIo;
use crate::time::Timestamp;

/// What the layer needs of the protocol state behind it, beyond what every driven protocol
/// has ([`SansIo`]: datagrams, timers, events, config).
pub trait Host: SansIo {
    /// `peer` opened a P2P session reaching us at virtual address `at`, for `to_vport` (the
    /// connection API's virtual port): `Err` refuses it (the peer is told why).
    fn p2p_incoming(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        at: SocketAddr,
        to_vport: Option<u32>,
    ) -> Result<(), End>;
    /// The P2P session with `peer` at `at` failed: its connection there fails with `end`.
    fn p2p_failed(&mut self, now: Timestamp, peer: &Identity, at: SocketAddr, end: &End);
    /// Whether a live connection is at `at` (the P2P session is forgotten some time after
    /// none is).
    fn p2p_in_use(&self, peer: &Identity, at: SocketAddr) -> bool;
    /// Replaces virtual addresses in an event by what `route` says of them.
    fn rewrite_event(event: &mut Self::Event, route: &dyn Fn(SocketAddr) -> Option<PathView>);
}

/// How a P2P session's path looks from outside: what status calls and events report instead
/// of the virtual address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathView {
    /// The peer's address on the selected path (unspecified while ICE looks).
    pub remote: SocketAddr,
    /// Steam's `ConnectionInfo` flags the path adds (`Relayed`, `Fast`).
    pub flags: i32,
    /// No path yet (Steam's `FindingRoute` state).
    pub finding_route: bool,
}

/// An event of a layered protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerEvent<E> {
    /// The host's event.
    Host(E),
    /// A rendezvous blob for the signaling service.
    Signal {
        /// The recipient.
        to: Identity,
        /// The blob.
        data: Vec<u8>,
    },
}

/// See the module docs.
pub struct P2pLayer<H> {
    inner: H,
    p2p: Option<P2p>,
}

struct P2p {
    port: usize,
    transport: P2pTransport,
}

impl<H> Deref for P2pLayer<H> {
    type Target = H;
    fn deref(&self) -> &H {
        &self.inner
    }
}

impl<H> DerefMut for P2pLayer<H> {
    fn deref_mut(&mut self) -> &mut H {
        &mut self.inner
    }
}

/// Steam's `k_nSteamNetworkingConnectionInfoFlags_Fast`.
pub const FLAG_FAST: i32 = crate::sockets::info_flags::FAST;
/// Steam's `k_nSteamNetworkingConnectionInfoFlags_Relayed`.
pub const FLAG_RELAYED: i32 = crate::sockets::info_flags::RELAYED;

impl<H: Host> P2pLayer<H> {
    /// `inner` without P2P (until [`P2pLayer::enable`]).
    pub fn new(inner: H) -> Self {
        P2pLayer { inner, p2p: None }
    }

    /// The host.
    pub fn inner(&self) -> &H {
        &self.inner
    }

    /// The host, for changes.
    pub fn inner_mut(&mut self) -> &mut H {
        &mut self.inner
    }

    /// Starts P2P on the host's `port` (gathering begins now). A second call replaces the
    /// transport (sessions on the old one fail).
    pub fn enable(&mut self, now: Timestamp, port: usize, cfg: P2pConfig) {
        self.p2p = Some(P2p {
            port,
            transport: P2pTransport::new(cfg, now),
        });
    }

    /// Whether P2P is enabled.
    pub fn is_enabled(&self) -> bool {
        self.p2p.is_some()
    }

    /// The transport, if enabled (diagnostics and tests).
    pub fn transport(&self) -> Option<&P2pTransport> {
        self.p2p.as_ref().map(|p| &p.transport)
    }

    /// The port P2P runs on.
    pub fn p2p_port(&self) -> Option<usize> {
        self.p2p.as_ref().map(|p| p.port)
    }

    fn settings(&self) -> SessionSettings {
        let c = self.inner.config();
        SessionSettings {
            timeout_initial: Duration::from_millis(u64::try_from(c.timeout_initial).unwrap_or(0)),
            ice_enable: i32::try_from(c.p2p_transport_ice_enable).unwrap_or(0),
        }
    }

    /// The P2P session with `peer` (opened if there is none): its virtual address, for the
    /// host to dial. `None` without P2P, or when the transport is full.
    pub fn open(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        to_vport: Option<u32>,
    ) -> Option<SocketAddr> {
        let settings = self.settings();
        let p = self.p2p.as_mut()?;
        let at = p.transport.open(now, peer, to_vport, settings);
        self.apply_failures(now);
        at
    }

    /// A rendezvous blob from `from` (the signaling service's word for who sent it).
    pub fn receive_signal(&mut self, now: Timestamp, from: &Identity, data: &[u8]) {
        let settings = self.settings();
        let Some(p) = self.p2p.as_mut() else {
            return;
        };
        let inner = &mut self.inner;
        p.transport
            .handle_signal(now, from, data, settings, &mut |peer, at, vport| {
                inner.p2p_incoming(now, peer, at, vport)
            });
        self.apply_failures(now);
    }

    /// The signaling service could not deliver a blob to `to` (`reason`: its code, e.g.
    /// `not-registered` or `unavailable`; `detail`: what else is known).
    pub fn signal_undeliverable(
        &mut self,
        now: Timestamp,
        to: &Identity,
        reason: &str,
        detail: &str,
    ) {
        if let Some(p) = self.p2p.as_mut() {
            p.transport.signal_undeliverable(now, to, reason, detail);
        }
        self.apply_failures(now);
    }

    /// Ends the P2P session at virtual address `at` (the peer is told `end`); a later
    /// [`P2pLayer::open`] to the same peer starts a new one.
    pub fn end_p2p_session(&mut self, now: Timestamp, at: SocketAddr, end: &End) {
        if let Some(p) = self.p2p.as_mut() {
            p.transport.close_session(now, at, end);
        }
    }

    /// What status calls report for the virtual address `at` (`None`: not a P2P session).
    pub fn path_view(&self, at: SocketAddr) -> Option<PathView> {
        let r = self.p2p.as_ref()?.transport.route(at)?;
        Some(view(&r))
    }

    fn apply_failures(&mut self, now: Timestamp) {
        let Some(p) = self.p2p.as_mut() else {
            return;
        };
        while let Some(f) = p.transport.poll_failure() {
            self.inner.p2p_failed(now, &f.peer, f.at, &f.end);
        }
    }

    /// A datagram arrived on `port` from `from`.
    pub fn handle_datagram(&mut self, now: Timestamp, port: usize, from: SocketAddr, data: &[u8]) {
        match self.p2p.as_mut() {
            Some(p) if p.port == port => {
                let from = crate::identity::normalize(from);
                match p.transport.handle_datagram(now, from, data) {
                    super::transport::Inbound::Deliver { from, data } => {
                        self.inner.handle_datagram(now, port, from, data);
                    }
                    super::transport::Inbound::Consumed => {}
                }
                self.apply_failures(now);
            }
            _ => self.inner.handle_datagram(now, port, from, data),
        }
    }

    /// Hands every datagram due to `send(port, to, bytes)`: the transport's own, then the
    /// host's, those for P2P peers on their paths.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        send: &mut dyn FnMut(usize, SocketAddr, &[u8]),
    ) {
        let Some(p) = self.p2p.as_mut() else {
            self.inner.poll_transmit(now, buf, send);
            return;
        };
        let port = p.port;
        while let Some(t) = p.transport.poll_transmit() {
            send(port, t.destination, &t.payload);
        }
        let transport = &mut p.transport;
        self.inner.poll_transmit(now, buf, &mut |q, to, d| {
            if q == port {
                transport.route_outgoing(to, d, &mut |to, d| send(q, to, d));
            } else {
                send(q, to, d);
            }
        });
    }

    /// When [`P2pLayer::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let inner = self.inner.poll_timeout();
        let p2p = self.p2p.as_ref().and_then(|p| p.transport.poll_timeout());
        match (inner, p2p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs what is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if let Some(p) = self.p2p.as_mut() {
            if p.transport.poll_timeout().is_some_and(|t| t <= now) {
                let inner = &self.inner;
                p.transport
                    .handle_timeout(now, &|peer, at| inner.p2p_in_use(peer, at));
            }
        }
        self.apply_failures(now);
        self.inner.handle_timeout(now);
    }

    /// The next event: signals first, then the host's (virtual addresses rewritten).
    pub fn poll_event(&mut self) -> Option<LayerEvent<H::Event>> {
        if let Some(p) = self.p2p.as_mut() {
            if let Some(TransportEvent::Signal { to, data }) = p.transport.poll_event() {
                return Some(LayerEvent::Signal { to, data });
            }
        }
        let mut e = self.inner.poll_event()?;
        if let Some(p) = self.p2p.as_ref() {
            let t = &p.transport;
            H::rewrite_event(&mut e, &|at| t.route(at).map(|r| view(&r)));
        }
        Some(LayerEvent::Host(e))
    }

    /// Whether events wait.
    pub fn has_events(&self) -> bool {
        self.inner.has_events() || self.p2p.as_ref().is_some_and(|p| p.transport.has_events())
    }
}

/// The layer is driven as its host is, with signals among its events.
impl<H: Host> SansIo for P2pLayer<H> {
    type Event = LayerEvent<H::Event>;

    fn handle_datagram(&mut self, now: Timestamp, port: usize, from: SocketAddr, data: &[u8]) {
        P2pLayer::handle_datagram(self, now, port, from, data);
    }

    fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        send: &mut dyn FnMut(usize, SocketAddr, &[u8]),
    ) {
        P2pLayer::poll_transmit(self, now, buf, send);
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        P2pLayer::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        P2pLayer::handle_timeout(self, now);
    }

    fn poll_event(&mut self) -> Option<Self::Event> {
        P2pLayer::poll_event(self)
    }

    fn has_events(&self) -> bool {
        P2pLayer::has_events(self)
    }

    fn config(&self) -> &Config {
        self.inner.config()
    }
}

fn view(r: &RouteInfo) -> PathView {
    use super::ice::RouteKind;
    let flags = match r.route {
        Some(RouteKind::Relayed) => FLAG_RELAYED,
        Some(RouteKind::ProbablyLocal) => FLAG_FAST,
        _ => 0,
    };
    PathView {
        remote: r
            .remote
            .unwrap_or(SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))),
        flags,
        finding_route: r.remote.is_none() && !r.failed,
    }
}

#[cfg(test)]
pub(crate) mod sim_world;
#[cfg(test)]
mod tests;
