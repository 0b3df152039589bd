//! The connection state machine on a hostile network: the body of the `endpoint` fuzz
//! target in `crates/netcore/fuzz`, kept here so the same check also runs as a property test.
//!
//! A client and a server [`Endpoint`] sit on the shared test harness ([`Pair`], the client
//! at [`CLIENT`], the server at [`SERVER`]). Keys and a real handshake are too slow to make
//! per input, so the starting states are built once per thread ([`Snapshot`]) and every input
//! plays against copies. An input picks a start ([`Start`]: the client has just dialled, so
//! the whole handshake runs under the input; or the session is established, after traffic of
//! every kind, every datagram of which was captured), then a sequence of [`Op`]s: time
//! passing while the two sides talk, messages of every size, hostile datagrams (random bytes,
//! mutated or replayed captures, from the genuine peer's address or from strangers), flights
//! altered, dropped, duplicated or reordered on the path, either side closing, the client
//! vanishing and coming back at the same address (a restart), and a captured connect request
//! replayed with a fresh cookie and a new id (an attacker on the path). Afterwards:
//!
//! - nothing panicked (a panic is what a fuzzer reports);
//! - after every op, each side holds at most one connection and buffers no more than its
//!   bounds;
//! - integrity, whatever happened: every message that arrived was sent; the reliable messages
//!   of one connection and channel arrive in order and exactly once, as a prefix of what was
//!   sent on it; no unreliable message arrives twice;
//! - liveness: the client's current connection comes up (or back, after a close or a
//!   restart) and delivers everything sent on it, both ways, in order, exactly once.
//!
//! Liveness is not promised after a *forged control message from a genuine peer's address*:
//! control messages are not authenticated (see `docs/SECURITY.md`), so someone on the path
//! who forges a `ConnectionClosed` with the right ids, or answers a handshake for the server,
//! can end or stall it by design. A replayed connect request with a new id is the exception
//! the endpoint defends against (the connection at that address is kept while its peer
//! answers probes), so it must not hurt unless the run also dropped datagrams (which can
//! silence the probes' answers) or named an id a genuine client uses.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::{ConnectionHandle, Endpoint, EndpointSetup, MAX_CONTROL_OUT};
use crate::connection::{ConnectionConfig, InMessage};
use crate::end_reason::EndReason;
use crate::sim::pair::{Datagram, Direction, EndpointNode, Pair, Wired, A, B};
use crate::time::Timestamp;
use crate::wire::control::{ConnectionClosed, ControlMessage, NoConnection};
use crate::wire::datagram::{classify, Lead};

/// The client's address.
pub const CLIENT: SocketAddr = A;
/// The server's address.
pub const SERVER: SocketAddr = B;

/// Most bytes one side may buffer: a full send buffer per lane the ops use, plus a full
/// queue of control replies.
const BUFFER_BOUND: usize = 4 * 512 * 1024 + MAX_CONTROL_OUT * 1300;
/// Most ops read from one input.
pub const MAX_OPS: usize = 64;
/// Channels the ops send on (300 shares lane 44 with nothing; it checks the channel prefix).
const CHANNELS: [i32; 4] = [0, 1, 2, 300];
/// Most timer runs (each with a round) after an input that promised no liveness: as many
/// as the fixed 50 ms steps over one second this replaced.
const TAIL_ROUNDS: usize = 20;
/// Most client restarts in one input (each uses its own fresh endpoint, so ids differ).
const MAX_RESTARTS: usize = 6;

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

/// What happens to the next flight in one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlightAction {
    /// Lost entirely.
    Drop,
    /// Every datagram arrives twice.
    Duplicate,
    /// The datagrams arrive in reverse order.
    Reverse,
}

/// Where an input starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The client has just called connect; nothing was sent yet.
    Dialing,
    /// Handshake done, traffic of every kind exchanged (and captured).
    Established,
}

/// One step of an input.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// A fresh reliable message is sent and, in the next round, the first datagram going
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
    /// A fresh reliable message is sent, and the next round's flight in that direction is
    /// dropped, duplicated or reversed.
    Flight {
        /// Direction.
        to_server: bool,
        /// What happens to it.
        action: FlightAction,
    },
    /// Time passes (timers run) and the two sides exchange what they have.
    Advance {
        /// Milliseconds.
        ms: u16,
    },
    /// The application sends a message (the client dials again if its connection is gone).
    Send {
        /// From the client (else from the server).
        to_server: bool,
        /// Reliable (else unreliable).
        reliable: bool,
        /// Index into the channels used.
        channel: u8,
        /// Size in bytes (above the MTU it is split into segments).
        len: u16,
    },
    /// The client closes its connection (and dials again on its next send).
    CloseClient,
    /// The server closes its connection with the client.
    CloseServer,
    /// The client vanishes without a word and a new one (new keys, new ids) dials from the
    /// same address: a process restart.
    Restart,
    /// Someone on the path replays the client's captured connect request from the client's
    /// address with a cookie valid now and another client id.
    ForgeConnect {
        /// The id it claims.
        client_id: u32,
    },
}

/// A datagram seen during the genuine exchange.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Sent to the server (else to the client).
    pub to_server: bool,
    /// The bytes.
    pub data: Vec<u8>,
}

/// What the path does to the next flight in one direction.
#[derive(Clone, Debug)]
enum Plan {
    Tamper {
        edits: Vec<(usize, u8)>,
        drop_original: bool,
    },
    Flight(FlightAction),
}

/// The path between the two nodes, seen from the [`Pair`]'s tap.
#[derive(Default)]
struct Path {
    /// Keep every datagram (while the snapshot is built).
    capture: bool,
    captured: Vec<Captured>,
    /// For the next flight going to the server (`true`) or to the client.
    plan: Option<(bool, Plan)>,
    /// An altered control message reached a node from its genuine peer.
    forged_control: bool,
    /// Datagrams lost on the path.
    dropped: u64,
}

impl Path {
    fn see(&mut self, dir: Direction, flight: &mut Vec<Datagram>) {
        let to_server = dir == Direction::AtoB;
        // A pair hands a node's whole flight to the other node; replies to strangers (the
        // sources the ops make up) go elsewhere on a real network.
        let peer = if to_server { SERVER } else { CLIENT };
        flight.retain(|(dest, _)| *dest == peer);
        if self.capture {
            self.captured.extend(flight.iter().map(|(_, d)| Captured {
                to_server,
                data: d.clone(),
            }));
        }
        if self.plan.as_ref().is_none_or(|(d, _)| *d != to_server) {
            return;
        }
        let Some((_, plan)) = self.plan.take() else {
            return;
        };
        match plan {
            Plan::Tamper {
                edits,
                drop_original,
            } => {
                let Some((dest, first)) = flight.first().cloned() else {
                    return;
                };
                let mut bad = first;
                for &(pos, x) in &edits {
                    let i = pos % bad.len().max(1);
                    if let Some(b) = bad.get_mut(i) {
                        *b ^= x;
                    }
                }
                if is_control(&bad) {
                    self.forged_control = true;
                }
                if drop_original {
                    self.dropped += 1;
                    flight[0] = (dest, bad);
                } else {
                    flight.insert(0, (dest, bad));
                }
            }
            Plan::Flight(FlightAction::Drop) => {
                self.dropped += flight.len() as u64;
                flight.clear();
            }
            Plan::Flight(FlightAction::Duplicate) => {
                let copy = flight.clone();
                flight.extend(copy);
            }
            Plan::Flight(FlightAction::Reverse) => flight.reverse(),
        }
    }
}

/// Whether a datagram has a control message's lead byte.
fn is_control(d: &[u8]) -> bool {
    matches!(classify(d), Ok(Lead::Control(_)))
}

/// The sender of a message, the connection it went on and its channel: what the
/// integrity check compares a receiver's sequence with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct StreamKey {
    from_server: bool,
    /// The client's generation (restarts so far) for its messages; 0 for the server's.
    gen: u8,
    /// The sender's connection serial.
    serial: u64,
    channel: i32,
}

/// Bytes every message starts with: reliable flag, stream key, a counter.
const HEADER: usize = 1 + 1 + 1 + 8 + 4 + 4;

fn message(key: StreamKey, reliable: bool, k: u32, len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(len.max(HEADER));
    m.push(u8::from(reliable));
    m.push(u8::from(key.from_server));
    m.push(key.gen);
    m.extend_from_slice(&key.serial.to_le_bytes());
    m.extend_from_slice(&key.channel.to_le_bytes());
    m.extend_from_slice(&k.to_le_bytes());
    let fill = k as u8;
    m.resize(len.max(HEADER), fill);
    m
}

/// A message's header: reliable flag, stream key and counter.
fn parse(m: &[u8]) -> Option<(bool, StreamKey, u32)> {
    let h = m.get(..HEADER)?;
    let serial = u64::from_le_bytes(h.get(3..11)?.try_into().ok()?);
    let channel = i32::from_le_bytes(h.get(11..15)?.try_into().ok()?);
    let k = u32::from_le_bytes(h.get(15..19)?.try_into().ok()?);
    Some((
        h[0] == 1,
        StreamKey {
            from_server: h[1] == 1,
            gen: h[2],
            serial,
            channel,
        },
        k,
    ))
}

/// What the application sent (shared buffers: a copy of the snapshot's is cheap).
#[derive(Clone, Default)]
struct Sent {
    reliable: BTreeMap<StreamKey, Vec<Bytes>>,
    /// By the message's counter, unique per message sent (looking messages up by their bytes
    /// cost a byte comparison per tree level, each reported to libFuzzer's memcmp hook).
    unreliable: BTreeMap<u32, Bytes>,
    next: u32,
}

/// The starting states, built once per thread.
pub struct Snapshot {
    dialing: State,
    established: State,
    captured: Rc<Vec<Captured>>,
    /// Endpoints for restarted clients, each with its own keys.
    fresh_clients: Rc<Vec<EndpointNode>>,
    /// A genuine connect request of the first client.
    connect_request: Option<Rc<Vec<u8>>>,
}

/// One starting state.
#[derive(Clone)]
struct State {
    client: EndpointNode,
    server: EndpointNode,
    now: Timestamp,
    sent: Sent,
    client_ids: BTreeSet<u32>,
}

thread_local! {
    static SNAPSHOT: Snapshot = Snapshot::build();
}

fn config() -> ConnectionConfig {
    ConnectionConfig::default()
}

impl Snapshot {
    /// Dials, keeps that state, then runs the handshake and traffic of every kind
    /// (reliable and unreliable, large and small, keepalives with their stats blob both
    /// ways), capturing every datagram, and keeps the result.
    fn build() -> Snapshot {
        let cfg = config();
        let client = EndpointNode::new(Endpoint::new(cfg, EndpointSetup::for_tests(1)));
        let server = EndpointNode::new(Endpoint::new(cfg, EndpointSetup::for_tests(102)));
        let path = Rc::new(RefCell::new(Path {
            capture: true,
            ..Path::default()
        }));
        // The dialing start has keys and ids of its own: the captured datagrams belong to
        // another session there, as stale datagrams on a real network would.
        let dialing = {
            let client = EndpointNode::new(Endpoint::new(cfg, EndpointSetup::for_tests(3)));
            let server = EndpointNode::new(Endpoint::new(cfg, EndpointSetup::for_tests(104)));
            let mut h = Harness::wire(Pair::new(client, server), Rc::default(), Sent::default());
            h.connect_client();
            h.state()
        };
        let mut h = Harness::wire(Pair::new(client, server), path.clone(), Sent::default());
        h.connect_client();
        h.send(true, true, 1, 40);
        h.send(true, false, 1, 40);
        for _ in 0..6 {
            h.net.advance(Duration::from_millis(1));
        }
        assert!(
            h.client_conn()
                .and_then(|c| h.net.a.endpoint.connection(c))
                .is_some_and(|c| c.is_connected()),
            "the handshake completes"
        );
        h.send(false, true, 2, 40);
        h.send(false, true, 2, 3000);
        h.send(false, false, 3, 2500);
        for _ in 0..6 {
            h.net.advance(Duration::from_millis(10));
        }
        for i in 0..12u8 {
            h.send(true, i % 3 != 0, i % 4, 30 + u16::from(i) * 50);
            h.send(false, i % 4 != 0, i % 4, 30 + u16::from(i) * 40);
            h.net.advance(Duration::from_millis(7));
        }
        for _ in 0..4 {
            h.net.advance(Duration::from_millis(30));
        }
        // Quiet long enough for keepalives (with their stats blob) both ways: both sides'
        // are due at once, and cross on the way.
        h.net.now += Duration::from_secs(4);
        let now = h.net.now;
        h.net.a.on_timeout(now);
        h.net.b.on_timeout(now);
        let mut to_client = Vec::new();
        h.net
            .b
            .transmit(now, &mut |_, d| to_client.push(d.to_vec()));
        h.net.round();
        for d in to_client {
            h.net.a.receive(now, SERVER, &d);
            path.borrow_mut().captured.push(Captured {
                to_server: false,
                data: d,
            });
        }
        h.net.advance(Duration::from_millis(1));
        h.net.advance(Duration::from_millis(1));
        path.borrow_mut().capture = false;
        let established = h.state();
        let mut captured = std::mem::take(&mut path.borrow_mut().captured);
        // A close and a NoConnection for other ids, so mutations reach those decoders.
        let (cid, sid) = h.ids();
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
                captured.push(Captured { to_server, data: d });
            }
        }
        let connect_request = captured
            .iter()
            .find(|c| c.data.first() == Some(&34))
            .map(|c| Rc::new(c.data.clone()));
        let fresh_clients = (0..MAX_RESTARTS as u8)
            .map(|i| EndpointNode::new(Endpoint::new(cfg, EndpointSetup::for_tests(11 + i))))
            .collect();
        Snapshot {
            dialing,
            established,
            captured: Rc::new(captured),
            fresh_clients: Rc::new(fresh_clients),
            connect_request,
        }
    }
}

/// A copy of a starting state with the input's ops being played on it.
pub struct Harness {
    /// The client (`a`) and the server (`b`).
    pub net: Pair<EndpointNode, EndpointNode>,
    path: Rc<RefCell<Path>>,
    captured: Rc<Vec<Captured>>,
    fresh_clients: Rc<Vec<EndpointNode>>,
    connect_request: Option<Rc<Vec<u8>>>,
    sent: Sent,
    /// Restarts so far.
    gen: u8,
    /// What earlier clients received before they vanished: (generation, connection, message).
    retired: Vec<(u8, ConnectionHandle, InMessage)>,
    /// Every client connection id used by a genuine client.
    client_ids: BTreeSet<u32>,
    /// Ids claimed by forged connect requests.
    forged_ids: BTreeSet<u32>,
    /// An altered control message was sent from a genuine peer's address.
    forged_control: bool,
}

impl Harness {
    fn wire(
        mut net: Pair<EndpointNode, EndpointNode>,
        path: Rc<RefCell<Path>>,
        sent: Sent,
    ) -> Self {
        let tap_path = path.clone();
        net.tap = Some(Box::new(move |dir, flight| {
            tap_path.borrow_mut().see(dir, flight)
        }));
        Harness {
            net,
            path,
            captured: Rc::new(Vec::new()),
            fresh_clients: Rc::new(Vec::new()),
            connect_request: None,
            sent,
            gen: 0,
            retired: Vec::new(),
            client_ids: BTreeSet::new(),
            forged_ids: BTreeSet::new(),
            forged_control: false,
        }
    }

    fn state(&self) -> State {
        let mut client = self.net.a.clone();
        let mut server = self.net.b.clone();
        // 200 KiB of full buckets would be copied by every input otherwise.
        client.endpoint.forget_rate_limit_tables();
        server.endpoint.forget_rate_limit_tables();
        State {
            client,
            server,
            now: self.net.now,
            sent: self.sent.clone(),
            client_ids: self.client_ids.clone(),
        }
    }

    /// A copy of the thread's starting state `start`.
    pub fn start(start: Start) -> Harness {
        SNAPSHOT.with(|s| {
            let st = match start {
                Start::Dialing => &s.dialing,
                Start::Established => &s.established,
            };
            let mut net = Pair::new(st.client.clone(), st.server.clone());
            net.now = st.now;
            let mut h = Harness::wire(net, Rc::new(RefCell::new(Path::default())), st.sent.clone());
            h.client_ids = st.client_ids.clone();
            h.captured = s.captured.clone();
            h.fresh_clients = s.fresh_clients.clone();
            h.connect_request = s.connect_request.clone();
            h
        })
    }

    /// Every datagram of the genuine exchange (the snapshot's capture).
    pub fn captured(&self) -> &[Captured] {
        &self.captured
    }

    /// (client's id, server's id) of the live connection.
    pub fn ids(&self) -> (u32, u32) {
        let c = self
            .client_conn()
            .and_then(|h| self.net.a.endpoint.connection(h));
        let s = self
            .server_conn()
            .and_then(|h| self.net.b.endpoint.connection(h));
        (c.map_or(0, |c| c.local_id()), s.map_or(0, |c| c.local_id()))
    }

    fn client_conn(&self) -> Option<ConnectionHandle> {
        self.net.a.endpoint.connection_at(SERVER)
    }

    fn server_conn(&self) -> Option<ConnectionHandle> {
        self.net.b.endpoint.connection_at(CLIENT)
    }

    fn connect_client(&mut self) -> Option<ConnectionHandle> {
        let now = self.net.now;
        let h = self.net.a.endpoint.connect(now, SERVER, None, true)?;
        self.client_ids.insert(h.id());
        Some(h)
    }

    /// The client's connection, dialling again when the last one is gone (forgetting the
    /// dead one, as the messages layer does).
    fn live_client_conn(&mut self) -> Option<ConnectionHandle> {
        match self.client_conn() {
            Some(h)
                if self
                    .net
                    .a
                    .endpoint
                    .connection(h)
                    .is_some_and(|c| !c.is_dead()) =>
            {
                Some(h)
            }
            Some(h) => {
                self.net.a.endpoint.forget(h);
                self.connect_client()
            }
            None => self.connect_client(),
        }
    }

    /// Sends a message from the client (`from_client`) or the server and records it.
    fn send(&mut self, from_client: bool, reliable: bool, channel: u8, len: u16) {
        let now = self.net.now;
        let channel = CHANNELS[usize::from(channel) % CHANNELS.len()];
        let (h, gen) = if from_client {
            (self.live_client_conn(), self.gen)
        } else {
            (self.server_conn(), 0)
        };
        let Some(h) = h else { return };
        let key = StreamKey {
            from_server: !from_client,
            gen,
            serial: h.serial(),
            channel,
        };
        self.sent.next += 1;
        let m = message(key, reliable, self.sent.next, usize::from(len));
        let node = if from_client {
            &mut self.net.a
        } else {
            &mut self.net.b
        };
        let Some(c) = node.endpoint.connection_mut(h) else {
            return;
        };
        if !from_client && !c.is_connected() {
            return;
        }
        if c.send(now, channel, reliable, true, &m).is_ok() {
            if reliable {
                self.sent
                    .reliable
                    .entry(key)
                    .or_default()
                    .push(Bytes::from(m));
            } else {
                self.sent.unreliable.insert(self.sent.next, Bytes::from(m));
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
        if from == Source::Peer && is_control(data) && !self.captured.iter().any(|c| c.data == data)
        {
            // Only a well-formed challenge request is harmless from the peer's address; any
            // other altered control message may end or stall a session by design.
            let harmless = matches!(
                ControlMessage::decode(data),
                Ok(ControlMessage::ChallengeRequest(_)) | Err(_)
            );
            self.forged_control |= !harmless;
        }
        let addr = Self::source(to_server, from);
        let now = self.net.now;
        if to_server {
            self.net.b.receive(now, addr, data);
        } else {
            self.net.a.receive(now, addr, data);
        }
    }

    /// The client vanishes; a fresh one at the same address dials.
    fn restart(&mut self) {
        if usize::from(self.gen) >= self.fresh_clients.len() {
            return;
        }
        let fresh = self.fresh_clients[usize::from(self.gen)].clone();
        let old = std::mem::replace(&mut self.net.a, fresh);
        let gen = self.gen;
        self.retired
            .extend(old.received.into_iter().map(|(h, m)| (gen, h, m)));
        self.gen += 1;
        self.connect_client();
    }

    fn forge_connect(&mut self, client_id: u32) {
        let Some(genuine) = self.connect_request.clone() else {
            return;
        };
        let Ok(ControlMessage::ConnectRequest(mut req)) = ControlMessage::decode(&genuine) else {
            return;
        };
        req.client_connection_id = Some(client_id);
        req.challenge = Some(self.net.b.endpoint.cookie_for(CLIENT, self.net.now));
        let mut d = Vec::new();
        if ControlMessage::ConnectRequest(req).encode(&mut d).is_ok() {
            self.forged_ids.insert(client_id);
            let now = self.net.now;
            self.net.b.receive(now, CLIENT, &d);
        }
    }

    /// Plays one op.
    pub fn play(&mut self, op: &Op) {
        match op {
            Op::Raw {
                to_server,
                from,
                bytes,
            } => self.inject(*to_server, *from, bytes),
            Op::Replay { pick, from } => {
                if let Some(c) = self.pick(*pick) {
                    self.inject(c.to_server, *from, &c.data);
                }
            }
            Op::Mutate {
                pick,
                from,
                edits,
                truncate,
            } => {
                let Some(c) = self.pick(*pick) else { return };
                let mut d = c.data;
                for &(pos, x) in edits {
                    if !d.is_empty() {
                        let i = pos % d.len();
                        d[i] ^= x;
                    }
                }
                if let Some(t) = truncate {
                    d.truncate(t % (d.len() + 1));
                }
                self.inject(c.to_server, *from, &d);
            }
            Op::Tamper {
                to_server,
                edits,
                drop_original,
            } => {
                self.send(*to_server, true, 1, 60);
                self.path.borrow_mut().plan = Some((
                    *to_server,
                    Plan::Tamper {
                        edits: edits.clone(),
                        drop_original: *drop_original,
                    },
                ));
                self.net.advance(Duration::from_millis(1));
                self.path.borrow_mut().plan = None;
            }
            Op::Flight { to_server, action } => {
                self.send(*to_server, true, 2, 80);
                self.path.borrow_mut().plan = Some((*to_server, Plan::Flight(*action)));
                self.net.advance(Duration::from_millis(1));
                self.path.borrow_mut().plan = None;
            }
            Op::Advance { ms } => {
                self.net.advance(Duration::from_millis(u64::from(*ms)));
            }
            Op::Send {
                to_server,
                reliable,
                channel,
                len,
            } => self.send(*to_server, *reliable, *channel, *len),
            Op::CloseClient => {
                if let Some(h) = self.client_conn() {
                    self.net.a.endpoint.close(h, EndReason::App(1001), "fuzz");
                }
            }
            Op::CloseServer => {
                if let Some(h) = self.server_conn() {
                    self.net.b.endpoint.close(h, EndReason::App(1002), "fuzz");
                }
            }
            Op::Restart => self.restart(),
            Op::ForgeConnect { client_id } => self.forge_connect(*client_id),
        }
    }

    fn pick(&self, pick: usize) -> Option<Captured> {
        if self.captured.is_empty() {
            return None;
        }
        Some(self.captured[pick % self.captured.len()].clone())
    }

    /// Whether liveness is promised (see the module docs).
    pub fn liveness_promised(&self) -> bool {
        let path = self.path.borrow();
        let forged_connect = !self.forged_ids.is_empty();
        !(self.forged_control
            || path.forged_control
            || (forged_connect && path.dropped > 0)
            || self
                .forged_ids
                .iter()
                .any(|id| self.client_ids.contains(id)))
    }

    /// Bounds that hold whatever arrived: one connection per side, bounded buffers.
    pub fn check_bounds(&self) {
        for (name, ep) in [
            ("client", &self.net.a.endpoint),
            ("server", &self.net.b.endpoint),
        ] {
            assert!(
                ep.connection_count() <= 1,
                "{name} holds {} connections",
                ep.connection_count()
            );
            assert!(
                ep.buffered_bytes() <= BUFFER_BOUND,
                "{name} buffers {} bytes",
                ep.buffered_bytes()
            );
        }
    }

    /// Every message that arrived was sent; per connection and channel, the reliable ones are
    /// the sent sequence's prefix, in order, once; no unreliable message arrived twice.
    pub fn check_integrity(&self) {
        let mut groups: BTreeMap<(bool, u8, ConnectionHandle, i32), Vec<&InMessage>> =
            BTreeMap::new();
        let received = self
            .retired
            .iter()
            .map(|(g, h, m)| (false, *g, *h, m))
            .chain(
                self.net
                    .a
                    .received
                    .iter()
                    .map(|(h, m)| (false, self.gen, *h, m)),
            )
            .chain(self.net.b.received.iter().map(|(h, m)| (true, 0, *h, m)));
        let mut unreliable = BTreeSet::new();
        for (at_server, gen, h, m) in received {
            let (reliable, key, k) = parse(&m.data).expect("a message that was never sent arrived");
            assert_eq!(
                key.from_server, !at_server,
                "a message came back to its sender"
            );
            assert_eq!(
                key.channel, m.channel,
                "a message arrived on another channel"
            );
            assert_eq!(reliable, m.send_flags != 0, "reliability flag changed");
            if reliable {
                groups
                    .entry((at_server, gen, h, m.channel))
                    .or_default()
                    .push(m);
            } else {
                assert!(
                    self.sent.unreliable.get(&k) == Some(&m.data),
                    "an unreliable message that was never sent arrived"
                );
                // The counter names one message sent (its bytes were just compared).
                assert!(unreliable.insert(k), "an unreliable message arrived twice");
            }
        }
        let mut seen_keys = BTreeSet::new();
        for (_, msgs) in groups {
            let key = parse(&msgs[0].data).map(|(_, key, _)| key);
            let key = key.expect("parsed above");
            assert!(
                seen_keys.insert(key),
                "one connection's messages arrived on two connections"
            );
            let sent = self.sent.reliable.get(&key).map_or(&[][..], |v| &v[..]);
            assert!(
                msgs.len() <= sent.len(),
                "{} reliable messages arrived, {} sent",
                msgs.len(),
                sent.len()
            );
            for (got, want) in msgs.iter().zip(sent) {
                assert!(
                    got.data == want,
                    "reliable messages out of order, duplicated or altered"
                );
            }
        }
    }

    fn paired(&self) -> Option<(ConnectionHandle, ConnectionHandle)> {
        Self::paired_in(&self.net)
    }

    /// The client's and the server's handles of one connection established at both ends.
    fn paired_in(
        net: &Pair<EndpointNode, EndpointNode>,
    ) -> Option<(ConnectionHandle, ConnectionHandle)> {
        let hc = net.a.endpoint.connection_at(SERVER)?;
        let hs = net.b.endpoint.connection_at(CLIENT)?;
        let c = net.a.endpoint.connection(hc)?;
        let s = net.b.endpoint.connection(hs)?;
        (c.is_connected()
            && s.is_connected()
            && c.remote_id() == Some(s.local_id())
            && s.remote_id() == Some(c.local_id()))
        .then_some((hc, hs))
    }

    /// The client's connection comes up (dialling again if it is gone), then everything sent
    /// on the two current connections arrives, with one more reliable message each way.
    pub fn check_delivers(&mut self) {
        let mut up = None;
        for _ in 0..300 {
            up = self.paired();
            if up.is_some() {
                break;
            }
            self.live_client_conn();
            // Up to 100 ms (then the client dials again if its connection died), but no
            // longer than it takes to come up: the idle timer rounds after that checked
            // nothing, and the sends below follow at once.
            let until = self.net.now + Duration::from_millis(100);
            self.net
                .run_until(until, 1000, |p| Self::paired_in(p).is_some());
        }
        // A reconnection while healing may have used an id a forged request claimed first:
        // then the promise is off (see `liveness_promised`).
        let Some((hc, hs)) = up else {
            if !self.liveness_promised() {
                return;
            }
            let c = self
                .client_conn()
                .and_then(|h| self.net.a.endpoint.connection(h));
            let s = self
                .server_conn()
                .and_then(|h| self.net.b.endpoint.connection(h));
            panic!(
                "the session did not come back within 30 s: client {:?}, server {:?}",
                c.map(|c| (c.state(), c.end().cloned())),
                s.map(|c| (c.state(), c.end().cloned())),
            )
        };
        self.send(true, true, 1, 100);
        self.send(false, true, 2, 100);
        let to_server: BTreeMap<i32, usize> = self.expected(false, self.gen, hc.serial());
        let to_client: BTreeMap<i32, usize> = self.expected(true, 0, hs.serial());
        let arrived = |got: &[(ConnectionHandle, InMessage)], h, want: &BTreeMap<i32, usize>| {
            want.iter().all(|(&ch, &n)| {
                got.iter()
                    .filter(|(g, m)| *g == h && m.channel == ch && m.send_flags != 0)
                    .count()
                    >= n
            })
        };
        let deadline = self.net.now + Duration::from_secs(30);
        let done = self.net.run_until(deadline, 100_000, |p| {
            arrived(&p.b.received, hs, &to_server) && arrived(&p.a.received, hc, &to_client)
        });
        if !done && !self.liveness_promised() {
            return;
        }
        assert!(done, "sent messages did not all arrive within 30 s");
        for (ep, h) in [(&self.net.a.endpoint, hc), (&self.net.b.endpoint, hs)] {
            let c = ep.connection(h).expect("connection");
            assert!(c.failure().is_none(), "failed: {:?}", c.failure());
        }
        self.check_integrity();
        self.check_bounds();
    }

    /// Runs the pair for `span` of simulated time, jumping from one timer to the next (each
    /// runs when it is due, then a round), at most `max_rounds` times, then to the end of
    /// the span: an idle pair costs a round or two, a busy one no more than `max_rounds`.
    pub fn run_on(&mut self, span: Duration, max_rounds: usize) {
        let end = self.net.now + span;
        for _ in 0..max_rounds {
            if !self.net.jump_to_next_timeout(end) {
                break;
            }
            self.net.round();
        }
        self.net.now = self.net.now.max(end);
        self.net.run_timers();
        self.net.round();
    }

    /// Reliable messages sent per channel on one connection.
    fn expected(&self, from_server: bool, gen: u8, serial: u64) -> BTreeMap<i32, usize> {
        self.sent
            .reliable
            .iter()
            .filter(|(k, _)| k.from_server == from_server && k.gen == gen && k.serial == serial)
            .map(|(k, v)| (k.channel, v.len()))
            .collect()
    }
}

/// Plays `ops` from `start` and checks the invariants of the module docs.
pub fn run(start: Start, ops: &[Op]) {
    let mut h = Harness::start(start);
    for op in ops {
        h.play(op);
        h.check_bounds();
    }
    h.finish();
}

impl Harness {
    /// The checks at the end of an input: liveness (with integrity) where it is promised,
    /// else bounds and integrity after the pair ran on a while.
    pub fn finish(&mut self) {
        if self.liveness_promised() {
            // Checks integrity too, at the end.
            self.check_delivers();
        } else {
            // Only bounds and integrity hold; run on a second so nothing panics later either.
            self.run_on(Duration::from_secs(1), TAIL_ROUNDS);
            self.check_bounds();
            self.check_integrity();
        }
    }
}

/// Reads an input: the first byte picks the [`Start`] (1: dialing), the rest is a sequence of [`Op`]s
/// (at most [`MAX_OPS`]); bytes missing at the end read as zero.
pub fn from_bytes(data: &[u8]) -> (Start, Vec<Op>) {
    // The handshake's crypto dominates an input's cost, so only a first byte of exactly 1
    // starts from dialing (the seeds that do keep it when mutated).
    let start = if data.first() == Some(&1) {
        Start::Dialing
    } else {
        Start::Established
    };
    let mut r = data.iter().copied().skip(1);
    let mut u8_ = move || r.next();
    // Every op takes at least a byte.
    let mut ops = Vec::with_capacity(data.len().saturating_sub(1).min(MAX_OPS));
    while ops.len() < MAX_OPS {
        let Some(tag) = u8_() else { break };
        let mut byte = || u8_().unwrap_or(0);
        let op = match tag % 12 {
            0 => {
                let flags = byte();
                let port = u16::from_le_bytes([byte(), byte()]);
                let len = usize::from(byte()) * 6;
                let bytes = (0..len).map(|_| byte()).collect();
                Op::Raw {
                    to_server: flags & 4 == 0,
                    from: source(flags, port),
                    bytes,
                }
            }
            1 => {
                let pick = usize::from(byte());
                let flags = byte();
                let port = u16::from_le_bytes([byte(), byte()]);
                let count = usize::from(byte() % 8);
                let edits = (0..count)
                    .map(|_| {
                        let pos = u16::from_le_bytes([byte(), byte()]);
                        (usize::from(pos), byte())
                    })
                    .collect();
                Op::Mutate {
                    pick,
                    from: source(flags, port),
                    edits,
                    truncate: (flags & 8 != 0).then_some(usize::from(port)),
                }
            }
            2 => {
                let pick = usize::from(byte());
                let flags = byte();
                let port = u16::from_le_bytes([byte(), byte()]);
                Op::Replay {
                    pick,
                    from: source(flags, port),
                }
            }
            3 => {
                let flags = byte();
                let count = usize::from(byte() % 8) + 1;
                let edits = (0..count)
                    .map(|_| (usize::from(byte()), byte().max(1)))
                    .collect();
                Op::Tamper {
                    to_server: flags & 1 == 0,
                    edits,
                    drop_original: flags & 2 != 0,
                }
            }
            4 => Op::Advance {
                ms: u16::from_le_bytes([byte(), byte()]) % 2000,
            },
            5 => {
                let flags = byte();
                Op::Send {
                    to_server: flags & 1 == 0,
                    reliable: flags & 2 != 0,
                    channel: (flags >> 2) & 3,
                    len: u16::from_le_bytes([byte(), byte()]) % 4000,
                }
            }
            6 => {
                let flags = byte();
                Op::Flight {
                    to_server: flags & 1 == 0,
                    action: match (flags >> 1) % 3 {
                        0 => FlightAction::Drop,
                        1 => FlightAction::Duplicate,
                        _ => FlightAction::Reverse,
                    },
                }
            }
            7 => Op::CloseClient,
            8 => Op::CloseServer,
            9 => Op::Restart,
            10 => Op::ForgeConnect {
                client_id: u32::from_le_bytes([byte(), byte(), byte(), byte()]),
            },
            _ => Op::Advance {
                ms: u16::from(byte()),
            },
        };
        ops.push(op);
    }
    (start, ops)
}

fn source(flags: u8, port: u16) -> Source {
    match flags & 3 {
        0 | 1 => Source::Peer,
        2 => Source::SameIp(port),
        _ => Source::Other(flags >> 2, port),
    }
}

/// Writes `start` and `ops` in the form [`from_bytes`] reads (for seed inputs). Values the
/// byte form cannot hold (a pick above 255, say) are cut to it.
pub fn to_bytes(start: Start, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![u8::from(start == Start::Dialing)];
    let src = |from: Source, extra: u8| -> (u8, u16) {
        match from {
            Source::Peer => (extra, 0),
            Source::SameIp(port) => (2 | extra, port),
            Source::Other(host, port) => (3 | (host << 2) | extra, port),
        }
    };
    for op in ops {
        match op {
            Op::Raw {
                to_server,
                from,
                bytes,
            } => {
                let (mut flags, port) = src(*from, 0);
                if !to_server {
                    flags |= 4;
                }
                let len = bytes.len().div_ceil(6).min(255);
                out.push(0);
                out.push(flags);
                out.extend_from_slice(&port.to_le_bytes());
                out.push(len as u8);
                let mut b = bytes.clone();
                b.resize(len * 6, 0);
                out.extend_from_slice(&b);
            }
            Op::Mutate {
                pick,
                from,
                edits,
                truncate,
            } => {
                let (mut flags, mut port) = src(*from, 0);
                if let Some(t) = truncate {
                    flags |= 8;
                    port = *t as u16;
                }
                out.push(1);
                out.push(*pick as u8);
                out.push(flags);
                out.extend_from_slice(&port.to_le_bytes());
                out.push(edits.len().min(7) as u8);
                for &(pos, x) in edits.iter().take(7) {
                    out.extend_from_slice(&(pos as u16).to_le_bytes());
                    out.push(x);
                }
            }
            Op::Replay { pick, from } => {
                let (flags, port) = src(*from, 0);
                out.extend_from_slice(&[2, *pick as u8, flags]);
                out.extend_from_slice(&port.to_le_bytes());
            }
            Op::Tamper {
                to_server,
                edits,
                drop_original,
            } => {
                let flags = u8::from(!to_server) | (u8::from(*drop_original) << 1);
                let edits = if edits.is_empty() {
                    vec![(0, 1)]
                } else {
                    edits.clone()
                };
                out.extend_from_slice(&[3, flags, (edits.len().min(8) - 1) as u8]);
                for &(pos, x) in edits.iter().take(8) {
                    out.extend_from_slice(&[pos as u8, x]);
                }
            }
            Op::Advance { ms } => {
                out.push(4);
                out.extend_from_slice(&ms.to_le_bytes());
            }
            Op::Send {
                to_server,
                reliable,
                channel,
                len,
            } => {
                let flags =
                    u8::from(!to_server) | (u8::from(*reliable) << 1) | ((channel & 3) << 2);
                out.extend_from_slice(&[5, flags]);
                out.extend_from_slice(&len.to_le_bytes());
            }
            Op::Flight { to_server, action } => {
                let a = match action {
                    FlightAction::Drop => 0,
                    FlightAction::Duplicate => 1,
                    FlightAction::Reverse => 2,
                };
                out.extend_from_slice(&[6, u8::from(!to_server) | (a << 1)]);
            }
            Op::CloseClient => out.push(7),
            Op::CloseServer => out.push(8),
            Op::Restart => out.push(9),
            Op::ForgeConnect { client_id } => {
                out.push(10);
                out.extend_from_slice(&client_id.to_le_bytes());
            }
        }
    }
    out
}

/// The fuzz target: arbitrary bytes as a start and a sequence of ops.
pub fn endpoint(data: &[u8]) {
    let (start, ops) = from_bytes(data);
    run(start, &ops);
}

/// Seed inputs for the fuzz target, named: each reaches a different part of the state
/// machine with genuine datagrams (a whole handshake, traffic on every channel and size,
/// closes, a restart, a forged connect request, captured datagrams replayed and mutated).
pub fn seed_inputs() -> Vec<(&'static str, Vec<u8>)> {
    use Op::*;
    let wait = |ms| Advance { ms };
    let send = |to_server, reliable, channel, len| Send {
        to_server,
        reliable,
        channel,
        len,
    };
    let mut seeds = vec![
        (
            "handshake",
            to_bytes(
                Start::Dialing,
                &[wait(1), wait(1), wait(1), wait(1), wait(10)],
            ),
        ),
        (
            "handshake-then-traffic",
            to_bytes(
                Start::Dialing,
                &[
                    send(true, true, 1, 50),
                    wait(1),
                    wait(1),
                    wait(1),
                    send(false, true, 2, 3000),
                    send(false, false, 3, 2000),
                    wait(20),
                    send(true, false, 0, 10),
                    wait(20),
                ],
            ),
        ),
        (
            "handshake-lossy",
            to_bytes(
                Start::Dialing,
                &[
                    Flight {
                        to_server: true,
                        action: FlightAction::Drop,
                    },
                    wait(300),
                    Flight {
                        to_server: false,
                        action: FlightAction::Duplicate,
                    },
                    wait(300),
                    wait(300),
                ],
            ),
        ),
        (
            "traffic-every-size",
            to_bytes(
                Start::Established,
                &[
                    send(true, true, 0, 1),
                    send(true, true, 1, 1200),
                    send(true, true, 2, 3999),
                    send(false, false, 3, 2600),
                    send(false, true, 1, 700),
                    wait(5),
                    wait(50),
                ],
            ),
        ),
        (
            "close-and-reconnect",
            to_bytes(
                Start::Established,
                &[
                    CloseClient,
                    wait(1),
                    send(true, true, 1, 100),
                    wait(1),
                    wait(1),
                    wait(300),
                    CloseServer,
                    wait(1),
                    send(true, true, 2, 100),
                    wait(300),
                ],
            ),
        ),
        (
            "restart",
            to_bytes(
                Start::Established,
                &[
                    send(false, true, 1, 100),
                    Restart,
                    wait(1),
                    wait(1),
                    wait(300),
                    wait(300),
                    send(true, true, 1, 100),
                    wait(300),
                ],
            ),
        ),
        (
            "forged-connect",
            to_bytes(
                Start::Established,
                &[
                    ForgeConnect {
                        client_id: 0x1234_5678,
                    },
                    wait(250),
                    ForgeConnect {
                        client_id: 0x1234_5679,
                    },
                    wait(250),
                    ForgeConnect {
                        client_id: 0x1234_567a,
                    },
                    wait(250),
                    ForgeConnect {
                        client_id: 0x1234_567b,
                    },
                    wait(1500),
                ],
            ),
        ),
        (
            "tamper",
            to_bytes(
                Start::Established,
                &[
                    Tamper {
                        to_server: true,
                        edits: vec![(20, 1)],
                        drop_original: false,
                    },
                    Tamper {
                        to_server: false,
                        edits: vec![(3, 0x80)],
                        drop_original: true,
                    },
                    wait(500),
                ],
            ),
        ),
        (
            "strangers",
            to_bytes(
                Start::Established,
                &[
                    Raw {
                        to_server: true,
                        from: Source::Other(9, 4000),
                        bytes: vec![0x80, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
                    },
                    Replay {
                        pick: 0,
                        from: Source::SameIp(7),
                    },
                    Replay {
                        pick: 3,
                        from: Source::Other(1, 1),
                    },
                    wait(10),
                ],
            ),
        ),
    ];
    // Every captured datagram, replayed from the peer, and mutated from the peer and a
    // stranger: genuine bytes of every kind for the fuzzer to start from.
    let n = SNAPSHOT.with(|s| s.captured.len()).min(256);
    for pick in 0..n {
        let ops = [
            Replay {
                pick,
                from: Source::Peer,
            },
            Mutate {
                pick,
                from: Source::Peer,
                edits: vec![(pick * 7 + 9, 0x10)],
                truncate: None,
            },
            Mutate {
                pick,
                from: Source::Other(2, 9),
                edits: vec![(1, 0x01)],
                truncate: Some(pick + 20),
            },
            wait(20),
        ];
        seeds.push(("captured", to_bytes(Start::Established, &ops)));
    }
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn source() -> impl Strategy<Value = Source> {
        prop_oneof![
            3 => Just(Source::Peer),
            1 => any::<u16>().prop_map(Source::SameIp),
            1 => (0u8..64, any::<u16>()).prop_map(|(h, p)| Source::Other(h, p)),
        ]
    }

    /// Random bytes, biased toward lead bytes that get past the first check.
    fn raw_bytes() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec![0x80u8, 0x81, 0xc3, 32, 33, 34, 35, 36, 37, 0, 200]),
            proptest::collection::vec(any::<u8>(), 0..600),
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
            2 => (any::<bool>(), prop::sample::select(vec![
                    FlightAction::Drop, FlightAction::Duplicate, FlightAction::Reverse]))
                .prop_map(|(to_server, action)| Op::Flight { to_server, action }),
            3 => (0u16..1500).prop_map(|ms| Op::Advance { ms }),
            3 => (any::<bool>(), any::<bool>(), 0u8..4, 0u16..4000)
                .prop_map(|(to_server, reliable, channel, len)| Op::Send { to_server, reliable, channel, len }),
            1 => Just(Op::CloseClient),
            1 => Just(Op::CloseServer),
            1 => Just(Op::Restart),
            1 => any::<u32>().prop_map(|client_id| Op::ForgeConnect { client_id }),
        ]
    }

    fn start() -> impl Strategy<Value = Start> {
        prop_oneof![Just(Start::Dialing), Just(Start::Established)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn a_hostile_network_never_breaks_the_invariants(
            start in start(),
            ops in proptest::collection::vec(op(), 1..48),
        ) {
            run(start, &ops);
        }

        #[test]
        fn fuzz_target_accepts_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            endpoint(&bytes);
        }

        #[test]
        fn the_byte_form_reads_back(start in start(), ops in proptest::collection::vec(op(), 0..20)) {
            // Only values the byte form holds survive; write, read, write is a fixed point.
            let bytes = to_bytes(start, &ops);
            let (s, read) = from_bytes(&bytes);
            prop_assert_eq!(s, start);
            prop_assert_eq!(to_bytes(s, &read), bytes);
        }
    }

    #[test]
    fn replay_input() {
        if let Ok(hex) = std::env::var("FUZZ_INPUT") {
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let (start, ops) = from_bytes(&bytes);
            eprintln!("{start:?} {ops:#?}");
            run(start, &ops);
        }
    }

    #[test]
    fn the_capture_covers_every_kind_of_datagram() {
        let h = Harness::start(Start::Established);
        let leads: BTreeSet<u8> = h
            .captured()
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
            assert!(h
                .captured()
                .iter()
                .any(|c| c.to_server == to_server && c.data[0] & 0x81 == 0x81));
        }
    }

    #[test]
    fn every_seed_input_keeps_the_invariants_and_liveness() {
        for (name, bytes) in seed_inputs() {
            let (start, ops) = from_bytes(&bytes);
            let mut h = Harness::start(start);
            for op in &ops {
                h.play(op);
                h.check_bounds();
            }
            // Seeds are well-behaved except the captured datagrams mutated from the peer.
            if name != "captured" {
                assert!(h.liveness_promised(), "seed {name}");
            }
            run(start, &ops);
        }
    }

    /// A restarted client gets through, and the server's old connection ends with a reason
    /// (the new client answers the server's probe with NoConnection).
    #[test]
    fn a_restarted_client_gets_through_and_the_old_connection_fails() {
        let mut h = Harness::start(Start::Established);
        let (_, old_server_id) = h.ids();
        h.play(&Op::Restart);
        for _ in 0..20 {
            h.play(&Op::Advance { ms: 100 });
        }
        let (hc, hs) = h.paired().expect("the new client is connected");
        assert_ne!(hs.id(), old_server_id, "a new server connection");
        assert!(h.net.a.endpoint.connection(hc).is_some());
        let st = h.net.b.endpoint.stats();
        assert!(st.refused_connect_live >= 1, "{st:?}");
        h.check_delivers();
    }

    /// A replayed connect request with a fresh cookie and a new id, again and again, does
    /// not take the address from a live client.
    #[test]
    fn a_forged_connect_request_does_not_replace_a_live_session() {
        let mut h = Harness::start(Start::Established);
        let before = h.ids();
        for i in 0..40u32 {
            h.play(&Op::ForgeConnect {
                client_id: 0x7000_0000 + i,
            });
            h.play(&Op::Advance { ms: 97 });
        }
        assert_eq!(h.ids(), before, "the same connections");
        let st = h.net.b.endpoint.stats();
        assert_eq!(st.refused_connect_live, 40, "{st:?}");
        assert_eq!(st.peers_gone_silent, 0);
        assert!(h.liveness_promised());
        h.check_delivers();
    }

    /// Every single-bit flip of every captured data packet, from the genuine peer: the
    /// session survives them all.
    #[test]
    fn every_bit_flip_of_a_data_packet_is_harmless() {
        let mut h = Harness::start(Start::Established);
        let captured = h.captured().to_vec();
        let mut flips = 0;
        for (i, c) in captured.iter().enumerate() {
            if c.data[0] < 0x80 {
                continue;
            }
            for bit in 0..c.data.len() * 8 {
                h.play(&Op::Mutate {
                    pick: i,
                    from: Source::Peer,
                    edits: vec![(bit / 8, 1 << (bit % 8))],
                    truncate: None,
                });
                flips += 1;
            }
        }
        assert!(flips > 1000, "{flips} flips");
        assert!(h.liveness_promised());
        h.check_bounds();
        h.check_delivers();
    }
}
