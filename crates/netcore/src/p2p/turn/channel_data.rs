//! TURN ChannelData framing (RFC 8656 section 12.4): a 4-byte header (channel number, length)
//! and the peer's datagram, padded to a multiple of 4 bytes. Four bytes of overhead instead of
//! a Send/Data indication's 36 or more, which is why relayed data uses channels once bound.

/// Lowest channel number.
pub const CHANNEL_MIN: u16 = 0x4000;
/// Highest channel number RFC 8656 lets a client bind (0x5000..=0x7FFF are reserved).
pub const CHANNEL_MAX: u16 = 0x4FFF;
/// Header length.
pub const HEADER_LEN: usize = 4;

/// A decoded ChannelData message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelData<'a> {
    /// Channel number.
    pub channel: u16,
    /// The peer's datagram.
    pub data: &'a [u8],
}

/// Why bytes are not ChannelData.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChannelDataError {
    /// Shorter than the header.
    #[error("ChannelData shorter than its header")]
    TooShort,
    /// Channel number outside 0x4000..=0x7FFF.
    #[error("not a channel number: {0:#06x}")]
    BadChannel(u16),
    /// The length field claims more bytes than present, or more than padding follows.
    #[error("ChannelData length field does not match the datagram")]
    BadLength,
    /// Payload over 65535 bytes, or channel out of the bindable range (encoding).
    #[error("ChannelData payload or channel not encodable")]
    NotEncodable,
}

/// Decodes a datagram. Up to 3 bytes of padding may follow the data (RFC 8656 lets UDP
/// senders omit or include it).
pub fn decode(datagram: &[u8]) -> Result<ChannelData<'_>, ChannelDataError> {
    if datagram.len() < HEADER_LEN {
        return Err(ChannelDataError::TooShort);
    }
    let channel = u16::from_be_bytes([datagram[0], datagram[1]]);
    if !(0x4000..=0x7FFF).contains(&channel) {
        return Err(ChannelDataError::BadChannel(channel));
    }
    let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    let rest = datagram.len() - HEADER_LEN;
    if len > rest || rest - len > 3 {
        return Err(ChannelDataError::BadLength);
    }
    Ok(ChannelData {
        channel,
        data: &datagram[HEADER_LEN..HEADER_LEN + len],
    })
}

/// Appends ChannelData for `data` on `channel` to `out`, padded to 4 bytes.
pub fn encode(channel: u16, data: &[u8], out: &mut Vec<u8>) -> Result<(), ChannelDataError> {
    let len = u16::try_from(data.len()).map_err(|_| ChannelDataError::NotEncodable)?;
    if !(CHANNEL_MIN..=CHANNEL_MAX).contains(&channel) {
        return Err(ChannelDataError::NotEncodable);
    }
    out.reserve(HEADER_LEN + data.len() + 3);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    let pad = (4 - data.len() % 4) % 4;
    out.extend_from_slice(&[0u8; 3][..pad]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_padding() {
        for n in 0..9 {
            let data: Vec<u8> = (0..n as u8).collect();
            let mut out = Vec::new();
            encode(0x4001, &data, &mut out).unwrap();
            assert_eq!(out.len() % 4, 0);
            assert_eq!(
                decode(&out).unwrap(),
                ChannelData {
                    channel: 0x4001,
                    data: &data
                }
            );
            // Without the padding too.
            assert_eq!(decode(&out[..HEADER_LEN + n]).unwrap().data, &data[..]);
        }
    }

    #[test]
    fn rejects() {
        assert_eq!(decode(&[0x40, 0]), Err(ChannelDataError::TooShort));
        assert_eq!(
            decode(&[0x3F, 0xFF, 0, 0]),
            Err(ChannelDataError::BadChannel(0x3FFF))
        );
        assert_eq!(
            decode(&[0x40, 0, 0, 5, 1, 2]),
            Err(ChannelDataError::BadLength)
        );
        assert_eq!(
            decode(&[0x40, 0, 0, 0, 1, 2, 3, 4]),
            Err(ChannelDataError::BadLength)
        );
        let mut out = Vec::new();
        assert!(encode(0x5000, b"x", &mut out).is_err());
        assert!(encode(0x4000, &vec![0; 70_000], &mut out).is_err());
    }
}
