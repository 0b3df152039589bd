//! Tests of the simulated network, driven by the toy nodes of `toys.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::sim::toys::{Alarm, Pinger, Received, Sink, StuckTimer};

const A: SocketAddr = addr(1);
const B: SocketAddr = addr(2);
const C: SocketAddr = addr(3);
const D: SocketAddr = addr(4);

const fn addr(host: u8) -> SocketAddr {
    SocketAddr::new(
        std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, host)),
        9000,
    )
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn at_ms(v: u64) -> Timestamp {
    Timestamp::ZERO + ms(v)
}

fn received(net: &Network, at: SocketAddr) -> Vec<Received> {
    net.node::<Sink>(at)
        .map(|s| s.received.clone())
        .unwrap_or_default()
}

fn seqs(net: &Network, at: SocketAddr) -> Vec<u32> {
    net.node::<Sink>(at).map(Sink::seqs).unwrap_or_default()
}

fn sent_at(net: &Network, at: SocketAddr) -> Vec<Timestamp> {
    net.node::<Pinger>(at)
        .map(|p| p.sent_at.clone())
        .unwrap_or_default()
}

/// Pinger at A sending to a sink at B over `cfg` in both directions.
fn pair(seed: u64, cfg: LinkConfig, pinger: Pinger, echo: bool) -> Result<Network, SimError> {
    let mut net = Network::new(seed);
    net.set_default_link(cfg);
    net.add_node(B, if echo { Sink::echo() } else { Sink::new() })?;
    net.add_node(A, pinger)?;
    Ok(net)
}

fn rough_link() -> LinkConfig {
    LinkConfig {
        loss: 0.1,
        duplicate: 0.05,
        duplicate_delay_max: ms(5),
        reorder: 0.1,
        reorder_delay: ms(15),
        delay: ms(20),
        jitter: ms(8),
        bandwidth: Some(200_000),
        queue_bytes: 20_000,
        ..LinkConfig::default()
    }
}

fn rough_run(seed: u64) -> Result<(Vec<TraceEvent>, Vec<Received>, LinkStats), SimError> {
    let mut net = pair(seed, rough_link(), Pinger::new(B, 500, ms(1), 300), true)?;
    net.enable_trace(100_000);
    net.run_until_idle(100_000)?;
    assert_eq!(net.trace_overflow(), 0);
    Ok((net.trace().to_vec(), received(&net, B), net.total_stats()))
}

#[test]
fn same_seed_same_run_other_seed_other_run() -> Result<(), SimError> {
    let (t1, r1, s1) = rough_run(7)?;
    let (t2, r2, s2) = rough_run(7)?;
    let (t3, r3, _) = rough_run(8)?;
    assert!(t1.len() > 2000, "trace too small to mean anything");
    assert_eq!(t1, t2);
    assert_eq!(r1, r2);
    assert_eq!(s1, s2);
    assert_ne!(t1, t3);
    assert_ne!(r1, r3);
    Ok(())
}

#[test]
fn loss_rate_matches_configuration() -> Result<(), SimError> {
    let cfg = LinkConfig {
        loss: 0.25,
        ..LinkConfig::default()
    };
    let n = 10_000;
    let mut net = pair(
        11,
        cfg,
        Pinger::new(B, n, Duration::from_micros(100), 8),
        false,
    )?;
    net.run_until_idle(100_000)?;
    let s = net.link_stats(A, B);
    assert_eq!(s.sent, u64::from(n));
    assert_eq!(s.delivered + s.lost, s.sent);
    assert_eq!(received(&net, B).len() as u64, s.delivered);
    let rate = s.lost as f64 / s.sent as f64;
    assert!((0.23..0.27).contains(&rate), "loss rate {rate}");
    Ok(())
}

#[test]
fn delay_and_jitter_bound_arrival_times() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(20),
        jitter: ms(5),
        ..LinkConfig::default()
    };
    let mut net = pair(3, cfg, Pinger::new(B, 2000, ms(1), 64), false)?;
    net.run_until_idle(100_000)?;
    let sent = sent_at(&net, A);
    let got = received(&net, B);
    assert_eq!(got.len(), 2000);
    let mut transit = Vec::new();
    for (i, r) in got.iter().enumerate() {
        let seq = r.seq.unwrap_or(u32::MAX) as usize;
        assert_eq!(seq, i, "jitter alone must not reorder");
        let t = r.at.saturating_since(sent[seq]);
        assert!(t >= ms(20) && t <= ms(25), "transit {t:?}");
        transit.push(t);
    }
    let spread = transit.iter().max().copied().unwrap_or_default()
        - transit.iter().min().copied().unwrap_or_default();
    assert!(spread > ms(4), "jitter not applied: spread {spread:?}");
    Ok(())
}

#[test]
fn reorder_really_reorders() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(5),
        reorder: 0.1,
        reorder_delay: ms(10),
        ..LinkConfig::default()
    };
    let mut net = pair(5, cfg, Pinger::new(B, 2000, ms(1), 16), false)?;
    net.run_until_idle(100_000)?;
    let got = seqs(&net, B);
    assert_eq!(got.len(), 2000);
    let mut late = 0u64;
    let mut highest = None;
    for s in &got {
        if highest.is_some_and(|h| *s < h) {
            late += 1;
        }
        highest = highest.max(Some(*s));
    }
    let st = net.link_stats(A, B);
    // A reordered datagram is overtaken by the next ones (10 ms extra vs 1 ms spacing).
    assert_eq!(late, st.reordered);
    assert!((150..250).contains(&late), "reordered {late} of 2000");
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..2000).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn duplication_duplicates() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(5),
        duplicate: 0.1,
        duplicate_delay_max: ms(2),
        ..LinkConfig::default()
    };
    let mut net = pair(9, cfg, Pinger::new(B, 2000, ms(1), 16), false)?;
    net.run_until_idle(100_000)?;
    let mut counts: BTreeMap<u32, u64> = BTreeMap::new();
    for s in seqs(&net, B) {
        *counts.entry(s).or_default() += 1;
    }
    assert_eq!(counts.len(), 2000, "every datagram arrives at least once");
    assert!(counts.values().all(|c| *c <= 2));
    let twice = counts.values().filter(|c| **c == 2).count() as u64;
    let st = net.link_stats(A, B);
    assert_eq!(twice, st.duplicated);
    assert_eq!(st.delivered, 2000 + twice);
    assert!((150..250).contains(&twice), "duplicated {twice} of 2000");
    Ok(())
}

#[test]
fn bandwidth_caps_throughput_and_queue_bounds_delay() -> Result<(), SimError> {
    let rate = 100_000u64;
    let queue = 10_000usize;
    let cfg = LinkConfig {
        delay: ms(10),
        bandwidth: Some(rate),
        queue_bytes: queue,
        ..LinkConfig::default()
    };
    // 1000-byte datagrams every ms: ten times what the link carries, for one second.
    let mut net = pair(1, cfg, Pinger::new(B, 1000, ms(1), 1000), false)?;
    net.run_until_idle(100_000)?;
    let st = net.link_stats(A, B);
    assert!(
        st.dropped_queue > 800,
        "queue dropped only {}",
        st.dropped_queue
    );
    assert_eq!(st.delivered + st.dropped_queue, st.sent);
    let got = received(&net, B);
    let sent = sent_at(&net, A);
    let first = got.first().map(|r| r.at).unwrap_or_default();
    let last = got.last().map(|r| r.at).unwrap_or_default();
    let span = last.saturating_since(first).as_secs_f64();
    // Back-to-back arrivals after the first: exactly the link rate.
    let bytes_after_first = (st.bytes_delivered - 1000) as f64;
    let measured = bytes_after_first / span;
    assert!(
        (measured - rate as f64).abs() < rate as f64 * 0.02,
        "throughput {measured} B/s"
    );
    // Nothing waits longer than a full queue plus its own serialisation.
    let worst = ms(10) + Duration::from_micros((queue as u64 + 1000) * 1_000_000 / rate);
    for r in &got {
        let seq = r.seq.unwrap_or(u32::MAX) as usize;
        assert!(r.at.saturating_since(sent[seq]) <= worst);
    }
    Ok(())
}

#[test]
fn mtu_drops_oversized() -> Result<(), SimError> {
    let mut net = Network::new(2);
    net.set_default_link(LinkConfig {
        mtu: 1200,
        ..LinkConfig::default()
    });
    net.add_node(B, Sink::new())?;
    net.add_node(A, Pinger::new(B, 50, ms(1), 1200))?;
    net.add_node(C, Pinger::new(B, 50, ms(1), 1201))?;
    net.run_until_idle(10_000)?;
    let ab = net.link_stats(A, B);
    let cb = net.link_stats(C, B);
    assert_eq!((ab.delivered, ab.dropped_mtu), (50, 0));
    assert_eq!((cb.delivered, cb.dropped_mtu), (0, 50));
    assert!(received(&net, B)
        .iter()
        .all(|r| r.from == A && r.len == 1200));
    Ok(())
}

#[test]
fn cut_link_drops_everything_until_restored() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(5),
        ..LinkConfig::default()
    };
    let mut net = pair(4, cfg, Pinger::new(B, 300, ms(1), 16), true)?;
    net.run_until(at_ms(100))?;
    net.cut_link(A, B);
    net.run_until(at_ms(200))?;
    net.restore_link(A, B);
    net.run_until_idle(10_000)?;
    let got = received(&net, B);
    assert!(got.iter().all(|r| r.at <= at_ms(100) || r.at > at_ms(200)));
    let st = net.link_stats(A, B);
    // Sent in [0, 100) ms (minus those still in flight at the cut) or at/after 200 ms.
    assert_eq!(st.delivered, 95 + 100);
    assert_eq!(st.dropped_down, 105);
    assert_eq!(st.delivered + st.dropped_down, st.sent);
    // The reverse direction (echoes) was never cut.
    assert_eq!(net.link_stats(B, A).dropped_down, 0);
    assert_eq!(
        net.node::<Pinger>(A).map(|p| p.echoes.len()),
        Some(got.len())
    );
    Ok(())
}

#[test]
fn cut_both_and_isolate_block_both_directions() -> Result<(), SimError> {
    for isolate in [false, true] {
        let mut net = pair(
            4,
            LinkConfig::default(),
            Pinger::new(B, 10, ms(1), 16),
            true,
        )?;
        if isolate {
            net.isolate(B);
        } else {
            net.cut_both(A, B);
        }
        net.run_until_idle(1000)?;
        assert_eq!(net.total_stats().delivered, 0);
        assert_eq!(net.link_stats(A, B).dropped_down, 10);
        // B can't reach A either.
        net.with_node::<Sink, _>(B, |s, _| s.outbox.push((A, vec![0; 4])));
        assert_eq!(net.link_stats(B, A).dropped_down, 1);
        if isolate {
            net.reconnect(B);
        } else {
            net.restore_both(A, B);
        }
        net.with_node::<Sink, _>(B, |s, _| s.outbox.push((A, vec![0; 4])));
        net.run_until_idle(1000)?;
        assert_eq!(net.link_stats(B, A).delivered, 1);
    }
    Ok(())
}

#[test]
fn removed_node_vanishes_and_comes_back() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(5),
        ..LinkConfig::default()
    };
    let mut net = pair(6, cfg, Pinger::new(B, 300, ms(1), 16), false)?;
    net.run_until(at_ms(100))?;
    let sink = net.remove_node(B);
    assert!(sink.is_some());
    assert!(net.node::<Sink>(B).is_none());
    net.run_until(at_ms(200))?;
    let Some(sink) = sink else { return Ok(()) };
    net.add_boxed_node(B, sink)?;
    assert_eq!(net.add_node(B, Sink::new()), Err(SimError::AddrInUse(B)));
    // The sender vanishes too; its timer must not fire while it is gone.
    net.run_until(at_ms(250))?;
    let pinger = net.remove_node(A);
    let fired_before = sent_at(&net, A).len();
    assert_eq!(fired_before, 0, "removed node still visible");
    net.run_until(at_ms(400))?;
    if let Some(p) = pinger {
        net.add_boxed_node(A, p)?;
    }
    net.run_until_idle(10_000)?;
    let st = net.link_stats(A, B);
    assert_eq!(st.undeliverable, 100);
    assert_eq!(st.delivered + st.undeliverable, st.sent);
    assert_eq!(st.sent, 300, "the sender resumes after coming back");
    let sent = sent_at(&net, A);
    assert!(sent.iter().all(|t| *t <= at_ms(250) || *t >= at_ms(400)));
    assert!(
        sent.iter().any(|t| *t == at_ms(400)),
        "resumes on its overdue timer"
    );
    let got = received(&net, B);
    assert!(got.iter().all(|r| r.at <= at_ms(100) || r.at > at_ms(200)));
    Ok(())
}

#[test]
fn timers_fire_at_requested_virtual_time() -> Result<(), SimError> {
    let wanted = [
        at_ms(5),
        at_ms(17),
        at_ms(17) + Duration::from_micros(1),
        at_ms(1000),
        at_ms(1000),
    ];
    let mut net = Network::new(0);
    net.add_node(A, Alarm::new(&wanted))?;
    net.run_until(at_ms(500))?;
    assert_eq!(net.now(), at_ms(500));
    assert_eq!(
        net.node::<Alarm>(A).map(|a| a.fired.clone()),
        Some(wanted[..3].to_vec())
    );
    net.run_until_idle(100)?;
    assert_eq!(
        net.node::<Alarm>(A).map(|a| a.fired.clone()),
        Some(wanted.to_vec())
    );
    let stats = net.node_stats(A).unwrap_or_default();
    assert_eq!(stats.timers_fired, 5);
    assert_eq!(stats.immediate_rearms, 1, "the repeated 1000 ms deadline");
    assert_eq!(net.pending_events(), 0);
    Ok(())
}

#[test]
fn stuck_timer_is_reported_not_spun() {
    let mut net = Network::new(0);
    assert_eq!(net.add_node(A, StuckTimer::default()), Ok(()));
    let err = Err(SimError::TimerLivelock {
        node: A,
        at: Timestamp::ZERO,
    });
    assert_eq!(net.run_until(at_ms(1000)), err);
    assert_eq!(net.run_until(at_ms(1000)), err, "the error persists");
    assert_eq!(
        net.node::<StuckTimer>(A).map(|n| n.handled),
        Some(u64::from(MAX_IMMEDIATE_TIMEOUTS))
    );
    assert_eq!(net.now(), Timestamp::ZERO);
}

#[test]
fn zero_delay_ping_pong_is_reported_as_stall() {
    let mut net = Network::new(0);
    net.set_limits(NetworkLimits {
        max_events_per_instant: 10_000,
        ..NetworkLimits::default()
    });
    assert_eq!(net.add_node(A, Sink::echo()), Ok(()));
    assert_eq!(net.add_node(B, Sink::echo()), Ok(()));
    net.with_node::<Sink, _>(A, |s, _| s.outbox.push((B, vec![1, 2, 3, 4])));
    let r = net.run_until(at_ms(1));
    assert!(
        matches!(r, Err(SimError::Stalled { events: 10_000, .. })),
        "{r:?}"
    );
}

#[test]
fn global_cap_bounds_the_event_queue() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(1000),
        ..LinkConfig::default()
    };
    let mut net = pair(0, cfg, Pinger::new(B, 1000, ms(1), 100).burst(1000), false)?;
    net.set_limits(NetworkLimits {
        max_in_flight: 100,
        ..NetworkLimits::default()
    });
    let mut most = 0;
    while net.step()? {
        most = most.max(net.pending_events());
    }
    let st = net.link_stats(A, B);
    assert_eq!((st.delivered, st.dropped_cap), (100, 900));
    // Deliveries plus at most one timer per node.
    assert!(most <= 100 + 2, "queue grew to {most}");
    assert_eq!(net.in_flight(), 0);
    Ok(())
}

#[test]
fn byte_cap_bounds_bytes_in_flight() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(10),
        ..LinkConfig::default()
    };
    let mut net = pair(0, cfg, Pinger::new(B, 100, ms(1), 1000).burst(100), false)?;
    net.set_limits(NetworkLimits {
        max_in_flight_bytes: 10_500,
        ..NetworkLimits::default()
    });
    net.run_until_idle(1000)?;
    let st = net.link_stats(A, B);
    assert_eq!((st.delivered, st.dropped_cap), (10, 90));
    Ok(())
}

#[test]
fn link_table_is_bounded() -> Result<(), SimError> {
    let mut net = Network::new(0);
    net.set_limits(NetworkLimits {
        max_links: 2,
        ..NetworkLimits::default()
    });
    net.add_node(A, Sink::new())?;
    net.with_node::<Sink, _>(A, |s, _| {
        for host in 10..20 {
            s.outbox.push((addr(host), vec![0; 4]));
        }
        s.outbox.push((addr(10), vec![0; 4]));
    });
    assert_eq!(net.dropped_no_link(), 8);
    assert_eq!(
        net.link_stats(A, addr(10)).sent,
        2,
        "existing links keep working"
    );
    assert_eq!(net.link_stats(A, addr(12)).sent, 0);
    Ok(())
}

#[test]
fn poll_transmit_is_drained_in_rounds_up_to_the_bound() -> Result<(), SimError> {
    let pinger = Pinger::new(B, 10, ms(1), 16).burst(10).per_poll(3);
    let mut net = pair(0, LinkConfig::default(), pinger, false)?;
    net.run_until_idle(1000)?;
    let got = received(&net, B);
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|r| r.at == Timestamp::ZERO));

    let pinger = Pinger::new(B, 100, ms(1), 16).burst(100).per_poll(1);
    let mut net = pair(0, LinkConfig::default(), pinger, false)?;
    net.run_until_idle(1000)?;
    assert_eq!(received(&net, B).len(), MAX_POLLS_PER_WAKE);
    assert_eq!(net.node_stats(A).map(|s| s.poll_cap_hits), Some(1));
    Ok(())
}

#[test]
fn run_until_with_stops_on_condition_or_deadline() -> Result<(), SimError> {
    let cfg = LinkConfig {
        delay: ms(3),
        ..LinkConfig::default()
    };
    let mut net = pair(0, cfg, Pinger::new(B, 100, ms(10), 16), false)?;
    let hit = net.run_until_with(at_ms(10_000), |n| received(n, B).len() >= 10)?;
    assert!(hit);
    assert_eq!(net.now(), at_ms(93));
    let hit = net.run_until_with(at_ms(500), |n| received(n, B).len() >= 1000)?;
    assert!(!hit);
    assert_eq!(net.now(), at_ms(500));
    Ok(())
}

#[test]
fn links_draw_independent_randomness() -> Result<(), SimError> {
    let lossy = LinkConfig {
        loss: 0.3,
        jitter: ms(4),
        ..LinkConfig::default()
    };
    let mut alone = pair(21, lossy.clone(), Pinger::new(B, 500, ms(1), 16), false)?;
    alone.run_until_idle(10_000)?;

    let mut busy = pair(21, lossy, Pinger::new(B, 500, ms(1), 16), false)?;
    busy.set_link(
        C,
        D,
        LinkConfig {
            loss: 0.5,
            duplicate: 0.5,
            ..LinkConfig::default()
        },
    );
    busy.add_node(D, Sink::new())?;
    busy.add_node(C, Pinger::new(D, 500, Duration::from_micros(700), 16))?;
    busy.run_until_idle(10_000)?;
    assert!(busy.link_stats(C, D).delivered > 0);
    assert_eq!(received(&alone, B), received(&busy, B));
    Ok(())
}

#[test]
fn typed_access_rejects_wrong_type_and_missing_node() -> Result<(), SimError> {
    let mut net = Network::new(0);
    net.add_node(A, Sink::new())?;
    assert!(net.node::<Sink>(A).is_some());
    assert!(net.node::<Pinger>(A).is_none());
    assert!(net.node::<Sink>(B).is_none());
    assert_eq!(net.with_node::<Pinger, _>(A, |_, _| ()), None);
    assert_eq!(net.with_node::<Sink, _>(B, |_, _| ()), None);
    assert_eq!(
        net.with_node::<Sink, _>(A, |_, now| now),
        Some(Timestamp::ZERO)
    );
    Ok(())
}

#[test]
fn run_until_idle_reports_step_limit() -> Result<(), SimError> {
    let mut net = pair(
        0,
        LinkConfig::default(),
        Pinger::new(B, 100, ms(1), 16),
        false,
    )?;
    assert_eq!(
        net.run_until_idle(10),
        Err(SimError::StepLimit { steps: 10 })
    );
    assert!(net.run_until_idle(10_000)? > 0);
    assert_eq!(net.run_until_idle(10)?, 0);
    Ok(())
}

fn arb_link() -> impl Strategy<Value = LinkConfig> {
    (
        (0.0..=1.0f64, 0.0..=1.0f64, 0.0..=1.0f64),
        (0u64..20_000, 0u64..20_000, 0u64..20_000, 0u64..20_000),
        (
            prop::option::of(1_000u64..2_000_000),
            0usize..20_000,
            50usize..1500,
        ),
    )
        .prop_map(
            |((loss, duplicate, reorder), (dd, rd, d, j), (bw, q, mtu))| LinkConfig {
                loss,
                burst_loss: 0.0,
                burst_len: 1,
                duplicate,
                duplicate_delay_max: Duration::from_micros(dd),
                reorder,
                reorder_delay: Duration::from_micros(rd),
                delay: Duration::from_micros(d),
                jitter: Duration::from_micros(j),
                bandwidth: bw,
                queue_bytes: q,
                mtu,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every datagram and every copy ends up delivered or dropped for exactly one reason, and
    /// the receiver saw exactly the delivered ones.
    #[test]
    fn every_datagram_is_accounted_for(
        seed in any::<u64>(),
        cfg in arb_link(),
        n in 0u32..300,
        size in 4usize..1600,
        interval_us in 1u64..2000,
        cap in 1usize..400,
    ) {
        let run = || -> Result<Network, SimError> {
            let pinger = Pinger::new(B, n, Duration::from_micros(interval_us), size);
            let mut net = pair(seed, cfg.clone(), pinger, true)?;
            net.set_limits(NetworkLimits { max_in_flight: cap, ..NetworkLimits::default() });
            net.run_until_idle(100_000)?;
            Ok(net)
        };
        let net = run().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let t = net.total_stats();
        prop_assert_eq!(t.sent + t.duplicated, t.delivered + t.dropped_total());
        prop_assert_eq!(net.in_flight(), 0);
        prop_assert_eq!(net.link_stats(A, B).sent, u64::from(n));
        prop_assert_eq!(received(&net, B).len() as u64, net.link_stats(A, B).delivered);
        let echoes = net.node::<Pinger>(A).map(|p| p.echoes.len()).unwrap_or(0) as u64;
        prop_assert_eq!(echoes, net.link_stats(B, A).delivered);
        prop_assert!(t.delivered <= t.sent * 2);
    }
}
