//! One socket, three protocols: which one a datagram belongs to.
//!
//! The endpoint's socket carries GNS packets, STUN (server answers, ICE checks, TURN
//! control) and TURN ChannelData. RFC 7983's first-byte ranges keep them apart: STUN starts
//! with 0..=3 (and has the magic cookie and a matching length, checked here so a stray GNS
//! byte pattern is not taken for STUN), ChannelData with 0x40..=0x7F (channel numbers
//! 0x4000..=0x7FFF, RFC 5766's range; RFC 8656 allocates only 0x4000..=0x4FFF), GNS data
//! packets with the high bit set and GNS control messages with ids 32..=37. The ranges do not
//! overlap, so classifying costs a few byte compares.

use super::stun::message::is_stun;

/// What a datagram is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DatagramKind {
    /// A STUN message (hand it to the ICE agent / TURN / binding clients).
    Stun,
    /// TURN ChannelData (relayed data from a peer, to unwrap with the TURN client).
    ChannelData,
    /// A GNS packet (data lead bit 0x80, or a control id 32..=37).
    Gns,
    /// None of these: drop and count it.
    Unknown,
}

/// The lowest GNS control message id.
pub const GNS_CONTROL_FIRST: u8 = 32;
/// The highest GNS control message id.
pub const GNS_CONTROL_LAST: u8 = 37;

/// Classifies a datagram by its first bytes.
pub fn classify(datagram: &[u8]) -> DatagramKind {
    let Some(&lead) = datagram.first() else {
        return DatagramKind::Unknown;
    };
    match lead {
        0..=3 if is_stun(datagram) => DatagramKind::Stun,
        0x40..=0x7F if datagram.len() >= 4 => DatagramKind::ChannelData,
        0x80..=0xFF => DatagramKind::Gns,
        GNS_CONTROL_FIRST..=GNS_CONTROL_LAST => DatagramKind::Gns,
        _ => DatagramKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::p2p::stun::{Class, MessageBuilder, MessageType, Method, TransactionId};

    #[test]
    fn kinds() {
        let mut b = MessageBuilder::new(
            MessageType::new(Method::BINDING, Class::Request),
            TransactionId([1; 12]),
        );
        b.fingerprint();
        let stun = b.into_bytes().unwrap();
        assert_eq!(classify(&stun), DatagramKind::Stun);
        // A STUN-like header without the cookie, or with a wrong length, is not STUN.
        let mut no_cookie = stun.clone();
        no_cookie[5] = 0;
        assert_eq!(classify(&no_cookie), DatagramKind::Unknown);
        let mut long = stun.clone();
        long.push(0);
        assert_eq!(classify(&long), DatagramKind::Unknown);

        assert_eq!(
            classify(&[0x40, 0x00, 0x00, 0x00]),
            DatagramKind::ChannelData
        );
        assert_eq!(
            classify(&[0x7F, 0xFF, 0x00, 0x01, 9]),
            DatagramKind::ChannelData
        );
        assert_eq!(classify(&[0x40, 0x00]), DatagramKind::Unknown);
        assert_eq!(classify(&[0x80, 1, 2, 3, 4, 5, 6]), DatagramKind::Gns);
        for id in 32..=37 {
            assert_eq!(classify(&[id, 0, 0, 0, 0]), DatagramKind::Gns);
        }
        assert_eq!(classify(&[38, 0, 0]), DatagramKind::Unknown);
        assert_eq!(classify(&[]), DatagramKind::Unknown);
        assert_eq!(classify(&[4; 30]), DatagramKind::Unknown);
    }
}
