//! Send-rate pacing: a token bucket that spaces packets out at the connection's send rate.
//!
//! The reference implementation paces with a token bucket too: tokens (bytes) accrue at the
//! send rate, a packet may go out while the bucket is not in debt, and when nothing is waiting
//! the reserve is capped at one packet. We differ in three ways. The rate is whatever the
//! congestion controller says, clamped to `[sendRateMin, sendRateMax]` here. A packet waits
//! until its bytes are in the bucket instead of running the bucket into debt, so the wait is
//! known before sending. And the reserve is larger (see [`Pacer::burst_capacity`]), because the
//! driver's timers fire with about a millisecond of granularity: a bucket holding less than a
//! timer tick's worth of bytes would cap the rate below what the path carries.
//!
//! Tokens are kept in millionths of a byte so that refilling at low rates over short intervals
//! loses no fraction, and in `i128` so that no rate or idle gap can overflow them.

use crate::time::Timestamp;
use std::time::Duration;

/// Lowest rate the pacer runs at, bytes per second: a configured minimum of zero must not stall
/// the connection (the reference clamps `sendRateMin` to the same floor).
pub const RATE_FLOOR: u64 = 1024;

/// Highest rate the pacer runs at, bytes per second; effectively "unlimited" (about 1 TB/s)
/// while keeping all arithmetic small.
pub const RATE_CEILING: u64 = 1 << 40;

/// The bucket always holds at least this many full packets, so that small rates still allow a
/// few packets per timer wake-up.
pub const MIN_BURST_PACKETS: u64 = 4;

/// At higher rates the bucket holds this much time's worth of bytes: two timer ticks of the
/// driver, so that a late wake-up can catch up without losing rate.
pub const BURST_DURATION: Duration = Duration::from_millis(2);

/// Upper bound on the bucket, bytes, whatever the rate: a burst larger than this would only
/// overflow router queues.
pub const MAX_BURST_BYTES: u64 = 4 << 20;

/// Bounds on the packet size the pacer accepts.
const MIN_MTU: u64 = 1;
const MAX_MTU: u64 = 65_535;

/// Tokens per byte. Equal to microseconds per second, so `elapsed_us * rate` is exact in tokens.
const SCALE: i128 = 1_000_000;

/// A token-bucket pacer for one connection.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Tokens in millionths of a byte; negative while in debt after an oversized send.
    tokens: i128,
    /// Time up to which tokens have been added.
    updated: Timestamp,
    /// Current rate, bytes per second, within `[min_rate, max_rate]`.
    rate: u64,
    min_rate: u64,
    max_rate: u64,
    mtu: u64,
}

impl Pacer {
    /// A pacer for packets of up to `mtu` bytes, with rates bounded to `[min_rate, max_rate]`
    /// (see [`Pacer::set_bounds`]). It starts at `min_rate` with a full bucket, as the
    /// reference does; call [`Pacer::set_rate`] with the controller's rate.
    pub fn new(now: Timestamp, mtu: u64, min_rate: u64, max_rate: u64) -> Self {
        let mut pacer = Pacer {
            tokens: 0,
            updated: now,
            rate: RATE_FLOOR,
            min_rate: RATE_FLOOR,
            max_rate: RATE_FLOOR,
            mtu: mtu.clamp(MIN_MTU, MAX_MTU),
        };
        pacer.set_bounds(now, min_rate, max_rate);
        pacer.rate = pacer.min_rate;
        pacer.tokens = pacer.capacity_tokens();
        pacer
    }

    /// Changes the rate bounds (`sendRateMin`, `sendRateMax`) and re-clamps the current rate.
    /// The minimum is raised to [`RATE_FLOOR`], both are capped at [`RATE_CEILING`], and a
    /// maximum below the minimum is raised to it.
    pub fn set_bounds(&mut self, now: Timestamp, min_rate: u64, max_rate: u64) {
        self.refill(now);
        self.min_rate = min_rate.clamp(RATE_FLOOR, RATE_CEILING);
        self.max_rate = max_rate.clamp(self.min_rate, RATE_CEILING);
        self.apply_rate(self.rate);
    }

    /// Sets the pacing rate, clamped to the bounds. Tokens earned so far are kept at the old
    /// rate; later ones accrue at the new rate.
    pub fn set_rate(&mut self, now: Timestamp, rate: u64) {
        self.refill(now);
        self.apply_rate(rate);
    }

    /// The rate in force, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The lower rate bound in force.
    pub fn min_rate(&self) -> u64 {
        self.min_rate
    }

    /// The upper rate bound in force.
    pub fn max_rate(&self) -> u64 {
        self.max_rate
    }

    /// Most bytes the bucket holds: the larger of [`MIN_BURST_PACKETS`] packets and
    /// [`BURST_DURATION`] at the current rate, the latter capped at [`MAX_BURST_BYTES`].
    pub fn burst_capacity(&self) -> u64 {
        let by_time = u128::from(self.rate) * BURST_DURATION.as_micros() / SCALE as u128;
        let by_time = u64::try_from(by_time)
            .unwrap_or(u64::MAX)
            .min(MAX_BURST_BYTES);
        by_time.max(self.mtu * MIN_BURST_PACKETS)
    }

    /// Whole bytes available to send at `now` (zero while in debt).
    pub fn available(&mut self, now: Timestamp) -> u64 {
        self.refill(now);
        u64::try_from(self.tokens / SCALE).unwrap_or(0)
    }

    /// Whether a packet of `bytes` may go out at `now`.
    ///
    /// A packet larger than the bucket could never be fully paid for in advance; it may go
    /// once the bucket is full, and the bucket then runs into debt that later sends wait out.
    pub fn can_send(&mut self, now: Timestamp, bytes: u64) -> bool {
        self.refill(now);
        self.tokens >= self.needed(bytes)
    }

    /// Records that `bytes` went out (at the time of the last `can_send`, `available` or
    /// `next_send_time` call).
    pub fn on_sent(&mut self, bytes: u64) {
        self.tokens = self
            .tokens
            .saturating_sub(i128::from(bytes).saturating_mul(SCALE));
    }

    /// When a packet of `bytes` may go out: `None` if it may now, else the first instant at
    /// which [`Pacer::can_send`] will allow it (assuming the rate does not change).
    pub fn next_send_time(&mut self, now: Timestamp, bytes: u64) -> Option<Timestamp> {
        self.refill(now);
        let missing = self.needed(bytes).saturating_sub(self.tokens);
        if missing <= 0 {
            return None;
        }
        let rate = i128::from(self.rate.max(1));
        // Round up, so that waking at the returned time always finds enough tokens.
        let wait_us = missing.saturating_add(rate - 1) / rate;
        let wait_us = u64::try_from(wait_us).unwrap_or(u64::MAX);
        Some(self.updated + Duration::from_micros(wait_us))
    }

    /// Tokens a packet of `bytes` needs in the bucket before it may go.
    fn needed(&self, bytes: u64) -> i128 {
        i128::from(bytes.min(self.burst_capacity())) * SCALE
    }

    fn capacity_tokens(&self) -> i128 {
        i128::from(self.burst_capacity()) * SCALE
    }

    fn apply_rate(&mut self, rate: u64) {
        self.rate = rate.clamp(self.min_rate, self.max_rate);
        self.tokens = self.tokens.min(self.capacity_tokens());
    }

    /// Adds the tokens earned since the last update. A clock that steps backwards earns
    /// nothing and does not move the update time back.
    fn refill(&mut self, now: Timestamp) {
        if now <= self.updated {
            return;
        }
        let elapsed_us = i128::from(now.as_micros() - self.updated.as_micros());
        let earned = elapsed_us.saturating_mul(i128::from(self.rate));
        self.tokens = self
            .tokens
            .saturating_add(earned)
            .min(self.capacity_tokens());
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MTU: u64 = 1300;
    const GNS_DEFAULT_RATE: u64 = 262_144;

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    #[test]
    fn starts_full_and_drains() {
        let mut p = Pacer::new(t(0), MTU, GNS_DEFAULT_RATE, GNS_DEFAULT_RATE);
        assert_eq!(p.rate(), GNS_DEFAULT_RATE);
        // 2 ms at 256 KiB/s is ~524 bytes, below four packets.
        assert_eq!(p.burst_capacity(), 4 * MTU);
        for _ in 0..4 {
            assert!(p.can_send(t(0), MTU));
            p.on_sent(MTU);
        }
        assert!(!p.can_send(t(0), MTU));
        assert!(!p.can_send(t(0), 1));
        assert_eq!(p.available(t(0)), 0);
    }

    #[test]
    fn zero_tokens_waits_exactly_one_packet_time() {
        let rate = 1_300_000; // one 1300-byte packet per millisecond
        let mut p = Pacer::new(t(0), MTU, rate, rate);
        let cap = p.burst_capacity();
        assert_eq!(cap, 2600.max(4 * MTU));
        p.on_sent(cap);
        assert!(!p.can_send(t(0), MTU));
        assert_eq!(p.next_send_time(t(0), MTU), Some(t(1000)));
        assert!(!p.can_send(t(999), MTU));
        assert_eq!(p.next_send_time(t(999), MTU), Some(t(1000)));
        assert!(p.can_send(t(1000), MTU));
        assert_eq!(p.next_send_time(t(1000), MTU), None);
    }

    #[test]
    fn next_send_time_rounds_up() {
        let mut p = Pacer::new(t(0), MTU, 3000, 3000);
        p.on_sent(p.burst_capacity());
        // 1 byte at 3000 B/s is 333.3 us: wait 334.
        let when = p.next_send_time(t(0), 1);
        assert_eq!(when, Some(t(334)));
        assert!(!p.can_send(t(333), 1));
        assert!(p.can_send(t(334), 1));
    }

    #[test]
    fn rate_is_clamped_to_bounds() {
        let mut p = Pacer::new(t(0), MTU, 100_000, 5_000_000);
        p.set_rate(t(0), 0);
        assert_eq!(p.rate(), 100_000);
        p.set_rate(t(0), u64::MAX);
        assert_eq!(p.rate(), 5_000_000);
        p.set_rate(t(0), 1_234_567);
        assert_eq!(p.rate(), 1_234_567);
        // Bounds that tighten move the rate with them.
        p.set_bounds(t(0), 2_000_000, 3_000_000);
        assert_eq!(p.rate(), 2_000_000);
        // Nonsense bounds are repaired: zero minimum, maximum below minimum.
        p.set_bounds(t(0), 0, 0);
        assert_eq!((p.min_rate(), p.max_rate()), (RATE_FLOOR, RATE_FLOOR));
        assert_eq!(p.rate(), RATE_FLOOR);
        p.set_bounds(t(0), u64::MAX, 0);
        assert_eq!((p.min_rate(), p.max_rate()), (RATE_CEILING, RATE_CEILING));
    }

    #[test]
    fn huge_rate_does_not_overflow() {
        let mut p = Pacer::new(t(0), MTU, u64::MAX, u64::MAX);
        assert_eq!(p.rate(), RATE_CEILING);
        assert_eq!(p.burst_capacity(), MAX_BURST_BYTES);
        assert_eq!(p.available(t(0)), MAX_BURST_BYTES);
        p.on_sent(u64::MAX);
        p.on_sent(u64::MAX);
        assert!(!p.can_send(t(0), MTU));
        // The debt is huge but finite; the wait is computed without overflow.
        let when = p.next_send_time(t(0), MTU);
        assert!(when.is_some_and(|w| w > t(0)));
        // Refilling at the ceiling over the longest possible gap saturates at the cap.
        assert_eq!(p.available(t(u64::MAX)), MAX_BURST_BYTES);
    }

    #[test]
    fn long_idle_gap_keeps_burst_bounded() {
        let mut p = Pacer::new(t(0), MTU, 1_000_000, 1_000_000);
        let cap = p.burst_capacity();
        p.on_sent(cap);
        assert_eq!(p.available(t(3_600_000_000)), cap);
        // After the gap only one bucket goes out back to back.
        let mut sent = 0;
        while p.can_send(t(3_600_000_000), MTU) {
            p.on_sent(MTU);
            sent += MTU;
        }
        assert!(sent <= cap);
        assert!(sent + MTU > cap);
    }

    #[test]
    fn clock_stepping_back_earns_nothing() {
        let mut p = Pacer::new(t(1_000_000), MTU, 1_000_000, 1_000_000);
        p.on_sent(p.burst_capacity());
        assert_eq!(p.available(t(0)), 0);
        assert_eq!(p.next_send_time(t(0), 1000), Some(t(1_001_000)));
        assert_eq!(p.available(t(1_000_500)), 500);
    }

    #[test]
    fn low_rate_keeps_fractional_bytes() {
        let mut p = Pacer::new(t(0), MTU, RATE_FLOOR, RATE_FLOOR);
        p.on_sent(p.burst_capacity());
        // Refill in 7 us steps for one second: each step earns ~0.007 bytes.
        let mut now = 0;
        while now < 1_000_000 {
            now += 7;
            let _ = p.available(t(now));
        }
        let got = p.available(t(1_000_000));
        assert!((RATE_FLOOR - 1..=RATE_FLOOR).contains(&got), "got {got}");
    }

    #[test]
    fn oversized_packet_goes_when_full_then_waits_out_debt() {
        let rate = 1_000_000;
        let mut p = Pacer::new(t(0), MTU, rate, rate);
        let cap = p.burst_capacity();
        let big = 64 * 1024;
        assert!(big > cap);
        assert!(p.can_send(t(0), big));
        p.on_sent(big);
        // The debt (big - cap bytes) plus a full packet's tokens must be earned first.
        let wait = (big - cap + MTU) * 1_000_000 / rate;
        assert_eq!(p.next_send_time(t(0), MTU), Some(t(wait)));
        // And the next oversized one needs a full bucket again.
        assert_eq!(
            p.next_send_time(t(0), big),
            Some(t((big - cap + cap) * 1_000_000 / rate))
        );
    }

    #[test]
    fn rate_change_keeps_earned_tokens() {
        let mut p = Pacer::new(t(0), MTU, RATE_FLOOR, 100_000_000);
        p.set_rate(t(0), 1_000_000);
        p.on_sent(p.burst_capacity());
        // 1 ms at 1 MB/s earns 1000 bytes, then the rate drops.
        p.set_rate(t(1000), 100_000);
        assert_eq!(p.available(t(1000)), 1000);
        // A lower rate shrinks the bucket; tokens above it are dropped.
        p.set_rate(t(1_000_000), 100_000_000);
        p.set_rate(t(2_000_000), 1_000_000);
        assert_eq!(p.available(t(2_000_000)), p.burst_capacity());
    }

    #[test]
    fn sustained_rate_matches_setting() {
        for rate in [RATE_FLOOR, GNS_DEFAULT_RATE, 10_000_000, 1_000_000_000] {
            let mut p = Pacer::new(t(0), MTU, rate, rate);
            let mut now = 0;
            let mut sent = 0u64;
            let end = 1_000_000;
            while now <= end {
                if p.can_send(t(now), MTU) {
                    p.on_sent(MTU);
                    sent += MTU;
                    continue;
                }
                match p.next_send_time(t(now), MTU) {
                    Some(next) => now = next.as_micros(),
                    None => unreachable!("can_send said no"),
                }
            }
            let expected = rate + p.burst_capacity();
            assert!(sent <= expected, "rate {rate}: sent {sent} > {expected}");
            assert!(sent + MTU >= rate, "rate {rate}: sent {sent} too low");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Over any schedule of sends, the bytes sent never exceed one bucket plus what the
        /// rate earned, and `next_send_time` is always honoured by `can_send`.
        #[test]
        fn never_exceeds_rate_plus_burst(
            rate in RATE_FLOOR..200_000_000u64,
            steps in proptest::collection::vec((0u64..5_000, 1u64..=1300), 1..400),
        ) {
            let mut p = Pacer::new(t(0), MTU, rate, rate);
            let cap = p.burst_capacity();
            let mut now = 0u64;
            let mut sent = 0u64;
            for (advance, bytes) in steps {
                now += advance;
                if p.can_send(t(now), bytes) {
                    p.on_sent(bytes);
                    sent += bytes;
                } else {
                    let when = p.next_send_time(t(now), bytes);
                    prop_assert!(when.is_some_and(|w| w > t(now)));
                    if let Some(w) = when {
                        prop_assert!(!p.can_send(t(w.as_micros() - 1), bytes));
                        prop_assert!(p.can_send(w, bytes));
                        // The pacer has now earned tokens up to `w`: move the clock there.
                        now = w.as_micros();
                    }
                }
                let earned = u128::from(rate) * u128::from(now) / 1_000_000;
                prop_assert!(u128::from(sent) <= u128::from(cap) + earned);
            }
        }
    }
}
