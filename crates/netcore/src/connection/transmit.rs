//! What the next datagram carries: a handshake message, or a data packet with acks,
//! stop-waiting and as much lane data as Nagle, the congestion window and the pacer allow.

use prost::Message as _;

use super::packet_builder::PacketBuilder;
use super::state::State;
use super::{Connection, Sent};
use crate::snp::congestion::Controller;
use crate::snp::packet_number;
use crate::time::Timestamp;
use crate::wire::control::{
    ConnectOk, ControlMessage, UdpStats, STATS_ACK_REQUEST_E2E, STATS_ACK_REQUEST_IMMEDIATE,
};
use crate::wire::datagram::{DataHeader, MAX_PLAINTEXT_SEND};
use crate::wire::frames::{encode_ack_delay, StopWaiting};

/// Bytes a keepalive's stats blob takes (a `UdpStats` with only the flags field); a packet
/// that carries a quality report reserves this much beyond the report.
const KEEPALIVE_BLOB_MAX: usize = 8;

/// A keepalive's flags: acknowledge end to end, at once. The reference answers a stats blob
/// at once only with both set (the immediate flag alone gets a delayed ack, if any).
const KEEPALIVE_FLAGS: u32 = STATS_ACK_REQUEST_E2E | STATS_ACK_REQUEST_IMMEDIATE;

impl Connection {
    /// Whether data waits for Nagle, the pacer or the congestion window.
    fn data_ready(&self, now: Timestamp) -> bool {
        if !self.send.has_pending() {
            return false;
        }
        // Lost data queued for resending sets the Nagle deadline to "now" (see `on_lost`).
        self.nagle_deadline.is_some_and(|d| d <= now)
            || self.send.queued_bytes() >= MAX_PLAINTEXT_SEND
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
        let data_ready = self.data_ready(now);
        let ready = data_ready && self.window_open();
        self.window_blocked = data_ready && !ready;
        let send_data = ready && self.pacer.can_send(now, mtu);
        self.pacing_wake = if ready && !send_data {
            self.pacer.next_send_time(now, mtu)
        } else {
            None
        };
        if !ack_due && !send_data && !keepalive && !report_due {
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
            let first_wanted = self.sent.min_unacked().unwrap_or(pn);
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
        if packet.frames_len() == 0 && !keepalive && !report_need.due {
            packet.abandon();
            return false;
        }
        let mut ack_eliciting = written.data;
        // A quiet connection asks the peer for an immediate ack, which proves it is alive
        // (the reference's keepalive: the ack-request flags in the stats blob). A quality
        // report asks for an ack by itself (the implied flag is left out, as the reference does).
        let ask = keepalive && !ack_eliciting;
        let carries_report = report.is_some();
        let stats = (ask || carries_report).then(|| {
            UdpStats {
                stats: report,
                flags: ask.then_some(KEEPALIVE_FLAGS),
            }
            .encode_to_vec()
        });
        if stats.is_some() {
            ack_eliciting = true;
        }
        if ask {
            self.last_keepalive = Some(now);
        }
        // This packet asks for an ack (the keepalive flag, or its data): it is the probe.
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
        if carries_report {
            self.reports.on_sent(pn, report_need);
        }
        if written.data {
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
            reliable: written.carried,
        };
        if let Err(rejected) = self.sent.on_sent(pn, now, buf.len(), ack_eliciting, record) {
            // Not tracked (the record is full): treat its reliable data as lost right away.
            self.send.on_lost(rejected.reliable);
        }
        if !self.send.has_pending() {
            self.nagle_deadline = None;
        }
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += bytes;
        true
    }
}
