//! What the next datagram carries: a handshake message, or a data packet with acks,
//! stop-waiting and as much lane data as Nagle, the congestion window and the pacer allow.
//! Probes (see `recovery.rs`) go whatever the window and the pacer say; data packets ask
//! for an immediate ack per `snp::ack_request`, through the stats blob's flags.

use prost::Message as _;

use super::packet_builder::PacketBuilder;
use super::state::State;
use super::{Connection, Sent};
use crate::snp::ack_request::Outgoing;
use crate::snp::congestion::Snapshot;
use crate::snp::packet_number;
use crate::snp::rtt::INITIAL_RTT;
use crate::time::Timestamp;
use crate::wire::control::{
    ConnectOk, ControlMessage, UdpStats, STATS_ACK_REQUEST_E2E, STATS_ACK_REQUEST_IMMEDIATE,
};
use crate::wire::datagram::{DataHeader, MAX_PLAINTEXT_SEND};
use crate::wire::frames::{encode_ack_delay, StopWaiting};

/// Bytes a keepalive's or an ack request's stats blob takes (a `UdpStats` with only the
/// flags field); a packet that carries a quality report reserves this much beyond the report.
const KEEPALIVE_BLOB_MAX: usize = 8;

/// A keepalive's and a probe's flags: acknowledge end to end, at once. The reference answers
/// a stats blob at once only with both set (the immediate flag alone gets a delayed ack).
const ACK_NOW_FLAGS: u32 = STATS_ACK_REQUEST_E2E | STATS_ACK_REQUEST_IMMEDIATE;

/// A data packet's bytes besides its frames: header, stats blob room and the AEAD tag.
const DATA_OVERHEAD: usize = 7 + KEEPALIVE_BLOB_MAX + crate::crypto::TAG_LEN;

impl Connection {
    /// Whether data is due (Nagle) and may go as far as the peer's receive window goes;
    /// the pacer and the congestion window are checked by the caller.
    fn data_ready(&self, now: Timestamp) -> bool {
        if !self.send.has_sendable() {
            return false;
        }
        // Lost data queued for resending sets the Nagle deadline to "now" (see `on_lost`).
        self.nagle_deadline.is_some_and(|d| d <= now)
            || self.send.sendable_bytes() >= MAX_PLAINTEXT_SEND
    }

    /// Writes the next datagram into `buf` (cleared first); false when nothing should go now.
    pub(super) fn transmit(&mut self, now: Timestamp, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        if matches!(self.state, State::Closed(_)) {
            return false;
        }
        self.meter.tick(now, self.totals());
        match &mut self.state {
            State::Closed(_) | State::Held { .. } => return false,
            State::Connecting(d) => {
                // No data before the handshake is done; messages wait in their queues.
                return match d.handshake.poll(now, self.local_id) {
                    Some(msg) => msg.encode(buf).is_ok(),
                    None => false,
                };
            }
            State::Answering { ok, owed, .. } if *owed => {
                *owed = false;
                return ControlMessage::ConnectOk(ConnectOk::clone(ok))
                    .encode(buf)
                    .is_ok();
            }
            State::Answering { .. } | State::Established(_) => {}
        }
        self.data_packet(now, buf)
    }

    fn data_packet(&mut self, now: Timestamp, buf: &mut Vec<u8>) -> bool {
        // A liveness probe is a keepalive sent now (see `liveness`).
        let keepalive = self.keepalive_due(now) || self.probe_now;
        let counters = self.report_counters();
        let report_due = self.reports.due(now, &counters, self.sent.min_unacked());
        let ack_due = self.ack_now || self.acks.ack_deadline().is_some_and(|d| d <= now);
        let mtu = self.cfg.mtu as u64;
        // A probe goes now, whatever the window and the pacer say.
        let probe = self.recovery.probes_owed > 0;
        let data_ready = self.data_ready(now) || (probe && self.send.has_sendable());
        let ready = data_ready && (probe || self.window_open());
        self.window_blocked = data_ready && !ready;
        let send_data = ready && (probe || self.pacer.can_send(now, mtu));
        self.pacing_wake = if ready && !send_data {
            self.pacer.next_send_time(now, mtu)
        } else {
            None
        };
        if !ack_due && !send_data && !keepalive && !probe && !report_due {
            return false;
        }
        let pn = self.next_pn;
        let report_need = self.reports.need(now, &counters, self.sent.min_unacked());
        // A quality report that is due or ready rides in this packet's stats blob: room for
        // it is left before the frames (only in this packet, so data packets keep their size).
        let report = report_need
            .any()
            .then(|| self.quality_report(now, report_need));
        let blob_max = KEEPALIVE_BLOB_MAX
            + report.as_ref().map_or(0, |q| {
                UdpStats {
                    stats: Some(q.clone()),
                    flags: None,
                }
                .encoded_len()
            });
        let mut packet = PacketBuilder::new(buf, self.cfg.mtu, blob_max);
        let written = {
            let mut enc = packet.frames();
            // Acks first: they are small and keep the peer's window moving.
            if let Some((latest, received_at)) = self.acks.latest() {
                let blocks = self.acks.blocks();
                let delay = encode_ack_delay(now.saturating_since(received_at).as_micros() as u64);
                if enc.ack(latest, delay, &blocks).is_ok() {
                    self.acks.on_ack_sent();
                    self.ack_now = false;
                    self.unacked_received = 0;
                }
            }
            // Tell the peer which of our packets it may stop acknowledging.
            let first_wanted = self.stop_waiting_point(pn);
            if let Some(sw) = StopWaiting::new(pn, first_wanted) {
                let _ = enc.stop_waiting(sw);
            }
            let written = if send_data {
                self.send.write(&mut enc)
            } else {
                Default::default()
            };
            enc.finish();
            written
        };
        if packet.frames_len() == 0 && !keepalive && !probe && !report_need.due {
            packet.abandon();
            return false;
        }
        let mut ack_eliciting = written.data;
        // Data asks for an immediate ack when the request clock says so; a probe always
        // does (both flags: the reference answers only requests with `ACK_REQUEST_E2E`).
        let ask = probe
            || (written.data && {
                let bytes = (packet.frames_len() + DATA_OVERHEAD) as u64;
                let window = self.in_flight_limit();
                let in_flight = self.sent.bytes_ahead() as u64 + bytes;
                let p = Outgoing {
                    bytes,
                    ends_flight: !self.send.has_sendable(),
                    reliable: !written.carried.is_empty(),
                    fills_window: in_flight + mtu > window,
                    window,
                    srtt: self.rtt.smoothed().unwrap_or(INITIAL_RTT),
                };
                self.recovery.ack_requests.on_packet(now, &p)
            });
        let flags = if ask {
            Some(ACK_NOW_FLAGS)
        } else if keepalive && !ack_eliciting {
            // A quiet connection asks the peer for an immediate ack, which proves it is
            // alive (the reference's keepalive: the ack-request flags in the stats blob).
            self.last_keepalive = Some(now);
            Some(ACK_NOW_FLAGS)
        } else {
            None
        };
        // A quality report asks for an ack by itself (no flag implied, as the reference).
        let carries_report = report.is_some();
        let stats = (flags.is_some() || carries_report).then(|| {
            UdpStats {
                stats: report,
                flags,
            }
            .encode_to_vec()
        });
        if stats.is_some() {
            ack_eliciting = true;
        }
        // This packet asks for an ack (the ack-request flags, or its data): it is the probe.
        self.probe_now = false;
        let Some(link) = self.state.link_mut() else {
            packet.abandon();
            self.send.on_lost(written.carried);
            return false;
        };
        let header = DataHeader::new(
            link.remote_id,
            packet_number::truncate(pn),
            stats.as_deref(),
        );
        if !packet.seal(&header, pn, &link.keys.cipher().send) {
            // Cannot happen once connected (the buffer always has room for the tag); the
            // frames' reliable contents are queued again for the next packet.
            self.send.on_lost(written.carried);
            return false;
        }
        self.next_pn += 1;
        self.shed = false;
        if ack_eliciting {
            self.recovery.last_asked_immediate = ask;
        }
        if probe {
            self.recovery.probes_owed -= 1;
        }
        if carries_report {
            self.reports.on_sent(pn, report_need);
        }
        if written.data {
            self.last_data = now;
        }
        let bytes = buf.len() as u64;
        let in_flight = self.sent.bytes_in_flight() as u64;
        let rate = if ack_eliciting {
            self.cc.on_sent(now, bytes);
            self.pacer.on_sent(bytes);
            self.recovery.delivery.on_sent(now, in_flight)
        } else {
            Snapshot::default()
        };
        let record = Sent {
            at: now,
            // Ack-only packets count for nothing: not in flight, not a congestion signal.
            bytes: if ack_eliciting { bytes } else { 0 },
            reliable: written.carried,
            rate,
        };
        if let Err(rejected) = self.sent.on_sent(pn, now, buf.len(), ack_eliciting, record) {
            // Not tracked (the record is full): treat its reliable data as lost right away.
            self.send.on_lost(rejected.reliable);
        }
        if !self.send.has_pending() {
            self.nagle_deadline = None;
        }
        if ack_eliciting && !self.send.has_sendable() && self.window_open() {
            // Out of data with room to spare: rate samples until this is delivered show what
            // we offered, not what the path carries.
            let in_flight = self.sent.bytes_in_flight() as u64;
            self.recovery.delivery.on_app_limited(in_flight);
        }
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += bytes;
        self.stats.bytes_resent = self.send.resent_bytes();
        true
    }
}
