//! Lane framing: messages onto lanes and lanes into a packet's frames on the way out;
//! segments back into messages on the way in.
//!
//! Two framings ([`Framing`]). For the messages model each channel maps to a wire lane
//! (`channel % 256`) and every message carries the messages layer's 5-byte prefix
//! ([`channel_prefix`]); for the connection API the application names the lane and the
//! payload travels as it is. Each lane is its own reliable stream, so a loss on one lane does
//! not hold back another. A reliable message travels as a reliable message header
//! (`wire::reliable_header`) and its bytes on the lane's stream; an unreliable message as one
//! or more unreliable segments.
//!
//! Which lane's data goes next follows the lanes' priorities and weights (Steam's
//! `ConfigureConnectionLanes`): strict priority (a lower value first), then a weighted fair
//! share among lanes of one priority. Each lane's virtual time advances by the bytes it sent
//! divided by its weight, and the lane furthest behind goes next; a lane that was idle starts
//! at the current virtual time, so idleness builds up no credit.

use std::ops::Range;

use bytes::Bytes;

use super::channel_prefix;
use super::lane_map::LaneMap;
use super::unreliable_queue::UnreliableQueue;
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
/// The receive window we assume the peer keeps per lane: the reference's default
/// `recvBufferSize`, and our own [`RECV_WINDOW`]. The wire does not carry the peer's value.
const PEER_RECV_WINDOW: u64 = RECV_WINDOW as u64;

/// Most lanes a connection may configure (the reference's limit).
pub const MAX_LANES: usize = 255;
/// Fixed-point scale of the lanes' virtual time (bytes times this, over the weight).
const VTIME_SCALE: u64 = 1 << 16;

/// The lane a channel travels on (messages framing).
pub fn lane_of(channel: i32) -> u32 {
    (channel as u32) % LANES
}

/// How messages map to lanes and what travels with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Framing {
    /// The messages model: a channel names the lane (`channel % 256`) and every message
    /// carries the 5-byte channel prefix.
    #[default]
    Messages,
    /// The connection API: the application names the lane; payloads travel as they are.
    Raw,
}

/// Reliable byte ranges a packet carried, per lane: what an ack settles or a loss requeues.
pub type Carried = Vec<(u32, Range<u64>)>;

#[cfg_attr(any(test, fuzzing), derive(Clone))]
struct SendLane {
    stream: SendStream,
    next_msg_num: u64,
    last_reliable_num: u64,
    unreliable: UnreliableQueue,
    /// Lower goes first.
    priority: i32,
    /// Share of the bandwidth among lanes of the same priority.
    weight: u16,
    /// Bytes sent times `VTIME_SCALE` over the weight, from the virtual clock's origin.
    vtime: u64,
}

impl SendLane {
    fn new(limit: usize) -> Self {
        let mut stream = SendStream::new(1, limit);
        stream.set_peer_window(PEER_RECV_WINDOW);
        SendLane {
            stream,
            next_msg_num: 1,
            last_reliable_num: 0,
            unreliable: UnreliableQueue::default(),
            priority: 0,
            weight: 1,
            vtime: 0,
        }
    }

    fn has_pending(&self) -> bool {
        self.stream.has_pending() || !self.unreliable.is_empty()
    }

    fn has_sendable(&self) -> bool {
        self.stream.has_sendable() || !self.unreliable.is_empty()
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
    framing: Framing,
    lanes: LaneMap<SendLane>,
    /// Unreliable bytes queued and not yet sent, kept as a running total so that a send
    /// costs the same however long the queue is.
    unreliable_queued: usize,
    /// The virtual time of the lane served last: where a lane that was idle starts.
    vclock: u64,
    /// Priorities and weights from [`SendLanes::configure`], by lane; lanes not listed get
    /// priority 0 and weight 1.
    schedule: Vec<(i32, u16)>,
    /// Reliable bytes queued again because the packet carrying them was lost.
    requeued: u64,
}

impl SendLanes {
    /// Send lanes for `framing`.
    pub fn new(framing: Framing) -> Self {
        SendLanes {
            framing,
            ..SendLanes::default()
        }
    }

    /// Sets lane `i`'s priority and weight to `schedule[i]` (Steam's
    /// `ConfigureConnectionLanes`, checked by the caller).
    pub fn configure(&mut self, schedule: Vec<(i32, u16)>) {
        for (id, lane) in self.lanes.iter_mut() {
            let (p, w) = schedule.get(id as usize).copied().unwrap_or((0, 1));
            lane.priority = p;
            lane.weight = w.max(1);
        }
        self.schedule = schedule;
    }

    /// The lane a message for `channel` (messages framing) or lane `channel` (raw framing)
    /// goes on.
    fn lane_id(&self, channel: i32) -> u32 {
        match self.framing {
            Framing::Messages => lane_of(channel),
            Framing::Raw => channel as u32,
        }
    }

    /// Queues a message for `channel` (the messages framing's channel, or the raw framing's
    /// lane) and returns its message number on the lane. `limit` is a new lane's stream limit
    /// (`sendBufferSize`). The payload is copied here, once.
    pub fn queue(&mut self, channel: i32, reliable: bool, data: &[u8], limit: usize) -> u64 {
        let prefix = match self.framing {
            Framing::Messages => Some(channel_prefix::encode(channel)),
            Framing::Raw => None,
        };
        let prefix: &[u8] = prefix.as_ref().map_or(&[], |p| &p[..]);
        let len = prefix.len() + data.len();
        let id = self.lane_id(channel);
        let (p, w) = self.schedule.get(id as usize).copied().unwrap_or((0, 1));
        let vclock = self.vclock;
        let lane = self.lanes.get_or_insert_with(id, || {
            let mut l = SendLane::new(limit);
            l.priority = p;
            l.weight = w.max(1);
            l
        });
        if !lane.has_pending() {
            // An idle lane builds up no credit.
            lane.vtime = lane.vtime.max(vclock);
        }
        let number = lane.next_msg_num;
        lane.next_msg_num += 1;
        if reliable {
            let header = ReliableMsgHeader {
                msg_num_delta: number - lane.last_reliable_num,
                size: len as u32,
            };
            lane.last_reliable_num = number;
            // Header, prefix and body written straight into the stream's buffer, contiguous.
            let range = lane.stream.push_with(header.encoded_len() + len, |tail| {
                // Cannot fail: the delta is at least 1 and every message number is used once.
                let _ = header.encode(tail);
                tail.extend_from_slice(prefix);
                tail.extend_from_slice(data);
            });
            lane.stream.mark_message(range);
        } else {
            self.unreliable_queued += len;
            lane.unreliable.push(number, &[prefix, data]);
        }
        number
    }

    /// Whether any lane has data to send (new, lost, or unreliable), windows aside.
    pub fn has_pending(&self) -> bool {
        self.lanes.values().any(|l| l.has_pending())
    }

    /// Whether any lane has data it may send now (new reliable data only within the peer's
    /// receive window).
    pub fn has_sendable(&self) -> bool {
        self.lanes.values().any(|l| l.has_sendable())
    }

    /// Bytes the lanes may send now: lost reliable data, new reliable data within the peer's
    /// receive window, and unsent unreliable data.
    pub fn sendable_bytes(&self) -> usize {
        let reliable: u64 = self.lanes.values().map(|l| l.stream.sendable_bytes()).sum();
        usize::try_from(reliable).unwrap_or(usize::MAX) + self.unreliable_bytes()
    }

    /// Reliable bytes sent again (after losses or for probes), in total.
    pub fn resent_bytes(&self) -> u64 {
        self.lanes.values().map(|l| l.stream.resent_bytes()).sum()
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
                .map(|l| l.unreliable.queued_bytes())
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

    /// The lane whose data goes next: the highest priority (lowest value) with data, then the
    /// one furthest behind in virtual time, then the lowest id.
    fn next_lane(&self) -> Option<u32> {
        self.lanes
            .iter()
            .filter(|(_, l)| l.has_sendable())
            .min_by_key(|&(id, l)| (l.priority, l.vtime, id))
            .map(|(id, _)| id)
    }

    /// Fills `enc` with data from the lanes, one piece at a time from the lane the schedule
    /// picks: reliable data first (lost, then new: the stream orders them), then unreliable
    /// messages or fragments.
    pub fn write(&mut self, enc: &mut FrameEncoder<'_>) -> Written {
        let mut w = Written::default();
        while enc.remaining() > 0 {
            let Some(lane_id) = self.next_lane() else {
                break;
            };
            let Some(lane) = self.lanes.get_mut(lane_id) else {
                break;
            };
            let sent = if lane.stream.has_sendable() {
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
                seg.data.len()
            } else {
                let Some(u) = lane.unreliable.front() else {
                    break;
                };
                let offset = u.offset as u32;
                let overhead = enc.unreliable_overhead(lane_id, u.msg_num, offset);
                let room = enc.remaining().saturating_sub(overhead);
                let left = u.rest.len();
                if room == 0 || (room < 16 && room < left) {
                    break;
                }
                let take = left.min(room);
                let last = take == left;
                let piece = u.rest.get(..take).unwrap_or_default();
                if enc
                    .unreliable(lane_id, u.msg_num, offset, last, piece)
                    .is_err()
                {
                    break;
                }
                lane.unreliable.advance(take);
                self.unreliable_queued -= take;
                take
            };
            w.data = true;
            self.vclock = lane.vtime;
            lane.vtime += sent as u64 * VTIME_SCALE / u64::from(lane.weight.max(1));
        }
        w
    }

    /// The peer acknowledged these reliable ranges.
    pub fn on_acked(&mut self, carried: Carried) {
        for (lane, range) in carried {
            if let Some(l) = self.lanes.get_mut(lane) {
                l.stream.on_acked(range);
            }
        }
    }

    /// These reliable ranges were lost (or never tracked): send them again.
    pub fn on_lost(&mut self, carried: Carried) {
        for (lane, range) in carried {
            if let Some(l) = self.lanes.get_mut(lane) {
                let before = l.stream.queued_bytes();
                l.stream.on_lost(range);
                self.requeued += l.stream.queued_bytes().saturating_sub(before);
            }
        }
    }

    /// Reliable bytes queued again so far because the packet carrying them was lost (what
    /// retransmission sends, or will send).
    pub fn requeued_bytes(&self) -> u64 {
        self.requeued
    }

    /// Gives back the storage emptied queues keep for reuse (idle connections only).
    pub fn shrink(&mut self) {
        for lane in self.lanes.values_mut() {
            lane.stream.shrink();
            lane.unreliable.shrink();
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
    framing: Framing,
    lanes: LaneMap<RecvLane>,
}

impl RecvLanes {
    /// Receive lanes for `framing`.
    pub fn new(framing: Framing) -> Self {
        RecvLanes {
            framing,
            lanes: LaneMap::default(),
        }
    }

    fn lane(&mut self, lane: u32, max_message: usize) -> &mut RecvLane {
        self.lanes.get_or_insert_with(lane, || RecvLane {
            stream: RecvStream::new(1, RECV_WINDOW.max(max_message + 64), MAX_RECV_GAPS),
            last_reliable_num: 0,
            highest_unreliable: 0,
            reassembly: UnreliableReassembler::new(ReassemblyConfig {
                max_message_size: max_message + channel_prefix::PREFIX_LEN,
                ..ReassemblyConfig::default()
            }),
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
        let framing = self.framing;
        let lane_id = seg.lane;
        let lane = self.lane(seg.lane, max_message);
        let Some(pos) = seg.stream_pos.resolve(lane.stream.read_pos()) else {
            return Err(Refused::Protocol("unresolvable stream position"));
        };
        if lane.stream.insert(pos, seg.data).is_err() {
            return Err(Refused::Later);
        }
        drain_reliable(lane, lane_id, framing, now, max_message, out).map_err(Refused::Protocol)
    }

    /// The highest unreliable message number seen on `lane`: the reference point for the
    /// first unreliable segment of a packet on it.
    pub fn highest_unreliable(&self, lane: u32) -> u64 {
        self.lanes.get(lane).map_or(0, |l| l.highest_unreliable)
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
        let framing = self.framing;
        let lane_id = seg.lane;
        let lane = self.lane(seg.lane, max_message);
        lane.highest_unreliable = lane.highest_unreliable.max(num);
        let (channel, data) = if seg.offset == 0 && seg.last {
            // Whole in one segment (the common case): copy only the payload, into a buffer
            // of its own (one allocation, no shared one for a slice of it).
            if !lane.reassembly.accept_whole(num, seg.data.len()) {
                return;
            }
            let Some((channel, skip)) = unframe(framing, lane_id, seg.data) else {
                return;
            };
            let payload = seg.data.get(skip..).unwrap_or_default();
            (channel, Bytes::copy_from_slice(payload))
        } else {
            let data = Bytes::copy_from_slice(seg.data);
            let Some(whole) = lane.reassembly.insert(now, num, seg.offset, data, seg.last) else {
                return;
            };
            let Some((channel, skip)) = unframe(framing, lane_id, &whole) else {
                return;
            };
            (channel, whole.slice(skip..))
        };
        out.push(InMessage {
            channel,
            send_flags: 0,
            number: num,
            received_at: now,
            data,
        });
    }

    /// Gives back the storage emptied streams keep for reuse (idle connections only).
    pub fn shrink(&mut self) {
        for lane in self.lanes.values_mut() {
            lane.stream.shrink();
        }
    }
}

/// The channel a whole message names and where its payload starts: the messages framing's
/// prefix, or (raw framing) the lane it came on, from the first byte. `None` when a messages
/// payload is shorter than its prefix.
fn unframe(framing: Framing, lane: u32, whole: &[u8]) -> Option<(i32, usize)> {
    match framing {
        Framing::Messages => channel_prefix::decode(whole),
        Framing::Raw => Some((lane as i32, 0)),
    }
}

/// Delivers every whole message at the front of a lane's reliable stream.
fn drain_reliable(
    lane: &mut RecvLane,
    lane_id: u32,
    framing: Framing,
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
        // The header and channel prefix are dropped in place; only the payload is copied out
        // (one allocation per message, and no shared handle for a slice of it).
        let unframed = lane
            .stream
            .peek()
            .get(head_len..total)
            .and_then(|body| unframe(framing, lane_id, body));
        lane.last_reliable_num += header.msg_num_delta;
        let Some((channel, skip)) = unframed else {
            lane.stream.discard(total);
            return Err("reliable message shorter than its channel prefix");
        };
        lane.stream.discard(head_len + skip);
        let data = lane.stream.read(total - head_len - skip);
        out.push(InMessage {
            channel,
            send_flags: send_flags::RELIABLE,
            number: lane.last_reliable_num,
            received_at: now,
            data,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frames::{Frame, FrameDecoder};

    /// The lanes (and bytes per lane) of the data frames one packet of `limit` bytes carries.
    fn packet(lanes: &mut SendLanes, limit: usize) -> Vec<(u32, usize)> {
        let mut buf = Vec::new();
        let mut enc = FrameEncoder::new(&mut buf, limit);
        let w = lanes.write(&mut enc);
        enc.finish();
        for (lane, range) in w.carried {
            // Settle at once, as an ack would, so the next packet sends new data.
            lanes.on_acked(vec![(lane, range)]);
        }
        FrameDecoder::new(&buf)
            .filter_map(|f| match f {
                Ok(Frame::Reliable(s)) => Some((s.lane, s.data.len())),
                Ok(Frame::Unreliable(s)) => Some((s.lane, s.data.len())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_high_priority_lane_goes_before_a_bulk_lane_in_the_next_packet() {
        let mut lanes = SendLanes::new(Framing::Raw);
        lanes.configure(vec![(0, 1), (10, 1)]);
        lanes.queue(1, true, &vec![1; 200_000], 1 << 20);
        // A packet of bulk, then the urgent message is queued behind it.
        assert!(packet(&mut lanes, 1200).iter().all(|&(l, _)| l == 1));
        lanes.queue(0, true, b"urgent", 1 << 20);
        let next = packet(&mut lanes, 1200);
        assert_eq!(next.first().map(|&(l, _)| l), Some(0), "{next:?}");
        // Without priorities (both 0), the bulk lane, behind in virtual time, could go first.
        let mut fair = SendLanes::new(Framing::Raw);
        fair.queue(1, true, &vec![1; 200_000], 1 << 20);
        packet(&mut fair, 1200);
        fair.queue(0, true, b"urgent", 1 << 20);
        assert!(packet(&mut fair, 1200).iter().any(|&(l, _)| l == 0));
    }

    #[test]
    fn lanes_of_one_priority_share_by_weight() {
        let mut lanes = SendLanes::new(Framing::Raw);
        lanes.configure(vec![(0, 1), (5, 20), (5, 5)]);
        for lane in [1, 2] {
            lanes.queue(lane, true, &vec![lane as u8; 2_000_000], 4 << 20);
        }
        let mut bytes = [0usize; 3];
        for _ in 0..400 {
            for (l, n) in packet(&mut lanes, 1200) {
                bytes[l as usize] += n;
            }
        }
        let ratio = bytes[1] as f64 / bytes[2] as f64;
        assert!((3.6..=4.4).contains(&ratio), "{bytes:?} ratio {ratio}");
    }

    #[test]
    fn an_idle_lane_builds_up_no_credit() {
        let mut lanes = SendLanes::new(Framing::Raw);
        lanes.queue(0, true, &vec![0; 300_000], 1 << 20);
        for _ in 0..100 {
            packet(&mut lanes, 1200);
        }
        // Lane 1 was idle all that time: now both share equally, it does not monopolise.
        lanes.queue(1, true, &vec![1; 300_000], 1 << 20);
        let mut bytes = [0usize; 2];
        for _ in 0..100 {
            for (l, n) in packet(&mut lanes, 1200) {
                bytes[l as usize] += n;
            }
        }
        let ratio = bytes[0] as f64 / bytes[1] as f64;
        assert!((0.8..=1.25).contains(&ratio), "{bytes:?}");
    }

    /// The unreliable segments of every packet `lanes` sends (of `limit` bytes each).
    fn unreliable_packets(lanes: &mut SendLanes, limit: usize) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        while lanes.unreliable_bytes() > 0 {
            let mut buf = Vec::new();
            let mut enc = FrameEncoder::new(&mut buf, limit);
            lanes.write(&mut enc);
            enc.finish();
            packets.push(buf);
        }
        packets
    }

    /// Feeds every unreliable segment of `packets` to `recv`.
    fn receive_unreliable(recv: &mut RecvLanes, packets: &[Vec<u8>], max: usize) -> Vec<InMessage> {
        let mut out = Vec::new();
        for p in packets {
            for f in FrameDecoder::new(p) {
                if let Ok(Frame::Unreliable(seg)) = f {
                    recv.on_unreliable(seg, 0, Timestamp::ZERO, max, &mut out);
                }
            }
        }
        out
    }

    #[test]
    fn unreliable_messages_arrive_whole_or_reassembled_with_their_channel() {
        let mut send = SendLanes::new(Framing::Messages);
        let big: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        send.queue(7, false, b"small", 1 << 20);
        send.queue(7, false, &big, 1 << 20);
        send.queue(2, false, b"", 1 << 20);
        let packets = unreliable_packets(&mut send, 1200);
        assert!(packets.len() >= 3, "the big one is fragmented");
        // Which of the three each delivered message is (by channel and exact bytes).
        let which = |out: &[InMessage]| -> Vec<&str> {
            let mut names: Vec<&str> = out
                .iter()
                .map(|m| match (m.channel, m.data.as_ref()) {
                    (7, b"small") => "small",
                    (7, d) if d == &big[..] => "big",
                    (2, b"") => "empty",
                    _ => "wrong",
                })
                .collect();
            names.sort_unstable();
            names
        };
        let out = receive_unreliable(&mut RecvLanes::new(Framing::Messages), &packets, 1 << 20);
        assert_eq!(which(&out), ["big", "empty", "small"]);

        // Over the receiver's limit, whole or in fragments: dropped.
        let out = receive_unreliable(&mut RecvLanes::new(Framing::Messages), &packets, 4);
        assert_eq!(which(&out), ["empty"]);
    }

    #[test]
    fn raw_framing_carries_payloads_as_they_are() {
        let mut send = SendLanes::new(Framing::Raw);
        send.queue(3, true, b"exact bytes", 1 << 20);
        let mut buf = Vec::new();
        let mut enc = FrameEncoder::new(&mut buf, 1200);
        send.write(&mut enc);
        enc.finish();
        let mut recv = RecvLanes::new(Framing::Raw);
        let mut out = Vec::new();
        for f in FrameDecoder::new(&buf) {
            if let Ok(Frame::Reliable(seg)) = f {
                assert!(recv
                    .on_reliable(seg, Timestamp::ZERO, 1 << 20, &mut out)
                    .is_ok());
            }
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].channel, 3, "the lane");
        assert_eq!(out[0].data.as_ref(), b"exact bytes");
    }
}

#[cfg(test)]
pub(super) mod sizes {
    /// Sizes of the lane records, for the connection's size report.
    pub fn rows() -> [(&'static str, usize); 2] {
        [
            (
                "SendLane (in LaneMap)",
                std::mem::size_of::<super::SendLane>(),
            ),
            (
                "RecvLane (in LaneMap)",
                std::mem::size_of::<super::RecvLane>(),
            ),
        ]
    }
}
