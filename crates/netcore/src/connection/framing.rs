//! The first slice's datagram framing: a data-packet lead byte and packet number, then
//! message records back to back.
//!
//! Layout (little-endian):
//! `0x80 | u32 to_conn_id (0: no handshake yet) | u16 packet number` then, per message,
//! `u8 flags | i32 channel | u64 message number | u32 length | payload`.
//!
//! The lead byte and header match the shape of a GameNetworkingSockets data packet so that
//! the control/data split of the endpoint already holds; the records are this slice's own and
//! give way to the SNP frames of the transport issue.

use std::ops::Range;

/// Lead byte of a data packet.
pub const LEAD_DATA: u8 = 0x80;
const HEADER_LEN: usize = 1 + 4 + 2;
const RECORD_HEADER_LEN: usize = 1 + 4 + 8 + 4;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Largest message one record can carry in a single datagram.
pub const MAX_RECORD_PAYLOAD: usize = MAX_DATAGRAM - HEADER_LEN - RECORD_HEADER_LEN;

/// Why a datagram did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its header says.
    #[error("truncated datagram")]
    Truncated,
    /// Not a data packet.
    #[error("not a data packet (lead byte {0:#04x})")]
    NotData(u8),
}

/// One message record as written.
pub struct MessageRecord<'a> {
    /// Destination channel.
    pub channel: i32,
    /// Send flags (low 8 bits are carried).
    pub send_flags: u32,
    /// Message number.
    pub number: u64,
    /// Payload.
    pub data: &'a [u8],
}

impl MessageRecord<'_> {
    /// Bytes this record takes in a datagram.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.data.len()
    }
}

/// Appends records to a datagram buffer.
pub struct PacketWriter<'b> {
    buf: &'b mut Vec<u8>,
}

impl<'b> PacketWriter<'b> {
    /// Writes the packet header into `buf` (which must be empty).
    pub fn start(buf: &'b mut Vec<u8>, packet_number: u64) -> Self {
        buf.push(LEAD_DATA);
        buf.extend_from_slice(&0u32.to_le_bytes());
        // The wire carries the low 16 bits; the receiver does not need more in this slice.
        buf.extend_from_slice(&(packet_number as u16).to_le_bytes());
        PacketWriter { buf }
    }

    /// Whether no record has been written yet.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == HEADER_LEN
    }

    /// Bytes written so far, header included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Appends one record.
    pub fn push(&mut self, r: &MessageRecord<'_>) {
        self.buf.push(r.send_flags as u8);
        self.buf.extend_from_slice(&r.channel.to_le_bytes());
        self.buf.extend_from_slice(&r.number.to_le_bytes());
        self.buf
            .extend_from_slice(&(r.data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(r.data);
    }
}

/// A decoded record: its fields and where its payload sits in the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRecord {
    /// Destination channel.
    pub channel: i32,
    /// Send flags.
    pub send_flags: u32,
    /// Message number.
    pub number: u64,
    /// Payload position in the datagram.
    pub data_range: Range<usize>,
}

fn take<const N: usize>(p: &[u8], at: &mut usize) -> Result<[u8; N], DecodeError> {
    let end = at.checked_add(N).ok_or(DecodeError::Truncated)?;
    let bytes = p.get(*at..end).ok_or(DecodeError::Truncated)?;
    *at = end;
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

/// Decodes a whole datagram; any defect rejects all of it.
pub fn decode_packet(p: &[u8]) -> Result<Vec<DecodedRecord>, DecodeError> {
    let lead = *p.first().ok_or(DecodeError::Truncated)?;
    if lead != LEAD_DATA {
        return Err(DecodeError::NotData(lead));
    }
    if p.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    let mut at = HEADER_LEN;
    let mut out = Vec::new();
    while at < p.len() {
        let [flags] = take::<1>(p, &mut at)?;
        let channel = i32::from_le_bytes(take::<4>(p, &mut at)?);
        let number = u64::from_le_bytes(take::<8>(p, &mut at)?);
        let len = u32::from_le_bytes(take::<4>(p, &mut at)?) as usize;
        let end = at.checked_add(len).ok_or(DecodeError::Truncated)?;
        if end > p.len() {
            return Err(DecodeError::Truncated);
        }
        out.push(DecodedRecord {
            channel,
            send_flags: u32::from(flags),
            number,
            data_range: at..end,
        });
        at = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_bytes_never_panic() {
        // A cheap deterministic sweep of short inputs, including every truncation of a good one.
        let mut good = Vec::new();
        let mut w = PacketWriter::start(&mut good, 3);
        w.push(&MessageRecord {
            channel: -1,
            send_flags: 9,
            number: 42,
            data: b"abc",
        });
        for cut in 0..good.len() {
            let _ = decode_packet(&good[..cut]);
        }
        let decoded = decode_packet(&good).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].channel, -1);
        assert_eq!(decoded[0].number, 42);
        assert_eq!(&good[decoded[0].data_range.clone()], b"abc");
        let mut seed = 0x1234_5678u32;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let mut v = vec![LEAD_DATA];
            for _ in 0..len {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                v.push((seed >> 24) as u8);
            }
            let _ = decode_packet(&v);
        }
    }
}
