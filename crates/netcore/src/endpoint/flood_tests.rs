//! Floods of valid connect requests and forged control messages against a server with a live
//! session: the expensive work done is counted (not timed) against the handshake budget, and
//! the live session keeps its connection and delivers every message.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use super::rate_limit::{Bucket, RateLimits, HANDSHAKE_LIMITS};
use super::*;
use crate::sim::pair::{EndpointNode, Pair, A, B};
use crate::wire::control::{ConnectRequest, ControlMessage};

fn endpoint(seed: u8) -> Endpoint {
    Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(seed))
}

/// A genuine connect request from a client (its certificate and signed crypt info), which
/// an attacker replays with any id and a cookie for its own address.
fn genuine_request() -> ConnectRequest {
    let mut client = endpoint(40);
    let mut server = endpoint(41);
    let t = Timestamp::from_micros(1_000_000);
    client.connect(t, B, None, false);
    let mut out = Vec::new();
    for _ in 0..3 {
        let mut to_server = Vec::new();
        client.poll_transmit(t, &mut Vec::new(), |_, d| to_server.push(d.to_vec()));
        for d in &to_server {
            if let Ok(ControlMessage::ConnectRequest(req)) = ControlMessage::decode(d) {
                return req;
            }
            server.handle_datagram(t, A, d, &mut out);
        }
        let mut to_client = Vec::new();
        server.poll_transmit(t, &mut Vec::new(), |_, d| to_client.push(d.to_vec()));
        for d in &to_client {
            client.handle_datagram(t, B, d, &mut out);
        }
    }
    panic!("no connect request")
}

fn attacker(i: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i)), port)
}

/// 64 real sources (each can receive its cookie) flood valid connect requests with fresh
/// ids from many ports while a live session exchanges messages: the handshakes run stay
/// within the global and per-source budgets, everything else is refused and counted, and the
/// live session delivers every message in the round it is sent.
#[test]
fn a_flood_of_valid_connect_requests_runs_within_the_handshake_budget() {
    let (mut p, ha, hb) = Pair::connected(endpoint(5), endpoint(6));
    // ConnectOKs the server sends to the attackers are counted per source IP; nothing
    // reaches them (they only replay).
    let ok_to: Rc<RefCell<BTreeMap<IpAddr, u64>>> = Rc::default();
    let seen = ok_to.clone();
    p.tap = Some(Box::new(move |_, flight| {
        for (to, d) in flight.iter() {
            if *to != A && d.first() == Some(&35) {
                *seen.borrow_mut().entry(to.ip()).or_default() += 1;
            }
        }
        flight.retain(|(to, _)| *to == A || *to == B)
    }));
    let genuine = genuine_request();
    let start = p.now;
    let seconds = 2u32;
    let mut sent = 0u64;
    let mut next_id = 1u32;
    let mut live_sent = 0usize;
    let mut live_got = 0usize;
    // Every millisecond, each source sends one request from each of 4 of its 64 ports:
    // 256,000 requests a second in all.
    for ms in 0..(seconds * 1000) {
        let now = start + Duration::from_millis(u64::from(ms));
        p.now = now;
        for i in 0..64u8 {
            for k in 0..4u16 {
                let from = attacker(i, 1000 + ((ms as u16).wrapping_mul(4) + k) % 64);
                let mut req = genuine.clone();
                req.client_connection_id = Some(next_id);
                next_id += 1;
                req.challenge = Some(p.b.endpoint.cookie_for(from, now));
                let mut d = Vec::new();
                ControlMessage::ConnectRequest(req).encode(&mut d).unwrap();
                p.b.endpoint.handle_datagram(now, from, &d, &mut Vec::new());
                sent += 1;
            }
        }
        if ms % 10 == 0 {
            let msg = format!("live {ms}");
            p.a.endpoint
                .connection_mut(ha)
                .unwrap()
                .send(now, 0, true, true, msg.as_bytes())
                .unwrap();
            live_sent += 1;
        }
        p.run_timers();
        p.round();
        live_got += p.b.take_received().len();
        assert_eq!(
            live_got, live_sent,
            "the live session delivers in the round it sends"
        );
    }
    let st = p.b.endpoint.stats();
    // The live session's own handshake is one of them.
    let flood_handshakes = st.handshakes - 1;
    let g = HANDSHAKE_LIMITS.global;
    let allowed = u64::from(g.burst) + u64::from(g.per_second) * u64::from(seconds);
    assert!(
        st.handshakes <= allowed,
        "{} handshakes, budget {allowed}",
        st.handshakes
    );
    assert!(
        st.handshakes >= allowed * 9 / 10,
        "the budget is used: {}",
        st.handshakes
    );
    let per = HANDSHAKE_LIMITS.per_source;
    let per_allowed = u64::from(per.burst) + u64::from(per.per_second) * u64::from(seconds);
    let ok_to = ok_to.borrow();
    for (ip, n) in ok_to.iter() {
        assert!(*n <= per_allowed, "{ip} got {n} handshakes");
    }
    assert_eq!(ok_to.values().sum::<u64>(), flood_handshakes);
    let refused = st.handshakes_limited_source
        + st.handshakes_limited_global
        + st.refused_connect_live
        + st.peers_gone_silent
        + st.dropped_table_full;
    assert_eq!(
        flood_handshakes + refused,
        sent,
        "every request is run or counted: {st:?}"
    );
    assert!(p.b.endpoint.connection(hb).unwrap().is_connected());
    assert!(p.b.endpoint.connection_count() <= 1 + st.handshakes as usize);
}

/// One source alone cannot take the whole budget: with a tight global bucket, a second
/// source is still served.
#[test]
fn one_source_cannot_take_the_whole_handshake_budget() {
    let mut b = endpoint(6);
    b.set_handshake_limits(RateLimits {
        per_source: Bucket {
            burst: 5,
            per_second: 5,
        },
        global: Bucket {
            burst: 20,
            per_second: 20,
        },
    });
    let genuine = genuine_request();
    let t = Timestamp::from_micros(5_000_000);
    let request = |b: &mut Endpoint, from: SocketAddr, id: u32| {
        let mut req = genuine.clone();
        req.client_connection_id = Some(id);
        req.challenge = Some(b.cookie_for(from, t));
        let mut d = Vec::new();
        ControlMessage::ConnectRequest(req).encode(&mut d).unwrap();
        b.handle_datagram(t, from, &d, &mut Vec::new());
    };
    for port in 0..100u16 {
        request(&mut b, attacker(0, 2000 + port), 100 + u32::from(port));
    }
    assert_eq!(b.stats().handshakes, 5);
    assert_eq!(b.stats().handshakes_limited_source, 95);
    request(&mut b, attacker(1, 2000), 1);
    assert_eq!(b.stats().handshakes, 6, "another source is served");
}

/// A close or NoConnection naming a live connection counts only from its peer's address,
/// and only if it names the peer's own connection id; refusals are counted.
#[test]
fn closes_are_taken_only_from_the_peer_and_for_its_ids() {
    let (mut p, ha, hb) = Pair::connected(endpoint(5), endpoint(6));
    let (a_id, b_id) = (ha.id(), hb.id());
    let t = p.now;
    let close = |to: u32, from: Option<u32>| {
        let mut d = Vec::new();
        ControlMessage::ConnectionClosed(crate::wire::control::ConnectionClosed {
            to_connection_id: Some(to),
            from_connection_id: from,
            debug: Some("forged".into()),
            reason_code: Some(1000),
        })
        .encode(&mut d)
        .unwrap();
        d
    };
    let no_conn = |from: u32, to: Option<u32>| {
        let mut d = Vec::new();
        ControlMessage::NoConnection(crate::wire::control::NoConnection {
            from_connection_id: Some(from),
            to_connection_id: to,
        })
        .encode(&mut d)
        .unwrap();
        d
    };
    let b = &mut p.b.endpoint;
    let other_port = SocketAddr::new(A.ip(), A.port() + 1);
    let other_ip = SocketAddr::from(([127, 0, 0, 9], A.port()));
    for from in [other_port, other_ip] {
        b.handle_datagram(t, from, &close(b_id, Some(a_id)), &mut Vec::new());
        b.handle_datagram(t, from, &no_conn(a_id, Some(b_id)), &mut Vec::new());
    }
    assert_eq!(b.stats().refused_wrong_source, 4);
    // From the peer's address but naming another peer id.
    b.handle_datagram(t, A, &close(b_id, Some(a_id ^ 1)), &mut Vec::new());
    b.handle_datagram(t, A, &no_conn(a_id ^ 1, Some(b_id)), &mut Vec::new());
    assert_eq!(b.stats().refused_wrong_peer_id, 2);
    assert!(b.connection(hb).unwrap().is_connected());
    // The genuine close (the peer's address and ids) is taken.
    b.handle_datagram(t, A, &close(b_id, Some(a_id)), &mut Vec::new());
    assert_eq!(
        b.connection(hb).unwrap().state(),
        ConnectionState::ClosedByPeer
    );
}

/// A peer that gives up before it learnt our id closes with its own id only.
#[test]
fn a_close_naming_only_the_peers_id_ends_its_connection() {
    let (mut p, ha, hb) = Pair::connected(endpoint(5), endpoint(6));
    let mut d = Vec::new();
    ControlMessage::ConnectionClosed(crate::wire::control::ConnectionClosed {
        to_connection_id: None,
        from_connection_id: Some(ha.id()),
        debug: None,
        reason_code: Some(1000),
    })
    .encode(&mut d)
    .unwrap();
    let t = p.now;
    p.b.endpoint.handle_datagram(t, A, &d, &mut Vec::new());
    assert_eq!(
        p.b.endpoint.connection(hb).unwrap().state(),
        ConnectionState::ClosedByPeer
    );
}

/// The peer-restart case stays open when the restarted peer says nothing (the reference's
/// clients do not answer data for a connection they do not know): its probes go unanswered,
/// the old connection ends with a reason, and the next request gets through.
#[test]
fn a_restarted_peer_that_stays_silent_gets_through_after_the_probes() {
    let (mut p, _ha, hb) = Pair::connected(endpoint(5), endpoint(6));
    // The new A neither answers the probes nor anything else unknown: drop what B sends it
    // except its ConnectOK and challenge replies.
    p.tap = Some(Box::new(|dir, flight| {
        if dir == crate::sim::pair::Direction::BtoA {
            flight.retain(|(_, d)| d.first().is_some_and(|&l| l < 0x80));
        }
    }));
    p.a = EndpointNode::new(endpoint(15));
    let ha = p.a.endpoint.connect(p.now, B, None, false).unwrap();
    let end = p.now + Duration::from_secs(4);
    let up = p.run_until(end, 10_000, |p| {
        p.a.endpoint
            .connection(ha)
            .is_some_and(|c| c.is_connected())
    });
    assert!(up, "the restarted peer gets through");
    let st = p.b.endpoint.stats();
    assert_eq!(st.peers_gone_silent, 1, "{st:?}");
    assert!(st.refused_connect_live >= 3, "{st:?}");
    // The old connection ended with a reason (and was then replaced).
    assert!(p.b.endpoint.connection(hb).is_none());
    let changes: Vec<_> = std::iter::from_fn(|| p.b.endpoint.poll_event())
        .filter(|e| e.conn == hb)
        .map(|e| e.new)
        .collect();
    assert_eq!(
        changes.last(),
        Some(&ConnectionState::ProblemDetectedLocally)
    );
}

/// A repeated request for a connection that has ended is answered with the end, so a peer
/// still waiting for our answer fails at once instead of at its timeout.
#[test]
fn a_request_for_an_ended_connection_gets_the_end() {
    let mut p = Pair::new(
        EndpointNode::new(endpoint(5)),
        EndpointNode::new(endpoint(6)),
    );
    // B's ConnectOK never reaches A: A keeps asking.
    p.tap = Some(Box::new(|dir, flight| {
        if dir == crate::sim::pair::Direction::BtoA {
            flight.retain(|(_, d)| d.first() != Some(&35));
        }
    }));
    let ha = p.a.endpoint.connect(p.now, B, None, false).unwrap();
    p.rounds(3);
    let hb = p.b.endpoint.handles().next().expect("B answered");
    // B's connection ends (here: A's address says it has no such connection).
    let mut d = Vec::new();
    ControlMessage::NoConnection(crate::wire::control::NoConnection {
        from_connection_id: Some(ha.id()),
        to_connection_id: Some(hb.id()),
    })
    .encode(&mut d)
    .unwrap();
    let t = p.now;
    p.b.endpoint.handle_datagram(t, A, &d, &mut Vec::new());
    assert!(p.b.endpoint.connection(hb).unwrap().is_dead());
    // A's next request (same id, 250 ms on) gets the end: A fails then, with B's reason,
    // not at its 10 s timeout.
    let mut waited = Duration::ZERO;
    while !p.a.endpoint.connection(ha).is_some_and(|c| c.is_dead()) {
        assert!(waited < Duration::from_millis(600), "A still waits");
        p.advance(Duration::from_millis(10));
        waited += Duration::from_millis(10);
    }
    let a = p.a.endpoint.connection(ha).unwrap();
    assert_eq!(
        a.failure().map(|e| e.reason),
        Some(EndReason::MiscPeerSentNoConnection)
    );
    let _ = t;
}
