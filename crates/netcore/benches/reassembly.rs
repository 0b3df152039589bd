//! Stream and message reassembly: the reliable receive stream (`snp::recv_stream`), the
//! unreliable fragment reassembler (`snp::unreliable_reassembly`) and the reliable send
//! stream's bookkeeping (`snp::send_stream`).
//!
//! Run: `cargo bench -p netcore --bench reassembly`.

// criterion_group! makes public functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netcore::snp::recv_stream::{RecvStream, DEFAULT_MAX_GAPS, DEFAULT_RECV_CAPACITY};
use netcore::snp::send_stream::{SendStream, DEFAULT_SEND_LIMIT};
use netcore::snp::unreliable_reassembly::UnreliableReassembler;
use netcore::Timestamp;

/// Reliable segment size: what one full packet carries.
const SEG: usize = 1_200;
/// Segments per iteration of the receive-stream benchmarks (a 32-packet flight).
const FLIGHT: usize = 32;
/// The fragmented unreliable message.
const BIG_MESSAGE: usize = 64 * 1024;

/// A fixed permutation of `0..n` (xorshift-driven Fisher-Yates), the same every run.
fn shuffled(n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
    v
}

fn recv_stream(c: &mut Criterion) {
    let data = vec![0x3cu8; SEG];
    let mut g = c.benchmark_group("recv_stream_insert");
    g.throughput(Throughput::Bytes((SEG * FLIGHT) as u64));

    // Each iteration: a flight of 32 segments, then the reader takes everything.
    for (name, order) in [
        ("in_order_32x1200B", (0..FLIGHT).collect::<Vec<_>>()),
        ("shuffled_32x1200B", shuffled(FLIGHT)),
    ] {
        let mut s = RecvStream::new(1, DEFAULT_RECV_CAPACITY, DEFAULT_MAX_GAPS);
        g.bench_function(name, |b| {
            b.iter(|| {
                let base = s.read_pos();
                for &k in &order {
                    s.insert(base + (k * SEG) as u64, black_box(&data))
                        .expect("accepted");
                }
                let n = s.readable_len();
                assert_eq!(n, SEG * FLIGHT);
                black_box(s.read(n))
            })
        });
    }
    g.finish();
}

fn unreliable(c: &mut Criterion) {
    let message = Bytes::from(vec![0x77u8; BIG_MESSAGE]);
    let fragments: Vec<(u32, Bytes, bool)> = (0..BIG_MESSAGE)
        .step_by(SEG)
        .map(|off| {
            let end = (off + SEG).min(BIG_MESSAGE);
            (off as u32, message.slice(off..end), end == BIG_MESSAGE)
        })
        .collect();
    let mut g = c.benchmark_group("unreliable_reassembly");
    g.throughput(Throughput::Bytes(BIG_MESSAGE as u64));

    for (name, order) in [
        (
            "64KiB_from_1200B_in_order",
            (0..fragments.len()).collect::<Vec<_>>(),
        ),
        ("64KiB_from_1200B_shuffled", shuffled(fragments.len())),
    ] {
        let mut r = UnreliableReassembler::default();
        let mut msg_num = 1u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut done = None;
                for &k in &order {
                    let (off, frag, last) = &fragments[k];
                    if let Some(m) = r.insert(
                        Timestamp::from_micros(msg_num),
                        msg_num,
                        *off,
                        frag.clone(),
                        *last,
                    ) {
                        done = Some(m);
                    }
                }
                msg_num += 1;
                let m = done.expect("reassembled");
                assert_eq!(m.len(), BIG_MESSAGE);
                black_box(m)
            })
        });
    }
    g.finish();
}

fn send_stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_stream");
    // A reliable message is its header (a few bytes) then the payload, as
    // `Connection::send` pushes it; segments are taken at a packet's room and all acked.
    for (name, msg_len, count) in [
        ("push_segment_ack_32x1200B", 1_200usize, 32usize),
        ("push_segment_ack_1000x32B", 32, 1_000),
    ] {
        let payload = vec![0x11u8; msg_len];
        let head = [0x2du8, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00];
        g.throughput(Throughput::Elements(count as u64));
        let mut s = SendStream::new(1, DEFAULT_SEND_LIMIT);
        let mut ranges = Vec::with_capacity(count * 2);
        g.bench_function(name, |b| {
            b.iter(|| {
                for _ in 0..count {
                    s.push(head.to_vec());
                    s.push_slice(black_box(&payload));
                }
                ranges.clear();
                while let Some(seg) = s.next_segment(1_210) {
                    ranges.push(seg.range());
                }
                for r in ranges.drain(..) {
                    s.on_acked(r);
                }
                assert!(s.is_fully_acked());
                s.acked_pos()
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = recv_stream, unreliable, send_stream }
criterion_main!(benches);
