//! The bodies of the fuzz targets in `crates/netcore/fuzz`, kept here so the same checks also
//! run as ordinary tests over random inputs.
//!
//! Each function feeds arbitrary bytes to one decoder, touches everything it returns, and
//! panics only if an invariant the codec promises is broken (a panic is what a fuzzer
//! reports). Decoding errors are expected and ignored.

use super::control::{ControlMessage, UdpStats};
use super::datagram::{
    classify, DataHeader, FLAG_STATS_BLOB, FLAG_TIME_SINCE_PREV, LEAD_DATA, MIN_DATAGRAM_LEN, MTU,
};
use super::expand::{low_bits, TruncatedNum};
use super::frames::{AckBlock, EncoderConfig, Frame, FrameDecoder, FrameEncoder, StopWaiting};
use super::protobuf_canonical;
use super::reliable_header::ReliableMsgHeader;
use super::WireError;
use prost::Message;

/// Data packet header and stats blob.
pub fn datagram(data: &[u8]) {
    let _ = classify(data);
    let Ok((header, rest)) = DataHeader::decode(data) else {
        return;
    };
    assert!(
        header.encoded_len() + rest.len() <= data.len(),
        "header claims more bytes than given"
    );
    if let Some(blob) = header.stats {
        let _ = UdpStats::decode(blob);
    }
    let mut again = Vec::new();
    if header.encode(&mut again).is_ok() {
        again.extend_from_slice(rest);
        let decoded = DataHeader::decode(&again).map(|(h, r)| (h, r.to_vec()));
        let mut flags = header.flags | LEAD_DATA;
        if header.stats.is_none() {
            flags &= !FLAG_STATS_BLOB;
        }
        if header.time_since_prev.is_none() {
            flags &= !FLAG_TIME_SINCE_PREV;
        }
        assert_eq!(
            decoded,
            Ok((DataHeader { flags, ..header }, rest.to_vec())),
            "re-encoded header differs"
        );
    }
}

/// SNP frames, ack blocks and reliable message headers found in segment data.
pub fn frames(data: &[u8]) {
    let mut count = 0usize;
    for frame in FrameDecoder::new(data) {
        count += 1;
        assert!(count <= data.len(), "more frames than bytes");
        match frame {
            Ok(Frame::Unreliable(seg)) => {
                assert!(seg.data.len() <= data.len());
                let _ = seg.msg_num.resolve(u64::from(u32::MAX));
            }
            Ok(Frame::Reliable(seg)) => {
                assert!(seg.data.len() <= data.len());
                let _ = seg.stream_pos.resolve(1);
                let _ = ReliableMsgHeader::decode(seg.data, u32::MAX);
            }
            Ok(Frame::Ack(ack)) => {
                assert!(ack.blocks().count() <= usize::from(ack.num_blocks));
                if let Some(latest) = ack.latest_pkt.resolve(1 << 40) {
                    let _ = ack.ranges(latest).count();
                }
                let _ = ack.delay_micros();
            }
            Ok(Frame::StopWaiting(sw)) => {
                let _ = sw.first_wanted(1 << 40);
            }
            Ok(Frame::SelectLane(_)) | Err(_) => {}
        }
    }
}

/// Control messages: decode, and if that works, re-encode and decode again.
pub fn control(data: &[u8]) {
    let Ok(msg) = ControlMessage::decode(data) else {
        return;
    };
    let mut again = Vec::new();
    if msg.encode(&mut again).is_ok() {
        assert_eq!(again.len(), msg.encoded_len(), "encoded length mismatch");
        assert_eq!(
            ControlMessage::decode(&again).as_ref(),
            Ok(&msg),
            "re-encoded message differs"
        );
    }
}

/// One frame for the structure-aware target to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameSpec {
    /// A segment of an unreliable message.
    Unreliable {
        /// Lane (above 255 is refused by the encoder).
        lane: u32,
        /// Message number.
        msg_num: u64,
        /// Offset of the segment in the message.
        offset: u32,
        /// Ends the message.
        last: bool,
        /// Segment bytes.
        data: Vec<u8>,
    },
    /// A segment of a lane's reliable stream.
    Reliable {
        /// Lane.
        lane: u32,
        /// Stream position of the first byte.
        stream_pos: u64,
        /// Segment bytes.
        data: Vec<u8>,
    },
    /// An ack frame.
    Ack {
        /// Newest packet acknowledged.
        latest: u64,
        /// Encoded delay.
        delay: u16,
        /// (acks, nacks) per block, newest first.
        blocks: Vec<(u64, u64)>,
    },
    /// A stop-waiting frame.
    StopWaiting {
        /// Distance from the packet's number, minus one.
        offset: u64,
    },
}

/// A packet's frames and the encoder's choices, for the structure-aware target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketSpec {
    /// 16 or 32 (other values fall back to the default).
    pub msg_num_bits: u8,
    /// 24, 32 or 48.
    pub stream_pos_bits: u8,
    /// 16 or 32.
    pub ack_pkt_num_bits: u8,
    /// Byte limit of the packet.
    pub limit: u16,
    /// The frames, in order.
    pub frames: Vec<FrameSpec>,
    /// Reliable message headers to write and read back: (number delta, size).
    pub headers: Vec<(u64, u32)>,
}

/// Whether `tn` can stand for `value`: the low bits of its first absolute value, plus its
/// running offset, make `value`.
fn stands_for(tn: TruncatedNum, value: u64) -> bool {
    value
        .checked_sub(tn.add)
        .is_some_and(|base| low_bits(base, u32::from(tn.bits)) == tn.low)
}

/// Structure-aware frames: every frame the encoder writes reads back as written, every
/// `*_len` / `*_overhead` prediction is exact, a refused write changes nothing, and reliable
/// message headers round-trip.
pub fn frames_structured(spec: &PacketSpec) {
    let config = EncoderConfig {
        msg_num_bits: spec.msg_num_bits,
        stream_pos_bits: spec.stream_pos_bits,
        ack_pkt_num_bits: spec.ack_pkt_num_bits,
    };
    let mut buf = Vec::new();
    let mut enc = FrameEncoder::with_config(&mut buf, usize::from(spec.limit), config);
    let mut written = Vec::new();
    for frame in &spec.frames {
        let before = enc.len();
        let room = enc.remaining();
        let (result, predicted) = match frame {
            FrameSpec::Unreliable {
                lane,
                msg_num,
                offset,
                last,
                data,
            } => {
                let predicted = enc.unreliable_overhead(*lane, *msg_num, *offset) + data.len();
                (
                    enc.unreliable(*lane, *msg_num, *offset, *last, data),
                    predicted,
                )
            }
            FrameSpec::Reliable {
                lane,
                stream_pos,
                data,
            } => {
                let predicted = enc.reliable_overhead(*lane, *stream_pos) + data.len();
                (enc.reliable(*lane, *stream_pos, data), predicted)
            }
            FrameSpec::Ack {
                latest,
                delay,
                blocks,
            } => {
                let blocks: Vec<AckBlock> = blocks
                    .iter()
                    .map(|&(acks, nacks)| AckBlock { acks, nacks })
                    .collect();
                let predicted = enc.ack_len(&blocks);
                (enc.ack(*latest, *delay, &blocks), predicted)
            }
            FrameSpec::StopWaiting { offset } => (
                enc.stop_waiting(StopWaiting { offset: *offset }),
                FrameEncoder::stop_waiting_len(*offset),
            ),
        };
        let grew = enc.len() - before;
        match result {
            Ok(()) => {
                let segment = matches!(
                    frame,
                    FrameSpec::Unreliable { .. } | FrameSpec::Reliable { .. }
                );
                // A segment that fills the packet to the byte drops its size field.
                let to_end = segment && grew + 1 == predicted && room == grew;
                assert!(
                    grew == predicted || to_end,
                    "{frame:?}: wrote {grew} bytes, predicted {predicted}"
                );
                assert!(grew <= room, "wrote past the limit");
                written.push(frame);
            }
            Err(_) => assert_eq!(grew, 0, "a refused write changed the packet"),
        }
    }
    let total = enc.finish();
    assert!(total <= usize::from(spec.limit), "over the limit");
    assert_eq!(total, buf.len());
    let mut decoded = FrameDecoder::new(&buf).filter(|f| !matches!(f, Ok(Frame::SelectLane(_))));
    for want in written {
        let got = decoded
            .next()
            .unwrap_or_else(|| panic!("{want:?} was written but not read"));
        let got = got.unwrap_or_else(|e| panic!("{want:?} was written but reads as {e}"));
        match (want, got) {
            (
                FrameSpec::Unreliable {
                    lane,
                    msg_num,
                    offset,
                    last,
                    data,
                },
                Frame::Unreliable(seg),
            ) => {
                assert_eq!(seg.lane, *lane);
                assert!(
                    stands_for(seg.msg_num, *msg_num),
                    "{:?} for {msg_num}",
                    seg.msg_num
                );
                assert_eq!(seg.offset, *offset);
                assert_eq!(seg.last, *last);
                assert_eq!(seg.data, &data[..]);
            }
            (
                FrameSpec::Reliable {
                    lane,
                    stream_pos,
                    data,
                },
                Frame::Reliable(seg),
            ) => {
                assert_eq!(seg.lane, *lane);
                assert!(
                    stands_for(seg.stream_pos, *stream_pos),
                    "{:?} for {stream_pos}",
                    seg.stream_pos
                );
                assert_eq!(seg.data, &data[..]);
            }
            (
                FrameSpec::Ack {
                    latest,
                    delay,
                    blocks,
                },
                Frame::Ack(ack),
            ) => {
                assert_eq!(ack.latest_pkt.add, 0);
                assert!(stands_for(ack.latest_pkt, *latest));
                assert_eq!(ack.delay, *delay);
                let read: Vec<(u64, u64)> = ack.blocks().map(|b| (b.acks, b.nacks)).collect();
                assert_eq!(&read, blocks);
            }
            (FrameSpec::StopWaiting { offset }, Frame::StopWaiting(sw)) => {
                assert_eq!(sw.offset, *offset);
            }
            (want, got) => panic!("wrote {want:?}, read {got:?}"),
        }
    }
    assert!(decoded.next().is_none(), "more frames read than written");
    for &(msg_num_delta, size) in &spec.headers {
        let h = ReliableMsgHeader {
            msg_num_delta,
            size,
        };
        let mut out = Vec::new();
        match h.encode(&mut out) {
            Ok(()) => {
                assert_eq!(out.len(), h.encoded_len());
                assert_eq!(
                    ReliableMsgHeader::decode(&out, u32::MAX),
                    Ok(Some((h, out.len())))
                );
                // Every strict prefix asks for more bytes rather than failing.
                for cut in 0..out.len() {
                    assert_eq!(ReliableMsgHeader::decode(&out[..cut], u32::MAX), Ok(None));
                }
            }
            Err(_) => {
                assert!(out.is_empty());
                assert!(
                    msg_num_delta == 0 || msg_num_delta > super::reliable_header::MAX_MSG_NUM_DELTA
                );
            }
        }
    }
}

/// Structure-aware control messages: what encodes decodes to the same message and has the
/// length `encoded_len` states; what does not encode is refused for a reason the sizes show.
pub fn control_structured(msg: &ControlMessage) {
    let mut out = Vec::new();
    let padded = msg.kind().is_padded();
    match msg.encode(&mut out) {
        Ok(()) => {
            assert_eq!(out.len(), msg.encoded_len());
            assert_eq!(ControlMessage::decode(&out).as_ref(), Ok(msg));
        }
        Err(e) => {
            assert!(out.is_empty(), "a refused encode appended bytes");
            let body = match msg {
                ControlMessage::ChallengeRequest(m) => m.encoded_len(),
                ControlMessage::ChallengeReply(m) => m.encoded_len(),
                ControlMessage::ConnectRequest(m) => m.encoded_len(),
                ControlMessage::ConnectOk(m) => m.encoded_len(),
                ControlMessage::ConnectionClosed(m) => m.encoded_len(),
                ControlMessage::NoConnection(m) => m.encoded_len(),
            };
            let unpadded = body + if padded { 3 } else { 1 };
            let reason_holds = match e {
                WireError::NoRoom { .. } => unpadded > MTU,
                WireError::Unencodable { .. } => {
                    (padded && body == 0) || unpadded < MIN_DATAGRAM_LEN
                }
                _ => false,
            };
            assert!(reason_holds, "refused for {e}: {msg:?}");
        }
    }
}

/// The differential target: a control datagram that the codec decodes re-encodes to exactly
/// the canonical form an independent reading of the protobuf wire format gives
/// ([`protobuf_canonical`]), and the two agree on what they refuse.
pub fn control_differential(data: &[u8]) {
    let reference = protobuf_canonical::control_datagram(data);
    let decoded = ControlMessage::decode(data);
    match (&decoded, &reference) {
        (Ok(msg), Ok(canonical)) => {
            let mut again = Vec::new();
            match (msg.encode(&mut again), canonical) {
                (Ok(()), Some(bytes)) => {
                    assert_eq!(
                        &again, bytes,
                        "re-encoded bytes differ from the canonical form"
                    )
                }
                (Err(_), None) => {}
                (ours, theirs) => panic!(
                    "encoder says {ours:?}, the reference says {}",
                    if theirs.is_some() {
                        "encodable"
                    } else {
                        "unencodable"
                    }
                ),
            }
        }
        (Err(_), Err(_)) => {}
        (ours, theirs) => panic!("codec: {ours:?}; reference: {theirs:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Found by the `frames_structured` campaign (2026-12-02), second crash: unreliable
    /// message 0 then u64::MAX in one lane context, then a reliable segment: the decoder's
    /// bump of the message number overflowed, so it refused a packet the encoder wrote.
    #[test]
    fn regression_reliable_after_unreliable_message_u64_max() {
        let unreliable = |msg_num| FrameSpec::Unreliable {
            lane: 0,
            msg_num,
            offset: 0,
            last: true,
            data: vec![1],
        };
        frames_structured(&PacketSpec {
            msg_num_bits: 32,
            stream_pos_bits: 32,
            ack_pkt_num_bits: 32,
            limit: 1200,
            frames: vec![
                unreliable(0),
                unreliable(u64::MAX),
                FrameSpec::Reliable {
                    lane: 0,
                    stream_pos: 1,
                    data: vec![2],
                },
                FrameSpec::Reliable {
                    lane: 0,
                    stream_pos: 2,
                    data: vec![3],
                },
                unreliable(7),
            ],
            headers: vec![],
        });
    }

    /// Found by the `frames_structured` campaign (2026-12-02): a reliable segment after the
    /// unreliable message number u64::MAX bumped the encoder's number context round to 0,
    /// so the next unreliable segment was written as a delta the decoder reads as past u64.
    #[test]
    fn regression_unreliable_after_a_reliable_bump_past_u64_max() {
        frames_structured(&PacketSpec {
            msg_num_bits: 32,
            stream_pos_bits: 32,
            ack_pkt_num_bits: 32,
            limit: 1200,
            frames: vec![
                FrameSpec::Unreliable {
                    lane: 0,
                    msg_num: u64::MAX,
                    offset: 0,
                    last: true,
                    data: vec![1],
                },
                FrameSpec::Reliable {
                    lane: 0,
                    stream_pos: 1,
                    data: vec![2],
                },
                FrameSpec::Unreliable {
                    lane: 0,
                    msg_num: 5,
                    offset: 0,
                    last: true,
                    data: vec![3],
                },
            ],
            headers: vec![],
        });
    }

    /// Biases random bytes toward interesting lead bytes so each decoder gets past its first
    /// check often.
    fn with_lead(leads: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(leads),
            proptest::collection::vec(any::<u8>(), 0..1400),
        )
            .prop_map(|(lead, mut rest)| {
                rest.insert(0, lead);
                rest
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn datagram_target(bytes in with_lead(vec![0x80, 0x81, 0xff, 32, 36])) {
            datagram(&bytes);
        }

        #[test]
        fn frames_target(bytes in with_lead(vec![0x00, 0x27, 0x31, 0x50, 0x57, 0x80, 0x83, 0x8f, 0x97, 0x98])) {
            frames(&bytes);
        }

        #[test]
        fn control_target(bytes in with_lead((32u8..=37).collect())) {
            control(&bytes);
        }

        #[test]
        fn frames_structured_target(spec in packet_spec()) {
            frames_structured(&spec);
        }

        #[test]
        fn control_structured_target(msg in control_message()) {
            control_structured(&msg);
        }

        #[test]
        fn control_differential_target(bytes in with_lead((32u8..=37).collect())) {
            control_differential(&bytes);
        }

        /// Genuine messages, then bytes flipped: mostly still well-formed protobuf.
        #[test]
        fn control_differential_on_mutated_messages(
            msg in control_message(),
            flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            pad in 0usize..600,
        ) {
            let mut d = Vec::new();
            if msg.encode(&mut d).is_ok() {
                for (pos, x) in flips {
                    let i = pos % d.len();
                    d[i] ^= x;
                }
                d.resize(d.len() + pad, 0);
                control_differential(&d);
            }
        }
    }

    fn frame_spec() -> impl Strategy<Value = FrameSpec> {
        let data = || proptest::collection::vec(any::<u8>(), 0..300);
        let lane = || prop_oneof![4 => 0u32..4, 1 => 0u32..300];
        let num = || prop_oneof![2 => 0u64..70_000, 1 => any::<u64>()];
        prop_oneof![
            (
                lane(),
                num(),
                prop_oneof![0u32..10, any::<u32>()],
                any::<bool>(),
                data()
            )
                .prop_map(|(lane, msg_num, offset, last, data)| {
                    FrameSpec::Unreliable {
                        lane,
                        msg_num,
                        offset,
                        last,
                        data,
                    }
                }),
            (lane(), num(), data()).prop_map(|(lane, stream_pos, data)| FrameSpec::Reliable {
                lane,
                stream_pos,
                data,
            }),
            (
                num(),
                any::<u16>(),
                proptest::collection::vec((0u64..2000, 0u64..2000), 0..12)
            )
                .prop_map(|(latest, delay, blocks)| FrameSpec::Ack {
                    latest,
                    delay,
                    blocks
                }),
            num().prop_map(|offset| FrameSpec::StopWaiting { offset }),
        ]
    }

    fn packet_spec() -> impl Strategy<Value = PacketSpec> {
        (
            prop::sample::select(vec![16u8, 32, 7]),
            prop::sample::select(vec![24u8, 32, 48, 9]),
            prop::sample::select(vec![16u8, 32]),
            prop_oneof![0u16..200, 1000u16..1300],
            proptest::collection::vec(frame_spec(), 0..10),
            proptest::collection::vec((0u64..2_000_000, any::<u32>()), 0..4),
        )
            .prop_map(|(m, s, a, limit, frames, headers)| PacketSpec {
                msg_num_bits: m,
                stream_pos_bits: s,
                ack_pkt_num_bits: a,
                limit,
                frames,
                headers,
            })
    }

    fn control_message() -> impl Strategy<Value = ControlMessage> {
        use super::super::control::*;
        let id = || proptest::option::of(any::<u32>());
        let big = || proptest::option::of(any::<u64>());
        let text = || proptest::option::of("[a-z:0-9]{0,12}");
        let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80));
        let cert = || {
            proptest::option::of((bytes(), big(), bytes()).prop_map(
                |(cert, ca_key_id, ca_signature)| CertificateSigned {
                    cert,
                    ca_key_id,
                    ca_signature,
                    private_key_data: None,
                },
            ))
        };
        let crypt = || {
            proptest::option::of(
                (bytes(), bytes())
                    .prop_map(|(info, signature)| SessionCryptInfoSigned { info, signature }),
            )
        };
        prop_oneof![
            (id(), big(), id()).prop_map(|(connection_id, my_timestamp, protocol_version)| {
                ControlMessage::ChallengeRequest(ChallengeRequest {
                    connection_id,
                    my_timestamp,
                    protocol_version,
                })
            }),
            (id(), big(), big(), id()).prop_map(
                |(connection_id, challenge, your_timestamp, protocol_version)| {
                    ControlMessage::ChallengeReply(ChallengeReply {
                        connection_id,
                        challenge,
                        your_timestamp,
                        protocol_version,
                    })
                }
            ),
            (id(), big(), big(), id(), crypt(), cert(), text()).prop_map(
                |(
                    client_connection_id,
                    challenge,
                    my_timestamp,
                    ping_est_ms,
                    crypt,
                    cert,
                    identity_string,
                )| {
                    ControlMessage::ConnectRequest(ConnectRequest {
                        client_connection_id,
                        challenge,
                        my_timestamp,
                        ping_est_ms,
                        crypt,
                        cert,
                        identity_string,
                        ..ConnectRequest::default()
                    })
                }
            ),
            (id(), id(), big(), id(), crypt(), cert(), text()).prop_map(
                |(
                    client_connection_id,
                    server_connection_id,
                    your_timestamp,
                    delay_time_usec,
                    crypt,
                    cert,
                    identity_string,
                )| {
                    ControlMessage::ConnectOk(ConnectOk {
                        client_connection_id,
                        server_connection_id,
                        your_timestamp,
                        delay_time_usec,
                        crypt,
                        cert,
                        identity_string,
                        ..ConnectOk::default()
                    })
                }
            ),
            (id(), id(), text(), id()).prop_map(
                |(to_connection_id, from_connection_id, debug, reason_code)| {
                    ControlMessage::ConnectionClosed(ConnectionClosed {
                        to_connection_id,
                        from_connection_id,
                        debug,
                        reason_code,
                    })
                }
            ),
            (id(), id()).prop_map(|(from_connection_id, to_connection_id)| {
                ControlMessage::NoConnection(NoConnection {
                    from_connection_id,
                    to_connection_id,
                })
            }),
        ]
    }
}
