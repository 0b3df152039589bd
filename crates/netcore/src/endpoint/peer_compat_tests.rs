//! What a stock GameNetworkingSockets peer expects of us on the wire, checked between two of
//! our endpoints on the shared harness (the interop suite checks the same against GNS itself,
//! `__test__/interop/`): keepalive flags.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use prost::Message as _;

use super::*;
use crate::sim::pair::{Datagram, Direction, EndpointNode, Pair};
use crate::wire::control::{UdpStats, STATS_ACK_REQUEST_E2E, STATS_ACK_REQUEST_IMMEDIATE};

fn endpoint_with(seed: u8, cfg: ConnectionConfig) -> Endpoint {
    Endpoint::new(cfg, EndpointSetup::for_tests(seed))
}

fn endpoint(seed: u8) -> Endpoint {
    endpoint_with(seed, ConnectionConfig::default())
}

/// A tap that records every flight, per direction, and lets a test drop what it chooses.
#[derive(Default)]
struct Recorder {
    to_b: Vec<Datagram>,
    to_a: Vec<Datagram>,
    drop_to_a: bool,
    drop_to_b: bool,
}

fn record(p: &mut Pair<EndpointNode, EndpointNode>) -> Rc<RefCell<Recorder>> {
    let rec = Rc::new(RefCell::new(Recorder::default()));
    let r = rec.clone();
    p.tap = Some(Box::new(move |dir, flight: &mut Vec<Datagram>| {
        let mut r = r.borrow_mut();
        match dir {
            Direction::AtoB => {
                r.to_b.extend(flight.iter().cloned());
                if r.drop_to_b {
                    flight.clear();
                }
            }
            Direction::BtoA => {
                r.to_a.extend(flight.iter().cloned());
                if r.drop_to_a {
                    flight.clear();
                }
            }
        }
    }));
    rec
}

/// Runs the pair for `d` of virtual time, 10 ms at a time.
fn run_for(p: &mut Pair<EndpointNode, EndpointNode>, d: Duration) {
    let end = p.now + d;
    while p.now < end {
        p.advance(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------- bug 1: keepalive flags

#[test]
fn keepalives_ask_for_an_immediate_end_to_end_ack() {
    let (mut p, _, _) = Pair::connected(endpoint(1), endpoint(2));
    let rec = record(&mut p);
    // Quiet for longer than the keepalive interval (a third of timeoutConnected).
    run_for(&mut p, Duration::from_secs(5));
    let blobs: Vec<UdpStats> = rec
        .borrow()
        .to_b
        .iter()
        .chain(rec.borrow().to_a.iter())
        .filter_map(|(_, d)| DataHeader::decode(d).ok()?.0.stats.map(<[u8]>::to_vec))
        .map(|b| UdpStats::decode(&b[..]).expect("a stats blob parses"))
        .collect();
    assert!(!blobs.is_empty(), "a quiet connection sends keepalives");
    for b in &blobs {
        // The reference replies at once only to E2E and IMMEDIATE together.
        assert_eq!(
            b.flags,
            Some(STATS_ACK_REQUEST_E2E | STATS_ACK_REQUEST_IMMEDIATE),
            "{b:?}"
        );
    }
}
