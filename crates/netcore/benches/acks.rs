//! Ack bookkeeping: the receiver's record of packet numbers (`snp::ack_ranges`) and the
//! sender's record of packets in flight (`snp::sent_packets`).
//!
//! Run: `cargo bench -p netcore --bench acks`.

// criterion_group! makes public functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netcore::snp::ack_ranges::{AckRanges, Elicits};
use netcore::snp::sent_packets::SentPackets;
use netcore::Timestamp;

/// Packets per iteration of the AckRanges benchmarks.
const BURST: u64 = 1_000;
/// Packets in flight in the SentPackets benchmark.
const WINDOW: u64 = 1_000;

fn ack_ranges(c: &mut Criterion) {
    let mut g = c.benchmark_group("ack_ranges_on_packet");
    g.throughput(Throughput::Elements(BURST));

    // One long range; numbers keep rising across iterations (steady state, no allocation).
    let mut rec = AckRanges::new(0);
    let mut pn = 0u64;
    g.bench_function("in_order", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                black_box(rec.on_packet(pn, Timestamp::from_micros(pn), Elicits::Promptly));
                pn += 1;
            }
        })
    });

    // Every fourth packet missing: each packet below a hole starts or extends a range, and
    // the record stays at its cap (64 ranges), dropping the oldest.
    let mut rec = AckRanges::new(0);
    let mut pn = 0u64;
    g.bench_function("every_4th_missing", |b| {
        b.iter(|| {
            for _ in 0..BURST {
                if pn % 4 != 3 {
                    black_box(rec.on_packet(pn, Timestamp::from_micros(pn), Elicits::Promptly));
                }
                pn += 1;
            }
        })
    });

    // Reordering: pairs swapped (1, 0, 3, 2, ...), so every other packet fills a hole.
    let mut rec = AckRanges::new(0);
    let mut base = 0u64;
    g.bench_function("pairs_swapped", |b| {
        b.iter(|| {
            for i in 0..BURST {
                let pn = base + (i ^ 1);
                black_box(rec.on_packet(pn, Timestamp::from_micros(pn), Elicits::Promptly));
            }
            base += BURST;
        })
    });
    g.finish();
}

/// What the connection records per packet: reliable ranges it carried, by lane.
type Payload = (u32, Range<u64>);

fn sent_packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("sent_packets");
    g.throughput(Throughput::Elements(WINDOW));
    let loss_delay = Duration::from_millis(30);

    // A window of 1,000 packets sent, then acked four at a time (the receiver acks every
    // four ack-eliciting packets), each ack a single range as in a loss-free stream.
    let mut sent: SentPackets<Payload> = SentPackets::new();
    let mut next = 1u64;
    let mut t = 0u64;
    g.bench_function("window_1000_sent_then_acked_by_4", |b| {
        b.iter(|| {
            let first = next;
            for _ in 0..WINDOW {
                t += 1;
                let pos = next * 1200;
                sent.on_sent(
                    next,
                    Timestamp::from_micros(t),
                    1_248,
                    true,
                    (0, pos..pos + 1200),
                )
                .expect("tracked");
                next += 1;
            }
            let mut acked = 0;
            let mut lo = first;
            while lo < next {
                let hi = (lo + 3).min(next - 1);
                t += 1;
                let r = sent.on_ack([lo..=hi], Timestamp::from_micros(t), loss_delay);
                acked += r.acked.len();
                lo = hi + 1;
            }
            assert_eq!(acked as u64, WINDOW);
            black_box(acked)
        })
    });

    // The same window acked by one frame whose ranges skip every tenth packet: 900 acked,
    // 100 declared lost (packet threshold), as after a burst of losses.
    let mut sent: SentPackets<Payload> = SentPackets::new();
    let mut next = 1u64;
    let mut t = 0u64;
    g.bench_function("window_1000_one_ack_10pct_lost", |b| {
        b.iter(|| {
            let first = next;
            for _ in 0..WINDOW {
                t += 1;
                let pos = next * 1200;
                sent.on_sent(
                    next,
                    Timestamp::from_micros(t),
                    1_248,
                    true,
                    (0, pos..pos + 1200),
                )
                .expect("tracked");
                next += 1;
            }
            t += 1;
            let ranges = (0..WINDOW / 10).map(|k| {
                let lo = first + k * 10 + 1;
                lo..=lo + 8
            });
            let r = sent.on_ack(ranges, Timestamp::from_micros(t), loss_delay);
            // Every missing packet has acked ones three or more above it, so nothing is left;
            // drain anyway so a change in the rules cannot make the record fill up.
            let rest = sent.drain();
            black_box((r.acked.len(), r.lost.len(), rest.len()))
        })
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = ack_ranges, sent_packets }
criterion_main!(benches);
