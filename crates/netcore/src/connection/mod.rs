//! One connection to one remote peer, as a sans-IO state machine.
//!
//! # The sans-IO contract
//!
//! A [`Connection`] never reads a clock and never touches a socket. Its owner (the endpoint,
//! driven by the real driver or by the simulated network) feeds it `now` on every call (a
//! [`Timestamp`] that never goes backwards), the datagrams addressed to it, the messages
//! the application wants sent, and a call to [`Connection::handle_timeout`] once the
//! deadline from [`Connection::poll_timeout`] has passed; it drains datagrams to send
//! (written into a caller's buffer) and received messages (appended to a caller's vector).
//! Because every input is explicit, the same code runs under the UDP driver and under the
//! simulated network's virtual clock, and every test run is reproducible.
//!
//! # What travels
//!
//! The GameNetworkingSockets format: handshake control messages (`wire::control`), then
//! AES-GCM sealed data packets (`wire::datagram`) whose SNP frames (`wire::frames`) carry acks
//! and stop-waiting, reliable stream segments per lane and unreliable message segments
//! ([`lanes`]). The mechanisms live in `snp/` (replay window, ack ranges, RTT, loss
//! detection, streams, reassembly, Cubic, pacing); this module composes them.
//!
//! # Where things are
//!
//! | concern | file |
//! |---|---|
//! | life stages and Steam's public states | [`state`] |
//! | the connecting side's handshake requests | [`handshake`] |
//! | lane framing (messages to frames and back) | [`lanes`] |
//! | building and sealing one data packet | [`packet_builder`] |
//! | what the next datagram carries | `transmit.rs` |
//! | receiving one data packet | `recv.rs` |
//! | acks, loss and congestion on the sending side | `recovery.rs` |
//! | counters, RTT, rates and queue sizes | `status.rs` |
//! | the detailed status text (Steam's `GetDetailedConnectionStatus`) | [`status_text`] |
//! | handshake replies, accept, adopt, close: moving between stages | `transitions.rs` |
//! | the timer table | [`timers`] |
//! | probing a peer that may have restarted | [`liveness`] |
//! | rate and quality figures | [`rates`] |
//! | quality reports to and from the peer (stats blob) | [`quality`] |
//!
//! # Methods
//!
//! - Creating: [`Connection::connect`] (we dial), [`Connection::accept`] (the peer dialled).
//! - Handshake input: [`Connection::on_challenge_reply`], [`Connection::on_connect_ok`],
//!   [`Connection::resend_connect_ok`], [`Connection::adopt_incoming`],
//!   [`Connection::accept_held`].
//! - Application input: [`Connection::send`], [`Connection::flush`],
//!   [`Connection::set_config`], [`Connection::set_recv_blocked`], [`Connection::close`].
//! - Peer input: [`Connection::handle_datagram`], [`Connection::on_peer_closed`],
//!   [`Connection::on_peer_has_no_connection`].
//! - Output: [`Connection::poll_transmit`], [`Connection::poll_timeout`],
//!   [`Connection::handle_timeout`], [`Connection::take_state_change`].
//! - Getters: ids and addresses, [`Connection::state`], [`Connection::end`], [`Connection::peer`],
//!   and the status figures ([`Connection::stats`], [`Connection::rtt`], [`Connection::rates`], ...).

pub mod channel_prefix;
pub mod handshake;
pub mod lane_map;
pub mod lanes;
pub mod liveness;
pub mod packet_builder;
pub mod packet_keys;
pub mod quality;
pub mod rates;
pub mod state;
pub mod status_text;
pub mod timers;
pub mod unreliable_queue;

mod recovery;
mod recv;
mod status;
mod transitions;
mod transmit;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use crate::crypto::session_setup::Established;
use crate::end_reason::{End, EndReason};
use crate::identity::Identity;
use crate::snp::ack_ranges::AckRanges;
use crate::snp::congestion::{CongestionControl, Controller, Snapshot};
use crate::snp::pacing::Pacer;
use crate::snp::packet_number::ReplayWindow;
use crate::snp::rtt::RttEstimator;
use crate::snp::sent_packets::SentPackets;
use crate::time::Timestamp;
use crate::wire::control::{ConnectOk, ConnectionClosed, ControlMessage};
use handshake::Handshake;
use lanes::{Carried, RecvLanes, SendLanes};
pub use lanes::{Framing, MAX_LANES};
use state::{Dialing, State};

pub use lanes::LANES;
pub use state::{ConnectionState, StrayAnswer};

/// A connection that neither sent nor received data for this long, with nothing in flight,
/// queued or owed, lets go of what it can rebuild (the cipher's key schedules, emptied
/// buffers): far longer than the gaps in a steady flow, so a busy connection never rebuilds,
/// and shorter than the keepalive interval, so an idle one sheds between keepalives.
const SHED_AFTER: Duration = Duration::from_secs(1);

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
    /// The congestion controller new connections run (`congestionControl`).
    pub congestion: CongestionControl,
    /// How messages map to lanes: the messages model's channel prefix, or raw lanes.
    pub framing: Framing,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            mtu: 1300,
            send_buffer: 512 * 1024,
            nagle: Duration::from_micros(5000),
            rate_min: 262_144,
            rate_max: crate::config::DEFAULT_RATE_MAX as u64,
            max_message: 512 * 1024,
            timeout: Duration::from_secs(10),
            timeout_initial: Duration::from_secs(10),
            congestion: CongestionControl::default(),
            framing: Framing::Messages,
        }
    }
}

impl ConnectionConfig {
    /// The connection settings an endpoint configuration implies, with `framing`.
    pub fn from_config(c: &crate::config::Config, framing: Framing) -> Self {
        let us = |v: i64| u64::try_from(v).unwrap_or(0);
        ConnectionConfig {
            mtu: usize::try_from(c.mtu_packet_size).unwrap_or(1300),
            send_buffer: usize::try_from(c.send_buffer_size).unwrap_or(0),
            nagle: Duration::from_micros(us(c.nagle_time)),
            rate_min: us(c.send_rate_min),
            rate_max: us(c.send_rate_max),
            max_message: usize::try_from(c.recv_max_message_size)
                .unwrap_or(crate::config::MAX_MESSAGE_SIZE),
            timeout: Duration::from_millis(us(c.timeout_connected)),
            timeout_initial: Duration::from_millis(us(c.timeout_initial)),
            congestion: CongestionControl::from_config(c.congestion_control),
            framing,
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
    /// Packets declared lost that the peer acknowledged later (reordering taken for loss):
    /// their resends were not needed. Also counted in `packets_lost`.
    pub packets_spurious: u64,
    /// Reliable bytes sent again, after a loss or in a probe.
    pub bytes_resent: u64,
    /// Probe timeouts: no ack came for a while after the newest packet, so a probe went.
    pub probe_timeouts: u64,
    /// Ack-eliciting packets acknowledged.
    pub packets_acked: u64,
    /// Datagrams that failed authentication (forged, damaged or for another session).
    pub packets_unauthenticated: u64,
    /// Datagrams dropped as replays: a packet number seen before, or older than the window.
    pub packets_replayed: u64,
}

/// Why [`Connection::send`] refused a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The send buffer is full.
    BufferFull,
    /// The connection has ended.
    Closed,
}

/// A change of a connection's public state, for the owner to report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    /// The state last reported.
    pub old: ConnectionState,
    /// The state now.
    pub new: ConnectionState,
}

/// What one sent packet carried, so an ack or a loss can be applied to it.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct Sent {
    at: Timestamp,
    bytes: u64,
    reliable: Carried,
    /// Delivery progress when it was sent, for the delivery rate sample its ack gives.
    rate: Snapshot,
}

/// One connection's state.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct Connection {
    remote: SocketAddr,
    /// Shared with the endpoint and its other connections (until one is configured on its
    /// own): 96 bytes every idle connection would otherwise keep a copy of.
    cfg: Arc<ConnectionConfig>,
    /// Our id for this connection: the peer addresses its packets to it.
    local_id: u32,
    /// We opened this connection (rather than answering the peer's request).
    initiated: bool,
    /// Who the peer is: what we dialled, then what the handshake proved.
    peer: Identity,
    state: State,
    /// The public state last handed to the owner by [`Connection::take_state_change`].
    reported: ConnectionState,
    /// The peer asked for an immediate ack.
    ack_now: bool,
    /// Ack-eliciting packets received since our last ack, weighted (`recv::ack_units`).
    unacked_received: u32,
    /// Last keepalive sent, so quiet connections probe once per interval.
    last_keepalive: Option<Timestamp>,
    /// Probes of a peer that may have restarted (see [`liveness`]); boxed, since few
    /// connections ever run one and every connection pays its size inline.
    probe: Option<Box<liveness::Probe>>,
    /// A probe goes out with the next packet.
    probe_now: bool,
    meter: rates::RateMeter,
    /// Quality reports: when ours go, what the peer's said.
    reports: quality::QualityReports,
    // Sending.
    next_pn: u64,
    send: SendLanes,
    nagle_deadline: Option<Timestamp>,
    /// When the pacer will next allow a packet, if it held data back.
    pacing_wake: Option<Timestamp>,
    /// Data was ready at the last `poll_transmit` but the congestion window was full: an
    /// ack (or the retransmit timer) is what wakes us, not Nagle.
    window_blocked: bool,
    sent: SentPackets<Sent>,
    rtt: RttEstimator,
    cc: Box<dyn Controller>,
    pacer: Pacer,
    /// Recovery state: probes, ack requests, the stop-waiting point, the loss episode, the
    /// delivery rate. Boxed: every connection pays its table slot inline.
    recovery: Box<recovery::Recovery>,
    // Receiving.
    replay: ReplayWindow,
    acks: AckRanges,
    recv: RecvLanes,
    recv_blocked: bool,
    last_heard: Option<Timestamp>,
    /// Last time a message was queued, or a packet with data sent or received.
    last_data: Timestamp,
    /// Nothing left to shed (see `shed_if_idle`) until the next packet.
    shed: bool,
    created: Timestamp,
    stats: ConnectionStats,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("remote", &self.remote)
            .field("state", &self.state.public())
            .field("next_pn", &self.next_pn)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A `ConnectionClosed` datagram to the peer's connection `to` from ours.
fn closed_datagram(to: u32, from: u32, end: &End) -> Option<Vec<u8>> {
    let msg = ControlMessage::ConnectionClosed(ConnectionClosed {
        to_connection_id: Some(to),
        from_connection_id: Some(from),
        debug: Some(end.debug.clone()),
        reason_code: u32::try_from(end.reason.code()).ok(),
    });
    let mut d = Vec::new();
    msg.encode(&mut d).ok().map(|()| d)
}

impl Connection {
    /// A connection we open to `remote`, starting with the handshake. `expected` is the
    /// identity we dialled when it is not an address: the peer must prove it.
    pub fn connect(
        remote: SocketAddr,
        cfg: impl Into<Arc<ConnectionConfig>>,
        now: Timestamp,
        local_id: u32,
        expected: Option<Identity>,
    ) -> Self {
        let peer = expected.clone();
        let dialing = Dialing {
            handshake: Handshake::new(),
            offer: None,
            expected,
        };
        let mut c = Self::new(
            remote,
            cfg,
            now,
            local_id,
            State::Connecting(Box::new(dialing)),
        );
        if let Some(id) = peer {
            c.peer = id;
        }
        c.initiated = true;
        c
    }

    /// A connection accepted from `remote`'s valid `ConnectRequest` (id `client_id`,
    /// timestamp `their_ts` to echo), with the session `est` and the crypto fields of our
    /// `ConnectOK` from the endpoint's checks. `hold` keeps it waiting for
    /// [`Connection::accept_held`] (the connection API); otherwise it answers at once.
    #[allow(clippy::too_many_arguments)]
    pub fn accept(
        remote: SocketAddr,
        cfg: impl Into<Arc<ConnectionConfig>>,
        now: Timestamp,
        local_id: u32,
        client_id: u32,
        their_ts: u64,
        est: Established,
        ok: ConnectOk,
        hold: bool,
    ) -> Self {
        let (state, peer) = Self::server_state(local_id, client_id, their_ts, est, ok, hold);
        let mut c = Self::new(remote, cfg, now, local_id, state);
        c.peer = peer;
        c.last_heard = Some(now);
        c
    }

    fn new(
        remote: SocketAddr,
        cfg: impl Into<Arc<ConnectionConfig>>,
        now: Timestamp,
        local_id: u32,
        state: State,
    ) -> Self {
        let cfg: Arc<ConnectionConfig> = cfg.into();
        let mtu = cfg.mtu as u64;
        Connection {
            remote,
            cfg: cfg.clone(),
            local_id,
            initiated: false,
            peer: Identity::Ip(crate::identity::normalize(remote)),
            state,
            reported: ConnectionState::None,
            ack_now: false,
            unacked_received: 0,
            last_keepalive: None,
            probe: None,
            probe_now: false,
            meter: rates::RateMeter::new(now),
            reports: quality::QualityReports::new(now),
            // Since protocol 10 the handshake messages count as packet 1 each way.
            next_pn: 2,
            send: SendLanes::new(cfg.framing),
            nagle_deadline: None,
            pacing_wake: None,
            window_blocked: false,
            sent: SentPackets::new(),
            rtt: RttEstimator::new(),
            cc: cfg.congestion.build(mtu),
            pacer: Pacer::new(now, mtu, cfg.rate_min, cfg.rate_max),
            recovery: Box::default(),
            replay: ReplayWindow::new(1),
            acks: AckRanges::new(1),
            recv: RecvLanes::new(cfg.framing),
            recv_blocked: false,
            last_heard: None,
            last_data: now,
            shed: false,
            created: now,
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
        self.state.remote_id()
    }

    /// Whether we opened this connection.
    pub fn initiated(&self) -> bool {
        self.initiated
    }

    /// Steam's public state of the connection.
    pub fn state(&self) -> ConnectionState {
        self.state.public()
    }

    /// How the connection ended, once it has.
    pub fn end_info(&self) -> Option<(ConnectionState, &End)> {
        match &self.state {
            State::Closed(e) => Some((e.state, &e.end)),
            _ => None,
        }
    }

    /// The reason and detail of the end, once ended.
    pub fn end(&self) -> Option<&End> {
        self.end_info().map(|(_, e)| e)
    }

    /// The end, if the connection failed on our side (`ProblemDetectedLocally`).
    pub fn failure(&self) -> Option<&End> {
        self.end_info()
            .filter(|(s, _)| *s == ConnectionState::ProblemDetectedLocally)
            .map(|(_, e)| e)
    }

    /// The peer's close reason, if it closed the connection.
    pub fn closed_by_peer(&self) -> Option<EndReason> {
        self.end_info()
            .filter(|(s, _)| *s == ConnectionState::ClosedByPeer)
            .map(|(_, e)| e.reason)
    }

    /// The public state, if it changed since the last call: lets the owner report each
    /// transition once, right when it happens, without scanning every connection.
    pub fn take_state_change(&mut self) -> Option<StateChange> {
        let new = self.state();
        if new == self.reported {
            return None;
        }
        let old = std::mem::replace(&mut self.reported, new);
        Some(StateChange { old, new })
    }

    /// Whether we are the connecting side and still in the handshake.
    pub fn is_connecting(&self) -> bool {
        matches!(self.state, State::Connecting(_))
    }

    /// Whether the connection waits for the application's accept.
    pub fn is_held(&self) -> bool {
        matches!(self.state, State::Held { .. })
    }

    /// Whether the handshake is done on our side and the connection carries data.
    pub fn is_connected(&self) -> bool {
        self.state.carries_data()
    }

    /// Whether the connection can carry no more traffic (ended).
    pub fn is_dead(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Who the peer is (what we dialled until the handshake proves otherwise).
    pub fn peer(&self) -> &Identity {
        &self.peer
    }

    /// Whether anything was ever received from the peer.
    pub fn heard_from_peer(&self) -> bool {
        self.last_heard.is_some()
    }

    /// Whether we still wait for the server's cookie.
    pub fn wants_challenge(&self) -> bool {
        matches!(&self.state, State::Connecting(d) if d.handshake.wants_challenge())
    }

    /// Applies new settings (buffer size, Nagle, rates, timeouts) to a live connection.
    pub fn set_config(&mut self, now: Timestamp, cfg: impl Into<Arc<ConnectionConfig>>) {
        let cfg: Arc<ConnectionConfig> = cfg.into();
        self.pacer.set_bounds(now, cfg.rate_min, cfg.rate_max);
        self.send.set_limit(cfg.send_buffer);
        self.cfg = cfg;
    }

    /// While set, packets carrying new reliable data are neither processed nor acknowledged,
    /// so the sender backs off and resends later: the receive side's back-pressure.
    pub fn set_recv_blocked(&mut self, blocked: bool) {
        self.recv_blocked = blocked;
    }

    /// Queues a message for `channel` (with the raw framing: for lane `channel`). `no_nagle`
    /// sends it without waiting for more data. The payload is copied only once the message is
    /// accepted, so a refused send costs no copy.
    pub fn send(
        &mut self,
        now: Timestamp,
        channel: i32,
        reliable: bool,
        no_nagle: bool,
        data: &[u8],
    ) -> Result<u64, SendError> {
        if self.is_dead() {
            return Err(SendError::Closed);
        }
        let len = channel_prefix::PREFIX_LEN + data.len();
        // As the reference: the limit is on bytes not yet sent (new, or lost and waiting to
        // be resent). Sent, unacknowledged data is bounded separately, by the congestion
        // window and the sent-packet record (`MAX_TRACKED_PACKETS`); counting it here too
        // capped a connection at `sendBufferSize` per round trip whatever the send rate.
        // An empty buffer takes any one message, so a message of the maximum size can always
        // be sent with the default buffer size.
        let buffered = self.send.queued_bytes();
        if buffered > 0 && buffered + len > self.cfg.send_buffer {
            return Err(SendError::BufferFull);
        }
        let number = self
            .send
            .queue(channel, reliable, data, self.cfg.send_buffer);
        self.last_data = now;
        self.shed = false;
        let deadline = if no_nagle { now } else { now + self.cfg.nagle };
        self.nagle_deadline = Some(self.nagle_deadline.map_or(deadline, |d| d.min(deadline)));
        Ok(number)
    }

    /// Sets the send lanes' priorities and weights (Steam's `ConfigureConnectionLanes`;
    /// the caller checks the values): lane `i` gets `schedule[i]`.
    pub fn configure_lanes(&mut self, schedule: Vec<(i32, u16)>) {
        self.send.configure(schedule);
    }

    /// Sends what Nagle holds now.
    pub fn flush(&mut self, now: Timestamp) {
        if self.send.has_pending() {
            self.nagle_deadline = Some(now);
        }
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
        let owed = matches!(self.state, State::Answering { owed: true, .. });
        if self.shed
            || now.saturating_since(self.last_data) < SHED_AFTER
            || self.sent.bytes_in_flight() > 0
            || self.ack_now
            || owed
            || self.acks.ack_deadline().is_some()
            || self.send.has_pending()
        {
            return;
        }
        if let Some(link) = self.state.link_mut() {
            link.keys.release();
        }
        self.acks.shrink();
        self.send.shrink();
        self.recv.shrink();
        self.sent.shrink();
        // Ack-only packets may still wait for their fate (the retransmit timer settles
        // them): until then, try again on the next call.
        self.shed = self.sent.is_empty();
    }
}

#[cfg(test)]
mod size_tests {
    use super::state::Link;
    use super::*;
    use std::mem::size_of;

    /// Ceiling on `size_of::<Connection>()`: every connection pays it inline in the
    /// endpoint's table, idle or not (1,168 B when this was written; 1,280 B with the
    /// quality reports and the loss-recovery state of issues 11 and 15; 1,200 B once the
    /// settings were shared with the endpoint).
    const MAX_CONNECTION_SIZE: usize = 1_232;

    /// Prints what a connection is made of (`--nocapture`) and guards its size.
    #[test]
    fn sizes() {
        let mut rows: Vec<(&str, usize)> = vec![
            ("Connection", size_of::<Connection>()),
            ("State", size_of::<State>()),
            ("Link", size_of::<Link>()),
            (
                "SessionCipher (built while busy)",
                size_of::<crate::crypto::SessionCipher>(),
            ),
            ("ConnectOk (until established)", size_of::<ConnectOk>()),
            ("Dialing (until established)", size_of::<Dialing>()),
            ("Identity", size_of::<Identity>()),
            ("SendLanes", size_of::<SendLanes>()),
            ("RecvLanes", size_of::<RecvLanes>()),
            ("SentPackets<Sent>", size_of::<SentPackets<Sent>>()),
            ("Sent", size_of::<Sent>()),
            ("AckRanges", size_of::<AckRanges>()),
            ("ReplayWindow", size_of::<ReplayWindow>()),
            ("RttEstimator", size_of::<RttEstimator>()),
            ("Cubic (boxed)", size_of::<crate::snp::congestion::Cubic>()),
            ("Bbr (boxed)", size_of::<crate::snp::congestion::Bbr>()),
            ("Pacer", size_of::<Pacer>()),
            ("Recovery (boxed)", size_of::<recovery::Recovery>()),
            ("RateMeter", size_of::<rates::RateMeter>()),
            ("QualityReports", size_of::<quality::QualityReports>()),
            ("ConnectionStats", size_of::<ConnectionStats>()),
            ("ConnectionConfig", size_of::<ConnectionConfig>()),
        ];
        rows.extend(lanes::sizes::rows());
        for (name, size) in rows {
            println!("{name:>34}: {size:>5} B");
        }
        assert!(size_of::<Connection>() <= MAX_CONNECTION_SIZE);
        // The 2 KiB cipher lives behind a box, built only while the connection is busy.
        assert!(size_of::<Link>() <= 128);
    }
}
