//! One UDP socket's worth of connections: demultiplexing datagrams to connections, and the
//! bounds on state kept for peers.
//!
//! Sans-IO like the rest of the core: datagrams and `now` in, datagrams out. In this first
//! version a connection is keyed by the peer's address (there is no handshake yet to assign
//! connection ids); the transport and security issues add connection ids and the stateless
//! challenge for unknown sources.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::connection::{Connection, InMessage};
use crate::time::Timestamp;

/// Most connections one endpoint keeps; datagrams from further new sources are dropped, so a
/// flood of source addresses cannot grow the table without bound.
pub const MAX_CONNECTIONS: usize = 16_384;

/// Endpoint-wide counters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointStats {
    /// Datagrams that did not decode.
    pub dropped_malformed: u64,
    /// Datagrams from a new source while the connection table was full.
    pub dropped_table_full: u64,
}

/// What became of an incoming datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Decoded; `new` tells whether it opened a new connection.
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
    mtu: usize,
    stats: EndpointStats,
}

impl Endpoint {
    /// An endpoint sending datagrams of at most `mtu` bytes where it can.
    pub fn new(mtu: usize) -> Self {
        Endpoint {
            conns: HashMap::new(),
            mtu,
            stats: EndpointStats::default(),
        }
    }

    /// Changes the MTU for connections opened from now on.
    pub fn set_mtu(&mut self, mtu: usize) {
        self.mtu = mtu;
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
        let mtu = self.mtu;
        Some(
            self.conns
                .entry(remote)
                .or_insert_with(|| Connection::new(remote, mtu, now)),
        )
    }

    /// The connection to `remote`, if open.
    pub fn connection(&self, remote: SocketAddr) -> Option<&Connection> {
        self.conns.get(&remote)
    }

    /// Closes and forgets the connection to `remote`.
    pub fn close(&mut self, remote: SocketAddr) {
        self.conns.remove(&remote);
    }

    /// Handles one datagram from `from`, appending the messages it carried to `out`.
    pub fn handle_datagram(
        &mut self,
        now: Timestamp,
        from: SocketAddr,
        data: &[u8],
        out: &mut Vec<InMessage>,
    ) -> Incoming {
        let new = !self.conns.contains_key(&from);
        if new && self.conns.len() >= MAX_CONNECTIONS {
            self.stats.dropped_table_full += 1;
            return Incoming::Dropped;
        }
        // Decode before creating state, so garbage from a new source leaves nothing behind.
        if crate::connection::framing::decode_packet(data).is_err() {
            self.stats.dropped_malformed += 1;
            return Incoming::Dropped;
        }
        let mtu = self.mtu;
        let conn = self
            .conns
            .entry(from)
            .or_insert_with(|| Connection::new(from, mtu, now));
        match conn.handle_payload(now, data, out) {
            Ok(()) => Incoming::Accepted { new },
            Err(_) => {
                self.stats.dropped_malformed += 1;
                Incoming::Dropped
            }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn garbage_from_new_sources_leaves_no_state() {
        let mut ep = Endpoint::new(1300);
        let mut out = Vec::new();
        for port in 1..100u16 {
            let from = SocketAddr::from(([127, 0, 0, 1], port));
            assert_eq!(
                ep.handle_datagram(Timestamp::ZERO, from, &[0x80, 1, 2], &mut out),
                Incoming::Dropped
            );
        }
        assert!(ep.conns.is_empty());
        assert_eq!(ep.stats().dropped_malformed, 99);
    }

    #[test]
    fn round_trip_between_two_endpoints() {
        let a_addr = SocketAddr::from(([127, 0, 0, 1], 1000));
        let b_addr = SocketAddr::from(([127, 0, 0, 1], 2000));
        let mut a = Endpoint::new(1300);
        let mut b = Endpoint::new(1300);
        a.connect(Timestamp::ZERO, b_addr)
            .unwrap()
            .queue(4, 8, Bytes::from_static(b"hi"));
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
