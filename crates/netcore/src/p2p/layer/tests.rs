use std::net::SocketAddr;
use std::time::Duration;

use super::sim_world::{certified, id, node, Node, UNIX};
use super::*;
use crate::endpoint::EndpointSetup;
use crate::eresult::{send_flags, EResult};
use crate::messages::{Event, Messages};
use crate::sim::{LinkConfig, Network};
use crate::ConnectionState;

type World = super::sim_world::World<Messages>;

/// A messages endpoint proving `name` with a certificate from the test CA.
fn messages(name: &str, seed: u8, config: Config) -> Messages {
    Messages::new(
        config,
        EndpointSetup {
            secret: [seed ^ 0x55; 32],
            security: certified(name, seed),
            unix_at_epoch: UNIX,
        },
    )
}

const ALICE: &str = "10.0.0.1:5000";
const BOB: &str = "10.0.0.2:5000";
const STUN: &str = "203.0.113.1:3478";

fn p2p_node(name: &str, seed: u8, at: &str, stun: Vec<SocketAddr>) -> Node<Messages> {
    node(
        messages(name, seed, Config::default()),
        name,
        seed,
        at,
        stun,
    )
}

fn world(stun: bool) -> World {
    let mut net = Network::new(7);
    net.set_default_link(LinkConfig {
        delay: Duration::from_millis(5),
        ..LinkConfig::default()
    });
    let stun: Vec<SocketAddr> = if stun {
        vec![STUN.parse().unwrap()]
    } else {
        vec![]
    };
    World::new(
        net,
        vec![
            (ALICE, p2p_node("str:alice", 1, ALICE, stun.clone())),
            (BOB, p2p_node("str:bob", 2, BOB, stun)),
        ],
    )
}

impl World {
    fn state(&mut self, at: &str, peer: &str) -> Option<crate::messages::SessionInfo> {
        let p = id(peer);
        self.with(at, |n, _| n.layer.session_info(&p))
    }
}

#[test]
fn a_session_to_an_identity_finds_its_path_and_runs_over_it() {
    let mut w = world(false);
    let bob = id("str:bob");
    let r = w.with(ALICE, |n, now| {
        n.layer
            .send(now, &bob, None, b"hello bob", send_flags::RELIABLE, 3)
    });
    assert_eq!(r, EResult::Ok);
    // Looking for a route until ICE has one: Steam's FindingRoute.
    assert_eq!(
        w.state(ALICE, "str:bob").unwrap().state,
        ConnectionState::FindingRoute
    );
    let took = w
        .run_until(Duration::from_secs(5), |w| {
            w.with(BOB, |n, _| {
                n.events
                    .iter()
                    .any(|e| *e == Event::SessionRequest(id("str:alice")))
            })
        })
        .expect("bob hears alice's session request");
    // Five 5 ms hops of signaling and checks, then the handshake: well under a second.
    assert!(took < Duration::from_millis(500), "{took:?}");
    let alice = id("str:alice");
    // The request is posted on the session's first datagram (the handshake), the message
    // follows a moment later.
    w.with(BOB, |n, _| assert!(n.layer.accept(&alice)));
    w.run(Duration::from_millis(100));
    let got = w.with(BOB, |n, _| n.layer.receive(3, 10));
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].msg.data[..], b"hello bob");
    assert_eq!(got[0].peer, alice);

    // The status shows the path's real address and Steam's Fast flag (same private subnet).
    let info = w.state(ALICE, "str:bob").unwrap();
    assert_eq!(info.state, ConnectionState::Connected);
    assert_eq!(info.remote, BOB.parse::<SocketAddr>().unwrap());
    assert_eq!(info.flags & FLAG_FAST, FLAG_FAST, "{}", info.flags);
    assert_eq!(info.flags & FLAG_RELAYED, 0);

    // And back, on the session bob's side already has.
    w.with(BOB, |n, now| {
        assert_eq!(
            n.layer
                .send(now, &alice, None, b"hi alice", send_flags::RELIABLE, 1),
            EResult::Ok
        );
    });
    w.run(Duration::from_millis(100));
    let got = w.with(ALICE, |n, _| n.layer.receive(1, 10));
    assert_eq!(got.len(), 1, "alice got bob's answer");
    assert_eq!(&got[0].msg.data[..], b"hi alice");
    let carried = w.signals_carried;
    assert!((2..20).contains(&carried), "{carried} signals");

    // Signaling going away does not matter to an established session.
    w.deliver_signals = false;
    for i in 0..20u8 {
        w.with(ALICE, |n, now| {
            n.layer.send(now, &bob, None, &[i], send_flags::RELIABLE, 3)
        });
        w.run(Duration::from_millis(50));
    }
    let got = w.with(BOB, |n, _| n.layer.receive(3, 100));
    assert_eq!(got.len(), 20);
    // The first RTT sample includes the time the handshake waited for ICE (about 50 ms
    // here); later ones pull the estimate down to the path's 10 ms round trip.
    let rtt = w.state(ALICE, "str:bob").unwrap().rtt.unwrap();
    assert!(rtt < Duration::from_millis(20), "{rtt:?}");
}

#[test]
fn both_sides_opening_at_once_make_one_session() {
    let mut w = world(false);
    let (alice, bob) = (id("str:alice"), id("str:bob"));
    w.with(ALICE, |n, now| {
        n.layer.send(now, &bob, None, b"a", send_flags::RELIABLE, 0)
    });
    w.with(BOB, |n, now| {
        n.layer
            .send(now, &alice, None, b"b", send_flags::RELIABLE, 0)
    });
    w.run(Duration::from_secs(1));
    let a = w.with(ALICE, |n, _| n.layer.receive(0, 10));
    let b = w.with(BOB, |n, _| n.layer.receive(0, 10));
    assert_eq!(a.len(), 1, "alice got bob's message");
    assert_eq!(b.len(), 1, "bob got alice's message");
    for (at, peer) in [(ALICE, "str:bob"), (BOB, "str:alice")] {
        let info = w.state(at, peer).unwrap();
        assert_eq!(info.state, ConnectionState::Connected, "{at}");
        let sessions = w.with(at, |n, _| n.layer.transport().unwrap().session_count());
        assert_eq!(sessions, 1, "{at}: one P2P session");
    }
}

#[test]
fn a_peer_not_registered_fails_at_once_with_the_rendezvous_reason() {
    let mut w = world(false);
    w.unregistered.push(id("str:bob"));
    let bob = id("str:bob");
    w.with(ALICE, |n, now| {
        n.layer.send(now, &bob, None, b"x", send_flags::RELIABLE, 0)
    });
    let took = w
        .run_until(Duration::from_secs(1), |w| {
            w.with(ALICE, |n, _| !n.events.is_empty())
        })
        .expect("a failure");
    assert!(took < Duration::from_millis(10), "{took:?}");
    let events = w.with(ALICE, |n, _| std::mem::take(&mut n.events));
    let Event::SessionFailed { peer, end, remote } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(*peer, bob);
    assert_eq!(end.reason.code(), 5008);
    assert!(end.debug.contains("not registered"), "{}", end.debug);
    assert!(
        crate::p2p::transport::virtual_id(*remote).is_none(),
        "no virtual address leaks out: {remote}"
    );
    // The session is failed: a plain send says so, AutoRestart opens a new one.
    w.unregistered.clear();
    let r = w.with(ALICE, |n, now| n.layer.send(now, &bob, None, b"y", 0, 0));
    assert_eq!(r, EResult::NoConnection);
    let r = w.with(ALICE, |n, now| {
        n.layer.send(
            now,
            &bob,
            None,
            b"y",
            send_flags::RELIABLE | send_flags::AUTO_RESTART_BROKEN_SESSION,
            0,
        )
    });
    assert_eq!(r, EResult::Ok);
    w.run(Duration::from_secs(1));
    assert_eq!(
        w.state(ALICE, "str:bob").unwrap().state,
        ConnectionState::Connected
    );
}

#[test]
fn no_signaling_fails_with_ices_reason_within_timeout_initial() {
    let mut w = world(true);
    w.deliver_signals = false;
    let bob = id("str:bob");
    w.with(ALICE, |n, now| {
        n.layer.send(now, &bob, None, b"x", send_flags::RELIABLE, 0)
    });
    let took = w
        .run_until(Duration::from_secs(11), |w| {
            w.with(ALICE, |n, _| !n.events.is_empty())
        })
        .expect("a failure within timeoutInitial");
    assert!(took < Duration::from_secs(10), "{took:?}");
    let events = w.with(ALICE, |n, _| std::mem::take(&mut n.events));
    let Event::SessionFailed { end, .. } = &events[0] else {
        panic!("{events:?}")
    };
    // Nothing came back from the peer: the rendezvous failed (GNS's category), and the
    // text also says the STUN server never answered.
    assert_eq!(end.reason.code(), 5008, "{end:?}");
    assert!(end.debug.contains("ICE credentials"), "{}", end.debug);
    assert!(end.debug.contains("STUN"), "{}", end.debug);
}

#[test]
fn no_path_fails_with_the_nat_reason() {
    let mut w = world(false);
    // Signals flow, datagrams between the two do not (a firewall).
    w.net.cut_both(ALICE.parse().unwrap(), BOB.parse().unwrap());
    let bob = id("str:bob");
    w.with(ALICE, |n, now| {
        n.layer.send(now, &bob, None, b"x", send_flags::RELIABLE, 0)
    });
    w.run_until(Duration::from_secs(11), |w| {
        w.with(ALICE, |n, _| !n.events.is_empty())
    })
    .expect("a failure within timeoutInitial");
    let events = w.with(ALICE, |n, _| std::mem::take(&mut n.events));
    let Event::SessionFailed { end, .. } = &events[0] else {
        panic!("{events:?}")
    };
    // Both sides only have private host candidates: GNS's "no public address" category.
    assert_eq!(end.reason.code(), 3006, "{end:?}");
    assert!(end.debug.starts_with("P2P: "), "{}", end.debug);
}

#[test]
fn virtual_addresses_round_trip_and_never_collide_with_real_ones() {
    use crate::p2p::transport::{virtual_addr, virtual_id};
    for n in [1u32, 7, 0xdead_beef, u32::MAX] {
        assert_eq!(virtual_id(virtual_addr(n)), Some(n));
    }
    for real in [
        "10.0.0.1:1",
        "[2001:db8::1]:1",
        "[100::1]:2",
        "[100:0:0:1::1]:1",
    ] {
        assert_eq!(virtual_id(real.parse().unwrap()), None, "{real}");
    }
}

#[test]
fn signals_claiming_another_sender_or_recipient_are_ignored() {
    let mut w = world(false);
    let bob = id("str:bob");
    w.with(ALICE, |n, now| n.layer.send(now, &bob, None, b"x", 0, 0));
    let sig = w.with(ALICE, |n, _| std::mem::take(&mut n.signals));
    assert_eq!(sig.len(), 1);
    // Delivered as if from someone else, or to someone else: bob takes neither.
    w.with(BOB, |n, now| {
        n.layer.receive_signal(now, &id("str:mallory"), &sig[0].1);
        assert_eq!(n.layer.transport().unwrap().session_count(), 0);
        let mut forged = crate::p2p::rendezvous::Rendezvous::decode_signal(&sig[0].1).unwrap();
        forged.to_identity = Some("str:carol".into());
        n.layer
            .receive_signal(now, &id("str:alice"), &forged.encode_signal().unwrap());
        assert_eq!(n.layer.transport().unwrap().session_count(), 0);
        // Garbage is dropped.
        n.layer.receive_signal(now, &id("str:alice"), &[0xff; 40]);
        assert_eq!(n.layer.transport().unwrap().session_count(), 0);
        n.layer.receive_signal(now, &id("str:alice"), &sig[0].1);
        assert_eq!(n.layer.transport().unwrap().session_count(), 1);
    });
}
