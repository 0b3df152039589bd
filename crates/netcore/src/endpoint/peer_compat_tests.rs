//! What a stock GameNetworkingSockets peer expects of us on the wire, checked between two of
//! our endpoints on the shared harness (the interop suite checks the same against GNS itself,
//! `__test__/interop/`): keepalive flags and the clear-text
//! time-since-previous-packet field.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use prost::Message as _;

use super::*;
use crate::sim::pair::{Datagram, Direction, EndpointNode, Pair};
use crate::wire::control::{UdpStats, STATS_ACK_REQUEST_E2E, STATS_ACK_REQUEST_IMMEDIATE};
use crate::wire::datagram::{DATA_HEADER_LEN, FLAG_TIME_SINCE_PREV};

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

// ---------------------------------------------------- bug 2: time since the previous packet

/// A data packet with the reference's u16 time-since-previous-packet field put in after its
/// stats blob (flag 0x02), as GNS sends with `SendTimeSincePreviousPacket = 1`.
fn with_time_since_prev(d: &[u8]) -> Vec<u8> {
    let Ok((h, sealed)) = DataHeader::decode(d) else {
        return d.to_vec();
    };
    let head = d.len() - sealed.len();
    assert!(head >= DATA_HEADER_LEN);
    let mut out = d[..head].to_vec();
    out[0] |= FLAG_TIME_SINCE_PREV;
    out.extend_from_slice(&0x0140u16.to_le_bytes());
    out.extend_from_slice(sealed);
    assert!(h.stats.is_none() || out.len() == d.len() + 2);
    out
}

#[test]
fn the_time_since_previous_packet_is_skipped_not_decrypted() {
    let (mut p, ha, hb) = Pair::connected(endpoint(3), endpoint(4));
    p.tap = Some(Box::new(|_, flight: &mut Vec<Datagram>| {
        for (_, d) in flight.iter_mut() {
            if d.first().is_some_and(|&b| b & 0x80 != 0) {
                *d = with_time_since_prev(d);
            }
        }
    }));
    for i in 0..20u8 {
        let c = p.a.endpoint.connection_mut(ha).unwrap();
        c.send(p.now, 0, true, true, &[i; 300]).unwrap();
        let c = p.b.endpoint.connection_mut(hb).unwrap();
        c.send(p.now, 1, i % 2 == 0, true, &[i; 900]).unwrap();
        p.advance(Duration::from_millis(20));
    }
    run_for(&mut p, Duration::from_millis(200));
    assert_eq!(p.b.take_received().len(), 20, "every message reached b");
    assert_eq!(p.a.take_received().len(), 20, "every message reached a");
    for (e, h) in [(&p.a.endpoint, ha), (&p.b.endpoint, hb)] {
        let c = e.connection(h).unwrap();
        assert!(c.is_connected());
        assert_eq!(c.stats().packets_unauthenticated, 0);
    }
}
