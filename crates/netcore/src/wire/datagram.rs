//! The outermost layer of every UDP datagram: the lead byte that says what it is, and the
//! clear-text header of data packets.
//!
//! A datagram whose first byte has the high bit set is a data packet:
//!
//! ```text
//! u8  flags      0x80 always; 0x01 = a stats blob follows the header;
//!                0x02 = the time since the sender's previous packet follows
//! u32 to_conn_id little-endian: the receiver's half of the connection id
//! u16 pkt_num    little-endian: low 16 bits of the sender's packet number
//! [varint len, len bytes]  the stats blob (protobuf `UdpStats`), if flag 0x01
//! [u16 LE]       time since the previous packet, in 16 µs units, if flag 0x02
//! ...            the AEAD ciphertext of the SNP frames, to the end of the datagram
//! ```
//!
//! Any other first byte is a control message id (32..=37, see [`ControlKind`]); their bodies
//! live in `control`. Decoding borrows from the datagram and never allocates.

use super::varint::{self, Reader};
use super::WireError;

/// Protocol version we speak (sent in the signed crypt info).
pub const PROTOCOL_VERSION: u32 = 13;
/// Oldest peer protocol version we accept.
pub const MIN_PROTOCOL_VERSION: u32 = 8;
/// Largest UDP payload we send.
pub const MTU: usize = 1300;
/// Size of the AES-GCM tag appended to every data packet's ciphertext.
pub const AEAD_TAG_LEN: usize = 16;
/// Largest encrypted chunk (ciphertext plus tag) we put in one data packet.
pub const MAX_ENCRYPTED_PAYLOAD_SEND: usize = 1248;
/// Largest SNP plaintext we put in one data packet.
pub const MAX_PLAINTEXT_SEND: usize = MAX_ENCRYPTED_PAYLOAD_SEND - AEAD_TAG_LEN;
/// Largest SNP plaintext we accept in one data packet (receivers are lenient).
pub const MAX_PLAINTEXT_RECV: usize = MTU;
/// Minimum size of the padded control messages (ChallengeRequest, ConnectionClosed), which
/// keeps them from being amplified by a spoofed source.
pub const MIN_PADDED_PACKET: usize = 512;
/// Shorter datagrams are dropped before looking at them.
pub const MIN_DATAGRAM_LEN: usize = 5;
/// Bytes of the fixed data packet header.
pub const DATA_HEADER_LEN: usize = 7;
/// Lead byte bit marking a data packet.
pub const LEAD_DATA: u8 = 0x80;
/// Data packet flag: a stats blob follows the fixed header.
pub const FLAG_STATS_BLOB: u8 = 0x01;
/// Data packet flag: a u16 (little-endian) follows the stats blob, the time since the
/// sender's previous packet in units of [`TIME_SINCE_PREV_UNIT_MICROS`] (the reference sends
/// it when `SendTimeSincePreviousPacket` is on, for jitter measurement).
pub const FLAG_TIME_SINCE_PREV: u8 = 0x02;
/// Microseconds per unit of the time-since-previous-packet field.
pub const TIME_SINCE_PREV_UNIT_MICROS: u32 = 16;

/// The control messages, by their lead byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ControlKind {
    /// Client asks for a challenge (padded).
    ChallengeRequest = 32,
    /// Server answers with a challenge.
    ChallengeReply = 33,
    /// Client proves the challenge and presents its cert and keys.
    ConnectRequest = 34,
    /// Server accepts, with its cert and keys.
    ConnectOk = 35,
    /// Either side closes (padded; the peer answers NoConnection).
    ConnectionClosed = 36,
    /// "There is no such connection here"; never answered.
    NoConnection = 37,
}

impl ControlKind {
    /// The lead byte.
    pub const fn id(self) -> u8 {
        self as u8
    }

    /// The kind with lead byte `id`, if any.
    pub const fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            32 => ControlKind::ChallengeRequest,
            33 => ControlKind::ChallengeReply,
            34 => ControlKind::ConnectRequest,
            35 => ControlKind::ConnectOk,
            36 => ControlKind::ConnectionClosed,
            37 => ControlKind::NoConnection,
            _ => return None,
        })
    }

    /// Whether this message travels padded to [`MIN_PADDED_PACKET`] with a length prefix.
    pub const fn is_padded(self) -> bool {
        matches!(
            self,
            ControlKind::ChallengeRequest | ControlKind::ConnectionClosed
        )
    }
}

/// What a datagram is, judged by its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lead {
    /// A data packet (high bit set).
    Data,
    /// A control message.
    Control(ControlKind),
}

/// Classifies a datagram, refusing ones too short to be anything.
pub fn classify(datagram: &[u8]) -> Result<Lead, WireError> {
    let lead = match datagram {
        [lead, ..] if datagram.len() >= MIN_DATAGRAM_LEN => *lead,
        _ => {
            return Err(WireError::DatagramTooShort {
                len: datagram.len(),
            })
        }
    };
    if lead & LEAD_DATA != 0 {
        return Ok(Lead::Data);
    }
    ControlKind::from_id(lead)
        .map(Lead::Control)
        .ok_or(WireError::UnknownLeadByte(lead))
}

/// Largest stats blob a header may claim (it must fit a datagram anyway).
pub const MAX_STATS_BLOB_LEN: usize = MTU;

/// The clear-text header of a data packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataHeader<'a> {
    /// The lead byte as received. [`DataHeader::encode`] always sets [`LEAD_DATA`], sets
    /// [`FLAG_STATS_BLOB`] exactly when `stats` is present and [`FLAG_TIME_SINCE_PREV`]
    /// exactly when `time_since_prev` is; other bits are carried as given (receivers ignore
    /// them).
    pub flags: u8,
    /// The receiver's half of the connection id.
    pub to_conn_id: u32,
    /// Low 16 bits of the packet number; widen with `expand::nearest_with_low_bits(_, 16,
    /// highest packet number received)`.
    pub wire_pkt_num: u16,
    /// The serialized `UdpStats` blob, if present.
    pub stats: Option<&'a [u8]>,
    /// Time since the sender's previous packet, in units of
    /// [`TIME_SINCE_PREV_UNIT_MICROS`], if present. Clear text, outside the AEAD: it is
    /// skipped, never decrypted.
    pub time_since_prev: Option<u16>,
}

impl<'a> DataHeader<'a> {
    /// A header with the usual flags for these fields.
    pub fn new(to_conn_id: u32, wire_pkt_num: u16, stats: Option<&'a [u8]>) -> Self {
        let flags = LEAD_DATA | if stats.is_some() { FLAG_STATS_BLOB } else { 0 };
        DataHeader {
            flags,
            to_conn_id,
            wire_pkt_num,
            stats,
            time_since_prev: None,
        }
    }

    /// Splits a data packet into its header and the ciphertext that follows.
    pub fn decode(datagram: &'a [u8]) -> Result<(Self, &'a [u8]), WireError> {
        if datagram.len() < DATA_HEADER_LEN {
            return Err(WireError::DatagramTooShort {
                len: datagram.len(),
            });
        }
        let mut r = Reader::new(datagram);
        let flags = r.u8("data lead byte")?;
        if flags & LEAD_DATA == 0 {
            return Err(WireError::UnknownLeadByte(flags));
        }
        let to_conn_id = r.uint_le(4, "to_conn_id")? as u32;
        let wire_pkt_num = r.uint_le(2, "packet number")? as u16;
        let stats = if flags & FLAG_STATS_BLOB != 0 {
            let len = r.varint("stats blob length")?;
            if len > MAX_STATS_BLOB_LEN as u64 {
                return Err(WireError::ValueTooLarge {
                    what: "stats blob length",
                    value: len,
                    max: MAX_STATS_BLOB_LEN as u64,
                });
            }
            Some(r.take(len as usize, "stats blob")?)
        } else {
            None
        };
        let time_since_prev = if flags & FLAG_TIME_SINCE_PREV != 0 {
            Some(r.uint_le(2, "time since previous packet")? as u16)
        } else {
            None
        };
        let header = DataHeader {
            flags,
            to_conn_id,
            wire_pkt_num,
            stats,
            time_since_prev,
        };
        Ok((header, r.take_rest()))
    }

    /// Bytes [`DataHeader::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        DATA_HEADER_LEN
            + self
                .stats
                .map_or(0, |s| varint::encoded_len(s.len() as u64) + s.len())
            + if self.time_since_prev.is_some() { 2 } else { 0 }
    }

    /// Appends the header; the caller appends the ciphertext after it.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        if let Some(s) = self.stats {
            if s.len() > MAX_STATS_BLOB_LEN {
                return Err(WireError::Unencodable {
                    what: "stats blob longer than the MTU",
                });
            }
        }
        let mut flags = (self.flags | LEAD_DATA) & !(FLAG_STATS_BLOB | FLAG_TIME_SINCE_PREV);
        if self.stats.is_some() {
            flags |= FLAG_STATS_BLOB;
        }
        if self.time_since_prev.is_some() {
            flags |= FLAG_TIME_SINCE_PREV;
        }
        out.push(flags);
        out.extend_from_slice(&self.to_conn_id.to_le_bytes());
        out.extend_from_slice(&self.wire_pkt_num.to_le_bytes());
        if let Some(s) = self.stats {
            varint::write(out, s.len() as u64);
            out.extend_from_slice(s);
        }
        if let Some(t) = self.time_since_prev {
            out.extend_from_slice(&t.to_le_bytes());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hand_written_data_packet() {
        // Lead 0x80 (data, no stats), to_conn_id 0x11223344 LE, packet number 0x0102 LE,
        // then three bytes of ciphertext.
        let bytes = [0x80, 0x44, 0x33, 0x22, 0x11, 0x02, 0x01, 0xaa, 0xbb, 0xcc];
        assert_eq!(classify(&bytes), Ok(Lead::Data));
        let (h, rest) = DataHeader::decode(&bytes).expect("valid header");
        assert_eq!(h, DataHeader::new(0x1122_3344, 0x0102, None));
        assert_eq!(rest, &[0xaa, 0xbb, 0xcc]);
    }

    #[test]
    fn hand_written_stats_blob() {
        // Flag 0x01 set: varint length 2, two blob bytes, then one ciphertext byte.
        let bytes = [0x81, 1, 0, 0, 0, 5, 0, 0x02, 0x18, 0x02, 0xee];
        let (h, rest) = DataHeader::decode(&bytes).expect("valid header");
        assert_eq!(h.stats, Some(&[0x18, 0x02][..]));
        assert_eq!(h.to_conn_id, 1);
        assert_eq!(h.wire_pkt_num, 5);
        assert_eq!(rest, &[0xee]);
        // A blob longer than the datagram is refused.
        let short = [0x81, 1, 0, 0, 0, 5, 0, 0x09, 0x18];
        assert!(DataHeader::decode(&short).is_err());
    }

    #[test]
    fn hand_written_time_since_previous_packet() {
        // What the reference sends with SendTimeSincePreviousPacket on: lead 0x83 (stats blob
        // and time since the previous packet), blob of 2 bytes, then u16 LE 0x0140 (320 x 16
        // µs), then the ciphertext. The u16 is not part of the ciphertext.
        let bytes = [
            0x83, 9, 0, 0, 0, 7, 0, 0x02, 0x18, 0x06, 0x40, 0x01, 0xaa, 0xbb,
        ];
        let (h, rest) = DataHeader::decode(&bytes).expect("valid header");
        assert_eq!(h.stats, Some(&[0x18, 0x06][..]));
        assert_eq!(h.time_since_prev, Some(0x0140));
        assert_eq!(rest, &[0xaa, 0xbb]);
        assert_eq!(h.encoded_len(), 12);
        // Without a blob: lead 0x82, the u16 straight after the fixed header.
        let bytes = [0x82, 9, 0, 0, 0, 8, 0, 0x10, 0x00, 0xcc];
        let (h, rest) = DataHeader::decode(&bytes).expect("valid header");
        assert_eq!((h.stats, h.time_since_prev), (None, Some(16)));
        assert_eq!(rest, &[0xcc]);
        // The flag with no room for its u16 is refused.
        assert!(DataHeader::decode(&[0x82, 9, 0, 0, 0, 8, 0, 0x10]).is_err());
        // Encoding writes the field back where it was.
        let mut out = Vec::new();
        h.encode(&mut out).expect("encodable");
        assert_eq!(out, &bytes[..9]);
    }

    #[test]
    fn classifies_control_ids() {
        for id in 32u8..=37 {
            let kind = ControlKind::from_id(id).expect("known id");
            assert_eq!(classify(&[id, 0, 0, 0, 0]), Ok(Lead::Control(kind)));
            assert_eq!(kind.id(), id);
        }
        assert_eq!(
            classify(&[31, 0, 0, 0, 0]),
            Err(WireError::UnknownLeadByte(31))
        );
        assert_eq!(
            classify(&[38, 0, 0, 0, 0]),
            Err(WireError::UnknownLeadByte(38))
        );
        assert_eq!(
            classify(&[0x80, 0, 0, 0]),
            Err(WireError::DatagramTooShort { len: 4 })
        );
        assert_eq!(MAX_PLAINTEXT_SEND, 1232);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trip(
            flags in any::<u8>(),
            conn in any::<u32>(),
            pkt in any::<u16>(),
            stats in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
            time_since_prev in proptest::option::of(any::<u16>()),
            payload in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let h = DataHeader { flags, to_conn_id: conn, wire_pkt_num: pkt, stats: stats.as_deref(), time_since_prev };
            let mut out = Vec::new();
            h.encode(&mut out).expect("encodable");
            prop_assert_eq!(out.len(), h.encoded_len());
            out.extend_from_slice(&payload);
            let (got, rest) = DataHeader::decode(&out).expect("decodes");
            let mut want_flags = flags | LEAD_DATA;
            if stats.is_some() { want_flags |= FLAG_STATS_BLOB } else { want_flags &= !FLAG_STATS_BLOB }
            if time_since_prev.is_some() { want_flags |= FLAG_TIME_SINCE_PREV } else { want_flags &= !FLAG_TIME_SINCE_PREV }
            prop_assert_eq!(got, DataHeader { flags: want_flags, ..h });
            prop_assert_eq!(rest, &payload[..]);
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = classify(&bytes);
            if let Ok((h, rest)) = DataHeader::decode(&bytes) {
                prop_assert_eq!(h.encoded_len() + rest.len() <= bytes.len(), true);
            }
        }
    }
}
