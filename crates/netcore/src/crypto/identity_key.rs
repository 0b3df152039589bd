//! Long-lived Ed25519 identity keys: the key a certificate names, which signs each
//! connection's crypt info (and, for a certificate authority, other certificates).
//!
//! A key is its 32-byte seed (what RFC 8032 calls the private key); the caller supplies the
//! seed, from storage or from [`super::random_bytes`], so this module never draws randomness.

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::CryptoError;

/// Length of an Ed25519 seed, public key.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// A private Ed25519 signing key. Its bytes are wiped when it is dropped.
#[derive(Clone)]
pub struct IdentityKey {
    signing: SigningKey,
}

impl IdentityKey {
    /// The key whose seed is `seed` (load a stored key, or make a new one from 32 random bytes).
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        IdentityKey {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// A fresh key from the operating system's random source (for the driver, not the core).
    pub fn generate() -> Result<Self, CryptoError> {
        let seed = zeroize::Zeroizing::new(super::random_bytes::<KEY_LEN>()?);
        Ok(Self::from_seed(&seed))
    }

    /// The seed, to store the key. Keep it secret.
    pub fn seed(&self) -> [u8; KEY_LEN] {
        self.signing.to_bytes()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// Signs `message` (pure Ed25519, deterministic).
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let public = self.signing.verifying_key().to_bytes();
        super::fuzz_memo::cached("sign", &[&public, message], || {
            self.signing.sign(message).to_bytes()
        })
    }
}

impl std::fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("IdentityKey")
            .field("public", &self.public_key())
            .finish_non_exhaustive()
    }
}

/// A public Ed25519 key, known to be a valid curve point.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses the 32-byte compressed form; fails if it is not a point on the curve.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let bytes: &[u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadKey("Ed25519 public key must be 32 bytes"))?;
        super::fuzz_memo::cached("point", &[bytes], || VerifyingKey::from_bytes(bytes).ok())
            .map(PublicKey)
            .ok_or(CryptoError::BadKey("not an Ed25519 public key"))
    }

    /// The 32-byte compressed form, as carried in `Certificate.key_data`.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    /// Checks `signature` over `message`. Uses the strict rules (no small-order keys, canonical
    /// encodings), which accept every signature an honest RFC 8032 signer produces.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), CryptoError> {
        let signature: &[u8; SIGNATURE_LEN] = signature
            .try_into()
            .map_err(|_| CryptoError::BadSignature)?;
        let key = self.0.to_bytes();
        let valid = super::fuzz_memo::cached("verify", &[&key, message, signature], || {
            let signature = ed25519_dalek::Signature::from_bytes(signature);
            self.0.verify_strict(message, &signature).is_ok()
        });
        if valid {
            Ok(())
        } else {
            Err(CryptoError::BadSignature)
        }
    }

    /// The reference's 64-bit id for this key, used in `CertificateSigned.ca_key_id` to say
    /// which CA key signed a certificate: the first 8 bytes of SHA-256 over the 32 public key
    /// bytes, read as a little-endian integer.
    pub fn key_id(&self) -> u64 {
        let digest = Sha256::digest(self.to_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(")?;
        for b in self.to_bytes() {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::crypto::test_hex::hex;

    /// RFC 8032 section 7.1, TEST 1 (empty message).
    #[test]
    fn rfc8032_test_1() {
        let seed: [u8; 32] =
            hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .try_into()
                .unwrap();
        let key = IdentityKey::from_seed(&seed);
        assert_eq!(
            key.public_key().to_bytes().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        let sig = key.sign(b"");
        assert_eq!(
            sig.to_vec(),
            hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b")
        );
        key.public_key().verify(b"", &sig).unwrap();
    }

    #[test]
    fn seed_round_trip_and_wrong_key() {
        let a = IdentityKey::from_seed(&[1; 32]);
        let b = IdentityKey::from_seed(&[2; 32]);
        assert_eq!(
            IdentityKey::from_seed(&a.seed()).public_key(),
            a.public_key()
        );
        let sig = a.sign(b"hello");
        a.public_key().verify(b"hello", &sig).unwrap();
        assert_eq!(
            b.public_key().verify(b"hello", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            a.public_key().verify(b"hellp", &sig),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            a.public_key().verify(b"hello", &sig[..63]),
            Err(CryptoError::BadSignature)
        );
        let parsed = PublicKey::from_bytes(&a.public_key().to_bytes()).unwrap();
        assert_eq!(parsed, a.public_key());
        assert!(PublicKey::from_bytes(&[0; 31]).is_err());
        assert!(!format!("{a:?}").contains(&format!("{:?}", a.seed())));
    }

    #[test]
    fn key_id_is_le_prefix_of_sha256() {
        let k = IdentityKey::from_seed(&[7; 32]).public_key();
        let d = Sha256::digest(k.to_bytes());
        assert_eq!(k.key_id().to_le_bytes(), d[..8]);
    }

    #[test]
    fn generate_gives_distinct_keys() {
        let a = IdentityKey::generate().unwrap();
        let b = IdentityKey::generate().unwrap();
        assert_ne!(a.public_key(), b.public_key());
    }
}
