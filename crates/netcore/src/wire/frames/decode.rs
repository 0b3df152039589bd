//! Reading the frames of one decrypted packet.
//!
//! [`FrameDecoder`] is an iterator over a borrowed payload. It keeps the per-packet context
//! the format compresses against (current lane, message number of the previous unreliable
//! segment, end of the previous reliable segment) and reports numbers as [`TruncatedNum`]s,
//! since widening them needs receiver state it does not have. It never allocates and stops
//! after the first error: a malformed frame makes the rest of the packet unreadable.

use super::ack::take_blocks;
use super::{
    AckFrame, Frame, ReliableSegment, StopWaiting, UnreliableSegment, MAX_LANE,
    MAX_UNRELIABLE_OFFSET,
};
use crate::wire::expand::TruncatedNum;
use crate::wire::varint::Reader;
use crate::wire::WireError;

/// Iterator over the frames of one packet payload.
#[derive(Clone, Debug)]
pub struct FrameDecoder<'a> {
    reader: Reader<'a>,
    lane: u32,
    /// Message number of the previous unreliable segment in this lane context.
    unreliable: Option<TruncatedNum>,
    /// Stream position just past the previous reliable segment in this lane context.
    reliable_end: Option<TruncatedNum>,
    failed: bool,
}

impl<'a> FrameDecoder<'a> {
    /// Decodes `payload`, starting in lane 0.
    pub fn new(payload: &'a [u8]) -> Self {
        FrameDecoder {
            reader: Reader::new(payload),
            lane: 0,
            unreliable: None,
            reliable_end: None,
            failed: false,
        }
    }

    /// Lane the next segment would belong to.
    pub fn lane(&self) -> u32 {
        self.lane
    }

    fn frame(&mut self) -> Result<Frame<'a>, WireError> {
        let kind = self.reader.u8("frame type")?;
        match kind {
            0x00..=0x3f => self.unreliable(kind).map(Frame::Unreliable),
            0x40..=0x5f => self.reliable(kind).map(Frame::Reliable),
            0x80..=0x83 => self.stop_waiting(kind).map(Frame::StopWaiting),
            0x88..=0x8f => self.select_lane(kind).map(Frame::SelectLane),
            0x90..=0x9f => self.ack(kind).map(Frame::Ack),
            _ => Err(WireError::ReservedFrameType(kind)),
        }
    }

    fn unreliable(&mut self, kind: u8) -> Result<UnreliableSegment<'a>, WireError> {
        let wide_or_explicit = kind & 0x10 != 0;
        let msg_num = match self.unreliable {
            None if wide_or_explicit => {
                TruncatedNum::absolute(self.reader.uint_le(4, "unreliable message number")?, 32)
            }
            None => {
                TruncatedNum::absolute(self.reader.uint_le(2, "unreliable message number")?, 16)
            }
            Some(prev) if wide_or_explicit => {
                let delta = self.reader.varint("unreliable message number delta")?;
                prev.plus(delta, "unreliable message number")?
            }
            Some(prev) => prev.plus(1, "unreliable message number")?,
        };
        let offset = if kind & 0x08 != 0 {
            let offset = self.reader.varint("unreliable segment offset")?;
            if offset > MAX_UNRELIABLE_OFFSET {
                return Err(WireError::ValueTooLarge {
                    what: "unreliable segment offset",
                    value: offset,
                    max: MAX_UNRELIABLE_OFFSET,
                });
            }
            offset as u32
        } else {
            0
        };
        let data = self.segment_data(kind)?;
        self.unreliable = Some(msg_num);
        Ok(UnreliableSegment {
            lane: self.lane,
            msg_num,
            offset,
            last: kind & 0x20 != 0,
            data,
        })
    }

    fn reliable(&mut self, kind: u8) -> Result<ReliableSegment<'a>, WireError> {
        let width = (kind >> 3) & 3;
        let stream_pos = match self.reliable_end {
            None => {
                let bits: u8 = match width {
                    0 => 24,
                    1 => 32,
                    2 => 48,
                    _ => return Err(WireError::ReservedStreamPosWidth),
                };
                let low = self
                    .reader
                    .uint_le(usize::from(bits / 8), "reliable stream position")?;
                TruncatedNum::absolute(low, bits)
            }
            Some(end) => {
                let gap = match width {
                    0 => 0,
                    1 => self.reader.uint_le(1, "reliable stream gap")?,
                    2 => self.reader.uint_le(2, "reliable stream gap")?,
                    _ => self.reader.uint_le(4, "reliable stream gap")?,
                };
                end.plus(gap, "reliable stream position")?
            }
        };
        let data = self.segment_data(kind)?;
        self.reliable_end = Some(stream_pos.plus(data.len() as u64, "reliable stream position")?);
        // The format advances the unreliable message number past every reliable segment.
        if let Some(prev) = self.unreliable {
            self.unreliable = Some(prev.plus(1, "unreliable message number")?);
        }
        Ok(ReliableSegment {
            lane: self.lane,
            stream_pos,
            data,
        })
    }

    fn segment_data(&mut self, kind: u8) -> Result<&'a [u8], WireError> {
        match kind & 7 {
            high @ 0..=4 => {
                let low = self.reader.u8("segment size")?;
                let len = (usize::from(high) << 8) | usize::from(low);
                self.reader.take(len, "segment data")
            }
            7 => Ok(self.reader.take_rest()),
            _ => Err(WireError::ReservedSizeBits(kind)),
        }
    }

    fn stop_waiting(&mut self, kind: u8) -> Result<StopWaiting, WireError> {
        let width = match kind & 3 {
            0 => 1,
            1 => 2,
            2 => 3,
            _ => 8,
        };
        let offset = self.reader.uint_le(width, "stop waiting offset")?;
        Ok(StopWaiting { offset })
    }

    fn ack(&mut self, kind: u8) -> Result<AckFrame<'a>, WireError> {
        // w set: 16-bit packet number; clear: 32-bit (protocol 13 and later).
        let bits: u8 = if kind & 0x08 != 0 { 16 } else { 32 };
        let low = self
            .reader
            .uint_le(usize::from(bits / 8), "ack latest packet number")?;
        let delay = self.reader.uint_le(2, "ack delay")? as u16;
        let num_blocks = match kind & 7 {
            7 => self.reader.u8("ack block count")?,
            n => n,
        };
        let blocks = take_blocks(&mut self.reader, num_blocks)?;
        Ok(AckFrame {
            latest_pkt: TruncatedNum::absolute(low, bits),
            delay,
            num_blocks,
            blocks,
        })
    }

    fn select_lane(&mut self, kind: u8) -> Result<u32, WireError> {
        let lane = match kind & 7 {
            7 => self.reader.varint("lane")?,
            n => u64::from(n) + 1,
        };
        if lane > u64::from(MAX_LANE) {
            return Err(WireError::ValueTooLarge {
                what: "lane",
                value: lane,
                max: u64::from(MAX_LANE),
            });
        }
        self.lane = lane as u32;
        self.unreliable = None;
        self.reliable_end = None;
        Ok(self.lane)
    }
}

impl<'a> Iterator for FrameDecoder<'a> {
    type Item = Result<Frame<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.reader.is_empty() {
            return None;
        }
        let result = self.frame();
        if result.is_err() {
            self.failed = true;
        }
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frames::AckBlock;
    use proptest::prelude::*;

    fn frames(bytes: &[u8]) -> Vec<Result<Frame<'_>, WireError>> {
        FrameDecoder::new(bytes).collect()
    }

    #[test]
    fn spec_unreliable_then_relative() {
        // 0x31 = 00 1 1 0 001: last segment, 32-bit absolute message number, no offset, size
        // with high bits 001. Message number 0x0000_0100 LE, size low byte 0x02 -> 258 bytes.
        // Then 0x27 = 00 1 0 0 111: last, "previous + 1", no offset, data to the end.
        let mut bytes = vec![0x31, 0x00, 0x01, 0x00, 0x00, 0x02];
        bytes.extend(std::iter::repeat_n(0xaa, 258));
        bytes.extend_from_slice(&[0x27, 0xbb, 0xcc]);
        let got = frames(&bytes);
        assert_eq!(got.len(), 2);
        let Ok(Frame::Unreliable(a)) = got[0] else {
            panic!("{:?}", got[0])
        };
        assert_eq!(
            (a.msg_num.resolve(0x100), a.offset, a.last, a.data.len()),
            (Some(0x100), 0, true, 258)
        );
        let Ok(Frame::Unreliable(b)) = got[1] else {
            panic!("{:?}", got[1])
        };
        assert_eq!(
            (b.msg_num.resolve(0x100), b.data),
            (Some(0x101), &[0xbb, 0xcc][..])
        );
    }

    #[test]
    fn spec_reliable_with_offsets() {
        // 0x40 | 0x10 (mm=10, 48-bit) | 0: position 1 as 6 bytes, size byte 3, data.
        // Then 0x48 (mm=01: 8-bit gap) gap 2, size 1: position 1 + 3 + 2 = 6.
        let bytes = [0x50, 1, 0, 0, 0, 0, 0, 3, 7, 8, 9, 0x48, 2, 1, 10];
        let got = frames(&bytes);
        let Ok(Frame::Reliable(a)) = got[0] else {
            panic!("{:?}", got[0])
        };
        assert_eq!((a.stream_pos.resolve(1), a.data), (Some(1), &[7, 8, 9][..]));
        let Ok(Frame::Reliable(b)) = got[1] else {
            panic!("{:?}", got[1])
        };
        assert_eq!((b.stream_pos.resolve(1), b.data), (Some(6), &[10][..]));
    }

    #[test]
    fn spec_ack_stop_waiting_and_lane() {
        // Stop waiting 0x80 offset 4; ack 0x98 (16-bit, 0 blocks) latest 0x0102, delay 3;
        // select lane 0x8a -> lane 3; 32-bit ack 0x91 with one block 0x11.
        let bytes = [
            0x80, 4, 0x98, 0x02, 0x01, 3, 0, 0x8a, 0x91, 5, 0, 0, 0, 0xff, 0xff, 0x11,
        ];
        let got = frames(&bytes);
        assert_eq!(got[0], Ok(Frame::StopWaiting(StopWaiting { offset: 4 })));
        let Ok(Frame::Ack(ack)) = got[1] else {
            panic!("{:?}", got[1])
        };
        assert_eq!(
            (ack.latest_pkt.bits, ack.latest_pkt.low, ack.delay_micros()),
            (16, 0x0102, Some(96))
        );
        assert_eq!(ack.blocks().count(), 0);
        assert_eq!(got[2], Ok(Frame::SelectLane(3)));
        let Ok(Frame::Ack(ack)) = got[3] else {
            panic!("{:?}", got[3])
        };
        assert_eq!((ack.latest_pkt.bits, ack.delay_micros()), (32, None));
        assert_eq!(
            ack.blocks().collect::<Vec<_>>(),
            [AckBlock { acks: 1, nacks: 1 }]
        );
    }

    #[test]
    fn reliable_segment_advances_unreliable_number() {
        // Unreliable msg 10 (16-bit), reliable at 48-bit pos 1, then unreliable "+1" = 12.
        let bytes = [0x20, 10, 0, 0, 0x50, 1, 0, 0, 0, 0, 0, 0, 0x27];
        let got = frames(&bytes);
        let Ok(Frame::Unreliable(last)) = got[2] else {
            panic!("{:?}", got[2])
        };
        assert_eq!(last.msg_num.resolve(10), Some(12));
        // A lane change forgets both contexts: the next numbers are absolute again.
        let bytes = [0x20, 10, 0, 0, 0x8f, 0, 0x20, 7, 0, 0];
        let got = frames(&bytes);
        assert_eq!(got[1], Ok(Frame::SelectLane(0)));
        let Ok(Frame::Unreliable(u)) = got[2] else {
            panic!("{:?}", got[2])
        };
        assert_eq!(u.msg_num.resolve(7), Some(7));
    }

    #[test]
    fn errors_stop_the_iterator() {
        for bytes in [
            &[0x60][..],
            &[0x84],
            &[0xa0],
            &[0xc0],
            &[0x05, 0, 0, 0],
            &[0x58, 0, 0, 0, 0, 0],
            &[0x8f, 0x80, 0x02],
        ] {
            let got = frames(bytes);
            assert_eq!(got.len(), 1, "{bytes:?}");
            assert!(got[0].is_err(), "{bytes:?}");
        }
        // Explicit size past the end of the packet.
        assert!(frames(&[0x00, 1, 0, 5, 1]).iter().any(Result::is_err));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
            let mut total = 0usize;
            for frame in FrameDecoder::new(&bytes) {
                total += 1;
                prop_assert!(total <= bytes.len());
                if let Ok(Frame::Ack(a)) = frame {
                    let _ = a.ranges(u64::from(u32::MAX)).count();
                }
            }
        }
    }
}
