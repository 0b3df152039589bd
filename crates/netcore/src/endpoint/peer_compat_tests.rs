//! What a stock GameNetworkingSockets peer expects of us on the wire, checked between two of
//! our endpoints on the shared harness (the interop suite checks the same against GNS itself,
//! `__test__/interop/`): keepalive flags, the clear-text time-since-previous-packet field,
//! the answers of connections that ended, the quality reports, and the peer's close reason.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use prost::Message as _;

use super::*;
use crate::config::Config;
use crate::connection::quality::{INSTANTANEOUS_DUE, INSTANTANEOUS_READY, LIFETIME_DUE};
use crate::eresult::{send_flags, EResult};
use crate::messages::{Event, Messages};
use crate::sim::pair::{Datagram, Direction, EndpointNode, Pair, A, B};
use crate::wire::control::{UdpStats, STATS_ACK_REQUEST_E2E, STATS_ACK_REQUEST_IMMEDIATE};
use crate::wire::datagram::{DATA_HEADER_LEN, FLAG_TIME_SINCE_PREV};

fn endpoint_with(seed: u8, cfg: ConnectionConfig) -> Endpoint {
    Endpoint::new(cfg, EndpointSetup::for_tests(seed))
}

fn endpoint(seed: u8) -> Endpoint {
    endpoint_with(seed, ConnectionConfig::default())
}

/// Every datagram of a flight going `dir`, decoded as a control message if it is one.
fn controls(flight: &[Datagram]) -> Vec<ControlMessage> {
    flight
        .iter()
        .filter(|(_, d)| matches!(classify(d), Ok(Lead::Control(_))))
        .filter_map(|(_, d)| ControlMessage::decode(d).ok())
        .collect()
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

// ------------------------------------------------- bug 4: answers of connections that ended

fn short_timeout() -> ConnectionConfig {
    ConnectionConfig {
        timeout: Duration::from_secs(2),
        ..ConnectionConfig::default()
    }
}

#[test]
fn a_local_failure_tells_the_peer_at_once() {
    // `a` gives up after 2 s of silence, `b` would wait 10 s.
    let (mut p, ha, hb) = Pair::connected(endpoint_with(5, short_timeout()), endpoint(6));
    let rec = record(&mut p);
    rec.borrow_mut().drop_to_a = true;
    run_for(&mut p, Duration::from_millis(2500));
    let a = p.a.endpoint.connection(ha).unwrap();
    assert_eq!(a.state(), ConnectionState::ProblemDetectedLocally);
    assert_eq!(a.end().unwrap().reason, EndReason::MiscTimeout);
    let closes: Vec<_> = controls(&rec.borrow().to_b)
        .into_iter()
        .filter(|m| matches!(m, ControlMessage::ConnectionClosed(_)))
        .collect();
    assert_eq!(closes.len(), 1, "one notice, at the failure: {closes:?}");
    let b = p.b.endpoint.connection(hb).unwrap();
    assert_eq!(b.state(), ConnectionState::ClosedByPeer);
    assert_eq!(b.end().unwrap().reason, EndReason::MiscTimeout);
    assert!(b.end().unwrap().debug.contains("no reply"), "{:?}", b.end());
}

#[test]
fn data_for_a_failed_connection_is_answered_with_its_end_rate_limited() {
    let (mut p, ha, hb) = Pair::connected(endpoint_with(7, short_timeout()), endpoint(8));
    let rec = record(&mut p);
    // Both ways cut: `a` fails, and its notice is lost too.
    rec.borrow_mut().drop_to_a = true;
    rec.borrow_mut().drop_to_b = true;
    run_for(&mut p, Duration::from_millis(2500));
    assert_eq!(
        p.a.endpoint.connection(ha).unwrap().state(),
        ConnectionState::ProblemDetectedLocally
    );
    assert!(p.b.endpoint.connection(hb).unwrap().is_connected());
    // The path heals; `b` (which never heard) sends.
    rec.borrow_mut().drop_to_a = false;
    rec.borrow_mut().drop_to_b = false;
    rec.borrow_mut().to_b.clear();
    let now = p.now;
    p.b.endpoint
        .connection_mut(hb)
        .unwrap()
        .send(now, 0, true, true, b"anyone there?")
        .unwrap();
    p.round();
    p.round();
    let b = p.b.endpoint.connection(hb).unwrap();
    assert_eq!(b.state(), ConnectionState::ClosedByPeer);
    assert_eq!(b.end().unwrap().reason, EndReason::MiscTimeout);
    assert_eq!(p.a.endpoint.stats().answered_closed, 1);
    // Replays of b's packets at a: no more than one answer per quarter second.
    let b_data: Vec<Vec<u8>> = rec
        .borrow()
        .to_a
        .iter()
        .filter(|(_, d)| d[0] & 0x80 != 0)
        .map(|(_, d)| d.clone())
        .collect();
    assert!(!b_data.is_empty());
    let mut out = Vec::new();
    for _ in 0..10 {
        p.a.endpoint.handle_datagram(p.now, B, &b_data[0], &mut out);
    }
    let mut answers = 0;
    p.a.endpoint
        .poll_transmit(p.now, &mut Vec::new(), |_, _| answers += 1);
    assert_eq!(answers, 0, "answered less than 250 ms ago");
    let later = p.now + Duration::from_millis(250);
    p.a.endpoint.handle_datagram(later, B, &b_data[0], &mut out);
    let mut sent = Vec::new();
    p.a.endpoint
        .poll_transmit(later, &mut Vec::new(), |_, d| sent.push((B, d.to_vec())));
    match &controls(&sent)[..] {
        [ControlMessage::ConnectionClosed(c)] => {
            assert_eq!(c.from_connection_id, Some(ha.id()));
            assert_eq!(c.to_connection_id, Some(hb.id()));
            assert_eq!(c.reason_code, Some(5003));
        }
        other => panic!("expected one ConnectionClosed, got {other:?}"),
    }
}

#[test]
fn data_for_a_connection_the_peer_closed_is_answered_with_no_connection() {
    let (mut p, ha, hb) = Pair::connected(endpoint(9), endpoint(10));
    let rec = record(&mut p);
    let now = p.now;
    p.b.endpoint
        .connection_mut(hb)
        .unwrap()
        .send(now, 0, true, true, b"hello")
        .unwrap();
    p.round();
    let old = rec
        .borrow()
        .to_a
        .iter()
        .find(|(_, d)| d[0] & 0x80 != 0)
        .map(|(_, d)| d.clone())
        .expect("b sent a data packet");
    assert!(p.b.endpoint.close(hb, EndReason::App(1001), "bye"));
    // The close, then a's acknowledgement of it.
    p.rounds(2);
    assert_eq!(
        p.a.endpoint.connection(ha).unwrap().state(),
        ConnectionState::ClosedByPeer
    );
    // `a` still holds its side; a late packet of b's gets NoConnection with both ids.
    let mut out = Vec::new();
    p.a.endpoint.handle_datagram(p.now, B, &old, &mut out);
    let mut sent = Vec::new();
    p.a.endpoint
        .poll_transmit(p.now, &mut Vec::new(), |to, d| sent.push((to, d.to_vec())));
    match &controls(&sent)[..] {
        [ControlMessage::NoConnection(n)] => {
            assert_eq!(n.from_connection_id, Some(ha.id()));
            assert_eq!(n.to_connection_id, Some(hb.id()));
        }
        other => panic!("expected one NoConnection, got {other:?}"),
    }
}

#[test]
fn a_connection_we_closed_answers_for_fin_wait_with_the_reason() {
    let (mut p, ha, hb) = Pair::connected(endpoint(11), endpoint(12));
    let rec = record(&mut p);
    // Our close is lost on the way: b still thinks it is connected.
    rec.borrow_mut().drop_to_b = true;
    assert!(p.a.endpoint.close(ha, EndReason::App(1234), "gone fishing"));
    p.round();
    assert!(p.a.endpoint.connection(ha).is_none(), "forgotten at once");
    assert_eq!(p.a.endpoint.closed_count(), 1);
    rec.borrow_mut().drop_to_b = false;
    let now = p.now;
    p.b.endpoint
        .connection_mut(hb)
        .unwrap()
        .send(now, 0, true, true, b"still there?")
        .unwrap();
    p.round();
    p.round();
    let b = p.b.endpoint.connection(hb).unwrap();
    assert_eq!(b.state(), ConnectionState::ClosedByPeer);
    assert_eq!(b.closed_by_peer(), Some(EndReason::App(1234)));
    assert_eq!(b.end().unwrap().debug, "gone fishing");
    // After FinWait the record is gone: an unknown id gets the plain NoConnection.
    let later = p.now + FIN_WAIT;
    p.a.endpoint.handle_timeout(later);
    assert_eq!(p.a.endpoint.closed_count(), 0);
}

#[test]
fn a_peer_close_is_acknowledged_with_no_connection() {
    let (mut p, ha, hb) = Pair::connected(endpoint(13), endpoint(14));
    let rec = record(&mut p);
    assert!(p.a.endpoint.close(ha, EndReason::App(1001), "bye"));
    p.round();
    match &controls(&rec.borrow().to_a)[..] {
        [ControlMessage::NoConnection(n)] => {
            // The ids echoed, as the reference: from the closed-to side, to the closer.
            assert_eq!(n.from_connection_id, Some(hb.id()));
            assert_eq!(n.to_connection_id, Some(ha.id()));
        }
        other => panic!("expected one NoConnection, got {other:?}"),
    }
    // The acknowledgement changes nothing at `a`, and is not answered.
    p.rounds(2);
    assert_eq!(controls(&rec.borrow().to_b).len(), 1);
}

// ------------------------------------------------------------ bug 5: quality reports

/// Both sides send a small reliable message every 100 ms for `d`.
fn traffic(
    p: &mut Pair<EndpointNode, EndpointNode>,
    ha: ConnectionHandle,
    hb: ConnectionHandle,
    d: Duration,
) {
    let end = p.now + d;
    while p.now < end {
        let now = p.now;
        for (e, h) in [(&mut p.a.endpoint, ha), (&mut p.b.endpoint, hb)] {
            if let Some(c) = e.connection_mut(h) {
                let _ = c.send(now, 0, true, false, &[1; 200]);
            }
        }
        for _ in 0..10 {
            p.advance(Duration::from_millis(10));
        }
        p.a.take_received();
        p.b.take_received();
    }
}

/// The quality reports in a flight: (index of the datagram, the report).
fn reports(flight: &[Datagram]) -> Vec<(usize, UdpStats)> {
    flight
        .iter()
        .enumerate()
        .filter_map(|(i, (_, d))| {
            let blob = DataHeader::decode(d).ok()?.0.stats?;
            let s = UdpStats::decode(blob).ok()?;
            s.stats.is_some().then_some((i, s))
        })
        .collect()
}

#[test]
fn quality_reports_go_on_the_reference_schedule_and_set_the_remote_quality() {
    let (mut p, ha, hb) = Pair::connected(endpoint(15), endpoint(16));
    let start = p.now;
    let rec = record(&mut p);
    // One in ten of a's data packets is lost on the way to b.
    let lost = Rc::new(RefCell::new(0u32));
    let l = lost.clone();
    let mut inner = p.tap.take().unwrap();
    p.tap = Some(Box::new(move |dir, flight: &mut Vec<Datagram>| {
        inner(dir, flight);
        if dir == Direction::AtoB {
            flight.retain(|(_, d)| {
                let mut n = l.borrow_mut();
                *n += u32::from(d[0] & 0x80 != 0);
                *n % 10 != 0 || d[0] & 0x80 == 0
            });
        }
    }));
    traffic(&mut p, ha, hb, INSTANTANEOUS_READY - Duration::from_secs(1));
    assert!(
        reports(&rec.borrow().to_b).is_empty(),
        "no report before 20 s"
    );
    assert!(p.a.endpoint.connection(ha).unwrap().peer_report().is_none());
    traffic(
        &mut p,
        ha,
        hb,
        INSTANTANEOUS_DUE - INSTANTANEOUS_READY + Duration::from_secs(2),
    );
    for (dir, flight) in [("a->b", &rec.borrow().to_b), ("b->a", &rec.borrow().to_a)] {
        let got = reports(flight);
        assert!(!got.is_empty(), "{dir}: a report between 20 and 30 s");
        let s = got[0].1.stats.as_ref().unwrap();
        let i = s.instantaneous.as_ref().expect("instantaneous figures");
        assert!(
            i.ping_ms.is_some() && i.packets_dropped_pct.is_some(),
            "{i:?}"
        );
        assert!(s.lifetime.is_none(), "lifetime counters wait for 120 s");
        // Acknowledged, so it is not repeated within the period.
        assert_eq!(got.len(), 1, "{dir}: one report per period");
    }
    // b measured a's losses and told a, whose remote quality is what b reported.
    let a = p.a.endpoint.connection(ha).unwrap();
    let report = a.peer_report().expect("b's report reached a");
    let (_, inst) = report.instantaneous.as_ref().unwrap();
    let dropped = inst.packets_dropped_pct.unwrap();
    assert!(
        (5..=15).contains(&dropped),
        "b saw {dropped} % of a's packets dropped"
    );
    let q = report.quality().unwrap();
    assert!((a.rates().quality_remote - q).abs() < 1e-6);
    let b = p.b.endpoint.connection(hb).unwrap();
    assert!(b.peer_report().is_some(), "a's report reached b");
    assert!(b.rates().quality_remote > 0.95, "b's packets all reached a");
    // Lifetime counters by 140 s.
    let left = LIFETIME_DUE - p.now.saturating_since(start) + Duration::from_secs(2);
    traffic(&mut p, ha, hb, left);
    let a = p.a.endpoint.connection(ha).unwrap();
    let (_, life) = a
        .peer_report()
        .unwrap()
        .lifetime
        .expect("b's lifetime counters");
    let b = p.b.endpoint.connection(hb).unwrap();
    assert!(life.packets_recv_dropped > 0);
    assert!(life.packets_sent > 1000 && life.packets_sent <= b.stats().packets_sent);
    // Reports never push a datagram past the MTU.
    let mtu = ConnectionConfig::default().mtu;
    assert!(rec.borrow().to_b.iter().all(|(_, d)| d.len() <= mtu));
}

#[test]
fn a_full_data_packet_with_a_report_stays_within_the_mtu() {
    let (mut p, ha, hb) = Pair::connected(endpoint(17), endpoint(18));
    let rec = record(&mut p);
    traffic(&mut p, ha, hb, INSTANTANEOUS_READY);
    // Bulk from a while the report is ready: it rides on a full packet.
    for _ in 0..200 {
        let now = p.now;
        let c = p.a.endpoint.connection_mut(ha).unwrap();
        let _ = c.send(now, 0, true, false, &[9; 4000]);
        p.advance(Duration::from_millis(10));
    }
    let mtu = ConnectionConfig::default().mtu;
    let flight = rec.borrow();
    let got = reports(&flight.to_b);
    assert!(!got.is_empty());
    for (i, _) in got {
        assert!(flight.to_b[i].1.len() <= mtu);
    }
    assert!(flight.to_b.iter().all(|(_, d)| d.len() <= mtu));
}

// -------------------------------------------- bug 8: the peer's close reason and debug text

#[test]
fn the_peers_close_reason_and_text_reach_session_info() {
    let ip = |a| Identity::Ip(a);
    let mut p = Pair::new(
        Messages::new(Config::default(), EndpointSetup::for_tests(19)),
        Messages::new(Config::default(), EndpointSetup::for_tests(20)),
    );
    let t = p.now;
    assert_eq!(
        p.a.send(t, &ip(B), None, b"hi", send_flags::RELIABLE, 0),
        EResult::Ok
    );
    p.now += Duration::from_millis(10);
    p.rounds(10);
    assert!(p.b.accept(&ip(A)));
    assert!(p.b.close_session(&ip(A)));
    p.rounds(2);
    let info = p.a.session_info(&ip(B)).expect("a keeps the session");
    assert_eq!(info.state, ConnectionState::ClosedByPeer);
    let end = info.end.expect("with the peer's end");
    assert_eq!(end.reason.code(), 1001);
    assert_eq!(end.debug, "session closed");
    while let Some(e) = p.a.poll_event() {
        assert!(
            !matches!(e, Event::SessionFailed { .. }),
            "a polite close is no failure"
        );
    }
}
