//! Packet numbers on receipt: widening the 16-bit wire value and rejecting replays.
//!
//! The sender numbers its packets 1, 2, 3, ... as 64-bit integers but puts only the low 16
//! bits on the wire. The receiver rebuilds the full number from the largest one it has
//! accepted so far, and then checks it against a sliding window of recently accepted
//! numbers so that a duplicated or replayed datagram is processed at most once.
//!
//! Checking and recording are split on purpose: the full number is needed to decrypt the
//! packet (it feeds the AEAD nonce), but a packet may be recorded only once it decrypted
//! successfully. Otherwise a forged datagram with a far-ahead number could slide the window
//! forward and make the receiver drop the peer's genuine packets as "too old".

/// How many packet numbers at and below the largest accepted one the window remembers.
///
/// Anything older is refused outright, since we could no longer tell whether it is a replay.
pub const REPLAY_WINDOW: u64 = 128;

/// Rebuilds a full packet number from its low 16 bits (`wire`), given `largest`, the
/// largest number accepted so far.
///
/// Nearest-value rule: of all 64-bit numbers whose low 16 bits equal `wire`, pick the one
/// closest to `largest`. Exactly, the result lies in `largest - 32768 ..= largest + 32767`
/// (a tie, a distance of exactly 32768, resolves to the older value). This is correct as
/// long as the sender never has more than 32767 packets between what we have seen and what
/// it sends, which holds by a wide margin given the bounded number of packets in flight.
///
/// Returns `None` when the nearest value would fall below zero or above `u64::MAX`: no such
/// packet can exist, so the caller drops the datagram.
pub fn expand(largest: u64, wire: u16) -> Option<u64> {
    // The low 16 bits of `largest` are exactly `largest as u16`; the wrapping difference
    // reinterpreted as signed is the signed distance to the nearest candidate.
    let delta = wire.wrapping_sub(largest as u16) as i16;
    largest.checked_add_signed(i64::from(delta))
}

/// Low 16 bits of a packet number, as sent on the wire.
pub fn truncate(pn: u64) -> u16 {
    pn as u16
}

/// What the replay window thinks of a packet number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not seen before and inside (or ahead of) the window: process it.
    New,
    /// Already accepted: drop it.
    Duplicate,
    /// Older than the window reaches: drop it, as it cannot be told apart from a replay.
    TooOld,
}

/// The receiver's record of recently accepted packet numbers.
#[derive(Clone, Debug)]
pub struct ReplayWindow {
    /// Largest accepted packet number.
    largest: u64,
    /// Bit `i` set means `largest - i` was accepted (or predates the connection).
    seen: u128,
}

impl ReplayWindow {
    /// A window for a connection whose packets numbered `initial` and below are never valid.
    ///
    /// The reference implementation starts its senders at packet number 1 and treats the first
    /// data packet as number 2, so a receiver there starts with `initial = 1`.
    pub fn new(initial: u64) -> Self {
        // Everything at or below `initial` counts as already seen, so it is refused.
        ReplayWindow {
            largest: initial,
            seen: u128::MAX,
        }
    }

    /// Largest packet number accepted so far (or the initial value).
    pub fn largest(&self) -> u64 {
        self.largest
    }

    /// Expands a wire number against this window's largest accepted number (see [`expand`]).
    pub fn expand(&self, wire: u16) -> Option<u64> {
        expand(self.largest, wire)
    }

    /// Classifies `pn` without recording it.
    pub fn check(&self, pn: u64) -> Verdict {
        if pn > self.largest {
            return Verdict::New;
        }
        let age = self.largest - pn;
        if age >= REPLAY_WINDOW {
            return Verdict::TooOld;
        }
        if self.seen & (1u128 << age) != 0 {
            Verdict::Duplicate
        } else {
            Verdict::New
        }
    }

    /// Records `pn` as accepted if [`check`](Self::check) finds it new, and returns what
    /// `check` returned. Call it only after the packet authenticated and decrypted.
    pub fn commit(&mut self, pn: u64) -> Verdict {
        let verdict = self.check(pn);
        if verdict != Verdict::New {
            return verdict;
        }
        if pn > self.largest {
            let shift = pn - self.largest;
            self.seen = if shift >= REPLAY_WINDOW {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.largest = pn;
        } else {
            // `check` returned New, so the age is below the window size.
            self.seen |= 1u128 << (self.largest - pn);
        }
        Verdict::New
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn expand_in_order_and_across_wrap() {
        assert_eq!(expand(1, 2), Some(2));
        assert_eq!(expand(0xfffe, 0xffff), Some(0xffff));
        // The 16-bit value wraps, the full number keeps counting.
        assert_eq!(expand(0xffff, 0x0000), Some(0x1_0000));
        assert_eq!(expand(0xffff, 0x0005), Some(0x1_0005));
        // A late packet from before the wrap.
        assert_eq!(expand(0x1_0002, 0xfff0), Some(0xfff0));
        assert_eq!(expand(0x7_0000, 0xffff), Some(0x6_ffff));
    }

    #[test]
    fn expand_edges_of_reach() {
        let largest = 0x5_8000;
        // Farthest ahead and farthest behind that expansion reaches.
        assert_eq!(
            expand(largest, truncate(largest + 32767)),
            Some(largest + 32767)
        );
        assert_eq!(
            expand(largest, truncate(largest - 32768)),
            Some(largest - 32768)
        );
        // One step further ahead aliases to the oldest value instead.
        assert_eq!(
            expand(largest, truncate(largest + 32768)),
            Some(largest - 32768)
        );
    }

    #[test]
    fn expand_refuses_impossible_numbers() {
        // Nearest candidate would be negative.
        assert_eq!(expand(1, 0xffff), None);
        assert_eq!(expand(0, 0x8000), None);
        // Nearest candidate would overflow.
        assert_eq!(expand(u64::MAX, 0x0000), None);
        assert_eq!(expand(u64::MAX - 1, 0xffff), Some(u64::MAX));
    }

    #[test]
    fn initial_numbers_are_refused() {
        let w = ReplayWindow::new(1);
        assert_eq!(w.check(0), Verdict::Duplicate);
        assert_eq!(w.check(1), Verdict::Duplicate);
        assert_eq!(w.check(2), Verdict::New);
        let w = ReplayWindow::new(1000);
        assert_eq!(w.check(1000 - 127), Verdict::Duplicate);
        assert_eq!(w.check(1000 - 128), Verdict::TooOld);
    }

    #[test]
    fn check_does_not_record_commit_does() {
        let mut w = ReplayWindow::new(1);
        assert_eq!(w.check(5), Verdict::New);
        assert_eq!(w.check(5), Verdict::New);
        assert_eq!(w.largest(), 1);
        assert_eq!(w.commit(5), Verdict::New);
        assert_eq!(w.commit(5), Verdict::Duplicate);
        assert_eq!(w.largest(), 5);
        // The skipped numbers are still welcome.
        for pn in 2..5 {
            assert_eq!(w.check(pn), Verdict::New);
        }
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::new(1);
        assert_eq!(w.commit(1000), Verdict::New);
        // Oldest still tracked, and the first one beyond.
        assert_eq!(w.check(1000 - 127), Verdict::New);
        assert_eq!(w.check(1000 - 128), Verdict::TooOld);
        assert_eq!(w.commit(1000 - 127), Verdict::New);
        assert_eq!(w.commit(1000 - 127), Verdict::Duplicate);
        // Sliding by one pushes that number out of reach.
        assert_eq!(w.commit(1001), Verdict::New);
        assert_eq!(w.check(1000 - 127), Verdict::TooOld);
        // A jump of exactly the window size keeps only the new number.
        assert_eq!(w.commit(1001 + 128), Verdict::New);
        assert_eq!(w.check(1001), Verdict::TooOld);
        assert_eq!(w.check(1002), Verdict::New);
        // A huge jump clears everything.
        assert_eq!(w.commit(1_000_000), Verdict::New);
        assert_eq!(w.check(999_999), Verdict::New);
    }

    #[test]
    fn wire_flow_across_wrap() {
        let mut w = ReplayWindow::new(1);
        for pn in 2..200_000u64 {
            let full = w.expand(truncate(pn));
            assert_eq!(full, Some(pn));
            assert_eq!(w.commit(pn), Verdict::New);
        }
        // A replay of an old wire value now maps near the top and is a duplicate.
        let replay = w.expand(truncate(199_990));
        assert_eq!(replay, Some(199_990));
        assert_eq!(w.check(199_990), Verdict::Duplicate);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn expansion_inverts_truncation(largest in 0u64..(1 << 50), offset in -32768i64..=32767) {
            let pn = largest as i64 + offset;
            prop_assume!(pn >= 0);
            let pn = pn as u64;
            prop_assert_eq!(expand(largest, truncate(pn)), Some(pn));
        }

        #[test]
        fn expansion_result_has_wire_bits(largest in any::<u64>(), wire in any::<u16>()) {
            if let Some(pn) = expand(largest, wire) {
                prop_assert_eq!(truncate(pn), wire);
                prop_assert!(pn.abs_diff(largest) <= 32768);
            }
        }

        #[test]
        fn window_matches_a_set_model(
            steps in proptest::collection::vec((0u64..400, any::<bool>()), 1..200)
        ) {
            let mut w = ReplayWindow::new(0);
            let mut accepted: BTreeSet<u64> = BTreeSet::from([0]);
            for (pn, commit) in steps {
                let largest = *accepted.iter().next_back().unwrap_or(&0);
                let expected = if pn > largest {
                    Verdict::New
                } else if largest - pn >= REPLAY_WINDOW {
                    Verdict::TooOld
                } else if accepted.contains(&pn) {
                    Verdict::Duplicate
                } else {
                    Verdict::New
                };
                prop_assert_eq!(w.check(pn), expected);
                if commit {
                    prop_assert_eq!(w.commit(pn), expected);
                    if expected == Verdict::New {
                        accepted.insert(pn);
                    }
                }
                prop_assert_eq!(w.largest(), *accepted.iter().next_back().unwrap_or(&0));
            }
        }
    }
}
