//! The reliable send side of one lane: a byte stream with retransmission bookkeeping.
//!
//! Encoded reliable messages are appended to the stream and get consecutive stream positions.
//! The packet builder pulls segments out (lost ranges first, then new bytes), records which
//! packet carried which range, and reports each range back as acked or lost once the packet's
//! fate is known. Bytes are kept until every byte before them is acked, then freed.
//!
//! Segments never cross a stored chunk: a large owned chunk ([`SendStream::push`]) is sliced
//! without copying, while borrowed bytes (and small owned ones) are copied into a shared tail
//! buffer so that a burst of messages leaves as one segment per packet rather than one segment
//! (and one frame header) per message. Retransmissions
//! may use different boundaries than the first transmission, which the wire format allows.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

/// Appends of at most this many bytes are copied into the tail buffer and coalesced with
/// their neighbours; longer appends are kept as their own chunk, without a copy.
pub const COALESCE_MAX: usize = 1024;

/// Most bytes the tail buffer grows by at once when the stream is busy (see `reserve_tail`).
pub const TAIL_GROWTH_MAX: usize = 64 * 1024;

/// Default cap on bytes held by one stream (queued plus sent-but-unacked), matching the
/// reference implementation's default send buffer size.
pub const DEFAULT_SEND_LIMIT: usize = 524_288;

/// New data waits while the stream's acked and lost ranges above `acked_pos` number this
/// many: each is an edge of a hole in what the peer holds. The reference's receiver refuses
/// (unacknowledged) reliable data that would make a lane's stream have more than 30 holes,
/// or more than 20 when it fills one in part; ours refuses past 30. A sender far ahead of
/// its holes under heavy loss would see most of its packets refused.
pub const HOLE_EDGE_BUDGET: usize = 24;

/// Messages longer than this are remembered until acked, so the peer's read position can
/// be placed at the start of one it holds in part; shorter ones count as this long.
pub const PARTIAL_SLACK: u64 = 4096;

/// The send buffer has no room for the bytes asked for; nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendLimitExceeded;

impl fmt::Display for SendLimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("reliable send buffer limit exceeded")
    }
}

impl std::error::Error for SendLimitExceeded {}

/// A piece of the stream handed to the packet builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Stream position of the first byte of `data`.
    pub pos: u64,
    /// The bytes; a cheap reference-counted view into the stream's buffer.
    pub data: Bytes,
}

impl Segment {
    /// Stream positions covered by this segment, to record with the packet that carries it.
    pub fn range(&self) -> Range<u64> {
        self.pos..self.end()
    }

    /// Stream position one past the last byte.
    pub fn end(&self) -> u64 {
        self.pos + len_u64(self.data.len())
    }
}

/// One stored, immutable run of the stream.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct Chunk {
    start: u64,
    data: Bytes,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.start + len_u64(self.data.len())
    }

    /// The part of this chunk covering `[from, to)`, clamped to the chunk.
    fn slice(&self, from: u64, to: u64) -> Bytes {
        let lo = usize::try_from(from.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let hi = usize::try_from(to.saturating_sub(self.start)).unwrap_or(usize::MAX);
        let hi = hi.min(self.data.len());
        self.data.slice(lo.min(hi)..hi)
    }
}

/// Reliable send stream of one lane.
///
/// Positions, in increasing order: `acked_pos` (every byte before it is acked and freed)
/// <= `next_new` (first byte never sent) <= `sealed_end` (first byte still in the tail buffer)
/// <= `write_pos` (where the next append goes).
///
/// # The peer's receive window
/// A receiver buffers a lane's reliable bytes from the start of the first message it has
/// not read in full, and drops a whole packet (unacknowledged) whose segment would end more
/// than its receive buffer past that point (the reference: 1 MiB by default). After a loss
/// that point stays at the gap, so a sender that keeps sending new data runs off the end of
/// the window and every packet beyond it is thrown away. [`set_peer_window`](Self::set_peer_window)
/// makes the stream send new bytes only up to that window, counted from where the peer may
/// still hold a message in part: the start of the message holding `acked_pos` when it is a
/// long one ([`mark_message`](Self::mark_message)), else [`PARTIAL_SLACK`] before `acked_pos`.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct SendStream {
    /// Stored chunks covering `[front chunk start, sealed_end)`; the front chunk may start
    /// before `acked_pos` until it is acked in full.
    chunks: VecDeque<Chunk>,
    /// Small appended bytes not yet sent, covering `[sealed_end, write_pos)`.
    tail: BytesMut,
    sealed_end: u64,
    acked_pos: u64,
    next_new: u64,
    /// Acked ranges above `acked_pos`.
    acked: RangeSet,
    /// Lost ranges waiting for retransmission; never overlaps `acked`.
    lost: RangeSet,
    limit: usize,
    /// Bytes the peer buffers past its read position (`u64::MAX`: no limit).
    peer_window: u64,
    /// Long messages not yet acked in full, ascending.
    long_messages: VecDeque<Range<u64>>,
    /// Bytes taken from `lost` (sent again) so far.
    resent: u64,
}

impl SendStream {
    /// A stream whose first byte gets position `start` (the reference protocol starts at 1;
    /// position 0 is reserved there), holding at most `limit` bytes.
    pub fn new(start: u64, limit: usize) -> Self {
        SendStream {
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            sealed_end: start,
            acked_pos: start,
            next_new: start,
            acked: RangeSet::default(),
            lost: RangeSet::default(),
            limit,
            peer_window: u64::MAX,
            long_messages: VecDeque::new(),
            resent: 0,
        }
    }

    /// Limits new data to `bytes` past the peer's read position (see the type's docs).
    pub fn set_peer_window(&mut self, bytes: u64) {
        self.peer_window = bytes;
    }

    /// Notes that `range` holds one whole message (header included), so the peer's read
    /// position can be placed at its start while it is acked only in part. Ranges must come
    /// in stream order.
    pub fn mark_message(&mut self, range: Range<u64>) {
        if range.end.saturating_sub(range.start) > PARTIAL_SLACK && range.end > self.acked_pos {
            self.long_messages.push_back(range);
        }
    }

    /// The earliest position the peer may still buffer from: its read position at worst.
    pub fn peer_read_floor(&self) -> u64 {
        match self.long_messages.front() {
            Some(m) if m.start <= self.acked_pos => m.start,
            _ => self.acked_pos.saturating_sub(PARTIAL_SLACK),
        }
        .min(self.acked_pos)
    }

    /// First position new data may not reach: the peer's receive window from its read
    /// position, or no new data at all while the holes are at their budget
    /// ([`HOLE_EDGE_BUDGET`]).
    pub fn window_end(&self) -> u64 {
        if self.acked.len() + self.lost.len() >= HOLE_EDGE_BUDGET {
            return self.next_new;
        }
        self.peer_read_floor().saturating_add(self.peer_window)
    }

    /// Bytes sent again after a loss (or for a probe), in total.
    pub fn resent_bytes(&self) -> u64 {
        self.resent
    }

    /// Checks that `len` more bytes fit under the limit. Call it with the whole encoded size
    /// of a message before appending any part of it, so a refused send leaves nothing behind.
    /// Unacked bytes count too (the reference counts only unsent ones), so the limit is a
    /// real bound on memory; `queued_bytes` gives the reference's measure if wanted.
    pub fn try_reserve(&self, len: usize) -> Result<(), SendLimitExceeded> {
        let wanted = self.buffered_bytes().saturating_add(len_u64(len));
        if wanted > len_u64(self.limit) {
            Err(SendLimitExceeded)
        } else {
            Ok(())
        }
    }

    /// Appends bytes to the stream and returns the positions they got. Does not check the
    /// limit (see [`try_reserve`](Self::try_reserve)). Large chunks are kept without a copy.
    pub fn push(&mut self, data: impl Into<Bytes>) -> Range<u64> {
        let data: Bytes = data.into();
        let start = self.write_pos();
        if data.is_empty() {
            return start..start;
        }
        if data.len() <= COALESCE_MAX {
            self.tail.extend_from_slice(&data);
        } else {
            self.seal_tail();
            self.chunks.push_back(Chunk {
                start: self.sealed_end,
                data,
            });
            self.sealed_end = self.chunks.back().map_or(self.sealed_end, Chunk::end);
        }
        start..self.write_pos()
    }

    /// Appends borrowed bytes (copied) and returns the positions they got.
    pub fn push_slice(&mut self, data: &[u8]) -> Range<u64> {
        self.push_with(data.len(), |tail| tail.extend_from_slice(data))
    }

    /// Appends what `write` puts at the end of the tail buffer (about `len` bytes: room for
    /// them is made first) and returns the positions it got. Borrowed bytes of any size are
    /// copied into the tail, so a message's header and body, and consecutive messages, stay
    /// contiguous: a packet then carries one segment, not one per stored piece.
    pub fn push_with(&mut self, len: usize, write: impl FnOnce(&mut BytesMut)) -> Range<u64> {
        let start = self.write_pos();
        self.reserve_tail(len);
        write(&mut self.tail);
        start..self.write_pos()
    }

    /// Makes room for `len` more bytes in the tail. When the tail's buffer is full, what it
    /// holds is sealed into a chunk (no copy) and a new buffer starts: as large as the bytes
    /// the stream holds, within `len..=`[`TAIL_GROWTH_MAX`], so a busy stream allocates once
    /// for many messages and an idle one only what it needs. (`BytesMut::reserve` would copy
    /// the unsent bytes, or double a buffer that segments still share.) The old buffer is
    /// freed when the last segment cut from it is acked.
    fn reserve_tail(&mut self, len: usize) {
        if self.tail.capacity() - self.tail.len() >= len {
            return;
        }
        self.seal_tail();
        let busy = usize::try_from(self.buffered_bytes()).unwrap_or(usize::MAX);
        self.tail = BytesMut::with_capacity(busy.clamp(len, TAIL_GROWTH_MAX.max(len)));
    }

    /// Takes the next segment to put on the wire, at most `max_len` bytes: a lost range if
    /// any, else bytes never sent. The segment counts as in flight from now on; the caller
    /// records its range with the packet and later reports it through
    /// [`on_acked`](Self::on_acked) or [`on_lost`](Self::on_lost) (also if the packet was
    /// never sent after all: report it lost and it is queued again).
    pub fn next_segment(&mut self, max_len: usize) -> Option<Segment> {
        if max_len == 0 {
            return None;
        }
        let max_len = len_u64(max_len);
        while let Some(range) = self.lost.first() {
            match self.chunk_at(range.start) {
                Some(chunk) => {
                    let end = range.end.min(chunk.end()).min(range.start + max_len);
                    let data = chunk.slice(range.start, end);
                    self.lost.remove(range.start..end);
                    self.resent += end - range.start;
                    return Some(Segment {
                        pos: range.start,
                        data,
                    });
                }
                None => {
                    // Unreachable while the invariants hold; drop the range rather than spin.
                    debug_assert!(false, "lost range {range:?} has no stored bytes");
                    self.lost.remove(range);
                }
            }
        }
        let window_end = self.window_end();
        if self.next_new >= window_end {
            return None;
        }
        let max_len = max_len.min(window_end - self.next_new);
        if self.next_new < self.sealed_end {
            let pos = self.next_new;
            let chunk = self.chunk_at(pos)?;
            let end = chunk.end().min(pos + max_len);
            let data = chunk.slice(pos, end);
            self.next_new = end;
            return Some(Segment { pos, data });
        }
        if self.tail.is_empty() {
            return None;
        }
        let n = usize::try_from(max_len)
            .unwrap_or(usize::MAX)
            .min(self.tail.len());
        let data = self.tail.split_to(n).freeze();
        let pos = self.sealed_end;
        self.chunks.push_back(Chunk {
            start: pos,
            data: data.clone(),
        });
        self.sealed_end += len_u64(n);
        self.next_new = self.sealed_end;
        Some(Segment { pos, data })
    }

    /// Records that the peer has the bytes in `range`; returns how many of them were not
    /// known to be acked before. Frees chunks once every byte up to their end is acked.
    pub fn on_acked(&mut self, range: Range<u64>) -> u64 {
        let start = range.start.max(self.acked_pos);
        let end = range.end.min(self.next_new);
        if start >= end {
            return 0;
        }
        let newly = self.acked.insert(start..end);
        self.lost.remove(start..end);
        if let Some(first) = self.acked.first() {
            if first.start == self.acked_pos {
                self.acked_pos = first.end;
                self.acked.remove(first);
            }
        }
        while self
            .chunks
            .front()
            .is_some_and(|c| c.end() <= self.acked_pos)
        {
            self.chunks.pop_front();
        }
        while self
            .long_messages
            .front()
            .is_some_and(|m| m.end <= self.acked_pos)
        {
            self.long_messages.pop_front();
        }
        newly
    }

    /// Records that the packet carrying `range` was lost: the parts not acked meanwhile are
    /// queued for retransmission ahead of new data.
    pub fn on_lost(&mut self, range: Range<u64>) {
        let start = range.start.max(self.acked_pos);
        let end = range.end.min(self.next_new);
        if start >= end {
            return;
        }
        for hole in self.acked.holes(start..end) {
            self.lost.insert(hole);
        }
    }

    /// Whether bytes wait to be sent (lost bytes or new bytes), windows aside.
    pub fn has_pending(&self) -> bool {
        !self.lost.is_empty() || self.next_new < self.write_pos()
    }

    /// Whether a segment can be sent now: lost bytes, or new bytes within the peer's window.
    pub fn has_sendable(&self) -> bool {
        !self.lost.is_empty() || self.next_new < self.write_pos().min(self.window_end())
    }

    /// Bytes that can be sent now: lost ones, and new ones within the peer's window.
    pub fn sendable_bytes(&self) -> u64 {
        let new_end = self.write_pos().min(self.window_end());
        self.lost.total() + new_end.saturating_sub(self.next_new)
    }

    /// Whether every byte appended so far is acked.
    pub fn is_fully_acked(&self) -> bool {
        self.acked_pos == self.write_pos()
    }

    /// Position the next appended byte will get.
    pub fn write_pos(&self) -> u64 {
        self.sealed_end + len_u64(self.tail.len())
    }

    /// Every byte before this position is acked.
    pub fn acked_pos(&self) -> u64 {
        self.acked_pos
    }

    /// Bytes waiting to go on the wire: never sent, or lost and not yet resent.
    pub fn queued_bytes(&self) -> u64 {
        (self.write_pos() - self.next_new) + self.lost.total()
    }

    /// Bytes sent at least once and not yet acked (lost ones included).
    pub fn unacked_bytes(&self) -> u64 {
        (self.next_new - self.acked_pos) - self.acked.total()
    }

    /// Bytes sent and neither acked nor known lost.
    pub fn in_flight_bytes(&self) -> u64 {
        self.unacked_bytes() - self.lost.total()
    }

    /// Bytes counted against the limit: everything from the first unacked byte on.
    pub fn buffered_bytes(&self) -> u64 {
        self.write_pos() - self.acked_pos
    }

    /// The cap on [`buffered_bytes`](Self::buffered_bytes) applied by `try_reserve`.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Changes the cap; bytes already queued stay queued even if now over it.
    pub fn set_limit(&mut self, limit: usize) {
        self.limit = limit;
    }

    /// Frees the storage kept for reuse by whatever is empty (chunk queue, tail buffer, range
    /// sets): for an idle connection, which then holds nothing for this stream but positions.
    /// Not for the hot path: the next write allocates again.
    pub fn shrink(&mut self) {
        if self.chunks.is_empty() {
            self.chunks = VecDeque::new();
        }
        if self.tail.is_empty() {
            self.tail = BytesMut::new();
        }
        if self.acked.is_empty() {
            self.acked = RangeSet::default();
        }
        if self.lost.is_empty() {
            self.lost = RangeSet::default();
        }
        if self.long_messages.is_empty() {
            self.long_messages = VecDeque::new();
        }
    }

    /// Seals the tail buffer into a chunk so a following chunk can be stored after it.
    fn seal_tail(&mut self) {
        if self.tail.is_empty() {
            return;
        }
        let data = self.tail.split().freeze();
        let start = self.sealed_end;
        self.sealed_end += len_u64(data.len());
        self.chunks.push_back(Chunk { start, data });
    }

    /// The stored chunk holding position `pos`.
    fn chunk_at(&self, pos: u64) -> Option<&Chunk> {
        let idx = self.chunks.partition_point(|c| c.end() <= pos);
        self.chunks.get(idx).filter(|c| c.start <= pos)
    }
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// A set of disjoint, non-adjacent half-open ranges of stream positions, with their total size.
#[derive(Debug, Default)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct RangeSet {
    /// Start -> end.
    map: BTreeMap<u64, u64>,
    total: u64,
}

impl RangeSet {
    fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of disjoint ranges.
    fn len(&self) -> usize {
        self.map.len()
    }

    fn total(&self) -> u64 {
        self.total
    }

    fn first(&self) -> Option<Range<u64>> {
        self.map.first_key_value().map(|(&s, &e)| s..e)
    }

    /// Adds `r`, merging with overlapping or touching ranges; returns how many positions
    /// were not already in the set.
    fn insert(&mut self, r: Range<u64>) -> u64 {
        if r.start >= r.end {
            return 0;
        }
        let (mut start, mut end) = (r.start, r.end);
        let (mut already, mut absorbed) = (0, 0);
        while let Some((&s, &e)) = self.map.range(..=end).next_back() {
            if e < start {
                break;
            }
            self.map.remove(&s);
            absorbed += e - s;
            already += e.min(r.end).saturating_sub(s.max(r.start));
            start = start.min(s);
            end = end.max(e);
        }
        self.map.insert(start, end);
        self.total = self.total - absorbed + (end - start);
        (r.end - r.start) - already
    }

    /// Removes every position of `r` from the set.
    fn remove(&mut self, r: Range<u64>) {
        if r.start >= r.end {
            return;
        }
        while let Some((&s, &e)) = self.map.range(..r.end).next_back() {
            if e <= r.start {
                break;
            }
            self.map.remove(&s);
            self.total -= e - s;
            if s < r.start {
                self.map.insert(s, r.start);
                self.total += r.start - s;
            }
            if e > r.end {
                self.map.insert(r.end, e);
                self.total += e - r.end;
            }
        }
    }

    /// The parts of `r` not in the set, in order.
    fn holes(&self, r: Range<u64>) -> Vec<Range<u64>> {
        let mut out = Vec::new();
        let mut cursor = r.start;
        if let Some((_, &e)) = self.map.range(..=r.start).next_back() {
            cursor = cursor.max(e);
        }
        if r.start < u64::MAX {
            for (&s, &e) in self.map.range(r.start + 1..r.end) {
                if s > cursor {
                    out.push(cursor..s);
                }
                cursor = cursor.max(e);
            }
        }
        if cursor < r.end {
            out.push(cursor..r.end);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pattern(len: usize, salt: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
            .collect()
    }

    #[test]
    fn range_set_insert_remove_holes() {
        let mut s = RangeSet::default();
        assert_eq!(s.insert(10..20), 10);
        assert_eq!(s.insert(30..40), 10);
        assert_eq!(s.insert(15..35), 10);
        assert_eq!(s.first(), Some(10..40));
        assert_eq!(s.total(), 30);
        s.remove(20..25);
        assert_eq!(s.total(), 25);
        assert_eq!(s.holes(0..50), vec![0..10, 20..25, 40..50]);
        assert_eq!(s.holes(12..18), vec![]);
        assert_eq!(s.insert(20..22), 2);
        assert_eq!(s.insert(22..25), 3);
        assert_eq!(s.first(), Some(10..40));
        s.remove(0..100);
        assert!(s.is_empty());
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn new_data_stays_within_the_peers_window_past_a_gap() {
        // 100 small messages of 100 bytes, then one long message of 20 KB.
        let mut s = SendStream::new(1, usize::MAX);
        s.set_peer_window(10_000);
        for i in 0..100u8 {
            let r = s.push(pattern(100, i));
            s.mark_message(r);
        }
        let long = s.push(pattern(20_000, 7));
        s.mark_message(long.clone());
        let mut sent = Vec::new();
        while let Some(seg) = s.next_segment(1_000) {
            sent.push(seg.range());
        }
        // Nothing acked yet: the window counts from the slack before position 1.
        assert_eq!(sent.last().map(|r| r.end), Some(10_000));
        assert!(s.has_pending() && !s.has_sendable());
        assert_eq!(s.sendable_bytes(), 0);
        // The first segment is lost, the rest acked: the window stays at the gap.
        for r in &sent[1..] {
            s.on_acked(r.clone());
        }
        s.on_lost(sent[0].clone());
        assert_eq!(s.sendable_bytes(), 1_000);
        let resend = s.next_segment(1_000).map(|seg| seg.range());
        assert_eq!(resend, Some(sent[0].clone()));
        assert_eq!(s.resent_bytes(), 1_000);
        assert!(s.next_segment(1_000).is_none());
        // Once the gap is acked, the window opens from the new read position (less the
        // slack for a message held in part)...
        s.on_acked(sent[0].clone());
        assert_eq!(s.acked_pos(), 10_000);
        assert_eq!(s.window_end(), 10_000 - PARTIAL_SLACK + 10_000);
        // ...and from the long message's start while it is acked only in part.
        while let Some(seg) = s.next_segment(1_000) {
            s.on_acked(seg.range());
        }
        assert!(s.acked_pos() > long.start && s.acked_pos() < long.end);
        assert_eq!(s.window_end(), long.start + 10_000);
        assert!(!s.has_sendable());
    }

    #[test]
    fn new_data_waits_while_the_holes_are_at_their_budget() {
        let mut s = SendStream::new(1, usize::MAX);
        s.push(pattern(100_000, 3));
        let segs: Vec<Range<u64>> = (0..40)
            .filter_map(|_| s.next_segment(100).map(|seg| seg.range()))
            .collect();
        // Every other segment lost: each loss is a hole with acked data after it.
        for (i, r) in segs.iter().enumerate() {
            if i % 2 == 0 {
                s.on_lost(r.clone());
            } else {
                s.on_acked(r.clone());
            }
        }
        assert!(!s.has_sendable() || s.sendable_bytes() == 20 * 100);
        // Only the holes go out until enough of them are filled.
        for _ in 0..20 {
            let seg = s.next_segment(100).map(|seg| seg.range());
            assert!(
                seg.as_ref().is_some_and(|r| r.end <= segs[39].end),
                "{seg:?}"
            );
            if let Some(r) = seg {
                s.on_acked(r);
            }
        }
        assert_eq!(s.acked_pos(), segs[39].end);
        assert!(s.has_sendable());
        assert_eq!(s.next_segment(100).map(|seg| seg.pos), Some(segs[39].end));
    }

    #[test]
    fn small_pushes_coalesce_into_one_segment() {
        let mut s = SendStream::new(1, DEFAULT_SEND_LIMIT);
        assert_eq!(s.push(vec![1u8, 2, 3]), 1..4);
        assert_eq!(s.push_slice(&[4, 5]), 4..6);
        let seg = s.next_segment(1000).unwrap();
        assert_eq!(seg.pos, 1);
        assert_eq!(&seg.data[..], &[1, 2, 3, 4, 5]);
        assert!(s.next_segment(1000).is_none());
        assert_eq!(s.in_flight_bytes(), 5);
        assert_eq!(s.queued_bytes(), 0);
    }

    #[test]
    fn large_push_is_sliced_without_copy() {
        let mut s = SendStream::new(1, DEFAULT_SEND_LIMIT);
        let big = Bytes::from(pattern(5000, 7));
        s.push_slice(&[9, 9]);
        s.push(big.clone());
        let a = s.next_segment(1200).unwrap();
        assert_eq!(
            a.range(),
            1..3,
            "the small tail is sealed before the big chunk"
        );
        let b = s.next_segment(1200).unwrap();
        assert_eq!(b.range(), 3..1203);
        assert_eq!(b.data.as_ptr(), big.as_ptr());
        let c = s.next_segment(1200).unwrap();
        assert_eq!(c.data.as_ptr(), big[1200..].as_ptr());
    }

    #[test]
    fn lost_ranges_go_first_and_skip_acked_parts() {
        let mut s = SendStream::new(1, DEFAULT_SEND_LIMIT);
        s.push(pattern(3000, 1));
        let a = s.next_segment(1000).unwrap();
        let b = s.next_segment(1000).unwrap();
        assert_eq!(b.range(), 1001..2001);
        s.on_acked(1500..1600);
        s.on_lost(b.range());
        assert_eq!(s.queued_bytes(), 1000 + 900);
        let r1 = s.next_segment(1000).unwrap();
        assert_eq!(r1.range(), 1001..1500);
        assert_eq!(r1.data, b.data.slice(0..499));
        let r2 = s.next_segment(300).unwrap();
        assert_eq!(r2.range(), 1600..1900);
        let r3 = s.next_segment(1000).unwrap();
        assert_eq!(r3.range(), 1900..2001);
        let n = s.next_segment(1000).unwrap();
        assert_eq!(n.range(), 2001..3001, "new data only after retransmissions");
        assert_eq!(s.on_acked(a.range()), 1000);
        assert_eq!(s.acked_pos(), 1001);
    }

    #[test]
    fn acks_free_memory_and_counters_track() {
        let mut s = SendStream::new(1, 10_000);
        s.push(pattern(4000, 3));
        s.push(pattern(2000, 4));
        let segs: Vec<_> = std::iter::from_fn(|| s.next_segment(1500)).collect();
        assert_eq!(s.unacked_bytes(), 6000);
        assert_eq!(s.in_flight_bytes(), 6000);
        s.on_lost(segs[0].range());
        assert_eq!(s.in_flight_bytes(), 4500);
        assert_eq!(s.unacked_bytes(), 6000);
        // Acking later segments first frees nothing: the first byte is still missing.
        for seg in &segs[1..] {
            s.on_acked(seg.range());
        }
        assert_eq!(s.chunks.len(), 2);
        assert_eq!(s.acked_pos(), 1);
        assert_eq!(s.buffered_bytes(), 6000);
        // The acked-late original also counts: the pending retransmission is dropped.
        assert_eq!(s.on_acked(segs[0].range()), 1500);
        assert!(!s.has_pending());
        assert!(s.is_fully_acked());
        assert!(s.chunks.is_empty());
        assert_eq!(s.buffered_bytes(), 0);
        assert_eq!(s.on_acked(segs[0].range()), 0, "duplicate ack");
    }

    #[test]
    fn lost_after_ack_is_ignored() {
        let mut s = SendStream::new(1, DEFAULT_SEND_LIMIT);
        s.push(pattern(100, 0));
        let a = s.next_segment(100).unwrap();
        s.on_acked(a.range());
        s.on_lost(a.range());
        assert!(!s.has_pending());
        assert!(s.next_segment(100).is_none());
    }

    #[test]
    fn try_reserve_counts_unacked_bytes() {
        let mut s = SendStream::new(1, 3000);
        assert!(s.try_reserve(3000).is_ok());
        assert_eq!(s.try_reserve(3001), Err(SendLimitExceeded));
        s.push(pattern(2000, 0));
        assert!(s.try_reserve(1000).is_ok());
        assert!(s.try_reserve(1001).is_err());
        let seg = s.next_segment(2000).unwrap();
        assert!(
            s.try_reserve(1001).is_err(),
            "sent but unacked still counts"
        );
        s.on_acked(seg.range());
        assert!(s.try_reserve(3000).is_ok());
        s.set_limit(10);
        assert!(s.try_reserve(11).is_err());
        assert_eq!(s.limit(), 10);
    }

    #[test]
    fn zero_max_len_and_empty_push() {
        let mut s = SendStream::new(5, 100);
        assert_eq!(s.push(Vec::new()), 5..5);
        assert!(s.next_segment(10).is_none());
        s.push_slice(&[1]);
        assert!(s.next_segment(0).is_none());
        assert!(!s.is_fully_acked() && s.has_pending());
    }

    /// Tiny deterministic generator for the simulations.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    proptest! {
        // Failures print their inputs; nothing is written beside the sources.
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever the loss, ack order, duplicate acks and spurious loss reports, every byte
        /// reaches the peer intact, is acked exactly once, and all memory is freed.
        #[test]
        fn every_byte_acked_exactly_once(
            sizes in proptest::collection::vec(0usize..3000, 1..20),
            seed in any::<u64>(),
            loss_pct in 0u64..60,
        ) {
            let mut rng = Rng(seed);
            let mut s = SendStream::new(1, usize::MAX);
            let mut expected = Vec::new();
            let mut received: Vec<Option<u8>> = Vec::new();
            let mut in_flight: Vec<Segment> = Vec::new();
            let mut total_newly = 0u64;
            let mut pending_pushes = sizes.iter().enumerate();
            let mut steps = 0;
            loop {
                steps += 1;
                prop_assert!(steps < 100_000, "no progress");
                // Interleave appends with sending.
                if rng.below(3) == 0 {
                    if let Some((i, &n)) = pending_pushes.next() {
                        let data = pattern(n, i as u8);
                        expected.extend_from_slice(&data);
                        let r = if i % 2 == 0 { s.push(data.clone()) } else { s.push_slice(&data) };
                        prop_assert_eq!(r.end - r.start, n as u64);
                        received.resize(expected.len(), None);
                    }
                }
                let max_len = 1 + rng.below(1400) as usize;
                if let Some(seg) = s.next_segment(max_len) {
                    prop_assert!(seg.data.len() <= max_len && !seg.data.is_empty());
                    in_flight.push(seg);
                }
                // Settle the fate of a random packet now and then.
                if !in_flight.is_empty() && rng.below(2) == 0 {
                    let idx = rng.below(in_flight.len() as u64) as usize;
                    let seg = in_flight.swap_remove(idx);
                    if rng.below(100) < loss_pct {
                        s.on_lost(seg.range());
                    } else {
                        for (k, b) in seg.data.iter().enumerate() {
                            let slot = &mut received[(seg.pos - 1) as usize + k];
                            if let Some(old) = slot { prop_assert_eq!(*old, *b); }
                            *slot = Some(*b);
                        }
                        total_newly += s.on_acked(seg.range());
                        if rng.below(10) == 0 {
                            // A spurious loss report for delivered bytes, then a duplicate ack.
                            s.on_lost(seg.range());
                            total_newly += s.on_acked(seg.range());
                        }
                    }
                }
                let u = s.unacked_bytes();
                prop_assert!(s.in_flight_bytes() <= u);
                prop_assert!(s.buffered_bytes() >= u);
                let done_pushing = pending_pushes.len() == 0;
                if done_pushing && in_flight.is_empty() && !s.has_pending() {
                    break;
                }
            }
            prop_assert_eq!(total_newly, expected.len() as u64);
            prop_assert!(s.is_fully_acked());
            prop_assert_eq!(s.buffered_bytes(), 0);
            prop_assert_eq!(s.unacked_bytes(), 0);
            prop_assert_eq!(s.queued_bytes(), 0);
            prop_assert!(s.chunks.is_empty());
            let got: Vec<u8> = received.iter().map(|b| b.unwrap_or(0)).collect();
            prop_assert!(received.iter().all(Option::is_some));
            prop_assert_eq!(got, expected);
        }
    }
}
