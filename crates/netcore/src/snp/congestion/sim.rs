//! Test-only simulation: a controller (CUBIC or BBR) and the pacer driving packets through a
//! fake bottleneck link.
//!
//! The link has a fixed base round-trip time, a bottleneck of fixed bandwidth and a drop-tail
//! queue in front of it, plus optional random loss. A virtual clock in microseconds jumps from
//! event to event, so a run of many simulated seconds takes milliseconds and is deterministic.
//! The sender plays the connection's part as the congestion module documents it: it paces at
//! the controller's rate clamped to the bounds, keeps at least `min_rate_window` in flight and
//! reports application-limited acks with `app_limited`.

use super::{
    app_limited, initial_window, min_rate_window, AckSummary, CongestionControl, Controller,
    DeliveryRate, RttSample, Snapshot,
};
use crate::snp::pacing::Pacer;
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

const MTU: u64 = 1300;
/// Width of the buckets delivered bytes are counted in.
const BUCKET_US: u64 = 10_000;

#[derive(Clone, Copy)]
struct Link {
    base_rtt_us: u64,
    bandwidth: u64,
    queue_bytes: u64,
}

impl Link {
    fn bdp(&self) -> u64 {
        self.bandwidth * self.base_rtt_us / 1_000_000
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    at: u64,
    seq: u64,
    sent: u64,
    lost: bool,
    snap: Snapshot,
}

struct Sim {
    link: Link,
    /// Time at which the bottleneck finishes sending everything queued, in nanoseconds so
    /// that packet times at 1 GB/s (1.3 us) do not round.
    busy_until_ns: u64,
    /// Random loss, parts per million, applied before the queue.
    loss_ppm: u64,
    rng: u64,
    now: u64,
    cc: Box<dyn Controller>,
    delivery: DeliveryRate,
    pacer: Pacer,
    events: BinaryHeap<Reverse<Event>>,
    seq: u64,
    in_flight: u64,
    srtt: Duration,
    min_rtt: Duration,
    /// `None`: always has data. `Some(us)`: the application produces one packet every `us`.
    app_interval_us: Option<u64>,
    app_backlog: u64,
    next_app_at: u64,
    // Observations.
    delivered: Vec<u64>,
    offered: u64,
    losses: u64,
    reductions: u64,
    max_window: u64,
    max_backlog: u64,
    /// Largest queue seen from `late_from` on (after Startup's overshoot).
    late_max_backlog: u64,
    late_from: u64,
    min_rate_seen: u64,
}

impl Sim {
    fn new(link: Link, min_rate: u64, max_rate: u64) -> Self {
        Self::with(CongestionControl::Cubic, link, min_rate, max_rate)
    }

    fn with(kind: CongestionControl, link: Link, min_rate: u64, max_rate: u64) -> Self {
        Sim {
            link,
            busy_until_ns: 0,
            loss_ppm: 0,
            rng: 0x9E37_79B9_7F4A_7C15,
            now: 0,
            cc: kind.build(MTU),
            delivery: DeliveryRate::default(),
            pacer: Pacer::new(Timestamp::ZERO, MTU, min_rate, max_rate),
            events: BinaryHeap::new(),
            seq: 0,
            in_flight: 0,
            // As if the handshake had measured the empty path.
            srtt: Duration::from_micros(link.base_rtt_us),
            min_rtt: Duration::from_micros(link.base_rtt_us),
            app_interval_us: None,
            app_backlog: 0,
            next_app_at: 0,
            delivered: Vec::new(),
            offered: 0,
            losses: 0,
            reductions: 0,
            max_window: 0,
            max_backlog: 0,
            late_max_backlog: 0,
            late_from: 2 * SEC,
            min_rate_seen: u64::MAX,
        }
    }

    fn random_ppm(&mut self) -> u64 {
        // xorshift64: deterministic and good enough to pick losses.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 1_000_000
    }

    fn has_data(&self) -> bool {
        self.app_interval_us.is_none() || self.app_backlog > 0
    }

    fn window_limit(&self) -> u64 {
        self.cc
            .window()
            .max(min_rate_window(self.pacer.min_rate(), self.srtt))
    }

    fn try_send(&mut self) {
        while self.has_data() && self.in_flight + MTU <= self.window_limit() {
            let now = Timestamp::from_micros(self.now);
            self.pacer.set_rate(now, self.cc.pacing_rate(self.srtt));
            self.min_rate_seen = self.min_rate_seen.min(self.pacer.rate());
            if !self.pacer.can_send(now, MTU) {
                break;
            }
            self.pacer.on_sent(MTU);
            self.cc.on_sent(now, MTU);
            let snap = self.delivery.on_sent(now, self.in_flight);
            self.in_flight += MTU;
            self.offered += MTU;
            self.app_backlog = self.app_backlog.saturating_sub(1);
            self.transmit(snap);
        }
        if !self.has_data() {
            self.delivery.on_app_limited(self.in_flight);
        }
    }

    fn transmit(&mut self, snap: Snapshot) {
        let tx_ns = MTU * 1_000_000_000 / self.link.bandwidth;
        let now_ns = self.now * 1000;
        let start_ns = self.busy_until_ns.max(now_ns);
        let backlog =
            self.busy_until_ns.saturating_sub(now_ns) * self.link.bandwidth / 1_000_000_000;
        self.max_backlog = self.max_backlog.max(backlog);
        if self.now >= self.late_from {
            self.late_max_backlog = self.late_max_backlog.max(backlog);
        }
        let randomly_lost = self.loss_ppm > 0 && self.random_ppm() < self.loss_ppm;
        let (at, lost) = if randomly_lost || backlog + MTU > self.link.queue_bytes {
            // Detected when the packets behind it are acked: about three packets later than
            // its own ack would have come.
            (
                (start_ns + tx_ns * 4).div_ceil(1000) + self.link.base_rtt_us,
                true,
            )
        } else {
            self.busy_until_ns = start_ns + tx_ns;
            (
                self.busy_until_ns.div_ceil(1000) + self.link.base_rtt_us,
                false,
            )
        };
        self.seq += 1;
        self.events.push(Reverse(Event {
            at,
            seq: self.seq,
            sent: self.now,
            lost,
            snap,
        }));
    }

    fn next_wakeup(&mut self, until: u64) -> u64 {
        let mut next = until;
        if let Some(Reverse(event)) = self.events.peek() {
            next = next.min(event.at);
        }
        if self.app_interval_us.is_some() {
            next = next.min(self.next_app_at);
        }
        if self.has_data() && self.in_flight + MTU <= self.window_limit() {
            let now = Timestamp::from_micros(self.now);
            if let Some(t) = self.pacer.next_send_time(now, MTU) {
                next = next.min(t.as_micros());
            }
        }
        next
    }

    fn process_events(&mut self) {
        while let Some(Reverse(event)) = self.events.peek() {
            if event.at > self.now {
                break;
            }
            let Some(Reverse(event)) = self.events.pop() else {
                break;
            };
            let now = Timestamp::from_micros(self.now);
            let sent = Timestamp::from_micros(event.sent);
            if event.lost {
                self.in_flight -= MTU;
                self.losses += 1;
                let before = self.cc.window();
                self.cc.on_packets_lost(now, MTU);
                self.cc.on_congestion_event(now, sent, false);
                if self.cc.window() < before {
                    self.reductions += 1;
                }
            } else {
                let limited = app_limited(self.in_flight, self.cc.window());
                self.in_flight -= MTU;
                let sample = now.saturating_since(sent);
                self.srtt = (self.srtt * 7 + sample) / 8;
                self.min_rtt = self.min_rtt.min(sample);
                let rtt = RttSample {
                    latest: sample,
                    smoothed: self.srtt,
                    min: self.min_rtt,
                };
                self.cc.on_ack(now, sent, MTU, limited, &rtt);
                self.delivery.on_acked(now, MTU, &event.snap);
                let summary = AckSummary {
                    now,
                    rate: self.delivery.take_sample(Some(self.min_rtt)),
                    delivered: self.delivery.delivered(),
                    acked: MTU,
                    in_flight: self.in_flight,
                    rtt,
                };
                self.cc.on_ack_summary(&summary);
                let bucket = usize::try_from(self.now / BUCKET_US).unwrap_or(usize::MAX);
                if self.delivered.len() <= bucket {
                    self.delivered.resize(bucket + 1, 0);
                }
                self.delivered[bucket] += MTU;
            }
            self.max_window = self.max_window.max(self.cc.window());
        }
        if let Some(interval) = self.app_interval_us {
            while self.next_app_at <= self.now {
                self.app_backlog += 1;
                self.next_app_at += interval;
            }
        }
    }

    fn run_until(&mut self, until_us: u64) {
        while self.now < until_us {
            self.process_events();
            self.try_send();
            let next = self.next_wakeup(until_us);
            assert!(next > self.now || next == until_us, "simulation stalled");
            self.now = next;
        }
        self.process_events();
    }

    /// Bytes acked per second between two instants (bucket-aligned).
    fn goodput(&self, from_us: u64, to_us: u64) -> f64 {
        let from = usize::try_from(from_us / BUCKET_US).unwrap_or(0);
        let to = usize::try_from(to_us / BUCKET_US).unwrap_or(0);
        let bytes: u64 = self
            .delivered
            .iter()
            .skip(from)
            .take(to.saturating_sub(from))
            .sum();
        bytes as f64 * 1_000_000.0 / (to_us - from_us) as f64
    }

    fn utilisation(&self, from_us: u64, to_us: u64) -> f64 {
        self.goodput(from_us, to_us) / self.link.bandwidth as f64
    }
}

const SEC: u64 = 1_000_000;
const UNBOUNDED: u64 = u64::MAX;

fn link(bandwidth: u64, base_rtt_us: u64, queue_bdps: f64) -> Link {
    let mut link = Link {
        base_rtt_us,
        bandwidth,
        queue_bytes: 0,
    };
    link.queue_bytes = ((link.bdp() as f64 * queue_bdps) as u64).max(2 * MTU);
    link
}

#[test]
fn fills_bottleneck_with_bdp_queue() {
    let link = link(4_000_000, 20_000, 1.0);
    let mut sim = Sim::new(link, 0, UNBOUNDED);
    sim.run_until(10 * SEC);
    let u = sim.utilisation(2 * SEC, 10 * SEC);
    assert!(u >= 0.9, "utilisation {u}");
    // Congestion is handled, not ignored: a few losses, each episode one reduction.
    assert!(sim.losses > 0);
    assert!((sim.losses as f64) < 0.02 * (sim.offered / MTU) as f64);
    assert!(sim.reductions < sim.losses);
    // Window and queue stay bounded by what the path holds.
    assert!(sim.max_window <= 4 * (link.bdp() + link.queue_bytes));
    assert!(sim.max_backlog <= link.queue_bytes);
}

#[test]
fn fills_bottleneck_with_shallow_queue() {
    let link = link(4_000_000, 20_000, 0.25);
    let mut sim = Sim::new(link, 0, UNBOUNDED);
    sim.run_until(10 * SEC);
    let u = sim.utilisation(2 * SEC, 10 * SEC);
    assert!(u >= 0.75, "utilisation {u}");
    assert!(sim.max_window <= 4 * (link.bdp() + link.queue_bytes));
}

#[test]
fn fills_gigabyte_per_second_link() {
    // Loopback-like: 1 GB/s, 200 us round trip.
    let link = link(1_000_000_000, 200, 1.0);
    let mut sim = Sim::new(link, 0, UNBOUNDED);
    sim.run_until(60_000);
    let u = sim.utilisation(20_000, 60_000);
    assert!(u >= 0.7, "utilisation {u}");
}

#[test]
fn backs_off_on_loss_and_recovers() {
    let link = link(4_000_000, 20_000, 1.0);
    let mut sim = Sim::new(link, 0, UNBOUNDED);
    sim.run_until(3 * SEC);
    let window_before = sim.cc.window();
    let reductions_before = sim.reductions;
    let losses_before = sim.losses;

    // Two seconds of 5 % random loss.
    sim.loss_ppm = 50_000;
    sim.run_until(5 * SEC);
    sim.loss_ppm = 0;
    let window_lossy = sim.cc.window();
    assert!(
        window_lossy * 2 < window_before,
        "window {window_before} -> {window_lossy}"
    );
    let lossy_util = sim.utilisation(4 * SEC, 5 * SEC);
    // One reduction per round trip at most, however many packets were lost.
    let reductions = sim.reductions - reductions_before;
    let losses = sim.losses - losses_before;
    assert!(
        reductions <= 2 * SEC / 20_000 + 1,
        "{reductions} reductions"
    );
    assert!(reductions < losses);

    sim.run_until(12 * SEC);
    let u = sim.utilisation(8 * SEC, 12 * SEC);
    assert!(u >= 0.85, "utilisation after loss {u}");
    assert!(u > lossy_util);
}

#[test]
fn respects_max_rate() {
    let link = link(4_000_000, 20_000, 1.0);
    let max = 2_000_000;
    let mut sim = Sim::new(link, 0, max);
    sim.run_until(6 * SEC);
    let rate = sim.goodput(SEC, 6 * SEC);
    assert!(rate <= max as f64 * 1.01, "rate {rate}");
    assert!(rate >= max as f64 * 0.95, "rate {rate}");
    assert_eq!(sim.losses, 0);
    // Held back by the pacer, the window stops growing at about twice what is in flight.
    let in_flight_at_max = max * link.base_rtt_us / 1_000_000;
    assert!(
        sim.max_window <= 2 * in_flight_at_max + 2 * initial_window(MTU),
        "window {}",
        sim.max_window
    );
}

#[test]
fn respects_fixed_reference_rate() {
    // The reference's defaults: sendRateMin = sendRateMax = 256 KiB/s.
    let link = link(4_000_000, 20_000, 1.0);
    let fixed = 262_144;
    let mut sim = Sim::new(link, fixed, fixed);
    sim.run_until(6 * SEC);
    let rate = sim.goodput(SEC, 6 * SEC);
    assert!(
        (rate - fixed as f64).abs() <= fixed as f64 * 0.02,
        "rate {rate}"
    );
    assert_eq!(sim.min_rate_seen, fixed);
    assert_eq!(sim.losses, 0);
}

#[test]
fn min_rate_holds_on_a_slower_link() {
    // sendRateMin above what the link carries: the controller wants to back off, but the
    // configured floor wins (and losses are the price).
    let link = link(1_000_000, 20_000, 1.0);
    let min = 1_500_000;
    let mut sim = Sim::new(link, min, 4 * min);
    sim.run_until(5 * SEC);
    assert!(sim.min_rate_seen >= min);
    let offered_rate = sim.offered as f64 / 5.0;
    assert!(offered_rate >= min as f64 * 0.95, "offered {offered_rate}");
    assert!(sim.losses > 0);
    assert!(sim.utilisation(SEC, 5 * SEC) >= 0.9);
}

#[test]
fn app_limited_sender_keeps_its_window() {
    let link = link(4_000_000, 20_000, 1.0);
    let mut sim = Sim::new(link, 0, UNBOUNDED);
    // One packet every 10 ms: 130 KB/s, far below the link; about two packets in flight.
    sim.app_interval_us = Some(10_000);
    sim.run_until(5 * SEC);
    assert_eq!(sim.losses, 0);
    assert_eq!(sim.cc.window(), initial_window(MTU));
    let rate = sim.goodput(SEC, 5 * SEC);
    assert!((rate - 130_000.0).abs() < 3_000.0, "rate {rate}");
}

// BBR: the same link, the controller the connection runs by default.

fn bbr(link: Link) -> Sim {
    Sim::with(CongestionControl::Bbr, link, 0, UNBOUNDED)
}

#[test]
fn bbr_fills_the_link_and_leaves_a_deep_queue_nearly_empty() {
    // A queue of four round trips' worth, as in a home router: CUBIC fills it, BBR does not.
    let link = link(4_000_000, 20_000, 4.0);
    let mut b = bbr(link);
    b.run_until(10 * SEC);
    let mut c = Sim::new(link, 0, UNBOUNDED);
    c.run_until(10 * SEC);
    let u = b.utilisation(2 * SEC, 10 * SEC);
    assert!(u >= 0.9, "utilisation {u}");
    assert!(
        b.late_max_backlog <= link.bdp(),
        "queue {} B, BDP {} B",
        b.late_max_backlog,
        link.bdp()
    );
    assert!(
        c.late_max_backlog > 2 * link.bdp(),
        "CUBIC's queue {} B",
        c.late_max_backlog
    );
    assert_eq!(b.losses, 0, "{} losses", b.losses);
}

#[test]
fn bbr_startup_stops_at_a_shallow_queue() {
    let link = link(4_000_000, 20_000, 0.25);
    let mut b = bbr(link);
    b.run_until(10 * SEC);
    let u = b.utilisation(2 * SEC, 10 * SEC);
    assert!(u >= 0.8, "utilisation {u}");
    let sent = (b.offered / MTU) as f64;
    assert!(
        (b.losses as f64) < 0.03 * sent,
        "{} of {sent} lost",
        b.losses
    );
}

#[test]
fn bbr_keeps_its_rate_under_random_loss() {
    // Random loss before the bottleneck: a loss-based controller takes each loss for
    // congestion; BBR's rate model (corrected for the loss rate it measures) does not.
    for loss_ppm in [100_000, 300_000] {
        let link = link(4_000_000, 20_000, 1.0);
        let mut b = bbr(link);
        b.loss_ppm = loss_ppm;
        b.run_until(10 * SEC);
        let u = b.utilisation(4 * SEC, 10 * SEC);
        assert!(u >= 0.8, "{loss_ppm} ppm: utilisation {u}");
        let mut c = Sim::new(link, 0, UNBOUNDED);
        c.loss_ppm = loss_ppm;
        c.run_until(10 * SEC);
        assert!(c.utilisation(4 * SEC, 10 * SEC) < u / 2.0);
    }
}

#[test]
fn bbr_respects_max_rate() {
    let link = link(4_000_000, 20_000, 1.0);
    let max = 2_000_000;
    let mut b = Sim::with(CongestionControl::Bbr, link, 0, max);
    b.run_until(6 * SEC);
    let rate = b.goodput(SEC, 6 * SEC);
    assert!(rate <= max as f64 * 1.01, "rate {rate}");
    assert!(rate >= max as f64 * 0.9, "rate {rate}");
    assert_eq!(b.losses, 0);
}
