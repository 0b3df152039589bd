//! One UDP socket's worth of connections: the handshake's answering side, demultiplexing
//! datagrams to connections by connection id, and the bounds on state kept for peers.
//!
//! Sans-IO like the rest of the core: datagrams and `now` in, datagrams out. A source earns
//! state only by echoing a cookie (`challenge`): a `ChallengeRequest` is answered without
//! remembering anything, and only a `ConnectRequest` carrying a valid cookie for its source
//! address creates a connection. The connection table is bounded, and answers to sources
//! without a connection are rate-limited per source IP and overall (`rate_limit`).
//!
//! The work of one wake-up follows the connections that have something to do, not the size
//! of the table: deadlines wait in a timer queue (`timer_queue`), and a connection is looked
//! at by [`Endpoint::poll_transmit`] only once something touched it — a datagram, a timer,
//! the owner taking `&mut` to it. Every path to a `&mut Connection` goes through
//! `Endpoint::touch`, which is what makes skipping the others safe.

pub mod challenge;
#[cfg(any(test, fuzzing))]
pub mod fuzz_checks;
pub mod rate_limit;
#[cfg(test)]
mod schedule_tests;
pub mod timer_queue;

use std::collections::HashMap;

/// Hash maps of the hot path: foldhash (randomly seeded per map) instead of SipHash, which
/// took ~5 % of a flooding sender's samples. Keys are bounded tables of ids and addresses
/// that completed a cookie handshake, so its lighter flood resistance is enough.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
use std::hash::Hasher;
use std::net::SocketAddr;

use siphasher::sip::SipHasher24;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::connection::{Connection, ConnectionConfig, InMessage};
use crate::crypto::session_keys::ConnectionIds;
use crate::crypto::session_setup::{self, ClientOffer, LocalSecurity};
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::control::{ChallengeReply, ConnectionClosed, ControlMessage, NoConnection};
use crate::wire::datagram::{classify, DataHeader, Lead, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use challenge::ChallengeKey;
use rate_limit::{Limiter, RateLimits, Verdict};
use timer_queue::TimerQueue;

/// Most connections one endpoint keeps; further peers are refused until some close, so a
/// flood of sources cannot grow the table without bound.
pub const MAX_CONNECTIONS: usize = 16_384;
/// Most control replies (challenge replies, NoConnection) queued at once; beyond it replies
/// are dropped, as a busy router would.
pub const MAX_CONTROL_OUT: usize = 1024;
/// The list of touched connections is pruned of entries for connections that are gone once
/// it is this many times longer than the table.
const MAX_TOUCHED_PER_CONNECTION: usize = 2;

/// Endpoint-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointStats {
    /// Datagrams that did not parse.
    pub dropped_malformed: u64,
    /// Connect requests refused because the connection table was full.
    pub dropped_table_full: u64,
    /// Datagrams a connection refused (duplicates, bad frames, back-pressure).
    pub dropped_by_connection: u64,
    /// Datagrams for no connection we know (answered with NoConnection).
    pub dropped_unknown_connection: u64,
    /// Connect requests with a bad or stale cookie, or an unsupported protocol version.
    pub dropped_bad_challenge: u64,
    /// Challenge requests answered.
    pub challenges_answered: u64,
    /// Connect requests refused for their certificate or crypt info.
    pub dropped_bad_crypto: u64,
    /// Datagrams from sources without a connection (challenge requests, data for unknown
    /// ids) left unanswered because their source IP's bucket was empty.
    pub rate_limited_source: u64,
    /// Such datagrams left unanswered because the endpoint-wide bucket was empty.
    pub rate_limited_global: u64,
}

/// What became of an incoming datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Accepted for a connection; `new` tells whether a peer's connect request just created it.
    Accepted {
        /// A new incoming connection.
        new: bool,
    },
    /// Handled without delivering anything (handshake traffic).
    Control,
    /// Dropped and counted.
    Dropped,
}

/// What an endpoint is given at start: its secrets and who it is.
pub struct EndpointSetup {
    /// Random bytes from the OS: keys the challenge cookies, seeds connection ids and the
    /// generator of ephemeral keys and nonces.
    pub secret: [u8; 32],
    /// Our identity key, certificate and trust policy.
    pub security: LocalSecurity,
    /// Unix time (seconds) at the driver's epoch, for certificate expiry checks.
    pub unix_at_epoch: u64,
}

impl EndpointSetup {
    /// A deterministic setup for tests: an unauthenticated endpoint whose secrets derive
    /// from `seed`.
    pub fn for_tests(seed: u8) -> Self {
        EndpointSetup {
            secret: [seed; 32],
            security: LocalSecurity::unauthenticated(crate::crypto::IdentityKey::from_seed(
                &[seed.wrapping_add(1); 32],
            )),
            unix_at_epoch: 1_800_000_000,
        }
    }
}

/// A connection and what the scheduler knows of it.
#[derive(Debug)]
struct Slot {
    /// Boxed: the table keeps spare slots, and an inline connection would make each cost
    /// a whole connection's size.
    conn: Box<Connection>,
    /// Tells this connection from an earlier one that had the same id (ids are reused only
    /// by chance, but `Endpoint::touched` may still name the earlier one).
    serial: u64,
    /// Listed in `Endpoint::touched`: it may have something to send and its deadline may
    /// have moved, so its timer is out of the queue until `poll_transmit` looks at it.
    touched: bool,
}

/// The connection table of one socket.
#[derive(Debug)]
pub struct Endpoint {
    conns: Map<u32, Slot>,
    by_addr: Map<SocketAddr, u32>,
    /// Deadlines of the connections not touched since `poll_transmit` last looked at them:
    /// exactly their `Connection::poll_timeout`, since nothing changed them since.
    timers: TimerQueue,
    /// Connections touched since the last `poll_transmit` (id, serial); entries whose slot is
    /// gone, was replaced or is no longer touched are skipped.
    touched: Vec<(u32, u64)>,
    next_serial: u64,
    cfg: ConnectionConfig,
    key: ChallengeKey,
    /// Budget for answering sources we have no connection with.
    limiter: Limiter,
    security: LocalSecurity,
    /// Ephemeral keys and nonces for handshakes (a CSPRNG seeded from the OS).
    rng: ChaCha20Rng,
    unix_at_epoch: u64,
    id_counter: u64,
    control_out: Vec<(SocketAddr, Vec<u8>)>,
    /// Connections that failed since the owner last asked (each reported once).
    newly_failed: Vec<SocketAddr>,
    stats: EndpointStats,
}

impl Endpoint {
    /// An endpoint whose connections use `cfg`.
    pub fn new(cfg: ConnectionConfig, setup: EndpointSetup) -> Self {
        let mut cookie_secret = [0u8; 16];
        cookie_secret.copy_from_slice(&setup.secret[..16]);
        let mut limiter_secret = [0u8; 16];
        limiter_secret.copy_from_slice(&setup.secret[16..]);
        let mut rng_seed = setup.secret;
        // Separate the generator's seed from the cookie key drawn from the same bytes.
        rng_seed[0] ^= 0x5a;
        Endpoint {
            conns: Map::default(),
            by_addr: Map::default(),
            timers: TimerQueue::new(),
            touched: Vec::new(),
            next_serial: 0,
            cfg,
            key: ChallengeKey::new(cookie_secret),
            limiter: Limiter::new(RateLimits::default(), limiter_secret),
            security: setup.security,
            rng: ChaCha20Rng::from_seed(rng_seed),
            unix_at_epoch: setup.unix_at_epoch,
            id_counter: 0,
            control_out: Vec::new(),
            newly_failed: Vec::new(),
            stats: EndpointStats::default(),
        }
    }

    /// Applies new connection settings to every connection, present and future.
    pub fn set_config(&mut self, now: Timestamp, cfg: ConnectionConfig) {
        self.cfg = cfg;
        let ids: Vec<u32> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.touch(id) {
                c.set_config(now, cfg);
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Changes the limits on answers to sources without a connection.
    pub fn set_rate_limits(&mut self, limits: RateLimits) {
        self.limiter.set_limits(limits);
    }

    /// Whether a stateless answer to `from` may go out now; counts it if not.
    fn may_answer(&mut self, from: SocketAddr, now: Timestamp) -> bool {
        match self.limiter.check(from, now) {
            Verdict::Allow => true,
            Verdict::SourceLimited => {
                self.stats.rate_limited_source += 1;
                false
            }
            Verdict::GlobalLimited => {
                self.stats.rate_limited_global += 1;
                false
            }
        }
    }

    /// Number of connections in the table (any state).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Bytes held for all peers (reliable until acknowledged, unreliable until sent), plus
    /// queued control replies.
    pub fn buffered_bytes(&self) -> usize {
        let control: usize = self.control_out.iter().map(|(_, d)| d.len()).sum();
        self.conns
            .values()
            .map(|s| s.conn.buffered_bytes())
            .sum::<usize>()
            + control
    }

    /// A fresh connection id: unpredictable to peers (keyed hash of a counter), nonzero and
    /// unused here.
    fn new_id(&mut self) -> u32 {
        loop {
            self.id_counter += 1;
            let mut h = SipHasher24::new_with_keys(0x6e6d_6964, self.id_counter);
            h.write_u64(
                self.key
                    .issue(SocketAddr::from(([0, 0, 0, 0], 0)), Timestamp::ZERO),
            );
            let id = h.finish() as u32;
            if id != 0 && !self.conns.contains_key(&id) {
                return id;
            }
        }
    }

    fn insert(&mut self, conn: Connection) {
        let id = conn.local_id();
        if let Some(old) = self.by_addr.insert(conn.remote(), id) {
            self.forget(old);
        }
        self.next_serial += 1;
        let slot = Slot {
            conn: Box::new(conn),
            serial: self.next_serial,
            touched: false,
        };
        self.conns.insert(id, slot);
        if self.touched.len() > MAX_TOUCHED_PER_CONNECTION * self.conns.len() {
            // Entries of connections gone pile up only while `poll_transmit` is not called.
            let conns = &self.conns;
            self.touched.retain(|(id, serial)| {
                conns
                    .get(id)
                    .is_some_and(|s| s.serial == *serial && s.touched)
            });
        }
        // A new connection has its first datagram to send.
        self.touch(id);
    }

    /// Drops the connection with id `id` and its timer (not its address entry).
    fn forget(&mut self, id: u32) {
        self.conns.remove(&id);
        self.timers.remove(id);
    }

    /// The connection with our id `id`, marked as touched. Every `&mut Connection` comes from
    /// here: whoever changes a connection may give it something to send or move its
    /// deadline, so it is listed for the next `poll_transmit` and its timer leaves the queue
    /// (`poll_timeout` and `handle_timeout` read touched connections directly).
    fn touch(&mut self, id: u32) -> Option<&mut Connection> {
        touch(&mut self.conns, &mut self.touched, &mut self.timers, id)
    }

    /// The touched connections, each once.
    fn touched_conns(&self) -> impl Iterator<Item = &Connection> {
        self.touched.iter().filter_map(|(id, serial)| {
            self.conns
                .get(id)
                .filter(|s| s.serial == *serial && s.touched)
                .map(|s| &*s.conn)
        })
    }

    /// Our identity when a certificate proves it.
    pub fn local_identity(&self) -> Option<&Identity> {
        self.security.identity()
    }

    fn now_unix(&self, now: Timestamp) -> u64 {
        self.unix_at_epoch + now.as_micros() / 1_000_000
    }

    fn random_offer(&mut self) -> ([u8; 32], u64) {
        let mut eph = [0u8; 32];
        self.rng.fill_bytes(&mut eph);
        (eph, self.rng.next_u64())
    }

    /// The connection to `remote`, opened (handshake started) if needed; `None` when the
    /// table is full. `expected` is the identity dialled when it is not an address.
    pub fn connect(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        expected: Option<Identity>,
    ) -> Option<&mut Connection> {
        if !self.by_addr.contains_key(&remote) {
            if self.conns.len() >= MAX_CONNECTIONS {
                return None;
            }
            let id = self.new_id();
            self.insert(Connection::connect(remote, self.cfg, now, id, expected));
        }
        let id = *self.by_addr.get(&remote)?;
        self.touch(id)
    }

    /// Whether control datagrams (challenge replies, closes) wait for `poll_transmit`.
    pub fn has_control_out(&self) -> bool {
        !self.control_out.is_empty()
    }

    /// The connection to `remote`, if open.
    pub fn connection(&self, remote: SocketAddr) -> Option<&Connection> {
        self.by_addr
            .get(&remote)
            .and_then(|id| self.conns.get(id))
            .map(|s| &*s.conn)
    }

    /// The connection to `remote`, if open, for changes (it is looked at by the next
    /// [`Endpoint::poll_transmit`]).
    pub fn connection_mut(&mut self, remote: SocketAddr) -> Option<&mut Connection> {
        let id = *self.by_addr.get(&remote)?;
        self.touch(id)
    }

    /// Forgets the connection to `remote`; `notify` is the datagram telling the peer (if any).
    pub fn close(&mut self, remote: SocketAddr, notify: Option<Vec<u8>>) {
        if let Some(id) = self.by_addr.remove(&remote) {
            self.forget(id);
        }
        if let Some(d) = notify {
            self.queue_control(remote, d);
        }
    }

    fn queue_control(&mut self, to: SocketAddr, datagram: Vec<u8>) {
        if self.control_out.len() < MAX_CONTROL_OUT {
            self.control_out.push((to, datagram));
        }
    }

    fn reply(&mut self, to: SocketAddr, msg: ControlMessage) {
        let mut d = Vec::new();
        if msg.encode(&mut d).is_ok() {
            self.queue_control(to, d);
        }
    }

    /// Handles one datagram from `from`, appending the messages it completed to `out`.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<InMessage>,
    ) -> Incoming {
        let r = self.dispatch(now, from, data, out);
        // Anything a datagram does to a connection happens to the one at its source address.
        if let Some(c) = self.connection_mut(from) {
            if c.take_new_failure() {
                self.newly_failed.push(from);
            }
        }
        r
    }

    fn dispatch(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<InMessage>,
    ) -> Incoming {
        let rng = &mut self.rng;
        self.key.rotate_if_due(now, || {
            let mut fresh = [0u8; 16];
            rng.fill_bytes(&mut fresh);
            fresh
        });
        match classify(data) {
            Ok(Lead::Data) => self.handle_data(now, from, data, out),
            Ok(Lead::Control(_)) => match ControlMessage::decode(data) {
                Ok(msg) => self.handle_control(now, from, msg),
                Err(_) => {
                    self.stats.dropped_malformed += 1;
                    Incoming::Dropped
                }
            },
            Err(_) => {
                self.stats.dropped_malformed += 1;
                Incoming::Dropped
            }
        }
    }

    fn handle_data(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<InMessage>,
    ) -> Incoming {
        let Ok((header, _)) = DataHeader::decode(data) else {
            self.stats.dropped_malformed += 1;
            return Incoming::Dropped;
        };
        // A connection id only counts from the address it belongs to.
        let Some(conn) = self.conn_for(Some(header.to_conn_id), from) else {
            self.stats.dropped_unknown_connection += 1;
            if !self.may_answer(from, now) {
                return Incoming::Dropped;
            }
            self.reply(
                from,
                ControlMessage::NoConnection(NoConnection {
                    from_connection_id: Some(header.to_conn_id),
                    to_connection_id: None,
                }),
            );
            return Incoming::Dropped;
        };
        if !conn.is_connected() {
            // Our connect is still in flight (its ConnectOK may be lost): the peer resends.
            self.stats.dropped_by_connection += 1;
            return Incoming::Dropped;
        }
        if conn.handle_datagram(now, data, out) {
            Incoming::Accepted { new: false }
        } else {
            self.stats.dropped_by_connection += 1;
            Incoming::Dropped
        }
    }

    fn handle_control(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        msg: ControlMessage,
    ) -> Incoming {
        match msg {
            ControlMessage::ChallengeRequest(req) => {
                let version = req.protocol_version.unwrap_or(0);
                if version < MIN_PROTOCOL_VERSION {
                    self.stats.dropped_bad_challenge += 1;
                    return Incoming::Dropped;
                }
                if !self.may_answer(from, now) {
                    return Incoming::Dropped;
                }
                self.stats.challenges_answered += 1;
                self.reply(
                    from,
                    ControlMessage::ChallengeReply(ChallengeReply {
                        connection_id: req.connection_id,
                        challenge: Some(self.key.issue(from, now)),
                        your_timestamp: req.my_timestamp,
                        protocol_version: Some(PROTOCOL_VERSION),
                    }),
                );
                Incoming::Control
            }
            ControlMessage::ChallengeReply(rep) => {
                let wants = self
                    .conn_for(rep.connection_id, from)
                    .is_some_and(|c| c.wants_challenge());
                if let (true, Some(challenge), Some(id)) = (wants, rep.challenge, rep.connection_id)
                {
                    let (eph, nonce) = self.random_offer();
                    let offer = ClientOffer::new(&self.security, eph, nonce);
                    let conn = touch(&mut self.conns, &mut self.touched, &mut self.timers, id);
                    if let Some(conn) = conn {
                        conn.on_challenge_reply(
                            now,
                            challenge,
                            rep.your_timestamp,
                            offer,
                            &self.security,
                        );
                    }
                }
                Incoming::Control
            }
            ControlMessage::ConnectRequest(req) => self.handle_connect_request(now, from, &req),
            ControlMessage::ConnectOk(ok) => {
                let now_unix = self.now_unix(now);
                let id = ok
                    .client_connection_id
                    .filter(|id| self.conns.get(id).is_some_and(|s| s.conn.remote() == from));
                let conn = id
                    .and_then(|id| touch(&mut self.conns, &mut self.touched, &mut self.timers, id));
                let refused = match conn {
                    Some(c) => c.on_connect_ok(now, &ok, &self.security, now_unix),
                    None => None,
                };
                if let Some(d) = refused {
                    self.queue_control(from, d);
                }
                Incoming::Control
            }
            ControlMessage::ConnectionClosed(c) => {
                if let Some(conn) = self.conn_for(c.to_connection_id, from) {
                    conn.on_peer_closed(c.reason_code.unwrap_or(0), c.debug.as_deref());
                }
                Incoming::Control
            }
            ControlMessage::NoConnection(n) => {
                // The peer has no connection with the id we send to: it restarted or forgot us.
                if let Some(conn) = self.connection_mut(from) {
                    if n.from_connection_id.is_some() && conn.remote_id() == n.from_connection_id {
                        conn.on_peer_has_no_connection();
                    }
                }
                Incoming::Control
            }
        }
    }

    /// The connection with our id `id`, if it belongs to `from`.
    fn conn_for(&mut self, id: Option<u32>, from: SocketAddr) -> Option<&mut Connection> {
        let id = id?;
        if self.conns.get(&id)?.conn.remote() != from {
            return None;
        }
        self.touch(id)
    }

    fn handle_connect_request(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        req: &crate::wire::control::ConnectRequest,
    ) -> Incoming {
        let (Some(client_id), Some(cookie)) = (req.client_connection_id, req.challenge) else {
            self.stats.dropped_malformed += 1;
            return Incoming::Dropped;
        };
        if !self.key.verify(from, now, cookie) {
            self.stats.dropped_bad_challenge += 1;
            return Incoming::Dropped;
        }
        let their_ts = req.my_timestamp.unwrap_or(0);
        enum Plan {
            ResendOk,
            Ignore,
            Adopt(u32),
            New,
        }
        let plan = match self.connection(from) {
            Some(c) if c.remote_id() == Some(client_id) && !c.is_connecting() => Plan::ResendOk,
            // Both sides opened at once. The attempt with the lower connection id wins on
            // both sides, so they agree on one connection without talking about it.
            Some(c) if c.is_connecting() && c.local_id() < client_id => Plan::Ignore,
            Some(c) if c.is_connecting() => Plan::Adopt(c.local_id()),
            // A late request from the peer's losing attempt: ours already won.
            Some(c) if c.initiated() && c.is_connected() && c.local_id() < client_id => {
                Plan::Ignore
            }
            // Otherwise (none, or the peer started over) a new connection.
            _ => Plan::New,
        };
        let local_id = match plan {
            Plan::ResendOk => {
                if let Some(c) = self.connection_mut(from) {
                    c.resend_connect_ok();
                }
                return Incoming::Control;
            }
            Plan::Ignore => return Incoming::Control,
            Plan::Adopt(id) => id,
            Plan::New => {
                if !self.by_addr.contains_key(&from) && self.conns.len() >= MAX_CONNECTIONS {
                    self.stats.dropped_table_full += 1;
                    return Incoming::Dropped;
                }
                self.new_id()
            }
        };
        let ids = ConnectionIds {
            local: local_id,
            remote: client_id,
        };
        let (eph, nonce) = self.random_offer();
        let now_unix = self.now_unix(now);
        let accepted =
            session_setup::accept_client(&self.security, req, ids, now_unix, from, eph, nonce);
        let (est, ok) = match accepted {
            Ok(accepted) => accepted,
            Err(refusal) => {
                // Keep nothing; tell the client why, so it fails at once with the reason.
                self.stats.dropped_bad_crypto += 1;
                self.reply(
                    from,
                    ControlMessage::ConnectionClosed(ConnectionClosed {
                        to_connection_id: Some(client_id),
                        from_connection_id: None,
                        debug: Some(refusal.debug),
                        reason_code: u32::try_from(refusal.end_reason).ok(),
                    }),
                );
                return Incoming::Dropped;
            }
        };
        if let Plan::Adopt(id) = plan {
            if let Some(c) = self.touch(id) {
                c.adopt_incoming(now, client_id, their_ts, est, ok);
            }
            return Incoming::Accepted { new: false };
        }
        self.insert(Connection::accept(
            from, self.cfg, now, local_id, client_id, their_ts, est, ok,
        ));
        Incoming::Accepted { new: true }
    }

    /// Calls `send` for every datagram ready to go, reusing `buf`.
    ///
    /// Only touched connections are looked at: an untouched one has not changed since it was
    /// last looked at, and whatever it will have to send comes due at its deadline, when
    /// [`Endpoint::handle_timeout`] touches it.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) {
        for (to, d) in self.control_out.drain(..) {
            send(to, &d);
        }
        // `send` cannot reach the endpoint, so nothing is touched while the list is out.
        let mut touched = std::mem::take(&mut self.touched);
        for (id, serial) in touched.drain(..) {
            let Some(slot) = self.conns.get_mut(&id) else {
                continue;
            };
            if slot.serial != serial || !slot.touched {
                continue;
            }
            slot.touched = false;
            while slot.conn.poll_transmit(now, buf) {
                send(slot.conn.remote(), buf);
            }
            self.timers.set(id, slot.conn.poll_timeout());
        }
        // Keep the allocation for the next wake-up.
        self.touched = touched;
    }

    /// The earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if !self.control_out.is_empty() {
            return Some(Timestamp::ZERO);
        }
        let touched = self
            .touched_conns()
            .filter_map(Connection::poll_timeout)
            .min();
        match (touched, self.timers.next()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the timers of every connection that is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        // Touched connections are out of the queue: ask each. The list holds each once.
        for i in 0..self.touched.len() {
            let Some(&(id, serial)) = self.touched.get(i) else {
                break;
            };
            let Some(slot) = self.conns.get_mut(&id) else {
                continue;
            };
            if slot.serial == serial
                && slot.touched
                && slot.conn.poll_timeout().is_some_and(|t| t <= now)
            {
                slot.conn.handle_timeout(now);
                if slot.conn.take_new_failure() {
                    self.newly_failed.push(slot.conn.remote());
                }
            }
        }
        // Then the due ones of the rest; touching them takes them out of the queue.
        while let Some(id) = self.timers.pop_due(now) {
            if let Some(c) = self.touch(id) {
                c.handle_timeout(now);
                if c.take_new_failure() {
                    let remote = c.remote();
                    self.newly_failed.push(remote);
                }
            }
        }
    }

    /// Addresses of connections that failed since the last call, each once.
    pub fn take_failed(&mut self) -> Vec<SocketAddr> {
        std::mem::take(&mut self.newly_failed)
    }
}

/// [`Endpoint::touch`] on the endpoint's parts, for callers that hold others borrowed.
fn touch<'a>(
    conns: &'a mut Map<u32, Slot>,
    touched: &mut Vec<(u32, u64)>,
    timers: &mut TimerQueue,
    id: u32,
) -> Option<&'a mut Connection> {
    let slot = conns.get_mut(&id)?;
    if !slot.touched {
        slot.touched = true;
        touched.push((id, slot.serial));
        timers.remove(id);
    }
    Some(&mut slot.conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const A: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
        1000,
    );
    const B: SocketAddr = SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
        2000,
    );

    /// Delivers everything each side sends to the other, `rounds` times; returns what was
    /// delivered to each (A's messages, B's messages) and whether B saw a new connection.
    fn exchange(
        a: &mut Endpoint,
        b: &mut Endpoint,
        now: Timestamp,
        rounds: usize,
    ) -> (Vec<InMessage>, Vec<InMessage>, usize) {
        let (mut got_a, mut got_b, mut new_b) = (Vec::new(), Vec::new(), 0);
        for _ in 0..rounds {
            let mut to_b = Vec::new();
            a.poll_transmit(now, &mut Vec::new(), |_, d| to_b.push(d.to_vec()));
            for d in to_b {
                if b.handle_datagram(now, A, &d, &mut got_b) == (Incoming::Accepted { new: true }) {
                    new_b += 1;
                }
            }
            let mut to_a = Vec::new();
            b.poll_transmit(now, &mut Vec::new(), |_, d| to_a.push(d.to_vec()));
            for d in to_a {
                a.handle_datagram(now, B, &d, &mut got_a);
            }
        }
        (got_a, got_b, new_b)
    }

    #[test]
    fn garbage_and_challenges_leave_no_state() {
        let mut ep = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(3));
        let mut out = Vec::new();
        let mut client = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(4));
        for port in 1..100u16 {
            let from = SocketAddr::from(([127, 0, 0, 1], port));
            let junk = [0x80, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &junk, &mut out),
                Incoming::Dropped
            );
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &[1, 2], &mut out),
                Incoming::Dropped
            );
            // A real ChallengeRequest is answered, statelessly.
            client.connect(Timestamp::ZERO, from, None);
            let mut reqs = Vec::new();
            client.poll_transmit(Timestamp::ZERO, &mut Vec::new(), |to, d| {
                if to == from {
                    reqs.push(d.to_vec())
                }
            });
            assert!(reqs[0].len() >= 512, "challenge requests are padded");
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &reqs[0], &mut out),
                Incoming::Control
            );
        }
        assert!(ep.conns.is_empty());
        assert_eq!(ep.stats().challenges_answered, 99);
    }

    fn challenge_request_from(client: &mut Endpoint, to: SocketAddr) -> Vec<u8> {
        client.connect(Timestamp::ZERO, to, None);
        let mut reqs = Vec::new();
        client.poll_transmit(Timestamp::ZERO, &mut Vec::new(), |dest, d| {
            if dest == to {
                reqs.push(d.to_vec())
            }
        });
        reqs.remove(0)
    }

    #[test]
    fn challenge_requests_are_rate_limited_per_source_and_overall() {
        use rate_limit::{Bucket, RateLimits};
        let mut ep = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(3));
        ep.set_rate_limits(RateLimits {
            per_source: Bucket {
                burst: 20,
                per_second: 10,
            },
            global: Bucket {
                burst: 100,
                per_second: 50,
            },
        });
        let mut client = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(4));
        let req = challenge_request_from(&mut client, B);
        let mut out = Vec::new();
        let t = Timestamp::from_micros(10_000_000);
        // 1,000 requests from one IP (many ports) within one second.
        let mut answered = 0;
        for i in 0..1000u64 {
            let from = SocketAddr::from(([192, 0, 2, 1], 1000 + i as u16));
            let now = t + Duration::from_millis(i);
            if ep.handle_datagram(now, from, &req, &mut out) == Incoming::Control {
                answered += 1;
            }
        }
        assert!((29..=31).contains(&answered), "{answered} answered");
        assert_eq!(ep.stats().challenges_answered, answered);
        assert_eq!(ep.stats().rate_limited_source, 1000 - answered);
        // Another source is still answered.
        let other = SocketAddr::from(([192, 0, 2, 2], 1));
        let now = t + Duration::from_millis(1000);
        assert_eq!(
            ep.handle_datagram(now, other, &req, &mut out),
            Incoming::Control
        );
        // Spoofed sources, one request each: the global cap holds.
        let before = ep.stats().challenges_answered;
        for i in 0..5000u32 {
            let from = SocketAddr::from((i.wrapping_mul(2_654_435_761).to_be_bytes(), 9));
            ep.handle_datagram(now, from, &req, &mut out);
        }
        let spoofed = ep.stats().challenges_answered - before;
        assert!(spoofed <= 100, "{spoofed} answered to spoofed sources");
        assert!(ep.stats().rate_limited_global >= 4900);
        assert!(ep.conns.is_empty());
        // What was queued is bounded too.
        let mut sent = 0;
        ep.poll_transmit(now, &mut Vec::new(), |_, _| sent += 1);
        assert!(sent <= MAX_CONTROL_OUT, "{sent} replies");
    }

    #[test]
    fn a_live_session_is_not_limited_by_a_flood_from_its_own_ip() {
        use rate_limit::{Bucket, RateLimits};
        let mut a = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(5));
        let mut b = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(6));
        b.set_rate_limits(RateLimits {
            per_source: Bucket {
                burst: 1,
                per_second: 1,
            },
            global: Bucket {
                burst: 1,
                per_second: 1,
            },
        });
        let t = Timestamp::from_micros(1_000_000);
        a.connect(t, B, None);
        exchange(&mut a, &mut b, t, 4);
        assert!(b.connection(A).unwrap().is_connected());
        // Drain both buckets with requests from A's IP, then garbage for unknown ids.
        let mut client = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(9));
        let req = challenge_request_from(&mut client, B);
        let mut out = Vec::new();
        for port in 3000..3100u16 {
            let from = SocketAddr::from(([127, 0, 0, 1], port));
            b.handle_datagram(t, from, &req, &mut out);
            b.handle_datagram(t, from, &[0x80, 1, 2, 3, 4, 0, 0, 9, 9, 9], &mut out);
        }
        assert!(b.stats().rate_limited_source + b.stats().rate_limited_global >= 198);
        a.connection_mut(B)
            .unwrap()
            .send(t, 0, true, true, b"still here")
            .unwrap();
        let (_, got_b, _) = exchange(&mut a, &mut b, t, 2);
        assert_eq!(got_b.len(), 1);
        assert_eq!(got_b[0].data.as_ref(), b"still here");
    }

    #[test]
    fn handshake_then_round_trip() {
        let mut a = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(5));
        let mut b = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(6));
        let t = Timestamp::from_micros(1_000_000);
        a.connect(t, B, None)
            .unwrap()
            .send(t, 4, true, true, b"hi")
            .unwrap();
        let (_, got_b, new_b) = exchange(&mut a, &mut b, t, 4);
        assert_eq!(new_b, 1);
        assert_eq!(got_b.len(), 1);
        assert_eq!(got_b[0].data.as_ref(), b"hi");
        assert_eq!(got_b[0].channel, 4);
        let ca = a.connection(B).unwrap();
        let cb = b.connection(A).unwrap();
        assert_eq!(ca.remote_id(), Some(cb.local_id()));
        assert_eq!(cb.remote_id(), Some(ca.local_id()));
    }

    #[test]
    fn a_forged_cookie_creates_nothing() {
        let mut a = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(5));
        let mut b = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(6));
        let t = Timestamp::from_micros(1_000_000);
        a.connect(t, B, None);
        let mut out = Vec::new();
        // Feed A a challenge reply with a made-up cookie, then pass its ConnectRequest to B.
        let id = a.connection(B).unwrap().local_id();
        let mut reply = Vec::new();
        ControlMessage::ChallengeReply(ChallengeReply {
            connection_id: Some(id),
            challenge: Some(12345),
            your_timestamp: None,
            protocol_version: Some(PROTOCOL_VERSION),
        })
        .encode(&mut reply)
        .unwrap();
        a.poll_transmit(t, &mut Vec::new(), |_, _| {});
        a.handle_datagram(t, B, &reply, &mut out);
        let mut to_b = Vec::new();
        a.poll_transmit(t, &mut Vec::new(), |_, d| to_b.push(d.to_vec()));
        assert_eq!(to_b.len(), 1);
        assert_eq!(
            b.handle_datagram(t, A, &to_b[0], &mut out),
            Incoming::Dropped
        );
        assert!(b.conns.is_empty());
        assert_eq!(b.stats().dropped_bad_challenge, 1);
    }

    #[test]
    fn simultaneous_open_ends_with_one_connection() {
        for seed in 0..20u8 {
            let mut a = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(seed));
            let mut b = Endpoint::new(
                ConnectionConfig::default(),
                EndpointSetup::for_tests(seed.wrapping_add(100)),
            );
            let t = Timestamp::from_micros(1_000_000);
            a.connect(t, B, None)
                .unwrap()
                .send(t, 1, true, true, b"from a")
                .unwrap();
            b.connect(t, A, None)
                .unwrap()
                .send(t, 1, true, true, b"from b")
                .unwrap();
            let (got_a, got_b, _) = exchange(&mut a, &mut b, t, 6);
            let ca = a.connection(B).unwrap();
            let cb = b.connection(A).unwrap();
            assert!(ca.is_connected() && cb.is_connected(), "seed {seed}");
            assert_eq!(ca.remote_id(), Some(cb.local_id()), "seed {seed}");
            assert_eq!(cb.remote_id(), Some(ca.local_id()), "seed {seed}");
            assert_eq!(got_a.len(), 1, "seed {seed}");
            assert_eq!(got_b.len(), 1, "seed {seed}");
            assert_eq!(got_a[0].data.as_ref(), b"from b");
            assert_eq!(got_b[0].data.as_ref(), b"from a");
        }
    }

    #[test]
    fn unreachable_peer_fails_within_timeout_initial() {
        let cfg = ConnectionConfig {
            timeout_initial: Duration::from_millis(2_000),
            ..ConnectionConfig::default()
        };
        let mut a = Endpoint::new(cfg, EndpointSetup::for_tests(5));
        let t = Timestamp::from_micros(1_000_000);
        a.connect(t, B, None);
        let mut now = t;
        let mut requests = 0;
        while a.connection(B).unwrap().failure().is_none() {
            a.poll_transmit(now, &mut Vec::new(), |_, _| requests += 1);
            now = a
                .poll_timeout()
                .expect("a connecting connection has a timer")
                .max(now);
            a.handle_timeout(now);
            assert!(now <= t + Duration::from_millis(2_000));
        }
        assert_eq!(now, t + Duration::from_millis(2_000));
        assert!((7..=9).contains(&requests), "{requests} challenge requests");
    }

    /// A at `A` connected to B at `B` (default settings, handshake done) and the time it
    /// finished.
    fn connected_pair() -> (Endpoint, Endpoint, Timestamp) {
        let mut a = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(5));
        let mut b = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(6));
        let t = Timestamp::from_micros(1_000_000);
        a.connect(t, B, None);
        exchange(&mut a, &mut b, t, 4);
        (a, b, t)
    }

    #[test]
    fn data_is_encrypted_and_tampering_or_replay_changes_nothing() {
        let (mut a, mut b, t) = connected_pair();
        let secret = b"known plaintext that must never be seen on the wire";
        a.connection_mut(B)
            .unwrap()
            .send(t, 0, true, true, secret)
            .unwrap();
        let mut wire = Vec::new();
        a.poll_transmit(t, &mut Vec::new(), |_, d| wire.push(d.to_vec()));
        assert_eq!(wire.len(), 1);
        let packet = &wire[0];
        assert!(
            !packet.windows(secret.len()).any(|w| w == secret),
            "plaintext visible on the wire"
        );
        // Every single-bit flip is dropped and counted; the connection lives on. (Bits 1-6 of
        // the lead byte are reserved flags that receivers ignore, as the reference does: the
        // clear header is not authenticated, and flipping them changes nothing.)
        let mut out = Vec::new();
        for bit in (0..packet.len() * 8).filter(|b| !(1..=6).contains(b)) {
            let mut bad = packet.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                b.handle_datagram(t, A, &bad, &mut out),
                Incoming::Dropped,
                "bit {bit}"
            );
        }
        assert!(out.is_empty());
        assert!(b.connection(A).unwrap().is_connected());
        // The genuine packet is delivered once; a replay of it is not.
        assert_eq!(
            b.handle_datagram(t, A, packet, &mut out),
            Incoming::Accepted { new: false }
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.as_ref(), secret);
        assert_eq!(b.handle_datagram(t, A, packet, &mut out), Incoming::Dropped);
        assert_eq!(out.len(), 1);
        assert!(b.connection(A).unwrap().stats().packets_unauthenticated > 0);
    }

    #[test]
    fn a_full_packet_of_small_messages_is_due_at_once() {
        let (mut a, _b, t) = connected_pair();
        assert!(a.connection(B).unwrap().is_connected());
        // Small Nagle messages: due at the Nagle timer, not now (the driver may sleep on).
        let t = t + Duration::from_millis(1);
        for _ in 0..4 {
            a.connection_mut(B)
                .unwrap()
                .send(t, 0, false, false, &[7; 32])
                .unwrap();
        }
        let due = a.poll_timeout().unwrap();
        assert!(due > t, "4 small messages must wait for Nagle, due {due:?}");
        // A full packet's worth waits for nothing: the owner must wake its driver.
        let mut queued = 4;
        while a.poll_timeout().is_some_and(|d| d > t) && queued < 100 {
            a.connection_mut(B)
                .unwrap()
                .send(t, 0, false, false, &[7; 32])
                .unwrap();
            queued += 1;
        }
        assert!(queued < 100, "a full packet queued and still not due");
        let mut sent = 0;
        a.poll_transmit(t, &mut Vec::new(), |_, _| sent += 1);
        assert!(sent >= 1);
        assert!(
            a.poll_timeout().is_some_and(|d| d > t),
            "due again after sending"
        );
    }
}
