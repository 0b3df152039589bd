//! Encode and decode of SNP frames and the data packet header (`wire::frames`,
//! `wire::datagram`): what building and parsing one data packet's plaintext costs.
//!
//! Run: `cargo bench -p netcore --bench codec`.

// criterion_group! makes public functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netcore::wire::datagram::{DataHeader, MAX_PLAINTEXT_SEND};
use netcore::wire::frames::{AckBlock, Frame, FrameDecoder, FrameEncoder, StopWaiting};

/// Small unreliable messages per packet: 32 B of payload plus the 5-byte channel prefix, as
/// many as fit in one packet.
const SMALL: usize = 37;

fn encode_small_unreliable(out: &mut Vec<u8>, data: &[u8]) -> usize {
    out.clear();
    let mut enc = FrameEncoder::new(out, MAX_PLAINTEXT_SEND);
    let mut msg = 1_000_000u64;
    while enc.remaining() > enc.unreliable_overhead(0, msg, 0) + data.len() {
        enc.unreliable(0, msg, 0, true, data).expect("fits");
        msg += 1;
    }
    enc.finish()
}

fn encode_one_reliable(out: &mut Vec<u8>, data: &[u8]) -> usize {
    out.clear();
    let mut enc = FrameEncoder::new(out, MAX_PLAINTEXT_SEND);
    let _ = enc.stop_waiting(StopWaiting { offset: 3 });
    let room = enc.remaining() - enc.reliable_overhead(0, 1_234_567);
    enc.reliable(0, 1_234_567, &data[..room.min(data.len())])
        .expect("fits");
    enc.finish()
}

/// Blocks describing 64 runs of received packets separated by single losses (the most an ack
/// we build carries), newest first.
fn ack_blocks(n: usize) -> Vec<AckBlock> {
    (0..n)
        .map(|i| AckBlock {
            acks: 3 + (i as u64 % 20),
            nacks: 1 + (i as u64 % 3),
        })
        .collect()
}

fn decode_all(payload: &[u8]) -> usize {
    let mut n = 0;
    for f in FrameDecoder::new(payload) {
        match f.expect("valid") {
            Frame::Unreliable(s) => n += s.data.len(),
            Frame::Reliable(s) => n += s.data.len(),
            Frame::Ack(a) => n += a.blocks().count(),
            Frame::StopWaiting(_) | Frame::SelectLane(_) => n += 1,
        }
    }
    n
}

fn frames(c: &mut Criterion) {
    let small = [0x5au8; SMALL];
    let large = vec![0xa5u8; MAX_PLAINTEXT_SEND];
    let mut out = Vec::with_capacity(2048);

    let segments = {
        let len = encode_small_unreliable(&mut out, &small);
        let segs = FrameDecoder::new(&out[..len]).count();
        assert!(segs > 20, "{segs} segments");
        segs
    };

    let mut g = c.benchmark_group("frames");
    g.throughput(Throughput::Elements(segments as u64));
    g.bench_function(format!("encode_{segments}x{SMALL}B_unreliable"), |b| {
        b.iter(|| encode_small_unreliable(&mut out, black_box(&small)))
    });
    let mut packet = Vec::new();
    encode_small_unreliable(&mut packet, &small);
    g.bench_function(format!("decode_{segments}x{SMALL}B_unreliable"), |b| {
        b.iter(|| decode_all(black_box(&packet)))
    });

    g.throughput(Throughput::Bytes(MAX_PLAINTEXT_SEND as u64));
    g.bench_function("encode_1_reliable_segment_full_packet", |b| {
        b.iter(|| encode_one_reliable(&mut out, black_box(&large)))
    });
    let mut packet = Vec::new();
    encode_one_reliable(&mut packet, &large);
    g.bench_function("decode_1_reliable_segment_full_packet", |b| {
        b.iter(|| decode_all(black_box(&packet)))
    });

    let blocks = ack_blocks(64);
    g.throughput(Throughput::Elements(blocks.len() as u64));
    g.bench_function("encode_ack_64_blocks", |b| {
        b.iter(|| {
            out.clear();
            let mut enc = FrameEncoder::new(&mut out, MAX_PLAINTEXT_SEND);
            enc.ack(black_box(1_000_000), 12, black_box(&blocks))
                .expect("fits");
            enc.finish()
        })
    });
    let mut packet = Vec::new();
    {
        let mut enc = FrameEncoder::new(&mut packet, MAX_PLAINTEXT_SEND);
        enc.ack(1_000_000, 12, &blocks).expect("fits");
        enc.finish();
    }
    g.bench_function("decode_ack_64_blocks_to_ranges", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for f in FrameDecoder::new(black_box(&packet)) {
                if let Ok(Frame::Ack(a)) = f {
                    let latest = a.latest_pkt.resolve(1_000_001).expect("near");
                    for r in a.ranges(latest).flatten() {
                        sum = sum.wrapping_add(r.acked.end);
                    }
                }
            }
            sum
        })
    });
    g.finish();
}

fn header(c: &mut Criterion) {
    let mut g = c.benchmark_group("data_header");
    g.throughput(Throughput::Elements(1));
    let mut out = Vec::with_capacity(64);
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            DataHeader::new(black_box(0xdead_beef), black_box(0x1234), None)
                .encode(&mut out)
                .expect("encodes");
            out.len()
        })
    });
    let mut datagram = Vec::new();
    DataHeader::new(0xdead_beef, 0x1234, None)
        .encode(&mut datagram)
        .expect("encodes");
    datagram.extend_from_slice(&[0u8; 1248]);
    g.bench_function("decode", |b| {
        b.iter(|| {
            let (h, rest) = DataHeader::decode(black_box(&datagram)).expect("decodes");
            (h.to_conn_id, rest.len())
        })
    });
    g.finish();
}

/// Short runs by default (the machine is small and shared); `--warm-up-time` and
/// `--measurement-time` on the command line still override these.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = frames, header }
criterion_main!(benches);
