//! One connection to one remote peer, as a sans-IO state machine.
//!
//! # The sans-IO contract
//!
//! A [`Connection`] never reads a clock and never touches a socket. Its owner (the endpoint,
//! driven by the real driver or by the simulated network) feeds it:
//! - `now`, on every call, as a [`Timestamp`] that never goes backwards;
//! - datagrams addressed to it ([`Connection::handle_datagram`]);
//! - messages the application wants sent ([`Connection::send`]);
//! - a call to [`Connection::handle_timeout`] once the deadline from
//!   [`Connection::poll_timeout`] has passed;
//!
//! and drains from it datagrams to send ([`Connection::poll_transmit`], written into a
//! caller's buffer) and received messages (appended to a caller's vector). Because every
//! input is explicit, the same code runs under the UDP driver and under the simulated
//! network's virtual clock, and every test run is reproducible.
//!
//! # What travels
//!
//! Data packets in the GameNetworkingSockets format (`wire::datagram`): a clear header with
//! the packet number, then SNP frames (`wire::frames`): acks and stop-waiting, reliable stream
//! segments per lane, and unreliable message segments. Each channel maps to a lane
//! (`channel % 256`), and each lane has its own reliable stream, so a loss on one channel
//! does not hold back another. Messages carry the messages layer's 5-byte prefix
//! ([`channel_prefix`]). The handshake and encryption are not here yet: packets go to
//! connection id 0 in clear text, where the AEAD seal/open step will sit.
//!
//! The mechanisms live in `snp/`: replay window, ack ranges, RTT, loss detection, streams,
//! reassembly, Cubic congestion control and pacing; this module composes them.

pub mod channel_prefix;
pub mod handshake;
pub mod packet_keys;
pub mod rates;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;

use crate::crypto::session_keys::ConnectionIds;
use crate::crypto::session_setup::{ClientOffer, Established, LocalSecurity};
use crate::crypto::TAG_LEN;
use crate::identity::Identity;
use crate::snp::ack_ranges::AckRanges;
use crate::snp::congestion::{self, Controller, Cubic, RttSample};
use crate::snp::pacing::Pacer;
use crate::snp::packet_number::{ReplayWindow, Verdict};
use crate::snp::recv_stream::RecvStream;
use crate::snp::rtt::RttEstimator;
use crate::snp::send_stream::SendStream;
use crate::snp::sent_packets::SentPackets;
use crate::snp::unreliable_reassembly::{ReassemblyConfig, UnreliableReassembler};
use crate::time::Timestamp;
use crate::wire::control::ConnectRequest;
use crate::wire::control::{
    ConnectOk, ConnectionClosed, ControlMessage, UdpStats, STATS_ACK_REQUEST_E2E,
    STATS_ACK_REQUEST_IMMEDIATE,
};
use crate::wire::datagram::MAX_PLAINTEXT_RECV;
use crate::wire::datagram::{DataHeader, DATA_HEADER_LEN, MAX_PLAINTEXT_SEND};
use crate::wire::frames::{
    encode_ack_delay, AckBlock, Frame, FrameDecoder, FrameEncoder, StopWaiting,
};
use crate::wire::reliable_header::ReliableMsgHeader;
use handshake::Handshake;
use packet_keys::PacketKeys;
use prost::Message as _;

/// Lanes on the wire (the reference's limit); channels share them modulo this.
pub const LANES: u32 = 256;
/// Most gaps a lane's receive stream tolerates before refusing segments.
const MAX_RECV_GAPS: usize = 30;
/// Fewest retransmission timeouts that fit in `timeoutConnected` (see `retransmit_timeout`).
const PROBES_PER_TIMEOUT: u32 = 8;
/// Bytes a keepalive's stats blob takes (a `UdpStats` with only the flags field).
const KEEPALIVE_BLOB_MAX: usize = 8;
/// A connection that neither sent nor received data for this long, with nothing in flight,
/// queued or owed, lets go of what it can rebuild (the cipher's key schedules, emptied
/// buffers): far longer than the gaps in a steady flow, so a busy connection never rebuilds,
/// and shorter than the keepalive interval, so an idle one sheds between keepalives.
const SHED_AFTER: Duration = Duration::from_secs(1);
/// Room before a packet's frames for its longest header: the clear header and a keepalive's
/// stats blob with its length byte.
const HEADER_ROOM: usize = DATA_HEADER_LEN + 1 + KEEPALIVE_BLOB_MAX;
/// Receive window per lane: reliable bytes buffered beyond what the application read.
const RECV_WINDOW: usize = 1 << 20;
/// Ack at once after this many ack-eliciting packets, rather than waiting for the delayed-ack
/// timer: at high rates a 50 ms ack clock would starve the sender's congestion window.
const ACK_EVERY: u32 = 4;

/// Settings a connection takes from the endpoint's configuration.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionConfig {
    /// Largest datagram we send (`mtuPacketSize`).
    pub mtu: usize,
    /// Bytes a connection may hold unacknowledged or unsent (`sendBufferSize`).
    pub send_buffer: usize,
    /// How long a message may wait to share a packet (`nagleTime`).
    pub nagle: Duration,
    /// Send rate bounds, B/s.
    pub rate_min: u64,
    /// Upper send rate bound, B/s.
    pub rate_max: u64,
    /// Largest message accepted from the peer.
    pub max_message: usize,
    /// Silence after which a connected peer is given up (`timeoutConnected`).
    pub timeout: Duration,
    /// Time allowed to establish the connection (`timeoutInitial`).
    pub timeout_initial: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            mtu: 1300,
            send_buffer: 512 * 1024,
            nagle: Duration::from_micros(5000),
            rate_min: 262_144,
            rate_max: 262_144,
            max_message: 512 * 1024,
            timeout: Duration::from_secs(10),
            timeout_initial: Duration::from_secs(10),
        }
    }
}

/// A message received from the peer.
#[derive(Clone, Debug)]
pub struct InMessage {
    /// The channel it was sent to.
    pub channel: i32,
    /// `Reliable` (8) if it came on a reliable stream, else 0.
    pub send_flags: u32,
    /// The sender's message number on its lane.
    pub number: u64,
    /// When its last piece arrived.
    pub received_at: Timestamp,
    /// The payload.
    pub data: Bytes,
}

/// Counters for status reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Bytes sent (UDP payload).
    pub bytes_sent: u64,
    /// Datagrams received and accepted.
    pub packets_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Datagrams dropped: malformed, duplicate, or protocol errors.
    pub packets_dropped: u64,
    /// Ack-eliciting packets declared lost (their reliable data is resent).
    pub packets_lost: u64,
    /// Ack-eliciting packets acknowledged.
    pub packets_acked: u64,
    /// Datagrams that failed authentication (forged, damaged or for another session).
    pub packets_unauthenticated: u64,
}

/// Why the connection ended unusually.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// Steam's `ESteamNetConnectionEnd` code.
    pub end_reason: i32,
    /// Human-readable detail.
    pub debug: String,
}

/// Steam's `k_ESteamNetConnectionEnd_Misc_Timeout`.
pub const END_MISC_TIMEOUT: i32 = 5003;
/// Steam's `k_ESteamNetConnectionEnd_Misc_PeerSentNoConnection`.
pub const END_MISC_PEER_SENT_NO_CONNECTION: i32 = 5010;

/// A `ConnectionClosed` datagram to the peer's connection `to` from ours.
fn closed_datagram(to: u32, from: u32, reason: i32, debug: &str) -> Option<Vec<u8>> {
    let msg = ControlMessage::ConnectionClosed(ConnectionClosed {
        to_connection_id: Some(to),
        from_connection_id: Some(from),
        debug: Some(debug.to_owned()),
        reason_code: u32::try_from(reason).ok(),
    });
    let mut d = Vec::new();
    msg.encode(&mut d).ok().map(|()| d)
}
/// Steam's `k_ESteamNetConnectionEnd_Misc_InternalError`, used for protocol violations.
pub const END_MISC_PROTOCOL: i32 = 5002;

struct PendingUnreliable {
    msg_num: u64,
    payload: Bytes,
    offset: usize,
}

struct SendLane {
    stream: SendStream,
    next_msg_num: u64,
    last_reliable_num: u64,
    unreliable: VecDeque<PendingUnreliable>,
}

impl SendLane {
    fn new(limit: usize) -> Self {
        SendLane {
            stream: SendStream::new(1, limit),
            next_msg_num: 1,
            last_reliable_num: 0,
            unreliable: VecDeque::new(),
        }
    }

    fn has_pending(&self) -> bool {
        self.stream.has_pending() || !self.unreliable.is_empty()
    }
}

struct RecvLane {
    stream: RecvStream,
    last_reliable_num: u64,
    highest_unreliable: u64,
    reassembly: UnreliableReassembler,
}

/// What one sent packet carried, so an ack or a loss can be applied to it.
#[derive(Debug)]
struct Sent {
    at: Timestamp,
    bytes: u64,
    reliable: Vec<(u32, Range<u64>)>,
}

/// One connection's state.
pub struct Connection {
    remote: SocketAddr,
    cfg: ConnectionConfig,
    /// Our id for this connection: the peer addresses its packets to it.
    local_id: u32,
    /// The peer's id, once known: our packets go to it.
    remote_id: Option<u32>,
    /// Set while we are the connecting side and the handshake is not done.
    handshake: Option<Handshake>,
    /// Who the peer is: what we dialled, then what the handshake proved.
    peer: Identity,
    /// The non-address identity we dialled, which the peer must prove.
    expected: Option<Identity>,
    /// Our crypto for the connect request in flight (connecting side).
    /// Boxed: handshake-only, so an established connection should not carry its room.
    offer: Option<Box<ClientOffer>>,
    /// Seal and open data packets once the handshake is done.
    keys: Option<PacketKeys>,
    /// The `ConnectOK` we answer with (answering side), resent when the peer asks again;
    /// dropped once the peer's first sealed packet proves it has it.
    connect_ok: Option<Box<ConnectOk>>,
    /// We opened this connection (rather than answering the peer's request).
    initiated: bool,
    /// As the answering side: a `ConnectOK` is owed (the message is in `connect_ok`).
    connect_ok_due: bool,
    /// The peer asked for an immediate ack.
    ack_now: bool,
    /// Ack-eliciting packets received since our last ack.
    unacked_received: u32,
    /// Last keepalive sent, so quiet connections probe once per interval.
    last_keepalive: Option<Timestamp>,
    meter: rates::RateMeter,
    // Sending.
    next_pn: u64,
    /// Send lanes in use, boxed: a map node has room for eleven entries, so inline lanes
    /// would cost every connection eleven lanes' worth of memory for its first one.
    lanes: BTreeMap<u32, Box<SendLane>>,
    nagle_deadline: Option<Timestamp>,
    /// Unreliable bytes queued and not yet sent, kept as a running total so that a send
    /// costs the same however long the queue is.
    unreliable_queued: usize,
    /// When the pacer will next allow a packet, if it held data back.
    pacing_wake: Option<Timestamp>,
    /// Data was ready at the last `poll_transmit` but the congestion window was full: an
    /// ack (or the retransmit timer) is what wakes us, not Nagle.
    window_blocked: bool,
    sent: SentPackets<Sent>,
    rtt: RttEstimator,
    cc: Cubic,
    pacer: Pacer,
    // Receiving.
    replay: ReplayWindow,
    acks: AckRanges,
    /// Receive lanes in use, boxed for the same reason as `lanes`.
    recv_lanes: BTreeMap<u32, Box<RecvLane>>,
    recv_blocked: bool,
    last_heard: Option<Timestamp>,
    /// Last time a message was queued, or a packet with data sent or received.
    last_data: Timestamp,
    /// Nothing left to shed (see `shed_if_idle`) until the next packet.
    shed: bool,
    created: Timestamp,
    failure: Option<Failure>,
    /// Whether the owner was told about `failure` (see [`Connection::take_new_failure`]).
    failure_noticed: bool,
    /// The peer closed the connection politely, with this reason.
    closed_by_peer: Option<u32>,
    stats: ConnectionStats,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .field("next_pn", &self.next_pn)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Why [`Connection::send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The send buffer is full.
    BufferFull,
    /// The connection has failed.
    Failed,
}

impl Connection {
    /// A connection we open to `remote`, starting with the handshake. `expected` is the
    /// identity we dialled when it is not an address: the peer must prove it.
    pub fn connect(
        remote: SocketAddr,
        cfg: ConnectionConfig,
        now: Timestamp,
        local_id: u32,
        expected: Option<Identity>,
    ) -> Self {
        let mut c = Self::new(remote, cfg, now, local_id);
        c.handshake = Some(Handshake::new());
        c.initiated = true;
        if let Some(id) = expected {
            c.peer = id.clone();
            c.expected = Some(id);
        }
        c
    }

    /// A connection accepted from `remote`'s valid `ConnectRequest` (id `client_id`,
    /// timestamp `their_ts` to echo), with the session `est` and the crypto fields of our
    /// `ConnectOK` from the endpoint's checks.
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        remote: SocketAddr,
        cfg: ConnectionConfig,
        now: Timestamp,
        local_id: u32,
        client_id: u32,
        their_ts: u64,
        est: Established,
        ok: ConnectOk,
    ) -> Self {
        let mut c = Self::new(remote, cfg, now, local_id);
        c.become_server(now, client_id, their_ts, est, ok);
        c
    }

    fn new(remote: SocketAddr, cfg: ConnectionConfig, now: Timestamp, local_id: u32) -> Self {
        let mtu = cfg.mtu as u64;
        Connection {
            remote,
            cfg,
            local_id,
            remote_id: None,
            peer: Identity::Ip(crate::identity::normalize(remote)),
            expected: None,
            offer: None,
            keys: None,
            connect_ok: None,
            handshake: None,
            initiated: false,
            connect_ok_due: false,
            ack_now: false,
            unacked_received: 0,
            last_keepalive: None,
            meter: rates::RateMeter::new(now),
            // Since protocol 10 the handshake messages count as packet 1 each way.
            next_pn: 2,
            lanes: BTreeMap::new(),
            nagle_deadline: None,
            unreliable_queued: 0,
            pacing_wake: None,
            window_blocked: false,
            sent: SentPackets::new(),
            rtt: RttEstimator::new(),
            cc: Cubic::new(mtu),
            pacer: Pacer::new(now, mtu, cfg.rate_min, cfg.rate_max),
            replay: ReplayWindow::new(1),
            acks: AckRanges::new(1),
            recv_lanes: BTreeMap::new(),
            recv_blocked: false,
            last_heard: None,
            last_data: now,
            shed: false,
            created: now,
            failure: None,
            failure_noticed: false,
            closed_by_peer: None,
            stats: ConnectionStats::default(),
        }
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Our id for this connection.
    pub fn local_id(&self) -> u32 {
        self.local_id
    }

    /// The peer's id for this connection, once known.
    pub fn remote_id(&self) -> Option<u32> {
        self.remote_id
    }

    /// Whether we opened this connection.
    pub fn initiated(&self) -> bool {
        self.initiated
    }

    /// The peer says it has no connection with the id we send to (it restarted or forgot
    /// us): the connection is over, unusually.
    pub fn on_peer_has_no_connection(&mut self) {
        if !self.is_dead() {
            self.failure = Some(Failure {
                end_reason: END_MISC_PEER_SENT_NO_CONNECTION,
                debug: format!("{} has no such connection", self.remote),
            });
        }
    }

    /// The datagram that tells the peer we closed the connection politely (`reason`).
    pub fn close_datagram(&self, reason: u32, debug: &str) -> Option<Vec<u8>> {
        let remote_id = self.remote_id?;
        if self.is_dead() {
            return None;
        }
        closed_datagram(
            remote_id,
            self.local_id,
            i32::try_from(reason).unwrap_or(0),
            debug,
        )
    }

    /// Whether we are the connecting side and still in the handshake.
    pub fn is_connecting(&self) -> bool {
        self.handshake.is_some()
    }

    /// Whether the handshake is done and the peer is known.
    pub fn is_connected(&self) -> bool {
        self.handshake.is_none() && self.keys.is_some() && !self.is_dead()
    }

    /// Who the peer is (what we dialled until the handshake proves otherwise).
    pub fn peer(&self) -> &Identity {
        &self.peer
    }

    /// Whether we still wait for the server's cookie.
    pub fn wants_challenge(&self) -> bool {
        self.handshake
            .as_ref()
            .is_some_and(Handshake::wants_challenge)
    }

    /// The server answered our challenge: present the cookie with our certificate and a
    /// fresh signed crypt info (`offer`).
    pub fn on_challenge_reply(
        &mut self,
        now: Timestamp,
        challenge: u64,
        echoed: Option<u64>,
        offer: ClientOffer,
        sec: &LocalSecurity,
    ) {
        if let Some(h) = &mut self.handshake {
            if !h.wants_challenge() {
                return;
            }
            let mut req = ConnectRequest::default();
            offer.fill(sec, &mut req);
            h.on_challenge_reply(self.local_id, challenge, req);
            self.offer = Some(Box::new(offer));
            self.rtt_from_echo(now, echoed);
        }
    }

    /// The server accepted us. Checks its certificate and crypt info and derives the
    /// session; a refusal fails the connection (4002/4003/4006) and returns the datagram
    /// that tells the server why.
    pub fn on_connect_ok(
        &mut self,
        now: Timestamp,
        ok: &ConnectOk,
        sec: &LocalSecurity,
        now_unix: u64,
    ) -> Option<Vec<u8>> {
        let in_connect = matches!(
            self.handshake.as_ref().map(Handshake::phase),
            Some(handshake::Phase::Connect { .. })
        );
        let (Some(server_id), Some(offer)) = (ok.server_connection_id, self.offer.as_ref()) else {
            return None;
        };
        if !in_connect {
            return None;
        }
        let ids = ConnectionIds {
            local: self.local_id,
            remote: server_id,
        };
        match offer.finish(sec, ok, ids, now_unix, self.remote, self.expected.as_ref()) {
            Ok(est) => {
                self.handshake = None;
                self.offer = None;
                self.remote_id = Some(server_id);
                self.peer = est.peer;
                self.keys = Some(PacketKeys::new(est.keys));
                self.last_heard = Some(now);
                self.rtt_from_echo(now, ok.your_timestamp);
                None
            }
            Err(refusal) => {
                self.fail(refusal.end_reason, refusal.debug.clone());
                closed_datagram(server_id, self.local_id, refusal.end_reason, &refusal.debug)
            }
        }
    }

    /// Our `ConnectOK` was lost (the peer asked again): send it again.
    pub fn resend_connect_ok(&mut self) {
        if self.connect_ok.is_some() && !self.is_dead() {
            self.connect_ok_due = true;
        }
    }

    /// Both sides opened at once and the peer's attempt wins: become the answering side of
    /// its connection (with the session the endpoint derived for it), keeping everything
    /// queued here.
    pub fn adopt_incoming(
        &mut self,
        now: Timestamp,
        client_id: u32,
        their_ts: u64,
        est: Established,
        ok: ConnectOk,
    ) {
        self.handshake = None;
        self.offer = None;
        self.initiated = false;
        self.become_server(now, client_id, their_ts, est, ok);
    }

    fn become_server(
        &mut self,
        now: Timestamp,
        client_id: u32,
        their_ts: u64,
        est: Established,
        mut ok: ConnectOk,
    ) {
        ok.client_connection_id = Some(client_id);
        ok.server_connection_id = Some(self.local_id);
        ok.your_timestamp = Some(their_ts);
        ok.delay_time_usec = Some(0);
        self.remote_id = Some(client_id);
        self.peer = est.peer;
        self.keys = Some(PacketKeys::new(est.keys));
        self.connect_ok = Some(Box::new(ok));
        self.connect_ok_due = true;
        self.last_heard = Some(now);
    }

    fn fail(&mut self, end_reason: i32, debug: String) {
        if self.failure.is_none() {
            self.failure = Some(Failure { end_reason, debug });
        }
    }

    fn rtt_from_echo(&mut self, now: Timestamp, echoed: Option<u64>) {
        if let Some(sent) = echoed.filter(|&t| t <= now.as_micros()) {
            self.rtt.on_sample(
                now.saturating_since(Timestamp::from_micros(sent)),
                Duration::ZERO,
            );
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.smoothed()
    }

    /// Traffic rates and link quality over the last second or so.
    pub fn rates(&self) -> rates::Rates {
        self.meter.rates()
    }

    /// Unreliable bytes queued and not yet sent.
    pub fn pending_unreliable(&self) -> usize {
        self.unreliable_bytes()
    }

    /// Reliable bytes queued and not yet sent (new or to be resent).
    pub fn pending_reliable(&self) -> usize {
        self.queued_bytes().saturating_sub(self.unreliable_bytes())
    }

    /// Roughly how long a message queued now would wait before its first byte leaves.
    pub fn queue_time(&self) -> Duration {
        let rate = self.pacer.rate().max(1);
        Duration::from_micros((self.queued_bytes() as u64).saturating_mul(1_000_000) / rate)
    }

    fn totals(&self) -> rates::Totals {
        rates::Totals {
            packets_out: self.stats.packets_sent,
            bytes_out: self.stats.bytes_sent,
            packets_in: self.stats.packets_received,
            bytes_in: self.stats.bytes_received,
            settled: self.stats.packets_acked + self.stats.packets_lost,
            lost: self.stats.packets_lost,
        }
    }

    /// Current pacing rate, B/s.
    pub fn send_rate(&self) -> u64 {
        self.pacer.rate()
    }

    /// Why the connection failed, if it did.
    pub fn failure(&self) -> Option<&Failure> {
        self.failure.as_ref()
    }

    /// True once after the connection failed: lets the owner report each failure exactly
    /// once, right when it happens, without scanning every connection.
    pub fn take_new_failure(&mut self) -> bool {
        let new = self.failure.is_some() && !self.failure_noticed;
        self.failure_noticed |= new;
        new
    }

    /// The peer's close reason, if it closed the connection politely.
    pub fn closed_by_peer(&self) -> Option<u32> {
        self.closed_by_peer
    }

    /// The peer said it closed the connection: nothing more is sent or expected. During
    /// our handshake that is a refusal (e.g. it rejected our certificate): a failure.
    pub fn on_peer_closed(&mut self, reason: u32, debug: Option<&str>) {
        if self.handshake.is_some() {
            let why = debug.unwrap_or("no reason given");
            self.fail(
                i32::try_from(reason).unwrap_or(END_MISC_PROTOCOL),
                format!("{} refused the connection: {why}", self.remote),
            );
        } else if self.failure.is_none() {
            self.closed_by_peer = Some(reason);
        }
    }

    /// Whether the connection can carry no more traffic (failed or closed by the peer).
    pub fn is_dead(&self) -> bool {
        self.failure.is_some() || self.closed_by_peer.is_some()
    }

    /// Whether anything was ever received from the peer.
    pub fn heard_from_peer(&self) -> bool {
        self.last_heard.is_some()
    }

    /// Bytes waiting to go on the wire: new or lost reliable data, and unsent unreliable.
    pub fn queued_bytes(&self) -> usize {
        let reliable: u64 = self.lanes.values().map(|l| l.stream.queued_bytes()).sum();
        usize::try_from(reliable).unwrap_or(usize::MAX) + self.unreliable_bytes()
    }

    fn unreliable_bytes(&self) -> usize {
        debug_assert_eq!(
            self.unreliable_queued,
            self.lanes
                .values()
                .flat_map(|l| l.unreliable.iter())
                .map(|u| u.payload.len() - u.offset)
                .sum::<usize>(),
            "running total of queued unreliable bytes"
        );
        self.unreliable_queued
    }

    /// Reliable bytes sent and not yet acknowledged.
    pub fn unacked_reliable_bytes(&self) -> u64 {
        self.lanes
            .values()
            .map(|l| l.stream.in_flight_bytes())
            .sum()
    }

    /// Bytes held for the peer: reliable data until acknowledged, unreliable until sent.
    pub fn buffered_bytes(&self) -> usize {
        let reliable: u64 = self.lanes.values().map(|l| l.stream.buffered_bytes()).sum();
        usize::try_from(reliable).unwrap_or(usize::MAX) + self.unreliable_bytes()
    }

    /// Applies new settings (buffer size, Nagle, rates, timeouts) to a live connection.
    pub fn set_config(&mut self, now: Timestamp, cfg: ConnectionConfig) {
        self.pacer.set_bounds(now, cfg.rate_min, cfg.rate_max);
        for lane in self.lanes.values_mut() {
            lane.stream.set_limit(cfg.send_buffer);
        }
        self.cfg = cfg;
    }

    /// While set, packets carrying new reliable data are neither processed nor acknowledged,
    /// so the sender backs off and resends later: the receive side's back-pressure.
    pub fn set_recv_blocked(&mut self, blocked: bool) {
        self.recv_blocked = blocked;
    }

    /// Queues a message for `channel`. `no_nagle` sends it without waiting for more data.
    /// The payload is copied only once the message is accepted, so a refused send costs no
    /// copy.
    pub fn send(
        &mut self,
        now: Timestamp,
        channel: i32,
        reliable: bool,
        no_nagle: bool,
        data: &[u8],
    ) -> Result<u64, SendError> {
        if self.is_dead() {
            return Err(SendError::Failed);
        }
        let len = channel_prefix::PREFIX_LEN + data.len();
        // As the reference: the limit is on bytes not yet sent (new, or lost and waiting to
        // be resent). Sent, unacknowledged data is bounded separately, by the congestion
        // window and the sent-packet record (`MAX_TRACKED_PACKETS`); counting it here too
        // capped a connection at `sendBufferSize` per round trip whatever the send rate.
        // An empty buffer takes any one message, so a message of the maximum size can always
        // be sent with the default buffer size.
        let buffered = self.queued_bytes();
        if buffered > 0 && buffered + len > self.cfg.send_buffer {
            return Err(SendError::BufferFull);
        }
        let lane_id = (channel as u32) % LANES;
        let limit = self.cfg.send_buffer;
        let lane = self
            .lanes
            .entry(lane_id)
            .or_insert_with(|| Box::new(SendLane::new(limit)));
        let number = lane.next_msg_num;
        lane.next_msg_num += 1;
        if reliable {
            let header = ReliableMsgHeader {
                msg_num_delta: number - lane.last_reliable_num,
                size: len as u32,
            };
            lane.last_reliable_num = number;
            let mut head = Vec::with_capacity(header.encoded_len() + channel_prefix::PREFIX_LEN);
            // Cannot fail: the delta is at least 1 and every message number is used once.
            let _ = header.encode(&mut head);
            head.extend_from_slice(&channel_prefix::encode(channel));
            lane.stream.push(head);
            if !data.is_empty() {
                lane.stream.push_slice(data);
            }
        } else {
            let mut payload = Vec::with_capacity(len);
            payload.extend_from_slice(&channel_prefix::encode(channel));
            payload.extend_from_slice(data);
            self.unreliable_queued += len;
            lane.unreliable.push_back(PendingUnreliable {
                msg_num: number,
                payload: payload.into(),
                offset: 0,
            });
        }
        self.last_data = now;
        self.shed = false;
        let deadline = if no_nagle { now } else { now + self.cfg.nagle };
        self.nagle_deadline = Some(self.nagle_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(number)
    }

    /// Sends what Nagle holds now.
    pub fn flush(&mut self, now: Timestamp) {
        if self.lanes.values().any(|l| l.has_pending()) {
            self.nagle_deadline = Some(now);
        }
    }

    /// Whether data waits for Nagle, the pacer or the congestion window.
    fn data_ready(&self, now: Timestamp) -> bool {
        let pending = self.lanes.values().any(|l| l.has_pending());
        if !pending {
            return false;
        }
        // Lost data queued for resending sets the Nagle deadline to "now" (see `on_lost`).
        self.nagle_deadline.is_some_and(|d| d <= now) || self.queued_bytes() >= MAX_PLAINTEXT_SEND
    }

    fn window_open(&self) -> bool {
        let srtt = self.rtt.smoothed().unwrap_or(crate::snp::rtt::INITIAL_RTT);
        let window = self
            .cc
            .window()
            .max(congestion::min_rate_window(self.cfg.rate_min, srtt));
        (self.sent.bytes_in_flight() as u64) < window && !self.sent.is_full()
    }

    /// Writes the next datagram into `buf` (cleared first); false when nothing should go now.
    pub fn poll_transmit(&mut self, now: Timestamp, buf: &mut Vec<u8>) -> bool {
        let sent = self.transmit(now, buf);
        self.shed_if_idle(now);
        sent
    }

    /// Lets go of what an idle connection can rebuild: the cipher's key schedules (2 KiB)
    /// and the storage its emptied queues and records keep for reuse. Idle means no data
    /// either way for [`SHED_AFTER`] and nothing in flight, queued or owed; a busy connection
    /// never gets here, so its hot path allocates nothing new.
    fn shed_if_idle(&mut self, now: Timestamp) {
        if self.shed
            || now.saturating_since(self.last_data) < SHED_AFTER
            || self.sent.bytes_in_flight() > 0
            || self.ack_now
            || self.connect_ok_due
            || self.acks.ack_deadline().is_some()
            || self.lanes.values().any(|l| l.has_pending())
        {
            return;
        }
        if let Some(k) = &mut self.keys {
            k.release();
        }
        self.acks.shrink();
        for lane in self.lanes.values_mut() {
            lane.stream.shrink();
            if lane.unreliable.is_empty() {
                lane.unreliable = VecDeque::new();
            }
        }
        for lane in self.recv_lanes.values_mut() {
            lane.stream.shrink();
        }
        self.sent.shrink();
        // Ack-only packets may still wait for their fate (the retransmit timer settles
        // them): until then, try again on the next call.
        self.shed = self.sent.is_empty();
    }

    fn transmit(&mut self, now: Timestamp, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        if self.is_dead() {
            return false;
        }
        self.meter.tick(now, self.totals());
        if std::mem::take(&mut self.connect_ok_due) {
            if let Some(ok) = &self.connect_ok {
                return ControlMessage::ConnectOk(ConnectOk::clone(ok))
                    .encode(buf)
                    .is_ok();
            }
        }
        if let Some(h) = &mut self.handshake {
            // No data before the handshake is done; messages wait in their queues.
            return match h.poll(now, self.local_id) {
                Some(msg) => msg.encode(buf).is_ok(),
                None => false,
            };
        }
        let keepalive = self.keepalive_due(now);
        let ack_due = self.ack_now || self.acks.ack_deadline().is_some_and(|d| d <= now);
        let mtu = self.cfg.mtu as u64;
        let data_ready = self.data_ready(now);
        let ready = data_ready && self.window_open();
        self.window_blocked = data_ready && !ready;
        let send_data = ready && self.pacer.can_send(now, mtu);
        self.pacing_wake = if ready && !send_data {
            self.pacer.next_send_time(now, mtu)
        } else {
            None
        };
        if !ack_due && !send_data && !keepalive {
            return false;
        }
        let pn = self.next_pn;
        // Room for the header, a keepalive's stats blob and the AEAD tag.
        let limit = self
            .cfg
            .mtu
            .saturating_sub(DATA_HEADER_LEN + KEEPALIVE_BLOB_MAX + TAG_LEN)
            .min(MAX_PLAINTEXT_SEND);
        // Frames go straight into `buf`, after room for the longest header; the header, known
        // only once the frames are (a keepalive adds a stats blob), is put in front after.
        // So no connection keeps a buffer of its own.
        buf.resize(HEADER_ROOM, 0);
        let mut carried: Vec<(u32, Range<u64>)> = Vec::new();
        let mut ack_eliciting = false;
        let mut data_sent = false;
        {
            let mut enc = FrameEncoder::new(buf, limit);
            // Acks first: they are small and keep the peer's window moving.
            if let Some((latest, received_at)) = self.acks.latest() {
                let blocks = self.ack_blocks(latest);
                let delay = encode_ack_delay(now.saturating_since(received_at).as_micros() as u64);
                if enc.ack(latest, delay, &blocks).is_ok() {
                    self.acks.on_ack_sent();
                    self.ack_now = false;
                    self.unacked_received = 0;
                }
            }
            // Tell the peer which of our packets it may stop acknowledging.
            let first_wanted = self.sent.min_unacked().unwrap_or(pn);
            if let Some(sw) = StopWaiting::new(pn, first_wanted) {
                let _ = enc.stop_waiting(sw);
            }
            if send_data {
                for (&lane_id, lane) in self.lanes.iter_mut() {
                    // Reliable: lost data first, then new (the stream orders them).
                    loop {
                        let room = enc.remaining().saturating_sub(
                            enc.reliable_overhead(lane_id, lane.stream.write_pos()),
                        );
                        if room < 16 {
                            break;
                        }
                        let Some(seg) = lane.stream.next_segment(room) else {
                            break;
                        };
                        if enc.reliable(lane_id, seg.pos, &seg.data).is_err() {
                            lane.stream.on_lost(seg.range());
                            break;
                        }
                        carried.push((lane_id, seg.range()));
                        ack_eliciting = true;
                    }
                    // Unreliable: whole messages or fragments of them.
                    while let Some(u) = lane.unreliable.front_mut() {
                        let overhead = enc.unreliable_overhead(lane_id, u.msg_num, u.offset as u32);
                        let room = enc.remaining().saturating_sub(overhead);
                        let left = u.payload.len() - u.offset;
                        if room == 0 || (room < 16 && room < left) {
                            break;
                        }
                        let take = left.min(room);
                        let last = take == left;
                        let piece = u.payload.slice(u.offset..u.offset + take);
                        if enc
                            .unreliable(lane_id, u.msg_num, u.offset as u32, last, &piece)
                            .is_err()
                        {
                            break;
                        }
                        ack_eliciting = true;
                        data_sent = true;
                        u.offset += take;
                        self.unreliable_queued -= take;
                        if last {
                            lane.unreliable.pop_front();
                        }
                    }
                    if enc.remaining() < 32 {
                        break;
                    }
                }
            }
            enc.finish();
        }
        let frames_len = buf.len() - HEADER_ROOM;
        if frames_len == 0 && !keepalive {
            buf.clear();
            return false;
        }
        // A quiet connection asks the peer for an immediate ack, which proves it is alive
        // (the reference's keepalive: the ack-request flag in the stats blob).
        let stats = (keepalive && !ack_eliciting).then(|| {
            UdpStats {
                flags: Some(STATS_ACK_REQUEST_IMMEDIATE),
                ..UdpStats::default()
            }
            .encode_to_vec()
        });
        if stats.is_some() {
            ack_eliciting = true;
            self.last_keepalive = Some(now);
        }
        let header = DataHeader::new(
            self.remote_id.unwrap_or(0),
            crate::snp::packet_number::truncate(pn),
            stats.as_deref(),
        );
        let head_len = header.encoded_len();
        let sealed = head_len <= HEADER_ROOM
            && {
                // [room][frames] becomes [header][frames]: the frames move left, then the header,
                // appended after them, is copied to the front.
                buf.copy_within(HEADER_ROOM.., head_len);
                buf.truncate(head_len + frames_len);
                header.encode(buf).is_ok()
            }
            && {
                buf.copy_within(head_len + frames_len.., 0);
                buf.resize(head_len + frames_len + TAG_LEN, 0);
                self.keys.as_mut().is_some_and(|k| {
                    k.cipher()
                        .send
                        .seal_in_place(pn, buf.get_mut(head_len..).unwrap_or_default(), frames_len)
                        .is_ok()
                })
            };
        if !sealed {
            // Cannot happen once connected (the buffer always has room for the tag); the
            // frames' contents stay queued for the next packet either way.
            buf.clear();
            return false;
        }
        self.next_pn += 1;
        self.shed = false;
        if !carried.is_empty() || data_sent {
            self.last_data = now;
        }
        let bytes = buf.len() as u64;
        if ack_eliciting {
            self.cc.on_sent(now, bytes);
            self.pacer.on_sent(bytes);
        }
        let record = Sent {
            at: now,
            // Ack-only packets count for nothing: not in flight, not a congestion signal.
            bytes: if ack_eliciting { bytes } else { 0 },
            reliable: carried,
        };
        if let Err(rejected) = self.sent.on_sent(pn, now, buf.len(), ack_eliciting, record) {
            // Not tracked (the record is full): treat its reliable data as lost right away.
            self.requeue(rejected.reliable);
        }
        if !self.lanes.values().any(|l| l.has_pending()) {
            self.nagle_deadline = None;
        }
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += bytes;
        true
    }

    fn ack_blocks(&self, latest: u64) -> Vec<AckBlock> {
        // Newest range first; each block is the run received, then the run missing below it.
        // The last block's missing run reaches down to the floor, since the sender counts
        // everything below the last block (down to its stop-waiting point) as received.
        let mut blocks: Vec<AckBlock> = Vec::new();
        let mut ranges = self.acks.ranges_desc().peekable();
        // The blocks count down from `latest`: the newest range must end there.
        if ranges.peek().is_some_and(|r| *r.end() != latest) {
            return blocks;
        }
        while let Some(r) = ranges.next() {
            let acks = r.end() - r.start() + 1;
            let below = match ranges.peek() {
                Some(next) => r.start() - next.end() - 1,
                None => r.start().saturating_sub(self.acks.floor()),
            };
            blocks.push(AckBlock { acks, nacks: below });
            if blocks.len() >= crate::snp::ack_ranges::MAX_ACK_RANGES {
                break;
            }
        }
        blocks
    }

    fn requeue(&mut self, ranges: Vec<(u32, Range<u64>)>) {
        for (lane, range) in ranges {
            if let Some(l) = self.lanes.get_mut(&lane) {
                l.stream.on_lost(range);
            }
        }
    }

    /// Handles one datagram from the peer, appending delivered messages to `out`.
    /// Returns false if the datagram was dropped (not acknowledged). A packet refused
    /// part-way may still have appended messages completed by its earlier segments: those
    /// left the stream and must be delivered whatever this returns.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        datagram: &[u8],
        out: &mut Vec<InMessage>,
    ) -> bool {
        let ok = self.accept_datagram(now, datagram, out);
        if !ok {
            self.stats.packets_dropped += 1;
        }
        self.shed_if_idle(now);
        ok
    }

    fn accept_datagram(
        &mut self,
        now: Timestamp,
        datagram: &[u8],
        out: &mut Vec<InMessage>,
    ) -> bool {
        self.meter.tick(now, self.totals());
        let Ok((header, sealed)) = DataHeader::decode(datagram) else {
            return false;
        };
        let Some(pn) = self.replay.expand(header.wire_pkt_num) else {
            return false;
        };
        if self.replay.check(pn) != Verdict::New {
            return false;
        }
        let Some(keys) = self.keys.as_mut() else {
            return false;
        };
        // Decrypt on the stack, so an idle connection holds no receive buffer; nothing about
        // the connection changes unless the packet authenticates (a forged or damaged one is
        // dropped and counted). Receivers are lenient up to `MAX_PLAINTEXT_RECV`, no further.
        let mut space = [0u8; MAX_PLAINTEXT_RECV + TAG_LEN];
        let Some(buf) = space.get_mut(..sealed.len()) else {
            return false;
        };
        buf.copy_from_slice(sealed);
        match keys.cipher().recv.open_in_place(pn, buf) {
            Ok(n) => {
                let payload = buf.get(..n).unwrap_or_default();
                self.process_packet(now, pn, header.stats, payload, datagram.len(), out)
            }
            Err(_) => {
                self.stats.packets_unauthenticated += 1;
                false
            }
        }
    }

    /// Acts on an authenticated packet's stats blob and frames.
    fn process_packet(
        &mut self,
        now: Timestamp,
        pn: u64,
        stats: Option<&[u8]>,
        payload: &[u8],
        wire_len: usize,
        out: &mut Vec<InMessage>,
    ) -> bool {
        let mut ack_request = 0;
        if let Some(blob) = stats {
            match UdpStats::decode(blob) {
                Ok(stats) => ack_request = stats.flags.unwrap_or(0),
                Err(_) => return false,
            }
        }
        // Validate every frame before acting on any, so a corrupt packet changes nothing.
        let mut carries_reliable = false;
        let mut carries_data = false;
        let mut ack_eliciting =
            ack_request & (STATS_ACK_REQUEST_E2E | STATS_ACK_REQUEST_IMMEDIATE) != 0;
        for frame in FrameDecoder::new(payload) {
            match frame {
                Ok(Frame::Reliable(_)) => {
                    carries_reliable = true;
                    carries_data = true;
                    ack_eliciting = true;
                }
                Ok(Frame::Unreliable(_)) => {
                    carries_data = true;
                    ack_eliciting = true;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
        if carries_reliable && self.recv_blocked {
            // Back-pressure: unacknowledged, so the peer resends once we have room. The
            // peer is alive all the same (it counts as heard), and we answer at once with an
            // ack-only packet (not acking this one) so it hears from us too: neither side
            // times the session out while we are full.
            self.last_heard = Some(now);
            self.ack_now = true;
            return false;
        }
        let mut lane_ctx_unrel: BTreeMap<u32, u64> = BTreeMap::new();
        for frame in FrameDecoder::new(payload).flatten() {
            match frame {
                Frame::Ack(ack) => self.on_ack_frame(now, ack),
                Frame::StopWaiting(sw) => {
                    if let Some(first) = sw.first_wanted(pn) {
                        self.acks.forget_below(first);
                    }
                }
                Frame::SelectLane(_) => {}
                Frame::Reliable(seg) => {
                    let lane = self.recv_lane(seg.lane);
                    let Some(pos) = seg.stream_pos.resolve(lane.stream.read_pos()) else {
                        return self.fail_protocol("unresolvable stream position");
                    };
                    if lane.stream.insert(pos, seg.data).is_err() {
                        // Out of window or too many gaps: don't ack; the peer resends.
                        return false;
                    }
                    if let Err(why) = self.drain_reliable(seg.lane, now, out) {
                        return self.fail_protocol(why);
                    }
                }
                Frame::Unreliable(seg) => {
                    let reference = *lane_ctx_unrel.entry(seg.lane).or_insert_with(|| {
                        self.recv_lanes
                            .get(&seg.lane)
                            .map_or(0, |l| l.highest_unreliable)
                    });
                    let Some(num) = seg.msg_num.resolve(reference) else {
                        continue;
                    };
                    let lane = self.recv_lane(seg.lane);
                    lane.highest_unreliable = lane.highest_unreliable.max(num);
                    let data = Bytes::copy_from_slice(seg.data);
                    if let Some(whole) =
                        lane.reassembly.insert(now, num, seg.offset, data, seg.last)
                    {
                        if let Some((channel, skip)) = channel_prefix::decode(&whole) {
                            out.push(InMessage {
                                channel,
                                send_flags: 0,
                                number: num,
                                received_at: now,
                                data: whole.slice(skip..),
                            });
                        }
                    }
                }
            }
        }
        self.replay.commit(pn);
        self.meter.on_peer_packet(pn);
        self.acks.on_packet(pn, now, ack_eliciting);
        if ack_eliciting {
            self.unacked_received += 1;
        }
        if ack_request & STATS_ACK_REQUEST_IMMEDIATE != 0 || self.unacked_received >= ACK_EVERY {
            self.ack_now = true;
        }
        self.last_heard = Some(now);
        self.shed = false;
        if carries_data {
            self.last_data = now;
        }
        // The peer sealed this with the session's keys, so it took our ConnectOK: no request
        // of its can call for it again.
        if self.connect_ok.take().is_some() {
            self.connect_ok_due = false;
        }
        self.stats.packets_received += 1;
        self.stats.bytes_received += wire_len as u64;
        true
    }

    fn recv_lane(&mut self, lane: u32) -> &mut RecvLane {
        let max_message = self.cfg.max_message;
        self.recv_lanes.entry(lane).or_insert_with(|| {
            Box::new(RecvLane {
                stream: RecvStream::new(1, RECV_WINDOW.max(max_message + 64), MAX_RECV_GAPS),
                last_reliable_num: 0,
                highest_unreliable: 0,
                reassembly: UnreliableReassembler::new(ReassemblyConfig {
                    max_message_size: max_message + channel_prefix::PREFIX_LEN,
                    ..ReassemblyConfig::default()
                }),
            })
        })
    }

    /// Delivers every whole message at the front of a lane's reliable stream.
    fn drain_reliable(
        &mut self,
        lane_id: u32,
        now: Timestamp,
        out: &mut Vec<InMessage>,
    ) -> Result<(), &'static str> {
        let max = (self.cfg.max_message + channel_prefix::PREFIX_LEN) as u32;
        let Some(lane) = self.recv_lanes.get_mut(&lane_id) else {
            return Ok(());
        };
        loop {
            let (header, head_len) = match ReliableMsgHeader::decode(lane.stream.peek(), max) {
                Ok(Some(h)) => h,
                Ok(None) => return Ok(()),
                Err(_) => return Err("bad reliable message header"),
            };
            let total = head_len + header.size as usize;
            if lane.stream.readable_len() < total {
                return Ok(());
            }
            let _ = lane.stream.read(head_len);
            let body = lane.stream.read(header.size as usize);
            lane.last_reliable_num += header.msg_num_delta;
            let Some((channel, skip)) = channel_prefix::decode(&body) else {
                return Err("reliable message shorter than its channel prefix");
            };
            out.push(InMessage {
                channel,
                send_flags: crate::eresult::send_flags::RELIABLE,
                number: lane.last_reliable_num,
                received_at: now,
                data: body.slice(skip..),
            });
        }
    }

    fn fail_protocol(&mut self, why: &str) -> bool {
        self.failure = Some(Failure {
            end_reason: END_MISC_PROTOCOL,
            debug: format!("peer broke the protocol: {why}"),
        });
        false
    }

    fn on_ack_frame(&mut self, now: Timestamp, ack: crate::wire::frames::AckFrame<'_>) {
        let Some(latest) = ack.latest_pkt.resolve(self.next_pn) else {
            return;
        };
        let mut acked: Vec<std::ops::RangeInclusive<u64>> = Vec::new();
        let mut ranges = ack.ranges(latest);
        for r in ranges.by_ref() {
            match r {
                Ok(r) if !r.acked.is_empty() => acked.push(r.acked.start..=r.acked.end - 1),
                Ok(_) => {}
                Err(_) => return,
            }
        }
        // Below the last block, down to our stop-waiting point, counts as received.
        let implicit_end = ranges.implicit_end();
        if let Some(first) = self.sent.min_unacked() {
            if first < implicit_end {
                acked.push(first..=implicit_end - 1);
            }
        }
        let result = self.sent.on_ack(acked, now, self.rtt.loss_delay());
        if let Some(sample) = result.rtt_sample {
            let delay = Duration::from_micros(ack.delay_micros().unwrap_or(0));
            self.rtt.on_sample(sample, delay);
        }
        let in_flight_before = self.sent.bytes_in_flight() as u64
            + result.acked.iter().map(|(_, s)| s.bytes).sum::<u64>();
        let app_limited = congestion::app_limited(in_flight_before, self.cc.window());
        if !result.acked.is_empty() {
            self.rtt.reset_backoff();
        }
        let srtt = self.rtt.smoothed().unwrap_or(crate::snp::rtt::INITIAL_RTT);
        let sample = RttSample {
            latest: self.rtt.latest().unwrap_or(srtt),
            smoothed: srtt,
            min: self.rtt.min().unwrap_or(srtt),
        };
        for (_, s) in result.acked {
            if s.bytes > 0 {
                self.stats.packets_acked += 1;
                self.cc.on_ack(now, s.at, s.bytes, app_limited, &sample);
            }
            for (lane, range) in s.reliable {
                if let Some(l) = self.lanes.get_mut(&lane) {
                    l.stream.on_acked(range);
                }
            }
        }
        self.on_lost(now, result.lost, false);
        self.pacer.set_rate(now, self.cc.pacing_rate(srtt));
    }

    fn on_lost(&mut self, now: Timestamp, lost: Vec<(u64, Sent)>, persistent: bool) {
        let lost: Vec<Sent> = lost
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.bytes > 0)
            .collect();
        let Some(newest) = lost.iter().map(|s| s.at).max() else {
            return;
        };
        self.stats.packets_lost += lost.len() as u64;
        self.cc.on_congestion_event(now, newest, persistent);
        for s in lost {
            for (lane, range) in s.reliable {
                if let Some(l) = self.lanes.get_mut(&lane) {
                    l.stream.on_lost(range);
                }
            }
        }
        // Resent data goes out without waiting for Nagle.
        self.nagle_deadline = Some(now);
    }

    /// The next instant [`Connection::handle_timeout`] must run, if any.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if self.is_dead() {
            return None;
        }
        let mut t: Option<Timestamp> = None;
        let mut take = |x: Option<Timestamp>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        if let Some(h) = &self.handshake {
            take(Some(h.next_send()));
            take(Some(self.created + self.cfg.timeout_initial));
            return t;
        }
        if self.connect_ok_due || self.ack_now {
            take(Some(Timestamp::ZERO));
        }
        take(self.acks.ack_deadline());
        take(self.sent.next_timeout(self.retransmit_timeout()));
        if self.remote_id.is_some() && self.sent.bytes_in_flight() == 0 {
            // Only when `keepalive_due` can hold: with data in flight the retransmission
            // timer probes instead, and a passed deadline here would fire in a loop.
            take(Some(self.keepalive_deadline()));
        }
        if self.lanes.values().any(|l| l.has_pending()) {
            // A passed Nagle deadline means the data is due and something else holds it.
            if self.pacing_wake.is_none() && !self.window_blocked {
                take(self.nagle_deadline);
                // A full packet waits for no Nagle timer: it is due now. Stated here so a
                // caller that queued it knows whether the driver must wake.
                if self.queued_bytes() >= MAX_PLAINTEXT_SEND {
                    take(Some(Timestamp::ZERO));
                }
            }
            take(self.pacing_wake);
        }
        take(Some(self.silence_deadline()));
        t
    }

    /// The retransmission timeout in force: the estimator's, backoff included, but never so
    /// long that fewer than `PROBES_PER_TIMEOUT` retransmissions fit in `timeoutConnected`.
    /// While data is in flight no keepalive goes out, so these retransmissions are what a
    /// live peer answers; on a lossy path it needs several chances before we give up.
    fn retransmit_timeout(&self) -> Duration {
        let cap = (self.cfg.timeout / PROBES_PER_TIMEOUT).max(crate::snp::rtt::MIN_RTO);
        self.rtt.rto().min(cap)
    }

    fn silence_deadline(&self) -> Timestamp {
        self.last_heard.unwrap_or(self.created) + self.cfg.timeout
    }

    /// How long a connection may stay quiet before it probes the peer: a third of the
    /// connected timeout, so a live peer answers several probes before the timeout.
    fn keepalive_interval(&self) -> Duration {
        (self.cfg.timeout / 3).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    fn keepalive_deadline(&self) -> Timestamp {
        let heard = self.last_heard.unwrap_or(self.created);
        let base = self.last_keepalive.map_or(heard, |k| k.max(heard));
        base + self.keepalive_interval()
    }

    fn keepalive_due(&self, now: Timestamp) -> bool {
        self.remote_id.is_some()
            && self.sent.bytes_in_flight() == 0
            && now >= self.keepalive_deadline()
    }

    /// Runs timers: retransmission, and giving up on a silent peer.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.run_timers(now);
        // The retransmit timer may just have settled the last ack-only packets.
        self.shed_if_idle(now);
    }

    fn run_timers(&mut self, now: Timestamp) {
        if self.is_dead() {
            return;
        }
        if self.handshake.is_some() {
            if now >= self.created + self.cfg.timeout_initial {
                self.failure = Some(Failure {
                    end_reason: END_MISC_TIMEOUT,
                    debug: format!(
                        "could not connect to {} within {} ms",
                        self.remote,
                        self.cfg.timeout_initial.as_millis()
                    ),
                });
            }
            return;
        }
        if now >= self.silence_deadline() {
            self.failure = Some(Failure {
                end_reason: END_MISC_TIMEOUT,
                debug: format!(
                    "no reply from {} for {} ms",
                    self.remote,
                    self.cfg.timeout.as_millis()
                ),
            });
            return;
        }
        let r = self
            .sent
            .on_timeout(now, self.retransmit_timeout(), self.rtt.loss_delay());
        if r.rto_expired {
            self.rtt.on_rto_expired();
        }
        self.on_lost(now, r.lost, r.rto_expired);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use std::mem::size_of;

    /// Ceiling on `size_of::<Connection>()`: every connection pays it inline in the
    /// endpoint's table, idle or not (1,168 B when this was written).
    const MAX_CONNECTION_SIZE: usize = 1_250;

    /// Prints what a connection is made of (`--nocapture`) and guards its size.
    #[test]
    fn sizes() {
        let rows: &[(&str, usize)] = &[
            ("Connection", size_of::<Connection>()),
            ("Option<PacketKeys>", size_of::<Option<PacketKeys>>()),
            (
                "SessionCipher (built while busy)",
                size_of::<crate::crypto::SessionCipher>(),
            ),
            ("ConnectOk (until established)", size_of::<ConnectOk>()),
            ("ClientOffer (until established)", size_of::<ClientOffer>()),
            ("Option<Handshake>", size_of::<Option<Handshake>>()),
            ("Identity", size_of::<Identity>()),
            ("SendLane (boxed)", size_of::<SendLane>()),
            ("RecvLane (boxed)", size_of::<RecvLane>()),
            ("SendStream", size_of::<SendStream>()),
            ("RecvStream", size_of::<RecvStream>()),
            ("UnreliableReassembler", size_of::<UnreliableReassembler>()),
            ("SentPackets<Sent>", size_of::<SentPackets<Sent>>()),
            ("Sent", size_of::<Sent>()),
            ("AckRanges", size_of::<AckRanges>()),
            ("ReplayWindow", size_of::<ReplayWindow>()),
            ("RttEstimator", size_of::<RttEstimator>()),
            ("Cubic", size_of::<Cubic>()),
            ("Pacer", size_of::<Pacer>()),
            ("RateMeter", size_of::<rates::RateMeter>()),
            ("ConnectionStats", size_of::<ConnectionStats>()),
            ("ConnectionConfig", size_of::<ConnectionConfig>()),
            ("Option<Failure>", size_of::<Option<Failure>>()),
        ];
        for (name, size) in rows {
            println!("{name:>34}: {size:>5} B");
        }
        assert!(size_of::<Connection>() <= MAX_CONNECTION_SIZE);
        // The 2 KiB cipher lives behind a box, built only while the connection is busy.
        assert!(size_of::<Option<PacketKeys>>() <= 128);
    }
}
