//! BBR-style congestion control: a model of the path (its bottleneck rate and its round-trip
//! time without queueing), not a reaction to loss.
//!
//! The controller keeps the largest delivery rate measured over the last ten round trips
//! ([`MaxFilter`]) and the smallest RTT over the last ten seconds. It paces at that rate
//! (times a gain) and keeps about two of its round trips' worth of data in flight. Its
//! states follow BBR v1 (draft-cardwell-iccrg-bbr-congestion-control-00):
//!
//! - **Startup** doubles the rate each round trip until the measured rate stops growing by a
//!   quarter for three round trips (the pipe is full);
//! - **Drain** sends slower until the queue Startup built is gone;
//! - **ProbeBw** cruises at the measured rate, one round trip in eight at 5/4 of it to
//!   find more, then one at 3/4 to drain what the probe queued;
//! - **ProbeRtt** halves what is in flight for 200 ms when the minimum RTT was not renewed for
//!   ten seconds, so the queue empties and the base RTT is measured again (the halving is
//!   BBR v2's; v1 goes down to four packets).
//!
//! Because the window is a small multiple of the path's own bandwidth-delay product, a deep
//! router queue stays nearly empty: the latency a game feels.
//!
//! # Random loss
//! The delivery rate counts only what arrived, so on a path that loses a fraction `p` of
//! packets whatever the sending rate (radio, a bad cable), the measured rate is `1 - p` of
//! what was sent, and a probe at 5/4 cannot lift the estimate once `(1 - p) * 5/4 < 1`: plain
//! BBR v1 shrinks towards nothing beyond 20 % loss. Here each rate sample is divided by
//! `1 - p`, with `p` the loss rate of the round trips in which the sender was cruising (not
//! probing) and the RTT showed no queue: losses there are not the sender's doing. A probe that
//! overflows a queue loses more, in a probing round, and does not raise `p`. `p` is smoothed
//! over rounds and capped at [`MAX_RANDOM_LOSS`].

use std::time::Duration;

use super::max_filter::MaxFilter;
use super::{initial_window, AckSummary, Controller, RttSample, MAX_WINDOW};
use crate::time::Timestamp;

/// Startup's pacing and window gain: `2 / ln 2`, enough to double the rate each round trip.
const STARTUP_GAIN: f64 = 2.885;

/// Drain's pacing gain: the inverse of Startup's.
const DRAIN_GAIN: f64 = 1.0 / STARTUP_GAIN;

/// Window gain outside Startup: two round trips' worth of the model's rate.
const CWND_GAIN: f64 = 2.0;
/// The window also covers this many smoothed RTTs at the model's rate (jitter).
const JITTER_RTT_GAIN: f64 = 1.0;
/// The most the jitter allowance may raise the window to, in minimum-RTT BDPs.
const MAX_CWND_GAIN: f64 = 3.0;

/// ProbeBw's pacing gains, one per round trip.
const PROBE_GAINS: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];

/// The phase ProbeBw starts in after Drain (a cruising one).
const PROBE_START_PHASE: usize = 2;

/// Round trips over which the maximum delivery rate is kept.
const BW_WINDOW_ROUNDS: u64 = 10;

/// How long a minimum RTT stands before ProbeRtt measures it again.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);

/// How long ProbeRtt holds its smaller window once in flight has come down.
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);

/// Startup ends when the rate grew less than this factor for [`FULL_BW_ROUNDS`] rounds.
const FULL_BW_GROWTH: f64 = 1.25;
const FULL_BW_ROUNDS: u32 = 3;

/// Startup also ends after a round that lost more than this fraction while its RTT showed a
/// queue: the queue overflowed (BBR v2's exit on loss, limited to congestive loss so that
/// random loss does not end Startup at a fraction of the path's rate).
const STARTUP_LOSS_EXIT: f64 = 0.02;

/// Fewest packets in the window.
const MIN_WINDOW_PACKETS: u64 = 4;

/// Shortest round trip the window is sized for. On loopback and fast LANs the minimum RTT
/// is tens of microseconds, while a round trip through two busy hosts' thread wake-ups
/// takes a millisecond or more: a window of a few minimum-RTT BDPs then caps the delivery
/// rate, and the rate model shrinks to what the window lets through (measured on loopback:
/// 13-19 MB/s where the fixed-rate sender did 34-81). Two milliseconds of the path's rate
/// is at most that much queue, and changes nothing on paths slower than that.
const WINDOW_RTT_FLOOR: Duration = Duration::from_millis(2);

/// Highest random loss rate the rate samples are corrected for.
pub const MAX_RANDOM_LOSS: f64 = 0.5;

/// Weight of each round's loss rate in the random-loss estimate.
const LOSS_EWMA_GAIN: f64 = 1.0 / 8.0;

/// A round counts towards the random-loss estimate only if it delivered and lost at least
/// this many packets' worth of bytes between them (a handful says little about a rate).
const LOSS_ROUND_MIN_PACKETS: u64 = 8;

/// A round's smallest RTT within this factor of the minimum (plus [`QUIET_RTT_SLACK`]) shows
/// no queue.
const QUIET_RTT_FACTOR: f64 = 1.25;
const QUIET_RTT_SLACK: Duration = Duration::from_millis(2);

/// Bounds on the packet size accepted.
const MIN_MTU: u64 = 1;
const MAX_MTU: u64 = 65_535;

/// BBR's states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Startup,
    Drain,
    ProbeBw,
    ProbeRtt,
}

/// The BBR controller.
#[derive(Clone, Debug)]
pub struct Bbr {
    mtu: u64,
    mode: Mode,
    /// Largest (loss-corrected) delivery rate over the window, B/s.
    bw: MaxFilter,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Timestamp,
    /// Round trips counted: a round ends when a packet sent after its start is acked.
    round: u64,
    next_round_delivered: u64,
    // Startup's end.
    full_bw: u64,
    full_bw_rounds: u32,
    filled_pipe: bool,
    // ProbeBw.
    phase: usize,
    phase_stamp: Timestamp,
    // ProbeRtt.
    probe_rtt_done: Option<Timestamp>,
    probe_rtt_round: u64,
    // The random-loss estimate.
    round_acked: u64,
    round_lost: u64,
    round_min_rtt: Option<Duration>,
    round_probing: bool,
    random_loss: f64,
    // Outputs.
    cwnd: u64,
    pacing_rate: u64,
    /// The smoothed RTT last seen, for the pacing rate before any rate sample.
    srtt: Duration,
}

impl Bbr {
    /// A controller for packets of `mtu` bytes, in Startup with the RFC 9002 initial window.
    pub fn new(mtu: u64) -> Self {
        let mtu = mtu.clamp(MIN_MTU, MAX_MTU);
        Bbr {
            mtu,
            mode: Mode::Startup,
            bw: MaxFilter::default(),
            min_rtt: None,
            min_rtt_stamp: Timestamp::ZERO,
            round: 0,
            next_round_delivered: 0,
            full_bw: 0,
            full_bw_rounds: 0,
            filled_pipe: false,
            phase: PROBE_START_PHASE,
            phase_stamp: Timestamp::ZERO,
            probe_rtt_done: None,
            probe_rtt_round: 0,
            round_acked: 0,
            round_lost: 0,
            round_min_rtt: None,
            round_probing: true,
            random_loss: 0.0,
            cwnd: initial_window(mtu),
            pacing_rate: 0,
            srtt: Duration::ZERO,
        }
    }

    /// The estimated bottleneck rate, B/s (0 before any sample).
    pub fn bandwidth(&self) -> u64 {
        self.bw.get()
    }

    /// The estimated random loss rate.
    pub fn random_loss(&self) -> f64 {
        self.random_loss
    }

    fn min_window(&self) -> u64 {
        self.mtu.saturating_mul(MIN_WINDOW_PACKETS)
    }

    fn pacing_gain(&self) -> f64 {
        match self.mode {
            Mode::Startup => STARTUP_GAIN,
            Mode::Drain => DRAIN_GAIN,
            Mode::ProbeBw => PROBE_GAINS[self.phase],
            Mode::ProbeRtt => 1.0,
        }
    }

    /// Bytes the model's rate fills over the minimum RTT (at least [`WINDOW_RTT_FLOOR`]),
    /// times `gain`.
    fn bdp(&self, gain: f64) -> Option<u64> {
        let rtt = self.min_rtt?.max(WINDOW_RTT_FLOOR);
        let bw = self.bw.get();
        if bw == 0 {
            return None;
        }
        Some((bw as f64 * rtt.as_secs_f64() * gain) as u64)
    }

    /// Closes the round that just ended: its loss rate joins the random-loss estimate if
    /// the sender was cruising and the RTT showed no queue.
    fn end_round(&mut self) {
        let total = self.round_acked + self.round_lost;
        let quiet = match (self.round_min_rtt, self.min_rtt) {
            (Some(r), Some(m)) => {
                r.as_secs_f64()
                    <= m.as_secs_f64() * QUIET_RTT_FACTOR + QUIET_RTT_SLACK.as_secs_f64()
            }
            _ => false,
        };
        let congested = !quiet
            && total >= LOSS_ROUND_MIN_PACKETS * self.mtu
            && self.round_lost as f64 > STARTUP_LOSS_EXIT * total as f64;
        if self.mode == Mode::Startup && congested {
            self.filled_pipe = true;
        }
        if !self.round_probing && quiet && total >= LOSS_ROUND_MIN_PACKETS * self.mtu {
            let rate = self.round_lost as f64 / total as f64;
            self.random_loss += (rate - self.random_loss) * LOSS_EWMA_GAIN;
            self.random_loss = self.random_loss.clamp(0.0, MAX_RANDOM_LOSS);
        }
        self.round_acked = 0;
        self.round_lost = 0;
        self.round_min_rtt = None;
        self.round_probing = self.pacing_gain() != 1.0 || self.mode != Mode::ProbeBw;
    }

    /// Whether the round so far lost clearly more than the path's random loss.
    fn excess_loss(&self) -> bool {
        let total = self.round_acked + self.round_lost;
        total >= MIN_WINDOW_PACKETS * self.mtu
            && self.round_lost as f64 > (self.random_loss + STARTUP_LOSS_EXIT) * total as f64
    }

    fn check_full_pipe(&mut self, app_limited: bool) {
        if self.filled_pipe || app_limited {
            return;
        }
        let bw = self.bw.get();
        if bw as f64 >= self.full_bw as f64 * FULL_BW_GROWTH {
            self.full_bw = bw;
            self.full_bw_rounds = 0;
            return;
        }
        self.full_bw_rounds += 1;
        if self.full_bw_rounds >= FULL_BW_ROUNDS {
            self.filled_pipe = true;
        }
    }

    fn advance_phase(&mut self, now: Timestamp, in_flight: u64, lost: bool) {
        let Some(min_rtt) = self.min_rtt else {
            return;
        };
        let elapsed = now.saturating_since(self.phase_stamp) > min_rtt;
        let gain = PROBE_GAINS[self.phase];
        let next = if gain > 1.0 {
            // Probe until a round trip passed and the extra is in flight; a probe that loses
            // more than the path's random loss found the queue's end: it stops at once.
            lost || (elapsed && self.bdp(gain).is_some_and(|t| in_flight >= t))
        } else if gain < 1.0 {
            // Drain until a round trip passed or the queue is gone.
            elapsed || self.bdp(1.0).is_some_and(|t| in_flight <= t)
        } else {
            elapsed
        };
        if next {
            self.phase = (self.phase + 1) % PROBE_GAINS.len();
            self.phase_stamp = now;
        }
    }

    fn update_min_rtt(&mut self, now: Timestamp, rtt: &RttSample) {
        let sample = rtt.latest;
        let expired = now.saturating_since(self.min_rtt_stamp) > MIN_RTT_WINDOW;
        if self.min_rtt.is_none_or(|m| sample <= m) || expired {
            self.min_rtt = Some(sample);
            self.min_rtt_stamp = now;
        }
        if expired && self.filled_pipe && self.mode != Mode::ProbeRtt {
            self.mode = Mode::ProbeRtt;
            self.probe_rtt_done = None;
        }
    }

    fn probe_rtt_window(&self) -> u64 {
        self.bdp(0.5).unwrap_or(0).max(self.min_window())
    }

    fn update_probe_rtt(&mut self, now: Timestamp, in_flight: u64, round_start: bool) {
        if self.mode != Mode::ProbeRtt {
            return;
        }
        match self.probe_rtt_done {
            None if in_flight <= self.probe_rtt_window() => {
                self.probe_rtt_done = Some(now + PROBE_RTT_DURATION);
                self.probe_rtt_round = self.round + 1;
            }
            Some(done) if now >= done && (round_start || self.round >= self.probe_rtt_round) => {
                self.min_rtt_stamp = now;
                self.mode = if self.filled_pipe {
                    Mode::ProbeBw
                } else {
                    Mode::Startup
                };
                self.phase = PROBE_START_PHASE;
                self.phase_stamp = now;
            }
            _ => {}
        }
    }

    fn update_outputs(&mut self, acked: u64) {
        let gain = self.pacing_gain();
        let bw = self.bw.get();
        self.pacing_rate = if bw > 0 {
            (bw as f64 * gain) as u64
        } else {
            // No sample yet: the initial window per smoothed RTT, times the gain.
            let rtt = self.srtt.as_secs_f64().max(1e-4);
            (self.cwnd as f64 / rtt * gain) as u64
        };
        let cwnd_gain = if self.mode == Mode::Startup {
            STARTUP_GAIN
        } else {
            CWND_GAIN
        };
        let mut target = self
            .bdp(cwnd_gain)
            .unwrap_or(self.cwnd)
            .max(self.min_window());
        if self.filled_pipe && bw > 0 {
            // A jittery path's round trips run well past its minimum: a window of twice the
            // minimum's BDP would then cap the delivery rate below the model's, and the
            // model would shrink to what that window lets through. So the window covers the
            // smoothed RTT too, but never past three minimum-RTT BDPs.
            let jitter = (bw as f64 * self.srtt.as_secs_f64() * JITTER_RTT_GAIN) as u64;
            target = target.max(jitter.min(self.bdp(MAX_CWND_GAIN).unwrap_or(0)));
        }
        self.cwnd = if self.filled_pipe {
            self.cwnd.saturating_add(acked).min(target)
        } else if self.cwnd < target || self.bdp(1.0).is_none() {
            self.cwnd.saturating_add(acked)
        } else {
            self.cwnd
        };
        self.cwnd = self.cwnd.clamp(self.min_window(), MAX_WINDOW);
        if self.mode == Mode::ProbeRtt {
            self.cwnd = self.cwnd.min(self.probe_rtt_window());
        }
    }
}

impl Controller for Bbr {
    #[cfg(any(test, fuzzing))]
    fn boxed_clone(&self) -> Box<dyn Controller> {
        Box::new(self.clone())
    }

    fn on_ack(&mut self, _: Timestamp, _: Timestamp, _: u64, _: bool, _: &RttSample) {
        // The model works per ack frame (`on_ack_summary`).
    }

    fn on_congestion_event(&mut self, _now: Timestamp, _sent: Timestamp, persistent: bool) {
        // Loss is not the signal here (the rate model is); a blackout still restarts the
        // window from its minimum, regrowing by what is acked.
        if persistent {
            self.cwnd = self.min_window();
        }
    }

    fn on_packets_lost(&mut self, _now: Timestamp, bytes: u64) {
        self.round_lost = self.round_lost.saturating_add(bytes);
    }

    fn on_ack_summary(&mut self, s: &AckSummary) {
        self.srtt = s.rtt.smoothed;
        let mut round_start = false;
        if let Some(rs) = s.rate {
            if rs.prior_delivered >= self.next_round_delivered {
                self.next_round_delivered = s.delivered;
                self.round += 1;
                round_start = true;
            }
        }
        if round_start {
            self.end_round();
        }
        self.round_acked = self.round_acked.saturating_add(s.acked);
        self.round_min_rtt = Some(
            self.round_min_rtt
                .map_or(s.rtt.latest, |r| r.min(s.rtt.latest)),
        );
        if self.pacing_gain() != 1.0 {
            self.round_probing = true;
        }
        if let Some(rs) = s.rate {
            let corrected = (rs.delivery_rate as f64 / (1.0 - self.random_loss)) as u64;
            if !rs.app_limited || corrected >= self.bw.get() {
                self.bw.update(self.round, corrected, BW_WINDOW_ROUNDS);
            }
        }
        let app_limited = s.rate.is_some_and(|r| r.app_limited);
        if round_start {
            self.check_full_pipe(app_limited);
        }
        match self.mode {
            Mode::Startup if self.filled_pipe => {
                self.mode = Mode::Drain;
            }
            Mode::ProbeBw => {
                let excess = self.excess_loss();
                self.advance_phase(s.now, s.in_flight, excess);
            }
            _ => {}
        }
        if self.mode == Mode::Drain && self.bdp(1.0).is_none_or(|t| s.in_flight <= t) {
            self.mode = Mode::ProbeBw;
            self.phase = PROBE_START_PHASE;
            self.phase_stamp = s.now;
        }
        self.update_min_rtt(s.now, &s.rtt);
        self.update_probe_rtt(s.now, s.in_flight, round_start);
        self.update_outputs(s.acked);
    }

    fn window(&self) -> u64 {
        self.cwnd
    }

    fn initial_window(&self) -> u64 {
        initial_window(self.mtu)
    }

    fn in_slow_start(&self) -> bool {
        self.mode == Mode::Startup
    }

    fn pacing_rate(&self, smoothed_rtt: Duration) -> u64 {
        if self.pacing_rate > 0 {
            return self.pacing_rate;
        }
        let rtt = smoothed_rtt.as_secs_f64().max(1e-4);
        (self.cwnd as f64 / rtt * STARTUP_GAIN) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_like_the_others() {
        let cc = Bbr::new(1300);
        assert_eq!(cc.window(), initial_window(1300));
        assert!(cc.in_slow_start());
        // Before any sample: the initial window per RTT, at Startup's gain.
        let rate = cc.pacing_rate(Duration::from_millis(100));
        assert_eq!(rate, (13_000.0 / 0.1 * STARTUP_GAIN) as u64);
    }

    #[test]
    fn the_window_covers_a_jittery_round_trip() {
        // 1 MB/s, a 40 ms minimum RTT but round trips of 120 ms (jitter): twice the
        // minimum's BDP (80 kB) would let through only 2/3 of the model's rate.
        let mut cc = Bbr::new(1300);
        cc.bw.update(1, 1_000_000, 10);
        cc.min_rtt = Some(Duration::from_millis(40));
        cc.filled_pipe = true;
        cc.mode = Mode::ProbeBw;
        cc.phase = 2;
        cc.srtt = Duration::from_millis(120);
        for _ in 0..200 {
            cc.update_outputs(1300);
        }
        assert_eq!(cc.window(), 120_000);
        // Never past three minimum-RTT BDPs, however long the round trips.
        cc.srtt = Duration::from_millis(400);
        for _ in 0..200 {
            cc.update_outputs(1300);
        }
        assert_eq!(cc.window(), 120_000);
        cc.srtt = Duration::from_millis(50);
        cc.update_outputs(1300);
        assert_eq!(cc.window(), 80_000, "back to twice the BDP");
    }

    #[test]
    fn a_microsecond_round_trip_still_gets_a_window_for_host_delays() {
        // Loopback: 50 MB/s measured, a 30 µs minimum RTT, 1 ms round trips through two
        // hosts' wake-ups. Twice the 30 µs BDP (3 kB, below the 4-packet floor) would hold
        // the sender to about 5 MB/s; the window covers 2 ms of the rate instead.
        let mut cc = Bbr::new(1300);
        cc.bw.update(1, 50_000_000, 10);
        cc.min_rtt = Some(Duration::from_micros(30));
        cc.filled_pipe = true;
        cc.mode = Mode::ProbeBw;
        cc.phase = 2;
        cc.srtt = Duration::from_millis(1);
        for _ in 0..500 {
            cc.update_outputs(1300);
        }
        assert!(cc.window() >= 2 * 100_000, "window {}", cc.window());
    }
}
