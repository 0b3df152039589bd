//! Delivery rate samples: how fast the path actually delivered data, measured per ack.
//!
//! This is the estimator of draft-cheng-iccrg-delivery-rate-estimation (Linux's
//! `tcp_rate.c`), which model-based congestion control (BBR) feeds on. Each packet, when
//! sent, takes a [`Snapshot`] of how much had been delivered by then and when; when it is
//! acknowledged, the bytes delivered between the two moments over the time they took give
//! one sample. The time is the longer of the send interval and the ack interval, so neither
//! a burst of sends nor a compressed burst of acks makes the path look faster than it is.
//!
//! A sample taken while the sender had nothing to send (application-limited) shows what the
//! sender offered, not what the path carries: it is marked so, and a controller uses it only
//! when it raises its estimate.

use std::time::Duration;

use crate::time::Timestamp;

/// What a packet records about the connection's delivery progress when it is sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Snapshot {
    /// Bytes delivered (acknowledged) before the packet was sent.
    delivered: u64,
    /// When the last of those bytes was acknowledged.
    delivered_time: Timestamp,
    /// Send time of the packet whose ack last updated the rate interval.
    first_sent_time: Timestamp,
    /// When the packet itself was sent.
    sent_time: Timestamp,
    /// Whether the sender was application-limited when it sent the packet.
    app_limited: bool,
}

/// One delivery rate sample, produced per ack frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSample {
    /// Bytes per second delivered over the sample's interval.
    pub delivery_rate: u64,
    /// Bytes delivered over the interval.
    pub delivered: u64,
    /// The interval the bytes took.
    pub interval: Duration,
    /// Total bytes delivered when the newest acknowledged packet was sent: the round-trip
    /// counter a controller compares with its own marks.
    pub prior_delivered: u64,
    /// The newest acknowledged packet was sent while application-limited.
    pub app_limited: bool,
}

/// The connection-wide delivery state.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeliveryRate {
    delivered: u64,
    delivered_time: Timestamp,
    first_sent_time: Timestamp,
    /// While non-zero, packets sent are marked application-limited, until delivery passes
    /// this count.
    app_limited_until: u64,
    /// The newest acknowledged packet of the ack frame in progress.
    pending: Option<Snapshot>,
}

impl DeliveryRate {
    /// Total bytes delivered so far.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The snapshot for a packet sent at `now`, with `in_flight` bytes in flight before it.
    pub fn on_sent(&mut self, now: Timestamp, in_flight: u64) -> Snapshot {
        if in_flight == 0 {
            // Starting from idle: the interval starts now, not at the last ack.
            self.first_sent_time = now;
            self.delivered_time = now;
        }
        Snapshot {
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            sent_time: now,
            app_limited: self.app_limited_until != 0,
        }
    }

    /// The sender ran out of data with `in_flight` bytes in flight and room in its window:
    /// samples until that data is delivered are application-limited.
    pub fn on_app_limited(&mut self, in_flight: u64) {
        self.app_limited_until = (self.delivered + in_flight).max(1);
    }

    /// A packet of `bytes`, sent with `snap`, was acknowledged at `now` (call once per
    /// newly acknowledged packet of an ack frame, then [`take_sample`](Self::take_sample)).
    pub fn on_acked(&mut self, now: Timestamp, bytes: u64, snap: &Snapshot) {
        self.delivered += bytes;
        self.delivered_time = now;
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        // The sample follows the most recently sent packet acknowledged.
        let newer = self.pending.is_none_or(|p| {
            snap.delivered > p.delivered
                || (snap.delivered == p.delivered && snap.sent_time > p.sent_time)
        });
        if newer {
            self.pending = Some(*snap);
            self.first_sent_time = snap.sent_time;
        }
    }

    /// The ack frame's sample, if it acknowledged anything and the interval is usable (at
    /// least `min_rtt`: a shorter one means acks were compressed, and the rate would be
    /// overstated).
    pub fn take_sample(&mut self, min_rtt: Option<Duration>) -> Option<RateSample> {
        let p = self.pending.take()?;
        let send_elapsed = p.sent_time.saturating_since(p.first_sent_time);
        let ack_elapsed = self.delivered_time.saturating_since(p.delivered_time);
        let interval = send_elapsed.max(ack_elapsed);
        let delivered = self.delivered - p.delivered;
        if interval.is_zero() || min_rtt.is_some_and(|m| interval < m) {
            return None;
        }
        let rate = u128::from(delivered) * 1_000_000 / interval.as_micros().max(1);
        Some(RateSample {
            delivery_rate: u64::try_from(rate).unwrap_or(u64::MAX),
            delivered,
            interval,
            prior_delivered: p.delivered,
            app_limited: p.app_limited,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn a_paced_stream_measures_its_rate() {
        // One 1000-byte packet per ms, acked 20 ms later: 1 MB/s.
        let mut d = DeliveryRate::default();
        let mut snaps = Vec::new();
        let mut samples = Vec::new();
        for ms in 0..200u64 {
            if ms >= 20 {
                let (_, snap) = snaps[(ms - 20) as usize];
                d.on_acked(at(ms), 1000, &snap);
                if let Some(s) = d.take_sample(Some(Duration::from_millis(20))) {
                    samples.push(s);
                }
            }
            let in_flight = 1000 * (ms.min(20));
            snaps.push((ms, d.on_sent(at(ms), in_flight)));
        }
        let last = samples.last().copied().map(|s| s.delivery_rate);
        assert!(
            last.is_some_and(|r| (990_000..=1_010_000).contains(&r)),
            "{last:?}"
        );
        assert!(samples.iter().all(|s| !s.app_limited));
    }

    #[test]
    fn compressed_acks_do_not_overstate_the_rate() {
        // Ten packets sent 1 ms apart, all acked at once 50 ms later.
        let mut d = DeliveryRate::default();
        let snaps: Vec<Snapshot> = (0..10).map(|i| d.on_sent(at(i), i * 1000)).collect();
        for s in &snaps {
            d.on_acked(at(59), 1000, s);
        }
        let s = d.take_sample(None);
        // The interval runs from the first send to the ack (59 ms), not over the ack burst.
        assert_eq!(
            s.map(|s| s.delivery_rate),
            Some(10_000 * 1_000_000 / 59_000)
        );
        assert_eq!(s.map(|s| s.interval), Some(Duration::from_millis(59)));
    }

    #[test]
    fn app_limited_marks_until_delivered() {
        let mut d = DeliveryRate::default();
        let a = d.on_sent(at(0), 0);
        d.on_app_limited(1000);
        let b = d.on_sent(at(1), 1000);
        assert!(!a.app_limited && b.app_limited);
        d.on_acked(at(20), 1000, &a);
        let s = d.take_sample(None);
        assert_eq!(s.map(|s| s.app_limited), Some(false));
        d.on_acked(at(21), 1000, &b);
        assert_eq!(d.take_sample(None).map(|s| s.app_limited), Some(true));
        // Delivery passed the mark: new packets are no longer marked.
        assert!(!d.on_sent(at(22), 0).app_limited);
        assert_eq!(d.take_sample(None), None);
    }
}
