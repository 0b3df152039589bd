//! The small header in front of every message inside a lane's reliable byte stream.
//!
//! Reliable segments carry arbitrary slices of the stream; message boundaries and numbers are
//! recovered from these headers once the stream is contiguous:
//!
//! ```text
//! 0mssssss [varint msg_num_delta if m] [varint size_high if s's top bit]
//! m = 0: this message's number is the previous reliable one's plus 1
//! m = 1: a varint delta from the previous reliable message number follows
//! ssssss = 0xxxxx: the size is xxxxx (0..=31)
//! ssssss = 1xxxxx: xxxxx are the size's low 5 bits; the rest, shifted down by 5, follows
//! ```
//!
//! The delta comes before the size. A first byte with the high bit set is invalid.

use super::varint::{self, Reader};
use super::WireError;

/// Largest message number jump we accept (the reference treats more as a corrupt stream).
pub const MAX_MSG_NUM_DELTA: u64 = 1_000_000;
/// Longest header we ever write or accept: one byte and two varints.
pub const MAX_HEADER_LEN: usize = 1 + 2 * varint::MAX_VARINT_LEN;

const FLAG_RESERVED: u8 = 0x80;
const FLAG_EXPLICIT_DELTA: u8 = 0x40;
const FLAG_LARGE_SIZE: u8 = 0x20;
const SMALL_SIZE_MASK: u8 = 0x1f;

/// One reliable message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReliableMsgHeader {
    /// This message's number minus the previous reliable message's on the same lane
    /// (`1..=MAX_MSG_NUM_DELTA`; unreliable messages in between make it larger than 1).
    pub msg_num_delta: u64,
    /// Size of the message body that follows the header.
    pub size: u32,
}

impl ReliableMsgHeader {
    /// Bytes [`ReliableMsgHeader::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let delta = if self.msg_num_delta == 1 {
            0
        } else {
            varint::encoded_len(self.msg_num_delta)
        };
        let size = if self.size <= u32::from(SMALL_SIZE_MASK) {
            0
        } else {
            varint::encoded_len(u64::from(self.size >> 5))
        };
        1 + delta + size
    }

    /// Appends the header. Refuses a delta of 0 or above [`MAX_MSG_NUM_DELTA`], which the
    /// receiver would reject or misread.
    pub fn encode(&self, out: &mut impl bytes::BufMut) -> Result<(), WireError> {
        if self.msg_num_delta == 0 || self.msg_num_delta > MAX_MSG_NUM_DELTA {
            return Err(WireError::Unencodable {
                what: "reliable message number delta out of range",
            });
        }
        let mut first = 0u8;
        if self.msg_num_delta != 1 {
            first |= FLAG_EXPLICIT_DELTA;
        }
        if self.size <= u32::from(SMALL_SIZE_MASK) {
            first |= self.size as u8;
        } else {
            first |= FLAG_LARGE_SIZE | (self.size as u8 & SMALL_SIZE_MASK);
        }
        out.put_u8(first);
        if self.msg_num_delta != 1 {
            varint::write(out, self.msg_num_delta);
        }
        if self.size > u32::from(SMALL_SIZE_MASK) {
            varint::write(out, u64::from(self.size >> 5));
        }
        Ok(())
    }

    /// Reads a header from the front of the contiguous stream bytes in `input`.
    ///
    /// `Ok(None)` means the header is not complete yet (more stream bytes are needed);
    /// otherwise returns the header and its length. A size above `max_size` is an error, so a
    /// peer cannot make the receiver wait for (and buffer) an absurd message.
    pub fn decode(input: &[u8], max_size: u32) -> Result<Option<(Self, usize)>, WireError> {
        let mut r = Reader::new(input);
        let first = match r.u8("reliable header") {
            Ok(b) => b,
            Err(_) => return Ok(None),
        };
        if first & FLAG_RESERVED != 0 {
            return Err(WireError::BadReliableHeader(first));
        }
        let msg_num_delta = if first & FLAG_EXPLICIT_DELTA != 0 {
            match r.varint("reliable message number delta") {
                Ok(d) => d,
                Err(WireError::Truncated { .. }) => return Ok(None),
                Err(e) => return Err(e),
            }
        } else {
            1
        };
        if msg_num_delta > MAX_MSG_NUM_DELTA {
            return Err(WireError::ValueTooLarge {
                what: "reliable message number delta",
                value: msg_num_delta,
                max: MAX_MSG_NUM_DELTA,
            });
        }
        let low = u64::from(first & SMALL_SIZE_MASK);
        let size = if first & FLAG_LARGE_SIZE != 0 {
            let high = match r.varint("reliable message size") {
                Ok(h) => h,
                Err(WireError::Truncated { .. }) => return Ok(None),
                Err(e) => return Err(e),
            };
            // Compare before shifting so a huge value cannot overflow.
            if high > u64::from(max_size >> 5) + 1 {
                return Err(WireError::ValueTooLarge {
                    what: "reliable message size",
                    value: high.saturating_mul(32),
                    max: u64::from(max_size),
                });
            }
            (high << 5) | low
        } else {
            low
        };
        if size > u64::from(max_size) {
            return Err(WireError::ValueTooLarge {
                what: "reliable message size",
                value: size,
                max: u64::from(max_size),
            });
        }
        let header = ReliableMsgHeader {
            msg_num_delta,
            size: size as u32,
        };
        Ok(Some((header, input.len() - r.rest().len())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_written_vectors() {
        // Next message, 5 bytes: a single byte 0b000_00101.
        assert_eq!(
            ReliableMsgHeader::decode(&[0x05], 1000),
            Ok(Some((
                ReliableMsgHeader {
                    msg_num_delta: 1,
                    size: 5
                },
                1
            )))
        );
        // Delta 3 and size 100 = 3 * 32 + 4: 0x40 | 0x20 | 4, varint 3, varint 3.
        let hdr = ReliableMsgHeader {
            msg_num_delta: 3,
            size: 100,
        };
        let mut out = Vec::new();
        hdr.encode(&mut out).expect("encodes");
        assert_eq!(out, [0x64, 0x03, 0x03]);
        assert_eq!(ReliableMsgHeader::decode(&out, 1000), Ok(Some((hdr, 3))));
        // Every proper prefix is "not yet complete".
        assert_eq!(ReliableMsgHeader::decode(&out[..2], 1000), Ok(None));
        assert_eq!(ReliableMsgHeader::decode(&[], 1000), Ok(None));
        // High bit reserved.
        assert_eq!(
            ReliableMsgHeader::decode(&[0x85], 1000),
            Err(WireError::BadReliableHeader(0x85))
        );
        // Size over the caller's limit.
        assert!(ReliableMsgHeader::decode(&out, 99).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(delta in 1u64..=MAX_MSG_NUM_DELTA, size in any::<u32>(), tail in proptest::collection::vec(any::<u8>(), 0..4)) {
            let hdr = ReliableMsgHeader { msg_num_delta: delta, size };
            let mut out = Vec::new();
            hdr.encode(&mut out).expect("encodes");
            prop_assert_eq!(out.len(), hdr.encoded_len());
            let len = out.len();
            for cut in 0..len {
                prop_assert_eq!(ReliableMsgHeader::decode(&out[..cut], u32::MAX), Ok(None));
            }
            out.extend_from_slice(&tail);
            prop_assert_eq!(ReliableMsgHeader::decode(&out, u32::MAX), Ok(Some((hdr, len))));
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..24), max in any::<u32>()) {
            if let Ok(Some((hdr, len))) = ReliableMsgHeader::decode(&bytes, max) {
                prop_assert!(len <= bytes.len() && len <= MAX_HEADER_LEN);
                prop_assert!(hdr.size <= max);
            }
        }
    }
}
