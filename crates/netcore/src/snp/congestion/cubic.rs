//! CUBIC congestion control (RFC 9438), with RFC 9002's slow start and recovery period.
//!
//! CUBIC grows the window as a cubic function of the time since the last reduction, so growth
//! depends on elapsed time rather than on the round-trip time: it fills long fat paths quickly,
//! then slows down near the window at which loss last happened. A Reno-friendly estimate keeps
//! it at least as fast as standard TCP on short paths.
//!
//! The window is kept as an `f64` of bytes: growth per ack is often a fraction of a byte on large
//! windows, and truncating it to an integer would stall growth.

use super::{initial_window, minimum_window, Controller, RttSample, MAX_WINDOW};
use crate::time::Timestamp;

/// RFC 9438's `C`: how aggressively the window grows, in packets per second cubed.
const CUBIC_C: f64 = 0.4;

/// RFC 9438's `beta_cubic`: the window keeps this fraction of itself after a congestion event.
const BETA: f64 = 0.7;

/// RFC 9438's `alpha_cubic`, which makes the Reno-friendly estimate grow like standard TCP
/// with the reduction factor [`BETA`].
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);

/// Bounds on the packet size a controller accepts, so that a bad caller value cannot make the
/// minimum window zero or absurd.
const MIN_MTU: u64 = 1;
const MAX_MTU: u64 = 65_535;

/// State of one congestion-avoidance period, from its first ack until the next reduction.
#[derive(Clone, Copy, Debug)]
struct Epoch {
    /// When the period began; moved forward over application-limited stretches so that idle
    /// time does not count as time spent probing.
    start: Timestamp,
    /// Seconds after `start` at which the cubic curve returns to `w_max`.
    k_secs: f64,
    /// The Reno-friendly window estimate, bytes.
    w_est: f64,
}

/// What a reduction changed, kept until the next one so a false loss can be undone.
#[derive(Clone, Copy, Debug)]
struct Undo {
    window: f64,
    ssthresh: f64,
    w_max: f64,
    epoch: Option<Epoch>,
    recovery_start: Option<Timestamp>,
}

/// The CUBIC controller.
#[derive(Clone, Debug)]
pub struct Cubic {
    mtu: u64,
    /// Current window, bytes, within `[minimum_window, MAX_WINDOW]`.
    window: f64,
    /// Slow start threshold, bytes; infinite until the first congestion event.
    ssthresh: f64,
    /// Start of the current recovery period; packets sent up to then cannot trigger another
    /// reduction, nor grow the window.
    recovery_start: Option<Timestamp>,
    /// Window just before the last reduction (RFC 9438 `W_max`), bytes; zero before any.
    w_max: f64,
    /// Congestion-avoidance period in progress, if any.
    epoch: Option<Epoch>,
    /// Time of the last ack seen, to measure application-limited stretches.
    last_ack: Option<Timestamp>,
    /// The state before the latest reduction, while it may still prove false.
    undo: Option<Box<Undo>>,
}

impl Cubic {
    /// A controller for packets of `mtu` bytes, starting in slow start with the RFC 9002 initial
    /// window.
    pub fn new(mtu: u64) -> Self {
        let mtu = mtu.clamp(MIN_MTU, MAX_MTU);
        Cubic {
            mtu,
            window: initial_window(mtu) as f64,
            ssthresh: f64::INFINITY,
            recovery_start: None,
            w_max: 0.0,
            epoch: None,
            last_ack: None,
            undo: None,
        }
    }

    /// The slow start threshold in bytes, or `None` before the first congestion event.
    pub fn ssthresh(&self) -> Option<u64> {
        self.ssthresh.is_finite().then_some(self.ssthresh as u64)
    }

    fn min_window(&self) -> f64 {
        minimum_window(self.mtu) as f64
    }

    fn in_recovery(&self, sent: Timestamp) -> bool {
        self.recovery_start.is_some_and(|start| sent <= start)
    }

    /// The cubic curve `W_cubic(t)` in bytes.
    fn w_cubic(&self, t_secs: f64, k_secs: f64) -> f64 {
        let d = t_secs - k_secs;
        CUBIC_C * d * d * d * self.mtu as f64 + self.w_max
    }

    fn begin_epoch(&mut self, now: Timestamp) -> Epoch {
        // After growing past the last loss point (or with no loss yet), start the curve at its
        // plateau: W_max becomes the current window and K is zero.
        if self.w_max < self.window {
            self.w_max = self.window;
        }
        let k_secs = ((self.w_max - self.window) / (CUBIC_C * self.mtu as f64)).cbrt();
        Epoch {
            start: now,
            k_secs,
            w_est: self.window,
        }
    }

    fn set_window(&mut self, window: f64) {
        self.window = window.clamp(self.min_window(), MAX_WINDOW as f64);
    }
}

impl Controller for Cubic {
    #[cfg(any(test, fuzzing))]
    fn boxed_clone(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn on_ack(
        &mut self,
        now: Timestamp,
        sent: Timestamp,
        bytes: u64,
        app_limited: bool,
        rtt: &RttSample,
    ) {
        let previous_ack = self.last_ack.replace(now);
        if self.in_recovery(sent) {
            return;
        }
        if app_limited {
            // Freeze the cubic clock while the window goes unused (RFC 9438, 5.8).
            if let (Some(epoch), Some(previous)) = (self.epoch.as_mut(), previous_ack) {
                epoch.start += now.saturating_since(previous);
            }
            return;
        }
        let acked = bytes as f64;
        if self.window < self.ssthresh {
            self.set_window(self.window + acked);
            return;
        }

        let mut epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.begin_epoch(now),
        };
        let t = now.saturating_since(epoch.start).as_secs_f64();
        let rtt_secs = rtt.smoothed.as_secs_f64();
        let window = self.window;

        // Reno-friendly estimate: grows like standard TCP, at full speed once past W_max.
        let alpha = if epoch.w_est >= self.w_max {
            1.0
        } else {
            ALPHA
        };
        epoch.w_est += alpha * self.mtu as f64 * acked / window;

        let next = if self.w_cubic(t, epoch.k_secs) < epoch.w_est {
            epoch.w_est.max(window)
        } else {
            // Aim for where the curve will be one round trip from now, growing by at most
            // half the window per round trip.
            let target = self
                .w_cubic(t + rtt_secs, epoch.k_secs)
                .clamp(window, 1.5 * window);
            window + (target - window) * acked / window
        };
        self.epoch = Some(epoch);
        self.set_window(next);
    }

    fn on_congestion_event(&mut self, now: Timestamp, sent: Timestamp, persistent: bool) {
        if !self.in_recovery(sent) {
            self.undo = Some(Box::new(Undo {
                window: self.window,
                ssthresh: self.ssthresh,
                w_max: self.w_max,
                epoch: self.epoch,
                recovery_start: self.recovery_start,
            }));
            self.recovery_start = Some(now);
            // Fast convergence: if this loss came below the previous loss point, another flow
            // probably arrived; release some bandwidth to it by aiming lower.
            self.w_max = if self.window < self.w_max {
                self.window * (1.0 + BETA) / 2.0
            } else {
                self.window
            };
            self.ssthresh = (self.window * BETA).max(self.min_window());
            self.set_window(self.ssthresh);
            self.epoch = None;
        }
        if persistent {
            // The recovery period stays: losses still being detected among older packets are
            // part of this same collapse. A blackout is no reordering: nothing to undo.
            self.set_window(self.min_window());
            self.epoch = None;
            self.undo = None;
        }
    }

    fn on_spurious_congestion(&mut self, _now: Timestamp) {
        if let Some(u) = self.undo.take() {
            // Back to the window before the false loss; the growth since is kept if larger.
            self.window = self.window.max(u.window);
            self.ssthresh = u.ssthresh;
            self.w_max = u.w_max;
            self.epoch = u.epoch;
            self.recovery_start = u.recovery_start;
        }
    }

    fn window(&self) -> u64 {
        self.window as u64
    }

    fn initial_window(&self) -> u64 {
        initial_window(self.mtu)
    }

    fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const MTU: u64 = 1300;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    fn rtt(ms: u64) -> RttSample {
        let d = Duration::from_millis(ms);
        RttSample {
            latest: d,
            smoothed: d,
            min: d,
        }
    }

    #[test]
    fn slow_start_adds_acked_bytes() {
        let mut cc = Cubic::new(MTU);
        assert_eq!(cc.window(), 13_000);
        assert!(cc.in_slow_start());
        assert_eq!(cc.ssthresh(), None);
        for i in 0..10 {
            cc.on_ack(at(50 + i), at(i), MTU, false, &rtt(50));
        }
        assert_eq!(cc.window(), 26_000);
    }

    #[test]
    fn loss_reduces_window_once_per_recovery_period() {
        let mut cc = Cubic::new(MTU);
        for i in 0..30 {
            cc.on_ack(at(50 + i), at(i), MTU, false, &rtt(50));
        }
        let before = cc.window();
        cc.on_congestion_event(at(100), at(40), false);
        let after = cc.window();
        assert_eq!(after, (before as f64 * BETA) as u64);
        assert!(!cc.in_slow_start());
        assert_eq!(cc.ssthresh(), Some(after));

        // More losses of packets sent before recovery began: same event.
        cc.on_congestion_event(at(101), at(60), false);
        cc.on_congestion_event(at(120), at(100), false);
        assert_eq!(cc.window(), after);
        // Acks of packets sent before recovery do not grow the window.
        cc.on_ack(at(130), at(90), MTU, false, &rtt(50));
        assert_eq!(cc.window(), after);

        // A loss of a packet sent after recovery began is a new event.
        cc.on_congestion_event(at(200), at(101), false);
        assert_eq!(cc.window(), (after as f64 * BETA) as u64);
    }

    #[test]
    fn a_false_loss_is_undone() {
        let mut cc = Cubic::new(MTU);
        for i in 0..30 {
            cc.on_ack(at(50 + i), at(i), MTU, false, &rtt(50));
        }
        let before = cc.window();
        cc.on_congestion_event(at(100), at(40), false);
        assert!(cc.window() < before);
        cc.on_spurious_congestion(at(120));
        assert_eq!(cc.window(), before);
        assert!(
            cc.in_slow_start(),
            "back in slow start, as before the false loss"
        );
        // Only once: a second call has nothing to undo.
        cc.on_congestion_event(at(200), at(150), false);
        let reduced = cc.window();
        cc.on_spurious_congestion(at(210));
        cc.on_spurious_congestion(at(211));
        assert_eq!(cc.window(), before);
        assert!(reduced < before);
        // A collapse for persistent congestion is never undone.
        cc.on_congestion_event(at(300), at(250), true);
        cc.on_spurious_congestion(at(310));
        assert_eq!(cc.window(), minimum_window(MTU));
    }

    #[test]
    fn window_never_below_minimum() {
        let mut cc = Cubic::new(MTU);
        for i in 0..100 {
            cc.on_congestion_event(at(10 * i + 1), at(10 * i + 1), false);
        }
        assert_eq!(cc.window(), minimum_window(MTU));
    }

    #[test]
    fn persistent_congestion_collapses_to_minimum() {
        let mut cc = Cubic::new(MTU);
        for i in 0..100 {
            cc.on_ack(at(50 + i), at(i), MTU, false, &rtt(50));
        }
        cc.on_congestion_event(at(300), at(250), true);
        assert_eq!(cc.window(), minimum_window(MTU));
        // Out of slow start: ssthresh remembers the reduction, so it slow-starts back to it.
        let ssthresh = cc.ssthresh().unwrap_or(0);
        assert!(ssthresh > minimum_window(MTU));
        assert!(cc.in_slow_start());
        cc.on_ack(at(400), at(350), MTU, false, &rtt(50));
        assert_eq!(cc.window(), minimum_window(MTU) + MTU);
    }

    #[test]
    fn app_limited_acks_do_not_grow_the_window() {
        let mut cc = Cubic::new(MTU);
        for i in 0..1000 {
            cc.on_ack(at(50 + i), at(i), MTU, true, &rtt(50));
        }
        assert_eq!(cc.window(), 13_000);

        // Same in congestion avoidance.
        cc.on_congestion_event(at(2000), at(1999), false);
        let w = cc.window();
        for i in 0..1000 {
            cc.on_ack(at(2100 + i), at(2050 + i), MTU, true, &rtt(50));
        }
        assert_eq!(cc.window(), w);
    }

    #[test]
    fn app_limited_time_does_not_count_toward_growth() {
        // Two controllers reach the same state; one then idles (app-limited) for 10 s.
        let mut busy = Cubic::new(MTU);
        for i in 0..100 {
            busy.on_ack(at(50 + i), at(i), MTU, false, &rtt(50));
        }
        busy.on_congestion_event(at(200), at(150), false);
        busy.on_ack(at(300), at(250), MTU, false, &rtt(50));
        let mut idle = busy.clone();

        for i in 1..=10 {
            idle.on_ack(
                at(300 + i * 1000),
                at(300 + i * 1000 - 50),
                MTU,
                true,
                &rtt(50),
            );
        }
        // Both then see one round of acks; the idle one resumes where it left off.
        for i in 0..20 {
            busy.on_ack(at(350 + i), at(300 + i), MTU, false, &rtt(50));
            idle.on_ack(at(10_350 + i), at(10_300 + i), MTU, false, &rtt(50));
        }
        let diff = busy.window().abs_diff(idle.window());
        assert!(diff <= MTU, "busy {} idle {}", busy.window(), idle.window());
    }

    #[test]
    fn congestion_avoidance_follows_the_cubic_curve() {
        // A 1000-packet window on a 100 ms path: here the cubic curve, not the Reno-friendly
        // estimate (which would need about a minute to regrow), drives growth.
        let mut cc = Cubic::new(MTU);
        for _ in 0..990 {
            cc.on_ack(at(100), at(0), MTU, false, &rtt(100));
        }
        let w_max = cc.window() as f64;
        assert_eq!(cc.window(), 1000 * MTU);
        cc.on_congestion_event(at(150), at(120), false);
        assert!((cc.window() as f64 - w_max * BETA).abs() < 1.0);

        // K = cbrt(W_max * (1 - beta) / C), W_max in packets: about 9.1 s.
        let k = ((w_max / MTU as f64) * (1.0 - BETA) / CUBIC_C).cbrt();
        let expected = |t: f64| {
            let d = t + 0.1 - k;
            (CUBIC_C * d * d * d + w_max / MTU as f64) * MTU as f64
        };

        // Feed a full window of acks every 100 ms round trip, and compare with the curve.
        let mut now_ms = 200;
        let mut checked = 0;
        while now_ms <= 20_000 {
            for _ in 0..cc.window() / MTU {
                cc.on_ack(at(now_ms), at(now_ms - 100), MTU, false, &rtt(100));
            }
            let start = cc.epoch.map_or(0, |e| e.start.as_micros());
            let t = (at(now_ms).as_micros() - start) as f64 / 1e6;
            if now_ms % 2000 == 0 {
                let want = expected(t);
                let got = cc.window() as f64;
                assert!(
                    (got - want).abs() <= 0.03 * want,
                    "t {t:.1} s: window {got}, curve {want}"
                );
                checked += 1;
            }
            now_ms += 100;
        }
        assert_eq!(checked, 10);
        // Concave below W_max, a plateau around K, convex probing past it.
        assert!(cc.window() as f64 > 1.3 * w_max);
    }

    #[test]
    fn growth_per_round_trip_is_bounded() {
        let mut cc = Cubic::new(MTU);
        cc.on_congestion_event(at(1), at(1), false);
        // Long after the epoch began, the curve is far above the window; one round trip of
        // acks may still grow the window by at most half.
        cc.on_ack(at(10), at(5), MTU, false, &rtt(50));
        let mut now = 100_000;
        cc.on_ack(at(now), at(now - 50), MTU, false, &rtt(50));
        let w = cc.window();
        now += 50;
        for _ in 0..(w / MTU) {
            cc.on_ack(at(now), at(now - 50), MTU, false, &rtt(50));
        }
        assert!(cc.window() as f64 <= w as f64 * 1.5 + 1.0);
        assert!(cc.window() > w);
    }

    #[test]
    fn window_is_capped() {
        let mut cc = Cubic::new(MTU);
        for i in 0..10_000 {
            cc.on_ack(at(i + 1), at(i), 1 << 20, false, &rtt(1));
        }
        assert_eq!(cc.window(), MAX_WINDOW);
    }

    #[test]
    fn odd_mtu_values_are_tamed() {
        let cc = Cubic::new(0);
        assert_eq!(cc.window(), initial_window(1));
        let cc = Cubic::new(u64::MAX);
        assert_eq!(cc.window(), initial_window(MAX_MTU));
    }

    #[test]
    fn pacing_rate_uses_slow_start_gain() {
        let mut cc = Cubic::new(MTU);
        let srtt = Duration::from_millis(10);
        assert_eq!(cc.pacing_rate(srtt), 13_000 * 2 * 100);
        cc.on_congestion_event(at(1), at(1), false);
        let w = cc.window();
        assert_eq!(cc.pacing_rate(srtt), w * 125);
    }
}
