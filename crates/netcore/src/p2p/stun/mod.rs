//! STUN (RFC 8489): the message codec, credentials, retransmission timers and a binding client.
//!
//! - [`message`]: header, transaction ids, attribute framing, integrity and fingerprint.
//! - [`attributes`]: attribute types and value codecs (addresses, error codes, ...).
//! - [`transaction`]: the request retransmission schedule (RFC 8489 6.2.1).
//! - [`binding`]: a client that learns the server-reflexive address from STUN servers.
//!
//! Credentials: short-term (ICE) keys are the password bytes; long-term (TURN) keys are
//! [`long_term_key`]. Passwords are used as given: SASLprep/OpaqueString is not applied, which
//! only matters for non-ASCII passwords.

pub mod attributes;
pub mod binding;
pub mod message;
pub mod transaction;

pub use message::{Class, Integrity, Message, MessageBuilder, MessageType, Method, TransactionId};

use md5::{Digest, Md5};

/// Why a datagram is not a usable STUN message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    /// Shorter than a header.
    #[error("shorter than a STUN header")]
    TooShort,
    /// Top bits or magic cookie wrong: not STUN at all.
    #[error("not a STUN message")]
    NotStun,
    /// The length field does not match the datagram, or is not a multiple of 4.
    #[error("STUN length field does not match the datagram")]
    BadLength,
    /// An attribute's framing or value is malformed.
    #[error("malformed STUN attribute: {0}")]
    BadAttribute(&'static str),
    /// More attributes than [`message::MAX_ATTRIBUTES`].
    #[error("too many STUN attributes")]
    TooManyAttributes,
    /// FINGERPRINT present but wrong.
    #[error("STUN fingerprint mismatch")]
    BadFingerprint,
    /// MESSAGE-INTEGRITY(-SHA256) does not verify with the key.
    #[error("STUN message integrity check failed")]
    BadIntegrity,
    /// No integrity attribute where one is required.
    #[error("STUN message has no integrity attribute")]
    NoIntegrity,
    /// A value or the whole message is too long to encode.
    #[error("STUN message too long to encode")]
    TooLong,
}

/// The long-term credential key (RFC 8489 9.2.2, the MD5 algorithm every TURN server
/// supports): MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_term_key_is_md5_of_the_triple() {
        // MD5("user:realm:pass")
        let k = long_term_key("user", "realm", "pass");
        assert_eq!(
            k,
            [
                0x84, 0x93, 0xfb, 0xc5, 0x3b, 0xa5, 0x82, 0xfb, 0x4c, 0x04, 0x4c, 0x45, 0x6b, 0xdc,
                0x40, 0xeb
            ]
        );
    }
}
