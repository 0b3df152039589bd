//! The deadlines of many connections in one min-heap, so the endpoint finds the earliest one
//! and the due ones without looking at every connection.
//!
//! A connection's deadline moves far more often than it fires (every datagram pushes its
//! silence and keepalive timers back), and a binary heap cannot move an entry. So entries are
//! never changed: a new deadline is pushed beside the old one, the queue remembers each key's
//! current deadline, and an entry that no longer matches it is stale and dropped when it
//! reaches the top. The top is kept current after every change, so [`TimerQueue::next`] is a
//! peek. Stale entries are bounded: when the heap holds more than [`COMPACT_RATIO`] times as
//! many entries as there are keys (plus [`COMPACT_SLACK`]), it is rebuilt from the current
//! deadlines, which costs O(keys) once per that many changes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
#[cfg(test)]
use std::collections::HashMap;

use super::Map;

use crate::time::Timestamp;

/// The heap is rebuilt once it holds more than this many entries per key...
pub const COMPACT_RATIO: usize = 2;
/// ...plus this many, so that a handful of keys does not rebuild on every change.
pub const COMPACT_SLACK: usize = 64;

/// Deadlines by key (a connection id), earliest first; see the module docs.
#[derive(Debug, Default)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct TimerQueue {
    heap: BinaryHeap<Reverse<(Timestamp, u32)>>,
    /// Each key's deadline; an entry of `heap` is stale unless it matches.
    current: Map<u32, Timestamp>,
}

impl TimerQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (`Some`) or clears (`None`) the deadline of `key`.
    pub fn set(&mut self, key: u32, at: Option<Timestamp>) {
        match at {
            Some(at) => {
                if self.current.insert(key, at) == Some(at) {
                    return;
                }
                self.heap.push(Reverse((at, key)));
            }
            None => {
                if self.current.remove(&key).is_none() {
                    return;
                }
            }
        }
        self.settle();
    }

    /// Clears the deadline of `key`.
    pub fn remove(&mut self, key: u32) {
        self.set(key, None);
    }

    /// The deadline of `key`, if it has one.
    pub fn deadline(&self, key: u32) -> Option<Timestamp> {
        self.current.get(&key).copied()
    }

    /// The earliest deadline.
    pub fn next(&self) -> Option<Timestamp> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the key with the earliest deadline if that deadline is at or before `now`; the
    /// key has no deadline afterwards.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<u32> {
        let &Reverse((at, key)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        self.current.remove(&key);
        self.settle();
        Some(key)
    }

    /// Number of keys with a deadline.
    pub fn len(&self) -> usize {
        self.current.len()
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }

    /// Entries in the heap, stale ones included (for tests of the bound).
    pub fn heap_len(&self) -> usize {
        self.heap.len()
    }

    /// Restores the invariants after a change: the heap is bounded and its top is current.
    fn settle(&mut self) {
        if self.heap.len() > COMPACT_RATIO * self.current.len() + COMPACT_SLACK {
            self.heap = self
                .current
                .iter()
                .map(|(&key, &at)| Reverse((at, key)))
                .collect();
            return;
        }
        while let Some(&Reverse((at, key))) = self.heap.peek() {
            if self.current.get(&key) == Some(&at) {
                break;
            }
            self.heap.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn t(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn drain(q: &mut TimerQueue, now: Timestamp) -> Vec<u32> {
        std::iter::from_fn(|| q.pop_due(now)).collect()
    }

    #[test]
    fn pops_due_keys_in_deadline_order() {
        let mut q = TimerQueue::new();
        q.set(3, Some(t(30)));
        q.set(1, Some(t(10)));
        q.set(2, Some(t(20)));
        q.set(4, None);
        assert_eq!(q.next(), Some(t(10)));
        assert_eq!(q.pop_due(t(9)), None);
        assert_eq!(drain(&mut q, t(20)), vec![1, 2]);
        assert_eq!(q.next(), Some(t(30)));
        assert_eq!(q.deadline(1), None, "a popped key has no deadline");
        assert_eq!(drain(&mut q, t(100)), vec![3]);
        assert!(q.is_empty());
        assert_eq!(q.next(), None);
    }

    #[test]
    fn moved_and_removed_deadlines_leave_no_trace() {
        let mut q = TimerQueue::new();
        q.set(1, Some(t(10)));
        q.set(2, Some(t(20)));
        // Later, earlier, back again: only the last one counts.
        q.set(1, Some(t(50)));
        assert_eq!(q.next(), Some(t(20)), "the stale top is skipped");
        q.set(1, Some(t(5)));
        q.set(1, Some(t(40)));
        q.set(1, Some(t(40)));
        assert_eq!(q.deadline(1), Some(t(40)));
        q.remove(2);
        assert_eq!(q.next(), Some(t(40)));
        assert_eq!(
            drain(&mut q, t(45)),
            vec![1],
            "popped once despite old copies"
        );
        assert_eq!(q.next(), None);
        assert_eq!(q.heap_len(), 0);
        // A key set back to a deadline it had before is still popped once.
        q.set(7, Some(t(60)));
        q.set(7, Some(t(70)));
        q.set(7, Some(t(60)));
        assert_eq!(drain(&mut q, t(100)), vec![7]);
        assert_eq!(q.heap_len(), 0);
    }

    #[test]
    fn equal_deadlines_all_pop() {
        let mut q = TimerQueue::new();
        for k in 0..10 {
            q.set(k, Some(t(5)));
        }
        let mut got = drain(&mut q, t(5));
        got.sort_unstable();
        assert_eq!(got, (0..10).collect::<Vec<_>>());
    }

    /// Many keys, random moves, removals and pops against a brute-force model; the heap stays
    /// bounded throughout.
    #[test]
    fn matches_a_brute_force_model_and_stays_bounded() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut q = TimerQueue::new();
        let mut model: HashMap<u32, Timestamp> = HashMap::new();
        let mut now = 0u64;
        for step in 0..20_000u32 {
            let key = (rng.next_u32() % 500) + 1;
            match rng.next_u32() % 10 {
                0 => {
                    q.remove(key);
                    model.remove(&key);
                }
                1 => {
                    now += u64::from(rng.next_u32() % 50);
                    let mut popped = drain(&mut q, t(now));
                    let mut due: Vec<u32> = model
                        .iter()
                        .filter(|(_, &at)| at <= t(now))
                        .map(|(&k, _)| k)
                        .collect();
                    model.retain(|_, at| *at > t(now));
                    popped.sort_unstable();
                    due.sort_unstable();
                    assert_eq!(popped, due, "step {step}");
                }
                _ => {
                    let at = t(now + u64::from(rng.next_u32() % 5_000));
                    q.set(key, Some(at));
                    model.insert(key, at);
                }
            }
            assert_eq!(q.next(), model.values().min().copied(), "step {step}");
            assert_eq!(q.len(), model.len());
            assert!(q.heap_len() <= COMPACT_RATIO * q.len() + COMPACT_SLACK);
        }
    }
}
