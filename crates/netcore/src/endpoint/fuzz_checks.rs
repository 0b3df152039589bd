//! The connection state machine under hostile datagrams: the body of the `endpoint` fuzz
//! target in `crates/netcore/fuzz`, kept here so the same check also runs as a property test.
//!
//! Two [`Endpoint`]s (a client and a server) complete a real handshake and exchange data,
//! and every datagram of that exchange is kept. Then a sequence of [`Op`]s is played
//! against them: random datagrams, mutated (bit flips, truncation) or replayed copies of the
//! captured ones, sent from the genuine peer's address or from strangers, with time moving
//! on between them while the two sides keep talking. Afterwards:
//!
//! - nothing panicked (a panic is what a fuzzer reports);
//! - each side still holds exactly one connection, and buffers no more than its bounds;
//! - the established session still delivers: reliable messages sent both ways afterwards all
//!   arrive, in order, exactly once, and no message ever arrived that was not sent (or
//!   arrived twice).
//!
//! The session's survival is asserted unless an op altered a *control* message and sent it
//! from the genuine peer's address: control messages are not authenticated (see
//! `docs/SECURITY.md`), so an attacker on the path who forges one (a `ConnectionClosed` with
//! the right ids, say) can end a session; that is a documented limit, not a bug (`FORGEABLE`
//! lists the kinds). Everything else (data packets from the peer's address, anything from another address) must not hurt
//! the session.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Endpoint, EndpointSetup, MAX_CONNECTIONS, MAX_CONTROL_OUT};
use crate::connection::{ConnectionConfig, InMessage};
use crate::time::Timestamp;
use crate::wire::control::{ConnectionClosed, ControlMessage, NoConnection};

/// The client's address.
pub const CLIENT: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    40_001,
);
/// The server's address.
pub const SERVER: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    40_002,
);

/// Most bytes one side may buffer after the ops: the messages the check queues plus a full
/// queue of control replies.
const BUFFER_BOUND: usize = 256 * 1024 + MAX_CONTROL_OUT * 1300;

/// Control messages that, forged with the right ids from the genuine peer's address, may end
/// a session by design: `ConnectRequest` (a new client id with a still-valid cookie starts a
/// new connection in place of the old), `ConnectionClosed` and `NoConnection`. Forged
/// `ChallengeRequest`, `ChallengeReply` and `ConnectOK` must change nothing for a connected
/// session.
const FORGEABLE: [u8; 3] = [34, 36, 37];

/// Where an injected datagram seems to come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The genuine peer's address (the client for datagrams to the server, and vice versa).
    Peer,
    /// Another port on the peer's IP.
    SameIp(u16),
    /// Another IP on loopback.
    Other(u8, u16),
}

/// One step played against the established pair.
#[derive(Clone, Debug)]
pub enum Op {
    /// Arbitrary bytes.
    Raw {
        /// To the server (else to the client).
        to_server: bool,
        /// Apparent source.
        from: Source,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// A captured datagram, altered, sent to where it originally went.
    Mutate {
        /// Which captured datagram (modulo their number).
        pick: usize,
        /// Apparent source.
        from: Source,
        /// (position modulo length, byte to XOR in).
        edits: Vec<(usize, u8)>,
        /// Keep only this many bytes (modulo length + 1).
        truncate: Option<usize>,
    },
    /// A captured datagram, unchanged, sent again.
    Replay {
        /// Which captured datagram (modulo their number).
        pick: usize,
        /// Apparent source.
        from: Source,
    },
    /// A fresh message is sent and, in the next exchange, the first datagram going
    /// `to_server` (or to the client) is altered on the way: the altered copy arrives first,
    /// then the genuine one unless `drop_original`. Unlike a captured datagram, its packet
    /// number is new to the receiver, so the damage reaches decryption.
    Tamper {
        /// Direction.
        to_server: bool,
        /// (position modulo length, byte to XOR in).
        edits: Vec<(usize, u8)>,
        /// Lose the genuine datagram (the sender must retransmit).
        drop_original: bool,
    },
    /// Time passes and the two sides exchange what they have.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
}

/// An [`Op::Tamper`] waiting for the next round: (to server, edits, drop the original).
type TamperPlan = (bool, Vec<(usize, u8)>, bool);

/// A datagram seen during the genuine exchange.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Sent to the server (else to the client).
    pub to_server: bool,
    /// The bytes.
    pub data: Vec<u8>,
}

/// A client and a server with an established session, and what they said to each other.
pub struct Pair {
    /// The connecting side.
    pub client: Endpoint,
    /// The answering side.
    pub server: Endpoint,
    /// Virtual time.
    pub now: Timestamp,
    /// Every datagram of the genuine exchange so far.
    pub captured: Vec<Captured>,
    /// Messages the client received.
    pub got_client: Vec<InMessage>,
    /// Messages the server received.
    pub got_server: Vec<InMessage>,
    sent_c2s: Vec<Vec<u8>>,
    sent_s2c: Vec<Vec<u8>>,
    sent_unreliable: usize,
    capture: bool,
    /// Set by [`Op::Tamper`] for the next round: (to server, edits, drop the original).
    tamper: Option<TamperPlan>,
    /// Whether a tampered datagram was a control message forged from the genuine peer.
    tampered_control: bool,
    tamper_count: u32,
}

impl Pair {
    /// Runs the handshake and some traffic both ways (reliable, unreliable, keepalives),
    /// capturing every datagram; adds a `ConnectionClosed` and a `NoConnection` for other
    /// ids so mutations reach those decoders too.
    pub fn established(seed: u8) -> Pair {
        let cfg = ConnectionConfig::default();
        let mut p = Pair {
            client: Endpoint::new(cfg, EndpointSetup::for_tests(seed)),
            server: Endpoint::new(cfg, EndpointSetup::for_tests(seed.wrapping_add(101))),
            now: Timestamp::from_micros(1_000_000),
            captured: Vec::new(),
            got_client: Vec::new(),
            got_server: Vec::new(),
            sent_c2s: Vec::new(),
            sent_s2c: Vec::new(),
            sent_unreliable: 0,
            capture: true,
            tamper: None,
            tampered_control: false,
            tamper_count: 0,
        };
        p.client.connect(p.now, SERVER, None, true);
        p.send_c2s(b"setup-c2s-0", true);
        p.send_c2s(b"setup-unreliable", false);
        for _ in 0..6 {
            p.round(Duration::from_millis(1));
        }
        assert!(
            p.client_conn().is_some_and(|c| c.is_connected()),
            "handshake completes"
        );
        p.send_s2c(b"setup-s2c-0", true);
        p.send_s2c(&[7u8; 3000], true);
        for _ in 0..6 {
            p.round(Duration::from_millis(10));
        }
        for i in 0..12 {
            p.send_c2s(format!("setup-c2s-{}", i + 1).as_bytes(), i % 3 != 0);
            p.send_s2c(format!("setup-s2c-{}", i + 1).as_bytes(), i % 4 != 0);
            p.round(Duration::from_millis(7));
        }
        for _ in 0..4 {
            p.round(Duration::from_millis(30));
        }
        // Quiet long enough for keepalives (with their stats blob) both ways.
        p.round(Duration::from_secs(4));
        p.round(Duration::from_millis(1));
        p.round(Duration::from_millis(1));
        let (cid, sid) = p.ids();
        for (to_server, msg) in [
            (
                true,
                ControlMessage::ConnectionClosed(ConnectionClosed {
                    to_connection_id: Some(sid ^ 1),
                    from_connection_id: Some(cid),
                    debug: Some("bye".into()),
                    reason_code: Some(1001),
                }),
            ),
            (
                false,
                ControlMessage::NoConnection(NoConnection {
                    from_connection_id: Some(sid ^ 1),
                    to_connection_id: Some(cid),
                }),
            ),
        ] {
            let mut d = Vec::new();
            if msg.encode(&mut d).is_ok() {
                p.captured.push(Captured { to_server, data: d });
            }
        }
        p.capture = false;
        p
    }

    /// (client's id, server's id) of the live connection.
    pub fn ids(&self) -> (u32, u32) {
        let c = self.client_conn().map_or(0, |c| c.local_id());
        let s = self.server_conn().map_or(0, |c| c.local_id());
        (c, s)
    }

    /// The client's connection to the server.
    pub fn client_conn(&self) -> Option<&crate::connection::Connection> {
        let h = self.client.connection_at(SERVER)?;
        self.client.connection(h)
    }

    /// The server's connection from the client.
    pub fn server_conn(&self) -> Option<&crate::connection::Connection> {
        let h = self.server.connection_at(CLIENT)?;
        self.server.connection(h)
    }

    fn send_c2s(&mut self, data: &[u8], reliable: bool) {
        let now = self.now;
        let h = match self.client.connection_at(SERVER) {
            Some(h) => Some(h),
            None => self.client.connect(now, SERVER, None, true),
        };
        if let Some(c) = h.and_then(|h| self.client.connection_mut(h)) {
            if c.send(now, 1, reliable, true, data).is_ok() {
                if reliable {
                    self.sent_c2s.push(data.to_vec());
                } else {
                    self.sent_unreliable += 1;
                }
            }
        }
    }

    fn send_s2c(&mut self, data: &[u8], reliable: bool) {
        let now = self.now;
        let h = self.server.connection_at(CLIENT);
        if let Some(c) = h.and_then(|h| self.server.connection_mut(h)) {
            if c.send(now, 2, reliable, true, data).is_ok() {
                if reliable {
                    self.sent_s2c.push(data.to_vec());
                } else {
                    self.sent_unreliable += 1;
                }
            }
        }
    }

    /// Time moves on by `dt`; timers run; everything each side sends is delivered.
    pub fn round(&mut self, dt: Duration) {
        self.now += dt;
        let now = self.now;
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        let mut buf = Vec::new();
        let mut to_server = Vec::new();
        self.client.poll_transmit(now, &mut buf, |to, d| {
            if to == SERVER {
                to_server.push(d.to_vec());
            }
        });
        let mut to_client = Vec::new();
        self.server.poll_transmit(now, &mut buf, |to, d| {
            if to == CLIENT {
                to_client.push(d.to_vec());
            }
        });
        let tamper = self.tamper.take();
        let altered = |dir: bool, d: &[u8], first: bool| -> Option<(Vec<u8>, bool)> {
            let (to_server, edits, drop_original) = tamper.as_ref()?;
            if *to_server != dir || !first {
                return None;
            }
            let mut bad = d.to_vec();
            for &(pos, x) in edits {
                let i = pos % bad.len().max(1);
                if let Some(b) = bad.get_mut(i) {
                    *b ^= x;
                }
            }
            Some((bad, *drop_original))
        };
        for (i, d) in to_server.into_iter().enumerate() {
            if let Some((bad, drop_original)) = altered(true, &d, i == 0) {
                self.tamper_count += 1;
                self.tampered_control |= bad.first().is_some_and(|l| FORGEABLE.contains(l));
                self.server
                    .handle_datagram(now, CLIENT, &bad, &mut self.got_server);
                if drop_original {
                    continue;
                }
            }
            self.server
                .handle_datagram(now, CLIENT, &d, &mut self.got_server);
            if self.capture {
                self.captured.push(Captured {
                    to_server: true,
                    data: d,
                });
            }
        }
        for (i, d) in to_client.into_iter().enumerate() {
            if let Some((bad, drop_original)) = altered(false, &d, i == 0) {
                self.tamper_count += 1;
                self.tampered_control |= bad.first().is_some_and(|l| FORGEABLE.contains(l));
                self.client
                    .handle_datagram(now, SERVER, &bad, &mut self.got_client);
                if drop_original {
                    continue;
                }
            }
            self.client
                .handle_datagram(now, SERVER, &d, &mut self.got_client);
            if self.capture {
                self.captured.push(Captured {
                    to_server: false,
                    data: d,
                });
            }
        }
    }

    fn source(to_server: bool, from: Source) -> SocketAddr {
        let peer = if to_server { CLIENT } else { SERVER };
        match from {
            Source::Peer => peer,
            Source::SameIp(port) => {
                let port = if port == peer.port() { port ^ 1 } else { port };
                SocketAddr::new(peer.ip(), port)
            }
            Source::Other(host, port) => SocketAddr::from(([127, 0, 1, host], port)),
        }
    }

    fn inject(&mut self, to_server: bool, from: Source, data: &[u8]) {
        let addr = Self::source(to_server, from);
        let now = self.now;
        if to_server {
            self.server
                .handle_datagram(now, addr, data, &mut self.got_server);
        } else {
            self.client
                .handle_datagram(now, addr, data, &mut self.got_client);
        }
    }

    /// Plays one op; returns whether it forged a control message from the genuine peer
    /// (after which the session's survival is not promised).
    pub fn play(&mut self, op: &Op) -> bool {
        match op {
            Op::Raw {
                to_server,
                from,
                bytes,
            } => {
                self.inject(*to_server, *from, bytes);
                false
            }
            Op::Replay { pick, from } => {
                if self.captured.is_empty() {
                    return false;
                }
                let c = self.captured[pick % self.captured.len()].clone();
                self.inject(c.to_server, *from, &c.data);
                false
            }
            Op::Mutate {
                pick,
                from,
                edits,
                truncate,
            } => {
                if self.captured.is_empty() {
                    return false;
                }
                let c = &self.captured[pick % self.captured.len()];
                let to_server = c.to_server;
                let mut d = c.data.clone();
                for &(pos, x) in edits {
                    if !d.is_empty() {
                        let i = pos % d.len();
                        d[i] ^= x;
                    }
                }
                if let Some(t) = truncate {
                    d.truncate(t % (d.len() + 1));
                }
                let forged = *from == Source::Peer
                    && d != c.data
                    && d.first().is_some_and(|&lead| FORGEABLE.contains(&lead));
                self.inject(to_server, *from, &d);
                forged
            }
            Op::Tamper {
                to_server,
                edits,
                drop_original,
            } => {
                self.tamper_count = 0;
                let k = self.sent_c2s.len() + self.sent_s2c.len();
                let msg = format!("tampered-{k}");
                if *to_server {
                    self.send_c2s(msg.as_bytes(), true);
                } else {
                    self.send_s2c(msg.as_bytes(), true);
                }
                self.tamper = Some((*to_server, edits.clone(), *drop_original));
                self.round(Duration::from_millis(1));
                self.tamper = None;
                std::mem::take(&mut self.tampered_control)
            }
            Op::Advance { ms } => {
                self.round(Duration::from_millis(u64::from(*ms)));
                false
            }
        }
    }

    /// Bounds that hold whatever arrived: one connection per side, bounded buffers.
    pub fn check_bounds(&self) {
        for (name, ep) in [("client", &self.client), ("server", &self.server)] {
            assert!(
                ep.connection_count() <= 1,
                "{name} holds {} connections",
                ep.connection_count()
            );
            assert!(ep.connection_count() <= MAX_CONNECTIONS);
            assert!(
                ep.buffered_bytes() <= BUFFER_BOUND,
                "{name} buffers {} bytes",
                ep.buffered_bytes()
            );
        }
    }

    /// Sends `n` reliable messages each way, runs the pair for at most 10 s of virtual
    /// time, and asserts every message sent so far arrived once, in order, and nothing else.
    pub fn check_delivers(&mut self, n: usize) {
        assert_eq!(self.client.connection_count(), 1, "client lost its session");
        assert_eq!(self.server.connection_count(), 1, "server lost its session");
        for i in 0..n {
            self.send_c2s(format!("after-c2s-{i}").as_bytes(), true);
            self.send_s2c(format!("after-s2c-{i}").as_bytes(), true);
        }
        for _ in 0..1000 {
            if self.reliable(&self.got_server).len() >= self.sent_c2s.len()
                && self.reliable(&self.got_client).len() >= self.sent_s2c.len()
            {
                break;
            }
            self.round(Duration::from_millis(10));
        }
        let c = self.client_conn().expect("client connection");
        let s = self.server_conn().expect("server connection");
        assert!(c.failure().is_none(), "client failed: {:?}", c.failure());
        assert!(s.failure().is_none(), "server failed: {:?}", s.failure());
        assert_eq!(
            self.reliable(&self.got_server),
            self.sent_c2s,
            "server received exactly what the client sent, in order"
        );
        assert_eq!(
            self.reliable(&self.got_client),
            self.sent_s2c,
            "client received exactly what the server sent, in order"
        );
        // Unreliable messages only ever come from the genuine sender, at most once.
        for got in [&self.got_server, &self.got_client] {
            let mut unreliable: Vec<&[u8]> = got
                .iter()
                .filter(|m| m.send_flags == 0)
                .map(|m| m.data.as_ref())
                .collect();
            let n = unreliable.len();
            unreliable.sort_unstable();
            unreliable.dedup();
            assert_eq!(unreliable.len(), n, "an unreliable message arrived twice");
            assert!(n <= self.sent_unreliable, "{n} unreliable messages arrived");
        }
        self.check_bounds();
    }

    fn reliable(&self, got: &[InMessage]) -> Vec<Vec<u8>> {
        got.iter()
            .filter(|m| m.send_flags != 0)
            .map(|m| m.data.to_vec())
            .collect()
    }
}

/// Plays `ops` against a fresh established pair and checks the invariants above.
pub fn run(seed: u8, ops: &[Op]) {
    let mut p = Pair::established(seed);
    let mut forged = false;
    for op in ops {
        forged |= p.play(op);
        p.check_bounds();
    }
    if forged {
        // Only the bounds hold; run on a while to be sure nothing panics later either.
        for _ in 0..50 {
            p.round(Duration::from_millis(20));
        }
        p.check_bounds();
    } else {
        p.check_delivers(8);
    }
}

/// Reads fuzzer bytes as a sequence of [`Op`]s (at most 64).
pub fn ops_from_bytes(data: &[u8]) -> Vec<Op> {
    let mut r = data.iter().copied();
    let mut next = move || r.next();
    let mut ops = Vec::new();
    while ops.len() < 64 {
        let Some(tag) = next() else { break };
        let flags = next().unwrap_or(0);
        let port = u16::from_le_bytes([next().unwrap_or(0), next().unwrap_or(0)]);
        let from = match flags & 3 {
            0 | 1 => Source::Peer,
            2 => Source::SameIp(port),
            _ => Source::Other(flags >> 2, port),
        };
        let op = match tag % 5 {
            0 => {
                let len = usize::from(next().unwrap_or(0)) * 6;
                let bytes: Vec<u8> = (0..len).map_while(|_| next()).collect();
                Op::Raw {
                    to_server: flags & 4 == 0,
                    from,
                    bytes,
                }
            }
            1 => {
                let count = usize::from(next().unwrap_or(0) % 8);
                let mut edits = Vec::with_capacity(count);
                for _ in 0..count {
                    let pos = u16::from_le_bytes([next().unwrap_or(0), next().unwrap_or(0)]);
                    edits.push((usize::from(pos), next().unwrap_or(1)));
                }
                let truncate = (flags & 8 != 0).then(|| usize::from(port));
                Op::Mutate {
                    pick: usize::from(tag >> 2),
                    from,
                    edits,
                    truncate,
                }
            }
            2 => Op::Replay {
                pick: usize::from(tag >> 2),
                from,
            },
            3 => {
                let count = usize::from(next().unwrap_or(0) % 8) + 1;
                let edits = (0..count)
                    .map(|_| (usize::from(next().unwrap_or(0)), next().unwrap_or(1)))
                    .collect();
                Op::Tamper {
                    to_server: flags & 4 == 0,
                    edits,
                    drop_original: flags & 8 != 0,
                }
            }
            _ => Op::Advance { ms: port % 2000 },
        };
        ops.push(op);
    }
    ops
}

/// The fuzz target: arbitrary bytes as a sequence of ops against an established pair.
pub fn endpoint(data: &[u8]) {
    run(data.first().copied().unwrap_or(0), &ops_from_bytes(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source() -> impl Strategy<Value = Source> {
        prop_oneof![
            3 => Just(Source::Peer),
            1 => any::<u16>().prop_map(Source::SameIp),
            1 => (any::<u8>(), any::<u16>()).prop_map(|(h, p)| Source::Other(h, p)),
        ]
    }

    /// Random bytes, biased toward lead bytes that get past the first check.
    fn raw_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec![0x80u8, 0x81, 0xc3, 32, 33, 34, 35, 36, 37, 0, 200]),
            proptest::collection::vec(any::<u8>(), 0..1400),
        )
            .prop_map(|(lead, mut rest)| {
                rest.insert(0, lead);
                rest
            })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            2 => (any::<bool>(), source(), raw_bytes())
                .prop_map(|(to_server, from, bytes)| Op::Raw { to_server, from, bytes }),
            4 => (
                any::<usize>(),
                source(),
                proptest::collection::vec((any::<usize>(), 1u8..=255), 1..4),
                proptest::option::weighted(0.2, any::<usize>()),
            )
                .prop_map(|(pick, from, edits, truncate)| Op::Mutate { pick, from, edits, truncate }),
            2 => (any::<usize>(), source()).prop_map(|(pick, from)| Op::Replay { pick, from }),
            3 => (
                any::<bool>(),
                proptest::collection::vec((0usize..80, 1u8..=255), 1..4),
                any::<bool>(),
            )
                .prop_map(|(to_server, edits, drop_original)| Op::Tamper { to_server, edits, drop_original }),
            1 => (0u16..1500).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn hostile_datagrams_never_hurt_the_session(
            seed in any::<u8>(),
            ops in proptest::collection::vec(op(), 1..48),
        ) {
            run(seed, &ops);
        }

        #[test]
        fn fuzz_target_accepts_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            endpoint(&bytes);
        }
    }

    #[test]
    fn the_capture_covers_every_kind_of_datagram() {
        let p = Pair::established(1);
        let leads: std::collections::BTreeSet<u8> = p
            .captured
            .iter()
            .map(|c| if c.data[0] >= 0x80 { 0x80 } else { c.data[0] })
            .collect();
        for lead in [32, 33, 34, 35, 36, 37, 0x80] {
            assert!(
                leads.contains(&lead),
                "no datagram with lead {lead} captured"
            );
        }
        // Data packets with a stats blob (keepalives) both ways.
        for to_server in [true, false] {
            assert!(p
                .captured
                .iter()
                .any(|c| c.to_server == to_server && c.data[0] & 0x81 == 0x81));
        }
    }

    /// Every single-bit flip of every captured datagram, from the genuine peer, except
    /// control messages: the session survives them all.
    #[test]
    fn every_bit_flip_of_a_data_packet_is_harmless() {
        let mut p = Pair::established(2);
        let captured = p.captured.clone();
        let mut flips = 0;
        for (i, c) in captured.iter().enumerate() {
            if c.data[0] < 0x80 {
                continue;
            }
            for bit in 0..c.data.len() * 8 {
                p.play(&Op::Mutate {
                    pick: i,
                    from: Source::Peer,
                    edits: vec![(bit / 8, 1 << (bit % 8))],
                    truncate: None,
                });
                flips += 1;
            }
        }
        assert!(flips > 1000, "{flips} flips");
        p.check_bounds();
        p.check_delivers(16);
    }
}
