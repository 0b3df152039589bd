//! A bounded record of what the network did, for comparing runs and debugging failures.

use std::net::SocketAddr;

use super::link::DropReason;
use crate::time::Timestamp;

/// One thing that happened in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// Virtual time at which it happened.
    pub at: Timestamp,
    /// What happened.
    pub kind: TraceKind,
}

/// The kinds of [`TraceEvent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields are named in each variant's doc
pub enum TraceKind {
    /// A node put a datagram on the link `from -> to`.
    Sent {
        from: SocketAddr,
        to: SocketAddr,
        len: usize,
    },
    /// A datagram (or copy) was handed to `to`; `digest` identifies its bytes.
    Delivered {
        from: SocketAddr,
        to: SocketAddr,
        len: usize,
        digest: u64,
    },
    /// A datagram was dropped.
    Dropped {
        from: SocketAddr,
        to: SocketAddr,
        len: usize,
        reason: DropReason,
    },
    /// A node's timer fired.
    Timer { node: SocketAddr },
}

/// A trace that keeps at most `limit` events and counts the rest.
#[derive(Debug, Default)]
pub(super) struct Trace {
    events: Vec<TraceEvent>,
    limit: usize,
    pub overflow: u64,
}

impl Trace {
    /// Starts (or restarts) recording, keeping up to `limit` events.
    pub fn enable(&mut self, limit: usize) {
        self.events.clear();
        self.overflow = 0;
        self.limit = limit;
    }

    pub fn record(&mut self, at: Timestamp, kind: TraceKind) {
        if self.events.len() < self.limit {
            self.events.push(TraceEvent { at, kind });
        } else if self.limit > 0 {
            self.overflow += 1;
        }
    }

    pub fn events(&self) -> &[TraceEvent] {
        &self.events
    }
}

/// A stable 64-bit FNV-1a digest of datagram bytes (not cryptographic: it only tells runs apart).
pub fn digest(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h: u64, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_counts_overflow() {
        let mut t = Trace::default();
        let node = SocketAddr::from(([127, 0, 0, 1], 1));
        t.record(Timestamp(0), TraceKind::Timer { node });
        assert!(t.events().is_empty(), "disabled trace recorded");
        assert_eq!(t.overflow, 0);
        t.enable(2);
        for i in 0..5 {
            t.record(Timestamp(i), TraceKind::Timer { node });
        }
        assert_eq!(t.events().len(), 2);
        assert_eq!(t.overflow, 3);
    }

    #[test]
    fn digest_is_stable() {
        assert_eq!(digest(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(digest(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(digest(b"ab"), digest(b"ba"));
    }
}
