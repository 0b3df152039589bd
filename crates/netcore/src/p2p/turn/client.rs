//! The TURN client state machine (RFC 8656): one allocation on one server, shared by every
//! session of an endpoint, with a permission per peer IP and a channel per peer address.
//!
//! Life of an allocation:
//! 1. `Allocate` without credentials; the server answers 401 with REALM and NONCE.
//! 2. `Allocate` again with USERNAME, REALM, NONCE and MESSAGE-INTEGRITY keyed with
//!    MD5(username:realm:password). A second 401 means the credentials are wrong
//!    ([`TurnError::Unauthorized`]). A 438 (stale nonce) on any request takes the new nonce
//!    and sends the request again.
//! 3. Success gives the relayed address (our relayed candidate), the mapped address (a free
//!    server-reflexive candidate) and a lifetime; `Refresh` runs a minute before it ends.
//! 4. Per peer: `CreatePermission` (refreshed every 4 of its 5 minutes) lets the peer's
//!    datagrams in; `ChannelBind` (refreshed every 9 of its 10 minutes) replaces the 36-byte
//!    Send/Data indication framing with 4-byte ChannelData.
//!
//! Sans-IO: [`TurnClient::handle_input`] takes datagrams from the server (and unwraps relayed
//! peer data), [`TurnClient::send`] wraps a datagram for a peer, and the poll functions hand
//! out requests, timers and events.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use foldhash::HashMapExt;

use super::channel_data::{self, CHANNEL_MAX, CHANNEL_MIN};
use crate::p2p::demux::{classify, DatagramKind};
use crate::p2p::stun::attributes as attr;
use crate::p2p::stun::transaction::{Retransmit, RetransmitTimer, TimerAction};
use crate::p2p::stun::{
    long_term_key, Class, Integrity, Message, MessageBuilder, MessageType, Method, TransactionId,
};
use crate::p2p::Transmit;
use crate::time::Timestamp;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Permissions last 5 minutes (RFC 8656 9); refreshed after 4.
pub const PERMISSION_REFRESH: Duration = Duration::from_secs(240);
/// Channel bindings last 10 minutes (RFC 8656 12); refreshed after 9.
pub const CHANNEL_REFRESH: Duration = Duration::from_secs(540);
/// How many 438 (stale nonce) answers in a row one request may get before giving up.
const MAX_STALE_NONCE_RETRIES: u8 = 3;

/// What the client needs.
#[derive(Clone, Debug)]
pub struct TurnConfig {
    /// The server.
    pub server: SocketAddr,
    /// Long-term credential user name; empty for a server without authentication.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Retransmission schedule for every request.
    pub retransmit: Retransmit,
    /// SOFTWARE attribute, if any.
    pub software: Option<String>,
    /// Allocation lifetime to ask for (the server may shorten it); `None` takes its default.
    pub lifetime: Option<Duration>,
    /// Most peers (permissions, and channels) at once: a bound on state and server load.
    pub max_peers: usize,
    /// Relayed address family to ask for (REQUESTED-ADDRESS-FAMILY, RFC 8656 7.1): `Some(true)`
    /// IPv6, `Some(false)` IPv4; `None` takes the server's default, which RFC 8656 says is IPv4
    /// even for a client that reaches the server over IPv6.
    pub relay_ipv6: Option<bool>,
}

impl TurnConfig {
    /// A config with the defaults for everything but the server and credentials.
    pub fn new(server: SocketAddr, username: &str, password: &str) -> Self {
        TurnConfig {
            server,
            username: username.to_owned(),
            password: password.to_owned(),
            retransmit: Retransmit::INTERACTIVE,
            software: None,
            lifetime: None,
            max_peers: 1024,
            relay_ipv6: None,
        }
    }
}

/// Why something failed. The allocation-level ones arrive as [`TurnEvent::Failed`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TurnError {
    /// No answer after the whole retransmission schedule: server down or unreachable.
    #[error("TURN server did not answer (unreachable?)")]
    Timeout,
    /// 401 even with credentials: wrong user name or password.
    #[error("TURN server refused the credentials (wrong username or password)")]
    Unauthorized,
    /// 401 but no user name configured.
    #[error("TURN server requires credentials and none are configured")]
    NoCredentials,
    /// 403: the server does not allow this (peer address, or us).
    #[error("TURN server forbids it (403 {0})")]
    Forbidden(String),
    /// 437: the server has another allocation for our address (or none, for a refresh).
    #[error("TURN allocation mismatch (437)")]
    AllocationMismatch,
    /// 441: credentials do not match the allocation's.
    #[error("TURN wrong credentials for this allocation (441)")]
    WrongCredentials,
    /// 442: the server does not relay UDP.
    #[error("TURN server does not support UDP relaying (442)")]
    UnsupportedTransport,
    /// 443: peer address family differs from the allocation's.
    #[error("peer address family does not match the TURN allocation (443)")]
    AddressFamilyMismatch,
    /// 486: our user has too many allocations.
    #[error("TURN allocation quota reached (486)")]
    QuotaReached,
    /// 508: the server is out of relay ports or bandwidth.
    #[error("TURN server out of capacity (508)")]
    InsufficientCapacity,
    /// The server kept answering 438 with new nonces.
    #[error("TURN server kept sending stale-nonce errors")]
    StaleNonceLoop,
    /// Another error code.
    #[error("TURN server error {code} {reason}")]
    Rejected {
        /// ERROR-CODE.
        code: u16,
        /// Reason phrase.
        reason: String,
    },
    /// A success answer without what it must carry.
    #[error("bad TURN answer: {0}")]
    BadResponse(&'static str),
    /// No allocation (yet, or any more).
    #[error("no TURN allocation")]
    NotAllocated,
    /// Sending to a peer no permission was asked for.
    #[error("no TURN permission for this peer")]
    NoPermission,
    /// More peers than [`TurnConfig::max_peers`], or all channel numbers in use.
    #[error("too many TURN peers")]
    TooManyPeers,
    /// A message could not be encoded (payload too long).
    #[error("TURN message too long")]
    TooLong,
    /// The OS random source failed.
    #[error("OS random source failed")]
    Random,
}

impl TurnError {
    fn from_code(code: u16, reason: &str) -> TurnError {
        match code {
            401 => TurnError::Unauthorized,
            403 => TurnError::Forbidden(reason.to_owned()),
            437 => TurnError::AllocationMismatch,
            441 => TurnError::WrongCredentials,
            442 => TurnError::UnsupportedTransport,
            443 => TurnError::AddressFamilyMismatch,
            486 => TurnError::QuotaReached,
            508 => TurnError::InsufficientCapacity,
            _ => TurnError::Rejected {
                code,
                reason: reason.to_owned(),
            },
        }
    }
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation exists.
    Allocated {
        /// Our relayed transport address (the relayed ICE candidate).
        relayed: SocketAddr,
        /// Our address as the server sees it (a server-reflexive candidate).
        mapped: Option<SocketAddr>,
        /// Granted lifetime.
        lifetime: Duration,
    },
    /// A refresh succeeded.
    Refreshed {
        /// New lifetime.
        lifetime: Duration,
    },
    /// The server installed (or refreshed) a permission.
    PermissionCreated(IpAddr),
    /// A permission could not be installed.
    PermissionFailed {
        /// The peer IP.
        ip: IpAddr,
        /// Why.
        error: TurnError,
    },
    /// A channel is bound.
    ChannelBound {
        /// The peer.
        peer: SocketAddr,
        /// Its channel number.
        channel: u16,
    },
    /// A channel could not be bound (data still flows in indications).
    ChannelFailed {
        /// The peer.
        peer: SocketAddr,
        /// Why.
        error: TurnError,
    },
    /// The allocation failed or was lost.
    Failed(TurnError),
    /// [`TurnClient::release`] finished.
    Released,
}

/// The allocation's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AllocationState {
    /// Allocate in flight.
    Allocating,
    /// Usable.
    Allocated,
    /// Failed; see the error.
    Failed(TurnError),
    /// Released (lifetime 0 sent).
    Released,
}

/// What a datagram from the server was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnInput<'a> {
    /// Not from our server, or not TURN: offer it elsewhere.
    NotMine,
    /// Control traffic (or a datagram dropped as invalid); nothing more to do.
    Consumed,
    /// A peer's datagram, relayed.
    Data {
        /// The peer's address (as the relay sees it).
        peer: SocketAddr,
        /// Its bytes.
        payload: &'a [u8],
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Request {
    Allocate,
    Refresh { lifetime: u32 },
    CreatePermission(IpAddr),
    ChannelBind { peer: SocketAddr, channel: u16 },
}

struct Pending {
    tid: TransactionId,
    request: Request,
    bytes: Vec<u8>,
    timer: RetransmitTimer,
    stale_retries: u8,
}

struct Permission {
    installed: bool,
    refresh_at: Option<Timestamp>,
}

struct Channel {
    number: u16,
    bound: bool,
    refresh_at: Option<Timestamp>,
}

struct Credentials {
    realm: String,
    nonce: String,
    key: [u8; 16],
}

/// See the module docs.
pub struct TurnClient {
    config: TurnConfig,
    state: AllocationState,
    creds: Option<Credentials>,
    relayed: Option<SocketAddr>,
    mapped: Option<SocketAddr>,
    refresh_at: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    permissions: Map<IpAddr, Permission>,
    channels: Map<SocketAddr, Channel>,
    by_channel: Map<u16, SocketAddr>,
    next_channel: u16,
    pending: Vec<Pending>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TurnEvent>,
}

impl TurnClient {
    /// A client whose first Allocate goes out at `now` (call
    /// [`TurnClient::handle_timeout`] then).
    pub fn new(config: TurnConfig, now: Timestamp) -> Self {
        let mut c = TurnClient {
            config,
            state: AllocationState::Allocating,
            creds: None,
            relayed: None,
            mapped: None,
            refresh_at: None,
            expires_at: None,
            permissions: Map::new(),
            channels: Map::new(),
            by_channel: Map::new(),
            next_channel: CHANNEL_MIN,
            pending: Vec::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        c.request(Request::Allocate, now);
        c
    }

    /// The server.
    pub fn server(&self) -> SocketAddr {
        self.config.server
    }

    /// The allocation's state.
    pub fn state(&self) -> &AllocationState {
        &self.state
    }

    /// Our relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
            .filter(|_| self.state == AllocationState::Allocated)
    }

    /// Our address as the server saw it.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// When the allocation expires unless refreshed.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }

    /// The channel bound for `peer`, if any.
    pub fn channel(&self, peer: SocketAddr) -> Option<u16> {
        self.channels
            .get(&peer)
            .filter(|c| c.bound)
            .map(|c| c.number)
    }

    /// Whether the server confirmed a permission for `ip`.
    pub fn has_permission(&self, ip: IpAddr) -> bool {
        self.permissions.get(&ip).is_some_and(|p| p.installed)
    }

    /// Asks the server to let `ip`'s datagrams through (kept refreshed until
    /// [`TurnClient::remove_peer`]). Idempotent.
    pub fn create_permission(&mut self, ip: IpAddr, now: Timestamp) -> Result<(), TurnError> {
        if self.permissions.contains_key(&ip) {
            return Ok(());
        }
        if self.permissions.len() >= self.config.max_peers {
            return Err(TurnError::TooManyPeers);
        }
        self.permissions.insert(
            ip,
            Permission {
                installed: false,
                refresh_at: None,
            },
        );
        if self.state == AllocationState::Allocated {
            self.request(Request::CreatePermission(ip), now);
        }
        Ok(())
    }

    /// Binds a channel to `peer` (also installing the permission for its IP). Idempotent.
    pub fn bind_channel(&mut self, peer: SocketAddr, now: Timestamp) -> Result<(), TurnError> {
        if self.channels.contains_key(&peer) {
            return Ok(());
        }
        self.create_permission(peer.ip(), now)?;
        if self.channels.len() >= self.config.max_peers {
            return Err(TurnError::TooManyPeers);
        }
        let number = self.free_channel().ok_or(TurnError::TooManyPeers)?;
        self.channels.insert(
            peer,
            Channel {
                number,
                bound: false,
                refresh_at: None,
            },
        );
        self.by_channel.insert(number, peer);
        if self.state == AllocationState::Allocated {
            self.request(
                Request::ChannelBind {
                    peer,
                    channel: number,
                },
                now,
            );
        }
        Ok(())
    }

    /// Stops refreshing the permission and channel for `ip` (they lapse on the server).
    pub fn remove_peer(&mut self, ip: IpAddr) {
        self.permissions.remove(&ip);
        let gone: Vec<SocketAddr> = self
            .channels
            .keys()
            .filter(|a| a.ip() == ip)
            .copied()
            .collect();
        for peer in gone {
            if let Some(c) = self.channels.remove(&peer) {
                self.by_channel.remove(&c.number);
            }
        }
        self.pending.retain(|p| match &p.request {
            Request::CreatePermission(i) => *i != ip,
            Request::ChannelBind { peer, .. } => peer.ip() != ip,
            _ => true,
        });
    }

    fn free_channel(&mut self) -> Option<u16> {
        for _ in CHANNEL_MIN..=CHANNEL_MAX {
            let n = self.next_channel;
            self.next_channel = if n >= CHANNEL_MAX { CHANNEL_MIN } else { n + 1 };
            if !self.by_channel.contains_key(&n) {
                return Some(n);
            }
        }
        None
    }

    /// Wraps `payload` for `peer`: ChannelData once the channel is bound, a Send indication
    /// before. The peer must have a permission asked for (pending is enough: the server
    /// handles our datagrams in order).
    pub fn send(&self, peer: SocketAddr, payload: &[u8]) -> Result<Transmit, TurnError> {
        let mut out = Vec::new();
        let destination = self.wrap_into(peer, payload, &mut out)?;
        Ok(Transmit {
            destination,
            payload: out,
        })
    }

    /// [`TurnClient::send`] into a caller's buffer (cleared first), for the data path: no
    /// allocation per datagram once the channel is bound. Returns the server's address, where
    /// `out` must go.
    pub fn wrap_into(
        &self,
        peer: SocketAddr,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<SocketAddr, TurnError> {
        if self.state != AllocationState::Allocated {
            return Err(TurnError::NotAllocated);
        }
        if !self.permissions.contains_key(&peer.ip()) {
            return Err(TurnError::NoPermission);
        }
        out.clear();
        match self.channels.get(&peer) {
            Some(c) if c.bound => {
                channel_data::encode(c.number, payload, out).map_err(|_| TurnError::TooLong)?;
            }
            _ => {
                // Indications need no unique transaction id; a zero id costs no random bytes
                // per packet (GNS does the same).
                let mut b = MessageBuilder::new(
                    MessageType::new(Method::SEND, Class::Indication),
                    TransactionId::default(),
                );
                b.xor_address(attr::XOR_PEER_ADDRESS, peer)
                    .add(attr::DATA, payload);
                *out = b.into_bytes().map_err(|_| TurnError::TooLong)?;
            }
        }
        Ok(self.config.server)
    }

    /// Frees the allocation (Refresh with lifetime 0).
    pub fn release(&mut self, now: Timestamp) {
        if self.state == AllocationState::Allocated {
            self.pending.clear();
            self.request(Request::Refresh { lifetime: 0 }, now);
        } else {
            self.pending.clear();
            self.state = AllocationState::Released;
        }
    }

    /// Sends a Refresh now instead of when it is due (keeps the timers honest in tests, and
    /// lets an owner check the allocation after a network change).
    pub fn refresh_now(&mut self, now: Timestamp) {
        if self.state == AllocationState::Allocated
            && !self
                .pending
                .iter()
                .any(|p| matches!(p.request, Request::Refresh { .. }))
        {
            let lifetime = self.requested_lifetime();
            self.request(Request::Refresh { lifetime }, now);
        }
    }

    fn requested_lifetime(&self) -> u32 {
        self.config
            .lifetime
            .map_or(600, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
    }

    fn request(&mut self, request: Request, now: Timestamp) {
        let Some(tid) = TransactionId::random() else {
            self.fail(TurnError::Random);
            return;
        };
        match self.encode(&request, tid) {
            Ok(bytes) => self.pending.push(Pending {
                tid,
                request,
                bytes,
                timer: RetransmitTimer::new(self.config.retransmit, now),
                stale_retries: 0,
            }),
            Err(e) => self.fail(e),
        }
    }

    fn encode(&self, request: &Request, tid: TransactionId) -> Result<Vec<u8>, TurnError> {
        let method = match request {
            Request::Allocate => Method::ALLOCATE,
            Request::Refresh { .. } => Method::REFRESH,
            Request::CreatePermission(_) => Method::CREATE_PERMISSION,
            Request::ChannelBind { .. } => Method::CHANNEL_BIND,
        };
        let mut b = MessageBuilder::new(MessageType::new(method, Class::Request), tid);
        match request {
            Request::Allocate => {
                b.add(attr::REQUESTED_TRANSPORT, &attr::TRANSPORT_UDP);
                if let Some(v6) = self.config.relay_ipv6 {
                    b.add(
                        attr::REQUESTED_ADDRESS_FAMILY,
                        &[if v6 { 2 } else { 1 }, 0, 0, 0],
                    );
                }
                if let Some(l) = self.config.lifetime {
                    b.u32(
                        attr::LIFETIME,
                        u32::try_from(l.as_secs()).unwrap_or(u32::MAX),
                    );
                }
            }
            Request::Refresh { lifetime } => {
                b.u32(attr::LIFETIME, *lifetime);
            }
            Request::CreatePermission(ip) => {
                b.xor_address(attr::XOR_PEER_ADDRESS, SocketAddr::new(*ip, 0));
            }
            Request::ChannelBind { peer, channel } => {
                b.add(
                    attr::CHANNEL_NUMBER,
                    &[(channel >> 8) as u8, *channel as u8, 0, 0],
                );
                b.xor_address(attr::XOR_PEER_ADDRESS, *peer);
            }
        }
        if let Some(s) = &self.config.software {
            b.add(attr::SOFTWARE, s.as_bytes());
        }
        if let Some(c) = &self.creds {
            b.add(attr::USERNAME, self.config.username.as_bytes())
                .add(attr::REALM, c.realm.as_bytes())
                .add(attr::NONCE, c.nonce.as_bytes())
                .integrity(Integrity::Sha1, &c.key);
        }
        b.fingerprint();
        b.into_bytes().map_err(|_| TurnError::TooLong)
    }

    fn fail(&mut self, e: TurnError) {
        if matches!(
            self.state,
            AllocationState::Failed(_) | AllocationState::Released
        ) {
            return;
        }
        self.state = AllocationState::Failed(e.clone());
        self.pending.clear();
        self.refresh_at = None;
        for p in self.permissions.values_mut() {
            p.installed = false;
            p.refresh_at = None;
        }
        for c in self.channels.values_mut() {
            c.bound = false;
            c.refresh_at = None;
        }
        self.events.push_back(TurnEvent::Failed(e));
    }

    /// Handles a datagram; see [`TurnInput`].
    pub fn handle_input<'a>(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        datagram: &'a [u8],
    ) -> TurnInput<'a> {
        if from != self.config.server {
            return TurnInput::NotMine;
        }
        match classify(datagram) {
            DatagramKind::ChannelData => {
                let Ok(cd) = channel_data::decode(datagram) else {
                    return TurnInput::Consumed;
                };
                match self.by_channel.get(&cd.channel) {
                    Some(&peer) => TurnInput::Data {
                        peer,
                        payload: cd.data,
                    },
                    None => TurnInput::Consumed,
                }
            }
            DatagramKind::Stun => {
                let Ok(msg) = Message::decode(datagram) else {
                    return TurnInput::Consumed;
                };
                if msg.typ == MessageType::new(Method::DATA, Class::Indication) {
                    return match (msg.xor_address(attr::XOR_PEER_ADDRESS), msg.data()) {
                        (Some(peer), Some(payload))
                            if self.permissions.contains_key(&peer.ip()) =>
                        {
                            TurnInput::Data { peer, payload }
                        }
                        _ => TurnInput::Consumed,
                    };
                }
                match self
                    .pending
                    .iter()
                    .position(|p| p.tid == msg.transaction_id)
                {
                    Some(i) => {
                        self.on_response(now, i, &msg);
                        TurnInput::Consumed
                    }
                    // A STUN message from the server we did not ask for: perhaps an answer
                    // to a binding request someone else sent; leave it.
                    None => TurnInput::NotMine,
                }
            }
            _ => TurnInput::NotMine,
        }
    }

    fn on_response(&mut self, now: Timestamp, index: usize, msg: &Message<'_>) {
        let method = match self.pending[index].request {
            Request::Allocate => Method::ALLOCATE,
            Request::Refresh { .. } => Method::REFRESH,
            Request::CreatePermission(_) => Method::CREATE_PERMISSION,
            Request::ChannelBind { .. } => Method::CHANNEL_BIND,
        };
        if msg.typ.method != method {
            return;
        }
        // Answers to authenticated requests must be authenticated too, or anyone who sees
        // the transaction id could forge them. 401/438 challenges come without integrity.
        if let Some(c) = &self.creds {
            let challenge = msg.typ.class == Class::Error
                && msg
                    .error_code()
                    .is_some_and(|e| e.code == 401 || e.code == 438);
            if !challenge && msg.verify_integrity(&c.key).is_err() {
                return;
            }
        }
        let p = self.pending.remove(index);
        match msg.typ.class {
            Class::Success => self.on_success(now, p.request, msg),
            Class::Error => self.on_error(now, p, msg),
            _ => {}
        }
    }

    fn on_success(&mut self, now: Timestamp, request: Request, msg: &Message<'_>) {
        match request {
            Request::Allocate => {
                let Some(relayed) = msg.xor_address(attr::XOR_RELAYED_ADDRESS) else {
                    self.fail(TurnError::BadResponse(
                        "Allocate success without a relayed address",
                    ));
                    return;
                };
                let lifetime = Duration::from_secs(u64::from(msg.lifetime().unwrap_or(600)));
                self.relayed = Some(relayed);
                self.mapped = msg.xor_mapped_address();
                self.state = AllocationState::Allocated;
                self.schedule_refresh(now, lifetime);
                self.events.push_back(TurnEvent::Allocated {
                    relayed,
                    mapped: self.mapped,
                    lifetime,
                });
                // Peers asked for before the allocation existed.
                let ips: Vec<IpAddr> = self.permissions.keys().copied().collect();
                for ip in ips {
                    self.request(Request::CreatePermission(ip), now);
                }
                let chans: Vec<(SocketAddr, u16)> =
                    self.channels.iter().map(|(a, c)| (*a, c.number)).collect();
                for (peer, channel) in chans {
                    self.request(Request::ChannelBind { peer, channel }, now);
                }
            }
            Request::Refresh { lifetime: 0 } => {
                self.state = AllocationState::Released;
                self.refresh_at = None;
                self.pending.clear();
                self.events.push_back(TurnEvent::Released);
            }
            Request::Refresh { .. } => {
                let lifetime = Duration::from_secs(u64::from(msg.lifetime().unwrap_or(600)));
                self.schedule_refresh(now, lifetime);
                self.events.push_back(TurnEvent::Refreshed { lifetime });
            }
            Request::CreatePermission(ip) => {
                if let Some(p) = self.permissions.get_mut(&ip) {
                    p.installed = true;
                    p.refresh_at = Some(now + PERMISSION_REFRESH);
                    self.events.push_back(TurnEvent::PermissionCreated(ip));
                }
            }
            Request::ChannelBind { peer, channel } => {
                if let Some(c) = self.channels.get_mut(&peer) {
                    if c.number == channel {
                        c.bound = true;
                        c.refresh_at = Some(now + CHANNEL_REFRESH);
                        self.events
                            .push_back(TurnEvent::ChannelBound { peer, channel });
                    }
                }
                // A channel binding installs the permission too (RFC 8656 12.1).
                if let Some(p) = self.permissions.get_mut(&peer.ip()) {
                    p.installed = true;
                }
            }
        }
    }

    fn on_error(&mut self, now: Timestamp, p: Pending, msg: &Message<'_>) {
        let (code, reason) = msg
            .error_code()
            .map(|e| (e.code, e.reason.to_owned()))
            .unwrap_or((0, String::new()));
        let fresh_nonce = msg.nonce().map(str::to_owned);
        let realm = msg.realm().map(str::to_owned);
        let error = match (code, &p.request) {
            (401, Request::Allocate) if self.creds.is_none() => {
                if self.config.username.is_empty() {
                    TurnError::NoCredentials
                } else if let (Some(realm), Some(nonce)) = (realm, fresh_nonce) {
                    let key = long_term_key(&self.config.username, &realm, &self.config.password);
                    self.creds = Some(Credentials { realm, nonce, key });
                    self.request(Request::Allocate, now);
                    return;
                } else {
                    TurnError::BadResponse("401 without REALM and NONCE")
                }
            }
            (438, _) if fresh_nonce.is_some() && p.stale_retries < MAX_STALE_NONCE_RETRIES => {
                if let (Some(c), Some(nonce)) = (&mut self.creds, fresh_nonce) {
                    c.nonce = nonce;
                    if let Some(r) = realm {
                        if r != c.realm {
                            c.key = long_term_key(&self.config.username, &r, &self.config.password);
                            c.realm = r;
                        }
                    }
                }
                let retries = p.stale_retries + 1;
                let request = p.request;
                self.request(request, now);
                if let Some(last) = self.pending.last_mut() {
                    last.stale_retries = retries;
                }
                return;
            }
            (438, _) => TurnError::StaleNonceLoop,
            _ => TurnError::from_code(code, &reason),
        };
        match p.request {
            Request::Allocate | Request::Refresh { .. } => self.fail(error),
            Request::CreatePermission(ip) => {
                if let Some(perm) = self.permissions.get_mut(&ip) {
                    perm.installed = false;
                    // Try again at the next refresh tick rather than hammering the server.
                    perm.refresh_at = Some(now + PERMISSION_REFRESH);
                }
                self.events
                    .push_back(TurnEvent::PermissionFailed { ip, error });
            }
            Request::ChannelBind { peer, .. } => {
                if let Some(c) = self.channels.remove(&peer) {
                    self.by_channel.remove(&c.number);
                }
                self.events
                    .push_back(TurnEvent::ChannelFailed { peer, error });
            }
        }
    }

    fn schedule_refresh(&mut self, now: Timestamp, lifetime: Duration) {
        // A minute before expiry, as RFC 8656 7.1 suggests; half-way for short lifetimes.
        let lead = if lifetime > Duration::from_secs(120) {
            lifetime - Duration::from_secs(60)
        } else {
            lifetime / 2
        };
        self.refresh_at = Some(now + lead);
        self.expires_at = Some(now + lifetime);
    }

    /// Next datagram to send to the server.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<TurnEvent> {
        self.events.pop_front()
    }

    /// When [`TurnClient::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let mut t: Option<Timestamp> = None;
        let mut take = |x: Option<Timestamp>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for p in &self.pending {
            take(Some(p.timer.deadline()));
        }
        if self.state == AllocationState::Allocated {
            take(self.refresh_at);
            for p in self.permissions.values() {
                take(p.refresh_at);
            }
            for c in self.channels.values() {
                take(c.refresh_at);
            }
        }
        t
    }

    /// Sends due requests, retransmits, and starts due refreshes.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        if self.state == AllocationState::Allocated {
            if self.refresh_at.is_some_and(|t| t <= now) {
                self.refresh_at = None;
                let lifetime = self.requested_lifetime();
                self.request(Request::Refresh { lifetime }, now);
            }
            let due: Vec<IpAddr> = self
                .permissions
                .iter_mut()
                .filter(|(_, p)| p.refresh_at.is_some_and(|t| t <= now))
                .map(|(ip, p)| {
                    p.refresh_at = None;
                    *ip
                })
                .collect();
            for ip in due {
                self.request(Request::CreatePermission(ip), now);
            }
            let due: Vec<(SocketAddr, u16)> = self
                .channels
                .iter_mut()
                .filter(|(_, c)| c.refresh_at.is_some_and(|t| t <= now))
                .map(|(a, c)| {
                    c.refresh_at = None;
                    (*a, c.number)
                })
                .collect();
            for (peer, channel) in due {
                self.request(Request::ChannelBind { peer, channel }, now);
            }
        }
        let mut expired = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            let p = &mut self.pending[i];
            match p.timer.poll(now) {
                TimerAction::Wait => i += 1,
                TimerAction::Send => {
                    self.transmits.push_back(Transmit {
                        destination: self.config.server,
                        payload: p.bytes.clone(),
                    });
                    i += 1;
                }
                TimerAction::TimedOut => expired.push(self.pending.remove(i)),
            }
        }
        for p in expired {
            match p.request {
                Request::Allocate | Request::Refresh { .. } => self.fail(TurnError::Timeout),
                Request::CreatePermission(ip) => {
                    if let Some(perm) = self.permissions.get_mut(&ip) {
                        perm.refresh_at = Some(now + PERMISSION_REFRESH);
                    }
                    self.events.push_back(TurnEvent::PermissionFailed {
                        ip,
                        error: TurnError::Timeout,
                    });
                }
                Request::ChannelBind { peer, .. } => {
                    if let Some(c) = self.channels.remove(&peer) {
                        self.by_channel.remove(&c.number);
                    }
                    self.events.push_back(TurnEvent::ChannelFailed {
                        peer,
                        error: TurnError::Timeout,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
