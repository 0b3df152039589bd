//! The receiver's record of which packet numbers arrived, and when an ack is owed.
//!
//! Received numbers are kept as a short list of disjoint ranges, which is what an ack frame
//! encodes (runs of received and missing packets, newest first). The list is capped at
//! [`MAX_ACK_RANGES`]: a peer, or a bad link, that produces many holes cannot make us grow it.
//!
//! # Reporting contract
//! The record accounts for every number from [`floor`](AckRanges::floor) (raised by the
//! peer's stop-waiting) up to the latest received. A number in that span that no range
//! covers must be reported as *not received*, including the stretch between the floor and
//! the oldest range. The ack encoder must honour this, because a sender treats numbers
//! below the oldest reported block and above its stop-waiting point as received.
//!
//! # Why dropping the oldest ranges is safe
//! When the cap is hit the oldest range is forgotten and the floor stays where it is, so
//! those numbers fall back into the "not received" span. The record therefore only ever
//! under-reports: it never claims a packet that did not arrive. Under-reporting costs at
//! most a spurious retransmission: the oldest ranges have almost always been acked already
//! (acks go out within [`MAX_ACK_DELAY`]); if not, the sender takes those packets as lost and
//! resends their reliable data under new packet numbers, which the receiver discards as
//! already held. Once the sender gives up on them it raises its stop-waiting point past
//! the hole, and the record catches up.
//!
//! # When an ack is owed
//! A packet that carries anything but acks ("ack-eliciting") must be acked within
//! [`MAX_ACK_DELAY`], which leaves room to piggyback the ack on outgoing data. A packet that
//! lands above a missing number reveals a probable loss, and the sender learns of it sooner
//! if we report within [`NACK_DELAY`]; the short wait gives a merely reordered packet time to
//! arrive. Packets carrying only acks never oblige an ack, so two idle peers cannot keep
//! acking each other's acks.
//!
//! A packet whose only data is unreliable obliges an ack too, but lazily: within
//! [`LAZY_ACK_DELAY`], and a gap it reveals waits as long. Nothing in it will be resent, so
//! the sender needs the ack only for its congestion controller and its in-flight count; a
//! game server receiving 20 small unreliable messages a second from each of thousands of
//! players would otherwise send an ack for nearly every one (the reference sends none). The
//! caller still counts these packets toward its ack-every-N rule, at a quarter of a reliable
//! packet's weight, so a flood of them keeps the sender's window moving (and a sender whose
//! window fills asks for its ack outright), and the sender allows for the longer hold in its
//! probe timeout. The hold stays under the probe timeout's cap at the default
//! `timeoutConnected` (10 s / 8), so a steady stream draws no probes.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::time::Duration;

use smallvec::SmallVec;

use crate::time::Timestamp;
use crate::wire::frames::AckBlock;

/// Most disjoint ranges of received packet numbers kept at once.
///
/// Close to the reference implementation's limit on tracked packet gaps, and small enough
/// that a full set of blocks fits in an ack frame with room to spare.
pub const MAX_ACK_RANGES: usize = 64;

/// An ack frame's blocks as built for one packet: the common case (a few gaps at most) stays
/// on the stack, since every packet we send carries an ack.
pub type AckBlocksOut = SmallVec<[AckBlock; 16]>;

/// Longest an ack-eliciting packet waits for its ack.
pub const MAX_ACK_DELAY: Duration = Duration::from_millis(50);

/// Longest a newly revealed gap waits before it is reported.
pub const NACK_DELAY: Duration = Duration::from_millis(3);

/// Longest a packet whose only data is unreliable waits for its ack (see the module docs).
pub const LAZY_ACK_DELAY: Duration = Duration::from_millis(750);

/// What a received packet obliges the receiver to do about acking it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Elicits {
    /// It carried only acks (or nothing the peer needs acked): no ack is owed for it.
    Nothing,
    /// Its only data was unreliable: an ack is owed within [`LAZY_ACK_DELAY`].
    Lazily,
    /// It carried reliable data or asked for an ack: an ack is owed within
    /// [`MAX_ACK_DELAY`], sooner ([`NACK_DELAY`]) if it reveals a gap.
    Promptly,
}

/// Which packet numbers arrived, as a bounded set of ranges, plus the ack timer.
#[derive(Clone, Debug)]
pub struct AckRanges {
    /// Inclusive `(first, last)` pairs, ascending, disjoint and never adjacent.
    ranges: VecDeque<(u64, u64)>,
    /// Numbers below this are neither recorded nor reported.
    floor: u64,
    /// Largest number received and when it arrived.
    latest: Option<(u64, Timestamp)>,
    /// When the next ack must go out, if one is owed.
    deadline: Option<Timestamp>,
}

impl AckRanges {
    /// An empty record expecting its first packet number to be `floor` or above.
    ///
    /// A first packet above `floor` reveals a gap below it, as any other would.
    pub fn new(floor: u64) -> Self {
        AckRanges {
            // Grown on demand: a clean path needs one or two ranges, and an idle connection
            // should not carry room for sixty-five.
            ranges: VecDeque::new(),
            floor,
            latest: None,
            deadline: None,
        }
    }

    /// Gives back room beyond the ranges held, for an idle connection. Not for the hot
    /// path: the next gap grows the list again.
    pub fn shrink(&mut self) {
        self.ranges.shrink_to_fit();
    }

    /// Records that packet `pn` arrived at `now`. Call it once the packet decrypted.
    ///
    /// `elicits` says how soon the packet must be acked. Returns whether `pn` is now recorded
    /// and was not before: false for a duplicate, a number below the floor, or one so old
    /// that it was evicted at once by the range cap.
    pub fn on_packet(&mut self, pn: u64, now: Timestamp, elicits: Elicits) -> bool {
        if pn < self.floor {
            return false;
        }
        let expected = match self.latest {
            Some((largest, _)) => largest.saturating_add(1).max(self.floor),
            None => self.floor,
        };
        if !self.insert(pn) {
            return false;
        }
        if self.latest.is_none_or(|(largest, _)| pn > largest) {
            self.latest = Some((pn, now));
        }
        let due = match elicits {
            Elicits::Nothing => None,
            Elicits::Lazily => Some(now + LAZY_ACK_DELAY),
            Elicits::Promptly if pn > expected => Some(now + NACK_DELAY),
            Elicits::Promptly => Some(now + MAX_ACK_DELAY),
        };
        if let Some(due) = due {
            self.deadline = Some(self.deadline.map_or(due, |d| d.min(due)));
        }
        self.contains(pn)
    }

    /// Inserts `pn` into the ranges, merging neighbours and enforcing the cap. Returns false
    /// if it was already present.
    fn insert(&mut self, pn: u64) -> bool {
        // Index of the first range starting above `pn`; the one before may hold or touch it.
        let idx = self.ranges.partition_point(|&(first, _)| first <= pn);
        let prev = idx.checked_sub(1).and_then(|i| self.ranges.get(i).copied());
        if let Some((_, last)) = prev {
            if last >= pn {
                return false;
            }
        }
        let joins_prev = prev.is_some_and(|(_, last)| last.checked_add(1) == Some(pn));
        let joins_next = self
            .ranges
            .get(idx)
            .is_some_and(|&(first, _)| pn.checked_add(1) == Some(first));
        match (joins_prev, joins_next) {
            (true, true) => {
                if let Some((_, next_last)) = self.ranges.remove(idx) {
                    if let Some(p) = self.ranges.get_mut(idx - 1) {
                        p.1 = next_last;
                    }
                }
            }
            (true, false) => {
                if let Some(p) = self.ranges.get_mut(idx - 1) {
                    p.1 = pn;
                }
            }
            (false, true) => {
                if let Some(n) = self.ranges.get_mut(idx) {
                    n.0 = pn;
                }
            }
            (false, false) => self.ranges.insert(idx, (pn, pn)),
        }
        while self.ranges.len() > MAX_ACK_RANGES {
            // Oldest first: see the module docs for why this is safe.
            self.ranges.pop_front();
        }
        true
    }

    /// When an ack must be sent, if one is owed.
    pub fn ack_deadline(&self) -> Option<Timestamp> {
        self.deadline
    }

    /// The received ranges, newest first, as inclusive ranges of packet numbers.
    pub fn ranges_desc(&self) -> impl Iterator<Item = RangeInclusive<u64>> + '_ {
        self.ranges.iter().rev().map(|&(first, last)| first..=last)
    }

    /// The largest packet number received and when it arrived, for the ack delay field.
    pub fn latest(&self) -> Option<(u64, Timestamp)> {
        self.latest
    }

    /// Notes that an ack reporting every current range was sent: nothing is owed until more
    /// ack-eliciting packets arrive.
    pub fn on_ack_sent(&mut self) {
        self.deadline = None;
    }

    /// Stops tracking numbers below `pn`, as asked by the peer's stop-waiting.
    ///
    /// The floor never moves back, and never above the largest number received: the peer
    /// cannot tell us to stop accounting for packets we have not seen.
    pub fn forget_below(&mut self, pn: u64) {
        let limit = match self.latest {
            Some((largest, _)) => pn.min(largest),
            None => pn,
        };
        if limit <= self.floor {
            return;
        }
        self.floor = limit;
        while self.ranges.front().is_some_and(|&(_, last)| last < limit) {
            self.ranges.pop_front();
        }
        if let Some(front) = self.ranges.front_mut() {
            front.0 = front.0.max(limit);
        }
    }

    /// Lowest number the record accounts for (see the module docs).
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// Whether `pn` is recorded as received.
    pub fn contains(&self, pn: u64) -> bool {
        let idx = self.ranges.partition_point(|&(first, _)| first <= pn);
        idx.checked_sub(1)
            .and_then(|i| self.ranges.get(i))
            .is_some_and(|&(_, last)| pn <= last)
    }

    /// The ack frame's blocks for what is recorded, newest first: each the run received, then
    /// the run missing below it, the last one's missing run reaching down to the floor (the
    /// sender counts everything below the last block, down to its stop-waiting point, as
    /// received: see the reporting contract). Empty when the newest range does not end at
    /// the latest number received (the blocks count down from it). At most
    /// [`MAX_ACK_RANGES`] blocks.
    pub fn blocks(&self) -> AckBlocksOut {
        let mut blocks = AckBlocksOut::new();
        let Some((latest, _)) = self.latest else {
            return blocks;
        };
        let mut ranges = self.ranges_desc().peekable();
        if ranges.peek().is_some_and(|r| *r.end() != latest) {
            return blocks;
        }
        while let Some(r) = ranges.next() {
            let acks = r.end() - r.start() + 1;
            let below = match ranges.peek() {
                Some(next) => r.start() - next.end() - 1,
                None => r.start().saturating_sub(self.floor),
            };
            blocks.push(AckBlock { acks, nacks: below });
            if blocks.len() >= MAX_ACK_RANGES {
                break;
            }
        }
        blocks
    }

    /// Number of disjoint ranges held.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when no packet number is recorded.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    fn ranges(r: &AckRanges) -> Vec<(u64, u64)> {
        r.ranges_desc().map(|r| (*r.start(), *r.end())).collect()
    }

    #[test]
    fn in_order_packets_form_one_range_and_delay_the_ack() {
        let mut r = AckRanges::new(2);
        assert_eq!(r.ack_deadline(), None);
        for pn in 2..10 {
            assert!(r.on_packet(pn, t(pn), Elicits::Promptly));
        }
        assert_eq!(ranges(&r), vec![(2, 9)]);
        // The first unacked packet sets the deadline; later ones do not push it back.
        assert_eq!(r.ack_deadline(), Some(t(2) + MAX_ACK_DELAY));
        assert_eq!(r.latest(), Some((9, t(9))));
        r.on_ack_sent();
        assert_eq!(r.ack_deadline(), None);
        assert!(r.on_packet(10, t(20), Elicits::Promptly));
        assert_eq!(r.ack_deadline(), Some(t(20) + MAX_ACK_DELAY));
    }

    #[test]
    fn unreliable_only_packets_are_acked_lazily_unless_something_urgent_follows() {
        let mut r = AckRanges::new(1);
        assert!(r.on_packet(1, t(0), Elicits::Lazily));
        assert_eq!(r.ack_deadline(), Some(t(0) + LAZY_ACK_DELAY));
        // A gap revealed by unreliable-only data waits as long: nothing will be resent.
        assert!(r.on_packet(3, t(10), Elicits::Lazily));
        assert_eq!(r.ack_deadline(), Some(t(0) + LAZY_ACK_DELAY));
        // Reliable data pulls the ack in; the lazy packets ride along in the same ack.
        assert!(r.on_packet(4, t(20), Elicits::Promptly));
        assert_eq!(r.ack_deadline(), Some(t(20) + MAX_ACK_DELAY));
        r.on_ack_sent();
        // An ack-only packet after a lazy one does not bring the deadline forward.
        assert!(r.on_packet(5, t(30), Elicits::Lazily));
        assert!(r.on_packet(6, t(31), Elicits::Nothing));
        assert_eq!(r.ack_deadline(), Some(t(30) + LAZY_ACK_DELAY));
    }

    #[test]
    fn gap_shortens_the_deadline() {
        let mut r = AckRanges::new(1);
        r.on_packet(1, t(0), Elicits::Promptly);
        r.on_packet(3, t(10), Elicits::Promptly);
        assert_eq!(r.ack_deadline(), Some(t(10) + NACK_DELAY));
        assert_eq!(ranges(&r), vec![(3, 3), (1, 1)]);
        // A first packet above the floor is itself a gap.
        let mut r = AckRanges::new(1);
        r.on_packet(4, t(5), Elicits::Promptly);
        assert_eq!(r.ack_deadline(), Some(t(5) + NACK_DELAY));
    }

    #[test]
    fn ack_only_packets_never_oblige_an_ack() {
        let mut r = AckRanges::new(1);
        assert!(r.on_packet(1, t(0), Elicits::Nothing));
        assert!(r.on_packet(5, t(1), Elicits::Nothing));
        assert_eq!(r.ack_deadline(), None);
        assert_eq!(r.latest(), Some((5, t(1))));
        assert_eq!(ranges(&r), vec![(5, 5), (1, 1)]);
    }

    #[test]
    fn late_packets_merge_ranges() {
        let mut r = AckRanges::new(1);
        for pn in [1, 2, 5, 6, 9] {
            r.on_packet(pn, t(pn), Elicits::Promptly);
        }
        assert_eq!(ranges(&r), vec![(9, 9), (5, 6), (1, 2)]);
        r.on_packet(4, t(10), Elicits::Promptly);
        r.on_packet(3, t(11), Elicits::Promptly);
        assert_eq!(ranges(&r), vec![(9, 9), (1, 6)]);
        r.on_packet(8, t(12), Elicits::Promptly);
        r.on_packet(7, t(13), Elicits::Promptly);
        assert_eq!(ranges(&r), vec![(1, 9)]);
        // Out-of-order arrivals do not move the latest.
        assert_eq!(r.latest(), Some((9, t(9))));
    }

    #[test]
    fn duplicates_and_numbers_below_floor_are_ignored() {
        let mut r = AckRanges::new(10);
        assert!(!r.on_packet(9, t(0), Elicits::Promptly));
        assert_eq!(r.ack_deadline(), None);
        assert!(r.on_packet(10, t(1), Elicits::Promptly));
        assert!(!r.on_packet(10, t(2), Elicits::Promptly));
        assert_eq!(ranges(&r), vec![(10, 10)]);
    }

    #[test]
    fn cap_drops_the_oldest_ranges() {
        let mut r = AckRanges::new(0);
        // Every other number: each is its own range.
        let total = MAX_ACK_RANGES as u64 + 10;
        for i in 0..total {
            r.on_packet(i * 2, t(i), Elicits::Promptly);
        }
        assert_eq!(r.len(), MAX_ACK_RANGES);
        let newest = (total - 1) * 2;
        let oldest_kept = (total - MAX_ACK_RANGES as u64) * 2;
        assert_eq!(r.ranges_desc().next(), Some(newest..=newest));
        assert_eq!(r.ranges_desc().last(), Some(oldest_kept..=oldest_kept));
        assert!(!r.contains(0));
        // The floor does not move: evicted numbers now read as not received.
        assert_eq!(r.floor(), 0);
        // An old packet that would open a new oldest range is evicted at once.
        assert!(!r.on_packet(1, t(100), Elicits::Promptly));
        // One that joins a kept range is recorded and closes a gap.
        assert!(r.on_packet(oldest_kept + 1, t(101), Elicits::Promptly));
        assert_eq!(r.len(), MAX_ACK_RANGES - 1);
    }

    #[test]
    fn forget_below_trims_and_clamps() {
        let mut r = AckRanges::new(1);
        for pn in [1, 2, 3, 6, 7, 10] {
            r.on_packet(pn, t(pn), Elicits::Promptly);
        }
        r.forget_below(2);
        assert_eq!(ranges(&r), vec![(10, 10), (6, 7), (2, 3)]);
        r.forget_below(5);
        assert_eq!(ranges(&r), vec![(10, 10), (6, 7)]);
        assert_eq!(r.floor(), 5);
        // Never backwards.
        r.forget_below(3);
        assert_eq!(r.floor(), 5);
        // Never past the largest received.
        r.forget_below(1_000);
        assert_eq!(r.floor(), 10);
        assert_eq!(ranges(&r), vec![(10, 10)]);
        assert!(!r.on_packet(9, t(20), Elicits::Promptly));
        assert!(r.on_packet(11, t(21), Elicits::Promptly));
        assert_eq!(ranges(&r), vec![(10, 11)]);
    }

    fn check_shape(r: &AckRanges) -> Result<(), TestCaseError> {
        let v: Vec<_> = r.ranges_desc().collect();
        for w in v.windows(2) {
            // Descending, disjoint and with a real gap between neighbours.
            prop_assert!(w[0].start() > &(w[1].end() + 1));
        }
        for rg in &v {
            prop_assert!(rg.start() <= rg.end());
            prop_assert!(*rg.start() >= r.floor());
        }
        prop_assert!(v.len() <= MAX_ACK_RANGES);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn ranges_equal_inserted_set_under_cap(pns in proptest::collection::vec(0u64..120, 0..200)) {
            // Numbers below 120 can form at most 60 ranges, under the cap.
            let mut r = AckRanges::new(0);
            let mut set = BTreeSet::new();
            for (i, pn) in pns.iter().enumerate() {
                let fresh = set.insert(*pn);
                prop_assert_eq!(r.on_packet(*pn, Timestamp::from_micros(i as u64), Elicits::Promptly), fresh);
            }
            check_shape(&r)?;
            let got: Vec<u64> = r.ranges_desc().flat_map(|rg| rg.rev()).collect();
            let want: Vec<u64> = set.iter().rev().copied().collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(r.latest().map(|l| l.0), set.iter().next_back().copied());
        }

        #[test]
        fn over_cap_never_over_reports(
            pns in proptest::collection::vec(0u64..2000, 1..400),
            forget in 0u64..2000,
        ) {
            let mut r = AckRanges::new(0);
            let mut set = BTreeSet::new();
            for (i, pn) in pns.iter().enumerate() {
                r.on_packet(*pn, Timestamp::from_micros(i as u64), if i % 3 != 0 { Elicits::Promptly } else { Elicits::Nothing });
                set.insert(*pn);
                check_shape(&r)?;
            }
            let largest = *set.iter().next_back().unwrap_or(&0);
            prop_assert!(r.contains(largest));
            r.forget_below(forget);
            check_shape(&r)?;
            prop_assert!(r.contains(largest));
            for rg in r.ranges_desc() {
                for pn in rg {
                    prop_assert!(set.contains(&pn));
                }
            }
        }
    }
}
