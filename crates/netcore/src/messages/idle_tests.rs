//! Checks of the idle timeout through the idle queue against the rule it replaces: at every
//! `handle_timeout`, exactly the sessions idle for the timeout with nothing unread close,
//! and `poll_timeout` never comes later than the earliest of them.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Messages;
use crate::config::Config;
use crate::endpoint::EndpointSetup;
use crate::identity::Identity;
use crate::sim::pair::Hub;
use crate::time::Timestamp;

const IDLE_MS: i64 = 1_500;
const PEERS: u8 = 6;

fn addr(k: u8) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, k], 7000))
}

/// The sessions the replaced full scan would close at `now`, and the earliest deadline it
/// would have reported.
fn brute_force(m: &Messages, now: Timestamp) -> (BTreeSet<String>, Option<Timestamp>) {
    let idle = Duration::from_millis(IDLE_MS as u64);
    let expired = m
        .sessions
        .iter()
        .filter(|(_, s)| now.saturating_since(s.last_used) >= idle && s.unread == 0)
        .map(|(p, _)| format!("{p:?}"))
        .collect();
    let earliest = m
        .sessions
        .values()
        .filter(|s| s.unread == 0)
        .map(|s| s.last_used + idle)
        .min();
    (expired, earliest)
}

fn names(m: &Messages) -> BTreeSet<String> {
    m.sessions.keys().map(|p| format!("{p:?}")).collect()
}

/// Delivers everything in flight between the hub's centre and its peers; peers accept every
/// session request they see.
fn exchange(hub: &mut Hub<Messages, Messages>) {
    for _ in 0..3 {
        hub.round();
        for (_, p) in hub.peers.iter_mut() {
            while let Some(e) = p.poll_event() {
                if let super::Event::SessionRequest(id) = e {
                    p.accept(&id);
                }
            }
        }
    }
}

fn run(seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let cfg = Config {
        messages_session_idle_timeout: IDLE_MS,
        ..Config::default()
    };
    let peers: Vec<(SocketAddr, Messages)> = (1..=PEERS)
        .map(|k| {
            (
                addr(k),
                Messages::new(Config::default(), EndpointSetup::for_tests(k)),
            )
        })
        .collect();
    let mut net = Hub::new(
        Messages::new(cfg.clone(), EndpointSetup::for_tests(200)),
        addr(0),
        peers,
    );
    let mut now = net.now;
    let mut closed_by_idle = 0;
    for step in 0..3_000 {
        let k = (rng.next_u32() % u32::from(PEERS)) as u8 + 1;
        let peer = Identity::Ip(addr(k));
        match rng.next_u32() % 10 {
            0..=2 => {
                let p = &mut net.peers[usize::from(k - 1)].1;
                let _ = p.send(now, &Identity::Ip(addr(0)), None, b"hi", 8, 0);
            }
            3 => {
                let _ = net.center.send(now, &peer, None, b"yo", 8, 0);
            }
            4..=5 => {
                net.center.receive(0, (rng.next_u32() % 3) as usize);
            }
            6 => {
                if rng.next_u32() % 4 == 0 {
                    net.center.close_session(&peer);
                }
            }
            _ => {
                now += Duration::from_millis(u64::from(rng.next_u32() % 700));
            }
        }
        net.now = now;
        exchange(&mut net);
        let hub = &mut net.center;
        while let Some(e) = hub.poll_event() {
            if let super::Event::SessionRequest(id) = e {
                hub.accept(&id);
            }
        }
        // The hub's timers run at `now` (possibly later than the reported deadline, as a
        // busy driver would).
        let (expired, earliest) = brute_force(hub, now);
        if let (Some(reported), Some(earliest)) = (hub.poll_timeout(), earliest) {
            assert!(
                reported <= earliest,
                "seed {seed} step {step}: wake-up too late"
            );
        }
        let before = names(hub);
        hub.handle_timeout(now);
        let after = names(hub);
        let closed: BTreeSet<String> = before.difference(&after).cloned().collect();
        assert_eq!(closed, expired, "seed {seed} step {step}");
        closed_by_idle += closed.len();
        assert!(
            hub.idle.len() <= 2 * hub.sessions.len() + super::idle_queue::COMPACT_SLACK,
            "seed {seed} step {step}: {} entries",
            hub.idle.len()
        );
    }
    assert!(
        closed_by_idle > 50,
        "seed {seed}: {closed_by_idle} idle closes"
    );
}

#[test]
fn idle_queue_closes_exactly_what_a_full_scan_would() {
    for seed in 0..4 {
        run(seed);
    }
}
