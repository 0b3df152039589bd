//! One UDP socket's worth of connections: demultiplexing datagrams to connections, and the
//! bounds on state kept for peers.
//!
//! Sans-IO like the rest of the core: datagrams and `now` in, datagrams out. A connection is
//! keyed by the peer's address for now; the handshake (connection ids and the stateless
//! challenge for unknown sources) comes with the security work.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::connection::{Connection, ConnectionConfig, InMessage};
use crate::time::Timestamp;
use crate::wire::datagram::{classify, DataHeader, Lead};

/// Most connections one endpoint keeps; datagrams from further new sources are dropped, so a
/// flood of source addresses cannot grow the table without bound.
pub const MAX_CONNECTIONS: usize = 16_384;

/// Endpoint-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointStats {
    /// Datagrams that were not data packets we could parse.
    pub dropped_malformed: u64,
    /// Datagrams from a new source while the connection table was full.
    pub dropped_table_full: u64,
    /// Datagrams a connection refused (duplicates, bad frames, back-pressure).
    pub dropped_by_connection: u64,
}

/// What became of an incoming datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Accepted; `new` tells whether it opened a new connection.
    Accepted {
        /// The datagram created the connection.
        new: bool,
    },
    /// Dropped and counted.
    Dropped,
}

/// The connection table of one socket.
#[derive(Debug)]
pub struct Endpoint {
    conns: HashMap<SocketAddr, Connection>,
    cfg: ConnectionConfig,
    stats: EndpointStats,
}

impl Endpoint {
    /// An endpoint whose connections use `cfg`.
    pub fn new(cfg: ConnectionConfig) -> Self {
        Endpoint {
            conns: HashMap::new(),
            cfg,
            stats: EndpointStats::default(),
        }
    }

    /// Applies new connection settings to every connection, present and future.
    pub fn set_config(&mut self, now: Timestamp, cfg: ConnectionConfig) {
        self.cfg = cfg;
        for c in self.conns.values_mut() {
            c.set_config(now, cfg);
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// The connection to `remote`, opened if needed; `None` when the table is full.
    pub fn connect(&mut self, now: Timestamp, remote: SocketAddr) -> Option<&mut Connection> {
        if !self.conns.contains_key(&remote) && self.conns.len() >= MAX_CONNECTIONS {
            return None;
        }
        let cfg = self.cfg;
        Some(
            self.conns
                .entry(remote)
                .or_insert_with(|| Connection::new(remote, cfg, now)),
        )
    }

    /// The connection to `remote`, if open.
    pub fn connection(&self, remote: SocketAddr) -> Option<&Connection> {
        self.conns.get(&remote)
    }

    /// The connection to `remote`, if open, for changes.
    pub fn connection_mut(&mut self, remote: SocketAddr) -> Option<&mut Connection> {
        self.conns.get_mut(&remote)
    }

    /// Closes and forgets the connection to `remote`.
    pub fn close(&mut self, remote: SocketAddr) {
        self.conns.remove(&remote);
    }

    /// Handles one datagram from `from`, appending the messages it completed to `out`.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<InMessage>,
    ) -> Incoming {
        // Parse the clear header before creating state, so garbage leaves nothing behind.
        if classify(data) != Ok(Lead::Data) || DataHeader::decode(data).is_err() {
            self.stats.dropped_malformed += 1;
            return Incoming::Dropped;
        }
        let new = !self.conns.contains_key(&from);
        if new && self.conns.len() >= MAX_CONNECTIONS {
            self.stats.dropped_table_full += 1;
            return Incoming::Dropped;
        }
        let cfg = self.cfg;
        let conn = self
            .conns
            .entry(from)
            .or_insert_with(|| Connection::new(from, cfg, now));
        if conn.handle_datagram(now, data, out) {
            Incoming::Accepted { new }
        } else {
            self.stats.dropped_by_connection += 1;
            if new && !conn.heard_from_peer() {
                // A first datagram that did not decode opens nothing.
                self.conns.remove(&from);
            }
            Incoming::Dropped
        }
    }

    /// Calls `send` for every datagram any connection has ready, reusing `buf`.
    pub fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        mut send: impl FnMut(SocketAddr, &[u8]),
    ) {
        for conn in self.conns.values_mut() {
            while conn.poll_transmit(now, buf) {
                send(conn.remote(), buf);
            }
        }
    }

    /// The earliest deadline of any connection.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.conns
            .values()
            .filter_map(Connection::poll_timeout)
            .min()
    }

    /// Runs the timers of every connection that is due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        for c in self.conns.values_mut() {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
    }

    /// Addresses of connections that failed, for the layer above to report.
    pub fn failed(&self) -> impl Iterator<Item = (SocketAddr, &Connection)> + '_ {
        self.conns
            .iter()
            .filter(|(_, c)| c.failure().is_some())
            .map(|(a, c)| (*a, c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn garbage_from_new_sources_leaves_no_state() {
        let mut ep = Endpoint::new(ConnectionConfig::default());
        let mut out = Vec::new();
        for port in 1..100u16 {
            let from = SocketAddr::from(([127, 0, 0, 1], port));
            let junk = [0x80, 0, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &junk, &mut out),
                Incoming::Dropped
            );
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &[1, 2], &mut out),
                Incoming::Dropped
            );
        }
        assert!(ep.conns.is_empty());
        assert_eq!(
            ep.stats().dropped_malformed + ep.stats().dropped_by_connection,
            198
        );
    }

    #[test]
    fn round_trip_between_two_endpoints() {
        let a_addr = SocketAddr::from(([127, 0, 0, 1], 1000));
        let b_addr = SocketAddr::from(([127, 0, 0, 1], 2000));
        let mut a = Endpoint::new(ConnectionConfig::default());
        let mut b = Endpoint::new(ConnectionConfig::default());
        a.connect(Timestamp::ZERO, b_addr)
            .unwrap()
            .send(Timestamp::ZERO, 4, true, true, Bytes::from_static(b"hi"))
            .unwrap();
        let mut sent = Vec::new();
        a.poll_transmit(Timestamp::ZERO, &mut Vec::new(), |to, d| {
            sent.push((to, d.to_vec()))
        });
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, b_addr);
        let mut out = Vec::new();
        assert_eq!(
            b.handle_datagram(Timestamp::ZERO, a_addr, &sent[0].1, &mut out),
            Incoming::Accepted { new: true }
        );
        assert_eq!(out[0].data.as_ref(), b"hi");
        assert_eq!(out[0].channel, 4);
    }
}
