//! Round-trip time estimation and the probe timeout derived from it.
//!
//! Every ack carries the latest packet number the peer received and how long it held that
//! ack, so each ack that newly acknowledges that packet yields one RTT sample. Samples are
//! smoothed the usual way (RFC 6298 gains: 1/8 for the mean, 1/4 for the deviation), and
//! the peer's hold time is taken out first, though never so far that a sample drops below
//! the smallest RTT ever seen: a peer that overstates its delay cannot make the path look
//! faster than it has ever been.
//!
//! The probe timeout (RFC 9002's PTO) is how long the sender waits for any ack after its
//! newest ack-eliciting packet before it sends a probe: the smoothed RTT, four deviations
//! (at least [`TIMER_GRANULARITY`]) and the longest the peer may hold its ack (nothing when
//! the packet asked for an immediate ack). [`INITIAL_RTO`] stands in before any sample. It
//! is clamped to [`MIN_PTO`, `MAX_RTO`] and doubles with each timeout in a row until progress
//! resets it. The reference waits `3 x smoothed + 60 ms` instead and then resends everything;
//! a probe is one or two packets, so it can afford to come sooner.

use std::time::Duration;

/// Probe timeout before the first RTT sample.
pub const INITIAL_RTO: Duration = Duration::from_secs(1);

/// Lowest probe timeout: a couple of timer ticks of the driver, so scheduling noise on a
/// loopback path does not fire probes that the next tick's ack would have made needless.
pub const MIN_PTO: Duration = Duration::from_millis(2);

/// Highest probe timeout, backoff included.
///
/// The connection is declared dead after about 10 s of silence; capping here still leaves
/// room for two more attempts within that time.
pub const MAX_RTO: Duration = Duration::from_secs(4);

/// Most doublings applied by backoff (already far past [`MAX_RTO`] from any start).
pub const MAX_BACKOFF_EXPONENT: u32 = 8;

/// RTT assumed for loss timing before the first sample.
pub const INITIAL_RTT: Duration = Duration::from_millis(333);

pub use super::reorder::TIMER_GRANULARITY;

/// Smoothed RTT, its variation, the minimum, and retransmit-timeout backoff.
#[derive(Clone, Debug, Default)]
pub struct RttEstimator {
    /// Smoothed RTT, once a sample arrived.
    smoothed: Option<Duration>,
    /// Mean deviation of the samples.
    var: Duration,
    /// Smallest raw sample seen, ack delay not taken out.
    min: Option<Duration>,
    /// Most recent adjusted sample.
    latest: Option<Duration>,
    /// Timeouts in a row since the last sign of progress.
    backoff: u32,
}

impl RttEstimator {
    /// An estimator with no samples yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one sample: `rtt` is the time from sending a packet to receiving the ack that
    /// first acknowledged it, and `ack_delay` the time the peer says it held that ack.
    ///
    /// Pass `Duration::ZERO` as the delay when the peer did not report one. A sample also
    /// counts as progress and resets the timeout backoff.
    pub fn on_sample(&mut self, rtt: Duration, ack_delay: Duration) {
        let min = self.min.map_or(rtt, |m| m.min(rtt));
        self.min = Some(min);
        // Take the ack delay out only while the result stays at or above the minimum, and
        // otherwise keep the raw sample rather than clip it.
        let adjusted = match rtt.checked_sub(ack_delay) {
            Some(a) if a >= min => a,
            _ => rtt,
        };
        self.latest = Some(adjusted);
        match self.smoothed {
            None => {
                self.smoothed = Some(adjusted);
                self.var = adjusted / 2;
            }
            Some(s) => {
                let dev = s.abs_diff(adjusted);
                self.var = self.var.saturating_mul(3).saturating_add(dev) / 4;
                self.smoothed = Some(s.saturating_mul(7).saturating_add(adjusted) / 8);
            }
        }
        self.backoff = 0;
    }

    /// Smoothed RTT, or `None` before any sample.
    pub fn smoothed(&self) -> Option<Duration> {
        self.smoothed
    }

    /// Mean deviation of the samples (zero before any).
    pub fn var(&self) -> Duration {
        self.var
    }

    /// Smallest RTT seen, or `None` before any sample.
    pub fn min(&self) -> Option<Duration> {
        self.min
    }

    /// Most recent sample, ack delay taken out, or `None` before any.
    pub fn latest(&self) -> Option<Duration> {
        self.latest
    }

    /// Probe timeout in force when the peer may hold its ack up to `peer_ack_delay`:
    /// `smoothed + max(4 x deviation, granularity) + peer_ack_delay` (or [`INITIAL_RTO`] before
    /// any sample), clamped to [`MIN_PTO`, `MAX_RTO`], doubled per timeout in a row, and capped
    /// at [`MAX_RTO`] again.
    pub fn pto(&self, peer_ack_delay: Duration) -> Duration {
        let base = match self.smoothed {
            None => INITIAL_RTO,
            Some(s) => s
                .saturating_add(self.var.saturating_mul(4).max(TIMER_GRANULARITY))
                .saturating_add(peer_ack_delay),
        };
        let base = base.clamp(MIN_PTO, MAX_RTO);
        let factor = 1u32 << self.backoff.min(MAX_BACKOFF_EXPONENT);
        base.saturating_mul(factor).min(MAX_RTO)
    }

    /// The round trip loss detection measures against: the larger of the smoothed and the
    /// latest sample, or [`INITIAL_RTT`] before any.
    pub fn loss_rtt(&self) -> Duration {
        match (self.smoothed, self.latest) {
            (Some(s), Some(l)) => s.max(l),
            (Some(s), None) => s,
            (None, Some(l)) => l,
            (None, None) => INITIAL_RTT,
        }
    }

    /// Notes that the probe timer fired without any ack: the next timeout doubles.
    pub fn on_pto_expired(&mut self) {
        self.backoff = (self.backoff + 1).min(MAX_BACKOFF_EXPONENT);
    }

    /// Notes progress (an ack newly acknowledged something): the backoff starts over.
    pub fn reset_backoff(&mut self) {
        self.backoff = 0;
    }

    /// Timeouts in a row since the last progress.
    pub fn backoff(&self) -> u32 {
        self.backoff
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn before_any_sample() {
        let r = RttEstimator::new();
        assert_eq!(r.pto(ms(50)), INITIAL_RTO);
        assert_eq!(r.smoothed(), None);
        assert_eq!(r.min(), None);
        assert_eq!(r.loss_rtt(), INITIAL_RTT);
    }

    #[test]
    fn first_sample_sets_mean_and_half_variance() {
        let mut r = RttEstimator::new();
        r.on_sample(ms(100), Duration::ZERO);
        assert_eq!(r.smoothed(), Some(ms(100)));
        assert_eq!(r.var(), ms(50));
        assert_eq!(r.min(), Some(ms(100)));
        // 100 + 4 x 50, plus what the peer may hold its ack.
        assert_eq!(r.pto(ms(50)), ms(350));
        assert_eq!(r.pto(Duration::ZERO), ms(300));
    }

    #[test]
    fn smoothing_moves_an_eighth_of_the_way() {
        let mut r = RttEstimator::new();
        r.on_sample(ms(100), Duration::ZERO);
        r.on_sample(ms(180), Duration::ZERO);
        assert_eq!(r.smoothed(), Some(ms(110)));
        // (3 * 50 + 80) / 4
        assert_eq!(r.var(), Duration::from_micros(57_500));
        assert_eq!(r.latest(), Some(ms(180)));
        assert_eq!(r.loss_rtt(), ms(180));
    }

    #[test]
    fn ack_delay_is_taken_out_but_not_below_min() {
        let mut r = RttEstimator::new();
        r.on_sample(ms(40), Duration::ZERO);
        // 100 - 30 = 70 >= 40: taken out.
        r.on_sample(ms(100), ms(30));
        assert_eq!(r.latest(), Some(ms(70)));
        // 50 - 30 = 20 < 40: the raw sample is kept.
        r.on_sample(ms(50), ms(30));
        assert_eq!(r.latest(), Some(ms(50)));
        // A delay larger than the sample itself.
        r.on_sample(ms(45), ms(500));
        assert_eq!(r.latest(), Some(ms(45)));
        assert_eq!(r.min(), Some(ms(40)));
    }

    #[test]
    fn pto_is_clamped() {
        let mut r = RttEstimator::new();
        r.on_sample(Duration::from_micros(100), Duration::ZERO);
        assert_eq!(r.pto(Duration::ZERO), MIN_PTO);
        let mut r = RttEstimator::new();
        r.on_sample(ms(3_000), Duration::ZERO);
        assert_eq!(r.pto(Duration::ZERO), MAX_RTO);
    }

    #[test]
    fn backoff_doubles_and_resets() {
        let mut r = RttEstimator::new();
        r.on_sample(ms(100), Duration::ZERO);
        assert_eq!(r.pto(ms(50)), ms(350));
        r.on_pto_expired();
        assert_eq!(r.pto(ms(50)), ms(700));
        r.on_pto_expired();
        assert_eq!(r.pto(ms(50)), ms(1400));
        for _ in 0..20 {
            r.on_pto_expired();
        }
        assert_eq!(r.backoff(), MAX_BACKOFF_EXPONENT);
        assert_eq!(r.pto(ms(50)), MAX_RTO);
        r.on_sample(ms(100), Duration::ZERO);
        assert_eq!(r.backoff(), 0);
        assert!(r.pto(ms(50)) <= ms(350));
        r.on_pto_expired();
        r.reset_backoff();
        assert_eq!(r.backoff(), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn pto_stays_within_bounds(
            ops in proptest::collection::vec(
                (prop_oneof![0u64..30_000, 0u64..20_000_000], 0u64..3_000_000, 0u8..4),
                0..64,
            )
        ) {
            let mut r = RttEstimator::new();
            for (rtt, delay, op) in ops {
                match op {
                    0 | 1 => r.on_sample(Duration::from_micros(rtt), Duration::from_micros(delay)),
                    2 => r.on_pto_expired(),
                    _ => r.reset_backoff(),
                }
                let pto = r.pto(Duration::from_millis(50));
                prop_assert!(pto >= MIN_PTO);
                prop_assert!(pto <= MAX_RTO);
                prop_assert!(r.pto(Duration::ZERO) <= pto);
                if let (Some(l), Some(m)) = (r.latest(), r.min()) {
                    prop_assert!(l >= m);
                }
            }
        }
    }
}
