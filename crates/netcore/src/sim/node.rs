//! The interface a simulated node offers to the network: the sans-IO shape every endpoint has.

use std::any::Any;
use std::net::SocketAddr;

use crate::time::Timestamp;

/// Something that lives at one address of the simulated network.
///
/// The network calls these in a fixed pattern: after every datagram delivered to the node,
/// every timer it fires, and every external change made through [`super::Network::with_node`],
/// it drains `poll_transmit` and then reads `poll_timeout` to (re)arm the node's single timer.
/// `Any` is a supertrait so tests can get their concrete node back for assertions.
pub trait SimNode: Any {
    /// A datagram arrived from `from`.
    fn handle_datagram(&mut self, now: Timestamp, from: SocketAddr, data: &[u8]);

    /// Datagrams this node wants to send now: push `(destination, bytes)`.
    ///
    /// Called repeatedly until it pushes nothing (up to a bound), so a node may hand out its
    /// datagrams in batches.
    fn poll_transmit(&mut self, now: Timestamp, out: &mut Vec<(SocketAddr, Vec<u8>)>);

    /// The earliest time this node wants `handle_timeout` called, if any.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Called at (or after) the deadline from `poll_timeout`.
    fn handle_timeout(&mut self, now: Timestamp);
}
