//! Two agents over a tiny simulated network whose reachability each test decides.

use super::*;

fn at(ms: u64) -> Timestamp {
    Timestamp::from_micros(ms * 1000)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn host(a: &str) -> Candidate {
    let a = addr(a);
    Candidate::new(CandidateKind::Host, a, a.ip(), None, 65535)
}

/// A side of the test: its agent and the addresses others see its datagrams come from.
struct Side {
    agent: IceAgent,
    /// Source address of its direct datagrams (its host, or its NAT mapping).
    direct_src: SocketAddr,
    /// Its relayed address, if it has one (datagrams it sends via the relay come from it).
    relayed: Option<SocketAddr>,
    events: Vec<IceEvent>,
}

impl Side {
    fn new(role: Role, ufrag: &str, tiebreaker: u64, direct_src: &str) -> Side {
        Side {
            agent: IceAgent::new(
                IceConfig::new(role, ufrag, &format!("pw-{ufrag}-0123456789"), tiebreaker),
                at(0),
            ),
            direct_src: addr(direct_src),
            relayed: None,
            events: Vec::new(),
        }
    }

    fn selected(&self) -> Option<SelectedPath> {
        self.events.iter().rev().find_map(|e| match e {
            IceEvent::Selected(p) => Some(p.clone()),
            _ => None,
        })
    }

    fn failure(&self) -> Option<IceFailure> {
        self.events.iter().find_map(|e| match e {
            IceEvent::Failed(f) => Some(f.clone()),
            _ => None,
        })
    }
}

fn introduce(a: &mut Side, b: &mut Side) {
    let (ua, pa) = (
        a.agent.local_ufrag().to_owned(),
        a.agent.local_pwd().to_owned(),
    );
    let (ub, pb) = (
        b.agent.local_ufrag().to_owned(),
        b.agent.local_pwd().to_owned(),
    );
    a.agent.set_remote_credentials(&ub, &pb);
    b.agent.set_remote_credentials(&ua, &pa);
}

fn give(to: &mut Side, cands: Vec<Candidate>) {
    for c in cands {
        to.agent.add_remote_candidate(c).unwrap();
    }
}

/// `reach(sender_is_a, via, destination)`: whether the network delivers it.
type Reach<'a> = &'a dyn Fn(bool, Via, SocketAddr) -> bool;

/// Runs both agents on a 1 ms virtual clock until `until` (each datagram takes 5 ms).
fn run(a: &mut Side, b: &mut Side, until: u64, reach: Reach<'_>) {
    run_from(a, b, 0, until, reach)
}

fn run_from(a: &mut Side, b: &mut Side, start: u64, until: u64, reach: Reach<'_>) {
    let mut in_flight: Vec<(u64, bool, Via, SocketAddr, Vec<u8>)> = Vec::new();
    for ms in start..=until {
        let now = at(ms);
        // Deliver due datagrams.
        let due: Vec<_> = in_flight.iter().filter(|d| d.0 <= ms).cloned().collect();
        in_flight.retain(|d| d.0 > ms);
        for (_, to_a, via, from, bytes) in due {
            let side = if to_a { &mut *a } else { &mut *b };
            let m = Message::decode(&bytes).unwrap();
            side.agent.handle_stun(now, via, from, &m);
        }
        for side in [&mut *a, &mut *b] {
            if side.agent.poll_timeout().is_some_and(|t| t <= now) {
                side.agent.handle_timeout(now);
            }
            while let Some(e) = side.agent.poll_event() {
                side.events.push(e);
            }
        }
        let (a_src, a_rel, b_src, b_rel) = (a.direct_src, a.relayed, b.direct_src, b.relayed);
        for (is_a, side) in [(true, &mut *a), (false, &mut *b)] {
            while let Some(t) = side.agent.poll_transmit() {
                if !reach(is_a, t.via, t.destination) {
                    continue;
                }
                let (src, rel) = if is_a { (a_src, a_rel) } else { (b_src, b_rel) };
                let from = match t.via {
                    Via::Direct => src,
                    Via::Relay => rel.unwrap(),
                };
                // Which side receives, and how: datagrams to a relayed address arrive via
                // that side's relay.
                let (other_src, other_rel) = if is_a { (b_src, b_rel) } else { (a_src, a_rel) };
                let via_in = if Some(t.destination) == other_rel {
                    Via::Relay
                } else {
                    assert_eq!(t.destination, other_src, "sent to an address nobody has");
                    Via::Direct
                };
                in_flight.push((ms + 5, !is_a, via_in, from, t.payload));
            }
        }
    }
}

fn everything(_: bool, _: Via, _: SocketAddr) -> bool {
    true
}

#[test]
fn public_hosts_connect_and_agree() {
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.20:2000");
    let ca = host("203.0.113.10:1000");
    let cb = host("198.51.100.20:2000");
    assert!(a.agent.add_local_candidate(ca.clone(), 24));
    assert!(b.agent.add_local_candidate(cb.clone(), 24));
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca.clone()]);
    give(&mut a, vec![cb.clone()]);
    run(&mut a, &mut b, 500, &everything);
    let pa = a.selected().expect("a selected");
    let pb = b.selected().expect("b selected");
    assert_eq!(pa.remote.address, cb.address);
    assert_eq!(pb.remote.address, ca.address);
    assert_eq!(pa.route, RouteKind::Udp);
    assert_eq!(pa.via, Via::Direct);
    assert!(
        pa.rtt >= Duration::from_millis(10) && pa.rtt < Duration::from_millis(20),
        "{:?}",
        pa.rtt
    );
    assert!(a.failure().is_none() && b.failure().is_none());
}

#[test]
fn same_lan_is_probably_local() {
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "192.168.1.2:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "192.168.1.3:2000");
    let ca = host("192.168.1.2:1000");
    let cb = host("192.168.1.3:2000");
    a.agent.add_local_candidate(ca.clone(), 24);
    b.agent.add_local_candidate(cb.clone(), 24);
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca]);
    give(&mut a, vec![cb]);
    run(&mut a, &mut b, 500, &everything);
    assert_eq!(a.selected().unwrap().route, RouteKind::ProbablyLocal);
    assert_eq!(b.selected().unwrap().route, RouteKind::ProbablyLocal);
}

#[test]
fn ipv6_pairs_with_ipv6_only() {
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "[2001:db8::a]:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "[2001:db8::b]:2000");
    let ca = host("[2001:db8::a]:1000");
    let cb = host("[2001:db8::b]:2000");
    a.agent.add_local_candidate(ca.clone(), 64);
    b.agent.add_local_candidate(cb.clone(), 64);
    // An IPv4 candidate from b that a cannot pair with.
    a.agent
        .add_remote_candidate(host("198.51.100.1:1"))
        .unwrap();
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca]);
    give(&mut a, vec![cb.clone()]);
    run(&mut a, &mut b, 500, &|_, _, d| d.is_ipv6());
    assert_eq!(a.selected().unwrap().remote.address, cb.address);
    assert!(b.selected().is_some());
}

/// Behind symmetric NATs nothing direct gets through; a's relay works.
#[test]
fn relayed_when_direct_is_blocked() {
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "192.168.1.2:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "192.168.2.2:2000");
    let relayed = addr("203.0.113.1:50000");
    a.relayed = Some(relayed);
    let ca = host("192.168.1.2:1000");
    let ra = Candidate::new(
        CandidateKind::Relayed,
        relayed,
        addr("192.168.1.2:1000").ip(),
        Some(relayed.ip()),
        65535,
    );
    let cb = host("192.168.2.2:2000");
    a.agent.add_local_candidate(ca.clone(), 24);
    a.agent.add_local_candidate(ra.clone(), 0);
    b.agent.add_local_candidate(cb.clone(), 24);
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca, ra]);
    give(&mut a, vec![cb]);
    // Only: a via its relay to b, and b to a's relayed address.
    let reach = move |is_a: bool, via: Via, dest: SocketAddr| {
        if is_a {
            via == Via::Relay
        } else {
            dest == relayed
        }
    };
    run(&mut a, &mut b, 3000, &reach);
    let pa = a.selected().expect("a selected");
    assert_eq!((pa.via, pa.route), (Via::Relay, RouteKind::Relayed));
    let pb = b.selected().expect("b selected");
    assert_eq!(
        (pb.via, pb.route, pb.remote.address),
        (Via::Direct, RouteKind::Relayed, relayed)
    );
}

#[test]
fn direct_wins_over_relay_when_both_work() {
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.20:2000");
    let relayed = addr("203.0.113.1:50000");
    a.relayed = Some(relayed);
    let ca = host("203.0.113.10:1000");
    let ra = Candidate::new(
        CandidateKind::Relayed,
        relayed,
        ca.address.ip(),
        Some(relayed.ip()),
        65535,
    );
    let cb = host("198.51.100.20:2000");
    a.agent.add_local_candidate(ca.clone(), 24);
    a.agent.add_local_candidate(ra.clone(), 0);
    b.agent.add_local_candidate(cb.clone(), 24);
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca, ra]);
    give(&mut a, vec![cb]);
    run(&mut a, &mut b, 2000, &everything);
    assert_eq!(a.selected().unwrap().via, Via::Direct);
    assert_eq!(b.selected().unwrap().route, RouteKind::Udp);
}

#[test]
fn role_conflict_resolves_by_tiebreaker() {
    // Both think they control; b has the larger tiebreaker and keeps the role.
    let mut a = Side::new(Role::Controlling, "AAAAA", 5, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlling, "BBBBB", 9, "198.51.100.20:2000");
    let ca = host("203.0.113.10:1000");
    let cb = host("198.51.100.20:2000");
    a.agent.add_local_candidate(ca.clone(), 24);
    b.agent.add_local_candidate(cb.clone(), 24);
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca]);
    give(&mut a, vec![cb]);
    run(&mut a, &mut b, 2000, &everything);
    assert_eq!(a.agent.role(), Role::Controlled);
    assert_eq!(b.agent.role(), Role::Controlling);
    assert!(a.events.contains(&IceEvent::RoleChanged(Role::Controlled)));
    assert!(a.selected().is_some() && b.selected().is_some());
}

#[test]
fn peer_reflexive_from_an_unsignaled_address() {
    // b's host candidate is private; what a sees is its NAT mapping, never signaled.
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.99:40000");
    let ca = host("203.0.113.10:1000");
    a.agent.add_local_candidate(ca.clone(), 24);
    b.agent.add_local_candidate(host("192.168.7.7:2000"), 24);
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca]);
    a.agent
        .add_remote_candidate(host("192.168.7.7:2000"))
        .unwrap();
    // a cannot reach b's private address; b can reach a.
    run(&mut a, &mut b, 2000, &|is_a, _, d| {
        !is_a || d.port() == 1000 || d.port() == 40000
    });
    let pa = a.selected().expect("a selected");
    assert_eq!(pa.remote.kind, CandidateKind::PeerReflexive);
    assert_eq!(pa.remote.address, addr("198.51.100.99:40000"));
    assert!(b.selected().is_some());
}

#[test]
fn consent_loss_ends_the_session() {
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.20:2000");
    let ca = host("203.0.113.10:1000");
    let cb = host("198.51.100.20:2000");
    a.agent.add_local_candidate(ca.clone(), 24);
    b.agent.add_local_candidate(cb.clone(), 24);
    introduce(&mut a, &mut b);
    give(&mut b, vec![ca]);
    give(&mut a, vec![cb]);
    let cut = std::cell::Cell::new(false);
    // Connected, consent kept for a while, then the path dies.
    run(&mut a, &mut b, 20_000, &|_, _, _| !cut.get());
    assert!(a.selected().is_some() && a.failure().is_none());
    cut.set(true);
    run_from(&mut a, &mut b, 20_001, 51_000, &|_, _, _| !cut.get());
    let f = a.failure().expect("consent lost");
    assert_eq!(f.end_reason, END_MISC_TIMEOUT);
    assert!(f.debug.contains("consent"), "{}", f.debug);
    assert_eq!(a.agent.poll_timeout(), None);
}

#[test]
fn failure_reasons() {
    // No credentials from the peer.
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.20:2000");
    a.agent.add_local_candidate(host("203.0.113.10:1000"), 24);
    run(&mut a, &mut b, 10_100, &everything);
    let f = a.failure().unwrap();
    assert_eq!(f.end_reason, END_MISC_P2P_RENDEZVOUS);

    // Credentials but no candidates.
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.20:2000");
    a.agent.add_local_candidate(host("203.0.113.10:1000"), 24);
    introduce(&mut a, &mut b);
    run(&mut a, &mut b, 10_100, &everything);
    assert_eq!(a.failure().unwrap().end_reason, END_MISC_GENERIC);

    // Only private candidates on our side, STUN failed.
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "192.168.1.2:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.20:2000");
    a.agent.add_local_candidate(host("192.168.1.2:1000"), 24);
    a.agent
        .note_gathering_failure("STUN 203.0.113.1:3478: no answer");
    introduce(&mut a, &mut b);
    a.agent
        .add_remote_candidate(host("198.51.100.20:2000"))
        .unwrap();
    run(&mut a, &mut b, 10_100, &|_, _, _| false);
    let f = a.failure().unwrap();
    assert_eq!(f.end_reason, END_LOCAL_P2P_ICE_NO_PUBLIC_ADDRESSES);
    assert!(
        f.debug.contains("STUN 203.0.113.1:3478: no answer"),
        "{}",
        f.debug
    );

    // Both have public candidates, nothing gets through; both sides complete: fails as soon as
    // every check timed out, before connect_timeout.
    let mut a = Side::new(Role::Controlling, "AAAAA", 1, "203.0.113.10:1000");
    let mut b = Side::new(Role::Controlled, "BBBBB", 2, "198.51.100.20:2000");
    a.agent.add_local_candidate(host("203.0.113.10:1000"), 24);
    introduce(&mut a, &mut b);
    a.agent
        .add_remote_candidate(host("198.51.100.20:2000"))
        .unwrap();
    a.agent.set_local_complete();
    a.agent.set_remote_complete();
    run(&mut a, &mut b, 6_000, &|_, _, _| false);
    let f = a.failure().expect("early failure");
    assert_eq!(f.end_reason, END_MISC_P2P_NAT_FIREWALL);
}

#[test]
fn forged_checks_get_no_answer() {
    let mut a = IceAgent::new(
        IceConfig::new(Role::Controlled, "AAAAA", "right-password", 1),
        at(0),
    );
    a.add_local_candidate(host("203.0.113.10:1000"), 24);
    a.set_remote_credentials("BBBBB", "theirs");
    let mut b = MessageBuilder::new(
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([1; 12]),
    );
    b.add(attr::USERNAME, b"AAAAA:BBBBB")
        .u32(attr::PRIORITY, 1)
        .integrity(Integrity::Sha1, b"wrong-password")
        .fingerprint();
    let bytes = b.into_bytes().unwrap();
    let m = Message::decode(&bytes).unwrap();
    assert!(a.handle_stun(at(1), Via::Direct, addr("198.51.100.1:5"), &m));
    assert_eq!(a.poll_transmit(), None);
    // Someone else's ufrag: not ours at all.
    let mut b = MessageBuilder::new(
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([2; 12]),
    );
    b.add(attr::USERNAME, b"ZZZZZ:BBBBB")
        .integrity(Integrity::Sha1, b"x");
    let bytes = b.into_bytes().unwrap();
    assert!(!a.handle_stun(
        at(1),
        Via::Direct,
        addr("198.51.100.1:5"),
        &Message::decode(&bytes).unwrap()
    ));
    assert_eq!(
        username_local_ufrag(&Message::decode(&bytes).unwrap()),
        Some("ZZZZZ")
    );
}

#[test]
fn answers_valid_checks_with_the_mapped_address_and_420_for_unknown_attributes() {
    let mut a = IceAgent::new(IceConfig::new(Role::Controlled, "AAAAA", "pw", 1), at(0));
    a.add_local_candidate(host("203.0.113.10:1000"), 24);
    let from = addr("198.51.100.1:5");
    let req = |extra: Option<u16>| {
        let mut b = MessageBuilder::new(
            MessageType::new(Method::BINDING, Class::Request),
            TransactionId([3; 12]),
        );
        b.add(attr::USERNAME, b"AAAAA:BBBBB")
            .u32(attr::PRIORITY, 7)
            .u64(attr::ICE_CONTROLLING, 99);
        if let Some(t) = extra {
            b.add(t, b"?");
        }
        b.integrity(Integrity::Sha1, b"pw").fingerprint();
        b.into_bytes().unwrap()
    };
    let bytes = req(None);
    assert!(a.handle_stun(at(1), Via::Direct, from, &Message::decode(&bytes).unwrap()));
    let t = a.poll_transmit().unwrap();
    assert_eq!((t.via, t.destination), (Via::Direct, from));
    let r = Message::decode(&t.payload).unwrap();
    assert_eq!(r.typ.class, Class::Success);
    assert_eq!(r.xor_mapped_address(), Some(from));
    r.verify_integrity(b"pw").unwrap();

    let bytes = req(Some(0x7123));
    assert!(a.handle_stun(at(2), Via::Direct, from, &Message::decode(&bytes).unwrap()));
    let t = std::iter::from_fn(|| a.poll_transmit()).last().unwrap();
    let r = Message::decode(&t.payload).unwrap();
    assert_eq!(r.error_code().unwrap().code, 420);
}

#[test]
fn ice_enable_filters_local_candidates() {
    let mut cfg = IceConfig::new(Role::Controlled, "AAAAA", "pw", 1);
    cfg.ice_enable = crate::p2p::ice::candidate::ICE_ENABLE_RELAY;
    let mut a = IceAgent::new(cfg, at(0));
    assert!(!a.add_local_candidate(host("192.168.1.2:1"), 24));
    assert!(!a.add_local_candidate(host("203.0.113.10:1"), 24));
    let r = addr("203.0.113.1:50000");
    assert!(a.add_local_candidate(
        Candidate::new(CandidateKind::Relayed, r, r.ip(), Some(r.ip()), 1),
        0
    ));
}

#[test]
fn remote_candidates_are_bounded() {
    let mut a = IceAgent::new(IceConfig::new(Role::Controlled, "AAAAA", "pw", 1), at(0));
    for i in 0..32u16 {
        a.add_remote_candidate(host(&format!("198.51.100.1:{}", 1000 + i)))
            .unwrap();
    }
    assert_eq!(
        a.add_remote_candidate(host("198.51.100.1:5000")),
        Err(IceError::TooManyCandidates)
    );
    assert_eq!(
        a.add_remote_candidate(host("127.0.0.1:5000")),
        Err(IceError::Unusable)
    );
}
