//! The P2P transport of one endpoint socket: sessions to peers known only by identity,
//! found through rendezvous signals and reached over whatever path ICE selects, direct or
//! through our TURN allocation.
//!
//! It sits between the socket and the protocol state (the messages model or the connection
//! API) and shows the latter each P2P peer at a fixed *virtual address*
//! ([`virtual_addr`], in the discard-only prefix `100::/64`, RFC 6666, so it can never be a
//! real peer). The protocol dials and answers that address as it would any other; here
//! every datagram to it goes out on the selected path (direct, or wrapped in ChannelData
//! for the relay), every datagram from that path comes in from it, and a path upgrade (relay
//! to direct) changes nothing above. Until a path exists, datagrams for a peer are held
//! (a few) and leave the moment ICE selects one, so the handshake does not wait for its
//! next resend.
//!
//! Per endpoint: one [`Gatherer`] (host candidates, STUN reflexive ones, one TURN allocation
//! shared by every session). Per peer: a [`PeerSession`] with its ICE agent and the reliable
//! message stream inside its rendezvous signals ([`ReliableSignals`]), which carry the ICE
//! credentials and candidates as GNS's `CMsgSteamNetworkingP2PRendezvous` does.
//!
//! Sans-IO like the rest of the core: datagrams, signals and `now` in; datagrams, signals
//! (for the signaling service, [`TransportEvent::Signal`]) and failures out.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::demux::{classify, DatagramKind};
use super::ice::{
    username_local_ufrag, Candidate, GatherConfig, GatherEvent, GatherInput, Gatherer, IceAgent,
    IceConfig, IceEvent, IceTransmit, Interface, Role, RouteKind, SelectedPath, Via,
};
use super::rendezvous::{
    base64_lower_30_bits, ConnectOk, ConnectRequest, ConnectionClosed, IceAuth, IceCandidateMsg,
    IceRendezvous, ReliableMessage, ReliableSignals, Rendezvous,
};
use super::stun::transaction::Retransmit;
use super::stun::{Class, Message, Method};
use super::turn::TurnConfig;
use super::Transmit;
use crate::end_reason::{End, EndReason};
use crate::endpoint::Map;
use crate::identity::Identity;
use crate::time::Timestamp;

/// Decides whether a peer's new session (peer, its virtual address, the virtual port it
/// asks for) is welcome; `Err` refuses it with that end.
pub type IncomingCheck<'a> = dyn FnMut(&Identity, SocketAddr, Option<u32>) -> Result<(), End> + 'a;

/// What the transport is set up with.
#[derive(Clone, Debug)]
pub struct P2pConfig {
    /// Who we are (the `from_identity` of our signals).
    pub identity: Identity,
    /// Local interfaces (host candidates), most preferred first.
    pub interfaces: Vec<Interface>,
    /// The socket's port.
    pub port: u16,
    /// STUN servers (`p2pStunServerList`, resolved).
    pub stun_servers: Vec<SocketAddr>,
    /// TURN servers with credentials (`p2pTurnServerList` / `UserList` / `PassList`).
    pub turn_servers: Vec<TurnConfig>,
    /// Steam's `P2P_Transport_ICE_Enable`.
    pub ice_enable: i32,
    /// Random bytes for connection ids, ICE passwords and tiebreakers.
    pub secret: [u8; 32],
}

/// Per-session settings taken from the configuration when a session opens.
#[derive(Clone, Copy, Debug)]
pub struct SessionSettings {
    /// `timeoutInitial`: ICE must have a path a little before it, so that a failure is
    /// reported with ICE's reason rather than as a handshake timeout.
    pub timeout_initial: Duration,
    /// `p2pTransportIceEnable` for this session's agent.
    pub ice_enable: i32,
}

/// What the transport reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransportEvent {
    /// A rendezvous blob for the signaling service to deliver to `to`, best effort.
    Signal {
        /// The recipient.
        to: Identity,
        /// `CMsgSteamNetworkingP2PRendezvous` bytes.
        data: Vec<u8>,
    },
}

/// A session that can no longer reach its peer: the protocol's connection at `at` fails
/// with `end`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The peer.
    pub peer: Identity,
    /// Its virtual address.
    pub at: SocketAddr,
    /// Why (a Steam end reason and a text that says which part failed).
    pub end: End,
}

/// What became of a datagram offered by [`P2pTransport::handle_datagram`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// For the protocol: these bytes, from this address (a P2P peer's virtual address, or the
    /// real source for anything else).
    Deliver {
        /// Source to report.
        from: SocketAddr,
        /// The GNS datagram.
        data: &'a [u8],
    },
    /// Taken here (STUN, TURN control, ICE) or dropped.
    Consumed,
}

/// How a session reaches its peer now, for status calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteInfo {
    /// The peer's address on the selected path (as the relay sees it when relayed); `None`
    /// while ICE is still looking.
    pub remote: Option<SocketAddr>,
    /// The route kind, once selected.
    pub route: Option<RouteKind>,
    /// Whether the session failed.
    pub failed: bool,
}

/// Longest a P2P session outlives the last protocol connection at its address, so the
/// connection's goodbye still finds its path.
const LINGER: Duration = Duration::from_secs(5);
/// How often unused sessions are looked for.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// Datagrams held per session while no path exists (the handshake's first flight).
const MAX_HELD: usize = 16;
/// Most P2P sessions at once (bounds state a flood of signals can create).
pub const MAX_SESSIONS: usize = 4096;
/// The reserved prefix of virtual addresses (`100::/64`, discard-only).
const VIRTUAL_PREFIX: u64 = 0x0100_0000_0000_0000;
/// Port of every virtual address (the id is in the address).
const VIRTUAL_PORT: u16 = 1;

/// The virtual address of session `id`.
pub fn virtual_addr(id: u32) -> SocketAddr {
    let bits = (u128::from(VIRTUAL_PREFIX) << 64) | u128::from(id);
    SocketAddr::new(IpAddr::V6(Ipv6Addr::from(bits)), VIRTUAL_PORT)
}

/// The session id a virtual address names, if it is one.
pub fn virtual_id(addr: SocketAddr) -> Option<u32> {
    let IpAddr::V6(ip) = addr.ip() else {
        return None;
    };
    let bits = u128::from(ip);
    if (bits >> 64) as u64 != VIRTUAL_PREFIX || addr.port() != VIRTUAL_PORT {
        return None;
    }
    u32::try_from(bits & u128::from(u64::MAX)).ok()
}

/// One peer: its ICE agent, its signals, its path.
struct PeerSession {
    peer: Identity,
    id: u32,
    /// The peer's id for this session (its `from_connection_id`), once heard.
    remote_id: Option<u32>,
    agent: IceAgent,
    signals: ReliableSignals,
    /// We opened it (our signals carry a connect request until the peer answers).
    initiated: bool,
    /// Virtual port asked for (connection API), ours or the peer's.
    to_vport: Option<u32>,
    /// A connect OK is owed (the peer's request arrived).
    ok_due: bool,
    /// Something new to signal.
    signal_due: bool,
    path: Option<SelectedPath>,
    held: VecDeque<Vec<u8>>,
    failed: bool,
    /// Last time the protocol had a connection at our address (or the session's birth).
    last_used: Timestamp,
    /// Entries of `by_remote` that name this session.
    remotes: Vec<(Via, SocketAddr)>,
}

/// See the module docs.
pub struct P2pTransport {
    cfg: P2pConfig,
    gatherer: Gatherer,
    notes: Vec<String>,
    gather_complete: bool,
    sessions: Map<u32, PeerSession>,
    by_identity: Map<Identity, u32>,
    by_ufrag: Map<String, u32>,
    by_remote: Map<(Via, SocketAddr), u32>,
    rng: ChaCha20Rng,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TransportEvent>,
    failures: VecDeque<Failure>,
    next_housekeeping: Option<Timestamp>,
    /// One wrapped datagram (ChannelData header + payload) on the relayed data path.
    scratch: Vec<u8>,
}

impl P2pTransport {
    /// Starts gathering at `now` (host candidates at once; STUN and TURN requests on the
    /// first [`P2pTransport::handle_timeout`]).
    pub fn new(cfg: P2pConfig, now: Timestamp) -> Self {
        let gatherer = Gatherer::new(
            GatherConfig {
                interfaces: cfg.interfaces.clone(),
                port: cfg.port,
                stun_servers: cfg.stun_servers.clone(),
                turn_servers: cfg.turn_servers.clone(),
                ice_enable: cfg.ice_enable,
                retransmit: Retransmit::INTERACTIVE,
            },
            now,
        );
        let mut seed = cfg.secret;
        // Separate from other uses of the same secret.
        seed[31] ^= 0x9d;
        let mut t = P2pTransport {
            gatherer,
            notes: Vec::new(),
            gather_complete: false,
            sessions: Map::default(),
            by_identity: Map::default(),
            by_ufrag: Map::default(),
            by_remote: Map::default(),
            rng: ChaCha20Rng::from_seed(seed),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            failures: VecDeque::new(),
            next_housekeeping: None,
            scratch: Vec::with_capacity(1500),
            cfg,
        };
        t.drain_gatherer();
        t
    }

    /// Our identity.
    pub fn identity(&self) -> &Identity {
        &self.cfg.identity
    }

    /// The candidates gathered so far, as their `candidate:` lines (for diagnostics).
    pub fn local_candidates(&self) -> Vec<String> {
        self.gatherer
            .candidates()
            .iter()
            .map(|c| c.candidate.to_string())
            .collect()
    }

    /// What gathering could not do (STUN or TURN failures), for diagnostics.
    pub fn gathering_notes(&self) -> &[String] {
        &self.notes
    }

    /// Number of P2P sessions.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The virtual address of a live (not failed) session with `peer`, if any.
    pub fn live_session(&self, peer: &Identity) -> Option<SocketAddr> {
        let id = *self.by_identity.get(peer)?;
        let s = self.sessions.get(&id)?;
        (!s.failed).then(|| virtual_addr(id))
    }

    /// The session with `peer`, opened (we signal first) unless a live one exists. Returns
    /// its virtual address, or `None` when [`MAX_SESSIONS`] are open or `peer` is us.
    pub fn open(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        to_vport: Option<u32>,
        settings: SessionSettings,
    ) -> Option<SocketAddr> {
        if let Some(at) = self.live_session(peer) {
            return Some(at);
        }
        if *peer == self.cfg.identity {
            return None;
        }
        let id = self.new_session(now, peer, true, to_vport, settings)?;
        if let Some(s) = self.sessions.get_mut(&id) {
            s.signal_due = true;
        }
        self.pump(now);
        Some(virtual_addr(id))
    }

    fn new_session(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        initiated: bool,
        to_vport: Option<u32>,
        settings: SessionSettings,
    ) -> Option<u32> {
        if self.sessions.len() >= MAX_SESSIONS {
            return None;
        }
        // Unique among our sessions, ufrag (its low 30 bits) included.
        let id = loop {
            let id = self.rng.next_u32();
            if id != 0
                && !self.sessions.contains_key(&id)
                && !self.by_ufrag.contains_key(&base64_lower_30_bits(id))
            {
                break id;
            }
        };
        let ufrag = base64_lower_30_bits(id);
        let pwd = format!(
            "{}{}",
            base64_lower_30_bits(self.rng.next_u32()),
            base64_lower_30_bits(self.rng.next_u32())
        );
        // GNS: the side that accepted is controlling. When both opened at once both start
        // controlled, and the tiebreaker settles it on the first check.
        let role = if initiated {
            Role::Controlled
        } else {
            Role::Controlling
        };
        let mut ice = IceConfig::new(role, &ufrag, &pwd, self.rng.next_u64());
        ice.ice_enable = settings.ice_enable;
        ice.connect_timeout = settings
            .timeout_initial
            .saturating_sub(Duration::from_millis(500))
            .max(Duration::from_millis(500));
        let mut agent = IceAgent::new(ice, now);
        let mut signals = ReliableSignals::new();
        signals.push(ReliableMessage {
            ice: Some(IceRendezvous {
                auth: Some(IceAuth {
                    pwd_frag: Some(pwd),
                }),
                add_candidate: None,
            }),
        });
        for lc in self.gatherer.candidates() {
            if agent.add_local_candidate(lc.candidate.clone(), lc.prefix_len) {
                signals.push(candidate_message(&lc.candidate));
            }
        }
        for n in &self.notes {
            agent.note_gathering_failure(n);
        }
        if self.gather_complete {
            agent.set_local_complete();
        }
        if let Some(old) = self.by_identity.insert(peer.clone(), id) {
            // A newer session replaces an older one with the same peer (the peer started over,
            // or ours failed and the application restarts it): the older one stays until its
            // connection is gone, reachable by its address only.
            let _ = old;
        }
        self.by_ufrag.insert(ufrag, id);
        self.sessions.insert(
            id,
            PeerSession {
                peer: peer.clone(),
                id,
                remote_id: None,
                agent,
                signals,
                initiated,
                to_vport,
                ok_due: false,
                signal_due: false,
                path: None,
                held: VecDeque::new(),
                failed: false,
                last_used: now,
                remotes: Vec::new(),
            },
        );
        if self.next_housekeeping.is_none() {
            self.next_housekeeping = Some(now + HOUSEKEEPING);
        }
        Some(id)
    }

    /// A rendezvous blob from `from` (the signaling service's word for who sent it).
    /// `incoming` decides whether a peer's new session is welcome (the connection API needs
    /// a listen socket on the virtual port it asks for): `Err` refuses it with that end,
    /// which the peer is told.
    pub fn handle_signal(
        &mut self,
        now: Timestamp,
        from: &Identity,
        data: &[u8],
        settings: SessionSettings,
        incoming: &mut IncomingCheck<'_>,
    ) {
        let Ok(msg) = Rendezvous::decode_signal(data) else {
            return;
        };
        // The blob must be from who the service says, and for us.
        let claimed = msg.from_identity.as_deref().map(str::parse::<Identity>);
        if claimed.is_some_and(|c| c.as_ref() != Ok(from)) {
            return;
        }
        let to_us = msg.to_identity.as_deref().map(str::parse::<Identity>);
        if to_us.is_some_and(|t| t.as_ref() != Ok(&self.cfg.identity)) {
            return;
        }
        let Some(their_id) = msg.from_connection_id.filter(|&id| id != 0) else {
            return;
        };
        let existing = self
            .by_identity
            .get(from)
            .copied()
            .filter(|id| self.sessions.contains_key(id));
        let id = match existing {
            Some(id) => {
                let s = &self.sessions[&id];
                match s.remote_id {
                    Some(r) if r == their_id => Some(id),
                    // Our request answered, or the peer opened at the same time.
                    None if msg.to_connection_id == Some(id) || msg.connect_request.is_some() => {
                        Some(id)
                    }
                    // The peer started over: a new session replaces ours.
                    _ if msg.connect_request.is_some() => None,
                    _ => return,
                }
            }
            None => None,
        };
        let id = match id {
            Some(id) => id,
            None => {
                let Some(req) = &msg.connect_request else {
                    // Signals of a session we no longer have: nothing to do.
                    return;
                };
                let to_vport = req.to_virtual_port;
                let Some(id) = self.new_session(now, from, false, to_vport, settings) else {
                    return;
                };
                if let Err(end) = incoming(from, virtual_addr(id), to_vport) {
                    self.refuse(id, their_id, &end);
                    return;
                }
                id
            }
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.remote_id.is_none() {
            s.remote_id = Some(their_id);
        }
        if msg.connect_request.is_some() {
            s.ok_due = true;
            s.signal_due = true;
        }
        if let Some(closed) = &msg.connection_closed {
            let code = closed.reason_code.and_then(|c| i32::try_from(c).ok());
            let reason = code.map_or(EndReason::MiscP2PRendezvous, EndReason::from_code);
            let debug = format!(
                "{} closed the P2P session: {}",
                s.peer,
                closed.debug.as_deref().unwrap_or("no reason given")
            );
            self.fail(id, End::new(reason, debug));
            self.pump(now);
            return;
        }
        let fresh = s.signals.receive(&msg);
        let mut candidates = Vec::new();
        for m in fresh {
            let Some(ice) = m.ice else { continue };
            if let Some(pwd) = ice.auth.and_then(|a| a.pwd_frag) {
                s.agent
                    .set_remote_credentials(&base64_lower_30_bits(their_id), &pwd);
            }
            if let Some(line) = ice.add_candidate.and_then(|c| c.candidate) {
                if let Ok(c) = Candidate::parse(&line) {
                    candidates.push(c);
                }
            }
        }
        for c in candidates {
            self.add_remote_candidate(now, id, c);
        }
        self.pump(now);
    }

    /// Ends the session at virtual address `at` now: the peer is told (`end`), and the
    /// session is forgotten (no failure is reported: the caller knows).
    pub fn close_session(&mut self, now: Timestamp, at: SocketAddr, end: &End) {
        let Some(id) = virtual_id(at) else {
            return;
        };
        match self.sessions.get(&id).and_then(|s| s.remote_id) {
            Some(their_id) => self.refuse(id, their_id, end),
            None => self.remove(id),
        }
        self.pump(now);
    }

    /// Tells a peer we will not take its session, and forgets it.
    fn refuse(&mut self, id: u32, their_id: u32, end: &End) {
        if let Some(s) = self.sessions.get(&id) {
            let msg = Rendezvous {
                from_identity: Some(self.cfg.identity.to_string()),
                from_connection_id: Some(id),
                to_identity: Some(s.peer.to_string()),
                to_connection_id: Some(their_id),
                connection_closed: Some(ConnectionClosed {
                    debug: Some(end.debug.clone()),
                    reason_code: u32::try_from(end.reason.code()).ok(),
                }),
                ..Default::default()
            };
            if let Ok(data) = msg.encode_signal() {
                self.events.push_back(TransportEvent::Signal {
                    to: s.peer.clone(),
                    data,
                });
            }
        }
        self.remove(id);
    }

    /// The signaling service could not deliver a blob to `to`. `not-registered` and
    /// `unavailable` fail a session still looking for its path (Steam's 5008, with a text
    /// that says which); a session with a path keeps it (signaling is not on the data
    /// path); other reasons are transient (the reliable stream resends).
    pub fn signal_undeliverable(
        &mut self,
        now: Timestamp,
        to: &Identity,
        reason: &str,
        detail: &str,
    ) {
        let Some(&id) = self.by_identity.get(to) else {
            return;
        };
        let Some(s) = self.sessions.get(&id) else {
            return;
        };
        if s.failed || s.path.is_some() {
            return;
        }
        let debug = match reason {
            "not-registered" => format!(
                "{to} is not registered with the signaling service (offline, or not started yet)"
            ),
            "unavailable" => format!("signaling unavailable, cannot reach {to}: {detail}"),
            _ => return,
        };
        self.fail(id, End::new(EndReason::MiscP2PRendezvous, debug));
        self.pump(now);
    }

    fn add_remote_candidate(&mut self, now: Timestamp, id: u32, c: Candidate) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let addr = c.address;
        if s.agent.add_remote_candidate(c).is_err() {
            return;
        }
        for via in [Via::Direct, Via::Relay] {
            if self.by_remote.insert((via, addr), id) != Some(id) {
                s.remotes.push((via, addr));
            }
        }
        if let Some(turn) = self.gatherer.turn() {
            // A relayed pair needs the peer's IP let through our allocation; refused ones
            // (a server that will not relay to private addresses) just fail their checks.
            let _ = turn.create_permission(addr.ip(), now);
        }
    }

    fn fail(&mut self, id: u32, end: End) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.failed {
            return;
        }
        s.failed = true;
        s.held.clear();
        self.failures.push_back(Failure {
            peer: s.peer.clone(),
            at: virtual_addr(id),
            end,
        });
    }

    fn remove(&mut self, id: u32) {
        let Some(s) = self.sessions.remove(&id) else {
            return;
        };
        if self.by_identity.get(&s.peer) == Some(&id) {
            self.by_identity.remove(&s.peer);
        }
        self.by_ufrag.remove(s.agent.local_ufrag());
        for key in &s.remotes {
            if self.by_remote.get(key) == Some(&id) {
                self.by_remote.remove(key);
            }
        }
        // Permissions nobody needs any more stop being refreshed.
        if let Some(turn) = self.gatherer.turn() {
            let mut gone: Vec<IpAddr> = s.remotes.iter().map(|(_, a)| a.ip()).collect();
            gone.sort();
            gone.dedup();
            for ip in gone {
                let used = self
                    .sessions
                    .values()
                    .any(|o| o.remotes.iter().any(|(_, a)| a.ip() == ip));
                if !used {
                    turn.remove_peer(ip);
                }
            }
        }
    }

    /// The next session failure, for the protocol to fail its connection at `at`.
    pub fn poll_failure(&mut self) -> Option<Failure> {
        self.failures.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<TransportEvent> {
        self.events.pop_front()
    }

    /// Whether events wait.
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// The route of the session at virtual address `at`.
    pub fn route(&self, at: SocketAddr) -> Option<RouteInfo> {
        let s = self.sessions.get(&virtual_id(at)?)?;
        Some(RouteInfo {
            remote: s.path.as_ref().map(|p| p.remote.address),
            route: s.path.as_ref().map(|p| p.route),
            failed: s.failed,
        })
    }

    /// The peer whose session has virtual address `at`.
    pub fn peer_at(&self, at: SocketAddr) -> Option<&Identity> {
        self.sessions.get(&virtual_id(at)?).map(|s| &s.peer)
    }

    /// Offers a datagram that arrived on the socket from `from`.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &'a [u8],
    ) -> Inbound<'a> {
        match classify(data) {
            DatagramKind::Gns => {
                let from = match self.by_remote.get(&(Via::Direct, from)) {
                    Some(&id) => virtual_addr(id),
                    None => from,
                };
                Inbound::Deliver { from, data }
            }
            DatagramKind::Stun | DatagramKind::ChannelData => {
                match self.gatherer.handle_input(now, from, data) {
                    GatherInput::Consumed => {
                        self.pump(now);
                        Inbound::Consumed
                    }
                    GatherInput::Relayed { peer, payload } => match classify(payload) {
                        DatagramKind::Gns => match self.by_remote.get(&(Via::Relay, peer)) {
                            Some(&id) => Inbound::Deliver {
                                from: virtual_addr(id),
                                data: payload,
                            },
                            // Relayed from a peer no session knows: not ours to take.
                            None => Inbound::Consumed,
                        },
                        DatagramKind::Stun => {
                            self.ice_stun(now, Via::Relay, peer, payload);
                            self.pump(now);
                            Inbound::Consumed
                        }
                        _ => Inbound::Consumed,
                    },
                    GatherInput::NotMine => {
                        if classify(data) == DatagramKind::Stun {
                            self.ice_stun(now, Via::Direct, from, data);
                            self.pump(now);
                        }
                        Inbound::Consumed
                    }
                }
            }
            // Not ours: the protocol counts it as malformed.
            DatagramKind::Unknown => Inbound::Deliver { from, data },
        }
    }

    fn ice_stun(&mut self, now: Timestamp, via: Via, from: SocketAddr, bytes: &[u8]) {
        let Ok(msg) = Message::decode(bytes) else {
            return;
        };
        if msg.typ.method != Method::BINDING {
            return;
        }
        let target = match msg.typ.class {
            Class::Request => {
                username_local_ufrag(&msg).and_then(|u| self.by_ufrag.get(u).copied())
            }
            Class::Success | Class::Error => self
                .sessions
                .values()
                .find(|s| s.agent.owns_transaction(&msg.transaction_id))
                .map(|s| s.id),
            Class::Indication => None,
        };
        let Some(id) = target else {
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.agent.handle_stun(now, via, from, &msg) && s.agent.knows_remote(from) {
            // A peer-reflexive address (the peer's NAT mapping towards us) carries its GNS
            // packets too.
            if self.by_remote.insert((via, from), id) != Some(id) {
                s.remotes.push((via, from));
            }
        }
    }

    /// Sends `data`, which the protocol addressed to `to`, on its way: out the selected path
    /// of the session `to` names (held while there is none; dropped once the session
    /// failed), or straight to `to` when it is no virtual address.
    pub fn route_outgoing(
        &mut self,
        to: SocketAddr,
        data: &[u8],
        send: &mut dyn FnMut(SocketAddr, &[u8]),
    ) {
        let Some(id) = virtual_id(to) else {
            send(to, data);
            return;
        };
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        if s.failed {
            return;
        }
        let Some(p) = &s.path else {
            if s.held.len() >= MAX_HELD {
                s.held.pop_front();
            }
            s.held.push_back(data.to_vec());
            return;
        };
        match p.via {
            Via::Direct => send(p.remote.address, data),
            Via::Relay => {
                let peer = p.remote.address;
                if let Some(turn) = self.gatherer.turn() {
                    if let Ok(server) = turn.wrap_into(peer, data, &mut self.scratch) {
                        send(server, &self.scratch);
                    }
                }
            }
        }
    }

    /// The transport's own next datagram (STUN, TURN, ICE checks, held datagrams).
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`P2pTransport::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut t = self.gatherer.poll_timeout();
        let mut take = |x: Option<Timestamp>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t: Timestamp| t.min(x)));
            }
        };
        take(self.next_housekeeping);
        for s in self.sessions.values() {
            if !s.failed {
                take(s.agent.poll_timeout());
                take(s.signals.poll_timeout());
            }
        }
        t
    }

    /// Runs what is due: gathering, ICE, signal resends, and (every second) forgets sessions
    /// whose protocol connection is gone (`in_use` says whether one is at a session's
    /// address).
    pub fn handle_timeout(
        &mut self,
        now: Timestamp,
        in_use: &dyn Fn(&Identity, SocketAddr) -> bool,
    ) {
        if self.gatherer.poll_timeout().is_some_and(|t| t <= now) {
            self.gatherer.handle_timeout(now);
        }
        for s in self.sessions.values_mut() {
            if s.failed {
                continue;
            }
            if s.agent.poll_timeout().is_some_and(|t| t <= now) {
                s.agent.handle_timeout(now);
            }
            if s.signals.wants_to_send(now) {
                s.signal_due = true;
            }
        }
        if self.next_housekeeping.is_some_and(|t| t <= now) {
            let mut gone = Vec::new();
            for s in self.sessions.values_mut() {
                if in_use(&s.peer, virtual_addr(s.id)) {
                    s.last_used = now;
                } else if now.saturating_since(s.last_used) >= LINGER.max(linger_floor(s)) {
                    gone.push(s.id);
                }
            }
            for id in gone {
                self.remove(id);
            }
            self.next_housekeeping = (!self.sessions.is_empty()).then(|| now + HOUSEKEEPING);
        }
        self.pump(now);
    }

    /// Moves everything along after a change: gathering results to every agent, agents'
    /// datagrams and events, due signals.
    fn pump(&mut self, now: Timestamp) {
        self.drain_gatherer();
        let ids: Vec<u32> = self.sessions.keys().copied().collect();
        for id in ids {
            self.drain_agent(now, id);
        }
        while let Some(t) = self.gatherer.poll_transmit() {
            self.transmits.push_back(t);
        }
        self.flush_signals(now);
    }

    fn drain_gatherer(&mut self) {
        while let Some(e) = self.gatherer.poll_event() {
            match e {
                GatherEvent::Candidate(lc) => {
                    for s in self.sessions.values_mut() {
                        if !s.failed
                            && s.agent
                                .add_local_candidate(lc.candidate.clone(), lc.prefix_len)
                        {
                            s.signals.push(candidate_message(&lc.candidate));
                            s.signal_due = true;
                        }
                    }
                }
                GatherEvent::Failed(note) => {
                    for s in self.sessions.values_mut() {
                        s.agent.note_gathering_failure(&note);
                    }
                    if self.notes.len() < 8 {
                        self.notes.push(note);
                    }
                }
                GatherEvent::Complete => {
                    self.gather_complete = true;
                    for s in self.sessions.values_mut() {
                        s.agent.set_local_complete();
                    }
                }
            }
        }
    }

    fn drain_agent(&mut self, now: Timestamp, id: u32) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let mut out: Vec<IceTransmit> = Vec::new();
        while let Some(t) = s.agent.poll_transmit() {
            out.push(t);
        }
        let mut events = Vec::new();
        while let Some(e) = s.agent.poll_event() {
            events.push(e);
        }
        for t in out {
            self.send_ice(now, t);
        }
        for e in events {
            match e {
                IceEvent::Selected(path) => self.on_selected(now, id, path),
                IceEvent::Failed(f) => {
                    let reason = EndReason::from_code(f.end_reason);
                    self.fail(id, End::new(reason, format!("P2P: {}", f.debug)));
                }
                IceEvent::RoleChanged(_) => {}
            }
        }
    }

    fn send_ice(&mut self, now: Timestamp, t: IceTransmit) {
        match t.via {
            Via::Direct => self.transmits.push_back(Transmit {
                destination: t.destination,
                payload: t.payload,
            }),
            Via::Relay => {
                if let Some(turn) = self.gatherer.turn() {
                    let _ = turn.create_permission(t.destination.ip(), now);
                    if let Ok(w) = turn.send(t.destination, &t.payload) {
                        self.transmits.push_back(w);
                    }
                }
            }
        }
    }

    fn on_selected(&mut self, now: Timestamp, id: u32, path: SelectedPath) {
        let Some(s) = self.sessions.get_mut(&id) else {
            return;
        };
        let relay = path.via == Via::Relay;
        let peer = path.remote.address;
        s.path = Some(path);
        let held: Vec<Vec<u8>> = s.held.drain(..).collect();
        if relay {
            if let Some(turn) = self.gatherer.turn() {
                // Relayed data goes in 4-byte ChannelData headers once the channel is bound
                // (Send indications until then).
                let _ = turn.bind_channel(peer, now);
            }
        }
        let mut flushed = Vec::new();
        for d in held {
            self.route_outgoing(virtual_addr(id), &d, &mut |to, bytes| {
                flushed.push(Transmit {
                    destination: to,
                    payload: bytes.to_vec(),
                });
            });
        }
        self.transmits.extend(flushed);
    }

    fn flush_signals(&mut self, now: Timestamp) {
        let me = self.cfg.identity.to_string();
        for s in self.sessions.values_mut() {
            if s.failed || !(s.signal_due || s.signals.wants_to_send(now)) {
                continue;
            }
            s.signal_due = false;
            let mut msg = Rendezvous {
                from_identity: Some(me.clone()),
                from_connection_id: Some(s.id),
                to_identity: Some(s.peer.to_string()),
                to_connection_id: s.remote_id,
                ice_enabled: Some(true),
                ..Default::default()
            };
            if s.initiated && s.remote_id.is_none() {
                msg.connect_request = Some(ConnectRequest {
                    to_virtual_port: s.to_vport,
                    ..Default::default()
                });
            }
            if s.ok_due {
                s.ok_due = false;
                msg.connect_ok = Some(ConnectOk::default());
            }
            s.signals.fill(&mut msg, now);
            if let Ok(data) = msg.encode_signal() {
                self.events.push_back(TransportEvent::Signal {
                    to: s.peer.clone(),
                    data,
                });
            }
        }
    }
}

/// A session that never had a protocol connection (the peer opened it and its handshake has
/// not arrived yet) waits as long as ICE may take.
fn linger_floor(s: &PeerSession) -> Duration {
    if s.failed || s.path.is_some() {
        Duration::ZERO
    } else {
        Duration::from_secs(30)
    }
}

fn candidate_message(c: &Candidate) -> ReliableMessage {
    ReliableMessage {
        ice: Some(IceRendezvous {
            auth: None,
            add_candidate: Some(IceCandidateMsg {
                candidate: Some(c.to_string()),
            }),
        }),
    }
}
