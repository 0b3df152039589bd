//! Structure-aware frames: typed frames (segments, acks, stop-waiting) and reliable message
//! headers, written by the encoder and read back by the decoder, which must agree on every
//! field; the encoder's size predictions must be exact.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use netcore::wire::fuzz_checks::{frames_structured, FrameSpec, PacketSpec};

/// A number biased toward the small values that make relative encodings.
#[derive(Arbitrary, Debug)]
enum Num {
    Small(u16),
    Near(u32),
    Any(u64),
}

impl Num {
    fn get(&self) -> u64 {
        match *self {
            Num::Small(v) => u64::from(v),
            Num::Near(v) => u64::from(v),
            Num::Any(v) => v,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Frame {
    Unreliable {
        lane: u16,
        msg_num: Num,
        offset: Num,
        last: bool,
        data: Vec<u8>,
    },
    Reliable {
        lane: u16,
        stream_pos: Num,
        data: Vec<u8>,
    },
    Ack {
        latest: Num,
        delay: u16,
        blocks: Vec<(Num, Num)>,
    },
    StopWaiting {
        offset: Num,
    },
}

#[derive(Arbitrary, Debug)]
struct Packet {
    msg_num_bits: u8,
    stream_pos_bits: u8,
    ack_pkt_num_bits: u8,
    limit: u16,
    frames: Vec<Frame>,
    headers: Vec<(Num, u32)>,
}

fn lane(l: u16) -> u32 {
    // Mostly the first few lanes (where contexts are shared), sometimes past the limit.
    u32::from(if l & 0x8000 != 0 { l & 0x1ff } else { l & 3 })
}

fuzz_target!(|p: Packet| {
    let frames = p
        .frames
        .iter()
        .map(|f| match f {
            Frame::Unreliable {
                lane: l,
                msg_num,
                offset,
                last,
                data,
            } => FrameSpec::Unreliable {
                lane: lane(*l),
                msg_num: msg_num.get(),
                offset: offset.get() as u32,
                last: *last,
                data: data.clone(),
            },
            Frame::Reliable {
                lane: l,
                stream_pos,
                data,
            } => FrameSpec::Reliable {
                lane: lane(*l),
                stream_pos: stream_pos.get(),
                data: data.clone(),
            },
            Frame::Ack {
                latest,
                delay,
                blocks,
            } => FrameSpec::Ack {
                latest: latest.get(),
                delay: *delay,
                blocks: blocks.iter().map(|(a, n)| (a.get(), n.get())).collect(),
            },
            Frame::StopWaiting { offset } => FrameSpec::StopWaiting {
                offset: offset.get(),
            },
        })
        .collect();
    let spec = PacketSpec {
        msg_num_bits: p.msg_num_bits,
        stream_pos_bits: p.stream_pos_bits,
        ack_pkt_num_bits: p.ack_pkt_num_bits,
        limit: p.limit % 1500,
        frames,
        headers: p.headers.iter().map(|(d, s)| (d.get(), *s)).collect(),
    };
    frames_structured(&spec);
});
