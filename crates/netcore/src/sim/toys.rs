//! Small nodes for the simulator's own tests: a paced sender, a recording (echoing) sink, an
//! alarm clock, and a node whose timer is broken.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use super::node::SimNode;
use crate::time::Timestamp;

/// Sequence number carried in the first 4 bytes of a toy datagram.
pub fn seq_of(data: &[u8]) -> Option<u32> {
    let head: [u8; 4] = data.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(head))
}

/// Sends `total` numbered datagrams of `size` bytes to `peer`, `burst` per tick, one tick per
/// `interval`, handing out at most `per_poll` per `poll_transmit` call. Records echoes.
pub struct Pinger {
    peer: SocketAddr,
    total: u32,
    interval: Duration,
    size: usize,
    burst: u32,
    per_poll: usize,
    next_seq: u32,
    next_at: Option<Timestamp>,
    queued: VecDeque<Vec<u8>>,
    /// Send time of each sequence number.
    pub sent_at: Vec<Timestamp>,
    /// Echoes received: (time, sequence number).
    pub echoes: Vec<(Timestamp, u32)>,
}

impl Pinger {
    pub fn new(peer: SocketAddr, total: u32, interval: Duration, size: usize) -> Self {
        Pinger {
            peer,
            total,
            interval,
            size: size.max(4),
            burst: 1,
            per_poll: usize::MAX,
            next_seq: 0,
            next_at: (total > 0).then_some(Timestamp::ZERO),
            queued: VecDeque::new(),
            sent_at: Vec::new(),
            echoes: Vec::new(),
        }
    }

    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = burst.max(1);
        self
    }

    pub fn per_poll(mut self, per_poll: usize) -> Self {
        self.per_poll = per_poll.max(1);
        self
    }
}

impl SimNode for Pinger {
    fn handle_datagram(&mut self, now: Timestamp, _from: SocketAddr, data: &[u8]) {
        if let Some(seq) = seq_of(data) {
            self.echoes.push((now, seq));
        }
    }

    fn poll_transmit(&mut self, _now: Timestamp, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        for _ in 0..self.per_poll {
            let Some(d) = self.queued.pop_front() else {
                break;
            };
            out.push((self.peer, d));
        }
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.next_at
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        let Some(at) = self.next_at else { return };
        if now < at {
            return;
        }
        for _ in 0..self.burst {
            if self.next_seq >= self.total {
                break;
            }
            let mut d = vec![0u8; self.size];
            d[..4].copy_from_slice(&self.next_seq.to_be_bytes());
            self.queued.push_back(d);
            self.sent_at.push(now);
            self.next_seq += 1;
        }
        // Skip missed ticks (after a pause) rather than bursting to catch up.
        let next = (at + self.interval).max(now + self.interval);
        self.next_at = (self.next_seq < self.total).then_some(next);
    }
}

/// One datagram a [`Sink`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub at: Timestamp,
    pub from: SocketAddr,
    pub seq: Option<u32>,
    pub len: usize,
}

/// Records every datagram; with `echo`, sends each one back to its sender.
#[derive(Default)]
pub struct Sink {
    echo: bool,
    /// Datagrams waiting to go out (tests may push here through `Network::with_node`).
    pub outbox: Vec<(SocketAddr, Vec<u8>)>,
    pub received: Vec<Received>,
}

impl Sink {
    pub fn new() -> Self {
        Sink::default()
    }

    pub fn echo() -> Self {
        Sink {
            echo: true,
            ..Sink::default()
        }
    }

    /// Sequence numbers in arrival order.
    pub fn seqs(&self) -> Vec<u32> {
        self.received.iter().filter_map(|r| r.seq).collect()
    }
}

impl SimNode for Sink {
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]) {
        self.received.push(Received {
            at: now,
            from,
            seq: seq_of(data),
            len: data.len(),
        });
        if self.echo {
            self.outbox.push((from, data.to_vec()));
        }
    }

    fn poll_transmit(&mut self, _now: Timestamp, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        out.append(&mut self.outbox);
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    fn handle_timeout(&mut self, _now: Timestamp) {}
}

/// Asks for timeouts at fixed deadlines (in order) and records when each fired.
pub struct Alarm {
    deadlines: VecDeque<Timestamp>,
    pub fired: Vec<Timestamp>,
}

impl Alarm {
    pub fn new(deadlines: &[Timestamp]) -> Self {
        Alarm {
            deadlines: deadlines.iter().copied().collect(),
            fired: Vec::new(),
        }
    }
}

impl SimNode for Alarm {
    fn handle_datagram(&mut self, _now: Timestamp, _from: SocketAddr, _data: &[u8]) {}

    fn poll_transmit(&mut self, _now: Timestamp, _out: &mut Vec<(SocketAddr, Vec<u8>)>) {}

    fn poll_timeout(&self) -> Option<Timestamp> {
        self.deadlines.front().copied()
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        if self.deadlines.front().is_some_and(|d| *d <= now) {
            self.deadlines.pop_front();
            self.fired.push(now);
        }
    }
}

/// A broken node: always wants a timeout at time zero and never moves it.
#[derive(Default)]
pub struct StuckTimer {
    pub handled: u64,
}

impl SimNode for StuckTimer {
    fn handle_datagram(&mut self, _now: Timestamp, _from: SocketAddr, _data: &[u8]) {}

    fn poll_transmit(&mut self, _now: Timestamp, _out: &mut Vec<(SocketAddr, Vec<u8>)>) {}

    fn poll_timeout(&self) -> Option<Timestamp> {
        Some(Timestamp::ZERO)
    }

    fn handle_timeout(&mut self, _now: Timestamp) {
        self.handled += 1;
    }
}
