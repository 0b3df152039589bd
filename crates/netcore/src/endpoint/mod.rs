//! One UDP socket's worth of connections: the handshake's answering side, demultiplexing
//! datagrams to connections by connection id, and the bounds on state kept for peers.
//!
//! Sans-IO like the rest of the core: datagrams and `now` in, datagrams out. A source earns
//! state only by echoing a cookie (`challenge`): a `ChallengeRequest` is answered without
//! remembering anything, and only a `ConnectRequest` carrying a valid cookie for its source
//! address creates a connection. The connection table is bounded, and answers to sources
//! without a connection are rate-limited per source IP and overall (`rate_limit`).
//!
//! Connections that ended still answer the peer, as the reference does: one the owner has not
//! forgotten yet stays in the table, closed, and answers the peer's packets with our
//! `ConnectionClosed` (we ended it) or `NoConnection` (the peer did); one we closed is
//! forgotten at once but leaves a small record ([`FIN_WAIT`]) that answers for it. A local
//! failure tells the peer when it happens. Every such answer is rate-limited per connection
//! and by the endpoint's budget for answers to strangers.
//!
//! The work of one wake-up follows the connections that have something to do, not the size
//! of the table: deadlines wait in a timer queue (`timer_queue`), and a connection is looked
//! at by [`Endpoint::poll_transmit`] only once something touched it — a datagram, a timer,
//! the owner taking `&mut` to it. Every path to a `&mut Connection` goes through
//! `Endpoint::touch`, which is what makes skipping the others safe.

pub mod challenge;
#[cfg(test)]
mod flood_tests;
#[cfg(any(test, fuzzing))]
pub mod fuzz_checks;
#[cfg(test)]
mod fuzz_seeds;
mod p2p;
#[cfg(test)]
mod peer_compat_tests;
pub mod rate_limit;
#[cfg(test)]
mod schedule_tests;
pub mod timer_queue;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Hash maps of the hot path: foldhash (randomly seeded per map) instead of SipHash, which
/// took ~5 % of a flooding sender's samples. Keys are bounded tables of ids and addresses
/// that completed a cookie handshake, so its lighter flood resistance is enough.
pub(crate) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;
use std::hash::Hasher;
use std::net::SocketAddr;
use std::sync::Arc;

use siphasher::sip::SipHasher24;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::connection::liveness::Liveness;
use crate::connection::state::answer_due;
use crate::connection::{Connection, ConnectionConfig, ConnectionState, InMessage, StrayAnswer};
use crate::crypto::session_keys::ConnectionIds;
use crate::crypto::session_setup::{self, ClientOffer, LocalSecurity};
use crate::end_reason::EndReason;
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::control::{ChallengeReply, ConnectionClosed, ControlMessage, NoConnection};
use crate::wire::datagram::{classify, DataHeader, Lead, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION};
use challenge::ChallengeKey;
use rate_limit::{Limiter, RateLimits, Verdict, HANDSHAKE_LIMITS};
use timer_queue::TimerQueue;

/// Most connections one endpoint keeps; further peers are refused until some close, so a
/// flood of sources cannot grow the table without bound.
pub const MAX_CONNECTIONS: usize = 16_384;
/// Most control replies (challenge replies, NoConnection) queued at once; beyond it replies
/// are dropped, as a busy router would.
pub const MAX_CONTROL_OUT: usize = 1024;
/// Room for control datagrams [`Endpoint::poll_transmit`] keeps once it sent them all.
const CONTROL_OUT_KEPT: usize = 64;
/// The list of touched connections is pruned of entries for connections that are gone once
/// it is this many times longer than the table.
const MAX_TOUCHED_PER_CONNECTION: usize = 2;
/// How long a connection we closed is remembered, to answer the peer's stray packets with our
/// `ConnectionClosed` (the reference's FinWait state lasts as long).
pub const FIN_WAIT: Duration = Duration::from_secs(5);

/// Endpoint-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointStats {
    /// Datagrams received (every one handed to [`Endpoint::handle_datagram`]).
    pub datagrams_received: u64,
    /// Their bytes (UDP payload).
    pub bytes_received: u64,
    /// Datagrams sent (every one [`Endpoint::poll_transmit`] handed out).
    pub datagrams_sent: u64,
    /// Their bytes (UDP payload).
    pub bytes_sent: u64,
    /// Data packets for a live connection that failed authentication (forged, damaged, or
    /// sealed for another session): dropped before they change anything.
    pub dropped_unauthenticated: u64,
    /// Data packets dropped as replays (a packet number seen before, or older than the
    /// replay window).
    pub dropped_replayed: u64,
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
    /// Handshakes run: connect requests whose certificate and crypt info were checked and
    /// answered with a key exchange, and `ConnectOK`s checked (the expensive work).
    pub handshakes: u64,
    /// Valid connect requests (and `ConnectOK`s) left unanswered because their source IP's
    /// handshake budget was empty (the peer retries).
    pub handshakes_limited_source: u64,
    /// Such requests left unanswered because the endpoint-wide handshake budget was empty.
    pub handshakes_limited_global: u64,
    /// Connect requests with a new client id refused because the connection at their
    /// address still answers (a replayed request, or a peer that has not restarted).
    pub refused_connect_live: u64,
    /// Connections given up because their peer stopped answering probes after asking for
    /// a new connection (it restarted and says nothing).
    pub peers_gone_silent: u64,
    /// Control messages naming one of our connections, from another address.
    pub refused_wrong_source: u64,
    /// Closes from a connection's address that name another peer connection id.
    pub refused_wrong_peer_id: u64,
    /// Datagrams for a connection that ended, answered with `ConnectionClosed` or
    /// `NoConnection` (at most one answer per connection per quarter second).
    pub answered_closed: u64,
}

/// A connection of an endpoint: its id and a serial that tells it from an earlier connection
/// that had the same id. Cheap to copy and compare; a handle to a connection that is gone
/// finds nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionHandle {
    id: u32,
    serial: u64,
}

impl ConnectionHandle {
    /// Our connection id (what the peer addresses its packets to).
    pub fn id(self) -> u32 {
        self.id
    }

    /// The endpoint-wide serial number: unique among the endpoint's connections, ever.
    pub fn serial(self) -> u64 {
        self.serial
    }
}

impl EndpointStats {
    /// Adds `other`'s counters to these (for an instance with several endpoints, or the
    /// shards of one port).
    pub fn add(&mut self, other: &EndpointStats) {
        self.datagrams_received += other.datagrams_received;
        self.bytes_received += other.bytes_received;
        self.datagrams_sent += other.datagrams_sent;
        self.bytes_sent += other.bytes_sent;
        self.dropped_unauthenticated += other.dropped_unauthenticated;
        self.dropped_replayed += other.dropped_replayed;
        self.dropped_malformed += other.dropped_malformed;
        self.dropped_table_full += other.dropped_table_full;
        self.dropped_by_connection += other.dropped_by_connection;
        self.dropped_unknown_connection += other.dropped_unknown_connection;
        self.dropped_bad_challenge += other.dropped_bad_challenge;
        self.challenges_answered += other.challenges_answered;
        self.dropped_bad_crypto += other.dropped_bad_crypto;
        self.rate_limited_source += other.rate_limited_source;
        self.rate_limited_global += other.rate_limited_global;
        self.handshakes += other.handshakes;
        self.handshakes_limited_source += other.handshakes_limited_source;
        self.handshakes_limited_global += other.handshakes_limited_global;
        self.refused_connect_live += other.refused_connect_live;
        self.peers_gone_silent += other.peers_gone_silent;
        self.refused_wrong_source += other.refused_wrong_source;
        self.refused_wrong_peer_id += other.refused_wrong_peer_id;
        self.answered_closed += other.answered_closed;
    }
}

/// What a valid `ConnectRequest` that matches no connection of ours does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IncomingPolicy {
    /// Answer at once: the connection is established as soon as the peer hears us (the
    /// messages model, whose sessions gate delivery above). At most one connection per peer
    /// address: a new request from an address replaces the connection there (the peer
    /// started over), so one source cannot fill the table.
    Answer,
    /// Keep the connection waiting for [`Endpoint::accept`] (the connection API's
    /// listen sockets).
    Hold,
    /// No new connections from peers (a socket that only dials out).
    Refuse,
}

/// A connection's public state changed (including its creation, from `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionEvent {
    /// The connection.
    pub conn: ConnectionHandle,
    /// The state last reported.
    pub old: ConnectionState,
    /// The state now.
    pub new: ConnectionState,
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
#[cfg_attr(any(test, fuzzing), derive(Clone))]
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

/// A connection we closed, remembered for [`FIN_WAIT`] to answer the peer's packets for it.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct Closed {
    remote: SocketAddr,
    answer: StrayAnswer,
    until: Timestamp,
    last_answer: Option<Timestamp>,
}

/// The connection table of one socket. (Cloned only by the fuzz harness, which snapshots
/// an established pair once and replays inputs against copies.)
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct Endpoint {
    conns: Map<u32, Slot>,
    /// Connections whose peer id we know, by the peer's address and id: what a resent
    /// `ConnectRequest`, or a `NoConnection` naming only the peer's side, is matched with.
    by_remote: Map<(SocketAddr, u32), u32>,
    /// Connections we dialled, by address, while the simultaneous-open rule applies to
    /// them: a request from that address meets our own attempt.
    dialled: Map<SocketAddr, u32>,
    /// With [`IncomingPolicy::Answer`], the one connection at each address.
    by_addr: Map<SocketAddr, u32>,
    /// Connections we closed, by our id, for [`FIN_WAIT`]; at most [`MAX_CONNECTIONS`].
    closed: Map<u32, Closed>,
    /// Their ids in the order they expire.
    closed_order: VecDeque<u32>,
    /// Deadlines of the connections not touched since `poll_transmit` last looked at them:
    /// exactly their `Connection::poll_timeout`, since nothing changed them since.
    timers: TimerQueue,
    /// Connections touched since the last `poll_transmit` (id, serial); entries whose slot is
    /// gone, was replaced or is no longer touched are skipped.
    touched: Vec<(u32, u64)>,
    next_serial: u64,
    /// The settings new connections take, shared with every connection that has them.
    cfg: Arc<ConnectionConfig>,
    incoming: IncomingPolicy,
    key: ChallengeKey,
    /// Budget for answering sources we have no connection with.
    limiter: Limiter,
    /// Budget for the expensive work of a handshake (signature checks, key exchange).
    handshake_limiter: Limiter,
    security: LocalSecurity,
    /// Ephemeral keys and nonces for handshakes (a CSPRNG seeded from the OS).
    rng: ChaCha20Rng,
    unix_at_epoch: u64,
    id_counter: u64,
    control_out: Vec<(SocketAddr, Vec<u8>)>,
    /// State changes not yet taken by the owner, in order.
    events: VecDeque<ConnectionEvent>,
    stats: EndpointStats,
    /// The latest `now` any call was given (calls without one, like `close`, use it).
    latest: Timestamp,
}

impl Endpoint {
    /// An endpoint whose connections use `cfg` and that answers peers' requests at once.
    pub fn new(cfg: ConnectionConfig, setup: EndpointSetup) -> Self {
        let mut cookie_secret = [0u8; 16];
        cookie_secret.copy_from_slice(&setup.secret[..16]);
        let mut limiter_secret = [0u8; 16];
        limiter_secret.copy_from_slice(&setup.secret[16..]);
        // Another bucket choice for the handshake budget, so colliding sources differ.
        let mut handshake_secret = limiter_secret;
        handshake_secret[0] ^= 0xa5;
        let mut rng_seed = setup.secret;
        // Separate the generator's seed from the cookie key drawn from the same bytes.
        rng_seed[0] ^= 0x5a;
        Endpoint {
            conns: Map::default(),
            by_remote: Map::default(),
            dialled: Map::default(),
            by_addr: Map::default(),
            closed: Map::default(),
            closed_order: VecDeque::new(),
            timers: TimerQueue::new(),
            touched: Vec::new(),
            next_serial: 0,
            cfg: Arc::new(cfg),
            incoming: IncomingPolicy::Answer,
            key: ChallengeKey::new(cookie_secret),
            limiter: Limiter::new(RateLimits::default(), limiter_secret),
            handshake_limiter: Limiter::new(HANDSHAKE_LIMITS, handshake_secret),
            security: setup.security,
            rng: ChaCha20Rng::from_seed(rng_seed),
            unix_at_epoch: setup.unix_at_epoch,
            id_counter: 0,
            control_out: Vec::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
            latest: Timestamp::ZERO,
        }
    }

    /// Sets what a peer's new connect request does.
    pub fn set_incoming(&mut self, policy: IncomingPolicy) {
        self.incoming = policy;
    }

    /// Applies new connection settings to every connection, present and future.
    pub fn set_config(&mut self, now: Timestamp, cfg: ConnectionConfig) {
        let cfg = Arc::new(cfg);
        self.cfg = cfg.clone();
        let ids: Vec<u32> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.touch(id) {
                c.set_config(now, cfg.clone());
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

    /// Changes the budget for handshakes (see [`rate_limit::HANDSHAKE_LIMITS`]).
    pub fn set_handshake_limits(&mut self, limits: RateLimits) {
        self.handshake_limiter.set_limits(limits);
    }

    /// Whether the expensive part of a handshake with `from` may run now; counts it
    /// either way.
    fn may_handshake(&mut self, from: SocketAddr, now: Timestamp) -> bool {
        match self.handshake_limiter.check(from, now) {
            Verdict::Allow => {
                self.stats.handshakes += 1;
                true
            }
            Verdict::SourceLimited => {
                self.stats.handshakes_limited_source += 1;
                false
            }
            Verdict::GlobalLimited => {
                self.stats.handshakes_limited_global += 1;
                false
            }
        }
    }

    /// The cookie this endpoint gives `addr` now: for tests that play an attacker who sees
    /// the path.
    #[cfg(any(test, fuzzing))]
    pub fn cookie_for(&self, addr: SocketAddr, now: Timestamp) -> u64 {
        self.key.issue(addr, now)
    }

    /// Forgets the per-source rate limit tables (every source's bucket full again), so a
    /// copy of the endpoint costs kilobytes, not a hundred: for the fuzz harness's snapshots.
    #[cfg(any(test, fuzzing))]
    pub fn forget_rate_limit_tables(&mut self) {
        self.limiter.forget_sources();
        self.handshake_limiter.forget_sources();
    }

    /// Whether a stateless answer to `from` may go out now; counts it if not.
    fn may_answer(&mut self, from: SocketAddr, now: Timestamp) -> bool {
        match self.limiter.check(from, now) {
            Verdict::Allow => true,
            Verdict::SourceLimited => {
                self.stats.rate_limited_source += 1;
                tracing::debug!(%from, "no answer to an unknown source: its rate limit is spent");
                false
            }
            Verdict::GlobalLimited => {
                self.stats.rate_limited_global += 1;
                tracing::debug!(%from, "no answer to an unknown source: the endpoint-wide rate limit is spent");
                false
            }
        }
    }

    /// Number of connections in the table (any state).
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Every connection, in no particular order.
    pub fn handles(&self) -> impl Iterator<Item = ConnectionHandle> + '_ {
        self.conns.iter().map(|(&id, s)| ConnectionHandle {
            id,
            serial: s.serial,
        })
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
            if id != 0 && !self.conns.contains_key(&id) && !self.closed.contains_key(&id) {
                return id;
            }
        }
    }

    fn insert(&mut self, conn: Connection) -> ConnectionHandle {
        let id = conn.local_id();
        if let Some(remote_id) = conn.remote_id() {
            self.by_remote.insert((conn.remote(), remote_id), id);
        }
        if self.incoming == IncomingPolicy::Answer {
            self.by_addr.insert(conn.remote(), id);
        }
        self.next_serial += 1;
        let serial = self.next_serial;
        self.conns.insert(
            id,
            Slot {
                conn: Box::new(conn),
                serial,
                touched: false,
            },
        );
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
        let h = ConnectionHandle { id, serial };
        self.note_change(h);
        h
    }

    /// The slot's id if `h` still names it.
    fn live_id(&self, h: ConnectionHandle) -> Option<u32> {
        self.conns
            .get(&h.id)
            .filter(|s| s.serial == h.serial)
            .map(|_| h.id)
    }

    fn handle_of(&self, id: u32) -> Option<ConnectionHandle> {
        self.conns.get(&id).map(|s| ConnectionHandle {
            id,
            serial: s.serial,
        })
    }

    /// Drops the connection with id `id`, its timer and its index entries.
    fn remove(&mut self, id: u32) {
        if let Some(slot) = self.conns.remove(&id) {
            let c = &slot.conn;
            if let Some(remote_id) = c.remote_id() {
                if self.by_remote.get(&(c.remote(), remote_id)) == Some(&id) {
                    self.by_remote.remove(&(c.remote(), remote_id));
                }
            }
            if self.dialled.get(&c.remote()) == Some(&id) {
                self.dialled.remove(&c.remote());
            }
            if self.by_addr.get(&c.remote()) == Some(&id) {
                self.by_addr.remove(&c.remote());
            }
        }
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

    /// Records the connection's state change, if it has one, for [`Endpoint::poll_event`].
    fn note_change(&mut self, h: ConnectionHandle) {
        let Some(slot) = self.conns.get_mut(&h.id).filter(|s| s.serial == h.serial) else {
            return;
        };
        if let Some(change) = slot.conn.take_state_change() {
            log_change(&slot.conn, h, change.old, change.new);
            if let Some(remote_id) = slot.conn.remote_id() {
                self.by_remote
                    .entry((slot.conn.remote(), remote_id))
                    .or_insert(h.id);
            }
            self.events.push_back(ConnectionEvent {
                conn: h,
                old: change.old,
                new: change.new,
            });
        }
        // A local failure tells the peer at once (it may be alive and still sending).
        if let Some(d) = slot.conn.take_close_notice() {
            let to = slot.conn.remote();
            self.queue_control(to, d);
        }
    }

    fn now_unix(&self, now: Timestamp) -> u64 {
        self.unix_at_epoch + now.as_micros() / 1_000_000
    }

    fn random_offer(&mut self) -> ([u8; 32], u64) {
        let mut eph = [0u8; 32];
        self.rng.fill_bytes(&mut eph);
        (eph, self.rng.next_u64())
    }

    /// Opens a connection to `remote` (its handshake starts at the next `poll_transmit`);
    /// `None` when the table is full. `expected` is the identity dialled when it is not an
    /// address. With `symmetric`, a connect request from `remote` while this connection
    /// exists meets it by the simultaneous-open rule (both sides agree on one connection)
    /// instead of making a second one.
    pub fn connect(
        &mut self,
        now: Timestamp,
        remote: SocketAddr,
        expected: Option<Identity>,
        symmetric: bool,
    ) -> Option<ConnectionHandle> {
        if self.conns.len() >= MAX_CONNECTIONS {
            return None;
        }
        self.latest = self.latest.max(now);
        let id = self.new_id();
        let h = self.insert(Connection::connect(
            remote,
            self.cfg.clone(),
            now,
            id,
            expected,
        ));
        if symmetric {
            self.dialled.insert(remote, id);
        }
        Some(h)
    }

    /// Whether control datagrams (challenge replies, closes) wait for `poll_transmit`.
    pub fn has_control_out(&self) -> bool {
        !self.control_out.is_empty()
    }

    /// The connection `h`, if it still exists.
    pub fn connection(&self, h: ConnectionHandle) -> Option<&Connection> {
        let id = self.live_id(h)?;
        self.conns.get(&id).map(|s| &*s.conn)
    }

    /// The connection `h` for changes (it is looked at by the next
    /// [`Endpoint::poll_transmit`]), if it still exists. A change of state made through it
    /// is reported by [`Endpoint::poll_event`] after the next call into the endpoint.
    pub fn connection_mut(&mut self, h: ConnectionHandle) -> Option<&mut Connection> {
        let id = self.live_id(h)?;
        self.touch(id)
    }

    /// Accepts a connection held for the application (see [`IncomingPolicy::Hold`]): our
    /// answer goes out at the next `poll_transmit`. False if `h` is not held.
    pub fn accept(&mut self, now: Timestamp, h: ConnectionHandle) -> bool {
        let accepted = self.connection_mut(h).is_some_and(|c| c.accept_held(now));
        self.note_change(h);
        accepted
    }

    /// Closes `h` from our side: the peer is told (`reason`, `debug`) and the connection is
    /// forgotten. False if `h` is gone.
    pub fn close(&mut self, h: ConnectionHandle, reason: EndReason, debug: &str) -> bool {
        let Some(id) = self.live_id(h) else {
            return false;
        };
        let notify = self.touch(id).and_then(|c| {
            let to = c.remote();
            c.close(reason, debug).map(|d| (to, d))
        });
        let record = self
            .conns
            .get(&id)
            .and_then(|s| Some((s.conn.remote(), s.conn.stray_answer()?)));
        self.remove(id);
        if let Some((remote, answer)) = record {
            self.remember_closed(id, remote, answer, self.latest);
        }
        if let Some((to, d)) = notify {
            self.queue_control(to, d);
        }
        true
    }

    /// Keeps a record of connection `id`, just closed, for [`FIN_WAIT`].
    fn remember_closed(
        &mut self,
        id: u32,
        remote: SocketAddr,
        answer: StrayAnswer,
        now: Timestamp,
    ) {
        self.expire_closed(now);
        if self.closed.len() >= MAX_CONNECTIONS {
            // Full: the oldest record goes first.
            if let Some(old) = self.closed_order.pop_front() {
                self.closed.remove(&old);
            }
        }
        let record = Closed {
            remote,
            answer,
            until: now + FIN_WAIT,
            last_answer: None,
        };
        if self.closed.insert(id, record).is_none() {
            self.closed_order.push_back(id);
        }
    }

    /// Drops the records of closed connections whose time is up.
    fn expire_closed(&mut self, now: Timestamp) {
        while let Some(&id) = self.closed_order.front() {
            if self.closed.get(&id).is_some_and(|c| c.until > now) {
                break;
            }
            self.closed_order.pop_front();
            self.closed.remove(&id);
        }
    }

    /// Number of closed connections still remembered (see [`FIN_WAIT`]).
    pub fn closed_count(&self) -> usize {
        self.closed.len()
    }

    /// The answer of the closed connection with our id `id`, if it is remembered, belongs to
    /// `from` and may answer at `now`.
    fn answer_for_closed(&mut self, id: u32, from: SocketAddr, now: Timestamp) -> Option<Vec<u8>> {
        self.expire_closed(now);
        let c = self.closed.get_mut(&id).filter(|c| c.remote == from)?;
        if !answer_due(&mut c.last_answer, now) {
            return None;
        }
        c.answer.encode()
    }

    /// Sends `answer` (a closed connection's) to `from` if the endpoint's budget allows.
    fn send_answer(&mut self, from: SocketAddr, now: Timestamp, answer: Option<Vec<u8>>) {
        if let Some(d) = answer {
            if self.may_answer(from, now) {
                self.stats.answered_closed += 1;
                self.queue_control(from, d);
            }
        }
    }

    /// Forgets `h` without telling the peer (it was replaced, or the peer is gone).
    pub fn forget(&mut self, h: ConnectionHandle) {
        if let Some(id) = self.live_id(h) {
            self.remove(id);
        }
    }

    /// The newest connection to `remote`: for test harnesses with one connection per
    /// address (the table is keyed by id; this scans it).
    #[cfg(any(test, fuzzing, feature = "sim"))]
    pub fn connection_at(&self, remote: SocketAddr) -> Option<ConnectionHandle> {
        self.conns
            .iter()
            .filter(|(_, s)| s.conn.remote() == remote)
            .max_by_key(|(_, s)| s.serial)
            .map(|(&id, s)| ConnectionHandle {
                id,
                serial: s.serial,
            })
    }

    /// The next state change of a connection, in the order they happened.
    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        self.events.pop_front()
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
    /// Returns the connection the datagram was for when it took it (or it completed
    /// messages, which then belong to that connection), including a connection a peer's
    /// connect request just created.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<InMessage>,
    ) -> Option<ConnectionHandle> {
        let before = out.len();
        self.latest = self.latest.max(now);
        self.stats.datagrams_received += 1;
        self.stats.bytes_received += data.len() as u64;
        let rng = &mut self.rng;
        self.key.rotate_if_due(now, || {
            let mut fresh = [0u8; 16];
            rng.fill_bytes(&mut fresh);
            fresh
        });
        let (to, taken) = match classify(data) {
            Ok(Lead::Data) => self.handle_data(now, from, data, out),
            Ok(Lead::Control(_)) => match ControlMessage::decode(data) {
                Ok(msg) => self.handle_control(now, from, msg),
                Err(e) => {
                    self.stats.dropped_malformed += 1;
                    tracing::debug!(%from, len = data.len(), error = %e, "malformed control message dropped");
                    (None, false)
                }
            },
            Err(e) => {
                self.stats.dropped_malformed += 1;
                tracing::debug!(%from, len = data.len(), error = %e, "malformed datagram dropped");
                (None, false)
            }
        };
        // Whatever a datagram does to a connection happens to the one it names.
        let h = to.and_then(|id| self.handle_of(id))?;
        self.note_change(h);
        (taken || out.len() > before).then_some(h)
    }

    /// The id of the connection a datagram was for (if any), and whether it was taken.
    fn handle_data(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<InMessage>,
    ) -> (Option<u32>, bool) {
        let Ok((header, _)) = DataHeader::decode(data) else {
            self.stats.dropped_malformed += 1;
            return (None, false);
        };
        // A connection id only counts from the address it belongs to.
        let id = header.to_conn_id;
        let Some(conn) = self.conn_for(Some(id), from) else {
            self.stats.dropped_unknown_connection += 1;
            if self.closed.contains_key(&id) {
                // One we closed: say so again, with the reason.
                let answer = self.answer_for_closed(id, from, now);
                self.send_answer(from, now, answer);
            } else if self.may_answer(from, now) {
                self.reply(
                    from,
                    ControlMessage::NoConnection(NoConnection {
                        from_connection_id: Some(id),
                        to_connection_id: None,
                    }),
                );
            }
            return (None, false);
        };
        if conn.is_dead() {
            // It ended but the owner still holds it: tell the peer (again).
            let answer = conn.answer_stray(now);
            self.stats.dropped_by_connection += 1;
            self.send_answer(from, now, answer);
            return (Some(id), false);
        }
        if !conn.is_connected() {
            // Our connect is still in flight (its ConnectOK may be lost): the peer resends.
            self.stats.dropped_by_connection += 1;
            return (Some(id), false);
        }
        let (unauthenticated, replayed) = {
            let s = conn.stats();
            (s.packets_unauthenticated, s.packets_replayed)
        };
        let taken = conn.handle_datagram(now, data, out);
        if !taken {
            let s = conn.stats();
            self.stats.dropped_by_connection += 1;
            self.stats.dropped_unauthenticated += s.packets_unauthenticated - unauthenticated;
            self.stats.dropped_replayed += s.packets_replayed - replayed;
            tracing::trace!(
                conn = id,
                %from,
                "data packet dropped by its connection (duplicate, unauthenticated, refused by back-pressure or malformed frames)"
            );
        }
        (Some(id), taken)
    }

    fn handle_control(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        msg: ControlMessage,
    ) -> (Option<u32>, bool) {
        match msg {
            ControlMessage::ChallengeRequest(req) => {
                let version = req.protocol_version.unwrap_or(0);
                if version < MIN_PROTOCOL_VERSION {
                    self.stats.dropped_bad_challenge += 1;
                    return (None, false);
                }
                if !self.may_answer(from, now) {
                    return (None, false);
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
                (None, false)
            }
            ControlMessage::ChallengeReply(rep) => {
                let wants = self
                    .owned_by(rep.connection_id, from)
                    .and_then(|id| self.conns.get(&id))
                    .is_some_and(|s| s.conn.wants_challenge());
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
                    return (Some(id), false);
                }
                (None, false)
            }
            ControlMessage::ConnectRequest(req) => self.handle_connect_request(now, from, &req),
            ControlMessage::ConnectOk(ok) => {
                let now_unix = self.now_unix(now);
                let Some(id) = self.owned_by(ok.client_connection_id, from) else {
                    return (None, false);
                };
                // Checking the answer costs two signature checks and a key exchange.
                let wanted = self.conns.get(&id).is_some_and(|s| s.conn.is_connecting());
                if !wanted || !self.may_handshake(from, now) {
                    return (None, false);
                }
                let conn = touch(&mut self.conns, &mut self.touched, &mut self.timers, id);
                let refused =
                    conn.and_then(|c| c.on_connect_ok(now, &ok, &self.security, now_unix));
                if let Some(d) = refused {
                    self.queue_control(from, d);
                }
                (Some(id), false)
            }
            ControlMessage::ConnectionClosed(c) => {
                let reason = EndReason::from_wire(c.reason_code.unwrap_or(0));
                // It names our id; or (a peer that gives up before it learnt ours) only its
                // own, which we know if we answered it.
                let id = c.to_connection_id.filter(|&id| id != 0).or_else(|| {
                    c.from_connection_id
                        .and_then(|theirs| self.by_remote.get(&(from, theirs)).copied())
                });
                // Only the connection's own address may close it (a forger elsewhere on the
                // path is refused and counted), and a peer that knows our id closes with its
                // own (the reference always sends it): a close naming another is not its.
                let live = id.and_then(|id| self.conns.get(&id));
                let wrong_source = live.is_some_and(|s| s.conn.remote() != from);
                let wrong_peer = live.is_some_and(|s| {
                    s.conn.remote() == from
                        && matches!((c.from_connection_id, s.conn.remote_id()),
                            (Some(said), Some(theirs)) if said != theirs)
                });
                if wrong_source {
                    self.stats.refused_wrong_source += 1;
                }
                if wrong_peer {
                    self.stats.refused_wrong_peer_id += 1;
                }
                // As the reference: acknowledge with NoConnection, echoing the ids, so the
                // peer stops telling us; without limit for a connection of ours, else within
                // the budget for strangers (a padded request, so no amplification either way).
                let ack = ControlMessage::NoConnection(NoConnection {
                    from_connection_id: c.to_connection_id,
                    to_connection_id: c.from_connection_id,
                });
                let known = !wrong_peer
                    && id.is_some_and(|id| {
                        self.conns.get(&id).is_some_and(|s| {
                            s.conn.remote() == from
                                && (c.to_connection_id.is_some()
                                    || s.conn.remote_id() == c.from_connection_id)
                        }) || self.closed.get(&id).is_some_and(|r| r.remote == from)
                    });
                if known || self.may_answer(from, now) {
                    self.reply(from, ack);
                }
                match self.conn_for(id, from).filter(|_| known) {
                    Some(conn) => {
                        conn.on_peer_closed(reason, c.debug.as_deref());
                        (id, false)
                    }
                    None => (None, false),
                }
            }
            ControlMessage::NoConnection(n) => {
                // The peer has no connection with the id we send to: it restarted or forgot
                // us. It names our id when it knew it; else only its own old one.
                let id = match n.to_connection_id {
                    Some(ours) => Some(ours),
                    None => n
                        .from_connection_id
                        .and_then(|theirs| self.by_remote.get(&(from, theirs)).copied()),
                };
                let Some(id) = self.owned_by(id, from) else {
                    return (None, false);
                };
                let remote_id = self.conns.get(&id).and_then(|s| s.conn.remote_id());
                if n.from_connection_id.is_none() || remote_id != n.from_connection_id {
                    self.stats.refused_wrong_peer_id += 1;
                    return (None, false);
                }
                if let Some(conn) = self.touch(id) {
                    conn.on_peer_has_no_connection();
                }
                (Some(id), false)
            }
        }
    }

    /// `id` if it names one of our connections and `from` is that connection's peer. A
    /// control message naming a connection from any other address is refused and counted:
    /// only the peer's own address may close, refuse or answer for it.
    fn owned_by(&mut self, id: Option<u32>, from: SocketAddr) -> Option<u32> {
        let id = id?;
        let remote = self.conns.get(&id)?.conn.remote();
        if remote != from {
            self.stats.refused_wrong_source += 1;
            return None;
        }
        Some(id)
    }

    /// The connection with our id `id`, if it belongs to `from`.
    fn conn_for(&mut self, id: Option<u32>, from: SocketAddr) -> Option<&mut Connection> {
        let id = id?;
        if self.conns.get(&id)?.conn.remote() != from {
            return None;
        }
        self.touch(id)
    }

    /// Whether a checked request with a new client id may replace connection `old` at its
    /// address. Control messages are not authenticated, so the request may be a replay by
    /// someone on the path; only a peer that no longer answers us (it restarted) gives its
    /// address up. The old connection is probed (see `connection::liveness`): a restarted
    /// peer answers the probe with `NoConnection`, which ends it, and its next request gets
    /// through; one that says nothing is given up after the probes go unanswered (and its
    /// next request gets through). A live peer acks the probe and keeps its connection.
    fn may_replace(&mut self, now: Timestamp, old: u32) -> bool {
        let Some(conn) = self.touch(old) else {
            return true;
        };
        if conn.is_dead() {
            return true;
        }
        match conn.check_peer_alive(now) {
            Liveness::Answering => self.stats.refused_connect_live += 1,
            Liveness::Silent => {
                conn.give_up_silent_peer(now);
                self.stats.peers_gone_silent += 1;
            }
        }
        false
    }

    fn handle_connect_request(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        req: &crate::wire::control::ConnectRequest,
    ) -> (Option<u32>, bool) {
        let (Some(client_id), Some(cookie)) = (req.client_connection_id, req.challenge) else {
            self.stats.dropped_malformed += 1;
            return (None, false);
        };
        if !self.key.verify(from, now, cookie) {
            self.stats.dropped_bad_challenge += 1;
            return (None, false);
        }
        let their_ts = req.my_timestamp.unwrap_or(0);
        enum Plan {
            ResendOk(u32),
            Ignore,
            Adopt(u32),
            New,
        }
        let answered = self.by_remote.get(&(from, client_id)).copied();
        let ours = self
            .dialled
            .get(&from)
            .and_then(|id| self.conns.get(id))
            .map(|s| &*s.conn);
        let plan = match (answered, ours) {
            // Our answer was lost, or the request crossed it: say it again.
            (Some(id), _) => Plan::ResendOk(id),
            // Both sides opened at once. The attempt with the lower connection id wins on
            // both sides, so they agree on one connection without talking about it.
            (None, Some(c)) if c.is_connecting() && c.local_id() < client_id => Plan::Ignore,
            (None, Some(c)) if c.is_connecting() => Plan::Adopt(c.local_id()),
            // A late request from the peer's losing attempt: ours already won.
            (None, Some(c)) if c.initiated() && c.is_connected() && c.local_id() < client_id => {
                Plan::Ignore
            }
            // Otherwise (none, or the peer started over) a new connection.
            _ => Plan::New,
        };
        let local_id = match plan {
            Plan::ResendOk(id) => {
                let answer = self.touch(id).and_then(|c| {
                    c.resend_connect_ok();
                    // A request for a connection that ended gets the end, as the reference.
                    c.answer_stray(now)
                });
                self.send_answer(from, now, answer);
                return (None, false);
            }
            Plan::Ignore => return (None, false),
            Plan::Adopt(id) => id,
            Plan::New => {
                if self.incoming == IncomingPolicy::Refuse {
                    return (None, false);
                }
                let replaced = match self.incoming {
                    IncomingPolicy::Answer => self.by_addr.get(&from).copied(),
                    _ => None,
                };
                if let Some(old) = replaced {
                    if !self.may_replace(now, old) {
                        return (Some(old), false);
                    }
                }
                if replaced.is_none() && self.conns.len() >= MAX_CONNECTIONS {
                    self.stats.dropped_table_full += 1;
                    tracing::warn!(%from, max = MAX_CONNECTIONS, "connect request refused: the connection table is full");
                    return (None, false);
                }
                self.new_id()
            }
        };
        // From here on the request costs a signature check, a key exchange and a signature:
        // bounded per source IP and overall, as answers to unknown sources are.
        if !self.may_handshake(from, now) {
            return (None, false);
        }
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
                tracing::info!(
                    %from,
                    reason = refusal.end_reason.code(),
                    detail = %refusal.debug,
                    "connect request refused"
                );
                self.reply(
                    from,
                    ControlMessage::ConnectionClosed(ConnectionClosed {
                        to_connection_id: Some(client_id),
                        from_connection_id: None,
                        debug: Some(refusal.debug),
                        reason_code: u32::try_from(refusal.end_reason.code()).ok(),
                    }),
                );
                return (None, false);
            }
        };
        if let Plan::Adopt(id) = plan {
            if let Some(c) = self.touch(id) {
                c.adopt_incoming(now, client_id, their_ts, est, ok);
            }
            self.by_remote.insert((from, client_id), id);
            return (Some(id), true);
        }
        if self.incoming == IncomingPolicy::Answer {
            // Only a request that checked out replaces the connection at its address.
            if let Some(old) = self.by_addr.get(&from).copied() {
                self.remove(old);
            }
        }
        let hold = self.incoming == IncomingPolicy::Hold;
        let h = self.insert(Connection::accept(
            from,
            self.cfg.clone(),
            now,
            local_id,
            client_id,
            their_ts,
            est,
            ok,
            hold,
        ));
        (Some(h.id), true)
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
        self.latest = self.latest.max(now);
        let stats = &mut self.stats;
        let mut send = |to: SocketAddr, d: &[u8]| {
            stats.datagrams_sent += 1;
            stats.bytes_sent += d.len() as u64;
            send(to, d);
        };
        for (to, d) in self.control_out.drain(..) {
            send(to, &d);
        }
        // A burst of handshakes (a thousand clients at once) grows the list to
        // `MAX_CONTROL_OUT` entries; an endpoint that then goes quiet would keep that room
        // (56 KiB) for good. Ordinary traffic never queues this many between two calls.
        if self.control_out.capacity() > CONTROL_OUT_KEPT {
            self.control_out.shrink_to(CONTROL_OUT_KEPT);
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

    /// When connection `h` next needs [`Endpoint::poll_transmit`] or
    /// [`Endpoint::handle_timeout`]: what a send on it can have moved, found without looking at
    /// any other connection. Control datagrams waiting count as due now.
    pub fn deadline_of(&self, h: ConnectionHandle) -> Option<Timestamp> {
        if self.has_control_out() {
            return Some(Timestamp::ZERO);
        }
        self.connection(h)?.poll_timeout()
    }

    /// Runs the timers of every connection that is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.latest = self.latest.max(now);
        self.expire_closed(now);
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
                // Noted at once (no list per round): noting touches neither the queue nor
                // the touched list, so the walk is unchanged.
                self.note_change(ConnectionHandle { id, serial });
            }
        }
        // Then the due ones of the rest; touching them takes them out of the queue.
        while let Some(id) = self.timers.pop_due(now) {
            if let Some(c) = self.touch(id) {
                c.handle_timeout(now);
                if let Some(h) = self.handle_of(id) {
                    self.note_change(h);
                }
            }
        }
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

/// The debug log's line for a connection's state change (Steam logs these at its `Msg`
/// level; a failure is a warning).
fn log_change(c: &Connection, h: ConnectionHandle, old: ConnectionState, new: ConnectionState) {
    let (conn, remote, peer) = (h.id, c.remote(), c.peer());
    match new {
        ConnectionState::Connected => {
            tracing::info!(conn, %remote, %peer, "connection established");
        }
        ConnectionState::ClosedByPeer => {
            let end = c.end().map(ToString::to_string).unwrap_or_default();
            tracing::info!(conn, %remote, %peer, %end, "connection closed by the peer");
        }
        ConnectionState::ProblemDetectedLocally => {
            let end = c.end().map(ToString::to_string).unwrap_or_default();
            tracing::warn!(conn, %remote, %peer, %end, "connection failed");
        }
        _ => {
            tracing::debug!(conn, %remote, from = old.name(), to = new.name(), "connection state changed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pair::{EndpointNode, Pair, A, B};
    use std::time::Duration;

    fn endpoint(seed: u8) -> Endpoint {
        Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(seed))
    }

    fn pair(a: u8, b: u8) -> Pair<EndpointNode, EndpointNode> {
        Pair::new(
            EndpointNode::new(endpoint(a)),
            EndpointNode::new(endpoint(b)),
        )
    }

    #[test]
    fn garbage_and_challenges_leave_no_state() {
        let mut ep = endpoint(3);
        let mut out = Vec::new();
        let mut client = endpoint(4);
        for port in 1..100u16 {
            let from = SocketAddr::from(([127, 0, 0, 1], port));
            let junk = [0x80, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &junk, &mut out),
                None
            );
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &[1, 2], &mut out),
                None
            );
            // A real ChallengeRequest is answered, statelessly.
            let req = challenge_request_from(&mut client, from);
            assert!(req.len() >= 512, "challenge requests are padded");
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &req, &mut out),
                None
            );
        }
        assert!(ep.conns.is_empty());
        assert_eq!(ep.stats().challenges_answered, 99);
    }

    fn challenge_request_from(client: &mut Endpoint, to: SocketAddr) -> Vec<u8> {
        client.connect(Timestamp::ZERO, to, None, false);
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
        let mut ep = endpoint(3);
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
        let mut client = endpoint(4);
        let req = challenge_request_from(&mut client, B);
        let mut out = Vec::new();
        let t = Timestamp::from_micros(10_000_000);
        // 1,000 requests from one IP (many ports) within one second.
        let before = ep.stats().challenges_answered;
        for i in 0..1000u64 {
            let from = SocketAddr::from(([192, 0, 2, 1], 1000 + i as u16));
            let now = t + Duration::from_millis(i);
            ep.handle_datagram(now, from, &req, &mut out);
        }
        let answered = ep.stats().challenges_answered - before;
        assert!((29..=31).contains(&answered), "{answered} answered");
        assert_eq!(ep.stats().rate_limited_source, 1000 - answered);
        // Another source is still answered.
        let other = SocketAddr::from(([192, 0, 2, 2], 1));
        let now = t + Duration::from_millis(1000);
        ep.handle_datagram(now, other, &req, &mut out);
        assert_eq!(ep.stats().challenges_answered, answered + 1);
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
        let mut b = endpoint(6);
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
        let (mut p, ha, hb) = Pair::connected(endpoint(5), b);
        // Drain both buckets with requests from A's IP, then garbage for unknown ids.
        let mut client = endpoint(9);
        let req = challenge_request_from(&mut client, B);
        let mut out = Vec::new();
        let t = p.now;
        for port in 3000..3100u16 {
            let from = SocketAddr::from(([127, 0, 0, 1], port));
            let b = &mut p.b.endpoint;
            b.handle_datagram(t, from, &req, &mut out);
            b.handle_datagram(t, from, &[0x80, 1, 2, 3, 4, 0, 0, 9, 9, 9], &mut out);
        }
        let st = p.b.endpoint.stats();
        assert!(st.rate_limited_source + st.rate_limited_global >= 198);
        p.a.endpoint
            .connection_mut(ha)
            .unwrap()
            .send(t, 0, true, true, b"still here")
            .unwrap();
        p.rounds(2);
        let got: Vec<_> = p.b.take_received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, hb);
        assert_eq!(got[0].1.data.as_ref(), b"still here");
    }

    #[test]
    fn handshake_then_round_trip() {
        let mut p = pair(5, 6);
        let t = p.now;
        let ha = p.a.endpoint.connect(t, B, None, false).unwrap();
        p.a.endpoint
            .connection_mut(ha)
            .unwrap()
            .send(t, 4, true, true, b"hi")
            .unwrap();
        p.rounds(4);
        let mut events = Vec::new();
        while let Some(e) = p.b.endpoint.poll_event() {
            events.push(e);
        }
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].old, events[0].new),
            (ConnectionState::None, ConnectionState::Connected)
        );
        let hb = events[0].conn;
        let got = p.b.take_received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.data.as_ref(), b"hi");
        assert_eq!(got[0].1.channel, 4);
        let ca = p.a.endpoint.connection(ha).unwrap();
        let cb = p.b.endpoint.connection(hb).unwrap();
        assert_eq!(ca.remote_id(), Some(cb.local_id()));
        assert_eq!(cb.remote_id(), Some(ca.local_id()));
        let a_events: Vec<_> = std::iter::from_fn(|| p.a.endpoint.poll_event())
            .map(|e| (e.old, e.new))
            .collect();
        assert_eq!(
            a_events,
            [
                (ConnectionState::None, ConnectionState::Connecting),
                (ConnectionState::Connecting, ConnectionState::Connected)
            ]
        );
    }

    #[test]
    fn a_held_connection_waits_for_accept_then_connects() {
        let mut p = pair(5, 6);
        p.b.endpoint.set_incoming(IncomingPolicy::Hold);
        let t = p.now;
        let ha = p.a.endpoint.connect(t, B, None, false).unwrap();
        p.a.endpoint
            .connection_mut(ha)
            .unwrap()
            .send(t, 0, true, true, b"after accept")
            .unwrap();
        p.rounds(6);
        let e = p.b.endpoint.poll_event().expect("the incoming connection");
        assert_eq!(
            (e.old, e.new),
            (ConnectionState::None, ConnectionState::Connecting)
        );
        assert!(p.b.endpoint.connection(e.conn).unwrap().is_held());
        assert!(p.a.endpoint.connection(ha).unwrap().is_connecting());
        assert!(p.b.received.is_empty());
        assert!(p.b.endpoint.accept(p.now, e.conn));
        assert!(!p.b.endpoint.accept(p.now, e.conn), "accepted once");
        p.rounds(4);
        let got = p.b.take_received();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1.data.as_ref(), b"after accept");
        assert!(p.a.endpoint.connection(ha).unwrap().is_connected());
    }

    #[test]
    fn a_held_connection_not_accepted_times_out() {
        let cfg = ConnectionConfig {
            timeout_initial: Duration::from_millis(2_000),
            ..ConnectionConfig::default()
        };
        let mut b = Endpoint::new(cfg, EndpointSetup::for_tests(6));
        b.set_incoming(IncomingPolicy::Hold);
        let mut p = Pair::new(EndpointNode::new(endpoint(5)), EndpointNode::new(b));
        p.a.endpoint.connect(p.now, B, None, false).unwrap();
        p.rounds(3);
        let h = p.b.endpoint.poll_event().unwrap().conn;
        let end = p.now + Duration::from_secs(3);
        let failed = p.run_until(end, 1000, |p| {
            p.b.endpoint
                .connection(h)
                .is_some_and(|c| c.failure().is_some())
        });
        assert!(failed);
        let c = p.b.endpoint.connection(h).unwrap();
        assert_eq!(c.failure().unwrap().reason, EndReason::MiscTimeout);
    }

    #[test]
    fn a_refusing_endpoint_makes_no_connection() {
        let mut p = pair(5, 6);
        p.b.endpoint.set_incoming(IncomingPolicy::Refuse);
        p.a.endpoint.connect(p.now, B, None, false).unwrap();
        p.rounds(6);
        assert_eq!(p.b.endpoint.connection_count(), 0);
        assert!(p.b.endpoint.poll_event().is_none());
    }

    #[test]
    fn a_forged_cookie_creates_nothing() {
        let mut a = endpoint(5);
        let mut b = endpoint(6);
        let t = Timestamp::from_micros(1_000_000);
        let h = a.connect(t, B, None, false).unwrap();
        let mut out = Vec::new();
        // Feed A a challenge reply with a made-up cookie, then pass its ConnectRequest to B.
        let id = a.connection(h).unwrap().local_id();
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
        assert_eq!(b.handle_datagram(t, A, &to_b[0], &mut out), None);
        assert!(b.conns.is_empty());
        assert_eq!(b.stats().dropped_bad_challenge, 1);
    }

    #[test]
    fn simultaneous_open_ends_with_one_connection() {
        for seed in 0..20u8 {
            let mut p = pair(seed, seed.wrapping_add(100));
            let t = p.now;
            let ha = p.a.endpoint.connect(t, B, None, true).unwrap();
            p.a.endpoint
                .connection_mut(ha)
                .unwrap()
                .send(t, 1, true, true, b"from a")
                .unwrap();
            let hb = p.b.endpoint.connect(t, A, None, true).unwrap();
            p.b.endpoint
                .connection_mut(hb)
                .unwrap()
                .send(t, 1, true, true, b"from b")
                .unwrap();
            p.rounds(6);
            assert_eq!(p.a.endpoint.connection_count(), 1, "seed {seed}");
            assert_eq!(p.b.endpoint.connection_count(), 1, "seed {seed}");
            let ca = p.a.endpoint.connection(ha).unwrap();
            let cb = p.b.endpoint.connection(hb).unwrap();
            assert!(ca.is_connected() && cb.is_connected(), "seed {seed}");
            assert_eq!(ca.remote_id(), Some(cb.local_id()), "seed {seed}");
            assert_eq!(cb.remote_id(), Some(ca.local_id()), "seed {seed}");
            let got_a = p.a.take_received();
            let got_b = p.b.take_received();
            assert_eq!(got_a.len(), 1, "seed {seed}");
            assert_eq!(got_b.len(), 1, "seed {seed}");
            assert_eq!(got_a[0].1.data.as_ref(), b"from b");
            assert_eq!(got_b[0].1.data.as_ref(), b"from a");
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
        let h = a.connect(t, B, None, false).unwrap();
        let mut now = t;
        let mut requests = 0;
        while a.connection(h).unwrap().failure().is_none() {
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
        let changes: Vec<_> = std::iter::from_fn(|| a.poll_event())
            .map(|e| e.new)
            .collect();
        assert_eq!(
            changes,
            [
                ConnectionState::Connecting,
                ConnectionState::ProblemDetectedLocally
            ]
        );
    }

    #[test]
    fn a_peer_that_connects_again_replaces_its_connection_when_answering() {
        for (policy, count, old_kept) in [
            (IncomingPolicy::Answer, 1, false),
            (IncomingPolicy::Hold, 2, true),
        ] {
            let mut b = endpoint(6);
            b.set_incoming(policy);
            let (mut p, _ha, hb) = if policy == IncomingPolicy::Hold {
                let mut p = Pair::new(EndpointNode::new(endpoint(5)), EndpointNode::new(b));
                p.a.endpoint.connect(p.now, B, None, false).unwrap();
                p.rounds(2);
                let hb = p.b.endpoint.poll_event().unwrap().conn;
                (p, None, hb)
            } else {
                let (p, ha, hb) = Pair::connected(endpoint(5), b);
                (p, Some(ha), hb)
            };
            // A restarts: a fresh endpoint at the same address dials again. When answering,
            // B first probes the old connection; the new A answers NoConnection, which ends
            // it, and A's next request (250 ms on) replaces it.
            p.a = EndpointNode::new(endpoint(15));
            let ha = p.a.endpoint.connect(p.now, B, None, false).unwrap();
            let end = p.now + Duration::from_secs(2);
            p.run_until(end, 1000, |p| {
                p.a.endpoint
                    .connection(ha)
                    .is_some_and(|c| c.is_connected())
            });
            p.rounds(2);
            // Held connections wait for the application; an answered one is up.
            let up = p.a.endpoint.connection(ha).unwrap().is_connected();
            assert_eq!(up, policy == IncomingPolicy::Answer, "{policy:?}");
            assert_eq!(p.b.endpoint.connection_count(), count, "{policy:?}");
            assert_eq!(
                p.b.endpoint.connection(hb).is_some(),
                old_kept,
                "{policy:?}"
            );
        }
    }

    #[test]
    fn data_is_encrypted_and_tampering_or_replay_changes_nothing() {
        let (mut p, ha, hb) = Pair::connected(endpoint(5), endpoint(6));
        let t = p.now;
        let secret = b"known plaintext that must never be seen on the wire";
        p.a.endpoint
            .connection_mut(ha)
            .unwrap()
            .send(t, 0, true, true, secret)
            .unwrap();
        let mut wire = Vec::new();
        p.a.endpoint
            .poll_transmit(t, &mut Vec::new(), |_, d| wire.push(d.to_vec()));
        assert_eq!(wire.len(), 1);
        let packet = &wire[0];
        assert!(
            !packet.windows(secret.len()).any(|w| w == secret),
            "plaintext visible on the wire"
        );
        // Every single-bit flip is dropped and counted; the connection lives on. (Bits 1-6 of
        // the lead byte are reserved flags that receivers ignore, as the reference does: the
        // clear header is not authenticated, and flipping them changes nothing.)
        // The stats blob is clear text too, as in the reference (here: the packet's ack
        // request); a flip inside it may still decode, so those bits are left out as well.
        let (header, sealed) = crate::wire::datagram::DataHeader::decode(packet).unwrap();
        let blob_end = packet.len() - sealed.len();
        let blob = blob_end - header.stats.map_or(0, <[u8]>::len)..blob_end;
        let b = &mut p.b.endpoint;
        let mut out = Vec::new();
        for bit in
            (0..packet.len() * 8).filter(|b| !(1..=6).contains(b) && !blob.contains(&(b / 8)))
        {
            let mut bad = packet.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(b.handle_datagram(t, A, &bad, &mut out), None, "bit {bit}");
        }
        assert!(out.is_empty());
        assert!(b.connection(hb).unwrap().is_connected());
        // The genuine packet is delivered once; a replay of it is not.
        assert_eq!(b.handle_datagram(t, A, packet, &mut out), Some(hb));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data.as_ref(), secret);
        assert_eq!(b.handle_datagram(t, A, packet, &mut out), None);
        assert_eq!(out.len(), 1);
        assert!(b.connection(hb).unwrap().stats().packets_unauthenticated > 0);
    }

    #[test]
    fn a_full_packet_of_small_messages_is_due_at_once() {
        let (mut p, ha, _hb) = Pair::connected(endpoint(5), endpoint(6));
        let a = &mut p.a.endpoint;
        assert!(a.connection(ha).unwrap().is_connected());
        // Small Nagle messages: due at the Nagle timer, not now (the driver may sleep on).
        let t = p.now + Duration::from_millis(1);
        for _ in 0..4 {
            a.connection_mut(ha)
                .unwrap()
                .send(t, 0, false, false, &[7; 32])
                .unwrap();
        }
        let due = a.poll_timeout().unwrap();
        assert!(due > t, "4 small messages must wait for Nagle, due {due:?}");
        // A full packet's worth waits for nothing: the owner must wake its driver.
        let mut queued = 4;
        while a.poll_timeout().is_some_and(|d| d > t) && queued < 100 {
            a.connection_mut(ha)
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

    #[test]
    fn close_tells_the_peer_with_the_reason() {
        let (mut p, ha, hb) = Pair::connected(endpoint(5), endpoint(6));
        assert!(p.a.endpoint.close(ha, EndReason::App(1234), "bye now"));
        assert!(p.a.endpoint.connection(ha).is_none());
        assert!(!p.a.endpoint.close(ha, EndReason::App(1), "again"));
        p.rounds(1);
        let c = p.b.endpoint.connection(hb).unwrap();
        assert_eq!(c.state(), ConnectionState::ClosedByPeer);
        assert_eq!(c.closed_by_peer(), Some(EndReason::App(1234)));
        assert_eq!(c.end().unwrap().debug, "bye now");
    }
}
