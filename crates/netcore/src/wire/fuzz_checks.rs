//! The bodies of the fuzz targets in `crates/netcore/fuzz`, kept here so the same checks also
//! run as ordinary tests over random inputs.
//!
//! Each function feeds arbitrary bytes to one decoder, touches everything it returns, and
//! panics only if an invariant the codec promises is broken (a panic is what a fuzzer
//! reports). Decoding errors are expected and ignored.

use super::control::{ControlMessage, UdpStats};
use super::datagram::{classify, DataHeader, FLAG_STATS_BLOB, FLAG_TIME_SINCE_PREV, LEAD_DATA};
use super::frames::{Frame, FrameDecoder};
use super::reliable_header::ReliableMsgHeader;
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    }
}
