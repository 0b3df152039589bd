//! Writing the frames of one packet.
//!
//! [`FrameEncoder`] appends frames to a caller's buffer up to a byte limit, applying the same
//! per-packet context rules the decoder undoes: lane selects are inserted when a segment's lane
//! differs from the current one, message numbers and stream positions are written relative to
//! the previous segment when possible, and [`FrameEncoder::finish`] drops the size byte of the
//! last segment. Every `*_len` method reports exactly what the matching write would add, so a
//! packet builder can fill a packet to the byte. A write that does not fit changes nothing.

use super::ack::ack_frame_len;
use super::{AckBlock, StopWaiting, MAX_ACK_BLOCKS, MAX_EXPLICIT_SEGMENT_LEN, MAX_LANE};
use crate::wire::expand::low_bits;
use crate::wire::varint;
use crate::wire::WireError;

/// Choices the format leaves to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncoderConfig {
    /// Width of a lane context's first unreliable message number: 16 or 32.
    pub msg_num_bits: u8,
    /// Width of a lane context's first reliable stream position: 24, 32 or 48. Keep 48 when
    /// the peer may be the reference implementation, which misreads narrower positions of
    /// retransmitted bytes near `2^bits` boundaries (see `docs/PROTOCOL.md`, section 6).
    pub stream_pos_bits: u8,
    /// Width of the ack frame's latest packet number: 16, or 32 for peers of protocol 13+.
    pub ack_pkt_num_bits: u8,
}

impl Default for EncoderConfig {
    /// The reference sender's choices: 32-bit message numbers, 48-bit stream positions and
    /// 16-bit ack packet numbers (understood by every protocol version).
    fn default() -> Self {
        EncoderConfig {
            msg_num_bits: 32,
            stream_pos_bits: 48,
            ack_pkt_num_bits: 16,
        }
    }
}

/// Longest segment header plus lane select we ever build (lane select with a 5-byte varint,
/// type byte, 10-byte varint delta, 5-byte varint offset, size byte).
const MAX_PLANNED_HEADER: usize = 32;

/// A segment header built before committing it.
struct Planned {
    bytes: [u8; MAX_PLANNED_HEADER],
    len: usize,
    /// Index in `bytes` of the frame type byte (after any lane select).
    type_at: usize,
    lane: u32,
    unreliable: Option<u64>,
    reliable_end: Option<u64>,
}

impl Planned {
    fn new(lane: u32) -> Self {
        Planned {
            bytes: [0; MAX_PLANNED_HEADER],
            len: 0,
            type_at: 0,
            lane,
            unreliable: None,
            reliable_end: None,
        }
    }

    fn push(&mut self, byte: u8) {
        // The capacity exceeds the largest header we build (about 20 bytes); were that ever
        // wrong, bytes would be dropped rather than panicking, and the round trips would fail.
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = byte;
            self.len += 1;
        }
    }

    fn push_le(&mut self, value: u64, n: usize) {
        for byte in value.to_le_bytes().into_iter().take(n) {
            self.push(byte);
        }
    }

    fn push_varint(&mut self, value: u64) {
        let mut v = value;
        while v >= 0x80 {
            self.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.push(v as u8);
    }

    fn select_lane(&mut self, lane: u32) {
        match lane {
            1..=7 => self.push(0x87 + lane as u8),
            _ => {
                self.push(0x8f);
                self.push_varint(u64::from(lane));
            }
        }
        self.lane = lane;
        self.unreliable = None;
        self.reliable_end = None;
    }

    fn header(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// Where the most recent segment sits, so [`FrameEncoder::finish`] can drop its size byte.
#[derive(Clone, Copy, Debug)]
struct LastSegment {
    type_pos: usize,
    size_pos: usize,
}

/// Appends the frames of one packet to a buffer, within a byte limit.
#[derive(Debug)]
pub struct FrameEncoder<'b> {
    out: &'b mut Vec<u8>,
    start: usize,
    limit: usize,
    config: EncoderConfig,
    lane: u32,
    unreliable: Option<u64>,
    reliable_end: Option<u64>,
    last_segment: Option<LastSegment>,
    sealed: bool,
}

impl<'b> FrameEncoder<'b> {
    /// Encodes at the end of `out`, writing at most `limit` bytes (typically
    /// `datagram::MAX_PLAINTEXT_SEND`), with the reference sender's choices.
    pub fn new(out: &'b mut Vec<u8>, limit: usize) -> Self {
        Self::with_config(out, limit, EncoderConfig::default())
    }

    /// Like [`FrameEncoder::new`] with explicit choices. Widths other than the allowed
    /// values are replaced by the default ones.
    pub fn with_config(out: &'b mut Vec<u8>, limit: usize, config: EncoderConfig) -> Self {
        let default = EncoderConfig::default();
        let config = EncoderConfig {
            msg_num_bits: if matches!(config.msg_num_bits, 16 | 32) {
                config.msg_num_bits
            } else {
                default.msg_num_bits
            },
            stream_pos_bits: if matches!(config.stream_pos_bits, 24 | 32 | 48) {
                config.stream_pos_bits
            } else {
                default.stream_pos_bits
            },
            ack_pkt_num_bits: if matches!(config.ack_pkt_num_bits, 16 | 32) {
                config.ack_pkt_num_bits
            } else {
                default.ack_pkt_num_bits
            },
        };
        let start = out.len();
        FrameEncoder {
            out,
            start,
            limit,
            config,
            lane: 0,
            unreliable: None,
            reliable_end: None,
            last_segment: None,
            sealed: false,
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.out.len() - self.start
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes still allowed. After a segment written in "to the end" form nothing more fits.
    pub fn remaining(&self) -> usize {
        if self.sealed {
            0
        } else {
            self.limit.saturating_sub(self.len())
        }
    }

    fn check_room(&self, needed: usize) -> Result<(), WireError> {
        let available = self.remaining();
        if needed > available {
            Err(WireError::NoRoom { needed, available })
        } else {
            Ok(())
        }
    }

    /// Bytes a stop-waiting frame with this offset takes.
    pub fn stop_waiting_len(offset: u64) -> usize {
        1 + stop_waiting_width(offset)
    }

    /// Writes a stop-waiting frame.
    pub fn stop_waiting(&mut self, frame: StopWaiting) -> Result<(), WireError> {
        let width = stop_waiting_width(frame.offset);
        self.check_room(1 + width)?;
        let kind = match width {
            1 => 0x80,
            2 => 0x81,
            3 => 0x82,
            _ => 0x83,
        };
        self.out.push(kind);
        varint::write_uint_le(self.out, frame.offset, width);
        self.last_segment = None;
        Ok(())
    }

    /// Bytes an ack frame with these blocks takes.
    pub fn ack_len(&self, blocks: &[AckBlock]) -> usize {
        ack_frame_len(self.config.ack_pkt_num_bits, blocks)
    }

    /// Writes an ack frame: `latest` is the newest packet acknowledged (its low 16 or 32 bits
    /// are sent), `delay` the encoded delay (see `frames::encode_ack_delay`), `blocks` newest
    /// first.
    pub fn ack(&mut self, latest: u64, delay: u16, blocks: &[AckBlock]) -> Result<(), WireError> {
        if blocks.len() > MAX_ACK_BLOCKS {
            return Err(WireError::Unencodable {
                what: "more than 255 ack blocks",
            });
        }
        self.check_room(self.ack_len(blocks))?;
        let bits = self.config.ack_pkt_num_bits;
        let wide_flag = if bits == 16 { 0x08 } else { 0 };
        let mark = self.out.len();
        let count = blocks.len();
        self.out
            .push(0x90 | wide_flag | if count > 6 { 7 } else { count as u8 });
        varint::write_uint_le(
            self.out,
            low_bits(latest, u32::from(bits)),
            usize::from(bits / 8),
        );
        self.out.extend_from_slice(&delay.to_le_bytes());
        if count > 6 {
            self.out.push(count as u8);
        }
        for block in blocks {
            if let Err(e) = block.encode(self.out) {
                self.out.truncate(mark);
                return Err(e);
            }
        }
        self.last_segment = None;
        Ok(())
    }

    /// Bytes of framing (lane select, type byte, number fields and the size byte) an
    /// unreliable segment with these parameters takes; add the data length for the total.
    pub fn unreliable_overhead(&self, lane: u32, msg_num: u64, offset: u32) -> usize {
        self.plan_unreliable(lane, msg_num, offset).len + 1
    }

    /// Writes a segment of unreliable message `msg_num` (numbers start at 1) at byte `offset`
    /// within the message; `last` marks the segment that ends the message.
    ///
    /// If the segment is exactly one byte too large for the space left, it is written without
    /// a size field as the packet's final frame; nothing can be written after it.
    pub fn unreliable(
        &mut self,
        lane: u32,
        msg_num: u64,
        offset: u32,
        last: bool,
        data: &[u8],
    ) -> Result<(), WireError> {
        if lane > MAX_LANE {
            return Err(WireError::Unencodable {
                what: "lane above MAX_LANE",
            });
        }
        let mut plan = self.plan_unreliable(lane, msg_num, offset);
        if last {
            if let Some(t) = plan.bytes.get_mut(plan.type_at) {
                *t |= 0x20;
            }
        }
        self.commit_segment(plan, data)
    }

    /// Bytes of framing a reliable segment starting at `stream_pos` takes; add the data length
    /// for the total.
    pub fn reliable_overhead(&self, lane: u32, stream_pos: u64) -> usize {
        self.plan_reliable(lane, stream_pos).len + 1
    }

    /// Writes a segment of the lane's reliable stream starting at `stream_pos` (positions
    /// start at 1). The same "one byte too large" rule as for unreliable segments applies.
    pub fn reliable(&mut self, lane: u32, stream_pos: u64, data: &[u8]) -> Result<(), WireError> {
        if lane > MAX_LANE {
            return Err(WireError::Unencodable {
                what: "lane above MAX_LANE",
            });
        }
        if stream_pos == 0 {
            return Err(WireError::Unencodable {
                what: "reliable stream position 0",
            });
        }
        if data.is_empty() {
            return Err(WireError::Unencodable {
                what: "empty reliable segment",
            });
        }
        let end = stream_pos
            .checked_add(data.len() as u64)
            .ok_or(WireError::Unencodable {
                what: "reliable stream position overflow",
            })?;
        let mut plan = self.plan_reliable(lane, stream_pos);
        plan.reliable_end = Some(end);
        // Mirror the decoder: a reliable segment bumps the unreliable message number. It
        // cannot pass u64::MAX (`plan_reliable` restarts the context there); saturating keeps
        // the encoder from wrapping to 0 if it ever did (it used to, and then wrote a delta the
        // decoder reads past u64).
        plan.unreliable = plan.unreliable.map(|n| n.saturating_add(1));
        self.commit_segment(plan, data)
    }

    /// Ends the packet, dropping the size byte of a final segment. Returns the bytes written.
    pub fn finish(self) -> usize {
        if let (false, Some(last)) = (self.sealed, self.last_segment) {
            if let Some(kind) = self.out.get_mut(last.type_pos) {
                *kind |= 7;
            }
            if last.size_pos < self.out.len() {
                self.out.remove(last.size_pos);
            }
        }
        self.out.len() - self.start
    }

    fn plan_unreliable(&self, lane: u32, msg_num: u64, offset: u32) -> Planned {
        let mut p = Planned::new(self.lane);
        p.unreliable = self.unreliable;
        p.reliable_end = self.reliable_end;
        // Reselecting the current lane is the only way to restart the number context when
        // the new number is below the previous one. A context at u64::MAX may stand for a
        // number past it (a reliable segment bumped it, see `reliable`): restart it too.
        let backwards = matches!(self.unreliable, Some(prev) if msg_num < prev || prev == u64::MAX);
        if lane != self.lane || backwards {
            p.select_lane(lane);
        }
        p.type_at = p.len;
        p.push(0x00);
        let mut kind = 0u8;
        match p.unreliable {
            None => {
                let bits = self.config.msg_num_bits;
                if bits == 32 {
                    kind |= 0x10;
                }
                p.push_le(low_bits(msg_num, u32::from(bits)), usize::from(bits / 8));
            }
            Some(prev) => {
                // Not below `prev`: a backwards number re-selected the lane above.
                let delta = msg_num.saturating_sub(prev);
                if delta != 1 {
                    kind |= 0x10;
                    p.push_varint(delta);
                }
            }
        }
        if offset > 0 {
            kind |= 0x08;
            p.push_varint(u64::from(offset));
        }
        if let Some(t) = p.bytes.get_mut(p.type_at) {
            *t = kind;
        }
        p.unreliable = Some(msg_num);
        p
    }

    fn plan_reliable(&self, lane: u32, stream_pos: u64) -> Planned {
        let mut p = Planned::new(self.lane);
        p.unreliable = self.unreliable;
        p.reliable_end = self.reliable_end;
        let gap = self
            .reliable_end
            .and_then(|end| stream_pos.checked_sub(end));
        let unreachable =
            self.reliable_end.is_some() && !matches!(gap, Some(g) if g <= u64::from(u32::MAX));
        // The segment bumps the lane's unreliable message number (see `reliable`); at u64::MAX
        // the decoder's bump would overflow, so restart the context instead.
        let no_bump = self.unreliable == Some(u64::MAX);
        if lane != self.lane || unreachable || no_bump {
            p.select_lane(lane);
        }
        p.type_at = p.len;
        match p.reliable_end.and_then(|end| stream_pos.checked_sub(end)) {
            None => {
                let bits = self.config.stream_pos_bits;
                let width_code = match bits {
                    24 => 0,
                    32 => 1,
                    _ => 2,
                };
                p.push(0x40 | (width_code << 3));
                p.push_le(low_bits(stream_pos, u32::from(bits)), usize::from(bits / 8));
            }
            Some(0) => p.push(0x40),
            Some(g) if g < 0x100 => {
                p.push(0x40 | (1 << 3));
                p.push_le(g, 1);
            }
            Some(g) if g < 0x1_0000 => {
                p.push(0x40 | (2 << 3));
                p.push_le(g, 2);
            }
            Some(g) => {
                p.push(0x40 | (3 << 3));
                p.push_le(g, 4);
            }
        }
        p
    }

    /// Writes a planned header, the size byte (or the "to the end" form) and the data.
    fn commit_segment(&mut self, mut plan: Planned, data: &[u8]) -> Result<(), WireError> {
        let available = self.remaining();
        let with_size = plan.len + 1 + data.len();
        let to_end = with_size - 1 == available;
        if data.len() > MAX_EXPLICIT_SEGMENT_LEN && !to_end {
            return Err(WireError::Unencodable {
                what: "segment larger than 1279 bytes",
            });
        }
        if !to_end {
            self.check_room(with_size)?;
        }
        let type_pos = self.out.len() + plan.type_at;
        if to_end {
            if let Some(t) = plan.bytes.get_mut(plan.type_at) {
                *t |= 7;
            }
            self.out.extend_from_slice(plan.header());
            self.sealed = true;
            self.last_segment = None;
        } else {
            if let Some(t) = plan.bytes.get_mut(plan.type_at) {
                *t |= (data.len() >> 8) as u8;
            }
            self.out.extend_from_slice(plan.header());
            let size_pos = self.out.len();
            self.out.push(data.len() as u8);
            self.last_segment = Some(LastSegment { type_pos, size_pos });
        }
        self.out.extend_from_slice(data);
        self.lane = plan.lane;
        self.unreliable = plan.unreliable;
        self.reliable_end = plan.reliable_end;
        Ok(())
    }
}

fn stop_waiting_width(offset: u64) -> usize {
    if offset < 0x100 {
        1
    } else if offset < 0x1_0000 {
        2
    } else if offset < 0x100_0000 {
        3
    } else {
        8
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frames::{Frame, FrameDecoder, ReliableSegment, UnreliableSegment};
    use proptest::prelude::*;

    #[test]
    fn hand_written_packet() {
        // Stop waiting offset 9, an ack of packet 0x1234 with one block (2 acked, 1 missing),
        // then two unreliable messages 5 and 6 in lane 0; the second loses its size byte.
        let mut out = Vec::new();
        let mut enc = FrameEncoder::new(&mut out, 1232);
        enc.stop_waiting(StopWaiting { offset: 9 }).expect("fits");
        enc.ack(0x1234, 2, &[AckBlock { acks: 2, nacks: 1 }])
            .expect("fits");
        enc.unreliable(0, 5, 0, true, b"hi").expect("fits");
        enc.unreliable(0, 6, 0, true, b"yo").expect("fits");
        assert_eq!(enc.finish(), out.len());
        let want = [
            0x80, 9, // stop waiting, 8-bit offset
            0x99, 0x34, 0x12, 2, 0, 0x21, // ack: 16-bit, 1 block; delay 2; block 0010_0001
            0x30, 5, 0, 0, 0, 2, b'h', b'i', // last, 32-bit msg num 5, size 2
            0x27, b'y', b'o', // last, msg num +1, to the end of the packet
        ];
        assert_eq!(out, want);
    }

    #[test]
    fn lane_select_and_backwards_numbers() {
        let mut out = Vec::new();
        let mut enc = FrameEncoder::new(&mut out, 1232);
        enc.unreliable(3, 10, 0, true, b"a").expect("fits");
        enc.unreliable(3, 4, 0, true, b"b").expect("fits");
        enc.unreliable(0, 4, 0, true, b"c").expect("fits");
        enc.finish();
        // 0x8a selects lane 3; the backwards number re-selects it; lane 0 needs 0x8f 0x00.
        assert_eq!(out[0], 0x8a);
        let got: Vec<_> = FrameDecoder::new(&out)
            .collect::<Result<_, _>>()
            .expect("valid");
        let lanes: Vec<_> = got
            .iter()
            .filter_map(|f| match f {
                Frame::SelectLane(l) => Some(*l),
                _ => None,
            })
            .collect();
        assert_eq!(lanes, [3, 3, 0]);
        let nums: Vec<_> = got
            .iter()
            .filter_map(|f| match f {
                Frame::Unreliable(u) => u.msg_num.resolve(5),
                _ => None,
            })
            .collect();
        assert_eq!(nums, [10, 4, 4]);
    }

    #[test]
    fn fills_to_the_byte() {
        let mut out = Vec::new();
        let mut enc = FrameEncoder::new(&mut out, 100);
        let overhead = enc.reliable_overhead(0, 1);
        // One byte more than fits with a size field: goes out in "to the end" form.
        let data = vec![7u8; 100 - overhead + 1];
        enc.reliable(0, 1, &data).expect("fits exactly");
        assert_eq!(enc.remaining(), 0);
        assert!(enc.unreliable(0, 1, 0, true, b"").is_err());
        assert_eq!(enc.finish(), 100);
        let got: Vec<_> = FrameDecoder::new(&out)
            .collect::<Result<_, _>>()
            .expect("valid");
        assert_eq!(got.len(), 1);
        // Too large by two bytes is refused and writes nothing.
        let mut out = Vec::new();
        let mut enc = FrameEncoder::new(&mut out, 100);
        let data = vec![7u8; 100 - overhead + 2];
        assert!(matches!(
            enc.reliable(0, 1, &data),
            Err(WireError::NoRoom { .. })
        ));
        assert_eq!(enc.finish(), 0);
    }

    /// One segment the property test writes.
    #[derive(Clone, Debug)]
    enum Seg {
        Unreliable {
            lane: u32,
            msg_num: u64,
            offset: u32,
            last: bool,
            data: Vec<u8>,
        },
        Reliable {
            lane: u32,
            pos: u64,
            data: Vec<u8>,
        },
        Stop(u64),
        Ack {
            latest: u64,
            delay: u16,
            blocks: Vec<AckBlock>,
        },
    }

    fn seg() -> impl Strategy<Value = Seg> {
        let data = |n| proptest::collection::vec(any::<u8>(), 0..n);
        prop_oneof![
            // Few lanes and nearby numbers, so relative encodings and context resets are common.
            (
                0u32..3,
                prop_oneof![1u64..40, 1u64..1 << 40],
                prop_oneof![Just(0u32), any::<u32>()],
                any::<bool>(),
                data(300)
            )
                .prop_map(|(lane, msg_num, offset, last, data)| Seg::Unreliable {
                    lane,
                    msg_num,
                    offset,
                    last,
                    data
                }),
            (
                0u32..3,
                prop_oneof![1u64..3000, 1u64..1 << 40],
                data(300).prop_filter("non-empty", |d| !d.is_empty())
            )
                .prop_map(|(lane, pos, data)| Seg::Reliable { lane, pos, data }),
            any::<u64>().prop_map(Seg::Stop),
            (
                any::<u64>(),
                any::<u16>(),
                proptest::collection::vec((0u64..2000, 0u64..2000), 0..12)
            )
                .prop_map(|(latest, delay, b)| Seg::Ack {
                    latest,
                    delay,
                    blocks: b
                        .into_iter()
                        .map(|(acks, nacks)| AckBlock { acks, nacks })
                        .collect(),
                }),
        ]
    }

    fn widths() -> impl Strategy<Value = EncoderConfig> {
        (
            prop_oneof![Just(16u8), Just(32)],
            prop_oneof![Just(24u8), Just(32), Just(48)],
            prop_oneof![Just(16u8), Just(32)],
        )
            .prop_map(|(m, p, a)| EncoderConfig {
                msg_num_bits: m,
                stream_pos_bits: p,
                ack_pkt_num_bits: a,
            })
    }

    /// Segments as one lane's sender makes them: increasing message numbers, reliable
    /// positions moving forward, mixed kinds, so relative encodings dominate.
    fn one_lane() -> impl Strategy<Value = Vec<Seg>> {
        proptest::collection::vec(
            (
                0u8..3,
                1u64..4,
                0u64..300,
                proptest::collection::vec(any::<u8>(), 1..200),
            ),
            0..12,
        )
        .prop_map(|steps| {
            let (mut msg, mut pos) = (1u64, 1u64);
            steps
                .into_iter()
                .map(|(kind, dmsg, dpos, data)| {
                    msg += dmsg;
                    pos += dpos;
                    let seg = match kind {
                        0 => Seg::Unreliable {
                            lane: 0,
                            msg_num: msg,
                            offset: 0,
                            last: true,
                            data,
                        },
                        1 => Seg::Reliable { lane: 0, pos, data },
                        _ => Seg::Unreliable {
                            lane: 0,
                            msg_num: msg,
                            offset: dpos as u32,
                            last: false,
                            data,
                        },
                    };
                    if let Seg::Reliable { data, .. } = &seg {
                        pos += data.len() as u64;
                    }
                    seg
                })
                .collect()
        })
    }

    /// Writes `segs`, checks the size predictions, then decodes and compares.
    fn check_round_trip(
        segs: &[Seg],
        limit: usize,
        config: EncoderConfig,
    ) -> Result<(), TestCaseError> {
        let mut out = vec![0xee; 3]; // something before the payload must be left alone
        let mut enc = FrameEncoder::with_config(&mut out, limit, config);
        let mut written = Vec::new();
        for s in segs {
            let before = enc.len();
            let predicted = match s {
                Seg::Unreliable {
                    lane,
                    msg_num,
                    offset,
                    data,
                    ..
                } => enc.unreliable_overhead(*lane, *msg_num, *offset) + data.len(),
                Seg::Reliable { lane, pos, data } => {
                    enc.reliable_overhead(*lane, *pos) + data.len()
                }
                Seg::Stop(o) => FrameEncoder::stop_waiting_len(*o),
                Seg::Ack { blocks, .. } => enc.ack_len(blocks),
            };
            let remaining = enc.remaining();
            let r = match s {
                Seg::Unreliable {
                    lane,
                    msg_num,
                    offset,
                    last,
                    data,
                } => enc.unreliable(*lane, *msg_num, *offset, *last, data),
                Seg::Reliable { lane, pos, data } => enc.reliable(*lane, *pos, data),
                Seg::Stop(o) => enc.stop_waiting(StopWaiting { offset: *o }),
                Seg::Ack {
                    latest,
                    delay,
                    blocks,
                } => enc.ack(*latest, *delay, blocks),
            };
            match r {
                Ok(()) => {
                    let used = enc.len() - before;
                    // Exact prediction, or one byte less for the "to the end" form.
                    prop_assert!(
                        used == predicted || (used + 1 == predicted && predicted == remaining + 1)
                    );
                    written.push(s.clone());
                }
                Err(_) => {
                    prop_assert_eq!(enc.len(), before);
                    let too_big = matches!(s, Seg::Unreliable { data, .. } | Seg::Reliable { data, .. } if data.len() > MAX_EXPLICIT_SEGMENT_LEN);
                    prop_assert!(predicted > remaining || too_big);
                }
            }
        }
        let len = enc.finish();
        prop_assert!(len <= limit);
        prop_assert_eq!(&out[..3], &[0xee; 3]);
        let frames: Vec<Frame<'_>> = FrameDecoder::new(&out[3..])
            .collect::<Result<_, _>>()
            .expect("decodes");
        let mut decoded = frames.iter().filter(|f| !matches!(f, Frame::SelectLane(_)));
        for s in &written {
            let f = decoded.next().expect("one frame per write");
            match (s, f) {
                (
                    Seg::Unreliable {
                        lane,
                        msg_num,
                        offset,
                        last,
                        data,
                    },
                    Frame::Unreliable(UnreliableSegment {
                        lane: l,
                        msg_num: m,
                        offset: o,
                        last: e,
                        data: d,
                    }),
                ) => {
                    // Resolve against the true value of the context's first absolute number.
                    let reference = msg_num - m.add;
                    prop_assert_eq!(
                        (lane, Some(*msg_num), offset, last, &data[..]),
                        (l, m.resolve(reference), o, e, *d)
                    );
                }
                (
                    Seg::Reliable { lane, pos, data },
                    Frame::Reliable(ReliableSegment {
                        lane: l,
                        stream_pos,
                        data: d,
                    }),
                ) => {
                    let reference = pos - stream_pos.add;
                    prop_assert_eq!(
                        (lane, Some(*pos), &data[..]),
                        (l, stream_pos.resolve(reference), *d)
                    );
                }
                (Seg::Stop(o), Frame::StopWaiting(sw)) => prop_assert_eq!(*o, sw.offset),
                (
                    Seg::Ack {
                        latest,
                        delay,
                        blocks,
                    },
                    Frame::Ack(a),
                ) => {
                    prop_assert_eq!(a.latest_pkt.resolve(*latest), Some(*latest));
                    prop_assert_eq!(a.delay, *delay);
                    prop_assert_eq!(&a.blocks().collect::<Vec<_>>(), blocks);
                }
                (s, f) => prop_assert!(false, "wrote {:?}, read {:?}", s, f),
            }
        }
        prop_assert!(decoded.next().is_none());
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip_mixed(segs in proptest::collection::vec(seg(), 0..12), limit in 0usize..1300, config in widths()) {
            check_round_trip(&segs, limit, config)?;
        }

        #[test]
        fn round_trip_one_lane(segs in one_lane(), limit in 0usize..1300, config in widths()) {
            check_round_trip(&segs, limit, config)?;
        }
    }
}
