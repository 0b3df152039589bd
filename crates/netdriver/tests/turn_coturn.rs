//! netcore's TURN client against a real coturn on loopback: allocate with long-term
//! credentials, relay datagrams to a local UDP peer and back through Send/Data indications and
//! a bound channel, refresh, release, and the failure modes (wrong password, unknown user,
//! quota, unreachable server) with how long each takes to report.
//!
//! A Rust integration test rather than an ava one: the client is sans-IO Rust, so std UDP
//! sockets and a real clock are all it needs, with no native addon or JS API in between
//! (those come in phase B). Skips with a message when `turnserver` (Debian's coturn) is not
//! installed.

// Helpers outside #[test] functions unwrap too: a panic there is a failed test.
#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use netcore::p2p::stun::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use netcore::p2p::turn::{
    AllocationState, TurnClient, TurnConfig, TurnError, TurnEvent, TurnInput,
};
use netcore::Timestamp;

const REALM: &str = "netmessages.test";

/// A coturn process on 127.0.0.1 with long-term credentials, killed on drop.
struct Coturn {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts coturn, or `None` (after saying so) when it is not installed.
fn coturn(extra: &[&str]) -> Option<Coturn> {
    if Command::new("turnserver")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIP: turnserver (coturn) is not installed: apt-get install coturn");
        return None;
    }
    let port = free_udp_port();
    let dir = std::env::temp_dir().join(format!("nm-coturn-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("turnserver")
        .args([
            "-n",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-tcp-relay",
            "--fingerprint",
        ])
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
        .args(["--listening-port", &port.to_string()])
        .args(["--allow-loopback-peers", "--lt-cred-mech", "--realm", REALM])
        .args(["--user", "alice:secret", "--user", "bob:hunter2"])
        .arg(format!("--userdb={}", dir.join("turndb").display()))
        .arg(format!("--pidfile={}", dir.join("pid").display()))
        .args(["--log-file", "stdout", "--simple-log"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn turnserver");
    let server = Coturn {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
    };
    // Ready when it answers a binding request.
    let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
    probe
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut b = MessageBuilder::new(
        MessageType::new(Method::BINDING, Class::Request),
        TransactionId([5; 12]),
    );
    b.fingerprint();
    let req = b.into_bytes().unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    while start.elapsed() < Duration::from_secs(10) {
        let _ = probe.send_to(&req, server.addr);
        if let Ok((n, _)) = probe.recv_from(&mut buf) {
            if Message::decode(&buf[..n]).is_ok() {
                return Some(server);
            }
        }
    }
    panic!("coturn did not answer within 10 s");
}

/// Drives a client over a real socket with a clock that tests may move forward.
struct Driver {
    sock: UdpSocket,
    client: TurnClient,
    epoch: Instant,
    /// Added to real time: lets a test jump to when a refresh is due without waiting.
    skew: Duration,
    /// Relayed datagrams received: (peer, bytes).
    received: Vec<(SocketAddr, Vec<u8>)>,
}

impl Driver {
    fn new(server: SocketAddr, user: &str, password: &str) -> Driver {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let epoch = Instant::now();
        let client = TurnClient::new(TurnConfig::new(server, user, password), Timestamp::ZERO);
        Driver {
            sock,
            client,
            epoch,
            skew: Duration::ZERO,
            received: Vec::new(),
        }
    }

    fn now(&self) -> Timestamp {
        Timestamp::ZERO + self.epoch.elapsed() + self.skew
    }

    /// Runs until `done` accepts an event, or `limit` passes; returns the event and when.
    fn until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&TurnEvent) -> bool,
    ) -> Option<(TurnEvent, Duration)> {
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while start.elapsed() < limit {
            let now = self.now();
            if self.client.poll_timeout().is_some_and(|t| t <= now) {
                self.client.handle_timeout(now);
            }
            while let Some(t) = self.client.poll_transmit() {
                self.sock.send_to(&t.payload, t.destination).unwrap();
            }
            while let Some(e) = self.client.poll_event() {
                if done(&e) {
                    return Some((e, start.elapsed()));
                }
            }
            if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
                let now = self.now();
                if let TurnInput::Data { peer, payload } =
                    self.client.handle_input(now, from, &buf[..n])
                {
                    self.received.push((peer, payload.to_vec()));
                }
            }
        }
        None
    }

    fn send(&self, peer: SocketAddr, data: &[u8]) {
        let t = self.client.send(peer, data).unwrap();
        self.sock.send_to(&t.payload, t.destination).unwrap();
    }

    /// Pumps until a relayed datagram arrives.
    fn recv(&mut self, limit: Duration) -> Option<(SocketAddr, Vec<u8>)> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if !self.received.is_empty() {
                return Some(self.received.remove(0));
            }
            self.until(Duration::from_millis(20), |_| false);
        }
        None
    }
}

fn peer_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

#[test]
fn allocate_relay_both_ways_refresh_and_release() {
    let Some(server) = coturn(&[]) else { return };
    let mut d = Driver::new(server.addr, "alice", "secret");
    let (ev, took) = d
        .until(Duration::from_secs(5), |e| {
            matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed(_))
        })
        .expect("an answer");
    let TurnEvent::Allocated {
        relayed,
        mapped,
        lifetime,
    } = ev
    else {
        panic!("{ev:?}")
    };
    eprintln!("allocated {relayed} (mapped {mapped:?}, lifetime {lifetime:?}) in {took:?}");
    assert_eq!(mapped, Some(d.sock.local_addr().unwrap()));
    assert!(relayed.ip().is_loopback());

    // Through a Send indication first (permission only), then a channel.
    let p1 = peer_socket();
    let p1_addr = p1.local_addr().unwrap();
    d.client.create_permission(p1_addr.ip(), d.now()).unwrap();
    d.until(Duration::from_secs(5), |e| {
        matches!(e, TurnEvent::PermissionCreated(_))
    })
    .expect("permission");
    d.send(p1_addr, b"via indication");
    let mut buf = [0u8; 1500];
    let (n, from) = p1
        .recv_from(&mut buf)
        .expect("peer gets the indication's data");
    assert_eq!((&buf[..n], from), (&b"via indication"[..], relayed));
    // The peer answers to the relayed address: it comes back as a Data indication.
    p1.send_to(b"back by data", relayed).unwrap();
    assert_eq!(
        d.recv(Duration::from_secs(2)),
        Some((p1_addr, b"back by data".to_vec()))
    );

    let p2 = peer_socket();
    let p2_addr = p2.local_addr().unwrap();
    d.client.bind_channel(p2_addr, d.now()).unwrap();
    let (ev, took) = d
        .until(Duration::from_secs(5), |e| {
            matches!(
                e,
                TurnEvent::ChannelBound { .. } | TurnEvent::ChannelFailed { .. }
            )
        })
        .expect("channel");
    assert!(
        matches!(ev, TurnEvent::ChannelBound { peer, .. } if peer == p2_addr),
        "{ev:?}"
    );
    eprintln!("channel bound in {took:?}");
    for i in 0..50u32 {
        let msg = format!("channel datagram {i}");
        d.send(p2_addr, msg.as_bytes());
        let (n, from) = p2.recv_from(&mut buf).expect("relayed over the channel");
        assert_eq!((&buf[..n], from), (msg.as_bytes(), relayed));
        p2.send_to(&buf[..n], relayed).unwrap();
        assert_eq!(
            d.recv(Duration::from_secs(2)),
            Some((p2_addr, msg.into_bytes()))
        );
    }
    // Odd lengths exercise ChannelData padding both ways.
    for len in [1usize, 2, 3, 5, 1200] {
        let data = vec![0xA5u8; len];
        d.send(p2_addr, &data);
        let (n, _) = p2.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &data[..]);
        p2.send_to(&data, relayed).unwrap();
        assert_eq!(d.recv(Duration::from_secs(2)).map(|x| x.1), Some(data));
    }

    // Jump to when the allocation refresh is due (a minute before the lifetime ends): the
    // permission and channel refreshes fall due on the way and go out too.
    d.skew += lifetime.saturating_sub(Duration::from_secs(59));
    let (ev, _) = d
        .until(Duration::from_secs(5), |e| {
            matches!(e, TurnEvent::Refreshed { .. } | TurnEvent::Failed(_))
        })
        .expect("refresh answer");
    assert!(matches!(ev, TurnEvent::Refreshed { .. }), "{ev:?}");
    d.send(p2_addr, b"after refresh");
    let (n, _) = p2.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after refresh");

    d.client.release(d.now());
    d.until(Duration::from_secs(5), |e| matches!(e, TurnEvent::Released))
        .expect("released");
    assert_eq!(d.client.state(), &AllocationState::Released);
}

fn expect_failure(
    server: SocketAddr,
    user: &str,
    password: &str,
    want: TurnError,
    within: Duration,
) {
    let mut d = Driver::new(server, user, password);
    let (ev, took) = d
        .until(within + Duration::from_secs(2), |e| {
            matches!(e, TurnEvent::Failed(_) | TurnEvent::Allocated { .. })
        })
        .expect("a result");
    eprintln!("{user}/{password} at {server}: {ev:?} after {took:?}");
    assert_eq!(ev, TurnEvent::Failed(want));
    assert!(took <= within, "took {took:?}");
}

#[test]
fn wrong_password_and_unknown_user_are_unauthorized_quickly() {
    let Some(server) = coturn(&[]) else { return };
    expect_failure(
        server.addr,
        "alice",
        "not-the-password",
        TurnError::Unauthorized,
        Duration::from_secs(1),
    );
    expect_failure(
        server.addr,
        "mallory",
        "secret",
        TurnError::Unauthorized,
        Duration::from_secs(1),
    );
}

#[test]
fn quota_is_reported() {
    let Some(server) = coturn(&["--user-quota", "1"]) else {
        return;
    };
    let mut first = Driver::new(server.addr, "bob", "hunter2");
    let (ev, _) = first
        .until(Duration::from_secs(5), |e| {
            matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed(_))
        })
        .unwrap();
    assert!(matches!(ev, TurnEvent::Allocated { .. }), "{ev:?}");
    expect_failure(
        server.addr,
        "bob",
        "hunter2",
        TurnError::QuotaReached,
        Duration::from_secs(1),
    );
}

#[test]
fn unreachable_server_times_out_on_the_interactive_schedule() {
    if Command::new("turnserver")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        eprintln!("SKIP: turnserver (coturn) is not installed");
        return;
    }
    // Nothing listens there.
    let dead = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    expect_failure(
        dead,
        "alice",
        "secret",
        TurnError::Timeout,
        Duration::from_millis(5600),
    );
}
