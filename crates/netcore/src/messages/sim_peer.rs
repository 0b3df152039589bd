//! A [`Messages`] endpoint as a node of the simulated network, shared by the whole-stack
//! simulation tests (`sim_tests`, `scenario_tests`).
//!
//! The [`Peer`] accepts every session request, reads the channels it is told to according to
//! its [`Reading`] policy (at once, paced, or not at all), records what it received with the
//! virtual time of delivery, and keeps counters the tests assert on and report: events seen,
//! session failures, and the high-water marks of what the layer held in memory.
//!
//! Being a child of `messages`, this module reads the layer's private state (sessions, the
//! endpoint) for the memory figures; nothing here changes it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::{Event, Messages};
use crate::config::Config;
use crate::sim::SimNode;
use crate::time::Timestamp;

/// How the application behind a [`Peer`] reads its channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reading {
    /// Everything, whenever the peer is woken.
    Eager,
    /// Nothing: the application stopped reading.
    Stalled,
    /// At most `batch` messages per channel every `every` of virtual time.
    Paced {
        /// Interval between reads.
        every: Duration,
        /// Messages taken per channel per read.
        batch: usize,
    },
}

/// One message as the application received it.
#[derive(Clone, Debug)]
pub(super) struct Received {
    /// `Reliable` (8) or 0.
    pub flags: u32,
    /// The payload.
    pub data: Bytes,
    /// Virtual time of the read.
    pub at: Timestamp,
}

/// High-water marks of memory held by the messages layer, sampled on every wake-up.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct MemoryPeaks {
    /// Most bytes held for sending by one connection (reliable until acked, unreliable until
    /// sent): `Connection::buffered_bytes`.
    pub send_buffered: usize,
    /// Most bytes queued and not yet sent by one connection (what `sendBufferSize` limits):
    /// `Connection::queued_bytes`.
    pub send_queued: usize,
    /// Most unacknowledged reliable bytes of one connection.
    pub unacked_reliable: u64,
    /// Most messages of one session waiting for the application (held or unread).
    pub backlog_messages: usize,
    /// Most bytes of one session waiting for the application.
    pub backlog_bytes: usize,
    /// Most messages in all channel queues together.
    pub queued_messages: usize,
}

/// A messages endpoint on the simulated network; see the module docs.
pub(super) struct Peer {
    /// The layer under test.
    pub m: Messages,
    /// Received messages per channel, in the order the application read them.
    pub got: BTreeMap<i32, Vec<Received>>,
    /// Channels the application reads.
    pub channels: Vec<i32>,
    /// The read policy; change it through `Network::with_node` (then call [`Peer::drain`]).
    pub reading: Reading,
    /// Every `SessionFailed` event seen, with the virtual time it was polled.
    pub failures: Vec<(Timestamp, Event)>,
    /// `SessionRequest` events seen.
    pub session_requests: u64,
    /// Payload bytes handed to the application.
    pub delivered_bytes: u64,
    /// Memory high-water marks.
    pub peaks: MemoryPeaks,
    /// Sends every message read back to its sender, on its channel, with its reliability
    /// (a reliable echo refused for a full buffer waits in `echo_backlog`).
    pub echo: bool,
    echo_backlog: std::collections::VecDeque<(crate::identity::Identity, i32, u32, Bytes)>,
    next_read: Option<Timestamp>,
    buf: Vec<u8>,
}

impl Peer {
    /// A peer with the default configuration, reading channels 0..4 eagerly; `secret`
    /// fills the endpoint's key (any value; distinct per peer keeps runs realistic).
    pub fn new(secret: u8) -> Self {
        Self::with_config(Config::default(), secret)
    }

    /// A peer with `config`, reading channels 0..4 eagerly.
    pub fn with_config(config: Config, secret: u8) -> Self {
        Peer {
            m: Messages::new(config, crate::endpoint::EndpointSetup::for_tests(secret)),
            got: BTreeMap::new(),
            channels: (0..4).collect(),
            reading: Reading::Eager,
            failures: Vec::new(),
            session_requests: 0,
            delivered_bytes: 0,
            peaks: MemoryPeaks::default(),
            echo: false,
            echo_backlog: std::collections::VecDeque::new(),
            next_read: None,
            buf: Vec::new(),
        }
    }

    /// Messages received on `channel` so far.
    pub fn count(&self, channel: i32) -> usize {
        self.got.get(&channel).map_or(0, Vec::len)
    }

    /// Handles events (accepting every request) and reads as the policy allows.
    pub fn drain(&mut self, now: Timestamp) {
        while let Some(e) = self.m.poll_event() {
            match e {
                Event::SessionRequest(id) => {
                    self.session_requests += 1;
                    self.m.accept(&id);
                }
                Event::SessionFailed { .. } => self.failures.push((now, e)),
                Event::MessagesWaiting(_)
                | Event::SessionClosed { .. }
                | Event::ReceiveBlocked { .. }
                | Event::Writable(_) => {}
            }
        }
        let batch = match self.reading {
            Reading::Eager => usize::MAX,
            Reading::Stalled => 0,
            Reading::Paced { every, batch } => {
                let due = self.next_read.is_none_or(|t| t <= now);
                if due {
                    self.next_read = Some(now + every);
                    batch
                } else {
                    0
                }
            }
        };
        if batch > 0 {
            for &ch in &self.channels {
                for d in self.m.receive(ch, batch) {
                    self.delivered_bytes += d.msg.data.len() as u64;
                    if self.echo {
                        let e = (d.peer.clone(), ch, d.msg.send_flags, d.msg.data.clone());
                        self.echo_backlog.push_back(e);
                    }
                    self.got.entry(ch).or_default().push(Received {
                        flags: d.msg.send_flags,
                        data: d.msg.data,
                        at: now,
                    });
                }
            }
        }
        self.send_echoes(now);
        self.sample_memory();
    }

    /// Sends the echoes owed, in order, until the send buffer refuses one.
    fn send_echoes(&mut self, now: Timestamp) {
        use crate::eresult::EResult;
        while let Some((peer, ch, flags, data)) = self.echo_backlog.front() {
            let reliable = *flags != 0;
            let r = self.m.send(now, peer, None, data, *flags, *ch);
            if r == EResult::LimitExceeded && reliable {
                break;
            }
            self.echo_backlog.pop_front();
        }
    }

    /// Updates the memory high-water marks from the layer's current state.
    fn sample_memory(&mut self) {
        let p = &mut self.peaks;
        for s in self.m.sessions.values() {
            if let Some(c) = self.m.endpoint.connection(s.conn) {
                p.send_buffered = p.send_buffered.max(c.buffered_bytes());
                p.send_queued = p.send_queued.max(c.queued_bytes());
                p.unacked_reliable = p.unacked_reliable.max(c.unacked_reliable_bytes());
            }
            let (count, bytes) = s.backlog();
            p.backlog_messages = p.backlog_messages.max(count);
            p.backlog_bytes = p.backlog_bytes.max(bytes);
        }
        let queued: usize = self.m.queues.values().map(|q| q.len()).sum();
        p.queued_messages = p.queued_messages.max(queued);
    }
}

impl SimNode for Peer {
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]) {
        self.m.handle_datagram(now, from, data);
        self.drain(now);
    }

    fn poll_transmit(&mut self, now: Timestamp, out: &mut Vec<(SocketAddr, Vec<u8>)>) {
        self.m
            .poll_transmit(now, &mut self.buf, |to, d| out.push((to, d.to_vec())));
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        let read = match self.reading {
            Reading::Paced { .. } => self.next_read,
            Reading::Eager | Reading::Stalled => None,
        };
        match (self.m.poll_timeout(), read) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        self.m.handle_timeout(now);
        self.drain(now);
    }
}
