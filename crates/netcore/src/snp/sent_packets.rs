//! The sender's record of packets in flight: acks, loss detection and the retransmit timer.
//!
//! Every packet sent is recorded with its send time, size and a caller-chosen payload `T`
//! (what the packet carried, e.g. the reliable segments to resend if it is lost). Each
//! payload comes back exactly once: as acked when an ack covers its packet, or as lost.
//! Once handed back, a packet is forgotten, so a late ack for a packet already declared lost
//! changes nothing (its data was or will be resent under a new number, and the receiver
//! discards what it already holds).
//!
//! A packet is declared lost when:
//! - a packet sent [`PACKET_THRESHOLD`] or more numbers later was acked (reordering rarely
//!   reaches that far), or
//! - a later packet was acked and this one is still unacked a short `loss_delay` after it
//!   was sent (time threshold; the caller derives the delay from the RTT), or
//! - it stays unacked for a whole retransmit timeout, which catches the tail of a burst
//!   and a silent peer, when no later ack arrives to reveal the loss.
//!
//! The record holds at most [`MAX_TRACKED_PACKETS`]; [`SentPackets::is_full`] tells the
//! caller to stop sending until acks or losses free room.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::time::Duration;

use crate::time::Timestamp;

/// A packet is lost once a packet this many numbers later has been acked.
pub const PACKET_THRESHOLD: u64 = 3;

/// Most packets tracked at once.
///
/// At the default 256 KiB/s, about 200 full packets leave per second, so this covers many
/// seconds of flight at the longest retransmit timeout.
pub const MAX_TRACKED_PACKETS: usize = 4096;

/// One packet awaiting its fate.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct SentPacket<T> {
    time_sent: Timestamp,
    bytes: usize,
    ack_eliciting: bool,
    payload: T,
}

/// What an ack frame changed.
#[derive(Debug)]
pub struct AckResult<T> {
    /// Packets newly acknowledged, ascending by packet number, with their payloads.
    pub acked: Vec<(u64, T)>,
    /// Packets newly declared lost, ascending by packet number, with their payloads.
    pub lost: Vec<(u64, T)>,
    /// Time from sending the frame's largest acknowledged packet to now, if that packet was
    /// newly acknowledged by this frame. The peer's ack delay is not taken out.
    pub rtt_sample: Option<Duration>,
    /// The frame acknowledged numbers never sent: a misbehaving peer. They are ignored.
    pub acked_unsent: bool,
}

/// What the retransmit or loss timer found.
#[derive(Debug)]
pub struct TimeoutResult<T> {
    /// Packets newly declared lost, ascending by packet number, with their payloads.
    pub lost: Vec<(u64, T)>,
    /// An ack-eliciting packet went unacked for a whole retransmit timeout: the caller backs
    /// the timeout off.
    pub rto_expired: bool,
}

/// Packets sent and not yet acked or declared lost.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct SentPackets<T> {
    packets: BTreeMap<u64, SentPacket<T>>,
    largest_sent: Option<u64>,
    largest_acked: Option<u64>,
    bytes_in_flight: usize,
    /// Earliest moment a packet below the largest acked crosses the time threshold.
    loss_time: Option<Timestamp>,
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
            loss_time: None,
        }
    }

    /// Records packet `pn`, sent at `now`, `bytes` long, carrying `payload`.
    ///
    /// `ack_eliciting` is false for packets that carry only acks: the peer need not ack
    /// those soon, so they count neither in bytes in flight nor towards timer backoff.
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
        }
        Ok(())
    }

    /// Applies an ack frame's acknowledged ranges, in any order; overlapping or repeated
    /// ranges and numbers already settled are harmless. Then runs loss detection with
    /// `loss_delay` as the time threshold.
    pub fn on_ack<I>(
        &mut self,
        acked_ranges: I,
        now: Timestamp,
        loss_delay: Duration,
    ) -> AckResult<T>
    where
        I: IntoIterator<Item = RangeInclusive<u64>>,
    {
        let mut acked = Vec::new();
        let mut acked_unsent = false;
        let mut frame_largest: Option<u64> = None;
        // Newly acked packet with the highest number, and when it was sent.
        let mut newest: Option<(u64, Timestamp)> = None;
        for range in acked_ranges {
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
            frame_largest = Some(frame_largest.map_or(hi, |f| f.max(hi)));
            // Collect first: the map cannot be changed while a range of it is borrowed.
            let keys: Vec<u64> = self.packets.range(lo..=hi).map(|(&pn, _)| pn).collect();
            for pn in keys {
                if let Some(p) = self.packets.remove(&pn) {
                    if p.ack_eliciting {
                        self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.bytes);
                    }
                    if newest.is_none_or(|(n, _)| pn > n) {
                        newest = Some((pn, p.time_sent));
                    }
                    acked.push((pn, p.payload));
                }
            }
        }
        acked.sort_unstable_by_key(|&(pn, _)| pn);
        let rtt_sample = match (newest, frame_largest) {
            (Some((pn, sent)), Some(largest)) if pn == largest => Some(now.saturating_since(sent)),
            _ => None,
        };
        if let Some(f) = frame_largest {
            self.largest_acked = Some(self.largest_acked.map_or(f, |l| l.max(f)));
        }
        let lost = self.detect_lost(now, loss_delay, None).0;
        AckResult {
            acked,
            lost,
            rtt_sample,
            acked_unsent,
        }
    }

    /// When [`on_timeout`](Self::on_timeout) should next run, given the retransmit timeout
    /// `rto`: the earlier of the time-threshold deadline and the oldest packet's send time
    /// plus `rto`. `None` when nothing is in flight.
    pub fn next_timeout(&self, rto: Duration) -> Option<Timestamp> {
        let oldest = self.packets.values().next().map(|p| p.time_sent + rto);
        match (self.loss_time, oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Declares lost whatever crossed the time threshold (`loss_delay`) or the retransmit
    /// timeout (`rto`) by `now`.
    pub fn on_timeout(
        &mut self,
        now: Timestamp,
        rto: Duration,
        loss_delay: Duration,
    ) -> TimeoutResult<T> {
        let (lost, rto_expired) = self.detect_lost(now, loss_delay, Some(rto));
        TimeoutResult { lost, rto_expired }
    }

    /// Removes and returns the lost packets, and rearms the time-threshold deadline.
    ///
    /// With `rto`, packets unacked for that long are lost too; the flag returned says
    /// whether an ack-eliciting packet was lost only for that reason.
    fn detect_lost(
        &mut self,
        now: Timestamp,
        loss_delay: Duration,
        rto: Option<Duration>,
    ) -> (Vec<(u64, T)>, bool) {
        self.loss_time = None;
        let mut doomed = Vec::new();
        let mut rto_expired = false;
        for (&pn, p) in &self.packets {
            let below_acked = self.largest_acked.is_some_and(|la| pn < la);
            let timed_out = rto.is_some_and(|r| p.time_sent + r <= now);
            if !below_acked && !timed_out {
                // Numbers only grow from here, and so do send times: nothing further is lost.
                break;
            }
            let by_ack = below_acked
                && (self
                    .largest_acked
                    .is_some_and(|la| la - pn >= PACKET_THRESHOLD)
                    || p.time_sent + loss_delay <= now);
            if by_ack || timed_out {
                if !by_ack && p.ack_eliciting {
                    rto_expired = true;
                }
                doomed.push(pn);
            } else {
                let due = p.time_sent + loss_delay;
                self.loss_time = Some(self.loss_time.map_or(due, |l| l.min(due)));
            }
        }
        let mut lost = Vec::with_capacity(doomed.len());
        for pn in doomed {
            if let Some(p) = self.packets.remove(&pn) {
                if p.ack_eliciting {
                    self.bytes_in_flight = self.bytes_in_flight.saturating_sub(p.bytes);
                }
                lost.push((pn, p.payload));
            }
        }
        (lost, rto_expired)
    }

    /// Hands back every tracked payload, ascending, e.g. when the connection closes.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        self.bytes_in_flight = 0;
        self.loss_time = None;
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
    }

    /// Bytes of ack-eliciting packets still in flight.
    pub fn bytes_in_flight(&self) -> usize {
        self.bytes_in_flight
    }

    /// Oldest packet number still awaiting its fate: what the stop-waiting frame tells the
    /// peer it may stop acking below.
    pub fn min_unacked(&self) -> Option<u64> {
        self.packets.keys().next().copied()
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

    const LOSS_DELAY: Duration = Duration::from_millis(20);
    const RTO: Duration = Duration::from_millis(200);

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
        let r = s.on_ack([1..=3], t(50), LOSS_DELAY);
        assert_eq!(r.acked, vec![(1, 10), (2, 20), (3, 30)]);
        assert!(r.lost.is_empty());
        assert_eq!(r.rtt_sample, Some(ms(47)));
        assert!(!r.acked_unsent);
        assert_eq!(s.bytes_in_flight(), 0);
        assert!(s.is_empty());
        assert_eq!(s.next_timeout(RTO), None);
    }

    #[test]
    fn duplicate_and_overlapping_blocks_ack_once() {
        let mut s = sent(6);
        let r = s.on_ack([2..=4, 3..=5, 2..=4, 4..=4], t(30), LOSS_DELAY);
        assert_eq!(pns(&r.acked), vec![2, 3, 4, 5]);
        assert_eq!(r.rtt_sample, Some(ms(25)));
        // 1 is only 4 below the largest acked: past the packet threshold.
        assert_eq!(pns(&r.lost), vec![1]);
        // Acking the same again changes nothing and gives no sample.
        let r = s.on_ack([2..=5], t(31), LOSS_DELAY);
        assert!(r.acked.is_empty() && r.lost.is_empty());
        assert_eq!(r.rtt_sample, None);
        assert_eq!(pns(&s.drain()), vec![6]);
    }

    #[test]
    fn acks_for_unknown_packets() {
        let mut s: SentPackets<u64> = SentPackets::new();
        let r = s.on_ack([1..=5], t(1), LOSS_DELAY);
        assert!(r.acked_unsent && r.acked.is_empty());
        assert_eq!(s.largest_acked(), None);
        let mut s = sent(3);
        // Beyond what was sent: flagged, clamped, the rest applied.
        let r = s.on_ack([2..=1_000_000], t(10), LOSS_DELAY);
        assert!(r.acked_unsent);
        assert_eq!(pns(&r.acked), vec![2, 3]);
        assert_eq!(s.largest_acked(), Some(3));
        // Wholly unsent range: flagged, no effect.
        let r = s.on_ack([u64::MAX..=u64::MAX], t(11), LOSS_DELAY);
        assert!(r.acked_unsent && r.acked.is_empty());
        assert_eq!(s.largest_acked(), Some(3));
        // An empty (reversed) range is ignored.
        #[allow(clippy::reversed_empty_ranges)]
        let r = s.on_ack([3..=1], t(12), LOSS_DELAY);
        assert!(!r.acked_unsent && r.acked.is_empty());
    }

    #[test]
    fn rtt_sample_needs_the_largest_newly_acked() {
        let mut s = sent(4);
        s.on_ack([4..=4], t(10), LOSS_DELAY);
        // 3 is newly acked, but the frame's largest (4) was acked before.
        let r = s.on_ack([3..=4], t(12), LOSS_DELAY);
        assert_eq!(pns(&r.acked), vec![3]);
        assert_eq!(r.rtt_sample, None);
    }

    #[test]
    fn time_threshold_declares_loss_later() {
        let mut s = sent(3);
        // Acking 3 leaves 1 and 2 within the packet threshold.
        let r = s.on_ack([3..=3], t(5), LOSS_DELAY);
        assert!(r.lost.is_empty());
        // 1 was sent at 1 ms: lost at 21 ms.
        assert_eq!(s.next_timeout(RTO), Some(t(1) + LOSS_DELAY));
        let r = s.on_timeout(t(20), RTO, LOSS_DELAY);
        assert!(r.lost.is_empty());
        let r = s.on_timeout(t(21), RTO, LOSS_DELAY);
        assert_eq!(pns(&r.lost), vec![1]);
        assert!(!r.rto_expired);
        assert_eq!(s.next_timeout(RTO), Some(t(2) + LOSS_DELAY));
        // A late ack for the lost packet is ignored; 2 is acked normally.
        let r = s.on_ack([1..=2], t(21), LOSS_DELAY);
        assert_eq!(pns(&r.acked), vec![2]);
        assert!(s.is_empty());
    }

    #[test]
    fn an_ack_late_enough_applies_the_time_threshold_at_once() {
        let mut s = sent(2);
        let r = s.on_ack([2..=2], t(100), LOSS_DELAY);
        assert_eq!(pns(&r.lost), vec![1]);
    }

    #[test]
    fn retransmit_timeout_catches_the_tail() {
        let mut s = sent(3);
        assert_eq!(s.next_timeout(RTO), Some(t(1) + RTO));
        let r = s.on_timeout(t(1) + RTO, RTO, LOSS_DELAY);
        assert_eq!(pns(&r.lost), vec![1]);
        assert!(r.rto_expired);
        assert_eq!(s.bytes_in_flight(), 200);
        // With a backed-off timeout, the rest go together.
        let r = s.on_timeout(t(2) + RTO * 2, RTO, LOSS_DELAY);
        assert_eq!(pns(&r.lost), vec![2, 3]);
        assert_eq!(s.bytes_in_flight(), 0);
        assert_eq!(s.next_timeout(RTO), None);
    }

    #[test]
    fn ack_only_packets_do_not_count_in_flight_or_back_off() {
        let mut s: SentPackets<()> = SentPackets::new();
        assert!(s.on_sent(1, t(0), 50, false, ()).is_ok());
        assert_eq!(s.bytes_in_flight(), 0);
        let r = s.on_timeout(t(0) + RTO, RTO, LOSS_DELAY);
        assert_eq!(pns(&r.lost), vec![1]);
        assert!(!r.rto_expired);
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
        s.on_ack([5..=5], t(1), LOSS_DELAY);
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
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..1500, any::<bool>(), 0u64..3)
                .prop_map(|(bytes, eliciting, skip)| Op::Send { bytes, eliciting, skip }),
            3 => proptest::collection::vec((0u64..120, 0u64..8), 0..5).prop_map(Op::Ack),
            2 => (0u64..120).prop_map(Op::Advance),
            1 => Just(Op::Timeout),
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
            let mut in_flight: BTreeMap<u64, (usize, bool)> = BTreeMap::new();
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
                        }
                        let unsent = ranges.iter().any(|rg| s.largest_sent().is_none_or(|l| *rg.end() > l));
                        prop_assert_eq!(r.acked_unsent, unsent);
                    }
                    Op::Advance(d) => now += ms(d),
                    Op::Timeout => {
                        let due = s.next_timeout(RTO);
                        let r = s.on_timeout(now, RTO, ms(30));
                        if due.is_none_or(|d| d > now) {
                            prop_assert!(r.lost.is_empty());
                        } else {
                            prop_assert!(!r.lost.is_empty());
                        }
                        for (pn, payload) in &r.lost {
                            prop_assert_eq!(pn, payload);
                            prop_assert!(returned.insert(*pn), "returned twice: {}", pn);
                            in_flight.remove(pn);
                        }
                    }
                }
                let expect_bytes: usize = in_flight.values().filter(|v| v.1).map(|v| v.0).sum();
                prop_assert_eq!(s.bytes_in_flight(), expect_bytes);
                prop_assert_eq!(s.len(), in_flight.len());
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
