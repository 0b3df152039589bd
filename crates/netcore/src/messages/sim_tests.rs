//! The whole stack under the deterministic simulated network: loss, delay, jitter,
//! reordering and duplication, many seeds. Invariants: reliable messages arrive exactly once
//! and in order per (peer, channel), intact; unreliable ones arrive intact or not at all.
//!
//! `NETMESSAGES_SIM_SEEDS=N` runs N seeds instead of the default 1,000.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::sim_peer::Peer;
use crate::config::Config;
use crate::eresult::{send_flags, EResult};
use crate::identity::Identity;
use crate::sim::{LinkConfig, Network};
use crate::time::Timestamp;

/// Message `i` on a channel: its index, then a byte pattern, sized to exercise
/// single-packet, multi-packet and large messages.
fn message(channel: i32, i: u32) -> Bytes {
    let len = match i % 10 {
        0 => 3_000,
        5 => 20_000,
        _ => 40 + (i as usize * 7) % 300,
    };
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&i.to_le_bytes());
    v.extend((4..len).map(|k| (k as u32 ^ i ^ channel as u32) as u8));
    Bytes::from(v)
}

fn run_seed(seed: u64) {
    let a_addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    let mut net = Network::new(seed);
    net.set_default_link(LinkConfig {
        loss: 0.15,
        duplicate: 0.03,
        reorder: 0.05,
        reorder_delay: Duration::from_millis(8),
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(4),
        bandwidth: Some(4_000_000),
        queue_bytes: 256 * 1024,
        ..LinkConfig::default()
    });
    net.add_node(a_addr, Peer::new(1)).unwrap();
    net.add_node(b_addr, Peer::new(2)).unwrap();
    let b_id = Identity::Ip(b_addr);
    const PER_CHANNEL: u32 = 60;
    let mut next = [0u32; 3];
    // Send in rounds, as an application would, retrying when the send buffer is full.
    let deadline = Timestamp::ZERO + Duration::from_secs(300);
    while next.iter().any(|&n| n < PER_CHANNEL) {
        net.with_node::<Peer, _>(a_addr, |p, now| {
            for ch in 0..3 {
                while next[ch as usize] < PER_CHANNEL {
                    let i = next[ch as usize];
                    let r =
                        p.m.send(now, &b_id, None, &message(ch, i), send_flags::RELIABLE, ch);
                    if r == EResult::LimitExceeded {
                        break;
                    }
                    assert_eq!(r, EResult::Ok, "seed {seed}");
                    // An unreliable message alongside, on channel 3.
                    let _ = p.m.send(now, &b_id, None, &message(3, i), 0, 3);
                    next[ch as usize] += 1;
                }
            }
        });
        let until = net.now() + Duration::from_millis(50);
        net.run_until(until).unwrap();
        assert!(net.now() < deadline, "seed {seed}: sending stalled");
    }
    let done = net
        .run_until_with(deadline, |n| {
            let b = n.node::<Peer>(b_addr).unwrap();
            (0..3).all(|ch| b.count(ch) >= PER_CHANNEL as usize)
        })
        .unwrap();
    let b = net.node::<Peer>(b_addr).unwrap();
    assert!(
        done,
        "seed {seed}: not all reliable messages arrived: {:?}",
        b.got.iter().map(|(c, v)| (c, v.len())).collect::<Vec<_>>()
    );
    for ch in 0..3 {
        let got = &b.got[&ch];
        assert_eq!(
            got.len(),
            PER_CHANNEL as usize,
            "seed {seed} channel {ch}: duplicates"
        );
        for (i, r) in got.iter().enumerate() {
            assert_eq!(r.flags, send_flags::RELIABLE);
            assert_eq!(
                &r.data,
                &message(ch, i as u32),
                "seed {seed} channel {ch} message {i}"
            );
        }
    }
    // Unreliable: whatever arrived is intact.
    for data in b.got.get(&3).into_iter().flatten().map(|r| &r.data) {
        let i = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
        assert_eq!(
            data,
            &message(3, i),
            "seed {seed}: corrupt unreliable message"
        );
    }
}

#[test]
fn reliable_exactly_once_in_order_under_loss_reorder_and_duplication() {
    let seeds: u64 = std::env::var("NETMESSAGES_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for seed in 0..seeds {
        run_seed(seed);
    }
}

/// One bulk reliable transfer over a fast, clean link, in virtual time: the protocol alone
/// (acks, congestion window, pacing; no syscalls, no JS) must fill the configured send rate.
#[test]
fn bulk_transfer_fills_the_configured_rate_on_a_clean_link() {
    let a_addr: SocketAddr = "10.0.0.1:1000".parse().unwrap();
    let b_addr: SocketAddr = "10.0.0.2:2000".parse().unwrap();
    let mut net = Network::new(1);
    net.set_default_link(LinkConfig {
        delay: Duration::from_micros(50),
        bandwidth: Some(1_000_000_000),
        queue_bytes: 4 << 20,
        ..LinkConfig::default()
    });
    let fast = Config {
        send_rate_min: 100_000_000,
        send_rate_max: 100_000_000,
        ..Config::default()
    };
    let mut pa = Peer::new(1);
    pa.m.set_config(Timestamp::ZERO, fast.clone());
    let mut pb = Peer::new(2);
    pb.m.set_config(Timestamp::ZERO, fast);
    net.add_node(a_addr, pa).unwrap();
    net.add_node(b_addr, pb).unwrap();
    let b_id = Identity::Ip(b_addr);
    let msg = Bytes::from(vec![7u8; 1200]);
    let secs = 0.5;
    let end = Timestamp::ZERO + Duration::from_secs_f64(secs);
    let mut sent = 0u64;
    while net.now() < end {
        net.with_node::<Peer, _>(a_addr, |p, now| {
            while p.m.send(now, &b_id, None, &msg, send_flags::RELIABLE, 0) == EResult::Ok {
                sent += 1;
            }
        });
        let until = net.now() + Duration::from_micros(200);
        net.run_until(until).unwrap();
    }
    let b = net.node::<Peer>(b_addr).unwrap();
    let got = b.got.get(&0).map_or(0, Vec::len) as f64;
    let info = net
        .node::<Peer>(a_addr)
        .unwrap()
        .m
        .session_info(&b_id)
        .unwrap();
    let goodput = got * 1200.0 / secs;
    eprintln!(
        "sent {sent}, delivered {got}: {:.1} MB/s goodput; rtt {:?}, rate {}, lost {}",
        goodput / 1e6,
        info.rtt,
        info.send_rate,
        info.packets_lost
    );
    // Headers and acks take a few percent, and the first round trips are slow start.
    assert!(
        goodput >= 85e6,
        "goodput {:.1} MB/s at a 100 MB/s rate",
        goodput / 1e6
    );
    assert_eq!(info.packets_lost, 0);
}
