//! When sessions were last known to be in use, earliest first, so that the idle timeout
//! looks only at sessions that may have expired instead of scanning them all.
//!
//! Sessions are used far more often than they expire (every message received counts), so
//! using one does not touch the queue: an entry records a time the session was used *at or
//! before* its last use, and is checked against the session when it comes due. A session
//! used since goes back in with its real last use; one that is still busy (unread messages)
//! leaves the queue until it is read; the others have expired. Entries of closed sessions
//! are recognised by their serial and dropped, and the heap is rebuilt when they pile up.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use crate::identity::Identity;
use crate::time::Timestamp;

/// The heap is rebuilt once it holds more than this many entries per live session...
pub const COMPACT_RATIO: usize = 2;
/// ...plus this many.
pub const COMPACT_SLACK: usize = 64;

/// One session's place in the queue.
#[derive(Clone, Debug)]
pub struct Entry {
    /// When the session was last known used (at or before its actual last use).
    pub used: Timestamp,
    /// The session's serial: tells it from a later session with the same peer.
    pub serial: u64,
    /// The session's peer.
    pub peer: Identity,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Serials are unique among live sessions: the peer need not be compared.
        (self.used, self.serial).cmp(&(other.used, other.serial))
    }
}

/// Sessions by the time they were last known used; see the module docs.
#[derive(Debug, Default)]
pub struct IdleQueue {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl IdleQueue {
    /// Queues a session last known used at `used`.
    pub fn push(&mut self, entry: Entry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest time an entry records.
    pub fn earliest(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse(e)| e.used)
    }

    /// Takes the earliest entry if it records a time at or before `cutoff`.
    pub fn pop_until(&mut self, cutoff: Timestamp) -> Option<Entry> {
        if self.earliest()? > cutoff {
            return None;
        }
        self.heap.pop().map(|Reverse(e)| e)
    }

    /// Entries held, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no entry is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Whether the heap holds so many entries beyond `live` that it should be rebuilt.
    pub fn needs_compaction(&self, live: usize) -> bool {
        self.heap.len() > COMPACT_RATIO * live + COMPACT_SLACK
    }

    /// Replaces the contents with `entries`.
    pub fn rebuild(&mut self, entries: impl Iterator<Item = Entry>) {
        self.heap = entries.map(Reverse).collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(used: u64, serial: u64) -> Entry {
        Entry {
            used: Timestamp::from_micros(used),
            serial,
            peer: Identity::Ip(([127, 0, 0, 1], 1).into()),
        }
    }

    #[test]
    fn pops_in_time_order_up_to_the_cutoff() {
        let mut q = IdleQueue::default();
        for (used, serial) in [(30, 1), (10, 2), (20, 3), (10, 4)] {
            q.push(entry(used, serial));
        }
        assert_eq!(q.earliest(), Some(Timestamp::from_micros(10)));
        let got: Vec<u64> = std::iter::from_fn(|| q.pop_until(Timestamp::from_micros(20)))
            .map(|e| e.serial)
            .collect();
        assert_eq!(got, vec![2, 4, 3]);
        assert_eq!(q.len(), 1);
        assert!(q.pop_until(Timestamp::from_micros(29)).is_none());
        q.rebuild(std::iter::empty());
        assert!(q.is_empty());
    }
}
