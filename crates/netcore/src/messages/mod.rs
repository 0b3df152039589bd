//! Steam's messages model over the endpoint: sessions keyed by remote identity, created
//! implicitly by sending, accepted before anything from the peer is delivered, closed on
//! request or when idle; received messages wait in per-channel queues.
//!
//! Sans-IO: every call takes `now`; datagrams go out through [`Messages::poll_transmit`],
//! and what the application must hear about comes out of [`Messages::poll_event`].
//!
//! A session holds the handle of its connection; the connection's peer identity (what its
//! handshake proved, or its address) names the session. The idle timeout looks only at
//! sessions that may have expired (`idle_queue`), so a wake-up costs the same with ten
//! sessions as with ten thousand.

pub mod backlog;
pub mod channel_set;
pub mod idle_queue;
mod p2p;

use std::collections::VecDeque;

use crate::endpoint::Map;
use std::net::SocketAddr;
use std::time::Duration;

use crate::config::{Config, MAX_MESSAGE_SIZE};
use crate::connection::{Connection, ConnectionConfig, Framing, InMessage, SendError};
use crate::end_reason::{End, EndReason};
use crate::endpoint::{ConnectionHandle, Endpoint, EndpointSetup, EndpointStats};
use crate::eresult::{send_flags, EResult};
use crate::identity::Identity;
use crate::receive_pause::ReceivePause;
use crate::time::Timestamp;
use backlog::{Backlog, ChannelBacklog};
use channel_set::ChannelSet;
use idle_queue::IdleQueue;

pub use crate::connection::ConnectionState;

/// Close reason sent when the application closes a session (Steam's messages layer uses
/// 1001 for this).
pub const END_SESSION_CLOSED: EndReason = EndReason::App(1001);

/// How often a session request is posted again while an unaccepted peer keeps sending.
pub const SESSION_REQUEST_REPOST: Duration = Duration::from_secs(1);

/// Most idle-queue entries one [`Messages::handle_timeout`] looks at; the rest stay due, so
/// the next wake-up comes at once and carries on. Bounds the time of one wake-up when
/// thousands of sessions expire together.
pub const IDLE_CHECKS_PER_TIMEOUT: usize = 1024;

/// A message handed to the application.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// Who sent it.
    pub peer: Identity,
    /// What the transport received.
    pub msg: InMessage,
}

/// Something the application should hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A peer we have no accepted session with wants to talk.
    SessionRequest(Identity),
    /// Messages wait on this channel (posted when its queue goes from empty to non-empty).
    MessagesWaiting(i32),
    /// A session could not be established or broke (not posted for a polite close).
    SessionFailed {
        /// The peer.
        peer: Identity,
        /// Where it was.
        remote: SocketAddr,
        /// Why.
        end: End,
    },
    /// The peer closed the session politely (it closed it, or its endpoint closed).
    SessionClosed {
        /// The peer.
        peer: Identity,
        /// Where it was.
        remote: SocketAddr,
        /// The peer's reason.
        end: End,
    },
    /// A session's receive backlog reached `recvBufferMessages` / `recvBufferSize`: its
    /// connection refuses new reliable data (unacknowledged, so nothing is lost) until the
    /// application reads. `backlog` names the channel holding the most unread messages, or
    /// `channel: None` when the session is not accepted yet. Posted once per stall, and again when an accept turns a stall on held messages into one on a channel.
    ReceiveBlocked {
        /// The peer.
        peer: Identity,
        /// What holds it.
        backlog: Backlog,
    },
    /// A session that refused a send with `LimitExceeded` has room again: its unsent bytes
    /// fell to half of `sendBufferSize` or below.
    Writable(Identity),
}

/// A snapshot of one session for status calls.
#[derive(Clone, Debug)]
pub struct SessionInfo {
    /// Its state.
    pub state: ConnectionState,
    /// The address datagrams go to.
    pub remote: SocketAddr,
    /// Whether the local application accepted it (by accepting or by sending).
    pub accepted: bool,
    /// Payload bytes queued and not sent.
    pub pending_bytes: usize,
    /// Reliable bytes sent and not yet acknowledged.
    pub unacked_reliable: u64,
    /// Smoothed round-trip time, once measured.
    pub rtt: Option<Duration>,
    /// Current send rate, B/s.
    pub send_rate: u64,
    /// Packets declared lost.
    pub packets_lost: u64,
    /// Rates and quality over the last second or so.
    pub rates: crate::connection::rates::Rates,
    /// Unreliable bytes queued, not sent.
    pub pending_unreliable: usize,
    /// Reliable bytes queued, not sent.
    pub pending_reliable: usize,
    /// How long a message queued now would wait to start leaving.
    pub queue_time: Duration,
    /// How it ended, once it has (by failure or by the peer's close).
    pub end: Option<End>,
    /// Steam's `ConnectionInfo` flags (`crate::sockets::info_flags`): `Unauthenticated` for a
    /// peer known by address; the P2P layer adds `Relayed` and `Fast`.
    pub flags: i32,
    /// Datagrams and bytes each way.
    pub packets_sent: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Datagrams received.
    pub packets_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Ack-eliciting packets acknowledged by the peer.
    pub packets_acked: u64,
    /// Datagrams from the peer dropped on arrival (duplicates, failed authentication,
    /// back-pressure, malformed frames).
    pub packets_dropped: u64,
    /// Of those, datagrams that failed authentication.
    pub packets_unauthenticated: u64,
    /// Of those, replays (a packet number seen before or older than the window).
    pub packets_replayed: u64,
    /// Reliable bytes queued again because the packet carrying them was lost.
    pub reliable_bytes_resent: u64,
    /// Messages delivered to channel queues and not read yet (or held until accepted).
    pub unread_messages: usize,
    /// Their bytes.
    pub unread_bytes: usize,
    /// While the session's receive backlog is full: the channel holding the most unread
    /// messages (or `channel: None` before acceptance).
    pub receive_blocked: Option<Backlog>,
    /// Unread messages per channel.
    pub backlog: Vec<Backlog>,
}

#[derive(Debug)]
struct Session {
    /// The connection carrying the session.
    conn: ConnectionHandle,
    accepted: bool,
    /// Received before acceptance; delivered on accept, dropped on close. Boxed and made on
    /// the first such message: every session pays its entry in the sessions table for good,
    /// and this is empty once the session is accepted.
    held: Option<Box<Held>>,
    /// Delivered to channel queues and not yet read.
    unread: usize,
    unread_bytes: usize,
    last_request_posted: Option<Timestamp>,
    last_used: Timestamp,
    /// Channels the application used with this peer (Steam closes the session with the last).
    channels: ChannelSet,
    /// Tells this session from earlier ones with the same peer in the idle queue.
    serial: u64,
    /// Whether the idle queue holds an entry for this session (at most one). Only a session
    /// with unread messages may be out of it; it goes back in once they are read.
    idle_queued: bool,
    /// Whether the backlog is at its limit (the connection refuses reliable data).
    recv_blocked: bool,
    /// Whether a send was refused for a full buffer and the application waits for room.
    want_writable: bool,
    /// Unread messages by channel.
    backlog: ChannelBacklog,
}

/// Messages received from a peer whose session is not accepted yet.
#[derive(Debug, Default)]
struct Held {
    messages: VecDeque<InMessage>,
    bytes: usize,
}

/// Counters of the messages layer.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessagesStats {
    /// Unreliable messages dropped because the session's receive backlog was full
    /// (reliable ones are never dropped: their packets are refused and resent).
    pub dropped_recv_full: u64,
    /// Times a session's receive backlog filled up (each posts [`Event::ReceiveBlocked`]).
    pub receive_stalls: u64,
}

impl std::ops::AddAssign for MessagesStats {
    /// Sums the counters of several endpoints (the shards of one port).
    fn add_assign(&mut self, other: Self) {
        self.dropped_recv_full += other.dropped_recv_full;
        self.receive_stalls += other.receive_stalls;
    }
}

/// The sessions and receive queues of one endpoint.
#[derive(Debug)]
pub struct Messages {
    config: Config,
    endpoint: Endpoint,
    sessions: Map<Identity, Session>,
    /// Which session each live connection carries.
    by_conn: Map<ConnectionHandle, Identity>,
    queues: Map<i32, VecDeque<Delivered>>,
    events: VecDeque<Event>,
    scratch: Vec<InMessage>,
    stats: MessagesStats,
    /// Sessions by last known use, for the idle timeout.
    idle: IdleQueue,
    /// Reading paused while a full backlog drains (see `receive_pause`).
    pause: ReceivePause<Identity>,
    /// Serial of the last session created.
    last_serial: u64,
    /// Sessions that refused a send for a full buffer, checked after each transmit.
    writable_watch: Vec<Identity>,
}

impl Messages {
    /// An empty messages layer with `config`; `setup` holds the endpoint's secrets and
    /// security material.
    pub fn new(config: Config, setup: EndpointSetup) -> Self {
        Messages {
            endpoint: Endpoint::new(
                ConnectionConfig::from_config(&config, Framing::Messages),
                setup,
            ),
            config,
            sessions: Map::default(),
            by_conn: Map::default(),
            queues: Map::default(),
            events: VecDeque::new(),
            scratch: Vec::new(),
            stats: MessagesStats::default(),
            idle: IdleQueue::default(),
            pause: ReceivePause::default(),
            last_serial: 0,
            writable_watch: Vec::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the configuration (already validated by [`Config::apply`]); it applies to
    /// existing sessions too.
    pub fn set_config(&mut self, now: Timestamp, config: Config) {
        self.endpoint.set_config(
            now,
            ConnectionConfig::from_config(&config, Framing::Messages),
        );
        self.config = config;
        // A larger send buffer may have made room.
        self.check_writable();
    }

    /// Counters so far.
    pub fn stats(&self) -> MessagesStats {
        self.stats
    }

    /// Counters of the endpoint below.
    pub fn endpoint_stats(&self) -> EndpointStats {
        self.endpoint.stats()
    }

    /// Whether a session with `peer` exists (in any state).
    pub fn has_session(&self, peer: &Identity) -> bool {
        self.sessions.contains_key(peer)
    }

    /// Number of sessions, accepted or not.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// The peers with a session, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = &Identity> {
        self.sessions.keys()
    }

    /// Queues a message to `peer`, opening (and accepting) its session as needed.
    ///
    /// A session's own connection carries it wherever the peer is; a new session goes to
    /// the peer's address: its own for an IP identity, else `remote` (from the
    /// application's resolver).
    pub fn send(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        remote: Option<SocketAddr>,
        data: &[u8],
        flags: u32,
        channel: i32,
    ) -> EResult {
        let mut result = EResult::Fail;
        self.send_run(
            now,
            peer,
            remote,
            std::iter::once((data, flags, channel)),
            |r| result = r,
        );
        result
    }

    /// Queues messages to one peer (each its payload, send flags and channel), exactly as
    /// [`Messages::send`] one after the other would, with one result each to `on_result`
    /// in order; the session and its connection are found once for the run, not per
    /// message.
    pub fn send_run<'d>(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        remote: Option<SocketAddr>,
        messages: impl IntoIterator<Item = (&'d [u8], u32, i32)>,
        mut on_result: impl FnMut(EResult),
    ) {
        let mtu = usize::try_from(self.config.mtu_packet_size).unwrap_or(1300);
        let mut messages = messages.into_iter().peekable();
        while let Some(&(data, flags, channel)) = messages.peek() {
            if let Some(bad) = refused_outright(data, flags, channel) {
                messages.next();
                on_result(bad);
                continue;
            }
            let conn = match self.live_session(now, peer, remote, flags) {
                Ok(conn) => conn,
                Err(r) => {
                    messages.next();
                    on_result(r);
                    continue;
                }
            };
            let (Some(s), Some(c)) = (
                self.sessions.get_mut(peer),
                self.endpoint.connection_mut(conn),
            ) else {
                messages.next();
                on_result(EResult::NoConnection);
                continue;
            };
            // The rest go on this connection while it lives (nothing in a run ends it; a
            // dead one goes back to `live_session`, which may restart it).
            let mut first = true;
            while let Some(&(data, flags, channel)) = messages.peek() {
                if c.is_dead() {
                    if first {
                        // Dead from the start: this message cannot go (and must not loop).
                        messages.next();
                        on_result(EResult::NoConnection);
                    }
                    break;
                }
                first = false;
                messages.next();
                let r = match refused_outright(data, flags, channel) {
                    Some(bad) => bad,
                    None => {
                        let r = Self::queue_on(c, now, mtu, data, flags, channel);
                        match r {
                            EResult::Ok => {
                                s.channels.insert(channel);
                                s.last_used = now;
                                if !s.accepted {
                                    // Sending to a peer implicitly accepts its pending request.
                                    s.accepted = true;
                                    Self::release_held(s, peer, &mut self.queues, &mut self.events);
                                }
                            }
                            EResult::LimitExceeded if !s.want_writable => {
                                s.want_writable = true;
                                self.writable_watch.push(peer.clone());
                            }
                            _ => {}
                        }
                        r
                    }
                };
                on_result(r);
            }
        }
    }

    /// The connection of the live session with `peer`, opening one as needed (a failed
    /// one is restarted only with `AutoRestartBrokenSession` in `flags`).
    fn live_session(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        remote: Option<SocketAddr>,
        flags: u32,
    ) -> Result<ConnectionHandle, EResult> {
        if let Some(conn) = self.sessions.get(peer).map(|s| s.conn) {
            if self.endpoint.connection(conn).is_some_and(|c| !c.is_dead()) {
                return Ok(conn);
            }
            if flags & send_flags::AUTO_RESTART_BROKEN_SESSION == 0 {
                return Err(EResult::NoConnection);
            }
            self.close_session(peer);
        }
        let Some(addr) = peer.ip_addr().or(remote) else {
            return Err(EResult::NoConnection);
        };
        // A peer known by address is reached there; any other must prove who it is.
        let expected = peer.ip_addr().is_none().then(|| peer.clone());
        let Some(h) = self.endpoint.connect(now, addr, expected, true) else {
            return Err(EResult::LimitExceeded);
        };
        self.by_conn.insert(h, peer.clone());
        let session = Session::new(h, now, peer, &mut self.last_serial, &mut self.idle);
        self.sessions.insert(peer.clone(), session);
        Ok(h)
    }

    /// Queues one valid message on a live session's connection.
    fn queue_on(
        c: &mut Connection,
        now: Timestamp,
        mtu: usize,
        data: &[u8],
        flags: u32,
        channel: i32,
    ) -> EResult {
        if flags & send_flags::NO_DELAY != 0 && (!c.heard_from_peer() || c.queued_bytes() > mtu) {
            // NoDelay: the message could not leave almost at once, so it is not sent at all.
            return EResult::Ignored;
        }
        let reliable = flags & send_flags::RELIABLE != 0;
        let no_nagle = flags & send_flags::NO_NAGLE != 0;
        match c.send(now, channel, reliable, no_nagle, data) {
            Ok(_) => EResult::Ok,
            Err(SendError::BufferFull) => EResult::LimitExceeded,
            Err(SendError::Closed) => EResult::NoConnection,
        }
    }

    /// Accepts a pending session; false if there is none waiting.
    pub fn accept(&mut self, peer: &Identity) -> bool {
        match self.sessions.get_mut(peer) {
            Some(s) if !s.accepted => {
                s.accepted = true;
                Self::release_held(s, peer, &mut self.queues, &mut self.events);
                true
            }
            _ => false,
        }
    }

    /// Closes the session with `peer` at once and purges its unread messages.
    pub fn close_session(&mut self, peer: &Identity) -> bool {
        let Some(s) = self.sessions.remove(peer) else {
            return false;
        };
        self.by_conn.remove(&s.conn);
        // Tell the peer, so its side of the session ends too and its next send asks anew.
        self.endpoint
            .close(s.conn, END_SESSION_CLOSED, "session closed");
        for q in self.queues.values_mut() {
            q.retain(|d| &d.peer != peer);
        }
        if self.idle.needs_compaction(self.sessions.len()) {
            // Entries of closed sessions: drop them all at once.
            self.idle
                .rebuild(
                    self.sessions
                        .iter()
                        .filter(|(_, s)| s.idle_queued)
                        .map(|(peer, s)| idle_queue::Entry {
                            used: s.last_used,
                            serial: s.serial,
                            peer: peer.clone(),
                        }),
                );
        }
        true
    }

    /// Closes one channel with `peer`: its unread messages are purged, and the session closes
    /// with its last open channel.
    pub fn close_channel(&mut self, peer: &Identity, channel: i32) -> bool {
        let Some(s) = self.sessions.get_mut(peer) else {
            return false;
        };
        s.channels.remove(channel);
        let last = s.channels.is_empty();
        if let Some(q) = self.queues.get_mut(&channel) {
            let (mut purged, mut purged_bytes) = (0, 0);
            q.retain(|d| {
                let keep = &d.peer != peer;
                if !keep {
                    purged += 1;
                    purged_bytes += d.msg.data.len();
                }
                keep
            });
            s.unread = s.unread.saturating_sub(purged);
            s.unread_bytes = s.unread_bytes.saturating_sub(purged_bytes);
            s.backlog.remove(channel, purged, purged_bytes);
            s.requeue_if_read(peer, &mut self.idle);
        }
        if last {
            self.close_session(peer);
        }
        true
    }

    /// The session a connection carries, made (or moved onto this connection) if the
    /// connection is new to us: a peer that connects again replaces its old connection.
    fn session_for(&mut self, now: Timestamp, h: ConnectionHandle) -> Option<Identity> {
        if let Some(peer) = self.by_conn.get(&h) {
            return Some(peer.clone());
        }
        let c = self.endpoint.connection(h)?;
        let peer = c.peer().clone();
        match self.sessions.get_mut(&peer) {
            Some(s) => {
                let old = std::mem::replace(&mut s.conn, h);
                self.by_conn.remove(&old);
                self.endpoint.forget(old);
            }
            None => {
                let session = Session::new(h, now, &peer, &mut self.last_serial, &mut self.idle);
                self.sessions.insert(peer.clone(), session);
            }
        }
        self.by_conn.insert(h, peer.clone());
        Some(peer)
    }

    /// Handles a datagram from `from`.
    pub fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]) {
        let from = crate::identity::normalize(from);

        self.scratch.clear();
        let mut msgs = std::mem::take(&mut self.scratch);
        // `Some` when the datagram was taken by a connection, or (refused part-way, a later
        // segment beyond the receive window, say) completed messages from its earlier
        // segments: their bytes have left the stream, and a resend of them would be taken as
        // a duplicate, so they are delivered now or never.
        let taken = self.endpoint.handle_datagram(now, from, data, &mut msgs);
        self.collect_endpoint_events();
        let Some(peer) = taken.and_then(|h| self.session_for(now, h)) else {
            self.scratch = msgs;
            return;
        };
        let Some(session) = self.sessions.get_mut(&peer) else {
            self.scratch = msgs;
            return;
        };
        if !msgs.is_empty() {
            // Messages count as use; keepalives and acks do not, or no session would idle out.
            session.last_used = now;
        }
        let max_msgs = usize::try_from(self.config.recv_buffer_messages).unwrap_or(usize::MAX);
        let max_bytes = usize::try_from(self.config.recv_buffer_size).unwrap_or(usize::MAX);
        for m in msgs.drain(..) {
            session.channels.insert(m.channel);
            let (count, bytes) = session.backlog();
            let over = count + 1 > max_msgs || bytes + m.data.len() > max_bytes;
            // Reliable data in an accepted packet is already acknowledged: it is kept even past
            // the limit (by at most one packet's worth), and back-pressure below stops more.
            if over && m.send_flags & send_flags::RELIABLE == 0 {
                self.stats.dropped_recv_full += 1;
                tracing::debug!(
                    %peer,
                    channel = m.channel,
                    "unreliable message dropped: the session's receive backlog is full"
                );
                continue;
            }
            if session.accepted {
                Self::deliver(session, &peer, m, &mut self.queues, &mut self.events);
            } else {
                let held = session.held.get_or_insert_with(Box::default);
                held.bytes += m.data.len();
                held.messages.push_back(m);
            }
        }
        self.scratch = msgs;
        let blocked = session.over_limit(max_msgs, max_bytes);
        if blocked && !session.recv_blocked {
            self.pause.on_full(now, &peer);
        }
        let accepted = session.accepted;
        let due = !accepted
            && session
                .last_request_posted
                .is_none_or(|t| now.saturating_since(t) >= SESSION_REQUEST_REPOST);
        if due {
            session.last_request_posted = Some(now);
        }
        Self::set_blocked(
            session,
            &peer,
            blocked,
            &mut self.endpoint,
            &mut self.events,
            &mut self.stats,
        );
        if due {
            tracing::debug!(%peer, "session request posted (accept it to receive its messages)");
            self.events.push_back(Event::SessionRequest(peer));
        }
    }

    /// Applies a session's receive block to its connection, and on a new stall tells the
    /// application which backlog holds it.
    fn set_blocked(
        s: &mut Session,
        peer: &Identity,
        blocked: bool,
        endpoint: &mut Endpoint,
        events: &mut VecDeque<Event>,
        stats: &mut MessagesStats,
    ) {
        if let Some(c) = endpoint.connection_mut(s.conn) {
            c.set_recv_blocked(blocked);
        }
        if blocked == s.recv_blocked {
            return;
        }
        s.recv_blocked = blocked;
        if !blocked {
            tracing::debug!(%peer, "session receives again: its backlog is below the limit");
            return;
        }
        stats.receive_stalls += 1;
        let backlog = s.blocking_backlog();
        match backlog.channel {
            Some(ch) => tracing::warn!(
                %peer,
                channel = ch,
                unread = backlog.messages,
                bytes = backlog.bytes,
                "session stalled: channel {ch}'s unread messages fill its receive limit (recvBufferMessages / recvBufferSize); every channel of this peer waits until the application reads channel {ch}"
            ),
            None => tracing::warn!(
                %peer,
                held = backlog.messages,
                bytes = backlog.bytes,
                "session stalled: messages held until the session is accepted fill its receive limit; accept it (acceptSessionWithUser) or close it"
            ),
        }
        events.push_back(Event::ReceiveBlocked {
            peer: peer.clone(),
            backlog,
        });
    }

    /// Whether a send to `peer` has room now; if not, [`Event::Writable`] is posted once it
    /// has. `None` when the session ended (a send returns `NoConnection`).
    pub fn watch_writable(&mut self, peer: &Identity) -> Option<bool> {
        let room_at = usize::try_from(self.config.send_buffer_size).unwrap_or(0) / 2;
        let Some(s) = self.sessions.get_mut(peer) else {
            // No session: a send opens one, with an empty buffer.
            return Some(true);
        };
        let c = self.endpoint.connection(s.conn).filter(|c| !c.is_dead())?;
        if c.queued_bytes() <= room_at {
            return Some(true);
        }
        if !s.want_writable {
            s.want_writable = true;
            self.writable_watch.push(peer.clone());
        }
        Some(false)
    }

    /// Posts [`Event::Writable`] for sessions that refused a send and have room again
    /// (unsent bytes at half of `sendBufferSize` or below); forgets those that are gone.
    fn check_writable(&mut self) {
        if self.writable_watch.is_empty() {
            return;
        }
        let room_at = usize::try_from(self.config.send_buffer_size).unwrap_or(0) / 2;
        let mut watch = std::mem::take(&mut self.writable_watch);
        watch.retain(|peer| {
            let Some(s) = self.sessions.get_mut(peer).filter(|s| s.want_writable) else {
                return false;
            };
            match self.endpoint.connection(s.conn) {
                Some(c) if !c.is_dead() && c.queued_bytes() > room_at => true,
                Some(c) if !c.is_dead() => {
                    s.want_writable = false;
                    self.events.push_back(Event::Writable(peer.clone()));
                    false
                }
                // Failed or gone: its failure (or close) is what the application hears.
                _ => {
                    s.want_writable = false;
                    false
                }
            }
        });
        self.writable_watch = watch;
    }

    /// Whether every live connection has delivered all its reliable data (nothing queued,
    /// nothing unacknowledged): the end of a linger.
    pub fn is_settled(&self) -> bool {
        self.sessions.values().all(|s| {
            self.endpoint.connection(s.conn).is_none_or(|c| {
                c.is_dead() || (c.queued_bytes() == 0 && c.unacked_reliable_bytes() == 0)
            })
        })
    }

    /// Messages waiting on `channel`.
    pub fn queued(&self, channel: i32) -> usize {
        self.queues.get(&channel).map_or(0, VecDeque::len)
    }

    /// The channels with messages waiting, in no particular order.
    pub fn waiting_channels(&self) -> impl Iterator<Item = i32> + '_ {
        self.queues
            .iter()
            .filter(|(_, q)| !q.is_empty())
            .map(|(&ch, _)| ch)
    }

    /// Sessions by state: `(state, count)` for every state at least one session is in.
    pub fn session_states(&self) -> Vec<(ConnectionState, usize)> {
        let mut out: Vec<(ConnectionState, usize)> = Vec::new();
        for s in self.sessions.values() {
            let state = self
                .endpoint
                .connection(s.conn)
                .map_or(ConnectionState::None, |c| c.state());
            match out.iter_mut().find(|(st, _)| *st == state) {
                Some(e) => e.1 += 1,
                None => out.push((state, 1)),
            }
        }
        out
    }

    /// Sessions whose receive backlog is at its limit right now.
    pub fn blocked_sessions(&self) -> usize {
        self.sessions.values().filter(|s| s.recv_blocked).count()
    }

    /// Messages waiting on every channel, all sessions together.
    pub fn queued_total(&self) -> usize {
        self.queues.values().map(VecDeque::len).sum()
    }

    /// Steam's detailed status text for the session with `peer`: its connection's figures
    /// (see [`crate::connection::Connection::detailed_status`]), then the session's own.
    pub fn detailed_status(&self, now: Timestamp, peer: &Identity) -> Option<String> {
        let s = self.sessions.get(peer)?;
        let mut out = String::with_capacity(1536);
        match self.endpoint.connection(s.conn) {
            Some(c) => c.write_detailed_status(now, &mut out),
            None => out.push_str("No connection (it ended and is gone)\n"),
        }
        use crate::connection::status_text::{bytes, count};
        use std::fmt::Write as _;
        let _ = writeln!(out, "Session with {peer}:");
        let _ = writeln!(
            out,
            "    {}; idle for {:.1} s (closes after messagesSessionIdleTimeout, {} ms)",
            if s.accepted {
                "accepted"
            } else {
                "not accepted yet: nothing is delivered until acceptSessionWithUser or a send"
            },
            now.saturating_since(s.last_used).as_secs_f64(),
            self.config.messages_session_idle_timeout
        );
        let channels: Vec<String> = s.channels.iter().map(i32::to_string).collect();
        let _ = writeln!(
            out,
            "    Channels used: {}",
            if channels.is_empty() {
                "none".to_owned()
            } else {
                channels.join(", ")
            }
        );
        let (n, b) = s.backlog();
        let _ = write!(
            out,
            "    Unread: {} messages, {}",
            count(n as u64),
            bytes(b as u64)
        );
        let mut per: Vec<Backlog> = s.backlog.channels().collect();
        per.sort_by_key(|b| std::cmp::Reverse(b.messages));
        if !per.is_empty() {
            let list: Vec<String> = per
                .iter()
                .take(8)
                .map(|b| {
                    format!(
                        "channel {}: {}",
                        b.channel.unwrap_or(-1),
                        count(b.messages as u64)
                    )
                })
                .collect();
            let _ = write!(out, " ({})", list.join(", "));
        }
        let _ = writeln!(
            out,
            "; limit {} messages / {}",
            count(u64::try_from(self.config.recv_buffer_messages).unwrap_or(0)),
            bytes(u64::try_from(self.config.recv_buffer_size).unwrap_or(0))
        );
        if s.recv_blocked {
            let b = s.blocking_backlog();
            match b.channel {
                Some(ch) => {
                    let _ = writeln!(
                        out,
                        "    STALLED: channel {ch}'s {} unread messages fill the receive limit; nothing more arrives from this peer on any channel until channel {ch} is read",
                        count(b.messages as u64)
                    );
                }
                None => {
                    let _ = writeln!(
                        out,
                        "    STALLED: messages held before acceptance fill the receive limit; accept or close the session"
                    );
                }
            }
        }
        Some(out)
    }

    /// Closes every session politely (the endpoint is shutting down).
    pub fn close_all(&mut self) {
        let peers: Vec<Identity> = self.sessions.keys().cloned().collect();
        for p in peers {
            self.close_session(&p);
        }
    }

    /// Takes up to `max` waiting messages from `channel`.
    pub fn receive(&mut self, channel: i32, max: usize) -> Vec<Delivered> {
        let Some(q) = self.queues.get_mut(&channel) else {
            return Vec::new();
        };
        let n = max.min(q.len());
        let out: Vec<Delivered> = q.drain(..n).collect();
        // The sessions' counts are settled per run of one peer's messages, not per message:
        // a flood from one peer fills the queue with long runs, and each settlement hashes
        // the identity to find the session.
        let mut rest = out.as_slice();
        while let Some(first) = rest.first() {
            let run = rest
                .iter()
                .position(|d| d.peer != first.peer)
                .unwrap_or(rest.len());
            let (this, after) = rest.split_at(run);
            rest = after;
            let bytes: usize = this.iter().map(|d| d.msg.data.len()).sum();
            if let Some(s) = self.sessions.get_mut(&first.peer) {
                s.unread = s.unread.saturating_sub(run);
                s.unread_bytes = s.unread_bytes.saturating_sub(bytes);
                s.backlog.remove(channel, run, bytes);
                s.requeue_if_read(&first.peer, &mut self.idle);
            }
        }
        self.update_backpressure(out.iter().map(|d| &d.peer));
        out
    }

    /// Lifts (or keeps) the receive block of the sessions these peers belong to.
    fn update_backpressure<'a>(&mut self, peers: impl Iterator<Item = &'a Identity>) {
        let max_msgs = usize::try_from(self.config.recv_buffer_messages).unwrap_or(usize::MAX);
        let max_bytes = usize::try_from(self.config.recv_buffer_size).unwrap_or(usize::MAX);
        let mut last: Option<&Identity> = None;
        for peer in peers {
            if last == Some(peer) {
                continue;
            }
            last = Some(peer);
            let s = self.sessions.get_mut(peer);
            self.pause
                .on_read(peer, s.as_ref().map(|s| s.backlog()), (max_msgs, max_bytes));
            if let Some(s) = s {
                let blocked = s.over_limit(max_msgs, max_bytes);
                Self::set_blocked(
                    s,
                    peer,
                    blocked,
                    &mut self.endpoint,
                    &mut self.events,
                    &mut self.stats,
                );
            }
        }
    }

    /// Sends what Nagle holds for `peer` now.
    pub fn flush(&mut self, now: Timestamp, peer: &Identity) -> EResult {
        let Some(s) = self.sessions.get(peer) else {
            return EResult::NoConnection;
        };
        match self.endpoint.connection_mut(s.conn) {
            Some(c) if c.failure().is_none() => {
                c.flush(now);
                EResult::Ok
            }
            _ => EResult::NoConnection,
        }
    }

    /// A status snapshot of the session with `peer`.
    pub fn session_info(&self, peer: &Identity) -> Option<SessionInfo> {
        let s = self.sessions.get(peer)?;
        let conn = self.endpoint.connection(s.conn);
        let stats = conn.map(|c| c.stats()).unwrap_or_default();
        let (unread_messages, unread_bytes) = s.backlog();
        Some(SessionInfo {
            packets_acked: stats.packets_acked,
            packets_dropped: stats.packets_dropped,
            packets_unauthenticated: stats.packets_unauthenticated,
            packets_replayed: stats.packets_replayed,
            reliable_bytes_resent: conn.map_or(0, |c| c.reliable_bytes_resent()),
            unread_messages,
            unread_bytes,
            receive_blocked: s.recv_blocked.then(|| s.blocking_backlog()),
            backlog: s.backlog.channels().collect(),
            state: conn.map_or(ConnectionState::None, |c| c.state()),
            remote: conn.map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.remote()),
            accepted: s.accepted,
            pending_bytes: conn.map_or(0, |c| c.queued_bytes()),
            unacked_reliable: conn.map_or(0, |c| c.unacked_reliable_bytes()),
            rtt: conn.and_then(|c| c.rtt()),
            send_rate: conn.map_or(0, |c| c.send_rate()),
            packets_lost: stats.packets_lost,
            rates: conn.map(|c| c.rates()).unwrap_or_default(),
            pending_unreliable: conn.map_or(0, |c| c.pending_unreliable()),
            pending_reliable: conn.map_or(0, |c| c.pending_reliable()),
            queue_time: conn.map_or(Duration::ZERO, |c| c.queue_time()),
            end: conn.and_then(|c| c.end()).cloned(),
            flags: if matches!(peer, Identity::Ip(_)) {
                crate::sockets::info_flags::UNAUTHENTICATED
            } else {
                0
            },
            packets_sent: stats.packets_sent,
            bytes_sent: stats.bytes_sent,
            packets_received: stats.packets_received,
            bytes_received: stats.bytes_received,
        })
    }

    /// A status snapshot of every session, in no particular order.
    pub fn session_infos(&self) -> Vec<(Identity, SessionInfo)> {
        self.sessions
            .keys()
            .filter_map(|p| Some((p.clone(), self.session_info(p)?)))
            .collect()
    }

    /// Calls `send` for every datagram ready to go.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        send: impl FnMut(SocketAddr, &[u8]),
    ) {
        self.endpoint.poll_transmit(now, buf, send);
        self.check_writable();
    }

    /// The next event for the application, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.collect_endpoint_events();
        self.events.pop_front()
    }

    /// Turns the endpoint's connection state changes into session events: `SessionFailed`
    /// for a session's connection that failed locally, once, in the order they happened.
    fn collect_endpoint_events(&mut self) {
        while let Some(e) = self.endpoint.poll_event() {
            if e.new != ConnectionState::ProblemDetectedLocally
                && e.new != ConnectionState::ClosedByPeer
            {
                continue;
            }
            let Some(peer) = self.by_conn.get(&e.conn) else {
                continue;
            };
            let Some(c) = self.endpoint.connection(e.conn) else {
                continue;
            };
            if let Some(end) = c.failure() {
                self.events.push_back(Event::SessionFailed {
                    peer: peer.clone(),
                    remote: c.remote(),
                    end: end.clone(),
                });
            } else if let Some(end) = c.end().filter(|_| c.closed_by_peer().is_some()) {
                self.events.push_back(Event::SessionClosed {
                    peer: peer.clone(),
                    remote: c.remote(),
                    end: end.clone(),
                });
            }
        }
    }

    /// When the connection of the session with `peer` next needs [`Messages::poll_transmit`]
    /// or [`Messages::handle_timeout`]: what a send to `peer` can have moved, found without
    /// looking at any other connection. Control datagrams waiting count as due now.
    pub fn deadline_of(&self, peer: &Identity) -> Option<Timestamp> {
        let s = self.sessions.get(peer)?;
        self.endpoint.deadline_of(s.conn)
    }

    /// Whether events wait for [`Messages::poll_event`].
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    /// When [`Messages::handle_timeout`] must next run. The idle part may come early (the
    /// earliest session in the idle queue may have been used since); that wake-up finds out.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let idle = self
            .idle_timeout()
            .and_then(|idle| Some(self.idle.earliest()? + idle));
        [idle, self.endpoint.poll_timeout(), self.pause.deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Whether a session's backlog just filled and the application is draining it: the
    /// driver should leave datagrams in the kernel's buffer until this turns false (at most
    /// `crate::receive_pause::MAX_PAUSE`; see there).
    pub fn receive_paused(&self) -> bool {
        self.pause.is_paused()
    }

    /// Closes sessions idle for longer than `messagesSessionIdleTimeout`, silently (as Steam).
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.pause.on_timeout(now);
        self.endpoint.handle_timeout(now);
        self.collect_endpoint_events();
        let Some(idle) = self.idle_timeout() else {
            return;
        };
        // Sessions last used at or before `cutoff` have been idle long enough.
        let Some(cutoff) = now
            .as_micros()
            .checked_sub(u64::try_from(idle.as_micros()).unwrap_or(u64::MAX))
            .map(Timestamp::from_micros)
        else {
            return;
        };
        let mut expired: Vec<Identity> = Vec::new();
        for _ in 0..IDLE_CHECKS_PER_TIMEOUT {
            let Some(entry) = self.idle.pop_until(cutoff) else {
                break;
            };
            let Some(s) = self
                .sessions
                .get_mut(&entry.peer)
                .filter(|s| s.serial == entry.serial)
            else {
                // The session closed since it was queued.
                continue;
            };
            s.idle_queued = false;
            if s.last_used > cutoff {
                // Used since: back in line at its last use (after the cutoff, so not again
                // in this call).
                s.idle_queued = true;
                self.idle.push(idle_queue::Entry {
                    used: s.last_used,
                    ..entry
                });
            } else if s.unread == 0 {
                expired.push(entry.peer);
            }
            // Otherwise unread messages keep it in use (closing it would discard them); it
            // is queued again once they are read.
        }
        for id in expired {
            tracing::debug!(peer = %id, "session closed: idle for messagesSessionIdleTimeout");
            self.close_session(&id);
        }
    }

    fn idle_timeout(&self) -> Option<Duration> {
        u64::try_from(self.config.messages_session_idle_timeout)
            .ok()
            .filter(|&ms| ms > 0)
            .map(Duration::from_millis)
    }

    fn release_held(
        s: &mut Session,
        peer: &Identity,
        queues: &mut Map<i32, VecDeque<Delivered>>,
        events: &mut VecDeque<Event>,
    ) {
        // Taken whole, so the accepted session keeps no empty queue's capacity.
        for m in s.held.take().map(|h| h.messages).unwrap_or_default() {
            Self::deliver(s, peer, m, queues, events);
        }
        if s.recv_blocked {
            // Still stalled, now by a channel's unread messages rather than by the missing
            // accept: say which.
            events.push_back(Event::ReceiveBlocked {
                peer: peer.clone(),
                backlog: s.blocking_backlog(),
            });
        }
    }

    fn deliver(
        s: &mut Session,
        peer: &Identity,
        msg: InMessage,
        queues: &mut Map<i32, VecDeque<Delivered>>,
        events: &mut VecDeque<Event>,
    ) {
        s.unread += 1;
        s.unread_bytes += msg.data.len();
        s.backlog.add(msg.channel, msg.data.len());
        let channel = msg.channel;
        let q = queues.entry(channel).or_default();
        if q.is_empty() {
            events.push_back(Event::MessagesWaiting(channel));
        }
        q.push_back(Delivered {
            peer: peer.clone(),
            msg,
        });
    }
}

/// Why a message is refused whatever the session's state, if it is: too large, a negative
/// channel, or unknown flags.
fn refused_outright(data: &[u8], flags: u32, channel: i32) -> Option<EResult> {
    (data.len() > MAX_MESSAGE_SIZE || channel < 0 || flags & !send_flags::ALL != 0)
        .then_some(EResult::InvalidParam)
}

impl Session {
    /// Messages and bytes waiting for the application (held before acceptance, unread after).
    fn backlog(&self) -> (usize, usize) {
        if self.accepted {
            (self.unread, self.unread_bytes)
        } else {
            self.held
                .as_ref()
                .map_or((0, 0), |h| (h.messages.len(), h.bytes))
        }
    }

    fn over_limit(&self, max_msgs: usize, max_bytes: usize) -> bool {
        let (count, bytes) = self.backlog();
        count >= max_msgs || bytes >= max_bytes
    }

    /// What holds a blocked session: the channel with the most unread messages, or the
    /// messages held before acceptance.
    fn blocking_backlog(&self) -> Backlog {
        if !self.accepted {
            let (messages, bytes) = self.backlog();
            return Backlog {
                channel: None,
                messages,
                bytes,
            };
        }
        self.backlog.largest().unwrap_or(Backlog {
            channel: None,
            messages: self.unread,
            bytes: self.unread_bytes,
        })
    }

    /// A session on connection `conn` first used at `now`, queued for the idle timeout.
    fn new(
        conn: ConnectionHandle,
        now: Timestamp,
        peer: &Identity,
        last_serial: &mut u64,
        idle: &mut IdleQueue,
    ) -> Self {
        *last_serial += 1;
        let serial = *last_serial;
        idle.push(idle_queue::Entry {
            used: now,
            serial,
            peer: peer.clone(),
        });
        Session {
            conn,
            accepted: false,
            held: None,
            unread: 0,
            unread_bytes: 0,
            last_request_posted: None,
            last_used: now,
            channels: ChannelSet::default(),
            serial,
            idle_queued: true,
            recv_blocked: false,
            want_writable: false,
            backlog: ChannelBacklog::default(),
        }
    }

    /// Puts the session back in the idle queue once its unread messages are all read.
    fn requeue_if_read(&mut self, peer: &Identity, idle: &mut IdleQueue) {
        if self.unread == 0 && !self.idle_queued {
            self.idle_queued = true;
            idle.push(idle_queue::Entry {
                used: self.last_used,
                serial: self.serial,
                peer: peer.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::pair::Pair;

    const A: &str = "127.0.0.1:1000";
    const B: &str = "127.0.0.1:2000";

    fn ip(s: &str) -> Identity {
        Identity::Ip(s.parse().unwrap())
    }

    /// Two messages layers on the shared harness, `a` at `A` and `b` at `B`, at time zero.
    fn pair(a: Messages, b: Messages) -> Pair<Messages, Messages> {
        let mut p = Pair::new(a, b);
        p.now = Timestamp::ZERO;
        p
    }

    /// Runs both sides until nothing moves (handshake included), once the default Nagle
    /// delay has passed; `a`'s traffic goes first.
    fn pump(p: &mut Pair<Messages, Messages>) {
        p.now += Duration::from_millis(10);
        p.rounds(20);
    }

    #[test]
    fn nothing_is_delivered_before_accept_and_all_after() {
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
        );
        let t = Timestamp::ZERO;
        assert_eq!(p.a.send(t, &ip(B), None, b"1", 8, 3), EResult::Ok);
        assert_eq!(p.a.send(t, &ip(B), None, b"2", 8, 3), EResult::Ok);
        pump(&mut p);
        assert_eq!(p.b.poll_event(), Some(Event::SessionRequest(ip(A))));
        assert!(p.b.receive(3, 10).is_empty());
        assert!(p.b.accept(&ip(A)));
        assert!(!p.b.accept(&ip(A)), "already accepted");
        assert_eq!(p.b.poll_event(), Some(Event::MessagesWaiting(3)));
        let got: Vec<_> = p.b.receive(3, 10).into_iter().map(|d| d.msg.data).collect();
        assert_eq!(got, vec![&b"1"[..], &b"2"[..]]);
    }

    #[test]
    fn bad_arguments_are_invalid_param() {
        let mut a = Messages::new(Config::default(), EndpointSetup::for_tests(1));
        let t = Timestamp::ZERO;
        let big = &vec![0u8; MAX_MESSAGE_SIZE + 1];
        assert_eq!(a.send(t, &ip(B), None, big, 8, 0), EResult::InvalidParam);
        assert_eq!(a.send(t, &ip(B), None, &[], 8, -1), EResult::InvalidParam);
        assert_eq!(
            a.send(t, &ip(B), None, &[], 1 << 10, 0),
            EResult::InvalidParam
        );
        let named = Identity::generic_string("bob").unwrap();
        assert_eq!(a.send(t, &named, None, &[], 8, 0), EResult::NoConnection);
    }

    #[test]
    fn send_buffer_limit_refuses_without_queueing() {
        let cfg = Config {
            send_buffer_size: 1000,
            ..Config::default()
        };
        let mut a = Messages::new(cfg, EndpointSetup::for_tests(2));
        let t = Timestamp::ZERO;
        assert_eq!(a.send(t, &ip(B), None, &vec![0; 600], 8, 0), EResult::Ok);
        assert_eq!(
            a.send(t, &ip(B), None, &vec![0; 600], 8, 0),
            EResult::LimitExceeded
        );
        // 600 bytes plus the message header and channel prefix.
        let pending = a.session_info(&ip(B)).unwrap().pending_bytes;
        assert!((605..=612).contains(&pending), "{pending}");
    }

    /// Sends `msgs` to B from `a`, as one run and, on a twin, one by one: the results and
    /// what each queued must match.
    fn run_matches_single_sends(
        a: &mut Messages,
        twin: &mut Messages,
        t: Timestamp,
        msgs: &[(&[u8], u32, i32)],
    ) -> Vec<EResult> {
        let mut run = Vec::new();
        a.send_run(t, &ip(B), None, msgs.iter().copied(), |r| run.push(r));
        let single: Vec<EResult> = msgs
            .iter()
            .map(|&(d, f, c)| twin.send(t, &ip(B), None, d, f, c))
            .collect();
        assert_eq!(run, single);
        let pending = |m: &Messages| m.session_info(&ip(B)).map(|i| i.pending_bytes);
        assert_eq!(pending(a), pending(twin));
        run
    }

    #[test]
    fn a_run_gives_each_message_what_a_send_alone_would() {
        let cfg = Config {
            send_buffer_size: 1000,
            ..Config::default()
        };
        let mut a = Messages::new(cfg.clone(), EndpointSetup::for_tests(2));
        let mut twin = Messages::new(cfg, EndpointSetup::for_tests(2));
        let t = Timestamp::ZERO;
        let big = vec![0u8; MAX_MESSAGE_SIZE + 1];
        let (r, nd) = (send_flags::RELIABLE, send_flags::NO_DELAY);
        let got = run_matches_single_sends(
            &mut a,
            &mut twin,
            t,
            &[
                (b"a", 0, 0),
                (b"bad channel", 0, -1),
                (&big, r, 0),
                (b"unknown flags", 1 << 10, 0),
                (b"not heard from yet", nd, 0),
                (&[1; 600], r, 3),
                (&[2; 600], r, 3),
                (b"c", 0, 5),
            ],
        );
        use EResult::*;
        assert_eq!(
            got,
            [
                Ok,
                InvalidParam,
                InvalidParam,
                InvalidParam,
                Ignored,
                Ok,
                LimitExceeded,
                Ok
            ]
        );

        // The session fails (nobody answers); a run restarts it only from the message that
        // asks, and that message and the rest go on the new one.
        let later = t + Duration::from_secs(11);
        for m in [&mut a, &mut twin] {
            m.handle_timeout(later);
        }
        let restart = send_flags::AUTO_RESTART_BROKEN_SESSION;
        let got = run_matches_single_sends(
            &mut a,
            &mut twin,
            later,
            &[(b"d", 0, 0), (b"e", restart, 0), (b"f", 0, 0)],
        );
        assert_eq!(got, [NoConnection, Ok, Ok]);
    }

    #[test]
    fn close_session_purges_unread() {
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
        );
        let t = Timestamp::ZERO;
        p.a.send(t, &ip(B), None, b"x", 0, 1);
        p.b.send(t, &ip(A), None, b"y", 0, 1);
        pump(&mut p);
        assert!(p.b.close_session(&ip(A)));
        assert!(p.b.receive(1, 10).is_empty());
        assert_eq!(p.b.session_count(), 0);
    }

    #[test]
    fn idle_sessions_expire_silently_after_the_idle_timeout() {
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
        );
        let t = Timestamp::ZERO;
        p.a.send(t, &ip(B), None, b"x", 8, 1);
        p.b.send(t, &ip(A), None, b"y", 8, 1);
        // Drive both sides by their own timers until a's session is gone.
        let mut steps = 0;
        while p.a.session_count() > 0 {
            steps += 1;
            assert!(steps < 10_000, "no progress at {:?}", p.now);
            let next = p.next_timeout().expect("a live session has a timer");
            p.now = next.max(p.now);
            p.run_timers();
            p.round();
            p.a.receive(1, 10);
            p.b.receive(1, 10);
        }
        let now = p.now;
        let idle = Duration::from_millis(180_000);
        assert!(
            now >= t + idle && now <= t + idle + Duration::from_secs(1),
            "{now:?}"
        );
        let mut events = Vec::new();
        while let Some(e) = p.a.poll_event() {
            events.push(e);
        }
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, Event::SessionFailed { .. })),
            "an idle close is silent: {events:?}"
        );
    }

    /// Every session pays its `Session` in the sessions table (beside its connection).
    #[test]
    fn a_session_is_small() {
        let size = std::mem::size_of::<Session>();
        println!("Session: {size} B");
        // 128 B since the messages held before acceptance went behind a box (160 B before).
        assert!(size <= 128, "{size}");
    }

    fn events(m: &mut Messages) -> Vec<Event> {
        std::iter::from_fn(|| m.poll_event()).collect()
    }

    /// A pair whose B holds at most 10 unread messages per session.
    fn pair_with_b_backlog_of_10() -> Pair<Messages, Messages> {
        let cfg = Config {
            recv_buffer_messages: 10,
            ..Config::default()
        };
        pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(cfg, EndpointSetup::for_tests(2)),
        )
    }

    #[test]
    fn a_backlog_that_fills_pauses_reading_until_half_read_or_its_time_is_up() {
        let mut p = pair_with_b_backlog_of_10();
        let t = Timestamp::ZERO;
        p.b.send(t, &ip(A), None, &[], 0, 0); // accept A up front
        pump(&mut p);
        assert!(!p.b.receive_paused());
        for i in 0..10u8 {
            assert_eq!(p.a.send(p.now, &ip(B), None, &[i], 0, 0), EResult::Ok);
        }
        pump(&mut p);
        // Full: the driver is asked to leave datagrams in the kernel, for a bounded time.
        assert!(p.b.receive_paused());
        let until = p.b.poll_timeout().expect("the pause's end is a deadline");
        assert!(until <= p.now + crate::receive_pause::MAX_PAUSE);
        // Reading four leaves six (over half the limit): still paused; one more ends it.
        assert_eq!(p.b.receive(0, 4).len(), 4);
        assert!(p.b.receive_paused());
        assert_eq!(p.b.receive(0, 1).len(), 1);
        assert!(!p.b.receive_paused());
        // Full again, and nobody reads: the pause ends on its own, and does not come back
        // while the backlog stays full.
        for i in 0..5u8 {
            assert_eq!(p.a.send(p.now, &ip(B), None, &[i], 0, 0), EResult::Ok);
        }
        pump(&mut p);
        assert!(p.b.receive_paused());
        p.now += crate::receive_pause::MAX_PAUSE;
        p.run_timers();
        assert!(!p.b.receive_paused());
        assert_eq!(p.a.send(p.now, &ip(B), None, b"x", 0, 0), EResult::Ok);
        pump(&mut p);
        assert!(
            !p.b.receive_paused(),
            "a backlog that stays full pauses once"
        );
    }

    #[test]
    fn an_unread_channel_stalls_the_session_and_the_event_names_it() {
        let mut p = pair_with_b_backlog_of_10();
        let t = Timestamp::ZERO;
        p.b.send(t, &ip(A), None, &[], 0, 0); // accept A up front
        for i in 0..30u8 {
            assert_eq!(p.a.send(t, &ip(B), None, &[i], 8, 5), EResult::Ok);
        }
        pump(&mut p);
        // Sent once the session is stalled: it waits behind channel 5.
        assert_eq!(p.a.send(p.now, &ip(B), None, b"ch0", 8, 0), EResult::Ok);
        pump(&mut p);
        let blocked: Vec<_> = events(&mut p.b)
            .into_iter()
            .filter_map(|e| match e {
                Event::ReceiveBlocked { peer, backlog } => Some((peer, backlog)),
                _ => None,
            })
            .collect();
        assert_eq!(blocked.len(), 1, "one event per stall");
        let (peer, backlog) = &blocked[0];
        assert_eq!(peer, &ip(A));
        assert_eq!(backlog.channel, Some(5));
        assert!(backlog.messages >= 10, "{backlog:?}");
        let info = p.b.session_info(&ip(A)).unwrap();
        assert_eq!(info.receive_blocked.map(|b| b.channel), Some(Some(5)));
        assert_eq!(p.b.stats().receive_stalls, 1);
        assert_eq!(p.b.blocked_sessions(), 1);
        assert!(
            p.b.receive(0, 10).is_empty(),
            "channel 0 waits behind channel 5"
        );
        let text = p.b.detailed_status(p.now, &ip(A)).unwrap();
        assert!(text.contains("STALLED: channel 5"), "{text}");
        // Reading channel 5 lets everything through, nothing lost.
        let mut got5 = Vec::new();
        let mut got0 = Vec::new();
        for _ in 0..20 {
            got5.extend(p.b.receive(5, 100).into_iter().map(|d| d.msg.data[0]));
            got0.extend(p.b.receive(0, 100));
            p.now += Duration::from_millis(300);
            p.run_timers();
            p.rounds(5);
        }
        assert_eq!(got5, (0..30).collect::<Vec<u8>>());
        assert_eq!(got0.len(), 1);
        assert!(p.b.session_info(&ip(A)).unwrap().receive_blocked.is_none());
        assert_eq!(p.b.blocked_sessions(), 0);
    }

    #[test]
    fn a_session_not_accepted_stalls_with_no_channel_named() {
        let cfg = Config {
            recv_buffer_messages: 4,
            ..Config::default()
        };
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(cfg, EndpointSetup::for_tests(2)),
        );
        for _ in 0..8 {
            p.a.send(Timestamp::ZERO, &ip(B), None, b"m", 8, 3);
        }
        pump(&mut p);
        let backlog = events(&mut p.b).into_iter().find_map(|e| match e {
            Event::ReceiveBlocked { backlog, .. } => Some(backlog),
            _ => None,
        });
        assert_eq!(backlog.map(|b| b.channel), Some(None));
        // Accepted, the session is still stalled, now by channel 3's unread messages.
        assert!(p.b.accept(&ip(A)));
        let backlog = events(&mut p.b).into_iter().find_map(|e| match e {
            Event::ReceiveBlocked { backlog, .. } => Some(backlog),
            _ => None,
        });
        assert_eq!(backlog.map(|b| b.channel), Some(Some(3)));
    }

    #[test]
    fn writable_follows_a_refused_send_once_the_buffer_drains() {
        let cfg = Config {
            send_buffer_size: 4000,
            ..Config::default()
        };
        let mut p = pair(
            Messages::new(cfg, EndpointSetup::for_tests(1)),
            Messages::new(Config::default(), EndpointSetup::for_tests(2)),
        );
        let t = Timestamp::ZERO;
        assert_eq!(p.a.watch_writable(&ip(B)), Some(true), "no session: room");
        assert_eq!(p.a.send(t, &ip(B), None, &[0; 3000], 8, 0), EResult::Ok);
        assert_eq!(
            p.a.send(t, &ip(B), None, &[0; 3000], 8, 0),
            EResult::LimitExceeded
        );
        assert_eq!(p.a.watch_writable(&ip(B)), Some(false));
        assert!(!events(&mut p.a).contains(&Event::Writable(ip(B))));
        pump(&mut p);
        let evs = events(&mut p.a);
        assert_eq!(
            evs.iter().filter(|e| **e == Event::Writable(ip(B))).count(),
            1,
            "{evs:?}"
        );
        assert_eq!(p.a.watch_writable(&ip(B)), Some(true));
    }

    #[test]
    fn the_peer_closing_posts_session_closed_not_failed() {
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(Config::default(), EndpointSetup::for_tests(2)),
        );
        let t = Timestamp::ZERO;
        p.a.send(t, &ip(B), None, b"x", 8, 0);
        p.b.send(t, &ip(A), None, b"y", 8, 0);
        pump(&mut p);
        events(&mut p.a);
        assert!(p.b.close_session(&ip(A)));
        pump(&mut p);
        let evs = events(&mut p.a);
        assert!(
            evs.iter()
                .any(|e| matches!(e, Event::SessionClosed { peer, end, .. }
                if peer == &ip(B) && end.reason == END_SESSION_CLOSED)),
            "{evs:?}"
        );
        assert!(!evs.iter().any(|e| matches!(e, Event::SessionFailed { .. })));
        assert_eq!(p.a.watch_writable(&ip(B)), None, "the session ended");
    }

    #[test]
    fn counters_and_status_text_cover_both_directions() {
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(Config::default(), EndpointSetup::for_tests(2)),
        );
        let t = Timestamp::ZERO;
        p.a.send(t, &ip(B), None, b"x", 8, 4);
        p.b.send(t, &ip(A), None, b"y", 8, 4);
        pump(&mut p);
        let e = p.a.endpoint_stats();
        assert!(e.datagrams_sent >= 2 && e.datagrams_received >= 2, "{e:?}");
        assert!(e.bytes_sent > e.datagrams_sent && e.bytes_received > e.datagrams_received);
        assert_eq!(p.a.session_states(), vec![(ConnectionState::Connected, 1)]);
        let text = p.a.detailed_status(p.now, &ip(B)).unwrap();
        for want in [
            "with ip:127.0.0.1:2000 at 127.0.0.1:2000: connected",
            "Current rates",
            "Lifetime totals",
            "Session with ip:127.0.0.1:2000",
            "Channels used: 4",
        ] {
            assert!(text.contains(want), "{want:?} in\n{text}");
        }
        assert!(p.a.detailed_status(p.now, &ip("127.0.0.1:9")).is_none());
    }

    #[test]
    fn replayed_and_forged_packets_are_counted_by_the_endpoint() {
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(Config::default(), EndpointSetup::for_tests(2)),
        );
        let t = Timestamp::ZERO;
        p.a.send(t, &ip(B), None, b"x", 8, 0);
        p.b.send(t, &ip(A), None, b"y", 8, 0);
        pump(&mut p);
        let now = p.now + Duration::from_millis(1);
        let mut out = Vec::new();
        let mut buf = Vec::new();
        for i in 0..2u8 {
            p.a.send(now, &ip(B), None, &[i], 9, 0);
            p.a.poll_transmit(now, &mut buf, |_, d| out.push(d.to_vec()));
        }
        assert!(out.len() >= 2, "{}", out.len());
        let from: SocketAddr = A.parse().unwrap();
        let before = p.b.endpoint_stats();
        p.b.handle_datagram(now, from, &out[0]);
        p.b.handle_datagram(now, from, &out[0]);
        let mut forged = out[1].clone();
        let last = forged.len() - 1;
        forged[last] ^= 0x55;
        p.b.handle_datagram(now, from, &forged);
        let after = p.b.endpoint_stats();
        assert_eq!(after.dropped_replayed - before.dropped_replayed, 1);
        assert_eq!(
            after.dropped_unauthenticated - before.dropped_unauthenticated,
            1
        );
        assert_eq!(after.datagrams_received - before.datagrams_received, 3);
        let s = p.b.session_info(&ip(A)).unwrap();
        assert_eq!((s.packets_replayed, s.packets_unauthenticated), (1, 1));
    }

    #[test]
    fn receive_buffer_is_bounded() {
        let cfg = Config {
            recv_buffer_messages: 5,
            ..Config::default()
        };
        let mut p = pair(
            Messages::new(Config::default(), EndpointSetup::for_tests(1)),
            Messages::new(cfg, EndpointSetup::for_tests(2)),
        );
        let t = Timestamp::ZERO;
        p.b.send(t, &ip(A), None, &[], 0, 0); // accept A up front
        for _ in 0..20 {
            p.a.send(t, &ip(B), None, b"m", 0, 0);
        }
        pump(&mut p);
        assert_eq!(p.b.receive(0, 100).len(), 5);
        assert_eq!(p.b.stats().dropped_recv_full, 15);
    }

    /// Reads settle each session's unread counts per run of one peer's messages: with two
    /// peers' messages interleaved in one queue and read in batches that cut runs, every
    /// session's counts go back to zero, its backlog empties, and it joins the idle queue.
    #[test]
    fn reading_interleaved_peers_settles_each_session() {
        use super::sim_peer::{Peer, Reading};
        use crate::sim::Network;
        let (a, b, c): (SocketAddr, SocketAddr, SocketAddr) = (
            "10.0.0.1:1000".parse().unwrap(),
            "10.0.0.2:2000".parse().unwrap(),
            "10.0.0.3:3000".parse().unwrap(),
        );
        let mut net = Network::new(7);
        net.add_node(a, Peer::new(1)).unwrap();
        let mut pb = Peer::new(2);
        pb.reading = Reading::Stalled;
        net.add_node(b, pb).unwrap();
        net.add_node(c, Peer::new(3)).unwrap();
        let to_b = Identity::Ip(b);
        // Runs of 3 from `a` and 2 from `c`, alternating, 10 rounds.
        for round in 0..10 {
            for (from, n) in [(a, 3), (c, 2)] {
                net.with_node::<Peer, _>(from, |p, now| {
                    for k in 0..n {
                        let body = [round as u8, k as u8, 0, 0, 0];
                        assert_eq!(p.m.send(now, &to_b, None, &body, 0, 0), EResult::Ok);
                        p.m.flush(now, &to_b);
                    }
                });
                let until = net.now() + std::time::Duration::from_millis(20);
                net.run_until(until).unwrap();
            }
        }
        let (ia, ic) = (Identity::Ip(a), Identity::Ip(c));
        net.with_node::<Peer, _>(b, |p, _| {
            let m = &mut p.m;
            assert_eq!(m.sessions.get(&ia).map(|s| s.unread), Some(30));
            assert_eq!(m.sessions.get(&ic).map(|s| s.unread), Some(20));
            let mut got = 0;
            // Batches of 4 cut the runs of 3 and 2 in every place.
            loop {
                let batch = m.receive(0, 4);
                if batch.is_empty() {
                    break;
                }
                got += batch.len();
                let from_a = 30 - m.sessions.get(&ia).map_or(0, |s| s.unread);
                let from_c = 20 - m.sessions.get(&ic).map_or(0, |s| s.unread);
                assert_eq!(from_a + from_c, got, "every message read is settled once");
            }
            assert_eq!(got, 50);
            for id in [&ia, &ic] {
                let s = m.sessions.get(id).unwrap();
                assert_eq!((s.unread, s.unread_bytes), (0, 0));
                assert_eq!(s.backlog.largest(), None);
                assert!(
                    s.idle_queued,
                    "a session read to empty waits in the idle queue"
                );
            }
        });
    }
}

#[cfg(test)]
mod idle_tests;

#[cfg(test)]
mod sim_tests;

#[cfg(test)]
mod sim_peer;

#[cfg(test)]
mod scenario_tests;
