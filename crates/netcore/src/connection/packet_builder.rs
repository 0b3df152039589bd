//! Building one data packet in place: room for the clear header, frames written straight
//! after it, then the header (with its optional stats blob) put in front and the frames
//! sealed where they lie.
//!
//! The header's length is known only once the frames are (a keepalive adds a stats blob
//! when the packet carries nothing else that asks for an ack), so the frames start after
//! room for the longest header and move left by the difference when the packet is sealed.
//! No connection keeps a buffer of its own: the caller's buffer holds the datagram.

use crate::crypto::aead::PacketCipher;
use crate::crypto::TAG_LEN;
use crate::wire::datagram::{DataHeader, DATA_HEADER_LEN, MAX_PLAINTEXT_SEND};
use crate::wire::frames::FrameEncoder;

/// A data packet being built in a caller's buffer.
pub struct PacketBuilder<'a> {
    buf: &'a mut Vec<u8>,
    /// Bytes before the frames: the longest header this packet may get.
    room: usize,
    /// Most frame bytes.
    limit: usize,
}

impl<'a> PacketBuilder<'a> {
    /// Starts a packet of at most `mtu` bytes in `buf` (cleared first), leaving room for a
    /// stats blob of up to `blob_max` bytes.
    pub fn new(buf: &'a mut Vec<u8>, mtu: usize, blob_max: usize) -> Self {
        // The blob's length byte, and the blob.
        let room = DATA_HEADER_LEN + 1 + blob_max;
        let limit = mtu.saturating_sub(room + TAG_LEN).min(MAX_PLAINTEXT_SEND);
        buf.clear();
        buf.resize(room, 0);
        PacketBuilder { buf, room, limit }
    }

    /// The encoder for this packet's frames.
    pub fn frames(&mut self) -> FrameEncoder<'_> {
        FrameEncoder::new(self.buf, self.limit)
    }

    /// Bytes of frames written so far.
    pub fn frames_len(&self) -> usize {
        self.buf.len() - self.room
    }

    /// Puts the header in front of the frames and seals them with packet number `pn`. On
    /// failure (a header longer than the room, which the caller's `blob_max` rules out, or a
    /// seal error) the buffer is cleared and false returned; the frames' contents are the
    /// caller's to requeue.
    pub fn seal(self, header: &DataHeader<'_>, pn: u64, cipher: &PacketCipher) -> bool {
        let frames_len = self.frames_len();
        let head_len = header.encoded_len();
        let buf = self.buf;
        let ok = head_len <= self.room
            && {
                // [room][frames] becomes [header][frames]: the frames move left, then the
                // header, appended after them, is copied to the front.
                buf.copy_within(self.room.., head_len);
                buf.truncate(head_len + frames_len);
                header.encode(buf).is_ok()
            }
            && {
                buf.copy_within(head_len + frames_len.., 0);
                buf.resize(head_len + frames_len + TAG_LEN, 0);
                match buf.get_mut(head_len..) {
                    Some(body) => cipher.seal_in_place(pn, body, frames_len).is_ok(),
                    None => false,
                }
            };
        if !ok {
            buf.clear();
        }
        ok
    }

    /// Gives up on the packet: the buffer is left empty.
    pub fn abandon(self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{SessionCipher, SessionKeys};
    use crate::wire::frames::{Frame, FrameDecoder};

    fn cipher_pair() -> (SessionCipher, SessionCipher) {
        let a = SessionKeys {
            send_key: [1; 32],
            recv_key: [2; 32],
            send_iv: [3; 12],
            recv_iv: [4; 12],
        };
        let b = SessionKeys {
            send_key: [2; 32],
            recv_key: [1; 32],
            send_iv: [4; 12],
            recv_iv: [3; 12],
        };
        (SessionCipher::new(&a), SessionCipher::new(&b))
    }

    #[test]
    fn sealed_packets_open_to_the_frames_written_with_and_without_a_blob() {
        let (ours, theirs) = cipher_pair();
        for blob in [None, Some(&[0x08u8, 0x06][..])] {
            let mut buf = vec![0xee; 3];
            let mut b = PacketBuilder::new(&mut buf, 1300, 8);
            {
                let mut enc = b.frames();
                enc.reliable(0, 1, b"hello").unwrap();
                enc.finish();
            }
            let header = DataHeader::new(77, 5, blob);
            assert!(b.seal(&header, 5, &ours.send));
            assert!(buf.len() <= 1300);
            let (h, sealed) = DataHeader::decode(&buf).unwrap();
            assert_eq!(h.to_conn_id, 77);
            assert_eq!(h.stats, blob);
            let mut body = sealed.to_vec();
            let n = theirs.recv.open_in_place(5, &mut body).unwrap();
            let frames: Vec<_> = FrameDecoder::new(&body[..n]).collect();
            assert!(matches!(&frames[..], [Ok(Frame::Reliable(s))] if s.data == b"hello"));
        }
    }

    #[test]
    fn frames_never_exceed_the_mtu_with_the_largest_blob() {
        let (ours, _) = cipher_pair();
        let mut buf = Vec::new();
        let mut b = PacketBuilder::new(&mut buf, 1300, 8);
        {
            let mut enc = b.frames();
            let room = enc.remaining() - enc.reliable_overhead(0, 1);
            enc.reliable(0, 1, &vec![7; room]).unwrap();
            enc.finish();
        }
        assert!(b.seal(&DataHeader::new(1, 2, Some(&[1; 8])), 2, &ours.send));
        assert!(buf.len() <= 1300, "{}", buf.len());
    }

    #[test]
    fn a_header_longer_than_its_room_fails_and_leaves_nothing() {
        let (ours, _) = cipher_pair();
        let mut buf = Vec::new();
        let b = PacketBuilder::new(&mut buf, 1300, 2);
        assert!(!b.seal(&DataHeader::new(1, 2, Some(&[1; 40])), 2, &ours.send));
        assert!(buf.is_empty());
    }
}
