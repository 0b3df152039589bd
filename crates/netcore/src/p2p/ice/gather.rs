//! Candidate gathering, once per endpoint (RFC 8445 5.1.1): host candidates from the
//! interface list the driver reports, a server-reflexive candidate per address family from
//! STUN (or from the TURN allocation's mapped address), and one relayed candidate from one TURN
//! allocation (the next server is tried when one fails). Every session's agent gets the same
//! set; the [`TurnClient`] stays here for the sessions to send through.
//!
//! Like GNS: local preference counts down from 65535 in interface order; a STUN answer equal
//! to a host address means no NAT and adds nothing; a failure of STUN or TURN is reported as
//! a note (for `sessionFailed`'s text), not as the end of gathering.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};

use super::candidate::{allowed_types, type_bit, Candidate, CandidateKind};
use crate::p2p::stun::binding::{BindingClient, BindingConfig, BindingEvent};
use crate::p2p::stun::transaction::Retransmit;
use crate::p2p::turn::{TurnClient, TurnConfig, TurnEvent, TurnInput};
use crate::p2p::Transmit;
use crate::time::Timestamp;

/// A local interface address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Its address.
    pub ip: IpAddr,
    /// Subnet prefix length (0 if unknown).
    pub prefix_len: u8,
}

/// What to gather with.
#[derive(Clone, Debug)]
pub struct GatherConfig {
    /// Interfaces, most preferred first (loopback and unspecified ones are skipped).
    pub interfaces: Vec<Interface>,
    /// The endpoint socket's port (it is bound to every interface).
    pub port: u16,
    /// STUN servers (`p2pStunServerList`).
    pub stun_servers: Vec<SocketAddr>,
    /// TURN servers with credentials (`p2pTurnServerList` / `UserList` / `PassList`).
    pub turn_servers: Vec<TurnConfig>,
    /// Steam's `P2P_Transport_ICE_Enable`.
    pub ice_enable: i32,
    /// Retransmission for STUN requests.
    pub retransmit: Retransmit,
}

/// A gathered candidate and the prefix length of its interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalCandidate {
    /// The candidate (advertise it with [`Candidate`]'s `Display`).
    pub candidate: Candidate,
    /// For [`super::IceAgent::add_local_candidate`].
    pub prefix_len: u8,
}

/// What gathering reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GatherEvent {
    /// A new candidate.
    Candidate(LocalCandidate),
    /// A kind of candidate could not be had; the text says which server and why.
    Failed(String),
    /// Nothing more will come (until a refresh or an allocation loss).
    Complete,
}

/// What a datagram was, for the gatherer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GatherInput<'a> {
    /// Not for gathering: offer it to the agents / the GNS endpoint.
    NotMine,
    /// Consumed (a STUN or TURN answer).
    Consumed,
    /// A peer's datagram relayed by our TURN server.
    Relayed {
        /// The peer's address as the relay sees it.
        peer: SocketAddr,
        /// Its bytes.
        payload: &'a [u8],
    },
}

struct Binding {
    client: BindingClient,
    v4: bool,
    done: bool,
}

/// See the module docs.
pub struct Gatherer {
    cfg: GatherConfig,
    allowed: u32,
    candidates: Vec<LocalCandidate>,
    bindings: Vec<Binding>,
    turn: Option<TurnClient>,
    turn_index: usize,
    turn_done: bool,
    complete_sent: bool,
    events: VecDeque<GatherEvent>,
}

impl Gatherer {
    /// Starts gathering at `now`: host candidates at once, STUN and TURN requests on the first
    /// [`Gatherer::handle_timeout`].
    pub fn new(cfg: GatherConfig, now: Timestamp) -> Self {
        let allowed = allowed_types(cfg.ice_enable);
        let mut g = Gatherer {
            allowed,
            candidates: Vec::new(),
            bindings: Vec::new(),
            turn: None,
            turn_index: 0,
            turn_done: true,
            complete_sent: false,
            events: VecDeque::new(),
            cfg,
        };
        let mut pref: u16 = 65535;
        for i in g.cfg.interfaces.clone() {
            if i.ip.is_loopback() || i.ip.is_unspecified() {
                continue;
            }
            let addr = SocketAddr::new(i.ip, g.cfg.port);
            g.add(
                Candidate::new(CandidateKind::Host, addr, i.ip, None, pref),
                i.prefix_len,
            );
            pref = pref.saturating_sub(1);
        }
        const REFLEXIVE: u32 = 0x08 | 0x800;
        const RELAY: u32 = 0x01 | 0x100;
        if allowed & REFLEXIVE != 0 {
            for v4 in [true, false] {
                let has_host = g
                    .cfg
                    .interfaces
                    .iter()
                    .any(|i| i.ip.is_ipv4() == v4 && !i.ip.is_loopback());
                let servers: Vec<SocketAddr> = g
                    .cfg
                    .stun_servers
                    .iter()
                    .copied()
                    .filter(|s| s.is_ipv4() == v4)
                    .collect();
                if !has_host || servers.is_empty() {
                    continue;
                }
                g.bindings.push(Binding {
                    client: BindingClient::new(
                        BindingConfig {
                            servers,
                            retransmit: g.cfg.retransmit,
                            software: None,
                        },
                        now,
                    ),
                    v4,
                    done: false,
                });
            }
        }
        if allowed & RELAY != 0 && !g.cfg.turn_servers.is_empty() {
            g.turn_done = false;
            g.start_turn(now);
        }
        if g.is_complete() {
            g.complete_sent = true;
            g.events.push_back(GatherEvent::Complete);
        }
        g
    }

    fn start_turn(&mut self, now: Timestamp) {
        match self.cfg.turn_servers.get(self.turn_index) {
            Some(c) => {
                let mut c = c.clone();
                // A relayed address of the family we reach the server with, unless the
                // caller chose (the server's default would be IPv4 even over IPv6).
                c.relay_ipv6.get_or_insert(c.server.is_ipv6());
                self.turn = Some(TurnClient::new(c, now));
            }
            None => {
                self.turn = None;
                self.turn_done = true;
            }
        }
    }

    fn add(&mut self, candidate: Candidate, prefix_len: u8) {
        if type_bit(candidate.kind, candidate.address) & self.allowed == 0
            || self.candidates.iter().any(|c| {
                c.candidate.address == candidate.address && c.candidate.kind == candidate.kind
            })
        {
            return;
        }
        let lc = LocalCandidate {
            candidate,
            prefix_len,
        };
        self.candidates.push(lc.clone());
        self.events.push_back(GatherEvent::Candidate(lc));
    }

    /// The first host interface of a family: the base of reflexive candidates.
    /// The host address (and its local preference) reflexive and relayed candidates are
    /// based on: the first interface of the family, whether or not `P2P_Transport_ICE_Enable`
    /// lets its host candidate be used (relay-only still needs a base).
    fn base(&self, v4: bool) -> Option<(IpAddr, u16)> {
        let mut pref: u16 = 65535;
        for i in &self.cfg.interfaces {
            if i.ip.is_loopback() || i.ip.is_unspecified() {
                continue;
            }
            if i.ip.is_ipv4() == v4 {
                return Some((i.ip, pref));
            }
            pref = pref.saturating_sub(1);
        }
        None
    }

    fn add_reflexive(&mut self, mapped: SocketAddr, server: SocketAddr) {
        if self
            .candidates
            .iter()
            .any(|c| c.candidate.kind == CandidateKind::Host && c.candidate.address == mapped)
        {
            return; // no NAT: the host candidate already is that address
        }
        if let Some((base, pref)) = self.base(mapped.is_ipv4()) {
            let c = Candidate::new(
                CandidateKind::ServerReflexive,
                mapped,
                base,
                Some(server.ip()),
                pref,
            );
            self.add(c, 0);
        }
    }

    /// Everything gathered so far.
    pub fn candidates(&self) -> &[LocalCandidate] {
        &self.candidates
    }

    /// Whether every STUN and TURN request has finished.
    pub fn is_complete(&self) -> bool {
        self.turn_done && self.bindings.iter().all(|b| b.done)
    }

    /// The TURN allocation, for sending through the relay and binding channels.
    pub fn turn(&mut self) -> Option<&mut TurnClient> {
        self.turn.as_mut()
    }

    /// Offers a datagram from `from`.
    pub fn handle_input<'a>(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> GatherInput<'a> {
        if let Some(t) = &mut self.turn {
            match t.handle_input(now, from, datagram) {
                TurnInput::NotMine => {}
                TurnInput::Consumed => {
                    self.drain(now);
                    return GatherInput::Consumed;
                }
                TurnInput::Data { peer, payload } => return GatherInput::Relayed { peer, payload },
            }
        }
        for b in &mut self.bindings {
            if b.client.handle_input(now, from, datagram) {
                self.drain(now);
                return GatherInput::Consumed;
            }
        }
        GatherInput::NotMine
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<GatherEvent> {
        self.events.pop_front()
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        for b in &mut self.bindings {
            if let Some(t) = b.client.poll_transmit() {
                return Some(t);
            }
        }
        self.turn.as_mut().and_then(TurnClient::poll_transmit)
    }

    /// When [`Gatherer::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.bindings
            .iter()
            .filter_map(|b| b.client.poll_timeout())
            .chain(self.turn.as_ref().and_then(TurnClient::poll_timeout))
            .min()
    }

    /// Runs the STUN and TURN timers.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for b in &mut self.bindings {
            b.client.handle_timeout(now);
        }
        if let Some(t) = &mut self.turn {
            t.handle_timeout(now);
        }
        self.drain(now);
    }

    fn drain(&mut self, now: Timestamp) {
        for i in 0..self.bindings.len() {
            while let Some(e) = self.bindings[i].client.poll_event() {
                self.bindings[i].done = true;
                match e {
                    BindingEvent::Mapped { server, mapped } => self.add_reflexive(mapped, server),
                    BindingEvent::Failed(f) => {
                        let fam = if self.bindings[i].v4 { "IPv4" } else { "IPv6" };
                        self.events
                            .push_back(GatherEvent::Failed(format!("STUN ({fam}): {f}")));
                    }
                }
            }
        }
        let mut restart = false;
        if let Some(t) = &mut self.turn {
            let server = t.server();
            let mut got = Vec::new();
            while let Some(e) = t.poll_event() {
                got.push(e);
            }
            for e in got {
                match e {
                    TurnEvent::Allocated {
                        relayed, mapped, ..
                    } => {
                        self.turn_done = true;
                        if let Some(m) = mapped {
                            self.add_reflexive(m, server);
                        }
                        // The base is the host address we reach the server from.
                        if let Some((base, _)) = self.base(server.is_ipv4()) {
                            let c = Candidate::new(
                                CandidateKind::Relayed,
                                relayed,
                                base,
                                Some(server.ip()),
                                65535,
                            );
                            self.add(c, 0);
                        }
                    }
                    TurnEvent::Failed(err) => {
                        let was_allocated = self.turn_done;
                        self.events
                            .push_back(GatherEvent::Failed(format!("TURN {server}: {err}")));
                        if was_allocated {
                            // A lost allocation: drop its relayed candidate; try again from the top.
                            self.candidates
                                .retain(|c| c.candidate.kind != CandidateKind::Relayed);
                            self.turn_index = 0;
                        } else {
                            self.turn_index += 1;
                        }
                        self.turn_done = false;
                        restart = true;
                    }
                    _ => {}
                }
            }
        }
        if restart {
            self.start_turn(now);
            if self.turn.is_none() {
                self.turn_done = true;
            }
        }
        if self.is_complete() && !self.complete_sent {
            self.complete_sent = true;
            self.events.push_back(GatherEvent::Complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::stun::attributes as attr;
    use crate::p2p::stun::{Class, Message, MessageBuilder, MessageType, Method};

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    fn cfg() -> GatherConfig {
        GatherConfig {
            interfaces: vec![
                Interface {
                    ip: "192.168.1.2".parse().unwrap(),
                    prefix_len: 24,
                },
                Interface {
                    ip: "127.0.0.1".parse().unwrap(),
                    prefix_len: 8,
                },
                Interface {
                    ip: "2001:db8::2".parse().unwrap(),
                    prefix_len: 64,
                },
            ],
            port: 5000,
            stun_servers: vec!["203.0.113.1:3478".parse().unwrap()],
            turn_servers: vec![],
            ice_enable: super::super::candidate::ICE_ENABLE_ALL,
            retransmit: Retransmit::INTERACTIVE,
        }
    }

    fn events(g: &mut Gatherer) -> Vec<GatherEvent> {
        std::iter::from_fn(|| g.poll_event()).collect()
    }

    #[test]
    fn host_then_reflexive_then_complete() {
        let mut g = Gatherer::new(cfg(), at(0));
        let ev = events(&mut g);
        assert_eq!(ev.len(), 2, "two host candidates, loopback skipped: {ev:?}");
        assert!(!g.is_complete());
        g.handle_timeout(at(0));
        let t = g.poll_transmit().unwrap();
        let req = Message::decode(&t.payload).unwrap();
        let mut b = MessageBuilder::new(
            MessageType::new(Method::BINDING, Class::Success),
            req.transaction_id,
        );
        b.xor_address(
            attr::XOR_MAPPED_ADDRESS,
            "198.51.100.7:40000".parse().unwrap(),
        );
        let resp = b.into_bytes().unwrap();
        assert_eq!(
            g.handle_input(at(10), t.destination, &resp),
            GatherInput::Consumed
        );
        let ev = events(&mut g);
        let GatherEvent::Candidate(c) = &ev[0] else {
            panic!("{ev:?}")
        };
        assert_eq!(c.candidate.kind, CandidateKind::ServerReflexive);
        assert_eq!(c.candidate.related, Some("192.168.1.2:0".parse().unwrap()));
        assert_eq!(ev[1], GatherEvent::Complete);
        assert_eq!(
            g.handle_input(at(11), t.destination, &resp),
            GatherInput::NotMine
        );
    }

    #[test]
    fn stun_and_turn_failures_are_notes_and_gathering_completes() {
        let mut c = cfg();
        c.turn_servers = vec![
            TurnConfig::new("203.0.113.5:3478".parse().unwrap(), "u", "p"),
            TurnConfig::new("203.0.113.6:3478".parse().unwrap(), "u", "p"),
        ];
        let mut g = Gatherer::new(c, at(0));
        events(&mut g);
        let mut notes = Vec::new();
        let mut complete_at = None;
        while let Some(t) = g.poll_timeout() {
            g.handle_timeout(t);
            while g.poll_transmit().is_some() {}
            for e in events(&mut g) {
                match e {
                    GatherEvent::Failed(n) => notes.push(n),
                    GatherEvent::Complete => complete_at = Some(t),
                    GatherEvent::Candidate(c) => panic!("{c:?}"),
                }
            }
        }
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].starts_with("STUN (IPv4)"), "{notes:?}");
        assert!(notes
            .iter()
            .any(|n| n.starts_with("TURN 203.0.113.5:3478") && n.contains("unreachable")));
        assert!(notes.iter().any(|n| n.starts_with("TURN 203.0.113.6:3478")));
        // The two TURN servers one after the other: 2 x 5.275 s.
        assert_eq!(complete_at, Some(at(10_550)));
    }

    #[test]
    fn relay_only_gathers_no_host_candidates() {
        let mut c = cfg();
        c.ice_enable = super::super::candidate::ICE_ENABLE_RELAY;
        let mut g = Gatherer::new(c, at(0));
        assert_eq!(events(&mut g), vec![GatherEvent::Complete]);
        assert!(g.candidates().is_empty());
    }
}
