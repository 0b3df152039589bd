//! Acks and loss on the sending side: applying the peer's ack frames to the sent-packet
//! record, RTT samples, congestion control and pacing, and requeueing the reliable data of
//! packets declared lost.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::{Connection, Sent};
use crate::snp::congestion::{self, Controller, RttSample};
use crate::snp::rtt::INITIAL_RTT;
use crate::time::Timestamp;
use crate::wire::frames::AckFrame;

impl Connection {
    /// Whether the congestion window (or the sent-packet record) leaves room for a packet.
    pub(super) fn window_open(&self) -> bool {
        let srtt = self.rtt.smoothed().unwrap_or(INITIAL_RTT);
        let window = self
            .cc
            .window()
            .max(congestion::min_rate_window(self.cfg.rate_min, srtt));
        (self.sent.bytes_in_flight() as u64) < window && !self.sent.is_full()
    }

    /// Applies one ack frame from the peer.
    pub(super) fn on_ack_frame(&mut self, now: Timestamp, ack: AckFrame<'_>) {
        let Some(latest) = ack.latest_pkt.resolve(self.next_pn) else {
            return;
        };
        let mut acked: Vec<RangeInclusive<u64>> = Vec::new();
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
        let srtt = self.rtt.smoothed().unwrap_or(INITIAL_RTT);
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
            self.send.on_acked(s.reliable);
        }
        self.on_lost(now, result.lost, false);
        self.pacer.set_rate(now, self.cc.pacing_rate(srtt));
    }

    /// Packets declared lost (by a later ack or a timer): a congestion signal, and their
    /// reliable data goes out again without waiting for Nagle. `persistent` marks a
    /// retransmission timeout.
    pub(super) fn on_lost(&mut self, now: Timestamp, lost: Vec<(u64, Sent)>, persistent: bool) {
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
            self.send.on_lost(s.reliable);
        }
        // Resent data goes out without waiting for Nagle.
        self.nagle_deadline = Some(now);
    }

    /// The RTT sample a handshake reply's echoed timestamp gives.
    pub(super) fn rtt_from_echo(&mut self, now: Timestamp, echoed: Option<u64>) {
        if let Some(sent) = echoed.filter(|&t| t <= now.as_micros()) {
            self.rtt.on_sample(
                now.saturating_since(Timestamp::from_micros(sent)),
                Duration::ZERO,
            );
        }
    }
}
