//! A deterministic simulated network for driving sans-IO protocol endpoints in tests.
//!
//! Nodes implement [`SimNode`] and sit at a `SocketAddr`. The [`Network`] owns them, a virtual
//! clock and one ordered event queue (datagram deliveries and node timers, ordered by
//! `(time, sequence number)`), and moves datagrams along directed links whose behaviour
//! ([`LinkConfig`]: loss, duplication, reordering, delay, jitter, bandwidth with a drop-tail
//! queue, MTU) is drawn from per-link ChaCha streams derived from one seed. The same seed and
//! the same nodes give the same run bit for bit, which is what makes protocol tests under loss
//! reproducible and fast: nothing here reads a real clock or touches a socket.
//!
//! Memory is bounded: each node has at most one pending timer, datagrams in flight are capped
//! by [`NetworkLimits`] (count and bytes) on top of each link's queue bound, and so is the
//! number of links, so a node that floods (or sprays addresses) only gets its datagrams dropped
//! and counted. The trace, when enabled, keeps at most the number of events asked for.

mod link;
mod network;
mod node;
pub mod pair;
mod rng;
mod trace;

#[cfg(test)]
mod toys;

pub use link::{DropReason, LinkConfig, LinkStats, DEFAULT_MTU, DEFAULT_QUEUE_BYTES};
pub use network::{
    Network, NetworkLimits, NodeStats, SimError, MAX_EVENTS_PER_INSTANT, MAX_IMMEDIATE_TIMEOUTS,
    MAX_IN_FLIGHT_BYTES, MAX_IN_FLIGHT_DATAGRAMS, MAX_LINKS, MAX_POLLS_PER_WAKE,
};
pub use node::SimNode;
pub use pair::{EndpointNode, Hub, Pair, Wired};
pub use trace::{digest, TraceEvent, TraceKind};
