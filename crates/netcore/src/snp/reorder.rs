//! How much reordering the loss detector tolerates, learnt from its own mistakes.
//!
//! A packet below the largest acknowledged one is declared lost once it is [`INITIAL_PACKET_THRESHOLD`]
//! numbers behind, or once it has waited `9/8` of a round trip (RFC 9002's thresholds). A
//! path that reorders more than that (a second route, a link-layer retransmission) makes
//! every late packet a false loss: its data is resent for nothing and the congestion window
//! is cut for nothing. When an acknowledgement arrives for a packet already declared lost,
//! the detector was wrong, and by how much is known: the packet's acknowledgement took
//! `lateness` from its sending, and arrived while `distance` later packets were already
//! acknowledged. Both thresholds then widen to cover what was seen (with a margin), as RACK
//! (RFC 8985) does with its reordering window; they narrow again, by half, after
//! [`NARROW_AFTER`] losses in a row prove real, so a path that stops reordering gets its fast
//! loss detection back.

use std::time::Duration;

/// Packet threshold before any reordering is seen (RFC 9002's `kPacketThreshold`).
pub const INITIAL_PACKET_THRESHOLD: u64 = 3;

/// Highest packet threshold: beyond this many packets the time threshold decides alone.
pub const MAX_PACKET_THRESHOLD: u64 = 4096;

/// Most extra waiting the time threshold may add to a round trip.
pub const MAX_EXTRA: Duration = Duration::from_secs(1);

/// Real losses in a row (no false one among them) after which the thresholds halve.
pub const NARROW_AFTER: u32 = 16;

/// Smallest time allowance for reordering, whatever the RTT.
pub const TIMER_GRANULARITY: Duration = Duration::from_millis(1);

/// The loss detector's reordering thresholds.
#[derive(Clone, Copy, Debug)]
pub struct ReorderTolerance {
    /// Packets a packet may fall behind the largest acknowledged before it counts as lost.
    packet_threshold: u64,
    /// Waiting allowed beyond one round trip, learnt from false losses.
    extra: Duration,
    /// Real losses since the last false one.
    real_in_a_row: u32,
}

impl Default for ReorderTolerance {
    fn default() -> Self {
        ReorderTolerance {
            packet_threshold: INITIAL_PACKET_THRESHOLD,
            extra: Duration::ZERO,
            real_in_a_row: 0,
        }
    }
}

impl ReorderTolerance {
    /// The packet threshold in force.
    pub fn packet_threshold(&self) -> u64 {
        self.packet_threshold
    }

    /// The time a packet may stay unacknowledged after a later one was acknowledged, for a
    /// round trip of `rtt` (the larger of the smoothed and the latest sample): `9/8 rtt`, or
    /// `rtt` plus what false losses taught, whichever is longer.
    pub fn loss_delay(&self, rtt: Duration) -> Duration {
        let base = (rtt.saturating_mul(9) / 8).max(TIMER_GRANULARITY);
        base.max(rtt.saturating_add(self.extra))
    }

    /// Extra waiting learnt so far.
    pub fn extra(&self) -> Duration {
        self.extra
    }

    /// A packet declared lost was acknowledged after all: its acknowledgement came `lateness`
    /// after it was sent, with a round trip of `rtt`, and `distance` packets above it had been
    /// acknowledged first. Widens both thresholds to cover it, with a quarter more as margin.
    pub fn on_false_loss(&mut self, lateness: Duration, rtt: Duration, distance: u64) {
        self.real_in_a_row = 0;
        let needed = lateness.saturating_sub(rtt);
        let widened = needed
            .saturating_add(needed / 4)
            .saturating_add(TIMER_GRANULARITY);
        self.extra = self.extra.max(widened).min(MAX_EXTRA);
        let packets = distance.saturating_add(distance / 4).saturating_add(1);
        self.packet_threshold = self.packet_threshold.max(packets).min(MAX_PACKET_THRESHOLD);
    }

    /// A packet declared lost stayed lost (nothing acknowledged it while it was remembered).
    /// After [`NARROW_AFTER`] of these in a row, both thresholds halve towards their start.
    pub fn on_real_loss(&mut self) {
        self.real_in_a_row += 1;
        if self.real_in_a_row < NARROW_AFTER {
            return;
        }
        self.real_in_a_row = 0;
        self.extra /= 2;
        if self.extra < TIMER_GRANULARITY {
            self.extra = Duration::ZERO;
        }
        self.packet_threshold = (self.packet_threshold / 2).max(INITIAL_PACKET_THRESHOLD);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn starts_at_rfc_9002_thresholds() {
        let r = ReorderTolerance::default();
        assert_eq!(r.packet_threshold(), 3);
        assert_eq!(r.loss_delay(ms(80)), ms(90));
        assert_eq!(r.loss_delay(Duration::ZERO), TIMER_GRANULARITY);
    }

    #[test]
    fn a_false_loss_widens_to_cover_it() {
        let mut r = ReorderTolerance::default();
        // 10 ms path, a packet held back 40 ms: its ack came 53 ms after sending, 60 packets
        // behind.
        r.on_false_loss(ms(53), ms(10), 60);
        let delay = r.loss_delay(ms(10));
        assert!(delay > ms(53), "{delay:?}");
        assert!(delay < ms(70), "{delay:?}");
        assert!(r.packet_threshold() > 60);
        // A smaller mistake later does not narrow it.
        r.on_false_loss(ms(20), ms(10), 5);
        assert_eq!(r.loss_delay(ms(10)), delay);
    }

    #[test]
    fn real_losses_narrow_it_back() {
        let mut r = ReorderTolerance::default();
        r.on_false_loss(ms(110), ms(10), 100);
        let wide = r.extra();
        for _ in 0..NARROW_AFTER - 1 {
            r.on_real_loss();
        }
        assert_eq!(r.extra(), wide);
        r.on_real_loss();
        assert_eq!(r.extra(), wide / 2);
        // A false loss resets the count.
        r.on_false_loss(ms(11), ms(10), 1);
        for _ in 0..NARROW_AFTER - 1 {
            r.on_real_loss();
        }
        assert_eq!(r.extra(), wide / 2);
        for _ in 0..20 * NARROW_AFTER {
            r.on_real_loss();
        }
        assert_eq!(r.extra(), Duration::ZERO);
        assert_eq!(r.packet_threshold(), INITIAL_PACKET_THRESHOLD);
    }

    #[test]
    fn bounded() {
        let mut r = ReorderTolerance::default();
        r.on_false_loss(Duration::MAX, Duration::ZERO, u64::MAX);
        assert_eq!(r.extra(), MAX_EXTRA);
        assert_eq!(r.packet_threshold(), MAX_PACKET_THRESHOLD);
        assert!(r.loss_delay(Duration::MAX) >= MAX_EXTRA);
    }
}
