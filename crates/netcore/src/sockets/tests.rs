//! The connection API over a hand-driven network: two instances, each with its ports at
//! addresses of their own, datagrams routed by destination address.

use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::crypto::IdentityKey;

/// One instance and the address of each of its ports.
struct Node {
    s: Sockets,
    addrs: Vec<SocketAddr>,
}

struct Net {
    nodes: Vec<Node>,
    now: Timestamp,
}

fn addr(node: usize, port: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, node as u8, port as u8 + 1], 27015))
}

impl Net {
    fn new(n: usize) -> Self {
        Self::with_config(n, Config::default())
    }

    fn with_config(n: usize, config: Config) -> Self {
        let nodes = (0..n)
            .map(|i| Node {
                s: Sockets::new(
                    config.clone(),
                    LocalSecurity::unauthenticated(IdentityKey::from_seed(&[i as u8 + 1; 32])),
                ),
                addrs: Vec::new(),
            })
            .collect();
        Net {
            nodes,
            now: Timestamp::from_micros(1_000_000),
        }
    }

    fn listen(&mut self, node: usize) -> HListen {
        let n = &mut self.nodes[node];
        let port = n.addrs.len();
        n.addrs.push(addr(node, port));
        let cfg = n.s.config().clone();
        n.s.add_listen_port(port, [node as u8 + 40; 32], 1_800_000_000, cfg)
    }

    fn client(&mut self, node: usize) {
        let n = &mut self.nodes[node];
        let port = n.addrs.len();
        n.addrs.push(addr(node, port));
        n.s.add_client_port(port, [node as u8 + 80; 32], 1_800_000_000);
    }

    /// Delivers what every port sends, `rounds` times.
    fn rounds(&mut self, rounds: usize) {
        for _ in 0..rounds {
            let mut flights = Vec::new();
            for (i, n) in self.nodes.iter_mut().enumerate() {
                let addrs = n.addrs.clone();
                n.s.poll_transmit(self.now, &mut Vec::new(), &mut |port, to, d| {
                    flights.push((i, addrs[port], to, d.to_vec()));
                });
            }
            for (_, from, to, d) in flights {
                for n in self.nodes.iter_mut() {
                    if let Some(port) = n.addrs.iter().position(|a| *a == to) {
                        n.s.handle_datagram(self.now, port, from, &d);
                    }
                }
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        for n in self.nodes.iter_mut() {
            if n.s.poll_timeout().is_some_and(|t| t <= self.now) {
                n.s.handle_timeout(self.now);
            }
        }
        self.rounds(2);
    }

    fn events(&mut self, node: usize) -> Vec<(HConn, ConnectionState, ConnectionState)> {
        std::iter::from_fn(|| self.nodes[node].s.poll_event())
            .filter_map(|e| match e {
                SocketsEvent::StatusChanged { conn, info, old } => Some((conn, old, info.state)),
                SocketsEvent::Messages { .. } => None,
            })
            .collect()
    }

    /// Node 0 dials node 1's listen socket; node 1 accepts. Returns (client's, server's).
    fn connected(&mut self) -> (HConn, HConn, HListen) {
        let l = self.listen(1);
        self.client(0);
        let now = self.now;
        let to = self.nodes[1].addrs[0];
        let c = self.nodes[0]
            .s
            .connect(now, to, ConnOptions::default())
            .expect("client port");
        self.rounds(3);
        let ev = self.events(1);
        assert_eq!(ev.len(), 1, "{ev:?}");
        let (s, old, new) = ev[0];
        assert_eq!(
            (old, new),
            (ConnectionState::None, ConnectionState::Connecting)
        );
        assert_eq!(self.nodes[1].s.info(s).unwrap().listen_socket, l);
        assert_eq!(self.nodes[1].s.accept(now, s), EResult::Ok);
        self.rounds(3);
        (c, s, l)
    }
}

#[test]
fn connect_accept_and_exchange_on_lanes_without_any_header() {
    let mut net = Net::new(2);
    let (c, s, _) = net.connected();
    assert_eq!(
        net.events(0),
        [
            (c, ConnectionState::None, ConnectionState::Connecting),
            (c, ConnectionState::Connecting, ConnectionState::Connected)
        ]
    );
    assert_eq!(
        net.events(1),
        [(s, ConnectionState::Connecting, ConnectionState::Connected)]
    );
    let now = net.now;
    let a = &mut net.nodes[0].s;
    assert_eq!(
        a.send(now, c, b"x", send_flags::RELIABLE, 1),
        Err(EResult::InvalidParam)
    );
    assert_eq!(a.configure_lanes(c, &[0, 0, 0], &[1, 1, 1]), EResult::Ok);
    assert_eq!(a.send(now, c, b"one", send_flags::RELIABLE, 0), Ok(1));
    assert_eq!(a.send(now, c, b"two", send_flags::RELIABLE, 0), Ok(2));
    assert_eq!(
        a.send(
            now,
            c,
            b"lane two",
            send_flags::RELIABLE | send_flags::NO_NAGLE,
            2
        ),
        Ok(1)
    );
    assert_eq!(
        a.send(
            now,
            c,
            b"",
            send_flags::UNRELIABLE | send_flags::NO_NAGLE,
            1
        ),
        Ok(1)
    );
    assert_eq!(a.flush(now, c), EResult::Ok);
    net.rounds(2);
    let got = net.nodes[1].s.receive(s, 100).unwrap();
    let mut seen: Vec<(u16, u64, &[u8])> = got
        .iter()
        .map(|m| (m.lane, m.number, &m.data[..]))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            (0, 1, &b"one"[..]),
            (0, 2, &b"two"[..]),
            (1, 1, &b""[..]),
            (2, 1, &b"lane two"[..])
        ]
    );
    assert!(got.iter().all(|m| m.conn == s && m.user_data == -1));
    assert!(net.nodes[1].s.receive(s, 100).unwrap().is_empty());
    assert!(net.nodes[1].s.receive(999, 1).is_none());
}

#[test]
fn bad_handles_and_states_get_steams_results() {
    let mut net = Net::new(2);
    let (c, s, _) = net.connected();
    let now = net.now;
    let b = &mut net.nodes[1].s;
    assert_eq!(b.accept(now, s), EResult::InvalidState, "accepted once");
    assert_eq!(b.accept(now, 12345), EResult::InvalidParam);
    assert_eq!(
        net.nodes[0].s.accept(now, c),
        EResult::InvalidParam,
        "not incoming"
    );
    let a = &mut net.nodes[0].s;
    assert_eq!(a.send(now, 777, b"x", 0, 0), Err(EResult::InvalidParam));
    assert_eq!(a.send(now, c, b"x", 1 << 12, 0), Err(EResult::InvalidParam));
    assert_eq!(a.flush(now, 777), EResult::InvalidParam);
    assert_eq!(a.configure_lanes(c, &[], &[]), EResult::InvalidParam);
    assert_eq!(
        a.configure_lanes(c, &[0, 1], &[1, 0]),
        EResult::InvalidParam
    );
    assert_eq!(a.configure_lanes(c, &[0, 1], &[1]), EResult::InvalidParam);
    assert_eq!(a.configure_lanes(c, &[0, 1, 2], &[1, 1, 1]), EResult::Ok);
    assert_eq!(
        a.configure_lanes(c, &[0, 1], &[1, 1]),
        EResult::InvalidParam,
        "fewer lanes"
    );
    assert_eq!(a.configure_lanes(9, &[0], &[1]), EResult::NoConnection);
    assert_eq!(a.user_data(c), -1);
    assert!(a.set_user_data(c, 42));
    assert_eq!(a.user_data(c), 42);
    assert!(!a.set_user_data(999, 1));
    assert_eq!(a.user_data(999), -1);
    assert!(a.set_name(c, "to the server"));
    assert_eq!(a.name(c), Some("to the server"));
    assert!(!a.close_connection(now, c, 3000, "not an application code", false));
    assert!(!a.close_connection(now, 999, 1000, "no such", false));
}

#[test]
fn close_from_either_side_gives_the_other_the_reason_and_text() {
    for closer in [0usize, 1] {
        let mut net = Net::new(2);
        let (c, s, _) = net.connected();
        net.events(0);
        net.events(1);
        let (h, other, other_h) = if closer == 0 { (c, 1, s) } else { (s, 0, c) };
        let now = net.now;
        assert!(net.nodes[closer]
            .s
            .close_connection(now, h, 1234, "game over", false));
        assert!(net.nodes[closer].s.info(h).is_none(), "the handle is gone");
        assert_eq!(
            net.events(closer),
            [(h, ConnectionState::Connected, ConnectionState::None)]
        );
        net.rounds(2);
        assert_eq!(
            net.events(other),
            [(
                other_h,
                ConnectionState::Connected,
                ConnectionState::ClosedByPeer
            )]
        );
        let info = net.nodes[other].s.info(other_h).unwrap();
        let end = info.end.unwrap();
        assert_eq!(end.reason, EndReason::App(1234));
        assert_eq!(end.debug, "game over");
        // The survivor's handle stays valid until it closes it too.
        assert!(net.nodes[other]
            .s
            .close_connection(now, other_h, 0, "", false));
        assert!(net.nodes[other].s.info(other_h).is_none());
    }
}

#[test]
fn a_lingering_close_delivers_what_was_queued_first() {
    let mut net = Net::new(2);
    let (c, s, _) = net.connected();
    let now = net.now;
    let data = vec![7u8; 200_000];
    assert!(net.nodes[0]
        .s
        .send(now, c, &data, send_flags::RELIABLE, 0)
        .is_ok());
    assert!(net.nodes[0]
        .s
        .close_connection(now, c, 1001, "bye after the data", true));
    assert!(net.nodes[0].s.info(c).is_none());
    let mut got = Vec::new();
    for _ in 0..400 {
        net.advance(Duration::from_millis(5));
        got.extend(net.nodes[1].s.receive(s, 10).unwrap());
        if net.nodes[1].s.info(s).unwrap().state == ConnectionState::ClosedByPeer {
            break;
        }
    }
    got.extend(net.nodes[1].s.receive(s, 10).unwrap());
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.len(), data.len());
    let info = net.nodes[1].s.info(s).unwrap();
    assert_eq!(info.state, ConnectionState::ClosedByPeer);
    assert_eq!(info.end.unwrap().reason, EndReason::App(1001));
}

#[test]
fn an_incoming_connection_not_accepted_times_out() {
    let mut net = Net::with_config(
        2,
        Config {
            timeout_initial: 1_000,
            ..Config::default()
        },
    );
    net.listen(1);
    net.client(0);
    let to = net.nodes[1].addrs[0];
    let now = net.now;
    net.nodes[0]
        .s
        .connect(now, to, ConnOptions::default())
        .unwrap();
    net.rounds(3);
    let (s, ..) = net.events(1)[0];
    for _ in 0..30 {
        net.advance(Duration::from_millis(50));
    }
    let ev = net.events(1);
    assert_eq!(
        ev,
        [(
            s,
            ConnectionState::Connecting,
            ConnectionState::ProblemDetectedLocally
        )]
    );
    let info = net.nodes[1].s.info(s).unwrap();
    assert_eq!(info.end.unwrap().reason, EndReason::MiscTimeout);
}

#[test]
fn poll_groups_keep_arrival_order_across_connections() {
    let mut net = Net::new(3);
    let l = net.listen(1);
    net.client(0);
    net.client(2);
    let to = net.nodes[1].addrs[0];
    let now = net.now;
    let c0 = net.nodes[0]
        .s
        .connect(now, to, ConnOptions::default())
        .unwrap();
    let c2 = net.nodes[2]
        .s
        .connect(now, to, ConnOptions::default())
        .unwrap();
    net.rounds(3);
    let incoming: Vec<HConn> = net.events(1).iter().map(|e| e.0).collect();
    assert_eq!(incoming.len(), 2);
    let g = net.nodes[1].s.create_poll_group();
    for &h in &incoming {
        assert_eq!(net.nodes[1].s.accept(now, h), EResult::Ok);
        assert!(net.nodes[1].s.set_poll_group(h, g));
        assert!(net.nodes[1].s.set_user_data(h, i64::from(h) * 10));
    }
    assert!(
        !net.nodes[1].s.set_poll_group(incoming[0], 4242),
        "no such group"
    );
    net.rounds(3);
    // Interleaved sends: 0, 2, 0, 2 ... each flight delivered before the next send.
    for i in 0..6u8 {
        let (node, c) = if i % 2 == 0 { (0, c0) } else { (2, c2) };
        let now = net.now;
        net.nodes[node]
            .s
            .send(now, c, &[i], send_flags::RELIABLE | send_flags::NO_NAGLE, 0)
            .unwrap();
        net.rounds(1);
    }
    let got = net.nodes[1].s.receive_on_poll_group(g, 100).unwrap();
    let order: Vec<u8> = got.iter().map(|m| m.data[0]).collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    assert!(got.iter().all(|m| m.user_data == i64::from(m.conn) * 10));
    assert!(net.nodes[1].s.info(incoming[0]).unwrap().listen_socket == l);
    // Taken through the connection, a message leaves the group too.
    let now = net.now;
    net.nodes[0]
        .s
        .send(
            now,
            c0,
            b"direct",
            send_flags::RELIABLE | send_flags::NO_NAGLE,
            0,
        )
        .unwrap();
    net.rounds(1);
    let h0 = got[0].conn;
    assert_eq!(net.nodes[1].s.receive(h0, 10).unwrap().len(), 1);
    assert!(net.nodes[1]
        .s
        .receive_on_poll_group(g, 10)
        .unwrap()
        .is_empty());
    assert!(net.nodes[1].s.destroy_poll_group(g));
    assert!(!net.nodes[1].s.destroy_poll_group(g));
    assert!(net.nodes[1].s.receive_on_poll_group(g, 10).is_none());
}

#[test]
fn closing_a_listen_socket_closes_its_connections() {
    let mut net = Net::new(2);
    let (c, s, l) = net.connected();
    net.events(0);
    assert_eq!(net.nodes[1].s.close_listen_socket(l), Some(0));
    assert_eq!(net.nodes[1].s.close_listen_socket(l), None);
    assert!(net.nodes[1].s.info(s).is_none());
    // The port sends its goodbye once, then is gone (the driver closes its socket).
    net.rounds(1);
    let mut after = 0;
    let now = net.now;
    net.nodes[1]
        .s
        .poll_transmit(now, &mut Vec::new(), &mut |_, _, _| after += 1);
    assert_eq!(after, 0, "the closed port sends nothing more");
    assert_eq!(
        net.events(0),
        [(c, ConnectionState::Connected, ConnectionState::ClosedByPeer)]
    );
}

#[test]
fn a_socket_pair_is_connected_on_return() {
    let mut net = Net::new(1);
    net.nodes[0].addrs = vec![addr(0, 0), addr(0, 1)];
    let now = net.now;
    let (a, b) = net.nodes[0]
        .s
        .create_socket_pair(
            now,
            0,
            addr(0, 0),
            [1; 32],
            1,
            addr(0, 1),
            [2; 32],
            1_800_000_000,
        )
        .expect("a pair");
    let s = &mut net.nodes[0].s;
    assert_eq!(s.info(a).unwrap().state, ConnectionState::Connected);
    assert_eq!(s.info(b).unwrap().state, ConnectionState::Connected);
    assert_eq!(
        s.send(
            now,
            a,
            b"ping",
            send_flags::RELIABLE | send_flags::NO_NAGLE,
            0
        ),
        Ok(1)
    );
    net.rounds(2);
    let got = net.nodes[0].s.receive(b, 10).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].data.as_ref(), b"ping");
}
