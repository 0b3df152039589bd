//! Numbers sent with only their low bits, and how to get the full value back.
//!
//! Packet numbers, message numbers, ack packet numbers and reliable stream positions are 64-bit
//! quantities on both ends but travel as their low 16, 24, 32 or 48 bits. The receiver widens
//! them against a reference it already knows (the highest packet number received, the highest
//! message number seen on the lane, the next packet number it will send, the next stream
//! position it expects).
//!
//! The rule (see `docs/PROTOCOL.md`): the full value is the one with the given low bits that
//! is nearest to the reference, searching the window `[reference - 2^(bits-1),
//! reference + 2^(bits-1))`. Senders must keep the true value within `2^(bits-2)` of what the
//! receiver can be expected to hold, which is what the reference implementation does too. For
//! stream positions the reference uses a block-based rule that never looks below the
//! reference's `2^bits` block; it always sends 48 bits, where the two rules cannot disagree, and
//! so does our encoder by default.
//!
//! Inside one packet, later frames state their numbers relative to earlier ones. The decoder
//! cannot widen anything (it does not know the references), so it reports
//! "first absolute low bits plus a running offset": [`TruncatedNum`].

use super::WireError;

/// The value with the low `bits` of `low` nearest to `reference` (see the module docs).
///
/// `bits` must be in `1..=63`; `None` for a result below zero, or a `bits` out of range.
pub fn nearest_with_low_bits(low: u64, bits: u32, reference: u64) -> Option<u64> {
    if bits == 0 || bits >= 64 {
        return None;
    }
    let modulus = 1u64 << bits;
    let mask = modulus - 1;
    // Forward distance from the reference's low bits to the wire bits, taken modulo 2^bits,
    // then mapped into the signed range [-2^(bits-1), 2^(bits-1)).
    let forward = low.wrapping_sub(reference) & mask;
    if forward < modulus / 2 {
        reference.checked_add(forward)
    } else {
        reference.checked_sub(modulus - forward)
    }
}

/// The low `bits` of `value` (what a sender puts on the wire).
pub const fn low_bits(value: u64, bits: u32) -> u64 {
    if bits >= 64 {
        value
    } else {
        value & ((1u64 << bits) - 1)
    }
}

/// A number as one packet states it: the low bits of the first absolute value in its lane
/// context, plus an exact offset accumulated from the relative fields that followed.
///
/// The true value is `nearest_with_low_bits(low, bits, reference) + add`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TruncatedNum {
    /// Low bits of the first absolute value in the context.
    pub low: u64,
    /// How many bits `low` carries.
    pub bits: u8,
    /// Exact amount to add after widening.
    pub add: u64,
}

impl TruncatedNum {
    /// A number sent absolute with `bits` low bits.
    pub const fn absolute(low: u64, bits: u8) -> Self {
        TruncatedNum { low, bits, add: 0 }
    }

    /// This number plus `delta`, or an error if the running offset would overflow.
    pub fn plus(self, delta: u64, what: &'static str) -> Result<Self, WireError> {
        let add = self
            .add
            .checked_add(delta)
            .ok_or(WireError::NumberOverflow { what })?;
        Ok(TruncatedNum { add, ..self })
    }

    /// Widens against `reference` (see the module docs); `None` if the result leaves `u64`
    /// or falls below zero.
    pub fn resolve(&self, reference: u64) -> Option<u64> {
        nearest_with_low_bits(self.low, u32::from(self.bits), reference)?.checked_add(self.add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_picked_cases() {
        // Wire packet number 0x0001 just after 0x1_ffff was received: it wrapped forward.
        assert_eq!(nearest_with_low_bits(0x0001, 16, 0x1_ffff), Some(0x2_0001));
        // 0xfffe arriving after 0x2_0001: a late packet from before the wrap.
        assert_eq!(nearest_with_low_bits(0xfffe, 16, 0x2_0001), Some(0x1_fffe));
        // Near zero the result cannot go negative.
        assert_eq!(nearest_with_low_bits(0xffff, 16, 3), None);
        assert_eq!(nearest_with_low_bits(5, 0, 3), None);
        assert_eq!(nearest_with_low_bits(5, 64, 3), None);
        let t = TruncatedNum::absolute(0x10, 16)
            .plus(3, "t")
            .unwrap_or(TruncatedNum::absolute(0, 16));
        assert_eq!(t.resolve(0x5_0000), Some(0x5_0013));
        assert!(TruncatedNum {
            low: 0,
            bits: 16,
            add: u64::MAX
        }
        .plus(1, "t")
        .is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn recovers_values_within_half_window(
            value in 1u64..(1u64 << 62),
            bits in prop::sample::select(vec![16u32, 24, 32, 48]),
            dist in any::<i64>(),
        ) {
            // Any reference strictly within 2^(bits-1) of the true value widens correctly.
            let half = 1i64 << (bits - 1);
            let d = dist.rem_euclid(2 * half - 1) - (half - 1);
            let reference = (value as i64).saturating_sub(d).max(0) as u64;
            let got = nearest_with_low_bits(low_bits(value, bits), bits, reference);
            prop_assert_eq!(got, Some(value));
        }

        #[test]
        fn result_has_the_low_bits(low in any::<u64>(), bits in 1u32..63, reference in any::<u64>()) {
            if let Some(v) = nearest_with_low_bits(low, bits, reference) {
                prop_assert_eq!(low_bits(v, bits), low_bits(low, bits));
                prop_assert!(v.abs_diff(reference) <= 1u64 << (bits - 1));
            }
        }
    }
}
