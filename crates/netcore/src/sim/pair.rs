//! Two sans-IO nodes wired back to back with a hand-moved clock: the one test harness for
//! endpoint and messages tests, the Criterion benches and the fuzz checks.
//!
//! Where [`super::Network`] models links (loss, delay, bandwidth), a [`Pair`] is the
//! shortest path between two nodes: a *round* hands everything `a` sends to `b` at the same
//! instant, then everything `b` sends back to `a`, so a test steps a protocol exchange flight
//! by flight. Datagrams are copied into reused buffers, so a bench measures the protocol,
//! not the harness. A [`Tap`] sees (and may alter, drop or add to) each flight on its way,
//! for tests of a hostile path.

use std::net::SocketAddr;
use std::time::Duration;

use crate::connection::InMessage;
use crate::endpoint::{ConnectionHandle, Endpoint};
use crate::messages::Messages;
use crate::time::Timestamp;

/// Where the first node of a [`Pair`] sits.
pub const A: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    1000,
);
/// Where the second node of a [`Pair`] sits.
pub const B: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    2000,
);

/// A sans-IO node a [`Pair`] can drive: datagrams and `now` in, datagrams and a deadline out.
pub trait Wired {
    /// A datagram arrived from `from`.
    fn receive(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]);
    /// Hands every datagram due now to `send`.
    fn transmit(&mut self, now: Timestamp, send: &mut dyn FnMut(SocketAddr, &[u8]));
    /// The earliest time [`Wired::on_timeout`] must run.
    fn timeout(&self) -> Option<Timestamp>;
    /// Runs what is due.
    fn on_timeout(&mut self, now: Timestamp);
}

/// An [`Endpoint`] as a wired node, keeping what its connections delivered.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct EndpointNode {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Messages delivered, with the connection each came on, in arrival order.
    pub received: Vec<(ConnectionHandle, InMessage)>,
    scratch: Vec<InMessage>,
    buf: Vec<u8>,
}

impl EndpointNode {
    /// A node around `endpoint`.
    pub fn new(endpoint: Endpoint) -> Self {
        EndpointNode {
            endpoint,
            received: Vec::new(),
            scratch: Vec::new(),
            buf: Vec::with_capacity(1500),
        }
    }

    /// Takes the messages delivered so far.
    pub fn take_received(&mut self) -> Vec<(ConnectionHandle, InMessage)> {
        std::mem::take(&mut self.received)
    }
}

impl Wired for EndpointNode {
    fn receive(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]) {
        self.scratch.clear();
        let h = self
            .endpoint
            .handle_datagram(now, from, data, &mut self.scratch);
        if let Some(h) = h {
            self.received.extend(self.scratch.drain(..).map(|m| (h, m)));
        }
    }

    fn transmit(&mut self, now: Timestamp, send: &mut dyn FnMut(SocketAddr, &[u8])) {
        self.endpoint.poll_transmit(now, &mut self.buf, send);
    }

    fn timeout(&self) -> Option<Timestamp> {
        self.endpoint.poll_timeout()
    }

    fn on_timeout(&mut self, now: Timestamp) {
        self.endpoint.handle_timeout(now);
    }
}

impl Wired for Messages {
    fn receive(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]) {
        self.handle_datagram(now, from, data);
    }

    fn transmit(&mut self, now: Timestamp, send: &mut dyn FnMut(SocketAddr, &[u8])) {
        let mut buf = Vec::with_capacity(1500);
        self.poll_transmit(now, &mut buf, send);
    }

    fn timeout(&self) -> Option<Timestamp> {
        self.poll_timeout()
    }

    fn on_timeout(&mut self, now: Timestamp) {
        self.handle_timeout(now);
    }
}

/// Which way a flight goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From `a` to `b`.
    AtoB,
    /// From `b` to `a`.
    BtoA,
}

/// One datagram of a flight: its destination and bytes.
pub type Datagram = (SocketAddr, Vec<u8>);

/// Sees each flight before it is delivered and may change it.
pub type Tap = Box<dyn FnMut(Direction, &mut Vec<Datagram>)>;

/// Datagrams of one flight, in reused buffers.
#[derive(Default)]
struct Flight {
    bufs: Vec<Datagram>,
    len: usize,
    /// The flight as the tap sees it (reused, so a tapped round allocates nothing).
    tapped: Vec<Datagram>,
}

impl Flight {
    fn collect(&mut self, node: &mut dyn Wired, now: Timestamp) -> usize {
        self.len = 0;
        let (bufs, len) = (&mut self.bufs, &mut self.len);
        node.transmit(now, &mut |to, d| {
            if bufs.len() <= *len {
                bufs.push((to, Vec::with_capacity(1500)));
            }
            if let Some((dest, b)) = bufs.get_mut(*len) {
                *dest = to;
                b.clear();
                b.extend_from_slice(d);
                *len += 1;
            }
        });
        self.len
    }
}

/// Two nodes, `a` at [`A`] and `b` at [`B`], and the clock between them.
pub struct Pair<NA: Wired, NB: Wired> {
    /// The first node.
    pub a: NA,
    /// The second node.
    pub b: NB,
    /// Virtual time.
    pub now: Timestamp,
    /// Time that passes between the two halves of a round (a one-way trip); zero by default.
    pub one_way: Duration,
    /// Sees each flight on its way.
    pub tap: Option<Tap>,
    to_a: Flight,
    to_b: Flight,
}

impl<NA: Wired, NB: Wired> Pair<NA, NB> {
    /// `a` and `b`, one second into virtual time.
    pub fn new(a: NA, b: NB) -> Self {
        Pair {
            a,
            b,
            now: Timestamp::from_micros(1_000_000),
            one_way: Duration::ZERO,
            tap: None,
            to_a: Flight::default(),
            to_b: Flight::default(),
        }
    }

    /// One round: everything `a` sends goes to `b`, then everything `b` sends back to `a`.
    /// Returns the datagrams moved.
    pub fn round(&mut self) -> usize {
        let n = self.half(Direction::AtoB);
        self.now += self.one_way;
        let m = self.half(Direction::BtoA);
        self.now += self.one_way;
        n + m
    }

    fn half(&mut self, dir: Direction) -> usize {
        let now = self.now;
        let (flight, from): (&mut Flight, SocketAddr) = match dir {
            Direction::AtoB => (&mut self.to_b, A),
            Direction::BtoA => (&mut self.to_a, B),
        };
        match dir {
            Direction::AtoB => flight.collect(&mut self.a, now),
            Direction::BtoA => flight.collect(&mut self.b, now),
        };
        if let Some(tap) = &mut self.tap {
            flight.tapped.clear();
            flight.tapped.extend(flight.bufs.drain(..flight.len));
            tap(dir, &mut flight.tapped);
            flight.len = flight.tapped.len();
            flight.bufs.splice(0..0, flight.tapped.drain(..));
        }
        let to: &mut dyn Wired = match dir {
            Direction::AtoB => &mut self.b,
            Direction::BtoA => &mut self.a,
        };
        for (_, d) in flight.bufs.iter().take(flight.len) {
            to.receive(now, from, d);
        }
        flight.len
    }

    /// `n` rounds.
    pub fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round();
        }
    }

    /// Rounds until one moves nothing (at most `limit`); returns the rounds run.
    pub fn settle(&mut self, limit: usize) -> usize {
        for i in 0..limit {
            if self.round() == 0 {
                return i + 1;
            }
        }
        limit
    }

    /// The earliest deadline of either node.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        [self.a.timeout(), self.b.timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Moves the clock on by `d`, runs both nodes' due timers, then one round.
    pub fn advance(&mut self, d: Duration) -> usize {
        self.now += d;
        self.run_timers();
        self.round()
    }

    /// Runs the timers of both nodes that are due at `now`.
    pub fn run_timers(&mut self) {
        let (ta, tb) = (self.a.timeout(), self.b.timeout());
        self.run_due(ta, tb);
    }

    /// Runs the timers of the nodes whose deadlines, `ta` and `tb` as the nodes last gave
    /// them, are due at `now`. (One node's timers cannot move the other's deadline.)
    fn run_due(&mut self, ta: Option<Timestamp>, tb: Option<Timestamp>) {
        let now = self.now;
        if ta.is_some_and(|t| t <= now) {
            self.a.on_timeout(now);
        }
        if tb.is_some_and(|t| t <= now) {
            self.b.on_timeout(now);
        }
    }

    /// Jumps the clock to the earliest deadline of either node, if there is one at or before
    /// `limit`, and runs the timers due then; returns whether it did. Each node's deadline is
    /// asked once (a fuzz input spends a good share of its time in these jumps).
    pub fn jump_to_next_timeout(&mut self, limit: Timestamp) -> bool {
        let (ta, tb) = (self.a.timeout(), self.b.timeout());
        let Some(next) = ta.into_iter().chain(tb).min().filter(|&t| t <= limit) else {
            return false;
        };
        self.now = self.now.max(next);
        self.run_due(ta, tb);
        true
    }

    /// Jumps from deadline to deadline (running timers, then a round, at each) until
    /// `deadline` or until `done` holds; returns whether `done` held. At most `max_steps`
    /// jumps, so a node whose deadline stays in the past cannot hang a test.
    pub fn run_until(
        &mut self,
        deadline: Timestamp,
        max_steps: usize,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> bool {
        for _ in 0..max_steps {
            if done(self) {
                return true;
            }
            self.round();
            if !self.jump_to_next_timeout(deadline) {
                self.now = self.now.max(deadline);
                self.run_timers();
                self.round();
                return done(self);
            }
        }
        done(self)
    }
}

impl Pair<EndpointNode, EndpointNode> {
    /// Two endpoints, `a` dialling `b`, after the handshake; panics if it does not complete
    /// in a few rounds. Returns `a`'s and `b`'s handles of the connection.
    pub fn connected(a: Endpoint, b: Endpoint) -> (Self, ConnectionHandle, ConnectionHandle) {
        let mut p = Pair::new(EndpointNode::new(a), EndpointNode::new(b));
        let now = p.now;
        let ha =
            p.a.endpoint
                .connect(now, B, None, false)
                .expect("room for a connection");
        p.rounds(4);
        let hb =
            p.b.endpoint
                .handles()
                .next()
                .expect("b has the incoming connection");
        let up = |e: &Endpoint, h| e.connection(h).is_some_and(|c| c.is_connected());
        assert!(
            up(&p.a.endpoint, ha) && up(&p.b.endpoint, hb),
            "the handshake completes"
        );
        (p, ha, hb)
    }
}

/// One node at the centre and many at their own addresses around it, each wired only to the
/// centre: a server and its clients. A round hands everything the centre sends to the peer at
/// its destination, then everything each peer sends to the centre, at the same instant.
pub struct Hub<NC: Wired, NP: Wired> {
    /// The centre.
    pub center: NC,
    /// Where the centre sits.
    pub center_addr: SocketAddr,
    /// The peers and where each sits.
    pub peers: Vec<(SocketAddr, NP)>,
    /// Virtual time.
    pub now: Timestamp,
    flight: Flight,
}

impl<NC: Wired, NP: Wired> Hub<NC, NP> {
    /// A hub around `center` at `center_addr`, one second into virtual time.
    pub fn new(center: NC, center_addr: SocketAddr, peers: Vec<(SocketAddr, NP)>) -> Self {
        Hub {
            center,
            center_addr,
            peers,
            now: Timestamp::from_micros(1_000_000),
            flight: Flight::default(),
        }
    }

    /// One round; returns the datagrams moved. Datagrams to an address with no peer are lost.
    pub fn round(&mut self) -> usize {
        let now = self.now;
        let n = self.flight.collect(&mut self.center, now);
        for (to, d) in self.flight.bufs.iter().take(n) {
            if let Some((_, p)) = self.peers.iter_mut().find(|(a, _)| a == to) {
                p.receive(now, self.center_addr, d);
            }
        }
        let mut moved = n;
        for (addr, p) in self.peers.iter_mut() {
            let m = self.flight.collect(p, now);
            for (_, d) in self.flight.bufs.iter().take(m) {
                self.center.receive(now, *addr, d);
            }
            moved += m;
        }
        moved
    }

    /// `n` rounds.
    pub fn rounds(&mut self, n: usize) {
        for _ in 0..n {
            self.round();
        }
    }

    /// The earliest deadline of any node.
    pub fn next_timeout(&self) -> Option<Timestamp> {
        self.peers
            .iter()
            .filter_map(|(_, p)| p.timeout())
            .chain(self.center.timeout())
            .min()
    }

    /// Runs the timers due at `now` on every peer, then on the centre.
    pub fn run_timers(&mut self) {
        let now = self.now;
        for (_, p) in self.peers.iter_mut() {
            if p.timeout().is_some_and(|t| t <= now) {
                p.on_timeout(now);
            }
        }
        if self.center.timeout().is_some_and(|t| t <= now) {
            self.center.on_timeout(now);
        }
    }
}
