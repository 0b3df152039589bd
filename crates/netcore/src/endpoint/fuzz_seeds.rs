//! The seed corpora of the fuzz targets in `crates/netcore/fuzz`, made from genuine
//! datagrams: the datagrams a real handshake and session exchange (captured by the
//! [`super::fuzz_checks`] harness: handshake and teardown control messages, data packets,
//! keepalives with their stats blob), a data packet carrying a full stats blob, frame
//! payloads written by the same encoder the connections use (every frame type, since packet
//! plaintext cannot be captured off the wire), and op sequences for the `endpoint` target.
//!
//! `NETCORE_FUZZ_SEEDS=crates/netcore/fuzz/seeds cargo test -p netcore --lib write_fuzz_seeds
//! -- --ignored` writes them; the committed copy is checked by the tests below.

use super::fuzz_checks::{self, Harness, Start};
use crate::connection::channel_prefix;
use crate::wire::control::{
    ConnectionQuality, LinkInstantaneousStats, LinkLifetimeStats, UdpStats,
    STATS_ACK_REQUEST_IMMEDIATE,
};
use crate::wire::datagram::DataHeader;
use crate::wire::frames::{AckBlock, EncoderConfig, FrameEncoder, StopWaiting};
use crate::wire::reliable_header::ReliableMsgHeader;
use prost::Message;

/// Targets whose inputs are raw datagrams or op sequences (the structure-aware ones read
/// typed values and start from an empty corpus).
pub const SEEDED_TARGETS: [&str; 5] = [
    "datagram",
    "control",
    "control_differential",
    "frames",
    "endpoint",
];

/// A data packet header with a stats blob in which every field is set.
fn full_stats_packet() -> Vec<u8> {
    let stats = UdpStats {
        stats: Some(ConnectionQuality {
            instantaneous: Some(LinkInstantaneousStats {
                out_packets_per_sec_x10: Some(1234),
                out_bytes_per_sec: Some(65_536),
                in_packets_per_sec_x10: Some(987),
                in_bytes_per_sec: Some(50_000),
                ping_ms: Some(23),
                packets_dropped_pct: Some(2),
                packets_weird_sequence_pct: Some(1),
                peak_jitter_usec: Some(4000),
            }),
            lifetime: Some(LinkLifetimeStats {
                connected_seconds: Some(600),
                packets_sent: Some(100_000),
                kb_sent: Some(80_000),
                packets_recv: Some(99_000),
                kb_recv: Some(79_000),
                packets_recv_sequenced: Some(98_000),
                packets_recv_dropped: Some(900),
                packets_recv_out_of_order: Some(50),
                packets_recv_duplicate: Some(3),
                packets_recv_lurch: Some(1),
                quality_histogram_100: Some(500),
                quality_histogram_1: Some(2),
                ping_histogram_25: Some(400),
                ping_ntile_50th: Some(21),
                jitter_histogram_negligible: Some(580),
                txspeed_max: Some(1_000_000),
                ..LinkLifetimeStats::default()
            }),
        }),
        flags: Some(STATS_ACK_REQUEST_IMMEDIATE),
    }
    .encode_to_vec();
    let mut d = Vec::new();
    if DataHeader::new(0x1234_5678, 77, Some(&stats))
        .encode(&mut d)
        .is_ok()
    {
        // Sealed payload stand-in: frames plus a 16-byte tag's worth.
        d.extend_from_slice(&[0x5a; 40]);
    }
    d
}

/// Frame payloads as connections write them, covering every frame type and the size and
/// number forms.
fn frame_payloads() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let message = |channel: i32, body: &[u8], delta: u64| {
        let mut m = Vec::new();
        let h = ReliableMsgHeader {
            msg_num_delta: delta,
            size: (channel_prefix::PREFIX_LEN + body.len()) as u32,
        };
        let _ = h.encode(&mut m);
        m.extend_from_slice(&channel_prefix::encode(channel));
        m.extend_from_slice(body);
        m
    };
    // Acks with many blocks, stop-waiting, reliable messages on two lanes.
    let mut p = Vec::new();
    let mut enc = FrameEncoder::new(&mut p, 1200);
    let blocks: Vec<AckBlock> = (0..9)
        .map(|i| AckBlock {
            acks: 1 + i * 3,
            nacks: if i % 2 == 0 { 1 } else { 20 },
        })
        .collect();
    let _ = enc.ack(5000, 40, &blocks);
    let _ = enc.stop_waiting(StopWaiting { offset: 3 });
    let _ = enc.reliable(0, 1, &message(0, b"hello", 1));
    let _ = enc.reliable(1, 1, &message(1, &[7; 100], 1));
    let _ = enc.reliable(1, 200, &message(1, b"gap", 3));
    enc.finish();
    out.push(p);
    // Unreliable segments: a whole message, a split one with offsets, another lane.
    let mut p = Vec::new();
    let mut enc = FrameEncoder::with_config(
        &mut p,
        1200,
        EncoderConfig {
            msg_num_bits: 16,
            stream_pos_bits: 24,
            ack_pkt_num_bits: 32,
        },
    );
    let _ = enc.ack(70_000, 0xffff, &[AckBlock { acks: 3, nacks: 0 }]);
    let mut body = channel_prefix::encode(2).to_vec();
    body.extend_from_slice(b"unreliable");
    let _ = enc.unreliable(0, 9, 0, true, &body);
    let _ = enc.unreliable(0, 10, 0, false, &[1; 300]);
    let _ = enc.unreliable(0, 10, 300, true, &[2; 50]);
    let _ = enc.unreliable(200, 1, 0, true, &body);
    let _ = enc.stop_waiting(StopWaiting { offset: 70_000 });
    enc.finish();
    out.push(p);
    // A reliable segment that fills the packet (no size field), after a lane select.
    let mut p = Vec::new();
    let mut enc = FrameEncoder::new(&mut p, 600);
    let _ = enc.stop_waiting(StopWaiting { offset: 0 });
    let room = enc.remaining() - enc.reliable_overhead(44, 1_000_000) + 1;
    let _ = enc.reliable(44, 1_000_000, &vec![3; room]);
    enc.finish();
    out.push(p);
    out
}

/// Every seed: (target, name, bytes).
pub fn corpora() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut seeds = Vec::new();
    let h = Harness::start(Start::Established);
    for (i, c) in h.captured().iter().enumerate() {
        let kind = c.data.first().copied().unwrap_or(0);
        seeds.push((
            "datagram",
            format!("captured-{i:03}-lead{kind}"),
            c.data.clone(),
        ));
        if kind < 0x80 {
            for target in ["control", "control_differential"] {
                seeds.push((
                    target,
                    format!("captured-{i:03}-lead{kind}"),
                    c.data.clone(),
                ));
            }
        }
    }
    seeds.push(("datagram", "full-stats-blob".into(), full_stats_packet()));
    for (i, p) in frame_payloads().into_iter().enumerate() {
        seeds.push(("frames", format!("payload-{i}"), p));
    }
    for (i, (name, bytes)) in fuzz_checks::seed_inputs().into_iter().enumerate() {
        seeds.push(("endpoint", format!("{name}-{i:03}"), bytes));
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::control::ControlMessage;
    use crate::wire::frames::{Frame, FrameDecoder};
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    fn committed(target: &str) -> Vec<Vec<u8>> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(target);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.iter().map(|f| std::fs::read(f).unwrap()).collect()
    }

    #[test]
    #[ignore = "writes the seed corpora; run with NETCORE_FUZZ_SEEDS=<dir>"]
    fn write_fuzz_seeds() {
        let dir = PathBuf::from(std::env::var("NETCORE_FUZZ_SEEDS").expect("NETCORE_FUZZ_SEEDS"));
        for target in SEEDED_TARGETS {
            let d = dir.join(target);
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
        }
        for (target, name, bytes) in corpora() {
            std::fs::write(dir.join(target).join(name), bytes).unwrap();
        }
    }

    /// The committed corpora hold genuine datagrams of every kind, frames of every type, and
    /// endpoint inputs that run a whole handshake.
    #[test]
    fn the_committed_seeds_cover_every_kind() {
        let datagrams = committed("datagram");
        let leads: BTreeSet<u8> = datagrams
            .iter()
            .map(|d| if d[0] >= 0x80 { 0x80 } else { d[0] })
            .collect();
        assert_eq!(leads, BTreeSet::from([32, 33, 34, 35, 36, 37, 0x80]));
        assert!(
            datagrams.iter().any(|d| d[0] & 0x81 == 0x81),
            "a stats blob"
        );
        for target in ["control", "control_differential"] {
            let kinds: BTreeSet<u8> = committed(target)
                .iter()
                .filter_map(|d| ControlMessage::decode(d).ok())
                .map(|m| m.kind().id())
                .collect();
            assert_eq!(kinds, (32..=37).collect(), "{target}");
        }
        let mut types = BTreeSet::new();
        for p in committed("frames") {
            for f in FrameDecoder::new(&p) {
                types.insert(match f.expect("seed frames decode") {
                    Frame::Unreliable(_) => "unreliable",
                    Frame::Reliable(_) => "reliable",
                    Frame::Ack(_) => "ack",
                    Frame::StopWaiting(_) => "stop-waiting",
                    Frame::SelectLane(_) => "select-lane",
                });
            }
        }
        assert_eq!(types.len(), 5, "{types:?}");
        let endpoint = committed("endpoint");
        let handshake = endpoint.iter().any(|b| {
            let (start, ops) = fuzz_checks::from_bytes(b);
            start == Start::Dialing
                && ops
                    .iter()
                    .all(|o| matches!(o, fuzz_checks::Op::Advance { .. }))
        });
        assert!(handshake, "an input that plays a plain handshake");
        assert!(endpoint.len() >= 20);
    }

    #[test]
    fn every_seed_is_accepted_by_its_target() {
        for (target, _, bytes) in corpora() {
            match target {
                "datagram" => crate::wire::fuzz_checks::datagram(&bytes),
                "control" => crate::wire::fuzz_checks::control(&bytes),
                "control_differential" => crate::wire::fuzz_checks::control_differential(&bytes),
                "frames" => crate::wire::fuzz_checks::frames(&bytes),
                _ => {}
            }
        }
    }

    /// Every committed input, including a crash a campaign found and committed next to the
    /// seeds (`crash-<target>-<what>`), replays through its target's body: this is the
    /// regression test for each of them (see docs/RELIABILITY.md).
    #[test]
    fn every_committed_input_replays_through_its_target() {
        for target in SEEDED_TARGETS {
            let inputs = committed(target);
            assert!(!inputs.is_empty(), "{target}");
            for bytes in inputs {
                match target {
                    "datagram" => crate::wire::fuzz_checks::datagram(&bytes),
                    "control" => crate::wire::fuzz_checks::control(&bytes),
                    "control_differential" => {
                        crate::wire::fuzz_checks::control_differential(&bytes)
                    }
                    "frames" => crate::wire::fuzz_checks::frames(&bytes),
                    "endpoint" => fuzz_checks::endpoint(&bytes),
                    other => panic!("no body for {other}"),
                }
            }
        }
    }
}
