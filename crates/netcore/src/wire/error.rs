//! The one error type of the wire codec.
//!
//! Every decoder returns it instead of panicking on a peer's bytes; encoders return it when
//! asked to write something the format cannot express or that does not fit. It is `Copy` and
//! carries no heap data, so a dropped packet costs nothing more than counting it.

/// Why bytes could not be decoded, or a value could not be encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended in the middle of `what`.
    #[error("truncated: input ended inside {what}")]
    Truncated {
        /// The field being read when the input ran out.
        what: &'static str,
    },
    /// A datagram shorter than any valid packet.
    #[error("datagram of {len} bytes is too short")]
    DatagramTooShort {
        /// Its length.
        len: usize,
    },
    /// The first byte of a datagram is neither a data packet nor a known control message.
    #[error("unknown datagram lead byte {0:#04x}")]
    UnknownLeadByte(u8),
    /// A varint longer than 10 bytes or wider than 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// A frame type byte the format reserves.
    #[error("reserved SNP frame type {0:#04x}")]
    ReservedFrameType(u8),
    /// A segment size code (101 or 110) the format reserves.
    #[error("reserved segment size bits in frame type {0:#04x}")]
    ReservedSizeBits(u8),
    /// The reserved stream position width (`mm = 11`) on a first reliable segment.
    #[error("reserved reliable stream position width")]
    ReservedStreamPosWidth,
    /// A value larger than the bound the decoder accepts for `what`.
    #[error("{what} value {value} exceeds the limit {max}")]
    ValueTooLarge {
        /// Which field.
        what: &'static str,
        /// The value found (saturated to `u64`).
        value: u64,
        /// The largest accepted.
        max: u64,
    },
    /// A reliable stream message header whose first byte has the reserved high bit set.
    #[error("reliable message header byte {0:#04x} has the reserved bit set")]
    BadReliableHeader(u8),
    /// A padded control message shorter than the required minimum.
    #[error("padded control message of {len} bytes is shorter than the required minimum")]
    NotPadded {
        /// The datagram length.
        len: usize,
    },
    /// The length prefix of a padded control message is zero or runs past the datagram.
    #[error("padded control message body length {body} does not fit a {len}-byte datagram")]
    BadPaddedLength {
        /// The body length the prefix claims.
        body: usize,
        /// The datagram length.
        len: usize,
    },
    /// A protobuf body that does not parse.
    #[error("protobuf body does not parse")]
    Protobuf,
    /// Arithmetic on wire numbers left the representable range (hostile deltas or offsets).
    #[error("wire number arithmetic overflowed in {what}")]
    NumberOverflow {
        /// Which field.
        what: &'static str,
    },
    /// Encoding would exceed the space the caller allowed.
    #[error("no room: need {needed} bytes, {available} available")]
    NoRoom {
        /// Bytes the item needs.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// An encoder was handed a value the format cannot carry.
    #[error("cannot encode {what}")]
    Unencodable {
        /// What was refused, and why.
        what: &'static str,
    },
}
