//! Ack blocks: the run-length encoding of which recent packets arrived.
//!
//! Working backwards from the frame's latest packet, each block is a run of received packets
//! followed (older) by a run of missing ones:
//!
//! ```text
//! aaaannnn [varint acks >> 3 if a's top bit] [varint nacks >> 3 if n's top bit]
//! aaaa = 0xxx: xxx packets acked          1xxx: xxx are the low 3 bits of the count
//! nnnn = 0xxx: xxx packets not received   1xxx: likewise
//! ```
//!
//! Packets older than the last block, down to the sender's stop-waiting point, are implicitly
//! acked. Reading is lazy and allocation-free; the frame decoder validates the bytes first.

use std::ops::Range;

use super::{MAX_ACK_BLOCKS, MAX_ACK_RUN};
use crate::wire::varint::{self, Reader};
use crate::wire::WireError;

const ACK_EXTENDED: u8 = 0x80;
const NACK_EXTENDED: u8 = 0x08;
/// Largest varint upper part of a run length the reference accepts.
const MAX_RUN_UPPER: u64 = MAX_ACK_RUN >> 3;

/// One block: `acks` received packets, then (older) `nacks` missing ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AckBlock {
    /// Consecutive packets received (newer part).
    pub acks: u64,
    /// Consecutive packets not received (older part).
    pub nacks: u64,
}

impl AckBlock {
    /// Bytes this block takes on the wire.
    pub fn encoded_len(&self) -> usize {
        let extra = |n: u64| {
            if n > 7 {
                varint::encoded_len(n >> 3)
            } else {
                0
            }
        };
        1 + extra(self.acks) + extra(self.nacks)
    }

    /// Appends the block. Refuses runs above [`MAX_ACK_RUN`], which receivers reject.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        if self.acks > MAX_ACK_RUN || self.nacks > MAX_ACK_RUN {
            return Err(WireError::Unencodable {
                what: "ack run longer than MAX_ACK_RUN",
            });
        }
        let mut head = 0u8;
        if self.acks > 7 {
            head |= ACK_EXTENDED | ((self.acks as u8 & 7) << 4);
        } else {
            head |= (self.acks as u8) << 4;
        }
        if self.nacks > 7 {
            head |= NACK_EXTENDED | (self.nacks as u8 & 7);
        } else {
            head |= self.nacks as u8;
        }
        out.push(head);
        if self.acks > 7 {
            varint::write(out, self.acks >> 3);
        }
        if self.nacks > 7 {
            varint::write(out, self.nacks >> 3);
        }
        Ok(())
    }

    /// Reads one block from `r`.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let head = r.u8("ack block")?;
        let mut acks = u64::from((head >> 4) & 7);
        if head & ACK_EXTENDED != 0 {
            acks |= run_upper(r, "ack run length")? << 3;
        }
        let mut nacks = u64::from(head & 7);
        if head & NACK_EXTENDED != 0 {
            nacks |= run_upper(r, "nack run length")? << 3;
        }
        Ok(AckBlock { acks, nacks })
    }
}

fn run_upper(r: &mut Reader<'_>, what: &'static str) -> Result<u64, WireError> {
    let upper = r.varint(what)?;
    if upper > MAX_RUN_UPPER {
        return Err(WireError::ValueTooLarge {
            what,
            value: upper,
            max: MAX_RUN_UPPER,
        });
    }
    Ok(upper)
}

/// Checks `count` blocks at the front of `r` and returns their bytes.
pub(crate) fn take_blocks<'a>(r: &mut Reader<'a>, count: u8) -> Result<&'a [u8], WireError> {
    let start = r.rest();
    for _ in 0..count {
        AckBlock::read(r)?;
    }
    Ok(start
        .get(..start.len() - r.rest().len())
        .unwrap_or_default())
}

/// Bytes an ack frame with these parameters takes: type byte, latest packet number,
/// delay, optional count byte, blocks.
pub fn ack_frame_len(pkt_num_bits: u8, blocks: &[AckBlock]) -> usize {
    let count = if blocks.len() > 6 { 1 } else { 0 };
    1 + usize::from(pkt_num_bits / 8)
        + 2
        + count
        + blocks.iter().map(AckBlock::encoded_len).sum::<usize>()
}

/// Lazy iterator over validated ack blocks, newest first.
#[derive(Clone, Debug)]
pub struct AckBlocks<'a> {
    reader: Reader<'a>,
    remaining: u8,
}

impl<'a> AckBlocks<'a> {
    pub(crate) fn new(bytes: &'a [u8], count: u8) -> Self {
        AckBlocks {
            reader: Reader::new(bytes),
            remaining: count,
        }
    }
}

impl Iterator for AckBlocks<'_> {
    type Item = AckBlock;

    fn next(&mut self) -> Option<AckBlock> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        match AckBlock::read(&mut self.reader) {
            Ok(block) => Some(block),
            // Cannot happen for decoder-produced frames (validated); stop rather than panic.
            Err(_) => {
                self.remaining = 0;
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(usize::from(self.remaining).min(MAX_ACK_BLOCKS)))
    }
}

/// The packet numbers one block covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckRange {
    /// Packets received.
    pub acked: Range<u64>,
    /// Packets reported missing (just below `acked`).
    pub nacked: Range<u64>,
}

/// Lazy iterator turning blocks into packet ranges, newest first.
#[derive(Clone, Debug)]
pub struct AckRanges<'a> {
    blocks: AckBlocks<'a>,
    end: u64,
    failed: bool,
}

impl<'a> AckRanges<'a> {
    pub(crate) fn new(blocks: AckBlocks<'a>, latest: u64) -> Self {
        AckRanges {
            blocks,
            end: latest.saturating_add(1),
            failed: false,
        }
    }

    /// Where the implicitly acked region ends (exclusive) once every block was read: packets
    /// from the sender's stop-waiting point up to here count as received.
    pub fn implicit_end(&self) -> u64 {
        self.end
    }
}

impl Iterator for AckRanges<'_> {
    type Item = Result<AckRange, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let block = self.blocks.next()?;
        let ack_begin = self.end.checked_sub(block.acks);
        let nack_begin = ack_begin.and_then(|b| b.checked_sub(block.nacks));
        match (ack_begin, nack_begin) {
            (Some(ack_begin), Some(nack_begin)) => {
                let range = AckRange {
                    acked: ack_begin..self.end,
                    nacked: nack_begin..ack_begin,
                };
                self.end = nack_begin;
                Some(Ok(range))
            }
            _ => {
                self.failed = true;
                Some(Err(WireError::NumberOverflow {
                    what: "ack range below packet zero",
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_written_blocks() {
        // 0x32 = 0011_0010: 3 acked, 2 missing, no extensions.
        // 0x98 = 1001_1000: both runs extended, low bits 1 (acks) and 0 (nacks); the upper
        // parts follow in that order, 2 and 1: 1 + 2*8 = 17 acked, 0 + 1*8 = 8 missing.
        let bytes = [0x32, 0x98, 0x02, 0x01];
        let blocks: Vec<_> = AckBlocks::new(&bytes, 2).collect();
        assert_eq!(
            blocks,
            [
                AckBlock { acks: 3, nacks: 2 },
                AckBlock { acks: 17, nacks: 8 }
            ]
        );
        let mut ranges = AckRanges::new(AckBlocks::new(&bytes, 2), 100);
        assert_eq!(
            ranges.next(),
            Some(Ok(AckRange {
                acked: 98..101,
                nacked: 96..98
            }))
        );
        assert_eq!(
            ranges.next(),
            Some(Ok(AckRange {
                acked: 79..96,
                nacked: 71..79
            }))
        );
        assert_eq!(ranges.next(), None);
        assert_eq!(ranges.implicit_end(), 71);
        let mut out = Vec::new();
        for b in &blocks {
            b.encode(&mut out).expect("encodes");
        }
        assert_eq!(out, bytes);
    }

    #[test]
    fn ranges_refuse_underflow() {
        let bytes = [0x70];
        let mut ranges = AckRanges::new(AckBlocks::new(&bytes, 1), 3);
        assert!(matches!(ranges.next(), Some(Err(_))));
        assert_eq!(ranges.next(), None);
    }

    #[test]
    fn refuses_huge_runs() {
        // Upper part 100001 is one above the reference's limit.
        let mut bytes = vec![0x80];
        varint::write(&mut bytes, MAX_RUN_UPPER + 1);
        assert!(take_blocks(&mut Reader::new(&bytes), 1).is_err());
        let mut out = Vec::new();
        assert!(AckBlock {
            acks: MAX_ACK_RUN + 1,
            nacks: 0
        }
        .encode(&mut out)
        .is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(blocks in proptest::collection::vec((0..=MAX_ACK_RUN, 0..=MAX_ACK_RUN), 0..20)) {
            let blocks: Vec<AckBlock> = blocks.into_iter().map(|(acks, nacks)| AckBlock { acks, nacks }).collect();
            let mut out = Vec::new();
            for b in &blocks {
                b.encode(&mut out).expect("encodes");
            }
            prop_assert_eq!(out.len(), blocks.iter().map(AckBlock::encoded_len).sum::<usize>());
            let mut r = Reader::new(&out);
            let taken = take_blocks(&mut r, blocks.len() as u8).expect("valid");
            prop_assert_eq!(taken.len(), out.len());
            prop_assert_eq!(AckBlocks::new(taken, blocks.len() as u8).collect::<Vec<_>>(), blocks);
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40), count in any::<u8>()) {
            let _ = AckBlocks::new(&bytes, count).count();
            let _ = AckRanges::new(AckBlocks::new(&bytes, count), 1000).count();
            let _ = take_blocks(&mut Reader::new(&bytes), count);
        }
    }
}
