//! The sender's record of packets in flight: acks, loss detection, and a memory of recent
//! losses that tells a real loss from a late packet.
//!
//! Every packet sent is recorded with its send time, size and a caller-chosen payload `T`
//! (what the packet carried, e.g. the reliable segments to resend if it is lost). Each
//! payload comes back exactly once: as acked when an ack covers its packet, or as lost.
//!
//! A packet below the largest acknowledged one is declared lost when it is the packet
//! threshold behind it, or when it stays unacknowledged for the loss delay after it was sent
//! (time threshold, from the RTT the caller passes); both thresholds come from
//! [`ReorderTolerance`], which widens them when a loss proves false. Nothing here declares a
//! packet lost because no ack came at all: the caller's probe timeout sends a probe instead,
//! and the ack of the probe reveals what is missing (RFC 9002's PTO, RFC 8985's tail-loss
//! probe). Packets that carry only acks are forgotten after the age the caller gives.
//!
//! Once handed back as lost, a packet is remembered for a while (its number, send time and
//! size, not its payload): an ack for it in that time means the loss was false (reordering,
//! or a late ack). [`AckResult::spurious`] reports it, and the reordering thresholds widen.
//! Its data was or will be resent under a new number, and the receiver discards what it
//! already holds.
//!
//! The record holds at most [`MAX_TRACKED_PACKETS`]; [`SentPackets::is_full`] tells the
//! caller to stop sending until acks or losses free room.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use smallvec::SmallVec;

use super::reorder::ReorderTolerance;
use crate::time::Timestamp;

pub use super::reorder::INITIAL_PACKET_THRESHOLD as PACKET_THRESHOLD;

/// Most packets tracked at once.
///
/// At the default 256 KiB/s, about 200 full packets leave per second, so this covers many
/// seconds of flight at the longest retransmit timeout.
pub const MAX_TRACKED_PACKETS: usize = 4096;

/// Most lost packets remembered at once (oldest forgotten first).
pub const MAX_LOST_REMEMBERED: usize = 1024;

/// Shortest time a lost packet is remembered; otherwise twice the loss delay.
pub const MIN_LOST_MEMORY: Duration = Duration::from_millis(50);

/// One packet awaiting its fate.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct SentPacket<T> {
    time_sent: Timestamp,
    bytes: usize,
    ack_eliciting: bool,
    payload: T,
}

/// What is remembered of a packet declared lost.
#[derive(Clone, Copy, Debug)]
struct LostPacket {
    time_sent: Timestamp,
    declared: Timestamp,
    bytes: usize,
}

/// A packet declared lost that the peer acknowledged after all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FalseLoss {
    /// Its number.
    pub pn: u64,
    /// When it was sent.
    pub time_sent: Timestamp,
    /// When it was declared lost.
    pub declared: Timestamp,
    /// Its size.
    pub bytes: usize,
}

/// Packets newly acknowledged by one frame. A steady flow's ack covers a packet or two, so
/// the first few stay on the stack: no allocation per ack.
pub type Acked<T> = SmallVec<[(u64, T); 4]>;

/// What an ack frame changed.
#[derive(Debug)]
pub struct AckResult<T> {
    /// Packets newly acknowledged, ascending by packet number, with their payloads.
    pub acked: Acked<T>,
    /// Packets newly declared lost, ascending by packet number, with their payloads.
    pub lost: Vec<(u64, T)>,
    /// Packets declared lost earlier that this frame acknowledged, ascending.
    pub spurious: Vec<FalseLoss>,
    /// Time from sending the frame's largest acknowledged packet to now, if that packet was
    /// newly acknowledged by this frame, along with at least one ack-eliciting packet. The
    /// peer's ack delay is not taken out.
    pub rtt_sample: Option<Duration>,
    /// The frame acknowledged numbers never sent: a misbehaving peer. They are ignored.
    pub acked_unsent: bool,
}

/// Packets sent and not yet acked or declared lost, and the recently lost.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct SentPackets<T> {
    packets: BTreeMap<u64, SentPacket<T>>,
    largest_sent: Option<u64>,
    largest_acked: Option<u64>,
    bytes_in_flight: usize,
    /// Tracked packets that carry only acks: none (the usual case for a sender of data)
    /// spares the deadline query its walk of the map.
    ack_only: usize,
    /// Bytes of the ack-eliciting packets in flight below the largest acknowledged.
    bytes_skipped: usize,
    /// Earliest moment a packet below the largest acked crosses the time threshold.
    loss_time: Option<Timestamp>,
    /// When the newest ack-eliciting packet was sent.
    last_ack_eliciting: Option<Timestamp>,
    /// Packets declared lost, kept to recognise a late ack.
    lost: BTreeMap<u64, LostPacket>,
    reorder: ReorderTolerance,
}

impl<T> Default for SentPackets<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> SentPackets<T> {
    /// An empty record.
    pub fn new() -> Self {
        SentPackets {
            packets: BTreeMap::new(),
            largest_sent: None,
            largest_acked: None,
            bytes_in_flight: 0,
            ack_only: 0,
            bytes_skipped: 0,
            loss_time: None,
            last_ack_eliciting: None,
            lost: BTreeMap::new(),
            reorder: ReorderTolerance::default(),
        }
    }

    /// Records packet `pn`, sent at `now`, `bytes` long, carrying `payload`.
    ///
    /// `ack_eliciting` is false for packets that carry only acks: the peer need not ack
    /// those soon, so they count neither in bytes in flight nor for the probe timeout.
    /// Packet numbers must increase and `now` must not go backwards between calls.
    ///
    /// Returns the payload back, untracked, when the record is full or `pn` is not above
    /// every number sent before.
    pub fn on_sent(
        &mut self,
        pn: u64,
        now: Timestamp,
        bytes: usize,
        ack_eliciting: bool,
        payload: T,
    ) -> Result<(), T> {
        if self.is_full() || self.largest_sent.is_some_and(|l| pn <= l) {
            return Err(payload);
        }
        self.packets.insert(
            pn,
            SentPacket {
                time_sent: now,
                bytes,
                ack_eliciting,
                payload,
            },
        );
        self.largest_sent = Some(pn);
        if ack_eliciting {
            self.bytes_in_flight = self.bytes_in_flight.saturating_add(bytes);
            self.last_ack_eliciting = Some(now);
        } else {
            self.ack_only += 1;
        }
        Ok(())
    }

    /// Applies an ack frame's acknowledged ranges, in any order; overlapping or repeated
    /// ranges and numbers already settled are harmless. Then runs loss detection for a round
    /// trip of `rtt` (the larger of the smoothed and the latest estimate).
    pub fn on_ack<I>(&mut self, acked_ranges: I, now: Timestamp, rtt: Duration) -> AckResult<T>
    where
        I: IntoIterator<Item = RangeInclusive<u64>>,
    {
        self.on_ack_frame(acked_ranges, None, now, rtt)
    }

    /// [`on_ack`](Self::on_ack) for a whole ack frame: besides its explicit ranges, every
    /// tracked packet below `implicit_end` counts as received (the frame's implicit block,
    /// which reaches down to our stop-waiting point). Only explicit ranges can prove a loss
    /// false: the implicit block never reaches a remembered loss (our stop-waiting point
    /// stays at or below them), and a stale one must not be taken for news.
    pub fn on_ack_frame<I>(
        &mut self,
        acked_ranges: I,
        implicit_end: Option<u64>,
        now: Timestamp,
        rtt: Duration,
    ) -> AckResult<T>
    where
        I: IntoIterator<Item = RangeInclusive<u64>>,
    {
        let mut acked = Acked::new();
        let mut spurious = Vec::new();
        let mut acked_unsent = false;
        let mut frame_largest: Option<u64> = None;
        // Newly acked packet with the highest number, and when it was sent; whether any newly
        // acked packet was ack-eliciting.
        let mut newest: Option<(u64, Timestamp)> = None;
        let mut any_eliciting = false;
        let implicit = implicit_end
            .and_then(|end| end.checked_sub(1))
            .and_then(|hi| {
                self.min_unacked()
                    .filter(|&lo| lo <= hi)
                    .map(|lo| (lo..=hi, false))
            });
        let ranges = acked_ranges.into_iter().map(|r| (r, true)).chain(implicit);
        for (range, explicit) in ranges {
            let (lo, mut hi) = (*range.start(), *range.end());
            if lo > hi {
                continue;
            }
            match self.largest_sent {
                Some(sent) if hi > sent => {
                    acked_unsent = true;
                    hi = sent;
                }
                None => {
                    acked_unsent = true;
                    continue;
                }
                Some(_) => {}
            }
            if lo > hi {
                continue;
            }
            if explicit {
                frame_largest = Some(frame_largest.map_or(hi, |f| f.max(hi)));
                // One lookup per entry rather than a list of keys: the map cannot change
                // while a range of it is borrowed, and a list would cost an allocation.
                while let Some(pn) = first_in(&self.lost, lo, hi) {
                    if let Some(l) = self.lost.remove(&pn) {
                        spurious.push(FalseLoss {
                            pn,
                            time_sent: l.time_sent,
                            declared: l.declared,
                            bytes: l.bytes,
                        });
                    }
                }
            }
            while let Some(pn) = first_in(&self.packets, lo, hi) {
                if let Some(p) = self.packets.remove(&pn) {
                    if p.ack_eliciting {
                        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.bytes);
                        if self.largest_acked.is_some_and(|l| pn < l) {
                            self.bytes_skipped = self.bytes_skipped.saturating_sub(p.bytes);
                        }
                    } else {
                        self.ack_only -= 1;
                    }
                    if newest.is_none_or(|(n, _)| pn > n) {
                        newest = Some((pn, p.time_sent));
                    }
                    any_eliciting |= p.ack_eliciting;
                    acked.push((pn, p.payload));
                }
            }
        }
        acked.sort_unstable_by_key(|&(pn, _)| pn);
        spurious.sort_unstable_by_key(|f| f.pn);
        // As RFC 9002: packets that carried only acks are acked whenever the peer next has
        // something to send, so a frame that acks nothing else says nothing about the round
        // trip.
        let rtt_sample = match (newest, frame_largest) {
            (Some((pn, sent)), Some(largest)) if pn == largest && any_eliciting => {
                Some(now.saturating_since(sent))
            }
            _ => None,
        };
        if let Some(f) = frame_largest {
            let old = self.largest_acked;
            if old.is_none_or(|l| f > l) {
                // The packets the frame skipped over are no longer between us and the peer:
                // they arrived by another way (reordering) or not at all.
                let from = old.map_or(0, |l| l + 1);
                self.bytes_skipped += self
                    .packets
                    .range(from..f)
                    .filter(|(_, p)| p.ack_eliciting)
                    .map(|(_, p)| p.bytes)
                    .sum::<usize>();
                self.largest_acked = Some(f);
            }
        }
        let largest = self.largest_acked.unwrap_or(0);
        for f in &spurious {
            self.reorder.on_false_loss(
                now.saturating_since(f.time_sent),
                rtt,
                largest.saturating_sub(f.pn),
            );
        }
        let lost = self.detect_lost(now, rtt);
        self.expire_lost(now, rtt);
        AckResult {
            acked,
            lost,
            spurious,
            rtt_sample,
            acked_unsent,
        }
    }

    /// When [`on_loss_timeout`](Self::on_loss_timeout) should run: the earliest moment a
    /// packet below the largest acknowledged crosses the time threshold.
    pub fn loss_time(&self) -> Option<Timestamp> {
        self.loss_time
    }

    /// Declares lost whatever crossed the time threshold by `now`, for a round trip of `rtt`.
    pub fn on_loss_timeout(&mut self, now: Timestamp, rtt: Duration) -> Vec<(u64, T)> {
        let lost = self.detect_lost(now, rtt);
        self.expire_lost(now, rtt);
        lost
    }

    /// Forgets the packets that carried only acks and went unacknowledged for `age`: nothing
    /// depends on them, but they hold back the stop-waiting point. Returns their payloads.
    /// Only the oldest ones above the largest acknowledged go, up to the first ack-eliciting
    /// one (which an ack or the probe timer settles in its turn); those below the largest
    /// acknowledged are left to the time threshold, which settles them sooner.
    pub fn expire_ack_only(&mut self, now: Timestamp, age: Duration) -> Vec<(u64, T)> {
        let above = self.largest_acked.map_or(0, |l| l.saturating_add(1));
        let stale: Vec<u64> = self
            .packets
            .range(above..)
            .take_while(|(_, p)| !p.ack_eliciting && p.time_sent + age <= now)
            .map(|(&pn, _)| pn)
            .collect();
        stale
            .into_iter()
            .filter_map(|pn| self.packets.remove(&pn).map(|p| (pn, p)))
            .map(|(pn, p)| {
                self.ack_only -= 1;
                (pn, p.payload)
            })
            .collect()
    }

    /// When [`expire_ack_only`](Self::expire_ack_only) has work for `age`, if ever.
    pub fn ack_only_expiry(&self, age: Duration) -> Option<Timestamp> {
        if self.ack_only == 0 {
            return None;
        }
        let above = self.largest_acked.map_or(0, |l| l.saturating_add(1));
        self.packets
            .range(above..)
            .next()
            .filter(|(_, p)| !p.ack_eliciting)
            .map(|(_, p)| p.time_sent + age)
    }

    /// Removes and returns the lost packets, remembers them, and rearms the time-threshold
    /// deadline.
    fn detect_lost(&mut self, now: Timestamp, rtt: Duration) -> Vec<(u64, T)> {
        self.loss_time = None;
        let Some(largest_acked) = self.largest_acked else {
            return Vec::new();
        };
        let loss_delay = self.reorder.loss_delay(rtt);
        let threshold = self.reorder.packet_threshold();
        let mut doomed = Vec::new();
        for (&pn, p) in self.packets.range(..largest_acked) {
            if largest_acked - pn >= threshold || p.time_sent + loss_delay <= now {
                doomed.push(pn);
            } else {
                // Send times grow with numbers: this is the earliest deadline left.
                self.loss_time = Some(p.time_sent + loss_delay);
                break;
            }
        }
        let mut lost = Vec::with_capacity(doomed.len());
        for pn in doomed {
            if let Some(p) = self.packets.remove(&pn) {
                if p.ack_eliciting {
                    self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.bytes);
                    self.bytes_skipped = self.bytes_skipped.saturating_sub(p.bytes);
                    self.remember_lost(pn, &p, now);
                } else {
                    self.ack_only -= 1;
                }
                lost.push((pn, p.payload));
            }
        }
        lost
    }

    fn remember_lost(&mut self, pn: u64, p: &SentPacket<T>, now: Timestamp) {
        self.lost.insert(
            pn,
            LostPacket {
                time_sent: p.time_sent,
                declared: now,
                bytes: p.bytes,
            },
        );
        while self.lost.len() > MAX_LOST_REMEMBERED {
            self.lost.pop_first();
            self.reorder.on_real_loss();
        }
    }

    /// How long a lost packet is remembered, for a round trip of `rtt`.
    fn lost_memory(&self, rtt: Duration) -> Duration {
        self.reorder
            .loss_delay(rtt)
            .saturating_mul(2)
            .max(MIN_LOST_MEMORY)
    }

    /// Forgets the lost packets remembered long enough: those losses were real.
    pub fn expire_lost(&mut self, now: Timestamp, rtt: Duration) {
        let memory = self.lost_memory(rtt);
        // Losses are declared in number order (a lower number is always at least as overdue
        // as a higher one), so the oldest number was declared first.
        while self
            .lost
            .first_key_value()
            .is_some_and(|(_, l)| l.declared + memory <= now)
        {
            self.lost.pop_first();
            self.reorder.on_real_loss();
        }
    }

    /// The reordering thresholds in force.
    pub fn reorder(&self) -> &ReorderTolerance {
        &self.reorder
    }

    /// The time threshold in force for a round trip of `rtt`.
    pub fn loss_delay(&self, rtt: Duration) -> Duration {
        self.reorder.loss_delay(rtt)
    }

    /// Hands back every tracked payload, ascending, e.g. when the connection closes.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        self.bytes_in_flight = 0;
        self.ack_only = 0;
        self.bytes_skipped = 0;
        self.loss_time = None;
        self.last_ack_eliciting = None;
        self.lost.clear();
        std::mem::take(&mut self.packets)
            .into_iter()
            .map(|(pn, p)| (pn, p.payload))
            .collect()
    }

    /// Frees the record's storage when it tracks nothing (an emptied map keeps a node for
    /// reuse): for an idle connection. Not for the hot path: the next packet allocates again.
    pub fn shrink(&mut self) {
        if self.packets.is_empty() {
            self.packets = BTreeMap::new();
        }
        if self.lost.is_empty() {
            self.lost = BTreeMap::new();
        }
    }

    /// Bytes of ack-eliciting packets still in flight.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    /// Bytes in flight that the peer's acks skipped over (below the largest acknowledged,
    /// awaiting the loss verdict): held back on another path, or lost.
    pub fn bytes_skipped(&self) -> usize {
        self.bytes_skipped
    }

    /// Bytes in flight still ahead of the peer's acks: what occupies the path's queues, so
    /// what a congestion window limits. A packet the acks skipped over has left the
    /// bottleneck (it was lost, or it is late on another path).
    pub fn bytes_ahead(&self) -> usize {
        self.bytes_in_flight.saturating_sub(self.bytes_skipped)
    }

    /// When the newest ack-eliciting packet still in flight was sent: what the probe timeout
    /// counts from. `None` when none is in flight.
    pub fn last_ack_eliciting_sent(&self) -> Option<Timestamp> {
        self.last_ack_eliciting.filter(|_| self.bytes_in_flight > 0)
    }

    /// Payloads of the oldest ack-eliciting packets in flight, oldest first: what a probe
    /// sends again.
    pub fn oldest_in_flight(&self) -> impl Iterator<Item = &T> + '_ {
        self.packets
            .values()
            .filter(|p| p.ack_eliciting)
            .map(|p| &p.payload)
    }

    /// Oldest packet number still awaiting its fate.
    pub fn min_unacked(&self) -> Option<u64> {
        self.packets.keys().next().copied()
    }

    /// Oldest number still tracked or remembered as lost: below it, the peer need not report
    /// what it received (the stop-waiting point, before the caller's other bounds).
    pub fn min_wanted(&self) -> Option<u64> {
        match (self.min_unacked(), self.lost.keys().next().copied()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Lost packets remembered now.
    pub fn lost_remembered(&self) -> usize {
        self.lost.len()
    }

    /// Largest packet number sent.
    pub fn largest_sent(&self) -> Option<u64> {
        self.largest_sent
    }

    /// Largest packet number the peer acknowledged.
    pub fn largest_acked(&self) -> Option<u64> {
        self.largest_acked
    }

    /// Number of packets tracked.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when no packet awaits its fate.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// True when no more packets can be tracked: the caller must stop sending.
    pub fn is_full(&self) -> bool {
        self.packets.len() >= MAX_TRACKED_PACKETS
    }
}

/// The lowest key of `map` in `lo..=hi`.
fn first_in<V>(map: &BTreeMap<u64, V>, lo: u64, hi: u64) -> Option<u64> {
    map.range(lo..=hi).next().map(|(&pn, _)| pn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// The round trip the tests run with: a loss delay of 9/8 of it, 22.5 ms.
    const RTT: Duration = Duration::from_millis(20);
    const LOSS_DELAY: Duration = Duration::from_micros(22_500);

    fn pns<T>(v: &[(u64, T)]) -> Vec<u64> {
        v.iter().map(|(pn, _)| *pn).collect()
    }

    fn sent(n: u64) -> SentPackets<u64> {
        let mut s = SentPackets::new();
        for pn in 1..=n {
            assert!(s.on_sent(pn, t(pn), 100, true, pn * 10).is_ok());
        }
        s
    }

    #[test]
    fn ack_returns_payloads_and_rtt_sample() {
        let mut s = sent(3);
        assert_eq!(s.bytes_in_flight(), 300);
        assert_eq!(s.last_ack_eliciting_sent(), Some(t(3)));
        let r = s.on_ack([1..=3], t(50), RTT);
        assert_eq!(&r.acked[..], [(1, 10), (2, 20), (3, 30)]);
        assert!(r.lost.is_empty() && r.spurious.is_empty());
        assert_eq!(r.rtt_sample, Some(ms(47)));
        assert!(!r.acked_unsent);
        assert_eq!(s.bytes_in_flight(), 0);
        assert!(s.is_empty());
        assert_eq!(s.loss_time(), None);
        assert_eq!(s.last_ack_eliciting_sent(), None);
    }

    #[test]
    fn duplicate_and_overlapping_blocks_ack_once() {
        let mut s = sent(6);
        let r = s.on_ack([2..=4, 3..=5, 2..=4, 4..=4], t(30), RTT);
        assert_eq!(pns(&r.acked), vec![2, 3, 4, 5]);
        assert_eq!(r.rtt_sample, Some(ms(25)));
        // 1 is only 4 below the largest acked: past the packet threshold.
        assert_eq!(pns(&r.lost), vec![1]);
        // Acking the same again changes nothing and gives no sample.
        let r = s.on_ack([2..=5], t(31), RTT);
        assert!(r.acked.is_empty() && r.lost.is_empty());
        assert_eq!(r.rtt_sample, None);
        assert_eq!(pns(&s.drain()), vec![6]);
    }

    #[test]
    fn acks_for_unknown_packets() {
        let mut s: SentPackets<u64> = SentPackets::new();
        let r = s.on_ack([1..=5], t(1), RTT);
        assert!(r.acked_unsent && r.acked.is_empty());
        assert_eq!(s.largest_acked(), None);
        let mut s = sent(3);
        // Beyond what was sent: flagged, clamped, the rest applied.
        let r = s.on_ack([2..=1_000_000], t(10), RTT);
        assert!(r.acked_unsent);
        assert_eq!(pns(&r.acked), vec![2, 3]);
        assert_eq!(s.largest_acked(), Some(3));
        // Wholly unsent range: flagged, no effect.
        let r = s.on_ack([u64::MAX..=u64::MAX], t(11), RTT);
        assert!(r.acked_unsent && r.acked.is_empty());
        assert_eq!(s.largest_acked(), Some(3));
        // An empty (reversed) range is ignored.
        #[allow(clippy::reversed_empty_ranges)]
        let r = s.on_ack([3..=1], t(12), RTT);
        assert!(!r.acked_unsent && r.acked.is_empty());
    }

    #[test]
    fn an_ack_only_packet_gives_no_rtt_sample() {
        let mut s: SentPackets<()> = SentPackets::new();
        assert!(s.on_sent(1, t(0), 50, false, ()).is_ok());
        // Acked seconds later, when the peer next had something to send.
        let r = s.on_ack([1..=1], t(3_000), RTT);
        assert_eq!(pns(&r.acked), vec![1]);
        assert_eq!(r.rtt_sample, None);
    }

    #[test]
    fn rtt_sample_needs_the_largest_newly_acked() {
        let mut s = sent(4);
        s.on_ack([4..=4], t(10), RTT);
        // 3 is newly acked, but the frame's largest (4) was acked before.
        let r = s.on_ack([3..=4], t(12), RTT);
        assert_eq!(pns(&r.acked), vec![3]);
        assert_eq!(r.rtt_sample, None);
    }

    #[test]
    fn time_threshold_declares_loss_later() {
        let mut s = sent(3);
        // Acking 3 leaves 1 and 2 within the packet threshold.
        let r = s.on_ack([3..=3], t(5), RTT);
        assert!(r.lost.is_empty());
        // 1 was sent at 1 ms: lost at 23.5 ms.
        assert_eq!(s.loss_time(), Some(t(1) + LOSS_DELAY));
        assert!(s.on_loss_timeout(t(23), RTT).is_empty());
        let lost = s.on_loss_timeout(t(1) + LOSS_DELAY, RTT);
        assert_eq!(pns(&lost), vec![1]);
        assert_eq!(s.loss_time(), Some(t(2) + LOSS_DELAY));
        // Its number is still wanted (remembered), though no longer tracked.
        assert_eq!(s.min_unacked(), Some(2));
        assert_eq!(s.min_wanted(), Some(1));
    }

    #[test]
    fn an_ack_late_enough_applies_the_time_threshold_at_once() {
        let mut s = sent(2);
        let r = s.on_ack([2..=2], t(100), RTT);
        assert_eq!(pns(&r.lost), vec![1]);
    }

    #[test]
    fn the_implicit_block_acks_tracked_packets_only() {
        let mut s = sent(6);
        // 1 lost by the packet threshold.
        let r = s.on_ack([4..=4], t(10), RTT);
        assert_eq!(pns(&r.lost), vec![1]);
        // A frame whose implicit block reaches 3: 2 is acked, 1 is not taken as late news.
        let r = s.on_ack_frame([6..=6], Some(3), t(11), RTT);
        assert_eq!(pns(&r.acked), vec![2, 6]);
        assert_eq!(pns(&r.lost), vec![3]);
        assert!(r.spurious.is_empty());
        assert_eq!(r.rtt_sample, Some(ms(5)));
    }

    #[test]
    fn a_late_ack_proves_a_loss_false_and_widens_the_threshold() {
        // A path with 10 ms round trips that holds some packets back by 40 ms.
        let rtt = ms(10);
        let mut s: SentPackets<u64> = SentPackets::new();
        for pn in 1..=100 {
            assert!(s.on_sent(pn, t(pn), 100, true, pn).is_ok());
        }
        // Everything but 10 arrives in time.
        let r = s.on_ack([11..=30], t(41), rtt);
        assert_eq!(pns(&r.lost), vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        let r = s.on_ack([1..=9], t(42), rtt);
        assert!(r.acked.is_empty(), "already handed back as lost");
        assert_eq!(r.spurious.len(), 9, "1..=9 arrived after all");
        // 10 arrives 40 ms late.
        let r = s.on_ack([10..=10, 31..=50], t(60), rtt);
        assert_eq!(
            r.spurious,
            vec![FalseLoss {
                pn: 10,
                time_sent: t(10),
                declared: t(41),
                bytes: 100
            }]
        );
        assert!(s.reorder().packet_threshold() > 40);
        assert!(s.loss_delay(rtt) > ms(50));
        // The next packet held back as long is not declared lost.
        let r = s.on_ack([52..=70], t(80), rtt);
        assert!(r.lost.is_empty(), "{:?}", pns(&r.lost));
        let r = s.on_ack([51..=51], t(101), rtt);
        assert_eq!(pns(&r.acked), vec![51]);
    }

    #[test]
    fn lost_packets_are_forgotten_after_a_while() {
        let mut s = sent(5);
        let r = s.on_ack([4..=4], t(10), RTT);
        assert_eq!(pns(&r.lost), vec![1]);
        assert_eq!(s.lost_remembered(), 1);
        assert_eq!(s.min_wanted(), Some(1));
        // Twice the loss delay (45 ms), but at least MIN_LOST_MEMORY, after it was declared,
        // it is forgotten.
        s.expire_lost(t(59), RTT);
        assert_eq!(s.lost_remembered(), 1);
        s.expire_lost(t(10) + MIN_LOST_MEMORY, RTT);
        assert_eq!(s.lost_remembered(), 0);
        assert_eq!(s.min_wanted(), Some(2));
        // A late ack for it is now just ignored.
        let r = s.on_ack([1..=1], t(60), RTT);
        assert!(r.acked.is_empty() && r.spurious.is_empty());
    }

    #[test]
    fn nothing_is_declared_lost_without_an_ack() {
        let mut s = sent(3);
        assert_eq!(s.loss_time(), None);
        assert!(s.on_loss_timeout(t(100_000), RTT).is_empty());
        assert_eq!(s.len(), 3);
        // What a probe resends: the oldest first.
        let oldest: Vec<u64> = s.oldest_in_flight().copied().collect();
        assert_eq!(oldest, vec![10, 20, 30]);
    }

    #[test]
    fn ack_only_packets_do_not_count_in_flight_and_expire() {
        let mut s: SentPackets<()> = SentPackets::new();
        assert!(s.on_sent(1, t(0), 50, false, ()).is_ok());
        assert!(s.on_sent(2, t(5), 50, true, ()).is_ok());
        assert!(s.on_sent(3, t(6), 50, false, ()).is_ok());
        assert_eq!(s.bytes_in_flight(), 50);
        assert_eq!(s.last_ack_eliciting_sent(), Some(t(5)));
        assert_eq!(s.ack_only_expiry(ms(100)), Some(t(100)));
        assert!(s.expire_ack_only(t(99), ms(100)).is_empty());
        assert_eq!(pns(&s.expire_ack_only(t(100), ms(100))), vec![1]);
        // 3 waits behind the ack-eliciting 2, whatever its age.
        assert_eq!(s.ack_only_expiry(ms(100)), None);
        assert!(s.expire_ack_only(t(500), ms(100)).is_empty());
        let r = s.on_ack([2..=2], t(501), RTT);
        assert_eq!(pns(&r.acked), vec![2]);
        assert_eq!(s.ack_only_expiry(ms(100)), Some(t(106)));
        assert_eq!(pns(&s.expire_ack_only(t(501), ms(100))), vec![3]);
        assert!(s.is_empty());
    }

    #[test]
    fn refuses_when_full_or_not_increasing() {
        let mut s: SentPackets<u64> = SentPackets::new();
        assert!(s.on_sent(5, t(0), 1, true, 5).is_ok());
        assert_eq!(s.on_sent(5, t(0), 1, true, 6), Err(6));
        assert_eq!(s.on_sent(4, t(0), 1, true, 7), Err(7));
        for pn in 6..(5 + MAX_TRACKED_PACKETS as u64) {
            assert!(!s.is_full());
            assert!(s.on_sent(pn, t(0), 1, true, pn).is_ok());
        }
        assert!(s.is_full());
        let next = 5 + MAX_TRACKED_PACKETS as u64;
        assert_eq!(s.on_sent(next, t(0), 1, true, 99), Err(99));
        s.on_ack([5..=5], t(1), RTT);
        assert!(!s.is_full());
        assert!(s.on_sent(next, t(1), 1, true, 1).is_ok());
        assert_eq!(s.min_unacked(), Some(6));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Send {
            bytes: usize,
            eliciting: bool,
            skip: u64,
        },
        Ack(Vec<(u64, u64)>),
        Advance(u64),
        Timeout,
        ExpireAckOnly,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..1500, any::<bool>(), 0u64..3)
                .prop_map(|(bytes, eliciting, skip)| Op::Send { bytes, eliciting, skip }),
            3 => proptest::collection::vec((0u64..120, 0u64..8), 0..5).prop_map(Op::Ack),
            2 => (0u64..120).prop_map(Op::Advance),
            1 => Just(Op::Timeout),
            1 => Just(Op::ExpireAckOnly),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn every_payload_comes_back_exactly_once(ops in proptest::collection::vec(op(), 1..150)) {
            let mut s: SentPackets<u64> = SentPackets::new();
            let mut now = t(0);
            let mut next_pn = 1u64;
            let mut sent = BTreeSet::new();
            let mut returned = BTreeSet::new();
            let mut lost = BTreeSet::new();
            let mut in_flight: BTreeMap<u64, (usize, bool)> = BTreeMap::new();
            let mut last_wanted = 0u64;
            for op in ops {
                match op {
                    Op::Send { bytes, eliciting, skip } => {
                        next_pn += skip;
                        // The payload is the number itself, to check pairing.
                        prop_assert!(s.on_sent(next_pn, now, bytes, eliciting, next_pn).is_ok());
                        sent.insert(next_pn);
                        in_flight.insert(next_pn, (bytes, eliciting));
                        next_pn += 1;
                    }
                    Op::Ack(blocks) => {
                        let ranges: Vec<_> = blocks.iter().map(|&(lo, len)| lo..=lo + len).collect();
                        let r = s.on_ack(ranges.clone(), now, ms(30));
                        for (pn, payload) in &r.acked {
                            prop_assert_eq!(pn, payload);
                            prop_assert!(ranges.iter().any(|rg| rg.contains(pn)));
                            prop_assert!(returned.insert(*pn), "returned twice: {}", pn);
                            in_flight.remove(pn);
                        }
                        for (pn, payload) in &r.lost {
                            prop_assert_eq!(pn, payload);
                            prop_assert!(!ranges.iter().any(|rg| rg.contains(pn)));
                            prop_assert!(returned.insert(*pn), "returned twice: {}", pn);
                            in_flight.remove(pn);
                            lost.insert(*pn);
                        }
                        for f in &r.spurious {
                            // Only a packet declared lost can prove its loss false, once.
                            prop_assert!(lost.remove(&f.pn), "false loss of {}", f.pn);
                            prop_assert!(ranges.iter().any(|rg| rg.contains(&f.pn)));
                        }
                        let unsent = ranges.iter().any(|rg| s.largest_sent().is_none_or(|l| *rg.end() > l));
                        prop_assert_eq!(r.acked_unsent, unsent);
                    }
                    Op::Advance(d) => now += ms(d),
                    Op::Timeout => {
                        let due = s.loss_time();
                        let r = s.on_loss_timeout(now, ms(30));
                        if due.is_none_or(|d| d > now) {
                            prop_assert!(r.is_empty());
                        } else {
                            prop_assert!(!r.is_empty());
                        }
                        for (pn, payload) in &r {
                            prop_assert_eq!(pn, payload);
                            prop_assert!(returned.insert(*pn), "returned twice: {}", pn);
                            in_flight.remove(pn);
                            lost.insert(*pn);
                        }
                    }
                    Op::ExpireAckOnly => {
                        for (pn, payload) in s.expire_ack_only(now, ms(200)) {
                            prop_assert_eq!(pn, payload);
                            prop_assert!(!in_flight[&pn].1, "ack-eliciting {} expired", pn);
                            prop_assert!(returned.insert(pn), "returned twice: {}", pn);
                            in_flight.remove(&pn);
                        }
                    }
                }
                let expect_bytes: usize = in_flight.values().filter(|v| v.1).map(|v| v.0).sum();
                prop_assert_eq!(s.bytes_in_flight(), expect_bytes);
                let largest = s.largest_acked().unwrap_or(0);
                let skipped: usize = in_flight
                    .iter()
                    .filter(|(pn, v)| v.1 && **pn < largest)
                    .map(|(_, v)| v.0)
                    .sum();
                prop_assert_eq!(s.bytes_skipped(), skipped);
                prop_assert_eq!(s.len(), in_flight.len());
                prop_assert_eq!(s.ack_only, in_flight.values().filter(|v| !v.1).count());
                // The counter's shortcut gives what the walk of the map would.
                let walked = s
                    .packets
                    .range(s.largest_acked.map_or(0, |l| l + 1)..)
                    .next()
                    .filter(|(_, p)| !p.ack_eliciting)
                    .map(|(_, p)| p.time_sent + ms(200));
                prop_assert_eq!(s.ack_only_expiry(ms(200)), walked);
                prop_assert!(s.lost_remembered() <= MAX_LOST_REMEMBERED);
                // The stop-waiting point never moves back.
                if let Some(w) = s.min_wanted() {
                    prop_assert!(w >= last_wanted);
                    last_wanted = w;
                }
            }
            for (pn, payload) in s.drain() {
                prop_assert_eq!(pn, payload);
                prop_assert!(returned.insert(pn), "returned twice: {}", pn);
            }
            prop_assert_eq!(returned, sent);
            prop_assert_eq!(s.bytes_in_flight(), 0);
        }
    }
}
