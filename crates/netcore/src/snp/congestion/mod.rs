//! Congestion control: how many bytes a connection may keep in flight, and how fast to pace them.
//!
//! The reference implementation sends at a fixed rate (`sendRateMin` = `sendRateMax`) and never
//! estimates the path. We keep its knobs but put a real congestion controller between them: the
//! controller learns from acks and losses what the path carries, and the connection clamps the
//! result to the configured bounds.
//!
//! # Who applies the rate bounds
//! The **caller** does, not the [`Controller`]: a controller reports only what the path seems to
//! allow, so it stays a pure algorithm that knows nothing of configuration. The connection:
//! - hands [`Controller::pacing_rate`] to the pacer, which clamps it to
//!   `[sendRateMin, sendRateMax]` itself;
//! - limits bytes in flight to `max(controller.window(), min_rate_window(sendRateMin, srtt))`,
//!   so that heavy loss cannot push the send rate below `sendRateMin` (the window would otherwise
//!   become the limit long before the pacer does).
//!
//! `sendRateMax` needs no window counterpart: when the pacer caps the rate, bytes in flight stay
//! well under the window, the sender counts as application-limited (see [`app_limited`]) and the
//! window stops growing.
//!
//! # Units and events
//! Sizes are bytes of UDP payload, rates bytes per second, times [`Timestamp`]s (microseconds).
//! Events follow RFC 9002: `on_sent` per packet, `on_ack` per newly acknowledged packet, and one
//! `on_congestion_event` per batch of packets declared lost, carrying the send time of the
//! newest lost packet.

mod bbr;
mod cubic;
pub mod delivery_rate;
mod max_filter;
#[cfg(test)]
mod sim;

pub use bbr::Bbr;
pub use cubic::Cubic;
pub use delivery_rate::{DeliveryRate, RateSample, Snapshot};

use crate::time::Timestamp;
use std::time::Duration;

/// Smallest window any controller may shrink to, in packets: two so that one loss can still be
/// detected by the ack of a later packet.
pub const MIN_WINDOW_PACKETS: u64 = 2;

/// Largest window any controller may grow to, in bytes. Far above what the send buffer lets a
/// connection have in flight; it only keeps the arithmetic far from overflow.
pub const MAX_WINDOW: u64 = 1 << 30;

/// The window `min_rate_window` grants is this many round trips of `sendRateMin`, so that ack
/// delay and jitter leave the pacer, not the window, as the limit at the minimum rate.
pub const MIN_RATE_WINDOW_RTTS: u64 = 2;

/// Pacing rate as a percentage of `window / srtt` once out of slow start: a little faster than
/// the window drains so that pacing never becomes the bottleneck by itself (RFC 9002, 7.7).
pub const PACING_GAIN_PERCENT: u64 = 125;

/// Pacing rate as a percentage of `window / srtt` during slow start, where the window doubles
/// every round trip and the pacer must keep up with that.
pub const SLOW_START_PACING_GAIN_PERCENT: u64 = 200;

/// Round-trip time facts the connection has measured, as plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RttSample {
    /// The sample this ack produced.
    pub latest: Duration,
    /// The connection's smoothed estimate (RFC 9002 `smoothed_rtt`).
    pub smoothed: Duration,
    /// The smallest sample seen on this path.
    pub min: Duration,
}

/// What one ack frame told the sender, once its packets went through
/// [`Controller::on_ack`] one by one: the summary model-based controllers work from.
#[derive(Clone, Copy, Debug)]
pub struct AckSummary {
    /// When the frame arrived.
    pub now: Timestamp,
    /// The frame's delivery rate sample, if it gave a usable one.
    pub rate: Option<RateSample>,
    /// Bytes delivered on the connection so far.
    pub delivered: u64,
    /// Bytes the frame newly acknowledged.
    pub acked: u64,
    /// Bytes in flight after the frame (its losses taken out).
    pub in_flight: u64,
    /// The connection's RTT figures after the frame.
    pub rtt: RttSample,
}

/// The congestion controllers a connection can run (config key `congestionControl`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CongestionControl {
    /// BBR-style: paces at the delivery rate it measures and keeps about one round trip of
    /// data in flight, so it neither fills router queues nor mistakes random loss for
    /// congestion.
    #[default]
    Bbr,
    /// CUBIC (RFC 9438): grows until loss, then backs off; fills router queues.
    Cubic,
}

impl CongestionControl {
    /// The value of config key `congestionControl` for each controller, and back.
    pub fn from_config(value: i64) -> Self {
        match value {
            1 => CongestionControl::Cubic,
            _ => CongestionControl::Bbr,
        }
    }

    /// A fresh controller of this kind for packets of `mtu` bytes.
    pub fn build(self, mtu: u64) -> Box<dyn Controller> {
        match self {
            CongestionControl::Bbr => Box::new(Bbr::new(mtu)),
            CongestionControl::Cubic => Box::new(Cubic::new(mtu)),
        }
    }
}

#[cfg(any(test, fuzzing))]
impl Clone for Box<dyn Controller> {
    fn clone(&self) -> Self {
        self.boxed_clone()
    }
}

/// A congestion control algorithm, driven by the connection's send, ack and loss events.
///
/// Implementations are sans-IO and deterministic: they read no clock and take `now` from the
/// caller. Rate bounds are applied by the caller (see the module documentation).
pub trait Controller: Send {
    /// A copy of this controller, for the fuzz harness's snapshots of whole connections.
    #[cfg(any(test, fuzzing))]
    fn boxed_clone(&self) -> Box<dyn Controller>;

    /// A packet of `bytes` that counts toward bytes in flight was sent at `now`.
    fn on_sent(&mut self, now: Timestamp, bytes: u64) {
        let _ = (now, bytes);
    }

    /// A packet of `bytes`, sent at `sent`, was acknowledged at `now` for the first time.
    ///
    /// `app_limited` says the window was going unused when this ack arrived (compute it with
    /// [`app_limited`]); the window then must not grow, since growth would not be validated by
    /// the path.
    fn on_ack(
        &mut self,
        now: Timestamp,
        sent: Timestamp,
        bytes: u64,
        app_limited: bool,
        rtt: &RttSample,
    );

    /// Packets were declared lost at `now`; `sent` is the send time of the newest of them.
    ///
    /// The window shrinks at most once per round trip: losses of packets sent before the
    /// current recovery period began belong to the same event. `persistent` reports persistent
    /// congestion (RFC 9002, 7.6), which collapses the window to its minimum.
    fn on_congestion_event(&mut self, now: Timestamp, sent: Timestamp, persistent: bool);

    /// Every loss of the latest congestion event proved false (the packets were late, not
    /// lost): the controller undoes that event's reduction, as TCP does after a spurious
    /// retransmission (RFC 4015). Ignored when there is nothing to undo.
    fn on_spurious_congestion(&mut self, now: Timestamp) {
        let _ = now;
    }

    /// One ack frame's summary, after its [`on_ack`](Self::on_ack) and
    /// [`on_congestion_event`](Self::on_congestion_event) calls.
    fn on_ack_summary(&mut self, summary: &AckSummary) {
        let _ = summary;
    }

    /// `bytes` of packets were declared lost at `now` (before the matching
    /// [`on_congestion_event`](Self::on_congestion_event)).
    fn on_packets_lost(&mut self, now: Timestamp, bytes: u64) {
        let _ = (now, bytes);
    }

    /// Bytes the connection may have in flight now.
    fn window(&self) -> u64;

    /// The window a fresh connection starts with.
    fn initial_window(&self) -> u64;

    /// Whether the controller is still probing exponentially (slow start).
    fn in_slow_start(&self) -> bool;

    /// Rate at which to pace packets, in bytes per second, before the caller's clamping.
    fn pacing_rate(&self, smoothed_rtt: Duration) -> u64 {
        let gain = if self.in_slow_start() {
            SLOW_START_PACING_GAIN_PERCENT
        } else {
            PACING_GAIN_PERCENT
        };
        rate_for_window(self.window(), smoothed_rtt, gain)
    }
}

/// The initial window of RFC 9002 (7.2): ten packets, bounded to the range 14720 bytes or two
/// packets allows.
pub fn initial_window(mtu: u64) -> u64 {
    let mtu = mtu.max(1);
    mtu.saturating_mul(10)
        .min(mtu.saturating_mul(2).max(14_720))
}

/// The smallest window for a packet size.
pub fn minimum_window(mtu: u64) -> u64 {
    mtu.max(1).saturating_mul(MIN_WINDOW_PACKETS)
}

/// Whether the window is going unused: bytes in flight (counted before removing the packet
/// just acknowledged) are below half of it.
///
/// Half, as in RFC 7661's test for a validated window: a sender that fills its window only
/// now and then still counts as using it, while one held back by a lack of data or by the
/// `sendRateMax` cap lets its window rise to at most twice what it uses.
pub fn app_limited(bytes_in_flight: u64, window: u64) -> bool {
    bytes_in_flight.saturating_mul(2) < window
}

/// The window needed to send at `min_rate` bytes per second over a round trip of `srtt`, with
/// [`MIN_RATE_WINDOW_RTTS`] round trips of slack. The caller never lets its in-flight limit fall
/// below this, so `sendRateMin` holds even after heavy loss.
pub fn min_rate_window(min_rate: u64, srtt: Duration) -> u64 {
    let bytes = u128::from(min_rate)
        .saturating_mul(srtt.as_micros())
        .saturating_mul(u128::from(MIN_RATE_WINDOW_RTTS))
        / 1_000_000;
    u64::try_from(bytes).unwrap_or(u64::MAX).min(MAX_WINDOW)
}

/// `window / srtt` scaled by `gain_percent`, in bytes per second. A zero `srtt` (loopback with
/// coarse timing) counts as one microsecond, which gives a huge rate for the caller to clamp.
pub fn rate_for_window(window: u64, srtt: Duration, gain_percent: u64) -> u64 {
    let rtt_us = srtt.as_micros().max(1);
    let rate = u128::from(window)
        .saturating_mul(u128::from(gain_percent))
        .saturating_mul(1_000_000)
        / rtt_us.saturating_mul(100);
    u64::try_from(rate).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_window_follows_rfc_9002() {
        assert_eq!(initial_window(1300), 13_000);
        assert_eq!(initial_window(1200), 12_000);
        // Large packets: bounded by 14720 unless two packets are larger.
        assert_eq!(initial_window(9000), 18_000);
        assert_eq!(initial_window(2000), 14_720);
        assert_eq!(initial_window(0), 10);
        assert_eq!(minimum_window(1300), 2600);
    }

    #[test]
    fn app_limited_is_below_half_the_window() {
        assert!(app_limited(0, 10_000));
        assert!(app_limited(4_999, 10_000));
        assert!(!app_limited(5_000, 10_000));
        assert!(!app_limited(u64::MAX, u64::MAX));
    }

    #[test]
    fn min_rate_window_scales_with_rate_and_rtt() {
        let w = min_rate_window(262_144, Duration::from_millis(100));
        assert_eq!(w, 262_144 * 2 / 10);
        assert_eq!(min_rate_window(0, Duration::from_secs(1)), 0);
        assert_eq!(min_rate_window(u64::MAX, Duration::MAX), MAX_WINDOW);
    }

    #[test]
    fn rate_for_window_handles_extremes() {
        assert_eq!(
            rate_for_window(10_000, Duration::from_millis(10), 100),
            1_000_000
        );
        assert_eq!(
            rate_for_window(10_000, Duration::from_millis(10), 125),
            1_250_000
        );
        assert_eq!(rate_for_window(10_000, Duration::ZERO, 100), 10_000_000_000);
        assert_eq!(rate_for_window(u64::MAX, Duration::ZERO, 200), u64::MAX);
        assert_eq!(rate_for_window(0, Duration::from_millis(1), 200), 0);
        assert_eq!(
            rate_for_window(u64::MAX, Duration::ZERO, u64::MAX),
            u64::MAX
        );
        assert!(rate_for_window(u64::MAX, Duration::MAX, u64::MAX) < u64::MAX);
    }

    #[test]
    fn controllers_are_usable_as_trait_objects() {
        let mut cc: Box<dyn Controller> = Box::new(Cubic::new(1300));
        cc.on_sent(Timestamp::ZERO, 1300);
        assert_eq!(cc.window(), cc.initial_window());
        assert!(cc.in_slow_start());
    }
}
