//! SNP frames: the contents of a data packet once decrypted.
//!
//! A payload is a sequence of frames, each starting with a type byte:
//!
//! ```text
//! 00emosss  unreliable message segment     [msg_num] [offset] [size] data
//! 010mmsss  reliable stream segment        [stream_pos] [size] data
//! 100000ww  stop waiting                   pkt_num_offset (8/16/24/64 bits)
//! 1001wnnn  ack                            latest_pkt (32/16 bits) delay [count] blocks
//! 10001nnn  select lane                    [varint lane if nnn = 111]
//! others    reserved (a decode error)
//! ```
//!
//! Numbers are compressed against the previous frame of the same kind in the same packet and
//! lane ("context"), and the last segment of a packet may omit its size. `docs/PROTOCOL.md`
//! describes every field; [`decode::FrameDecoder`] reads frames without allocating and
//! [`encode::FrameEncoder`] writes them with the same context rules.

pub mod ack;
pub mod decode;
pub mod encode;

pub use ack::{AckBlock, AckBlocks, AckRange, AckRanges};
pub use decode::FrameDecoder;
pub use encode::{EncoderConfig, FrameEncoder};

use super::expand::TruncatedNum;

/// Largest segment size the explicit size field can state (`100` in the three size bits plus a
/// full byte); only a packet's last segment, with its size omitted, may be longer.
pub const MAX_EXPLICIT_SEGMENT_LEN: usize = 0x4ff;
/// Largest lane index accepted (the reference's limit on lanes per connection).
pub const MAX_LANE: u32 = 255;
/// Largest unreliable segment offset accepted (the reference reads it as 32 bits).
pub const MAX_UNRELIABLE_OFFSET: u64 = u32::MAX as u64;
/// Largest number of blocks in one ack frame (the explicit count is one byte).
pub const MAX_ACK_BLOCKS: usize = 255;
/// Largest ack or nack run length in one block; the reference refuses varint upper parts
/// above 100000, so runs stop at `100000 * 8 + 7`.
pub const MAX_ACK_RUN: u64 = (100_000 << 3) | 7;
/// Ack delay unit: one step of the 16-bit delay field is `1 << ACK_DELAY_SHIFT` microseconds.
pub const ACK_DELAY_SHIFT: u32 = 5;
/// Ack delay value meaning "no timing information".
pub const ACK_DELAY_NONE: u16 = 0xffff;

/// A piece of an unreliable message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnreliableSegment<'a> {
    /// Lane the segment belongs to.
    pub lane: u32,
    /// Message number; resolve against the highest message number seen on the lane.
    pub msg_num: TruncatedNum,
    /// Byte offset of `data` within the message.
    pub offset: u32,
    /// Whether this segment ends the message.
    pub last: bool,
    /// The segment's bytes (may be empty for an empty message).
    pub data: &'a [u8],
}

/// A slice of a lane's reliable byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReliableSegment<'a> {
    /// Lane whose stream this is.
    pub lane: u32,
    /// Stream position of `data[0]` (positions start at 1); resolve against the next position
    /// the receiver expects on the lane.
    pub stream_pos: TruncatedNum,
    /// The stream bytes.
    pub data: &'a [u8],
}

/// "Stop acknowledging packets older than `this_pkt - offset - 1`."
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StopWaiting {
    /// Distance from the carrying packet's number, minus one.
    pub offset: u64,
}

impl StopWaiting {
    /// The frame a packet numbered `this_pkt` sends to say acks are wanted only from
    /// `first_wanted` on; `None` unless `first_wanted < this_pkt`.
    pub fn new(this_pkt: u64, first_wanted: u64) -> Option<Self> {
        let offset = this_pkt.checked_sub(first_wanted)?.checked_sub(1)?;
        Some(StopWaiting { offset })
    }

    /// The oldest packet number the sender of packet `this_pkt` still wants acks for, or
    /// `None` when the offset reaches past packet zero (the reference drops the packet then).
    pub fn first_wanted(&self, this_pkt: u64) -> Option<u64> {
        this_pkt.checked_sub(self.offset)?.checked_sub(1)
    }
}

/// Acknowledgement of the packets the other side sent us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AckFrame<'a> {
    /// Newest packet number acknowledged (16 or 32 low bits); resolve against the next packet
    /// number the receiver of this frame will send.
    pub latest_pkt: TruncatedNum,
    /// Time from receiving `latest_pkt` to sending this ack, in units of
    /// `1 << ACK_DELAY_SHIFT` µs; [`ACK_DELAY_NONE`] means unknown.
    pub delay: u16,
    /// Number of ack blocks in `blocks`.
    pub num_blocks: u8,
    /// The encoded blocks (validated); read them with [`AckFrame::blocks`].
    pub blocks: &'a [u8],
}

impl<'a> AckFrame<'a> {
    /// The blocks, newest first.
    pub fn blocks(&self) -> AckBlocks<'a> {
        AckBlocks::new(self.blocks, self.num_blocks)
    }

    /// The packet ranges the blocks describe, newest first, given `latest_pkt` resolved.
    pub fn ranges(&self, latest: u64) -> AckRanges<'a> {
        AckRanges::new(self.blocks(), latest)
    }

    /// The reported delay in microseconds, if present.
    pub fn delay_micros(&self) -> Option<u64> {
        (self.delay != ACK_DELAY_NONE).then(|| u64::from(self.delay) << ACK_DELAY_SHIFT)
    }
}

/// The 16-bit delay field for a delay of `micros` (saturating to "unknown" past ~2 s).
pub fn encode_ack_delay(micros: u64) -> u16 {
    let units = micros >> ACK_DELAY_SHIFT;
    if units >= u64::from(ACK_DELAY_NONE) {
        ACK_DELAY_NONE
    } else {
        units as u16
    }
}

/// One decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// `00emosss`.
    Unreliable(UnreliableSegment<'a>),
    /// `010mmsss`.
    Reliable(ReliableSegment<'a>),
    /// `100000ww`.
    StopWaiting(StopWaiting),
    /// `1001wnnn`.
    Ack(AckFrame<'a>),
    /// `10001nnn`: later segments belong to this lane, with fresh number contexts.
    SelectLane(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_waiting_arithmetic() {
        let sw = StopWaiting::new(100, 90).expect("90 < 100");
        assert_eq!(sw.offset, 9);
        assert_eq!(sw.first_wanted(100), Some(90));
        assert_eq!(StopWaiting::new(100, 100), None);
        assert_eq!(StopWaiting { offset: 100 }.first_wanted(100), None);
    }

    #[test]
    fn ack_delay_units() {
        assert_eq!(encode_ack_delay(64), 2);
        assert_eq!(encode_ack_delay(u64::MAX), ACK_DELAY_NONE);
        assert_eq!(encode_ack_delay(0xfffe << 5), 0xfffe);
        assert_eq!(encode_ack_delay(0xffff << 5), ACK_DELAY_NONE);
    }
}
