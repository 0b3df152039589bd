//! The session's packet cipher, with its AES key schedules built only while traffic flows.
//!
//! The expanded AES-256-GCM state for both directions takes about 2 KiB: more than the rest
//! of an idle connection together. The session keys it is built from are 88 bytes, and
//! building it costs about as much as sealing one packet. So a connection keeps the keys,
//! builds the cipher on its first packet, and lets it go once it has been idle for a while
//! (see `Connection::shed_if_idle`); a busy connection keeps it and never pays twice.

use crate::crypto::{SessionCipher, SessionKeys};

/// A session's keys, and their expanded cipher while in use.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct PacketKeys {
    /// Wiped on drop.
    keys: SessionKeys,
    /// Boxed, so that a connection without it is 2 KiB smaller.
    expanded: Option<Box<SessionCipher>>,
}

impl PacketKeys {
    /// Keys whose cipher is built on first use.
    pub fn new(keys: SessionKeys) -> Self {
        PacketKeys {
            keys,
            expanded: None,
        }
    }

    /// The cipher, built now if it was let go.
    pub fn cipher(&mut self) -> &SessionCipher {
        let keys = &self.keys;
        self.expanded
            .get_or_insert_with(|| Box::new(SessionCipher::new(keys)))
    }

    /// Lets the expanded cipher go (it is wiped as it drops); the next packet rebuilds it.
    pub fn release(&mut self) {
        self.expanded = None;
    }

    /// Whether the cipher is built.
    pub fn is_expanded(&self) -> bool {
        self.expanded.is_some()
    }
}

impl std::fmt::Debug for PacketKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketKeys")
            .field("expanded", &self.is_expanded())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TAG_LEN;

    fn keys(a: u8, b: u8) -> SessionKeys {
        SessionKeys {
            send_key: [a; 32],
            recv_key: [b; 32],
            send_iv: [a; 12],
            recv_iv: [b; 12],
        }
    }

    #[test]
    fn a_rebuilt_cipher_opens_what_the_first_one_sealed() {
        let mut ours = PacketKeys::new(keys(1, 2));
        let mut theirs = PacketKeys::new(keys(2, 1));
        assert!(!ours.is_expanded(), "built on first use only");
        let mut buf = [0u8; 5 + TAG_LEN];
        buf[..5].copy_from_slice(b"hello");
        let n = ours.cipher().send.seal_in_place(9, &mut buf, 5).unwrap();
        assert!(ours.is_expanded());
        ours.release();
        theirs.release();
        assert!(!ours.is_expanded());
        assert_eq!(theirs.cipher().recv.open_in_place(9, &mut buf[..n]), Ok(5));
        assert_eq!(&buf[..5], b"hello");
        // Ours, rebuilt, seals exactly as before.
        let mut again = [0u8; 5 + TAG_LEN];
        again[..5].copy_from_slice(b"hello");
        ours.cipher().send.seal_in_place(9, &mut again, 5).unwrap();
        let mut first = [0u8; 5 + TAG_LEN];
        first[..5].copy_from_slice(b"hello");
        PacketKeys::new(keys(1, 2))
            .cipher()
            .send
            .seal_in_place(9, &mut first, 5)
            .unwrap();
        assert_eq!(again, first);
    }
}
