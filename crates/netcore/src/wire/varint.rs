//! Little-endian base-128 varints (the protobuf encoding) and fixed-width little-endian
//! integers, as SNP frames and the data packet header use them.
//!
//! Kept apart so every decoder shares one bounds-checked reader: nothing here indexes a slice
//! without checking its length first.

use super::WireError;

/// Longest varint we accept: ten 7-bit groups cover 64 bits.
pub const MAX_VARINT_LEN: usize = 10;

/// Bytes `value` takes as a varint.
pub const fn encoded_len(value: u64) -> usize {
    // One byte per started group of 7 significant bits, at least one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `value` as a varint (to a `Vec<u8>`, or straight into a stream's `BytesMut`).
pub fn write(out: &mut impl bytes::BufMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// Reads a varint from the front of `input`, returning it and the bytes it took.
///
/// `what` names the field for the truncation error. A varint that would not fit 64 bits is
/// refused rather than silently truncated.
pub fn read(input: &[u8], what: &'static str) -> Result<(u64, usize), WireError> {
    let mut value: u64 = 0;
    for (i, &byte) in input.iter().enumerate().take(MAX_VARINT_LEN) {
        let group = u64::from(byte & 0x7f);
        let shift = 7 * i as u32;
        // The tenth group may only hold the single top bit.
        if i == MAX_VARINT_LEN - 1 && group > 1 {
            return Err(WireError::VarintOverflow);
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    if input.len() >= MAX_VARINT_LEN {
        Err(WireError::VarintOverflow)
    } else {
        Err(WireError::Truncated { what })
    }
}

/// A forward-only reader over a byte slice with checked, little-endian reads.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from the start of `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    /// The bytes not yet read.
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if n > self.rest.len() {
            return Err(WireError::Truncated { what });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    /// Takes everything that is left.
    pub fn take_rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.rest)
    }

    /// Reads an unsigned little-endian integer of `n` bytes (1..=8).
    pub fn uint_le(&mut self, n: usize, what: &'static str) -> Result<u64, WireError> {
        let bytes = self.take(n, what)?;
        Ok(bytes
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        let bytes = self.take(1, what)?;
        bytes.first().copied().ok_or(WireError::Truncated { what })
    }

    /// Reads a varint.
    pub fn varint(&mut self, what: &'static str) -> Result<u64, WireError> {
        let (value, len) = read(self.rest, what)?;
        self.rest = self.rest.get(len..).unwrap_or_default();
        Ok(value)
    }
}

/// Appends the low `n` bytes (1..=8) of `value`, little-endian.
pub fn write_uint_le(out: &mut Vec<u8>, value: u64, n: usize) {
    out.extend_from_slice(&value.to_le_bytes()[..n.min(8)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        // The protobuf documentation's example: 300 is 0xac 0x02.
        let mut out = Vec::new();
        write(&mut out, 300);
        assert_eq!(out, [0xac, 0x02]);
        assert_eq!(read(&out, "x"), Ok((300, 2)));
        assert_eq!(encoded_len(0), 1);
        assert_eq!(encoded_len(127), 1);
        assert_eq!(encoded_len(128), 2);
        assert_eq!(encoded_len(u64::MAX), 10);
    }

    #[test]
    fn rejects_overflow_and_truncation() {
        assert_eq!(
            read(&[0x80, 0x80], "x"),
            Err(WireError::Truncated { what: "x" })
        );
        assert_eq!(read(&[], "x"), Err(WireError::Truncated { what: "x" }));
        // Ten bytes whose last group is 2: bit 64 would be set.
        let mut too_big = [0xffu8; 10];
        too_big[9] = 0x02;
        assert_eq!(read(&too_big, "x"), Err(WireError::VarintOverflow));
        // Eleven continuation bytes.
        assert_eq!(read(&[0x80; 11], "x"), Err(WireError::VarintOverflow));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(v in any::<u64>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let mut out = Vec::new();
            write(&mut out, v);
            prop_assert_eq!(out.len(), encoded_len(v));
            out.extend_from_slice(&tail);
            prop_assert_eq!(read(&out, "x"), Ok((v, encoded_len(v))));
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok((v, len)) = read(&bytes, "x") {
                prop_assert!(len <= bytes.len());
                let mut out = Vec::new();
                write(&mut out, v);
                // Non-minimal encodings decode too, so only the value is compared.
                prop_assert_eq!(read(&out, "x"), Ok((v, out.len())));
            }
        }

        #[test]
        fn fixed_width_round_trip(v in any::<u64>(), n in 1usize..=8) {
            let mut out = Vec::new();
            write_uint_le(&mut out, v, n);
            let mask = if n == 8 { u64::MAX } else { (1u64 << (8 * n)) - 1 };
            prop_assert_eq!(Reader::new(&out).uint_le(n, "x"), Ok(v & mask));
        }
    }
}
