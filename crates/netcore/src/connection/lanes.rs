//! Lane framing: messages onto lanes and lanes into a packet's frames on the way out;
//! segments back into messages on the way in.
//!
//! Each channel maps to a wire lane (`channel % 256`) and each lane is its own reliable
//! stream, so a loss on one channel does not hold back another. A reliable message travels as
//! a reliable message header (`wire::reliable_header`) and its bytes on the lane's stream; an
//! unreliable message as one or more unreliable segments. Every message carries the messages
//! layer's 5-byte prefix ([`channel_prefix`]).

use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;

use bytes::Bytes;

use super::channel_prefix;
use super::InMessage;
use crate::eresult::send_flags;
use crate::snp::recv_stream::RecvStream;
use crate::snp::send_stream::SendStream;
use crate::snp::unreliable_reassembly::{ReassemblyConfig, UnreliableReassembler};
use crate::time::Timestamp;
use crate::wire::frames::{FrameEncoder, ReliableSegment, UnreliableSegment};
use crate::wire::reliable_header::ReliableMsgHeader;

/// Lanes on the wire (the reference's limit); channels share them modulo this.
pub const LANES: u32 = 256;
/// Most gaps a lane's receive stream tolerates before refusing segments.
const MAX_RECV_GAPS: usize = 30;
/// Receive window per lane: reliable bytes buffered beyond what the application read.
const RECV_WINDOW: usize = 1 << 20;

/// The lane a channel travels on.
pub fn lane_of(channel: i32) -> u32 {
    (channel as u32) % LANES
}

/// Reliable byte ranges a packet carried, per lane: what an ack settles or a loss requeues.
pub type Carried = Vec<(u32, Range<u64>)>;

#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct PendingUnreliable {
    msg_num: u64,
    payload: Bytes,
    offset: usize,
}

#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct SendLane {
    stream: SendStream,
    next_msg_num: u64,
    last_reliable_num: u64,
    unreliable: VecDeque<PendingUnreliable>,
}

impl SendLane {
    fn new(limit: usize) -> Self {
        SendLane {
            stream: SendStream::new(1, limit),
            next_msg_num: 1,
            last_reliable_num: 0,
            unreliable: VecDeque::new(),
        }
    }

    fn has_pending(&self) -> bool {
        self.stream.has_pending() || !self.unreliable.is_empty()
    }
}

/// What one packet's frames took from the send lanes.
#[derive(Default)]
pub struct Written {
    /// Reliable ranges, to settle on ack or requeue on loss.
    pub carried: Carried,
    /// Whether any data (reliable or unreliable) went in.
    pub data: bool,
}

/// The send side of every lane in use.
#[derive(Default)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct SendLanes {
    /// Boxed: a map node has room for eleven entries, so inline lanes would cost every
    /// connection eleven lanes' worth of memory for its first one.
    lanes: BTreeMap<u32, Box<SendLane>>,
    /// Unreliable bytes queued and not yet sent, kept as a running total so that a send
    /// costs the same however long the queue is.
    unreliable_queued: usize,
}

impl SendLanes {
    /// Queues a message for `channel` and returns its message number on the lane. `limit`
    /// is a new lane's stream limit (`sendBufferSize`). The payload is copied here, once.
    pub fn queue(&mut self, channel: i32, reliable: bool, data: &[u8], limit: usize) -> u64 {
        let len = channel_prefix::PREFIX_LEN + data.len();
        let lane = self
            .lanes
            .entry(lane_of(channel))
            .or_insert_with(|| Box::new(SendLane::new(limit)));
        let number = lane.next_msg_num;
        lane.next_msg_num += 1;
        if reliable {
            let header = ReliableMsgHeader {
                msg_num_delta: number - lane.last_reliable_num,
                size: len as u32,
            };
            lane.last_reliable_num = number;
            let mut head = Vec::with_capacity(header.encoded_len() + channel_prefix::PREFIX_LEN);
            // Cannot fail: the delta is at least 1 and every message number is used once.
            let _ = header.encode(&mut head);
            head.extend_from_slice(&channel_prefix::encode(channel));
            lane.stream.push(head);
            if !data.is_empty() {
                lane.stream.push_slice(data);
            }
        } else {
            let mut payload = Vec::with_capacity(len);
            payload.extend_from_slice(&channel_prefix::encode(channel));
            payload.extend_from_slice(data);
            self.unreliable_queued += len;
            lane.unreliable.push_back(PendingUnreliable {
                msg_num: number,
                payload: payload.into(),
                offset: 0,
            });
        }
        number
    }

    /// Whether any lane has data to send (new, lost, or unreliable).
    pub fn has_pending(&self) -> bool {
        self.lanes.values().any(|l| l.has_pending())
    }

    /// Bytes waiting to go on the wire: new or lost reliable data, and unsent unreliable.
    pub fn queued_bytes(&self) -> usize {
        let reliable: u64 = self.lanes.values().map(|l| l.stream.queued_bytes()).sum();
        usize::try_from(reliable).unwrap_or(usize::MAX) + self.unreliable_bytes()
    }

    /// Unreliable bytes queued and not yet sent.
    pub fn unreliable_bytes(&self) -> usize {
        debug_assert_eq!(
            self.unreliable_queued,
            self.lanes
                .values()
                .flat_map(|l| l.unreliable.iter())
                .map(|u| u.payload.len() - u.offset)
                .sum::<usize>(),
            "running total of queued unreliable bytes"
        );
        self.unreliable_queued
    }

    /// Reliable bytes sent and not yet acknowledged.
    pub fn in_flight_bytes(&self) -> u64 {
        self.lanes
            .values()
            .map(|l| l.stream.in_flight_bytes())
            .sum()
    }

    /// Bytes held for the peer: reliable data until acknowledged, unreliable until sent.
    pub fn buffered_bytes(&self) -> usize {
        let reliable: u64 = self.lanes.values().map(|l| l.stream.buffered_bytes()).sum();
        usize::try_from(reliable).unwrap_or(usize::MAX) + self.unreliable_bytes()
    }

    /// Applies a new stream limit (`sendBufferSize`) to every lane.
    pub fn set_limit(&mut self, limit: usize) {
        for lane in self.lanes.values_mut() {
            lane.stream.set_limit(limit);
        }
    }

    /// Fills `enc` with data from the lanes, in lane order: per lane, reliable data (lost
    /// first, then new: the stream orders them), then unreliable messages or fragments.
    pub fn write(&mut self, enc: &mut FrameEncoder<'_>) -> Written {
        let mut w = Written::default();
        for (&lane_id, lane) in self.lanes.iter_mut() {
            loop {
                let room = enc
                    .remaining()
                    .saturating_sub(enc.reliable_overhead(lane_id, lane.stream.write_pos()));
                if room < 16 {
                    break;
                }
                let Some(seg) = lane.stream.next_segment(room) else {
                    break;
                };
                if enc.reliable(lane_id, seg.pos, &seg.data).is_err() {
                    lane.stream.on_lost(seg.range());
                    break;
                }
                w.carried.push((lane_id, seg.range()));
                w.data = true;
            }
            while let Some(u) = lane.unreliable.front_mut() {
                let overhead = enc.unreliable_overhead(lane_id, u.msg_num, u.offset as u32);
                let room = enc.remaining().saturating_sub(overhead);
                let left = u.payload.len() - u.offset;
                if room == 0 || (room < 16 && room < left) {
                    break;
                }
                let take = left.min(room);
                let last = take == left;
                let piece = u.payload.slice(u.offset..u.offset + take);
                if enc
                    .unreliable(lane_id, u.msg_num, u.offset as u32, last, &piece)
                    .is_err()
                {
                    break;
                }
                w.data = true;
                u.offset += take;
                self.unreliable_queued -= take;
                if last {
                    lane.unreliable.pop_front();
                }
            }
            if enc.remaining() < 32 {
                break;
            }
        }
        w
    }

    /// The peer acknowledged these reliable ranges.
    pub fn on_acked(&mut self, carried: Carried) {
        for (lane, range) in carried {
            if let Some(l) = self.lanes.get_mut(&lane) {
                l.stream.on_acked(range);
            }
        }
    }

    /// These reliable ranges were lost (or never tracked): send them again.
    pub fn on_lost(&mut self, carried: Carried) {
        for (lane, range) in carried {
            if let Some(l) = self.lanes.get_mut(&lane) {
                l.stream.on_lost(range);
            }
        }
    }

    /// Gives back the storage emptied queues keep for reuse (idle connections only).
    pub fn shrink(&mut self) {
        for lane in self.lanes.values_mut() {
            lane.stream.shrink();
            if lane.unreliable.is_empty() {
                lane.unreliable = VecDeque::new();
            }
        }
    }
}

#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct RecvLane {
    stream: RecvStream,
    last_reliable_num: u64,
    highest_unreliable: u64,
    reassembly: UnreliableReassembler,
}

/// Why a reliable segment was not taken.
pub enum Refused {
    /// Out of the receive window or too many gaps: not acknowledged, the peer resends.
    Later,
    /// The peer broke the protocol (the connection fails).
    Protocol(&'static str),
}

/// The receive side of every lane in use.
#[derive(Default)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct RecvLanes {
    /// Boxed for the same reason as the send lanes.
    lanes: BTreeMap<u32, Box<RecvLane>>,
}

impl RecvLanes {
    fn lane(&mut self, lane: u32, max_message: usize) -> &mut RecvLane {
        self.lanes.entry(lane).or_insert_with(|| {
            Box::new(RecvLane {
                stream: RecvStream::new(1, RECV_WINDOW.max(max_message + 64), MAX_RECV_GAPS),
                last_reliable_num: 0,
                highest_unreliable: 0,
                reassembly: UnreliableReassembler::new(ReassemblyConfig {
                    max_message_size: max_message + channel_prefix::PREFIX_LEN,
                    ..ReassemblyConfig::default()
                }),
            })
        })
    }

    /// Takes a reliable segment and delivers every whole message it completes to `out`.
    pub fn on_reliable(
        &mut self,
        seg: ReliableSegment<'_>,
        now: Timestamp,
        max_message: usize,
        out: &mut Vec<InMessage>,
    ) -> Result<(), Refused> {
        let lane = self.lane(seg.lane, max_message);
        let Some(pos) = seg.stream_pos.resolve(lane.stream.read_pos()) else {
            return Err(Refused::Protocol("unresolvable stream position"));
        };
        if lane.stream.insert(pos, seg.data).is_err() {
            return Err(Refused::Later);
        }
        drain_reliable(lane, now, max_message, out).map_err(Refused::Protocol)
    }

    /// The highest unreliable message number seen on `lane`: the reference point for the
    /// first unreliable segment of a packet on it.
    pub fn highest_unreliable(&self, lane: u32) -> u64 {
        self.lanes.get(&lane).map_or(0, |l| l.highest_unreliable)
    }

    /// Takes an unreliable segment (its message number resolved against `reference`) and
    /// delivers the message to `out` once whole.
    pub fn on_unreliable(
        &mut self,
        seg: UnreliableSegment<'_>,
        reference: u64,
        now: Timestamp,
        max_message: usize,
        out: &mut Vec<InMessage>,
    ) {
        let Some(num) = seg.msg_num.resolve(reference) else {
            return;
        };
        let lane = self.lane(seg.lane, max_message);
        lane.highest_unreliable = lane.highest_unreliable.max(num);
        let data = Bytes::copy_from_slice(seg.data);
        if let Some(whole) = lane.reassembly.insert(now, num, seg.offset, data, seg.last) {
            if let Some((channel, skip)) = channel_prefix::decode(&whole) {
                out.push(InMessage {
                    channel,
                    send_flags: 0,
                    number: num,
                    received_at: now,
                    data: whole.slice(skip..),
                });
            }
        }
    }

    /// Gives back the storage emptied streams keep for reuse (idle connections only).
    pub fn shrink(&mut self) {
        for lane in self.lanes.values_mut() {
            lane.stream.shrink();
        }
    }
}

/// Delivers every whole message at the front of a lane's reliable stream.
fn drain_reliable(
    lane: &mut RecvLane,
    now: Timestamp,
    max_message: usize,
    out: &mut Vec<InMessage>,
) -> Result<(), &'static str> {
    let max = (max_message + channel_prefix::PREFIX_LEN) as u32;
    loop {
        let (header, head_len) = match ReliableMsgHeader::decode(lane.stream.peek(), max) {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(()),
            Err(_) => return Err("bad reliable message header"),
        };
        let total = head_len + header.size as usize;
        if lane.stream.readable_len() < total {
            return Ok(());
        }
        let _ = lane.stream.read(head_len);
        let body = lane.stream.read(header.size as usize);
        lane.last_reliable_num += header.msg_num_delta;
        let Some((channel, skip)) = channel_prefix::decode(&body) else {
            return Err("reliable message shorter than its channel prefix");
        };
        out.push(InMessage {
            channel,
            send_flags: send_flags::RELIABLE,
            number: lane.last_reliable_num,
            received_at: now,
            data: body.slice(skip..),
        });
    }
}

#[cfg(test)]
pub(super) mod sizes {
    /// Sizes of the boxed lane records, for the connection's size report.
    pub fn rows() -> [(&'static str, usize); 2] {
        [
            ("SendLane (boxed)", std::mem::size_of::<super::SendLane>()),
            ("RecvLane (boxed)", std::mem::size_of::<super::RecvLane>()),
        ]
    }
}
