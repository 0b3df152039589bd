//! The ICE agent of one session (RFC 8445), following what GNS's native ICE client does:
//!
//! - Pairs every local host and relayed candidate with every remote candidate of the same
//!   address family (server-reflexive candidates are advertised only: their base is the host
//!   socket, so their pairs would duplicate the host's). Pairs on our own private subnet come
//!   first, then RFC 8445 pair priority.
//! - Paced checks, one every `check_interval` (Ta, 50 ms as in GNS): triggered checks first
//!   (an authenticated request from the peer proves a path, so we answer the same way at
//!   once), then the best waiting pair, then one frozen pair per foundation.
//! - Checks are STUN Binding requests with short-term credentials: USERNAME
//!   `remote_ufrag:local_ufrag`, MESSAGE-INTEGRITY keyed with the remote password, PRIORITY,
//!   ICE-CONTROLLING/-CONTROLLED with our tiebreaker, FINGERPRINT. A request from an unknown
//!   address makes a peer-reflexive remote candidate.
//! - Role conflicts are resolved by tiebreaker (RFC 8445 7.3.1.1: 487 or switch), which GNS
//!   only logs.
//! - Nomination as GNS does it: the controlling agent nominates (USE-CANDIDATE) the first pair
//!   that succeeds, and a better one later if it succeeds (an upgrade, e.g. relayed to
//!   direct); the controlled agent selects a nominated pair once its own check on it succeeded.
//! - Consent freshness (RFC 7675) on the selected pair: a check every `keepalive_interval`
//!   (which also keeps NAT bindings open); no answer for `consent_timeout` ends the session.
//! - Failure with a Steam end reason and a text saying why (GNS's `GuessICEFailureReason`
//!   categories), at `connect_timeout` or as soon as every pair failed once both sides said
//!   their candidates are complete.
//!
//! Several agents share one endpoint socket: the endpoint routes an incoming Binding request
//! by the local ufrag before the colon in USERNAME ([`username_local_ufrag`]) and a response by
//! transaction id ([`IceAgent::owns_transaction`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::candidate::{
    allowed_types, priority, type_bit, Candidate, CandidateKind, ICE_ENABLE_ALL,
};
use super::pair::{on_local_subnet, pair_priority, PairState};
use crate::p2p::stun::attributes as attr;
use crate::p2p::stun::transaction::{Retransmit, RetransmitTimer, TimerAction};
use crate::p2p::stun::{
    Class, Integrity, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use crate::p2p::{
    END_LOCAL_P2P_ICE_NO_PUBLIC_ADDRESSES, END_MISC_GENERIC, END_MISC_INTERNAL_ERROR,
    END_MISC_P2P_NAT_FIREWALL, END_MISC_P2P_RENDEZVOUS, END_MISC_TIMEOUT,
    END_REMOTE_P2P_ICE_NO_PUBLIC_ADDRESSES,
};
use crate::time::Timestamp;

/// Which agent decides (RFC 8445 6.1.1). In GNS the side that *accepted* the connection is
/// controlling, the opposite of the usual ICE convention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Nominates.
    Controlling,
    /// Follows the nomination.
    Controlled,
}

/// How a datagram travels between the endpoint's socket and the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Via {
    /// Straight from our socket.
    Direct,
    /// Through our TURN allocation (wrap with the TURN client; the destination is the peer's
    /// address as the relay reaches it).
    Relay,
}

/// A datagram the agent wants sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceTransmit {
    /// Directly or through the relay.
    pub via: Via,
    /// The peer's address.
    pub destination: SocketAddr,
    /// The STUN message.
    pub payload: Vec<u8>,
}

/// How the selected path runs, as Steam's connection info reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteKind {
    /// Direct UDP across the internet (possibly hole-punched).
    Udp,
    /// Direct UDP to a host candidate on our own private subnet (Steam's `Fast` flag).
    ProbablyLocal,
    /// Through a TURN relay, ours or the peer's (Steam's `Relayed` flag).
    Relayed,
}

/// The selected pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectedPath {
    /// Our candidate.
    pub local: Candidate,
    /// The peer's.
    pub remote: Candidate,
    /// How to send.
    pub via: Via,
    /// What kind of route it is.
    pub route: RouteKind,
    /// Round-trip time of the check that validated it.
    pub rtt: Duration,
}

/// Why ICE gave up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IceFailure {
    /// Steam end reason (`ESteamNetConnectionEnd`).
    pub end_reason: i32,
    /// What happened, for `sessionFailed`'s debug text.
    pub debug: String,
}

/// What the agent reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IceEvent {
    /// A pair is selected, or a better one replaced it.
    Selected(SelectedPath),
    /// A role conflict made us switch roles.
    RoleChanged(Role),
    /// ICE failed; the agent is done.
    Failed(IceFailure),
}

/// Why a remote candidate was not taken.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IceError {
    /// More than [`IceConfig::max_remote_candidates`].
    #[error("too many remote ICE candidates")]
    TooManyCandidates,
    /// Loopback or unspecified address.
    #[error("unusable remote candidate address")]
    Unusable,
}

/// What an agent is configured with.
#[derive(Clone, Debug)]
pub struct IceConfig {
    /// Our initial role.
    pub role: Role,
    /// Our ufrag (GNS: [`crate::p2p::rendezvous::base64_lower_30_bits`] of the connection id).
    pub local_ufrag: String,
    /// Our password (GNS: the same encoding of 32 random bits).
    pub local_pwd: String,
    /// Random 64 bits for role conflicts.
    pub tiebreaker: u64,
    /// Retransmission of each check.
    pub retransmit: Retransmit,
    /// Pacing of new checks (Ta).
    pub check_interval: Duration,
    /// Consent check interval on the selected pair.
    pub keepalive_interval: Duration,
    /// No consent answer for this long ends the session.
    pub consent_timeout: Duration,
    /// No selected pair by then: fail.
    pub connect_timeout: Duration,
    /// Steam's `P2P_Transport_ICE_Enable` value: which candidate types are used.
    pub ice_enable: i32,
    /// Bound on remote candidates (peer-reflexive ones included).
    pub max_remote_candidates: usize,
}

impl IceConfig {
    /// A config with GNS's timings and the given credentials.
    pub fn new(role: Role, local_ufrag: &str, local_pwd: &str, tiebreaker: u64) -> Self {
        IceConfig {
            role,
            local_ufrag: local_ufrag.to_owned(),
            local_pwd: local_pwd.to_owned(),
            tiebreaker,
            retransmit: Retransmit::INTERACTIVE,
            check_interval: Duration::from_millis(50),
            keepalive_interval: Duration::from_secs(5),
            consent_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            ice_enable: ICE_ENABLE_ALL,
            max_remote_candidates: 32,
        }
    }
}

/// The local ufrag a Binding request is for (USERNAME is `recipient:sender`), to route it to
/// the right agent on a shared socket.
pub fn username_local_ufrag<'a>(msg: &Message<'a>) -> Option<&'a str> {
    msg.username()?.split_once(':').map(|(l, _)| l)
}

struct Local {
    candidate: Candidate,
    prefix_len: u8,
    via: Option<Via>,
}

struct Check {
    tid: TransactionId,
    bytes: Vec<u8>,
    timer: RetransmitTimer,
    use_candidate: bool,
}

struct Pair {
    local: usize,
    via: Via,
    remote: Candidate,
    priority: u64,
    state: PairState,
    nominated: bool,
    check: Option<Check>,
    rtt: Option<Duration>,
    local_subnet: bool,
}

/// Most pairs an agent keeps (local x remote is bounded anyway; this caps prflx growth).
const MAX_PAIRS: usize = 256;
/// Attributes a request may carry that we understand.
const KNOWN: &[u16] = &[
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::MESSAGE_INTEGRITY_SHA256,
    attr::PRIORITY,
    attr::USE_CANDIDATE,
    attr::XOR_MAPPED_ADDRESS,
    attr::MAPPED_ADDRESS,
];

/// See the module docs.
pub struct IceAgent {
    cfg: IceConfig,
    role: Role,
    allowed: u32,
    remote_ufrag: Option<String>,
    remote_pwd: Option<String>,
    locals: Vec<Local>,
    remotes: Vec<Candidate>,
    pairs: Vec<Pair>,
    triggered: VecDeque<usize>,
    selected: Option<usize>,
    started: Timestamp,
    next_check: Timestamp,
    consent: Option<(usize, Check)>,
    next_consent: Option<Timestamp>,
    last_consent: Option<Timestamp>,
    local_types: u32,
    remote_types: u32,
    local_complete: bool,
    remote_complete: bool,
    notes: Vec<String>,
    failed: bool,
    checks_answered: u32,
    transmits: VecDeque<IceTransmit>,
    events: VecDeque<IceEvent>,
}

impl IceAgent {
    /// An agent starting at `now`.
    pub fn new(cfg: IceConfig, now: Timestamp) -> Self {
        IceAgent {
            role: cfg.role,
            allowed: allowed_types(cfg.ice_enable),
            cfg,
            remote_ufrag: None,
            remote_pwd: None,
            locals: Vec::new(),
            remotes: Vec::new(),
            pairs: Vec::new(),
            triggered: VecDeque::new(),
            selected: None,
            started: now,
            next_check: now,
            consent: None,
            next_consent: None,
            last_consent: None,
            local_types: 0,
            remote_types: 0,
            local_complete: false,
            remote_complete: false,
            notes: Vec::new(),
            failed: false,
            checks_answered: 0,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Our ufrag.
    pub fn local_ufrag(&self) -> &str {
        &self.cfg.local_ufrag
    }

    /// Our password (send it in the rendezvous `IceAuth`).
    pub fn local_pwd(&self) -> &str {
        &self.cfg.local_pwd
    }

    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the agent has failed (it then does nothing more).
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Sets the peer's credentials from the rendezvous (GNS derives the ufrag from the
    /// peer's connection id and sends only the password).
    pub fn set_remote_credentials(&mut self, ufrag: &str, pwd: &str) {
        self.remote_ufrag = Some(ufrag.to_owned());
        self.remote_pwd = Some(pwd.to_owned());
    }

    /// Adds one of our candidates; returns whether `P2P_Transport_ICE_Enable` permits it (only
    /// then advertise it). `prefix_len` is the interface's subnet prefix for host candidates
    /// (0 if unknown).
    pub fn add_local_candidate(&mut self, candidate: Candidate, prefix_len: u8) -> bool {
        let bit = type_bit(candidate.kind, candidate.address);
        if bit & self.allowed == 0 || self.locals.iter().any(|l| l.candidate == candidate) {
            return false;
        }
        self.local_types |= bit;
        let via = match candidate.kind {
            CandidateKind::Host => Some(Via::Direct),
            CandidateKind::Relayed => Some(Via::Relay),
            _ => None,
        };
        self.locals.push(Local {
            candidate,
            prefix_len,
            via,
        });
        self.pair_up();
        true
    }

    /// Adds (or updates) a candidate from the peer.
    pub fn add_remote_candidate(&mut self, c: Candidate) -> Result<(), IceError> {
        let bit = type_bit(c.kind, c.address);
        if bit == 0 {
            return Err(IceError::Unusable);
        }
        self.remote_types |= bit;
        if let Some(i) = self.remotes.iter().position(|r| r.address == c.address) {
            // A peer-reflexive candidate learned from a check, now signaled with its real
            // type: update the pairs' copies (GNS does the same).
            self.remotes[i] = c.clone();
            for p in &mut self.pairs {
                if p.remote.address == c.address {
                    p.remote = c.clone();
                }
            }
            self.recompute_priorities();
            return Ok(());
        }
        if self.remotes.len() >= self.cfg.max_remote_candidates {
            return Err(IceError::TooManyCandidates);
        }
        self.remotes.push(c);
        self.pair_up();
        Ok(())
    }

    /// The peer says it has sent all its candidates.
    pub fn set_remote_complete(&mut self) {
        self.remote_complete = true;
    }

    /// We have gathered all our candidates.
    pub fn set_local_complete(&mut self) {
        self.local_complete = true;
    }

    /// Records why a kind of candidate could not be gathered (STUN or TURN failure), to say
    /// so if ICE fails.
    pub fn note_gathering_failure(&mut self, text: &str) {
        if self.notes.len() < 8 {
            self.notes.push(text.to_owned());
        }
    }

    /// The selected path, if any.
    pub fn selected(&self) -> Option<SelectedPath> {
        self.selected.map(|i| self.path(i))
    }

    /// Whether `addr` is one of the peer's candidates (signaled, or learned as peer-reflexive
    /// from an authenticated check): datagrams from it belong to this session.
    pub fn knows_remote(&self, addr: SocketAddr) -> bool {
        self.remotes.iter().any(|r| r.address == addr)
    }

    /// Whether a response with this transaction id answers one of our checks.
    pub fn owns_transaction(&self, tid: &TransactionId) -> bool {
        self.pairs
            .iter()
            .any(|p| p.check.as_ref().is_some_and(|c| c.tid == *tid))
            || self.consent.as_ref().is_some_and(|(_, c)| c.tid == *tid)
    }

    fn path(&self, i: usize) -> SelectedPath {
        let p = &self.pairs[i];
        let route = if p.via == Via::Relay || p.remote.kind == CandidateKind::Relayed {
            RouteKind::Relayed
        } else if matches!(
            p.remote.kind,
            CandidateKind::Host | CandidateKind::PeerReflexive
        ) && self.locals.iter().any(|l| {
            l.candidate.kind == CandidateKind::Host
                && on_local_subnet(l.candidate.address, l.prefix_len, p.remote.address)
        }) {
            RouteKind::ProbablyLocal
        } else {
            RouteKind::Udp
        };
        SelectedPath {
            local: self.locals[p.local].candidate.clone(),
            remote: p.remote.clone(),
            via: p.via,
            route,
            rtt: p.rtt.unwrap_or_default(),
        }
    }

    fn pair_up(&mut self) {
        for (li, l) in self.locals.iter().enumerate() {
            let Some(via) = l.via else { continue };
            for r in &self.remotes {
                if l.candidate.address.is_ipv4() != r.address.is_ipv4() {
                    continue;
                }
                if self.pairs.len() >= MAX_PAIRS {
                    return;
                }
                if self
                    .pairs
                    .iter()
                    .any(|p| p.via == via && p.remote.address == r.address)
                {
                    continue;
                }
                let local_subnet = via == Via::Direct
                    && on_local_subnet(l.candidate.address, l.prefix_len, r.address);
                self.pairs.push(Pair {
                    local: li,
                    via,
                    remote: r.clone(),
                    priority: 0,
                    state: PairState::Frozen,
                    nominated: false,
                    check: None,
                    rtt: None,
                    local_subnet,
                });
            }
        }
        self.recompute_priorities();
    }

    fn recompute_priorities(&mut self) {
        for p in &mut self.pairs {
            let local = self.locals[p.local].candidate.priority;
            p.priority = match self.role {
                Role::Controlling => pair_priority(local, p.remote.priority),
                Role::Controlled => pair_priority(p.remote.priority, local),
            };
        }
    }

    /// GNS's route preference: same private subnet first, then pair priority.
    fn better(&self, a: usize, b: usize) -> bool {
        let (a, b) = (&self.pairs[a], &self.pairs[b]);
        if a.local_subnet != b.local_subnet {
            return a.local_subnet;
        }
        a.priority > b.priority
    }

    fn best_by<F: Fn(&Pair) -> bool>(&self, f: F) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, p) in self.pairs.iter().enumerate() {
            if f(p) && best.is_none_or(|b| self.better(i, b)) {
                best = Some(i);
            }
        }
        best
    }

    fn build_check(&self, i: usize, use_candidate: bool) -> Option<(TransactionId, Vec<u8>)> {
        let (ufrag, pwd) = (self.remote_ufrag.as_ref()?, self.remote_pwd.as_ref()?);
        let tid = TransactionId::random()?;
        let local = &self.locals[self.pairs[i].local].candidate;
        let local_pref = ((local.priority >> 8) & 0xFFFF) as u16;
        let mut b = MessageBuilder::new(MessageType::new(Method::BINDING, Class::Request), tid);
        b.add(
            attr::USERNAME,
            format!("{ufrag}:{}", self.cfg.local_ufrag).as_bytes(),
        )
        .u32(
            attr::PRIORITY,
            priority(CandidateKind::PeerReflexive, local_pref),
        );
        match self.role {
            Role::Controlling => {
                b.u64(attr::ICE_CONTROLLING, self.cfg.tiebreaker);
                if use_candidate {
                    b.add(attr::USE_CANDIDATE, &[]);
                }
            }
            Role::Controlled => {
                b.u64(attr::ICE_CONTROLLED, self.cfg.tiebreaker);
            }
        }
        b.integrity(Integrity::Sha1, pwd.as_bytes()).fingerprint();
        b.into_bytes().ok().map(|bytes| (tid, bytes))
    }

    fn start_check(&mut self, i: usize, now: Timestamp) {
        let use_candidate = self.role == Role::Controlling && self.pairs[i].nominated;
        let Some((tid, bytes)) = self.build_check(i, use_candidate) else {
            return;
        };
        let p = &mut self.pairs[i];
        p.state = PairState::InProgress;
        p.check = Some(Check {
            tid,
            bytes,
            timer: RetransmitTimer::new(self.cfg.retransmit, now),
            use_candidate,
        });
        self.drive_check(i, now);
    }

    fn drive_check(&mut self, i: usize, now: Timestamp) {
        let p = &mut self.pairs[i];
        let Some(c) = &mut p.check else { return };
        match c.timer.poll(now) {
            TimerAction::Wait => {}
            TimerAction::Send => self.transmits.push_back(IceTransmit {
                via: p.via,
                destination: p.remote.address,
                payload: c.bytes.clone(),
            }),
            TimerAction::TimedOut => {
                p.check = None;
                p.state = PairState::Failed;
            }
        }
    }

    fn trigger(&mut self, i: usize, now: Timestamp) {
        let p = &mut self.pairs[i];
        if let Some(c) = &mut p.check {
            // Keep the transaction (an answer to it may be on its way); resend at once.
            c.timer.retrigger(now);
            self.drive_check(i, now);
        } else {
            p.state = PairState::Waiting;
            if !self.triggered.contains(&i) {
                self.triggered.push_back(i);
            }
        }
    }

    fn select(&mut self, i: usize, now: Timestamp) {
        if self.selected == Some(i) {
            return;
        }
        self.selected = Some(i);
        self.last_consent = Some(now);
        self.next_consent = Some(now + self.cfg.keepalive_interval);
        self.consent = None;
        self.events.push_back(IceEvent::Selected(self.path(i)));
    }

    fn switch_role(&mut self) {
        self.role = match self.role {
            Role::Controlling => Role::Controlled,
            Role::Controlled => Role::Controlling,
        };
        self.recompute_priorities();
        self.events.push_back(IceEvent::RoleChanged(self.role));
    }

    /// Offers a STUN message that came `via` the given path from `from`. Returns whether it
    /// was for this agent (a request with our ufrag, or an answer to one of our checks).
    pub fn handle_stun(
        &mut self,
        now: Timestamp,
        via: Via,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> bool {
        if self.failed || msg.typ.method != Method::BINDING {
            return false;
        }
        match msg.typ.class {
            Class::Request => self.on_request(now, via, from, msg),
            Class::Success | Class::Error => self.on_response(now, via, from, msg),
            Class::Indication => false,
        }
    }

    fn respond(
        &mut self,
        via: Via,
        to: SocketAddr,
        msg: &Message<'_>,
        error: Option<(u16, &str, &[u16])>,
    ) {
        let class = if error.is_some() {
            Class::Error
        } else {
            Class::Success
        };
        let mut b =
            MessageBuilder::new(MessageType::new(Method::BINDING, class), msg.transaction_id);
        match error {
            None => {
                b.xor_address(attr::XOR_MAPPED_ADDRESS, to);
            }
            Some((code, reason, unknown)) => {
                b.error_code(code, reason);
                if !unknown.is_empty() {
                    let v: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
                    b.add(attr::UNKNOWN_ATTRIBUTES, &v);
                }
            }
        }
        b.integrity(Integrity::Sha1, self.cfg.local_pwd.as_bytes())
            .fingerprint();
        if let Ok(payload) = b.into_bytes() {
            self.transmits.push_back(IceTransmit {
                via,
                destination: to,
                payload,
            });
        }
    }

    fn on_request(
        &mut self,
        now: Timestamp,
        via: Via,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> bool {
        let Some(username) = msg.username() else {
            return false;
        };
        let Some((ours, theirs)) = username.split_once(':') else {
            return false;
        };
        if ours != self.cfg.local_ufrag {
            return false;
        }
        if msg.verify_integrity(self.cfg.local_pwd.as_bytes()).is_err() {
            // For our ufrag but not signed with our password: forged or stale. Ours, dropped.
            return true;
        }
        match &self.remote_ufrag {
            Some(r) if r != theirs => return true,
            Some(_) => {}
            // The peer's check beat its signal: learn the ufrag now (GNS does this too).
            None => self.remote_ufrag = Some(theirs.to_owned()),
        }
        let unknown = msg.unknown_required(KNOWN);
        if !unknown.is_empty() {
            self.respond(via, from, msg, Some((420, "Unknown Attribute", &unknown)));
            return true;
        }
        // RFC 8445 7.3.1.1: role conflict.
        match (self.role, msg.ice_controlling(), msg.ice_controlled()) {
            (Role::Controlling, Some(theirs), _) => {
                if self.cfg.tiebreaker >= theirs {
                    self.respond(via, from, msg, Some((487, "Role Conflict", &[])));
                    return true;
                }
                self.switch_role();
            }
            (Role::Controlled, _, Some(theirs)) => {
                if self.cfg.tiebreaker >= theirs {
                    self.switch_role();
                } else {
                    self.respond(via, from, msg, Some((487, "Role Conflict", &[])));
                    return true;
                }
            }
            _ => {}
        }

        let i = match self
            .pairs
            .iter()
            .position(|p| p.via == via && p.remote.address == from)
        {
            Some(i) => Some(i),
            None => self.peer_reflexive_pair(via, from, msg.priority()),
        };
        if let Some(i) = i {
            let use_candidate = msg.use_candidate() && self.role == Role::Controlled;
            if self.pairs[i].state != PairState::Succeeded {
                if use_candidate {
                    self.pairs[i].nominated = true;
                }
                self.trigger(i, now);
            } else if use_candidate {
                self.pairs[i].nominated = true;
                let replace = self.selected.is_none_or(|s| s == i || self.better(i, s));
                if replace {
                    self.select(i, now);
                }
            }
        }
        self.respond(via, from, msg, None);
        true
    }

    fn peer_reflexive_pair(
        &mut self,
        via: Via,
        from: SocketAddr,
        prio: Option<u32>,
    ) -> Option<usize> {
        if !self.remotes.iter().any(|r| r.address == from) {
            if self.remotes.len() >= self.cfg.max_remote_candidates {
                return None;
            }
            let c = Candidate {
                foundation: format!("prflx{}", self.remotes.len()),
                component: 1,
                priority: prio.unwrap_or_else(|| priority(CandidateKind::PeerReflexive, 0)),
                address: from,
                kind: CandidateKind::PeerReflexive,
                related: None,
            };
            self.remote_types |= type_bit(c.kind, c.address);
            self.remotes.push(c);
        }
        // A pair for this exact path, even if pair_up would not make one (e.g. a check that
        // came through our relay from an address we only know directly).
        let local = self
            .locals
            .iter()
            .position(|l| l.via == Some(via) && l.candidate.address.is_ipv4() == from.is_ipv4())?;
        let remote = self.remotes.iter().find(|r| r.address == from)?.clone();
        if self.pairs.len() >= MAX_PAIRS {
            return None;
        }
        let local_subnet = via == Via::Direct
            && on_local_subnet(
                self.locals[local].candidate.address,
                self.locals[local].prefix_len,
                from,
            );
        self.pairs.push(Pair {
            local,
            via,
            remote,
            priority: 0,
            state: PairState::Frozen,
            nominated: false,
            check: None,
            rtt: None,
            local_subnet,
        });
        self.recompute_priorities();
        Some(self.pairs.len() - 1)
    }

    fn on_response(
        &mut self,
        now: Timestamp,
        via: Via,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> bool {
        let tid = msg.transaction_id;
        let Some(pwd) = self.remote_pwd.clone() else {
            return false;
        };
        // Consent check on the selected pair?
        if let Some((i, c)) = &self.consent {
            if c.tid == tid {
                let i = *i;
                if msg.verify_integrity(pwd.as_bytes()).is_ok()
                    && msg.typ.class == Class::Success
                    && self.pairs[i].remote.address == from
                    && self.pairs[i].via == via
                {
                    self.last_consent = Some(now);
                    self.consent = None;
                }
                return true;
            }
        }
        let Some(i) = self
            .pairs
            .iter()
            .position(|p| p.check.as_ref().is_some_and(|c| c.tid == tid))
        else {
            return false;
        };
        if msg.verify_integrity(pwd.as_bytes()).is_err() {
            return true;
        }
        let Some(check) = self.pairs[i].check.take() else {
            return true;
        };
        // RFC 8445 7.2.5.2.1: the answer must come back the way the request went.
        if self.pairs[i].remote.address != from || self.pairs[i].via != via {
            self.pairs[i].state = PairState::Failed;
            return true;
        }
        if msg.typ.class == Class::Error {
            if msg.error_code().is_some_and(|e| e.code == 487) {
                // We were wrong about our role: switch and check again.
                self.switch_role();
                self.pairs[i].state = PairState::Waiting;
                self.triggered.push_back(i);
            } else {
                self.pairs[i].state = PairState::Failed;
            }
            return true;
        }
        self.checks_answered += 1;
        let rtt = check
            .timer
            .last_sent()
            .map(|t| now.saturating_since(t))
            .unwrap_or_default();
        let p = &mut self.pairs[i];
        p.state = PairState::Succeeded;
        p.rtt = Some(rtt.max(Duration::from_micros(1)));
        // A better route than the one in use, or the first one.
        if self.selected.is_some_and(|s| s != i && !self.better(i, s)) {
            return true;
        }
        if self.pairs[i].nominated && (self.role == Role::Controlled || check.use_candidate) {
            self.select(i, now);
        } else if self.role == Role::Controlling {
            let upgrade = self.selected.is_some_and(|s| self.better(i, s));
            let already = self.pairs.iter().any(|p| {
                p.nominated && matches!(p.state, PairState::Waiting | PairState::InProgress)
            });
            if upgrade || (self.selected.is_none() && !already) {
                self.pairs[i].nominated = true;
                self.pairs[i].state = PairState::Waiting;
                self.triggered.push_back(i);
            }
        }
        true
    }

    fn fail(&mut self, end_reason: i32, debug: String) {
        if self.failed {
            return;
        }
        self.failed = true;
        self.transmits.clear();
        for p in &mut self.pairs {
            p.check = None;
        }
        self.consent = None;
        self.events
            .push_back(IceEvent::Failed(IceFailure { end_reason, debug }));
    }

    /// GNS's classification of why no pair worked.
    fn guess_failure(&self) -> (i32, String) {
        const PUBLIC: u32 = 0x04 | 0x400 | 0x08 | 0x800 | 0x01 | 0x100;
        let notes = if self.notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.notes.join("; "))
        };
        if self.remote_pwd.is_none() {
            return (
                END_MISC_P2P_RENDEZVOUS,
                format!("never received the peer's ICE credentials (signaling?){notes}"),
            );
        }
        if self.locals.is_empty() {
            return (
                END_MISC_INTERNAL_ERROR,
                format!("no local ICE candidates{notes}"),
            );
        }
        if self.remotes.is_empty() {
            return (
                END_MISC_GENERIC,
                format!("never received any remote ICE candidates{notes}"),
            );
        }
        if self.local_types & PUBLIC == 0 && self.allowed & PUBLIC != 0 {
            return (
                END_LOCAL_P2P_ICE_NO_PUBLIC_ADDRESSES,
                format!("could not determine our public address (STUN) and have no relay{notes}"),
            );
        }
        if self.remote_types & PUBLIC == 0 {
            return (
                END_REMOTE_P2P_ICE_NO_PUBLIC_ADDRESSES,
                format!("the peer sent no public, reflexive or relayed candidates{notes}"),
            );
        }
        (
            END_MISC_P2P_NAT_FIREWALL,
            format!(
                "NAT traversal failed: {} candidate pairs, {} checks answered{notes}",
                self.pairs.len(),
                self.checks_answered
            ),
        )
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<IceTransmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<IceEvent> {
        self.events.pop_front()
    }

    fn has_work(&self) -> bool {
        self.remote_pwd.is_some()
            && (!self.triggered.is_empty()
                || self
                    .pairs
                    .iter()
                    .any(|p| matches!(p.state, PairState::Frozen | PairState::Waiting)))
    }

    /// When [`IceAgent::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.failed {
            return None;
        }
        let mut t = Vec::with_capacity(8);
        t.extend(
            self.pairs
                .iter()
                .filter_map(|p| p.check.as_ref().map(|c| c.timer.deadline())),
        );
        if self.has_work() {
            t.push(self.next_check);
        }
        match self.selected {
            None => t.push(self.started + self.cfg.connect_timeout),
            Some(_) => {
                t.extend(self.next_consent);
                t.extend(self.consent.as_ref().map(|(_, c)| c.timer.deadline()));
                t.extend(self.last_consent.map(|l| l + self.cfg.consent_timeout));
            }
        }
        t.into_iter().min()
    }

    /// Runs timers: retransmissions, the next paced check, consent, failure.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.failed {
            return;
        }
        for i in 0..self.pairs.len() {
            if self.pairs[i].check.is_some() {
                self.drive_check(i, now);
            }
        }

        if let Some(s) = self.selected {
            if self
                .last_consent
                .is_some_and(|l| now >= l + self.cfg.consent_timeout)
            {
                let p = self.path(s);
                self.fail(
                    END_MISC_TIMEOUT,
                    format!(
                        "ICE consent lost: no answer from {} on the selected path for {} s",
                        p.remote.address,
                        self.cfg.consent_timeout.as_secs()
                    ),
                );
                return;
            }
            let mut consent_gave_up = false;
            if let Some((_, c)) = &mut self.consent {
                match c.timer.poll(now) {
                    TimerAction::Wait => {}
                    TimerAction::Send => {
                        let p = &self.pairs[s];
                        self.transmits.push_back(IceTransmit {
                            via: p.via,
                            destination: p.remote.address,
                            payload: c.bytes.clone(),
                        });
                    }
                    // Unanswered; consent_timeout decides whether that matters.
                    TimerAction::TimedOut => consent_gave_up = true,
                }
            }
            if consent_gave_up {
                self.consent = None;
            }
            if self.consent.is_none() && self.next_consent.is_some_and(|t| now >= t) {
                self.next_consent = Some(now + self.cfg.keepalive_interval);
                if let Some((tid, bytes)) = self.build_check(s, false) {
                    let mut timer = RetransmitTimer::new(self.cfg.retransmit, now);
                    timer.poll(now);
                    let p = &self.pairs[s];
                    self.transmits.push_back(IceTransmit {
                        via: p.via,
                        destination: p.remote.address,
                        payload: bytes.clone(),
                    });
                    self.consent = Some((
                        s,
                        Check {
                            tid,
                            bytes,
                            timer,
                            use_candidate: false,
                        },
                    ));
                }
            }
        } else if now >= self.started + self.cfg.connect_timeout {
            let (code, debug) = self.guess_failure();
            self.fail(code, debug);
            return;
        }

        if now >= self.next_check && self.remote_pwd.is_some() {
            if let Some(i) = self.next_pair_to_check() {
                self.next_check = now + self.cfg.check_interval;
                self.start_check(i, now);
            }
        }

        if self.selected.is_none()
            && self.local_complete
            && self.remote_complete
            && !self.pairs.is_empty()
            && self.triggered.is_empty()
            && self.pairs.iter().all(|p| p.state == PairState::Failed)
        {
            let (code, debug) = self.guess_failure();
            self.fail(code, debug);
        }
    }

    fn next_pair_to_check(&mut self) -> Option<usize> {
        while let Some(i) = self.triggered.pop_front() {
            if self.pairs[i].check.is_none() {
                return Some(i);
            }
        }
        if let Some(i) = self.best_by(|p| p.state == PairState::Waiting) {
            return Some(i);
        }
        // Unfreeze the best frozen pair of each foundation not already being checked.
        let mut busy: Vec<String> = self
            .pairs
            .iter()
            .filter(|p| p.state == PairState::InProgress)
            .map(|p| p.remote.foundation.clone())
            .collect();
        let mut order: Vec<usize> = (0..self.pairs.len())
            .filter(|&i| self.pairs[i].state == PairState::Frozen)
            .collect();
        order.sort_by(|&a, &b| {
            if self.better(a, b) {
                std::cmp::Ordering::Less
            } else if self.better(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        let mut first = None;
        for i in order {
            let f = &self.pairs[i].remote.foundation;
            if busy.contains(f) {
                continue;
            }
            busy.push(f.clone());
            self.pairs[i].state = PairState::Waiting;
            first.get_or_insert(i);
        }
        first
    }
}

#[cfg(test)]
mod tests;
