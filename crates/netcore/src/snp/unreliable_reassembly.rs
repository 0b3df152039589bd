//! Reassembly of unreliable messages that were split into fragments.
//!
//! A large unreliable message travels as several segments, each carrying the message number,
//! its offset in the message and whether it is the last one. Fragments are never resent, so a
//! message whose fragment was lost will never complete: the partial messages kept here are
//! bounded in number and in bytes (the oldest, by message number, go first), dropped once
//! they fall too far behind the newest message number seen or sit idle too long, and no
//! buffer is ever grown past the maximum message size. A message is delivered whole or not
//! at all, and a late duplicate fragment of a message just delivered is ignored. The common
//! case, a message in a single fragment, is handed back without a copy.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::time::Timestamp;

/// Default largest message accepted (512 KiB, the protocol's message size limit).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 512 * 1024;
/// Default number of partial messages kept at once.
pub const DEFAULT_MAX_PARTIAL_MESSAGES: usize = 16;
/// Default byte budget for all partial messages together (two maximum-size messages).
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 2 * DEFAULT_MAX_MESSAGE_SIZE;
/// Default distance, in message numbers, behind the newest at which a partial is abandoned.
pub const DEFAULT_MAX_MSG_NUM_BEHIND: u64 = 64;
/// Default time without a new fragment after which a partial is abandoned.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Most disjoint received pieces one partial message may have; more means a sender cutting
/// messages into absurdly scattered pieces, and the message is dropped.
pub const MAX_FRAGMENT_RANGES: usize = 64;
/// How many recently completed message numbers are remembered, so that a duplicated fragment
/// of a message already delivered does not start a useless new partial message.
pub const RECENT_COMPLETED: usize = 32;

/// Bounds applied by an [`UnreliableReassembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Largest message accepted; a fragment reaching past it drops its message.
    pub max_message_size: usize,
    /// Most partial messages held at once.
    pub max_partial_messages: usize,
    /// Most bytes allocated for partial messages together.
    pub max_buffered_bytes: usize,
    /// A partial message more than this many message numbers behind the newest is dropped.
    pub max_msg_num_behind: u64,
    /// A partial message with no new fragment for this long is dropped by `expire`.
    pub idle_timeout: Duration,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_partial_messages: DEFAULT_MAX_PARTIAL_MESSAGES,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_msg_num_behind: DEFAULT_MAX_MSG_NUM_BEHIND,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Counters for status and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyStats {
    /// Messages completed from two or more fragments.
    pub reassembled: u64,
    /// Partial messages given up (evicted, too old, timed out, inconsistent or too large).
    pub dropped_messages: u64,
    /// Fragments ignored without touching any partial message (too old, no room).
    pub dropped_fragments: u64,
}

/// A message seen in part.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct Partial {
    /// The message's bytes so far; zero where nothing arrived yet.
    buf: Vec<u8>,
    /// Received byte ranges, sorted, disjoint and not touching.
    received: Vec<(u64, u64)>,
    /// Known once the last fragment arrived.
    total_len: Option<u64>,
    last_activity: Timestamp,
}

impl Partial {
    fn is_complete(&self) -> bool {
        matches!((self.total_len, self.received.as_slice()), (Some(t), [(0, e)]) if *e == t)
    }
}

/// Reassembles the fragmented unreliable messages of one lane.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct UnreliableReassembler {
    config: ReassemblyConfig,
    /// Keyed by message number, so the first entry is the oldest.
    partials: BTreeMap<u64, Partial>,
    /// Sum of the allocated capacity of every partial's buffer.
    buffered: usize,
    newest: Option<u64>,
    /// Message numbers completed lately, oldest first.
    recent_completed: VecDeque<u64>,
    stats: ReassemblyStats,
}

impl Default for UnreliableReassembler {
    fn default() -> Self {
        Self::new(ReassemblyConfig::default())
    }
}

impl UnreliableReassembler {
    /// A reassembler with the given bounds.
    pub fn new(config: ReassemblyConfig) -> Self {
        UnreliableReassembler {
            config,
            partials: BTreeMap::new(),
            buffered: 0,
            newest: None,
            recent_completed: VecDeque::new(),
            stats: ReassemblyStats::default(),
        }
    }

    /// Takes one fragment: `data` sits at `offset` in message `msg_num`, and `is_last` says
    /// it ends the message. Returns the whole message once every byte of it has arrived.
    pub fn insert(
        &mut self,
        now: Timestamp,
        msg_num: u64,
        offset: u32,
        data: Bytes,
        is_last: bool,
    ) -> Option<Bytes> {
        if offset == 0 && is_last {
            return self.accept_whole(msg_num, data.len()).then_some(data);
        }
        let start = u64::from(offset);
        let end = start.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if end > u64::try_from(self.config.max_message_size).unwrap_or(u64::MAX) {
            // A fragment past the limit means the message is over it: drop all of it.
            self.drop_partial(msg_num);
            self.stats.dropped_fragments += 1;
            return None;
        }
        self.note_msg_num(msg_num);
        if self.too_old(msg_num) || self.recent_completed.contains(&msg_num) {
            self.stats.dropped_fragments += 1;
            return None;
        }
        if !self.partials.contains_key(&msg_num) && !self.make_slot(msg_num) {
            self.stats.dropped_fragments += 1;
            return None;
        }
        if !self.accept_fragment(msg_num, start, end, &data, is_last, now) {
            self.drop_partial(msg_num);
            return None;
        }

        if !self
            .partials
            .get(&msg_num)
            .is_some_and(Partial::is_complete)
        {
            return None;
        }
        let partial = self.partials.remove(&msg_num)?;
        self.buffered -= partial.buf.capacity();
        self.stats.reassembled += 1;
        if self.recent_completed.len() >= RECENT_COMPLETED {
            self.recent_completed.pop_front();
        }
        self.recent_completed.push_back(msg_num);
        Some(Bytes::from(partial.buf))
    }

    /// Drops partial messages idle for the configured timeout; returns how many.
    pub fn expire(&mut self, now: Timestamp) -> usize {
        let timeout = self.config.idle_timeout;
        let stale: Vec<u64> = self
            .partials
            .iter()
            .filter(|(_, p)| p.last_activity + timeout <= now)
            .map(|(&n, _)| n)
            .collect();
        for &n in &stale {
            self.drop_partial(n);
        }
        stale.len()
    }

    /// When the next partial message would time out, if any is held.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.partials
            .values()
            .map(|p| p.last_activity + self.config.idle_timeout)
            .min()
    }

    /// Number of partial messages held.
    pub fn partial_count(&self) -> usize {
        self.partials.len()
    }

    /// Bytes allocated for partial messages.
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Counters since creation.
    pub fn stats(&self) -> ReassemblyStats {
        self.stats
    }

    /// The bounds in force.
    pub fn config(&self) -> &ReassemblyConfig {
        &self.config
    }

    /// Records a message number and abandons partials that fell behind the horizon.
    /// Takes message `msg_num` arriving whole in one fragment of `len` bytes: whether to
    /// deliver it. No state and no copy, so the caller may copy just the part it keeps. A
    /// late one is still delivered, since unreliable messages may arrive out of order anyway.
    pub fn accept_whole(&mut self, msg_num: u64, len: usize) -> bool {
        self.drop_partial(msg_num);
        if len > self.config.max_message_size {
            self.stats.dropped_fragments += 1;
            return false;
        }
        self.note_msg_num(msg_num);
        true
    }

    fn note_msg_num(&mut self, msg_num: u64) {
        if self.newest.is_some_and(|n| n >= msg_num) {
            return;
        }
        self.newest = Some(msg_num);
        while let Some((&oldest, _)) = self.partials.first_key_value() {
            if !self.too_old(oldest) {
                break;
            }
            self.drop_partial(oldest);
        }
    }

    fn too_old(&self, msg_num: u64) -> bool {
        self.newest
            .is_some_and(|n| n.saturating_sub(self.config.max_msg_num_behind) > msg_num)
    }

    /// Makes room for a new partial message, evicting the oldest if it is older than the
    /// newcomer. Returns false if the newcomer itself is the one not to keep.
    fn make_slot(&mut self, msg_num: u64) -> bool {
        if self.config.max_partial_messages == 0 {
            return false;
        }
        while self.partials.len() >= self.config.max_partial_messages {
            match self.partials.first_key_value() {
                Some((&oldest, _)) if oldest < msg_num => self.drop_partial(oldest),
                _ => return false,
            }
        }
        self.partials.insert(
            msg_num,
            Partial {
                buf: Vec::new(),
                received: Vec::new(),
                total_len: None,
                last_activity: Timestamp::ZERO,
            },
        );
        true
    }

    /// Stores a fragment in an existing partial message. Returns false if the message must
    /// be dropped (inconsistent lengths, too scattered, or no byte budget left for it).
    fn accept_fragment(
        &mut self,
        msg_num: u64,
        start: u64,
        end: u64,
        data: &[u8],
        is_last: bool,
        now: Timestamp,
    ) -> bool {
        let Some(p) = self.partials.get(&msg_num) else {
            return false;
        };
        let furthest = p.received.last().map_or(0, |&(_, e)| e);
        let total_len = match (p.total_len, is_last) {
            (Some(t), true) if t != end => return false,
            (Some(t), _) if end > t => return false,
            (None, true) if furthest > end => return false,
            (None, true) => Some(end),
            (t, _) => t,
        };
        // Ranges [i, j) overlap or touch the new one and merge with it.
        let i = p.received.partition_point(|&(_, e)| e < start);
        let j = p.received.partition_point(|&(s, _)| s <= end);
        if start < end && p.received.len() - (j - i) + 1 > MAX_FRAGMENT_RANGES {
            return false;
        }
        if !self.reserve(msg_num, end, total_len) {
            return false;
        }
        let Some(p) = self.partials.get_mut(&msg_num) else {
            return false;
        };
        p.total_len = total_len;
        p.last_activity = now;
        if start < end {
            let (lo, hi) = (to_usize(start), to_usize(end));
            if p.buf.len() < hi {
                p.buf.resize(hi, 0);
            }
            if let Some(dst) = p.buf.get_mut(lo..hi) {
                dst.copy_from_slice(data);
            }
            let merged_start = p.received.get(i).map_or(start, |&(s, _)| s.min(start));
            let merged_end = match j.checked_sub(1).and_then(|k| p.received.get(k)) {
                Some(&(_, e)) if j > i => e.max(end),
                _ => end,
            };
            p.received
                .splice(i..j, std::iter::once((merged_start, merged_end)));
        }
        true
    }

    /// Ensures message `msg_num` can hold `end` bytes, within the byte budget, evicting older
    /// partials as needed. Returns false if this message is itself the oldest in the way.
    fn reserve(&mut self, msg_num: u64, end: u64, total_len: Option<u64>) -> bool {
        let Some(p) = self.partials.get(&msg_num) else {
            return false;
        };
        let cap = p.buf.capacity();
        let end = to_usize(end);
        if end <= cap {
            return true;
        }
        // Grow geometrically while the length is unknown, so a message arriving in order
        // is not copied once per fragment; exactly once it is known.
        let target = match total_len {
            Some(t) => to_usize(t),
            None => end.max(cap.saturating_mul(2).min(self.config.max_message_size)),
        };
        let extra = target - cap;
        while self.buffered + extra > self.config.max_buffered_bytes {
            match self.partials.first_key_value() {
                Some((&oldest, _)) if oldest != msg_num => self.drop_partial(oldest),
                _ => return false,
            }
        }
        let Some(p) = self.partials.get_mut(&msg_num) else {
            return false;
        };
        p.buf.reserve_exact(target - p.buf.len());
        self.buffered = self.buffered - cap + p.buf.capacity();
        true
    }

    fn drop_partial(&mut self, msg_num: u64) {
        if let Some(p) = self.partials.remove(&msg_num) {
            self.buffered -= p.buf.capacity();
            self.stats.dropped_messages += 1;
        }
    }
}

/// Offsets here are bounded by the maximum message size, which fits in memory.
fn to_usize(v: u64) -> usize {
    usize::try_from(v).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Timestamp = Timestamp::ZERO;

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(13) ^ salt ^ (i >> 8) as u8)
            .collect()
    }

    fn frag(msg: &[u8], a: usize, b: usize) -> (u32, Bytes, bool) {
        (a as u32, Bytes::copy_from_slice(&msg[a..b]), b == msg.len())
    }

    #[test]
    fn single_fragment_is_returned_without_copy() {
        let mut r = UnreliableReassembler::default();
        let data = Bytes::from(pattern(300, 1));
        let out = r.insert(T0, 7, 0, data.clone(), true).unwrap();
        assert_eq!(out.as_ptr(), data.as_ptr());
        assert_eq!(r.partial_count(), 0);
        let empty = r.insert(T0, 8, 0, Bytes::new(), true).unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn fragments_in_any_order_with_duplicates() {
        let mut r = UnreliableReassembler::default();
        let msg = pattern(3000, 2);
        let pieces = [(1000, 2000), (2000, 3000), (1500, 2500), (0, 1000)];
        let mut got = None;
        for (k, &(a, b)) in pieces.iter().enumerate() {
            let (o, d, last) = frag(&msg, a, b);
            let out = r.insert(T0, 1, o, d, last);
            assert_eq!(out.is_some(), k == pieces.len() - 1);
            got = got.or(out);
        }
        assert_eq!(&got.unwrap()[..], &msg[..]);
        assert_eq!(r.partial_count(), 0);
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.stats().reassembled, 1);
    }

    #[test]
    fn late_duplicate_fragment_of_completed_message_is_ignored() {
        let mut r = UnreliableReassembler::default();
        r.insert(T0, 4, 0, Bytes::from_static(b"ab"), false);
        assert!(r.insert(T0, 4, 2, Bytes::from_static(b"c"), true).is_some());
        assert!(r
            .insert(T0, 4, 0, Bytes::from_static(b"ab"), false)
            .is_none());
        assert_eq!(r.partial_count(), 0);
        assert_eq!(r.stats().dropped_fragments, 1);
    }

    #[test]
    fn max_message_size_enforced_before_allocating() {
        let cfg = ReassemblyConfig {
            max_message_size: 1000,
            ..ReassemblyConfig::default()
        };
        let mut r = UnreliableReassembler::new(cfg);
        assert!(r
            .insert(T0, 1, 0, Bytes::from(vec![1; 600]), false)
            .is_none());
        let before = r.buffered_bytes();
        assert!(before >= 600);
        assert!(r
            .insert(T0, 1, 600, Bytes::from(vec![1; 401]), true)
            .is_none());
        assert_eq!(
            r.partial_count(),
            0,
            "the oversized message is dropped whole"
        );
        assert_eq!(r.buffered_bytes(), 0);
        assert!(r
            .insert(T0, 2, u32::MAX, Bytes::from(vec![1; 10]), false)
            .is_none());
        assert!(r
            .insert(T0, 3, 0, Bytes::from(vec![1; 1001]), true)
            .is_none());
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn inconsistent_lengths_drop_the_message() {
        let mut r = UnreliableReassembler::default();
        r.insert(T0, 1, 0, Bytes::from(vec![1; 50]), false);
        r.insert(T0, 1, 100, Bytes::from(vec![1; 100]), true);
        assert_eq!(r.partial_count(), 1);
        assert!(r
            .insert(T0, 1, 150, Bytes::from(vec![1; 100]), false)
            .is_none());
        assert_eq!(r.partial_count(), 0);
        r.insert(T0, 2, 500, Bytes::from(vec![1; 100]), false);
        assert!(r
            .insert(T0, 2, 100, Bytes::from(vec![1; 100]), true)
            .is_none());
        assert_eq!(r.partial_count(), 0);
        r.insert(T0, 3, 100, Bytes::from(vec![1; 100]), true);
        assert!(r
            .insert(T0, 3, 50, Bytes::from(vec![1; 100]), true)
            .is_none());
        assert_eq!(r.partial_count(), 0);
        assert_eq!(r.buffered_bytes(), 0);
    }

    #[test]
    fn oldest_partial_evicted_by_count() {
        let cfg = ReassemblyConfig {
            max_partial_messages: 2,
            ..ReassemblyConfig::default()
        };
        let mut r = UnreliableReassembler::new(cfg);
        r.insert(T0, 10, 0, Bytes::from_static(b"aa"), false);
        r.insert(T0, 11, 0, Bytes::from_static(b"bb"), false);
        r.insert(T0, 12, 0, Bytes::from_static(b"cc"), false);
        assert_eq!(r.partial_count(), 2);
        assert!(r
            .insert(T0, 10, 2, Bytes::from_static(b"x"), true)
            .is_none());
        assert_eq!(r.stats().dropped_fragments, 1, "10 is older than all kept");
        assert_eq!(
            r.insert(T0, 12, 2, Bytes::from_static(b"!"), true)
                .as_deref(),
            Some(&b"cc!"[..])
        );
    }

    #[test]
    fn oldest_partial_evicted_by_bytes() {
        let cfg = ReassemblyConfig {
            max_message_size: 4000,
            max_buffered_bytes: 5000,
            ..ReassemblyConfig::default()
        };
        let mut r = UnreliableReassembler::new(cfg);
        r.insert(T0, 1, 0, Bytes::from(vec![1; 3000]), false);
        r.insert(T0, 2, 0, Bytes::from(vec![2; 1000]), false);
        r.insert(T0, 2, 1000, Bytes::from(vec![2; 2000]), false);
        assert_eq!(r.partial_count(), 1, "message 1 made room for 2");
        assert!(r.buffered_bytes() <= 5000);
        // An older message cannot push a newer one out.
        assert!(r
            .insert(T0, 1, 0, Bytes::from(vec![1; 3000]), false)
            .is_none());
        assert!(r.buffered_bytes() <= 5000);
        assert_eq!(
            r.insert(T0, 2, 3000, Bytes::from(vec![2; 5]), true)
                .map(|m| m.len()),
            Some(3005)
        );
    }

    #[test]
    fn horizon_drops_stale_partials() {
        let cfg = ReassemblyConfig {
            max_msg_num_behind: 4,
            ..ReassemblyConfig::default()
        };
        let mut r = UnreliableReassembler::new(cfg);
        r.insert(T0, 10, 0, Bytes::from_static(b"ab"), false);
        r.insert(T0, 14, 0, Bytes::from_static(b"whole"), true);
        assert_eq!(r.partial_count(), 1);
        r.insert(T0, 15, 0, Bytes::from_static(b"whole"), true);
        assert_eq!(r.partial_count(), 0);
        assert!(r
            .insert(T0, 10, 2, Bytes::from_static(b"c"), true)
            .is_none());
        assert!(r
            .insert(T0, 9, 0, Bytes::from_static(b"c"), false)
            .is_none());
        assert_eq!(r.partial_count(), 0);
        // A late whole message is still delivered.
        assert!(r
            .insert(T0, 3, 0, Bytes::from_static(b"late"), true)
            .is_some());
    }

    #[test]
    fn idle_partials_expire() {
        let mut r = UnreliableReassembler::default();
        let t1 = Timestamp::from_micros(1_000_000);
        r.insert(T0, 1, 0, Bytes::from_static(b"a"), false);
        r.insert(t1, 2, 0, Bytes::from_static(b"b"), false);
        assert_eq!(r.next_expiry(), Some(T0 + DEFAULT_IDLE_TIMEOUT));
        assert_eq!(
            r.expire(T0 + DEFAULT_IDLE_TIMEOUT - Duration::from_micros(1)),
            0
        );
        assert_eq!(r.expire(T0 + DEFAULT_IDLE_TIMEOUT), 1);
        assert_eq!(r.next_expiry(), Some(t1 + DEFAULT_IDLE_TIMEOUT));
        // Activity pushes the deadline back.
        let t2 = Timestamp::from_micros(3_000_000);
        r.insert(t2, 2, 1, Bytes::from_static(b"c"), false);
        assert_eq!(r.next_expiry(), Some(t2 + DEFAULT_IDLE_TIMEOUT));
        assert_eq!(r.expire(t2 + DEFAULT_IDLE_TIMEOUT), 1);
        assert_eq!(r.buffered_bytes(), 0);
        assert_eq!(r.next_expiry(), None);
    }

    #[test]
    fn scattered_pieces_are_bounded() {
        let mut r = UnreliableReassembler::default();
        for k in 0..MAX_FRAGMENT_RANGES as u32 {
            r.insert(T0, 1, k * 2, Bytes::from_static(b"x"), false);
        }
        assert_eq!(r.partial_count(), 1);
        r.insert(T0, 1, 1000, Bytes::from_static(b"x"), false);
        assert_eq!(r.partial_count(), 0);
    }

    fn cut(len: usize, cuts: &[usize]) -> Vec<(usize, usize)> {
        let mut p: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        p.extend([0, len]);
        p.sort_unstable();
        p.dedup();
        p.windows(2).map(|w| (w[0], w[1])).collect()
    }

    proptest! {
        // Failures print their inputs; nothing is written beside the sources.
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Any order, duplication and overlapping re-cut of a message's fragments yields the
        /// message, whole, and exactly once when it travelled in fragments only.
        #[test]
        fn reassembles_any_permutation(
            len in 1usize..20_000,
            cuts_a in proptest::collection::vec(any::<usize>(), 0..20),
            cuts_b in proptest::collection::vec(any::<usize>(), 0..20),
            keys in proptest::collection::vec(any::<u64>(), 0..80),
        ) {
            let msg = pattern(len, 9);
            let mut pieces = cut(len, &cuts_a);
            pieces.extend(cut(len, &cuts_b));
            // A message sent whole bypasses reassembly, and duplicates of those are allowed.
            let whole = pieces.iter().filter(|&&(a, b)| a == 0 && b == len).count();
            let mut keyed: Vec<_> = pieces
                .into_iter()
                .enumerate()
                .map(|(i, p)| (keys.get(i).copied().unwrap_or(i as u64), p))
                .collect();
            keyed.sort_by_key(|k| k.0);
            let mut r = UnreliableReassembler::default();
            let mut completions = 0;
            for (_, (a, b)) in keyed {
                let (o, d, last) = frag(&msg, a, b);
                if let Some(m) = r.insert(T0, 5, o, d, last) {
                    prop_assert_eq!(&m[..], &msg[..]);
                    completions += 1;
                }
                prop_assert!(r.buffered_bytes() <= DEFAULT_MAX_BUFFERED_BYTES);
            }
            if whole == 0 {
                prop_assert_eq!(completions, 1);
            } else {
                prop_assert!(completions >= whole);
            }
        }

        /// Interleaved messages with lost fragments: what completes is exact, nothing with a
        /// lost fragment completes, and the bounds hold throughout.
        #[test]
        fn lossy_interleaved_messages(
            lens in proptest::collection::vec(1usize..6000, 1..12),
            frag_len in 100usize..1300,
            lost in proptest::collection::vec(any::<bool>(), 0..200),
            keys in proptest::collection::vec(any::<u16>(), 0..200),
        ) {
            let cfg = ReassemblyConfig {
                max_message_size: 8000,
                max_partial_messages: 4,
                max_buffered_bytes: 16_000,
                ..ReassemblyConfig::default()
            };
            let mut r = UnreliableReassembler::new(cfg.clone());
            let msgs: Vec<Vec<u8>> =
                lens.iter().enumerate().map(|(i, &n)| pattern(n, i as u8)).collect();
            let mut all = Vec::new();
            let mut complete_possible = vec![true; msgs.len()];
            for (num, m) in msgs.iter().enumerate() {
                for a in (0..m.len()).step_by(frag_len) {
                    let b = (a + frag_len).min(m.len());
                    let idx = all.len();
                    if lost.get(idx).copied().unwrap_or(false) {
                        complete_possible[num] = false;
                    } else {
                        all.push((num, a, b));
                    }
                }
            }
            let mut keyed: Vec<_> = all
                .into_iter()
                .enumerate()
                .map(|(i, f)| (keys.get(i).copied().unwrap_or(0) as usize / 8192 + i, f))
                .collect();
            keyed.sort_by_key(|k| k.0);
            for (_, (num, a, b)) in keyed {
                let (o, d, last) = frag(&msgs[num], a, b);
                if let Some(m) = r.insert(T0, num as u64, o, d, last) {
                    prop_assert!(complete_possible[num]);
                    prop_assert_eq!(&m[..], &msgs[num][..]);
                }
                prop_assert!(r.buffered_bytes() <= cfg.max_buffered_bytes);
                prop_assert!(r.partial_count() <= cfg.max_partial_messages);
            }
        }
    }
}
