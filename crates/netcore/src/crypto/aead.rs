//! AES-256-GCM over one data packet's payload, in place, as the reference does it.
//!
//! - The 12-byte nonce is the direction's base IV with the packet's full 64-bit packet number
//!   added (wrapping) to its first 8 bytes read as a little-endian integer; the last 4 bytes
//!   are the base IV's unchanged. Packet numbers are never reused in a direction, so neither
//!   are nonces.
//! - There is no associated data: the clear header is not under the tag. Tampering with the
//!   packet number still fails (it changes the nonce), and a wrong connection id reaches the
//!   wrong key; the optional stats blob, however, is not protected at all.
//! - The sealed payload is the ciphertext (same length as the plaintext) followed by the
//!   16-byte tag.
//!
//! The cipher is `ring`'s: its AES-GCM assembly (AES-NI/VAES with CLMUL on x86-64, the ARMv8
//! crypto extensions on arm64) seals a full packet several times faster than the portable
//! RustCrypto code did, and it builds with any C compiler for every prebuilt target
//! (docs/PLATFORMS.md has the figures).

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};

use super::session_keys::{SessionKeys, IV_LEN, KEY_LEN};
use super::CryptoError;

/// Bytes the tag adds to every sealed payload.
pub const TAG_LEN: usize = 16;

/// One direction's cipher: a key schedule and a base IV.
#[derive(Clone)]
pub struct PacketCipher {
    // `LessSafeKey`: we make the nonces ourselves (one per packet number, never reused).
    aead: LessSafeKey,
    base_iv: [u8; IV_LEN],
}

impl PacketCipher {
    /// A cipher for `key` and `base_iv` (from [`SessionKeys`]).
    pub fn new(key: &[u8; KEY_LEN], base_iv: &[u8; IV_LEN]) -> Self {
        // A 32-byte key is exactly what AES-256-GCM takes, so this cannot fail.
        let key = UnboundKey::new(&AES_256_GCM, key).expect("AES-256-GCM takes a 32-byte key");
        PacketCipher {
            aead: LessSafeKey::new(key),
            base_iv: *base_iv,
        }
    }

    /// The nonce for packet number `pkt_num`.
    pub fn nonce(&self, pkt_num: u64) -> [u8; IV_LEN] {
        packet_nonce(&self.base_iv, pkt_num)
    }

    /// Encrypts `buf[..plaintext_len]` in place and writes the tag right after it; returns the
    /// sealed length (`plaintext_len + TAG_LEN`). `buf` must have room for the tag.
    pub fn seal_in_place(
        &self,
        pkt_num: u64,
        buf: &mut [u8],
        plaintext_len: usize,
    ) -> Result<usize, CryptoError> {
        let sealed_len = plaintext_len
            .checked_add(TAG_LEN)
            .filter(|&n| n <= buf.len())
            .ok_or(CryptoError::BufferTooSmall)?;
        let (text, rest) = buf.split_at_mut(plaintext_len);
        let nonce = Nonce::assume_unique_for_key(self.nonce(pkt_num));
        // ring refuses only a plaintext longer than GCM's limit (64 GiB), far above a packet.
        let tag = self
            .aead
            .seal_in_place_separate_tag(nonce, Aad::empty(), text)
            .map_err(|_| CryptoError::BufferTooSmall)?;
        rest[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(sealed_len)
    }

    /// Checks and decrypts a sealed payload (`ciphertext || tag`, all of `buf`) in place;
    /// returns the plaintext length, the plaintext being `buf[..len]`. On failure the packet
    /// must be dropped (and counted) without touching any connection state; `buf` is zeroed
    /// so unauthenticated bytes cannot be used by mistake.
    pub fn open_in_place(&self, pkt_num: u64, buf: &mut [u8]) -> Result<usize, CryptoError> {
        if buf.len() < TAG_LEN {
            return Err(CryptoError::Aead);
        }
        let nonce = Nonce::assume_unique_for_key(self.nonce(pkt_num));
        match self.aead.open_in_place(nonce, Aad::empty(), buf) {
            Ok(plain) => Ok(plain.len()),
            Err(_) => {
                buf.fill(0);
                Err(CryptoError::Aead)
            }
        }
    }
}

impl std::fmt::Debug for PacketCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PacketCipher(..)")
    }
}

/// Both directions of a session.
#[derive(Clone, Debug)]
pub struct SessionCipher {
    /// Seals the packets we send.
    pub send: PacketCipher,
    /// Opens the packets we receive.
    pub recv: PacketCipher,
}

impl SessionCipher {
    /// Key schedules for both directions of `keys`.
    pub fn new(keys: &SessionKeys) -> Self {
        SessionCipher {
            send: PacketCipher::new(&keys.send_key, &keys.send_iv),
            recv: PacketCipher::new(&keys.recv_key, &keys.recv_iv),
        }
    }
}

/// `base_iv` with `pkt_num` added to its first 8 bytes (little-endian, wrapping).
pub fn packet_nonce(base_iv: &[u8; IV_LEN], pkt_num: u64) -> [u8; IV_LEN] {
    let mut out = *base_iv;
    let mut low = [0u8; 8];
    low.copy_from_slice(&base_iv[..8]);
    let sum = u64::from_le_bytes(low).wrapping_add(pkt_num);
    out[..8].copy_from_slice(&sum.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::crypto::test_hex::hex;

    /// GCM specification (McGrew & Viega) test cases 13 and 14: AES-256, zero key, zero IV.
    /// A zero base IV with packet number 0 gives the zero nonce.
    #[test]
    fn gcm_spec_test_cases_13_and_14() {
        let c = PacketCipher::new(&[0; 32], &[0; 12]);
        let mut empty = [0u8; TAG_LEN];
        assert_eq!(c.seal_in_place(0, &mut empty, 0).unwrap(), TAG_LEN);
        assert_eq!(empty.to_vec(), hex("530f8afbc74536b9a963b4f1c4cb738b"));
        assert_eq!(c.open_in_place(0, &mut empty).unwrap(), 0);

        let mut block = [0u8; 16 + TAG_LEN];
        c.seal_in_place(0, &mut block, 16).unwrap();
        assert_eq!(
            block[..16].to_vec(),
            hex("cea7403d4d606b6e074ec5d3baf39d18")
        );
        assert_eq!(
            block[16..].to_vec(),
            hex("d0d1c8a799996bf0265b98b5d48ab919")
        );
        assert_eq!(c.open_in_place(0, &mut block).unwrap(), 16);
        assert_eq!(block[..16], [0; 16]);
    }

    #[test]
    fn nonce_adds_packet_number_little_endian() {
        let base = [0xff, 0xff, 0, 0, 0, 0, 0, 0, 9, 9, 9, 9];
        assert_eq!(packet_nonce(&base, 1), [0, 0, 1, 0, 0, 0, 0, 0, 9, 9, 9, 9]);
        // Wraps within the first 8 bytes; the last 4 never change.
        let base = [0xff; 12];
        assert_eq!(
            packet_nonce(&base, 1),
            [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]
        );
        let base = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        assert_eq!(
            packet_nonce(&base, 0x0100),
            [1, 3, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
        );
    }

    #[test]
    fn too_small_buffers() {
        let c = PacketCipher::new(&[1; 32], &[2; 12]);
        let mut buf = [0u8; 20];
        assert_eq!(
            c.seal_in_place(1, &mut buf, 5),
            Err(CryptoError::BufferTooSmall)
        );
        assert_eq!(c.open_in_place(1, &mut buf[..15]), Err(CryptoError::Aead));
    }

    fn cipher() -> PacketCipher {
        PacketCipher::new(&[0x42; 32], &[0x17; 12])
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(data in proptest::collection::vec(any::<u8>(), 0..1300),
                                pkt in any::<u64>()) {
            let c = cipher();
            let mut buf = data.clone();
            buf.resize(data.len() + TAG_LEN, 0);
            let n = c.seal_in_place(pkt, &mut buf, data.len()).unwrap();
            prop_assert_eq!(n, data.len() + TAG_LEN);
            if !data.is_empty() {
                prop_assert_ne!(&buf[..data.len()], &data[..]);
            }
            let m = c.open_in_place(pkt, &mut buf).unwrap();
            prop_assert_eq!(&buf[..m], &data[..]);
        }

        #[test]
        fn any_flipped_bit_fails(data in proptest::collection::vec(any::<u8>(), 0..200),
                                 pkt in any::<u64>(), pos in any::<prop::sample::Index>(),
                                 bit in 0u8..8) {
            let c = cipher();
            let mut buf = data.clone();
            buf.resize(data.len() + TAG_LEN, 0);
            c.seal_in_place(pkt, &mut buf, data.len()).unwrap();
            let i = pos.index(buf.len()); // ciphertext or tag
            buf[i] ^= 1 << bit;
            prop_assert_eq!(c.open_in_place(pkt, &mut buf), Err(CryptoError::Aead));
            prop_assert!(buf.iter().all(|&b| b == 0));
        }

        #[test]
        fn wrong_packet_number_or_key_fails(data in proptest::collection::vec(any::<u8>(), 0..200),
                                            pkt in any::<u64>(), delta in 1u64..) {
            let c = cipher();
            let mut buf = data.clone();
            buf.resize(data.len() + TAG_LEN, 0);
            c.seal_in_place(pkt, &mut buf, data.len()).unwrap();
            let mut copy = buf.clone();
            let moved = c.open_in_place(pkt.wrapping_add(delta), &mut copy);
            prop_assert_eq!(moved, Err(CryptoError::Aead));
            let other = PacketCipher::new(&[0x43; 32], &[0x17; 12]);
            let mut copy = buf.clone();
            prop_assert_eq!(other.open_in_place(pkt, &mut copy), Err(CryptoError::Aead));
            let other_iv = PacketCipher::new(&[0x42; 32], &[0x18; 12]);
            prop_assert_eq!(other_iv.open_in_place(pkt, &mut buf), Err(CryptoError::Aead));
        }
    }
}
