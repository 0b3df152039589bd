//! The connection API over P2P on the simulated network: two instances known only by
//! identity; signals carried by the test (the signaling service's job). Real NATs, STUN and
//! TURN are in the netns suite (`__test__/p2p/`).

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::eresult::send_flags;
use crate::p2p::layer::sim_world::{certified, id, node, UNIX};
use crate::p2p::layer::{FLAG_FAST, FLAG_RELAYED};
use crate::sim::{LinkConfig, Network};

type World = crate::p2p::layer::sim_world::World<Sockets>;

const ALICE: &str = "10.0.0.1:5000";
const BOB: &str = "10.0.0.2:5000";
const VPORT: u32 = 7;

fn sockets(name: &str, seed: u8) -> Sockets {
    Sockets::new(Config::default(), certified(name, seed))
}

fn world() -> World {
    let mut net = Network::new(11);
    net.set_default_link(LinkConfig {
        delay: Duration::from_millis(5),
        ..LinkConfig::default()
    });
    let at = |name: &str, seed: u8, addr: &'static str| {
        let mut s = sockets(name, seed);
        s.add_p2p_port(0, [seed ^ 0x55; 32], UNIX);
        (addr, node(s, name, seed, addr, vec![]))
    };
    World::new(net, vec![at("str:alice", 1, ALICE), at("str:bob", 2, BOB)])
}

impl World {
    /// The first status change of `at` to `state`.
    fn change_to(&mut self, at: &str, state: ConnectionState) -> Option<(HConn, ConnInfo)> {
        self.with(at, |n, _| {
            n.events.iter().find_map(|e| match e {
                SocketsEvent::StatusChanged { conn, info, .. } if info.state == state => {
                    Some((*conn, info.clone()))
                }
                _ => None,
            })
        })
    }
}

#[test]
fn a_connection_to_an_identity_and_virtual_port_runs_over_the_p2p_path() {
    let mut w = world();
    let (alice, bob) = (id("str:alice"), id("str:bob"));
    let listen = w.with(BOB, |n, _| {
        n.layer
            .create_listen_socket_p2p(VPORT, Config::default())
            .unwrap()
    });
    assert_eq!(
        w.with(BOB, |n, _| n.layer.listen_virtual_port(listen)),
        Some(VPORT)
    );
    let h = w.with(ALICE, |n, now| {
        n.layer
            .connect_p2p(now, &bob, VPORT, ConnOptions::default())
            .unwrap()
    });
    let info = w.with(ALICE, |n, _| n.layer.info(h)).unwrap();
    assert_eq!(info.state, ConnectionState::FindingRoute);
    // A second connection to the same peer while this one lives is refused, clearly.
    let again = w.with(ALICE, |n, now| {
        n.layer
            .connect_p2p(now, &bob, VPORT, ConnOptions::default())
    });
    assert_eq!(again, Err(ConnectP2pError::AlreadyConnected(bob.clone())));

    let took = w
        .run_until(Duration::from_secs(5), |w| {
            w.change_to(BOB, ConnectionState::Connecting).is_some()
        })
        .expect("bob's listen socket gets the connection");
    assert!(took < Duration::from_millis(500), "{took:?}");
    let (hb, ib) = w.change_to(BOB, ConnectionState::Connecting).unwrap();
    assert_eq!(ib.listen_socket, listen);
    assert_eq!(ib.identity_remote, alice);
    // The event already names the path's address, not the virtual one.
    assert_eq!(ib.remote_address, ALICE.parse::<SocketAddr>().unwrap());
    assert_eq!(w.with(BOB, |n, now| n.layer.accept(now, hb)), EResult::Ok);
    w.run_until(Duration::from_secs(2), |w| {
        w.change_to(ALICE, ConnectionState::Connected).is_some()
    })
    .expect("alice connected");

    for (who, peer, conn, path) in [(ALICE, &bob, h, BOB), (BOB, &alice, hb, ALICE)] {
        let i = w.with(who, |n, _| n.layer.info(conn)).unwrap();
        assert_eq!(i.state, ConnectionState::Connected, "{who}");
        assert_eq!(&i.identity_remote, peer);
        assert_eq!(i.remote_address, path.parse::<SocketAddr>().unwrap());
        assert_eq!(i.flags & FLAG_FAST, FLAG_FAST, "same subnet: Fast");
        assert_eq!(i.flags & FLAG_RELAYED, 0);
    }

    // Reliable and unreliable, both ways.
    w.with(ALICE, |n, now| {
        n.layer
            .send(now, h, b"hello bob", send_flags::RELIABLE, 0)
            .unwrap();
        n.layer
            .send(now, h, b"unreliable", send_flags::UNRELIABLE, 0)
            .unwrap();
    });
    w.with(BOB, |n, now| {
        n.layer
            .send(now, hb, b"hi alice", send_flags::RELIABLE, 0)
            .unwrap();
    });
    w.run(Duration::from_millis(100));
    let got: Vec<Vec<u8>> = w
        .with(BOB, |n, _| n.layer.receive(hb, 10).unwrap())
        .into_iter()
        .map(|m| m.data.to_vec())
        .collect();
    assert_eq!(got, vec![b"hello bob".to_vec(), b"unreliable".to_vec()]);
    let got = w.with(ALICE, |n, _| n.layer.receive(h, 10).unwrap());
    assert_eq!(&got[0].data[..], b"hi alice");
    assert_eq!(got[0].peer, bob);

    // A close with a reason reaches the peer.
    assert!(w.with(BOB, |n, now| n
        .layer
        .close_connection(now, hb, 1234, "bye", false)));
    let (_, ended) = w
        .run_until(Duration::from_secs(2), |w| {
            w.change_to(ALICE, ConnectionState::ClosedByPeer).is_some()
        })
        .and_then(|_| w.change_to(ALICE, ConnectionState::ClosedByPeer))
        .expect("alice hears the close");
    let end = ended.end.unwrap();
    assert_eq!(end.reason.code(), 1234);
    assert_eq!(end.debug, "bye");
    assert_eq!(ended.remote_address, BOB.parse::<SocketAddr>().unwrap());

    // Once it ended, a new connection to the same peer starts a fresh session.
    w.with(ALICE, |n, now| {
        assert!(n.layer.close_connection(now, h, 0, "", false));
        n.events.clear();
    });
    w.with(BOB, |n, _| n.events.clear());
    w.with(ALICE, |n, now| {
        n.layer
            .connect_p2p(now, &bob, VPORT, ConnOptions::default())
            .unwrap()
    });
    w.run_until(Duration::from_secs(5), |w| {
        w.change_to(BOB, ConnectionState::Connecting).is_some()
    })
    .expect("a second connection reaches bob's listen socket");
}

#[test]
fn a_virtual_port_nobody_listens_on_fails_at_once_with_a_clear_reason() {
    let mut w = world();
    let bob = id("str:bob");
    w.with(BOB, |n, _| {
        n.layer
            .create_listen_socket_p2p(VPORT, Config::default())
            .unwrap()
    });
    let h = w.with(ALICE, |n, now| {
        n.layer
            .connect_p2p(now, &bob, VPORT + 1, ConnOptions::default())
            .unwrap()
    });
    let took = w
        .run_until(Duration::from_secs(5), |w| {
            w.change_to(ALICE, ConnectionState::ProblemDetectedLocally)
                .is_some()
        })
        .expect("the refusal ends the connection");
    assert!(took < Duration::from_millis(200), "{took:?}");
    let i = w.with(ALICE, |n, _| n.layer.info(h)).unwrap();
    let end = i.end.unwrap();
    assert_eq!(end.reason, EndReason::MiscGeneric);
    assert!(
        end.debug.contains("not listening on virtual port 8"),
        "{}",
        end.debug
    );
    assert!(
        w.with(BOB, |n, _| n.events.is_empty()),
        "bob's application hears nothing"
    );
}

#[test]
fn connect_p2p_says_why_it_cannot_dial() {
    let mut w = world();
    let (alice, bob) = (id("str:alice"), id("str:bob"));
    let ip = id("ip:10.0.0.2:5000");
    w.with(ALICE, |n, now| {
        assert_eq!(
            n.layer.connect_p2p(now, &ip, 1, ConnOptions::default()),
            Err(ConnectP2pError::AddressIdentity(ip.clone()))
        );
        assert_eq!(
            n.layer.connect_p2p(now, &alice, 1, ConnOptions::default()),
            Err(ConnectP2pError::Ourselves)
        );
    });
    let mut plain = P2pLayer::new(sockets("str:carol", 3));
    assert_eq!(
        plain.connect_p2p(Timestamp::ZERO, &bob, 1, ConnOptions::default()),
        Err(ConnectP2pError::NotEnabled)
    );
    assert_eq!(
        plain
            .inner_mut()
            .create_listen_socket_p2p(1, Config::default()),
        Err(EResult::InvalidState)
    );
    w.with(BOB, |n, _| {
        n.layer
            .create_listen_socket_p2p(VPORT, Config::default())
            .unwrap();
        assert_eq!(
            n.layer.create_listen_socket_p2p(VPORT, Config::default()),
            Err(EResult::InvalidParam),
            "one listen socket per virtual port"
        );
    });
}

#[test]
fn closing_a_p2p_listen_socket_keeps_the_port_and_frees_the_virtual_port() {
    let mut w = world();
    w.with(BOB, |n, _| {
        let l = n
            .layer
            .create_listen_socket_p2p(VPORT, Config::default())
            .unwrap();
        assert_eq!(n.layer.close_listen_socket(l), Some(0));
        assert!(n.layer.inner().ports[0]
            .as_ref()
            .is_some_and(|p| !p.closing));
        assert!(n
            .layer
            .create_listen_socket_p2p(VPORT, Config::default())
            .is_ok());
    });
}
