//! The simulated network: nodes, virtual clock, event queue, and the loop that drives them.
//!
//! Events (deliveries and timers) live in one `BTreeMap` keyed by `(time, sequence number)`:
//! the same total order a binary heap with a sequence tie-break would give, plus removal by
//! key, so re-arming a node's timer replaces its old entry instead of leaving stale ones
//! behind. Each node therefore holds at most one queue entry for its timer, and deliveries are
//! capped by [`NetworkLimits`]; that bounds the queue whatever the nodes do.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::mem;
use std::net::SocketAddr;
use std::time::Duration;

use super::link::{DropReason, LinkConfig, LinkState, LinkStats};
use super::node::SimNode;
use super::rng::LinkRng;
use super::trace::{digest, Trace, TraceEvent, TraceKind};
use crate::time::Timestamp;

/// Default cap on datagrams (copies included) in flight across the whole network.
pub const MAX_IN_FLIGHT_DATAGRAMS: usize = 1 << 16;
/// Default cap on bytes in flight across the whole network.
pub const MAX_IN_FLIGHT_BYTES: usize = 64 << 20;
/// Default number of `poll_transmit` rounds per wake-up before the network stops asking.
pub const MAX_POLLS_PER_WAKE: usize = 64;
/// Default number of consecutive timer firings that re-arm at or before `now` before the
/// network reports a livelock.
pub const MAX_IMMEDIATE_TIMEOUTS: u32 = 1000;
/// Default number of distinct directed links (each holds a random stream and counters).
pub const MAX_LINKS: usize = 4096;
/// Default number of events processed without the clock advancing before the network reports
/// a stall (for example two nodes ping-ponging over zero-delay links).
pub const MAX_EVENTS_PER_INSTANT: u64 = 1_000_000;

/// Network-wide bounds. The defaults are the `MAX_*` consts of this module.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkLimits {
    /// Datagrams in flight (scheduled for delivery) at most; more are dropped as `Cap`.
    pub max_in_flight: usize,
    /// Bytes in flight at most; more are dropped as `Cap`.
    pub max_in_flight_bytes: usize,
    /// Distinct directed links at most; datagrams that would open another are dropped and
    /// counted by [`Network::dropped_no_link`].
    pub max_links: usize,
    /// `poll_transmit` rounds per wake-up at most.
    pub max_polls_per_wake: usize,
    /// Consecutive timer firings re-arming at or before `now` before [`SimError::TimerLivelock`].
    pub max_immediate_timeouts: u32,
    /// Events at one virtual instant before [`SimError::Stalled`].
    pub max_events_per_instant: u64,
}

impl Default for NetworkLimits {
    fn default() -> Self {
        NetworkLimits {
            max_in_flight: MAX_IN_FLIGHT_DATAGRAMS,
            max_in_flight_bytes: MAX_IN_FLIGHT_BYTES,
            max_links: MAX_LINKS,
            max_polls_per_wake: MAX_POLLS_PER_WAKE,
            max_immediate_timeouts: MAX_IMMEDIATE_TIMEOUTS,
            max_events_per_instant: MAX_EVENTS_PER_INSTANT,
        }
    }
}

/// What went wrong while driving the network. Errors leave the network consistent: the
/// offending event stays queued, so calling again reports the same error.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields are named in each variant's doc
pub enum SimError {
    /// A node already sits at this address.
    AddrInUse(SocketAddr),
    /// The node's timer keeps firing without its deadline moving past `now`.
    TimerLivelock { node: SocketAddr, at: Timestamp },
    /// Too many events without the clock advancing.
    Stalled { at: Timestamp, events: u64 },
    /// `run_until_idle` processed its step budget and events remain.
    StepLimit { steps: u64 },
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::AddrInUse(a) => write!(f, "a node already sits at {a}"),
            SimError::TimerLivelock { node, at } => write!(
                f,
                "node {node} keeps asking for a timeout at or before now ({} us)",
                at.as_micros()
            ),
            SimError::Stalled { at, events } => write!(
                f,
                "{events} events without the clock advancing past {} us",
                at.as_micros()
            ),
            SimError::StepLimit { steps } => write!(f, "still busy after {steps} steps"),
        }
    }
}

impl std::error::Error for SimError {}

/// Counters of one node's dealings with the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Times `handle_timeout` was called.
    pub timers_fired: u64,
    /// Times the node re-armed its timer at or before `now` right after it fired.
    pub immediate_rearms: u64,
    /// Wake-ups where `poll_transmit` still had datagrams after the per-wake round cap.
    pub poll_cap_hits: u64,
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    },
    Timer(SocketAddr),
}

type EventKey = (Timestamp, u64);

struct Slot {
    node: Box<dyn SimNode>,
    /// Queue key of this node's pending timer, if armed.
    timer: Option<EventKey>,
    /// Consecutive timer firings that re-armed at or before `now`.
    immediate_streak: u32,
    stats: NodeStats,
}

/// A deterministic simulated network; see the module docs.
pub struct Network {
    seed: u64,
    now: Timestamp,
    next_seq: u64,
    limits: NetworkLimits,
    nodes: BTreeMap<SocketAddr, Slot>,
    queue: BTreeMap<EventKey, Event>,
    default_link: LinkConfig,
    link_configs: BTreeMap<(SocketAddr, SocketAddr), LinkConfig>,
    links: BTreeMap<(SocketAddr, SocketAddr), LinkState>,
    cut_links: BTreeSet<(SocketAddr, SocketAddr)>,
    isolated: BTreeSet<SocketAddr>,
    in_flight: usize,
    in_flight_bytes: usize,
    /// Datagrams dropped because the link table was full.
    no_link_drops: u64,
    /// Events processed at the current instant, for stall detection.
    instant_events: u64,
    trace: Trace,
    /// Reused buffer for `poll_transmit`.
    outbox: Vec<(SocketAddr, Vec<u8>)>,
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("nodes", &self.nodes.keys().collect::<Vec<_>>())
            .field("pending_events", &self.queue.len())
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// An empty network at time zero whose randomness derives from `seed`; links are perfect
    /// until configured.
    pub fn new(seed: u64) -> Self {
        Network {
            seed,
            now: Timestamp::ZERO,
            next_seq: 0,
            limits: NetworkLimits::default(),
            nodes: BTreeMap::new(),
            queue: BTreeMap::new(),
            default_link: LinkConfig::default(),
            link_configs: BTreeMap::new(),
            links: BTreeMap::new(),
            cut_links: BTreeSet::new(),
            isolated: BTreeSet::new(),
            in_flight: 0,
            in_flight_bytes: 0,
            no_link_drops: 0,
            instant_events: 0,
            trace: Trace::default(),
            outbox: Vec::new(),
        }
    }

    /// Replaces the network-wide bounds.
    pub fn set_limits(&mut self, limits: NetworkLimits) {
        self.limits = limits;
    }

    /// The current virtual time.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The seed this network was made with.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    // ----- nodes -----

    /// Places `node` at `addr`, then polls it once (it may send or arm a timer right away).
    pub fn add_node<N: SimNode>(&mut self, addr: SocketAddr, node: N) -> Result<(), SimError> {
        self.add_boxed_node(addr, Box::new(node))
    }

    /// Like [`Network::add_node`] for an already boxed node (e.g. one taken out with
    /// [`Network::remove_node`], to bring a vanished peer back).
    pub fn add_boxed_node(
        &mut self,
        addr: SocketAddr,
        node: Box<dyn SimNode>,
    ) -> Result<(), SimError> {
        if self.nodes.contains_key(&addr) {
            return Err(SimError::AddrInUse(addr));
        }
        self.nodes.insert(
            addr,
            Slot {
                node,
                timer: None,
                immediate_streak: 0,
                stats: NodeStats::default(),
            },
        );
        self.service(addr);
        Ok(())
    }

    /// Takes the node at `addr` out of the network (the peer vanishes): its timer is
    /// cancelled and datagrams reaching `addr` from now on count as `undeliverable`.
    pub fn remove_node(&mut self, addr: SocketAddr) -> Option<Box<dyn SimNode>> {
        let slot = self.nodes.remove(&addr)?;
        if let Some(key) = slot.timer {
            self.queue.remove(&key);
        }
        Some(slot.node)
    }

    /// The node at `addr` as its concrete type, for assertions.
    pub fn node<T: SimNode>(&self, addr: SocketAddr) -> Option<&T> {
        let node: &dyn Any = self.nodes.get(&addr)?.node.as_ref();
        node.downcast_ref::<T>()
    }

    /// Runs `f` on the node at `addr` as its concrete type (for example to queue a message),
    /// then polls the node so what it now wants to send goes out and its timer is re-armed.
    /// `None` if there is no such node or it has another type.
    pub fn with_node<T: SimNode, R>(
        &mut self,
        addr: SocketAddr,
        f: impl FnOnce(&mut T, Timestamp) -> R,
    ) -> Option<R> {
        let now = self.now;
        let node: &mut dyn Any = self.nodes.get_mut(&addr)?.node.as_mut();
        let result = f(node.downcast_mut::<T>()?, now);
        self.service(addr);
        Some(result)
    }

    /// Addresses of all nodes, in address order.
    pub fn node_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.nodes.keys().copied()
    }

    /// Counters of the node at `addr`.
    pub fn node_stats(&self, addr: SocketAddr) -> Option<NodeStats> {
        self.nodes.get(&addr).map(|s| s.stats)
    }

    // ----- links -----

    /// Sets the behaviour of every link without its own configuration.
    pub fn set_default_link(&mut self, cfg: LinkConfig) {
        self.default_link = cfg;
    }

    /// Sets the behaviour of the directed link `from -> to`.
    pub fn set_link(&mut self, from: SocketAddr, to: SocketAddr, cfg: LinkConfig) {
        self.link_configs.insert((from, to), cfg);
    }

    /// Sets the behaviour of both directions between `a` and `b`.
    pub fn set_link_both(&mut self, a: SocketAddr, b: SocketAddr, cfg: LinkConfig) {
        self.set_link(a, b, cfg.clone());
        self.set_link(b, a, cfg);
    }

    /// The behaviour of the directed link `from -> to`.
    pub fn link_config(&self, from: SocketAddr, to: SocketAddr) -> &LinkConfig {
        self.link_configs
            .get(&(from, to))
            .unwrap_or(&self.default_link)
    }

    /// Cuts the directed link `from -> to`: datagrams sent on it, and those in flight when
    /// they would arrive, are dropped as `LinkDown` until [`Network::restore_link`].
    pub fn cut_link(&mut self, from: SocketAddr, to: SocketAddr) {
        self.cut_links.insert((from, to));
    }

    /// Undoes [`Network::cut_link`].
    pub fn restore_link(&mut self, from: SocketAddr, to: SocketAddr) {
        self.cut_links.remove(&(from, to));
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&mut self, a: SocketAddr, b: SocketAddr) {
        self.cut_link(a, b);
        self.cut_link(b, a);
    }

    /// Restores both directions between `a` and `b`.
    pub fn restore_both(&mut self, a: SocketAddr, b: SocketAddr) {
        self.restore_link(a, b);
        self.restore_link(b, a);
    }

    /// Unplugs `addr` from the network: every link to or from it behaves as cut, while the
    /// node keeps running its timers (a peer behind a dead path, as opposed to a removed one).
    pub fn isolate(&mut self, addr: SocketAddr) {
        self.isolated.insert(addr);
    }

    /// Undoes [`Network::isolate`].
    pub fn reconnect(&mut self, addr: SocketAddr) {
        self.isolated.remove(&addr);
    }

    fn is_down(&self, from: SocketAddr, to: SocketAddr) -> bool {
        self.cut_links.contains(&(from, to))
            || self.isolated.contains(&from)
            || self.isolated.contains(&to)
    }

    /// Counters of the directed link `from -> to` (zero if it never carried anything).
    pub fn link_stats(&self, from: SocketAddr, to: SocketAddr) -> LinkStats {
        self.links
            .get(&(from, to))
            .map(|l| l.stats)
            .unwrap_or_default()
    }

    /// Counters summed over all links.
    pub fn total_stats(&self) -> LinkStats {
        let mut total = LinkStats::default();
        for link in self.links.values() {
            total.add(&link.stats);
        }
        total
    }

    /// Datagrams dropped because they would have opened a link beyond
    /// [`NetworkLimits::max_links`] (they appear in no link's counters).
    pub fn dropped_no_link(&self) -> u64 {
        self.no_link_drops
    }

    /// Datagrams (copies included) scheduled but not yet delivered or dropped.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Entries in the event queue (deliveries plus armed timers).
    pub fn pending_events(&self) -> usize {
        self.queue.len()
    }

    /// Time of the next event, if any.
    pub fn next_event_time(&self) -> Option<Timestamp> {
        self.queue.first_key_value().map(|(k, _)| k.0)
    }

    // ----- trace -----

    /// Starts recording a trace of up to `limit` events (restarting any previous one).
    pub fn enable_trace(&mut self, limit: usize) {
        self.trace.enable(limit);
    }

    /// The recorded trace.
    pub fn trace(&self) -> &[TraceEvent] {
        self.trace.events()
    }

    /// Events not recorded because the trace was full.
    pub fn trace_overflow(&self) -> u64 {
        self.trace.overflow
    }

    // ----- driving -----

    /// Processes the next event, advancing the clock to it. `Ok(false)` if nothing is queued.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let Some((&(at, _), _)) = self.queue.first_key_value() else {
            return Ok(false);
        };
        let instant_events = if at > self.now {
            1
        } else {
            self.instant_events + 1
        };
        if instant_events > self.limits.max_events_per_instant {
            return Err(SimError::Stalled {
                at: self.now,
                events: self.instant_events,
            });
        }
        if let Some(Event::Timer(addr)) = self.queue.first_key_value().map(|(_, e)| e) {
            let addr = *addr;
            if let Some(slot) = self.nodes.get(&addr) {
                if slot.immediate_streak >= self.limits.max_immediate_timeouts {
                    return Err(SimError::TimerLivelock {
                        node: addr,
                        at: self.now,
                    });
                }
            }
        }
        let Some((_, event)) = self.queue.pop_first() else {
            return Ok(false);
        };
        self.now = self.now.max(at);
        self.instant_events = instant_events;
        match event {
            Event::Deliver { from, to, data } => self.deliver(from, to, data),
            Event::Timer(addr) => self.fire_timer(addr),
        }
        Ok(true)
    }

    /// Processes every event due at or before `deadline`, then sets the clock to `deadline`
    /// (if it is later than now).
    pub fn run_until(&mut self, deadline: Timestamp) -> Result<(), SimError> {
        while self.next_event_time().is_some_and(|t| t <= deadline) {
            self.step()?;
        }
        if deadline > self.now {
            self.now = deadline;
            self.instant_events = 0;
        }
        Ok(())
    }

    /// [`Network::run_until`] `now + d`.
    pub fn run_for(&mut self, d: Duration) -> Result<(), SimError> {
        self.run_until(self.now + d)
    }

    /// Steps until no event is left (nothing in flight, no timer armed); returns the steps
    /// taken, or [`SimError::StepLimit`] after `max_steps` with events still queued (a node
    /// with a periodic timer never goes idle).
    pub fn run_until_idle(&mut self, max_steps: u64) -> Result<u64, SimError> {
        for steps in 0..max_steps {
            if !self.step()? {
                return Ok(steps);
            }
        }
        if self.queue.is_empty() {
            Ok(max_steps)
        } else {
            Err(SimError::StepLimit { steps: max_steps })
        }
    }

    /// Steps until `done(self)` holds (checked before every event) or the next event lies
    /// beyond `deadline`. Returns whether `done` held; on `false` the clock is at `deadline`.
    pub fn run_until_with(
        &mut self,
        deadline: Timestamp,
        mut done: impl FnMut(&Network) -> bool,
    ) -> Result<bool, SimError> {
        loop {
            if done(self) {
                return Ok(true);
            }
            if self.next_event_time().is_none_or(|t| t > deadline) {
                self.run_until(deadline)?;
                return Ok(done(self));
            }
            self.step()?;
        }
    }

    // ----- internals -----

    fn schedule(&mut self, at: Timestamp, event: Event) -> EventKey {
        let key = (at, self.next_seq);
        self.next_seq += 1;
        self.queue.insert(key, event);
        key
    }

    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let len = data.len();
        self.in_flight = self.in_flight.saturating_sub(1);
        self.in_flight_bytes = self.in_flight_bytes.saturating_sub(len);
        let reason = if self.is_down(from, to) {
            Some(DropReason::LinkDown)
        } else if !self.nodes.contains_key(&to) {
            Some(DropReason::NoNode)
        } else {
            None
        };
        let now = self.now;
        let seed = self.seed;
        let stats = &mut self
            .links
            .entry((from, to))
            .or_insert_with(|| LinkState::new(LinkRng::for_link(seed, from, to)))
            .stats;
        if let Some(reason) = reason {
            stats.count_drop(reason);
            let kind = TraceKind::Dropped {
                from,
                to,
                len,
                reason,
            };
            self.trace.record(now, kind);
            return;
        }
        stats.delivered += 1;
        stats.bytes_delivered += len as u64;
        let kind = TraceKind::Delivered {
            from,
            to,
            len,
            digest: digest(&data),
        };
        self.trace.record(now, kind);
        if let Some(slot) = self.nodes.get_mut(&to) {
            slot.node.handle_datagram(now, from, &data);
        }
        self.service(to);
    }

    fn fire_timer(&mut self, addr: SocketAddr) {
        let now = self.now;
        let Some(slot) = self.nodes.get_mut(&addr) else {
            return;
        };
        slot.timer = None;
        slot.stats.timers_fired += 1;
        slot.node.handle_timeout(now);
        self.trace.record(now, TraceKind::Timer { node: addr });
        let immediate = self.service(addr);
        if let Some(slot) = self.nodes.get_mut(&addr) {
            if immediate {
                slot.immediate_streak = slot.immediate_streak.saturating_add(1);
                slot.stats.immediate_rearms += 1;
            }
        }
    }

    /// Drains the node's transmissions and re-arms its timer. Returns whether the new
    /// deadline is at or before now (a late deadline fires as soon as possible).
    fn service(&mut self, addr: SocketAddr) -> bool {
        let now = self.now;
        let mut outbox = mem::take(&mut self.outbox);
        for round in 0.. {
            let Some(slot) = self.nodes.get_mut(&addr) else {
                break;
            };
            if round == self.limits.max_polls_per_wake {
                slot.stats.poll_cap_hits += 1;
                break;
            }
            slot.node.poll_transmit(now, &mut outbox);
            if outbox.is_empty() {
                break;
            }
            for (to, data) in outbox.drain(..) {
                self.send(addr, to, data);
            }
        }
        self.outbox = outbox;

        let Some(slot) = self.nodes.get_mut(&addr) else {
            return false;
        };
        let wanted = slot.node.poll_timeout().map(|t| t.max(now));
        let immediate = wanted.is_some_and(|t| t <= now);
        if !immediate {
            slot.immediate_streak = 0;
        }
        let current = slot.timer.map(|k| k.0);
        if wanted != current {
            if let Some(old) = slot.timer.take() {
                self.queue.remove(&old);
            }
            if let Some(at) = wanted {
                let key = self.schedule(at, Event::Timer(addr));
                if let Some(slot) = self.nodes.get_mut(&addr) {
                    slot.timer = Some(key);
                }
            }
        }
        immediate
    }

    fn fits_in_flight(&self, len: usize) -> bool {
        self.in_flight < self.limits.max_in_flight
            && self.in_flight_bytes.saturating_add(len) <= self.limits.max_in_flight_bytes
    }

    fn send(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>) {
        let now = self.now;
        let len = data.len();
        self.trace.record(now, TraceKind::Sent { from, to, len });
        if self.links.len() >= self.limits.max_links && !self.links.contains_key(&(from, to)) {
            self.no_link_drops += 1;
            let reason = DropReason::Cap;
            let kind = TraceKind::Dropped {
                from,
                to,
                len,
                reason,
            };
            self.trace.record(now, kind);
            return;
        }
        let down = self.is_down(from, to);
        let fits = self.fits_in_flight(len);
        let seed = self.seed;
        let cfg = self
            .link_configs
            .get(&(from, to))
            .unwrap_or(&self.default_link);
        let link = self
            .links
            .entry((from, to))
            .or_insert_with(|| LinkState::new(LinkRng::for_link(seed, from, to)));
        link.stats.sent += 1;
        link.stats.bytes_sent += len as u64;
        let outcome = if down {
            Err(DropReason::LinkDown)
        } else if !fits {
            Err(DropReason::Cap)
        } else {
            link.admit(cfg, now, len)
        };
        let arrival = match outcome {
            Ok(a) => a,
            Err(reason) => {
                link.stats.count_drop(reason);
                let kind = TraceKind::Dropped {
                    from,
                    to,
                    len,
                    reason,
                };
                self.trace.record(now, kind);
                return;
            }
        };
        if arrival.reordered {
            link.stats.reordered += 1;
        }
        // The copy is made only if it fits too; an unmade copy is not counted anywhere.
        let copy_fits = arrival.duplicate_at.is_some()
            && self.in_flight + 1 < self.limits.max_in_flight
            && self.in_flight_bytes.saturating_add(len.saturating_mul(2))
                <= self.limits.max_in_flight_bytes;
        if copy_fits {
            if let Some(dup_at) = arrival.duplicate_at {
                link.stats.duplicated += 1;
                let copy = data.clone();
                self.in_flight += 1;
                self.in_flight_bytes += len;
                self.schedule(
                    dup_at,
                    Event::Deliver {
                        from,
                        to,
                        data: copy,
                    },
                );
            }
        }
        self.in_flight += 1;
        self.in_flight_bytes += len;
        self.schedule(arrival.at, Event::Deliver { from, to, data });
    }
}

#[cfg(test)]
#[path = "network_tests.rs"]
mod tests;
