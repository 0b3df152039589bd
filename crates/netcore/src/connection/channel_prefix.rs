//! The messages layer's prefix on every message payload: `u8 flags | i32 LE channel`.
//!
//! The reference implementation's messages interface puts these five bytes in front of each
//! message so the receiver knows the channel; we do the same so the payloads match. The
//! reference writes 1 in the flags byte of every message (it defines no other value), so we
//! write the same; on receipt the byte is ignored, as there.

/// Bytes the prefix takes.
pub const PREFIX_LEN: usize = 5;

/// The flags byte the reference's messages layer writes.
pub const FLAGS: u8 = 1;

/// The prefix for a message to `channel`.
pub fn encode(channel: i32) -> [u8; PREFIX_LEN] {
    let c = channel.to_le_bytes();
    [FLAGS, c[0], c[1], c[2], c[3]]
}

/// Splits a received payload into its channel and body; `None` if it is too short.
pub fn decode(payload: &[u8]) -> Option<(i32, usize)> {
    let c = payload.get(1..PREFIX_LEN)?;
    let channel = i32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    Some((channel, PREFIX_LEN))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_short_input() {
        let p = super::encode(-2);
        assert_eq!(super::decode(&p), Some((-2, 5)));
        assert_eq!(super::decode(&p[..4]), None);
    }

    #[test]
    fn flags_byte_is_what_the_reference_writes() {
        // The reference's messages layer: flags 1, then channel 7 little-endian.
        assert_eq!(super::encode(7), [1, 7, 0, 0, 0]);
        // Whatever flags a peer writes, the channel is read the same.
        assert_eq!(super::decode(&[0, 7, 0, 0, 0]), Some((7, 5)));
        assert_eq!(super::decode(&[0xff, 7, 0, 0, 0]), Some((7, 5)));
    }
}
