//! The per-connection key exchange: each side's signed crypt info (an ephemeral X25519 key,
//! a nonce, its protocol version and ciphers) and the derivation of the four session secrets,
//! byte for byte as the reference does it.
//!
//! # Key derivation
//!
//! Every input is written in one canonical order, **client first** for connection ids and
//! **server first** for everything else, so both sides compute the same bytes; each side then
//! takes the outputs for its own direction. ("Client" is the side that sent ConnectRequest.)
//!
//! 1. `shared = X25519(own ephemeral secret, peer's ephemeral public key)`; an all-zero
//!    result (peer sent a low-order point) aborts the handshake.
//! 2. `premaster = SHA-256(shared)`.
//! 3. `salt = server_nonce as u64 LE || client_nonce as u64 LE` (16 bytes).
//! 4. `prk = HMAC-SHA256(key = premaster, message = salt)`. This is RFC 5869's Extract with
//!    the roles of salt and input swapped: the reference keys the HMAC with the secret.
//! 5. `context = client_conn_id as u32 LE || server_conn_id as u32 LE || "Steam datagram"
//!    (14 ASCII bytes, no terminator) || server cert bytes || client cert bytes ||
//!    server crypt info bytes || client crypt info bytes`, where cert bytes are
//!    `CertificateSigned.cert` and crypt info bytes are `SessionCryptInfoSigned.info`,
//!    exactly as sent.
//! 6. RFC 5869 Expand with `prk` and info = `context`: `T1 = HMAC(prk, context || 0x01)`,
//!    `Ti = HMAC(prk, T(i-1) || context || i)` for i = 2, 3, 4.
//! 7. `T1` = AES key client to server, `T2` = AES key server to client, first 12 bytes of
//!    `T3` = base IV client to server, first 12 bytes of `T4` = base IV server to client.

use hmac::{Hmac, Mac};
use prost::Message as _;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey as XPublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::identity_key::{IdentityKey, PublicKey};
use super::CryptoError;
use crate::wire::control::{Cipher, CryptKeyType, SessionCryptInfo, SessionCryptInfoSigned};
use crate::wire::datagram::MIN_PROTOCOL_VERSION;

/// AES-256 key length.
pub const KEY_LEN: usize = 32;
/// AES-GCM IV (nonce) length.
pub const IV_LEN: usize = 12;
/// The fixed label in the key derivation context.
const CONTEXT_LABEL: &[u8; 14] = b"Steam datagram";

type HmacSha256 = Hmac<Sha256>;

/// Which end of the connection we are: the client sent ConnectRequest, the server answered
/// with ConnectOK.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sent ConnectRequest.
    Client,
    /// Sent ConnectOK.
    Server,
}

/// Our side of the key exchange for one connection: the ephemeral secret and the signed
/// crypt info that carries its public half.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct LocalCryptInfo {
    secret: StaticSecret,
    nonce: u64,
    signed: SessionCryptInfoSigned,
}

impl LocalCryptInfo {
    /// Builds and signs our crypt info. `ephemeral_secret` and `nonce` must be fresh random
    /// values for every connection (the caller draws them, e.g. with
    /// [`super::random_bytes`]). A client lists the ciphers it accepts in preference order;
    /// a server lists exactly the one it chose.
    pub fn new(
        identity_key: &IdentityKey,
        ephemeral_secret: [u8; 32],
        nonce: u64,
        ciphers: &[Cipher],
        protocol_version: u32,
    ) -> Self {
        let secret = StaticSecret::from(ephemeral_secret);
        let public = XPublicKey::from(super::fuzz_memo::cached(
            "x25519-public",
            &[&ephemeral_secret],
            || XPublicKey::from(&secret).to_bytes(),
        ));
        let info = SessionCryptInfo {
            key_type: Some(CryptKeyType::Curve25519 as i32),
            key_data: Some(public.as_bytes().to_vec()),
            nonce: Some(nonce),
            protocol_version: Some(protocol_version),
            ciphers: ciphers.iter().map(|&c| c as i32).collect(),
        };
        let bytes = info.encode_to_vec();
        let signature = identity_key.sign(&bytes);
        LocalCryptInfo {
            secret,
            nonce,
            signed: SessionCryptInfoSigned {
                info: Some(bytes),
                signature: Some(signature.to_vec()),
            },
        }
    }

    /// The message to put in ConnectRequest / ConnectOK `crypt` (resend the same one).
    pub fn signed(&self) -> &SessionCryptInfoSigned {
        &self.signed
    }

    /// The exact serialized crypt info we signed.
    pub fn info_bytes(&self) -> &[u8] {
        self.signed.info.as_deref().unwrap_or_default()
    }

    /// Derives the session keys (see the module doc). `local_cert` / `remote_cert` are the
    /// `CertificateSigned.cert` bytes each side sent. Drop `self` afterwards: the ephemeral
    /// secret is not needed again.
    pub fn derive(
        &self,
        role: Role,
        remote: &RemoteCryptInfo,
        ids: ConnectionIds,
        local_cert: &[u8],
        remote_cert: &[u8],
    ) -> Result<SessionKeys, CryptoError> {
        let (shared, contributory) = super::fuzz_memo::cached(
            "x25519",
            &[self.secret.as_bytes(), remote.public.as_bytes()],
            || {
                let shared = self.secret.diffie_hellman(&remote.public);
                (
                    Zeroizing::new(*shared.as_bytes()),
                    shared.was_contributory(),
                )
            },
        );
        if !contributory {
            return Err(CryptoError::KeyExchange);
        }
        let premaster = Zeroizing::new(<[u8; 32]>::from(Sha256::digest(&shared[..])));
        let (client_nonce, server_nonce, client_cert, server_cert, client_info, server_info) =
            match role {
                Role::Client => (
                    self.nonce,
                    remote.nonce(),
                    local_cert,
                    remote_cert,
                    self.info_bytes(),
                    &remote.info_bytes[..],
                ),
                Role::Server => (
                    remote.nonce(),
                    self.nonce,
                    remote_cert,
                    local_cert,
                    &remote.info_bytes[..],
                    self.info_bytes(),
                ),
            };
        let (client_id, server_id) = match role {
            Role::Client => (ids.local, ids.remote),
            Role::Server => (ids.remote, ids.local),
        };
        let inputs = KdfInputs {
            premaster: &premaster,
            client_nonce,
            server_nonce,
            client_conn_id: client_id,
            server_conn_id: server_id,
            client_cert,
            server_cert,
            client_info,
            server_info,
        };
        // Four HMAC-SHA256 passes over both certificates: remembered in fuzz builds, with the
        // key exchange above (see `fuzz_memo`).
        let okm = super::fuzz_memo::cached(
            "hkdf",
            &[
                &premaster[..],
                &client_nonce.to_le_bytes(),
                &server_nonce.to_le_bytes(),
                &client_id.to_le_bytes(),
                &server_id.to_le_bytes(),
                client_cert,
                server_cert,
                client_info,
                server_info,
            ],
            || inputs.expand(),
        );
        Ok(SessionKeys::from_directions(role, &okm))
    }
}

impl std::fmt::Debug for LocalCryptInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCryptInfo")
            .field("nonce", &self.nonce)
            .finish_non_exhaustive()
    }
}

/// Both halves of the connection id, from our point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionIds {
    /// The id we chose (peers write it as `to_conn_id` in packets to us).
    pub local: u32,
    /// The id the peer chose.
    pub remote: u32,
}

/// The peer's crypt info after its signature checked out.
#[derive(Clone, Debug)]
pub struct RemoteCryptInfo {
    /// Parsed crypt info; `ciphers` is filled with AES-256-GCM if the peer sent none.
    pub info: SessionCryptInfo,
    /// The exact signed bytes (key derivation input).
    pub info_bytes: Vec<u8>,
    public: XPublicKey,
}

impl RemoteCryptInfo {
    /// The peer's key derivation nonce.
    pub fn nonce(&self) -> u64 {
        self.info.nonce.unwrap_or(0)
    }

    /// The peer's protocol version (signed, so trustworthy).
    pub fn protocol_version(&self) -> u32 {
        self.info.protocol_version.unwrap_or(0)
    }

    /// The ciphers the peer listed, unknown values skipped.
    pub fn ciphers(&self) -> Vec<Cipher> {
        self.info
            .ciphers
            .iter()
            .filter_map(|&c| Cipher::try_from(c).ok())
            .collect()
    }
}

/// Checks the peer's crypt info against the key from its (verified) certificate and parses
/// it: signature, key type X25519 with 32 key bytes, protocol version at least
/// [`MIN_PROTOCOL_VERSION`].
pub fn verify_crypt_info(
    signed: &SessionCryptInfoSigned,
    cert_key: &PublicKey,
) -> Result<RemoteCryptInfo, CryptoError> {
    let bytes = signed
        .info
        .as_deref()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| CryptoError::BadCryptInfo("no crypt info".into()))?;
    cert_key.verify(bytes, signed.signature.as_deref().unwrap_or_default())?;
    let mut info = SessionCryptInfo::decode(bytes)
        .map_err(|e| CryptoError::BadCryptInfo(format!("protobuf: {e}")))?;
    if info.key_type() != CryptKeyType::Curve25519 {
        return Err(CryptoError::BadCryptInfo(
            "key type is not Curve25519".into(),
        ));
    }
    let key: [u8; 32] = info
        .key_data
        .as_deref()
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| CryptoError::BadCryptInfo("X25519 key must be 32 bytes".into()))?;
    let version = info.protocol_version.unwrap_or(0);
    if version < MIN_PROTOCOL_VERSION {
        return Err(CryptoError::OldProtocol(version));
    }
    if info.ciphers.is_empty() {
        // Old peers sent no list: they meant AES-256-GCM.
        info.ciphers.push(Cipher::Aes256Gcm as i32);
    }
    Ok(RemoteCryptInfo {
        info,
        info_bytes: bytes.to_vec(),
        public: XPublicKey::from(key),
    })
}

/// Server side: the first of our ciphers (in our preference order) that the client offers.
pub fn choose_cipher(ours: &[Cipher], client: &RemoteCryptInfo) -> Result<Cipher, CryptoError> {
    let theirs = client.ciphers();
    ours.iter()
        .copied()
        .find(|c| theirs.contains(c))
        .ok_or(CryptoError::NoCommonCipher)
}

/// Client side: the server must name exactly one cipher, and one we offered.
pub fn accept_server_cipher(
    ours: &[Cipher],
    server: &RemoteCryptInfo,
) -> Result<Cipher, CryptoError> {
    match server.info.ciphers[..] {
        [one] => Cipher::try_from(one)
            .ok()
            .filter(|c| ours.contains(c))
            .ok_or(CryptoError::NoCommonCipher),
        _ => Err(CryptoError::BadCryptInfo(
            "server must select exactly one cipher".into(),
        )),
    }
}

/// The secrets of one session, from our point of view. Wiped on drop.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SessionKeys {
    /// AES-256 key for packets we send.
    pub send_key: [u8; KEY_LEN],
    /// AES-256 key for packets we receive.
    pub recv_key: [u8; KEY_LEN],
    /// Base IV for packets we send.
    pub send_iv: [u8; IV_LEN],
    /// Base IV for packets we receive.
    pub recv_iv: [u8; IV_LEN],
}

impl SessionKeys {
    /// Picks our direction's outputs from the four expand blocks.
    fn from_directions(role: Role, okm: &[[u8; 32]; 4]) -> Self {
        let iv = |b: &[u8; 32]| -> [u8; IV_LEN] {
            let mut out = [0u8; IV_LEN];
            out.copy_from_slice(&b[..IV_LEN]);
            out
        };
        let (c2s_key, s2c_key, c2s_iv, s2c_iv) = (okm[0], okm[1], iv(&okm[2]), iv(&okm[3]));
        match role {
            Role::Client => SessionKeys {
                send_key: c2s_key,
                recv_key: s2c_key,
                send_iv: c2s_iv,
                recv_iv: s2c_iv,
            },
            Role::Server => SessionKeys {
                send_key: s2c_key,
                recv_key: c2s_key,
                send_iv: s2c_iv,
                recv_iv: c2s_iv,
            },
        }
    }
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKeys(..)")
    }
}

/// Everything the derivation reads, in canonical (client/server) terms.
struct KdfInputs<'a> {
    premaster: &'a [u8; 32],
    client_nonce: u64,
    server_nonce: u64,
    client_conn_id: u32,
    server_conn_id: u32,
    client_cert: &'a [u8],
    server_cert: &'a [u8],
    client_info: &'a [u8],
    server_info: &'a [u8],
}

impl KdfInputs<'_> {
    /// Steps 3 to 6 of the module doc: the four 32-byte expand blocks.
    fn expand(&self) -> Zeroizing<[[u8; 32]; 4]> {
        let mut salt = [0u8; 16];
        salt[..8].copy_from_slice(&self.server_nonce.to_le_bytes());
        salt[8..].copy_from_slice(&self.client_nonce.to_le_bytes());
        let prk = Zeroizing::new(hkdf_extract(self.premaster, &salt));

        let mut context = Vec::with_capacity(
            8 + CONTEXT_LABEL.len()
                + self.server_cert.len()
                + self.client_cert.len()
                + self.server_info.len()
                + self.client_info.len(),
        );
        context.extend_from_slice(&self.client_conn_id.to_le_bytes());
        context.extend_from_slice(&self.server_conn_id.to_le_bytes());
        context.extend_from_slice(CONTEXT_LABEL);
        context.extend_from_slice(self.server_cert);
        context.extend_from_slice(self.client_cert);
        context.extend_from_slice(self.server_info);
        context.extend_from_slice(self.client_info);

        let mut okm = Zeroizing::new([0u8; 128]);
        hkdf_expand(&prk, &context, &mut okm[..]);
        let mut blocks = Zeroizing::new([[0u8; 32]; 4]);
        for (block, chunk) in blocks.iter_mut().zip(okm.chunks_exact(32)) {
            block.copy_from_slice(chunk);
        }
        blocks
    }
}

/// RFC 5869 Extract: `HMAC-SHA256(key = salt, message = ikm)`.
fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(salt).expect("HMAC takes any key length");
    mac.update(ikm);
    mac.finalize().into_bytes().into()
}

/// RFC 5869 Expand, filling `out` (at most 255 blocks).
fn hkdf_expand(prk: &[u8; 32], info: &[u8], out: &mut [u8]) {
    let mut previous = Zeroizing::new([0u8; 32]);
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let mut mac = HmacSha256::new_from_slice(prk).expect("HMAC takes any key length");
        if i > 0 {
            mac.update(&previous[..]);
        }
        mac.update(info);
        mac.update(&[u8::try_from(i + 1).expect("at most 255 blocks")]);
        previous.copy_from_slice(&mac.finalize().into_bytes());
        chunk.copy_from_slice(&previous[..chunk.len()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert;
    use crate::wire::datagram::PROTOCOL_VERSION;

    use crate::crypto::test_hex::hex;

    /// RFC 5869 appendix A.1 (SHA-256, basic test case).
    #[test]
    fn hkdf_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt = hex("000102030405060708090a0b0c");
        let info = hex("f0f1f2f3f4f5f6f7f8f9");
        let prk = hkdf_extract(&salt, &ikm);
        assert_eq!(
            prk.to_vec(),
            hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
        );
        let mut okm = [0u8; 42];
        hkdf_expand(&prk, &info, &mut okm);
        assert_eq!(
            okm.to_vec(),
            hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
        );
    }

    /// RFC 7748 section 6.1: X25519 between Alice and Bob.
    #[test]
    fn x25519_rfc7748() {
        let a: [u8; 32] = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .try_into()
            .unwrap();
        let b: [u8; 32] = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
            .try_into()
            .unwrap();
        let (a, b) = (StaticSecret::from(a), StaticSecret::from(b));
        assert_eq!(
            XPublicKey::from(&a).as_bytes().to_vec(),
            hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
        );
        assert_eq!(
            XPublicKey::from(&b).as_bytes().to_vec(),
            hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
        );
        let k = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        assert_eq!(
            a.diffie_hellman(&XPublicKey::from(&b)).as_bytes().to_vec(),
            k
        );
        assert_eq!(
            b.diffie_hellman(&XPublicKey::from(&a)).as_bytes().to_vec(),
            k
        );
    }

    /// The derivation spelled out by hand from the module doc, with HMAC only, agrees with
    /// `derive` for both roles.
    #[test]
    fn derivation_matches_documented_layout() {
        let (client, server) = handshake();
        let shared = StaticSecret::from([0x11; 32])
            .diffie_hellman(&XPublicKey::from(&StaticSecret::from([0x22; 32])));
        let premaster: [u8; 32] = Sha256::digest(shared.as_bytes()).into();
        let mut salt = Vec::new();
        salt.extend_from_slice(&0x5555_0000_0000_0002u64.to_le_bytes()); // server nonce
        salt.extend_from_slice(&0xaaaa_0000_0000_0001u64.to_le_bytes()); // client nonce
        let mut mac = HmacSha256::new_from_slice(&premaster).unwrap();
        mac.update(&salt);
        let prk = mac.finalize().into_bytes();
        let mut ctx = Vec::new();
        ctx.extend_from_slice(&0x0101_0001u32.to_le_bytes());
        ctx.extend_from_slice(&0x0202_0002u32.to_le_bytes());
        ctx.extend_from_slice(b"Steam datagram");
        ctx.extend_from_slice(&server.cert_bytes);
        ctx.extend_from_slice(&client.cert_bytes);
        ctx.extend_from_slice(server.crypt.info_bytes());
        ctx.extend_from_slice(client.crypt.info_bytes());
        let mut t = Vec::new();
        let mut blocks = Vec::new();
        for i in 1u8..=4 {
            let mut mac = HmacSha256::new_from_slice(&prk).unwrap();
            mac.update(&t);
            mac.update(&ctx);
            mac.update(&[i]);
            t = mac.finalize().into_bytes().to_vec();
            blocks.push(t.clone());
        }
        let (ck, sk) = derive_both(&client, &server);
        assert_eq!(ck.send_key.to_vec(), blocks[0]);
        assert_eq!(ck.recv_key.to_vec(), blocks[1]);
        assert_eq!(ck.send_iv.to_vec(), blocks[2][..12]);
        assert_eq!(ck.recv_iv.to_vec(), blocks[3][..12]);
        assert_eq!(sk.recv_key, ck.send_key);
        assert_eq!(sk.send_key, ck.recv_key);
    }

    struct Side {
        key: IdentityKey,
        cert_bytes: Vec<u8>,
        crypt: LocalCryptInfo,
        id: u32,
    }

    fn side(seed: u8, eph: u8, nonce: u64, id: u32, ciphers: &[Cipher]) -> Side {
        let key = IdentityKey::from_seed(&[seed; 32]);
        let signed = cert::self_unsigned(&key, None, 0);
        let crypt = LocalCryptInfo::new(&key, [eph; 32], nonce, ciphers, PROTOCOL_VERSION);
        Side {
            cert_bytes: signed.cert.unwrap(),
            key,
            crypt,
            id,
        }
    }

    fn handshake() -> (Side, Side) {
        (
            side(
                1,
                0x11,
                0xaaaa_0000_0000_0001,
                0x0101_0001,
                &[Cipher::Aes256Gcm],
            ),
            side(
                2,
                0x22,
                0x5555_0000_0000_0002,
                0x0202_0002,
                &[Cipher::Aes256Gcm],
            ),
        )
    }

    fn derive_both(client: &Side, server: &Side) -> (SessionKeys, SessionKeys) {
        let at_client = verify_crypt_info(server.crypt.signed(), &server.key.public_key()).unwrap();
        let at_server = verify_crypt_info(client.crypt.signed(), &client.key.public_key()).unwrap();
        let ck = client
            .crypt
            .derive(
                Role::Client,
                &at_client,
                ConnectionIds {
                    local: client.id,
                    remote: server.id,
                },
                &client.cert_bytes,
                &server.cert_bytes,
            )
            .unwrap();
        let sk = server
            .crypt
            .derive(
                Role::Server,
                &at_server,
                ConnectionIds {
                    local: server.id,
                    remote: client.id,
                },
                &server.cert_bytes,
                &client.cert_bytes,
            )
            .unwrap();
        (ck, sk)
    }

    #[test]
    fn both_sides_agree_and_directions_differ() {
        let (client, server) = handshake();
        let (ck, sk) = derive_both(&client, &server);
        assert_eq!(ck.send_key, sk.recv_key);
        assert_eq!(ck.recv_key, sk.send_key);
        assert_eq!(ck.send_iv, sk.recv_iv);
        assert_eq!(ck.recv_iv, sk.send_iv);
        assert_ne!(ck.send_key, ck.recv_key);
        assert_ne!(ck.send_iv, ck.recv_iv);
    }

    #[test]
    fn every_context_input_changes_the_keys() {
        let (client, server) = handshake();
        let at_client = verify_crypt_info(server.crypt.signed(), &server.key.public_key()).unwrap();
        let base = |ids: ConnectionIds, lc: &[u8], rc: &[u8]| {
            client
                .crypt
                .derive(Role::Client, &at_client, ids, lc, rc)
                .unwrap()
        };
        let ids = ConnectionIds {
            local: client.id,
            remote: server.id,
        };
        let k0 = base(ids, &client.cert_bytes, &server.cert_bytes);
        let swapped = ConnectionIds {
            local: server.id,
            remote: client.id,
        };
        assert_ne!(k0, base(swapped, &client.cert_bytes, &server.cert_bytes));
        assert_ne!(k0, base(ids, &server.cert_bytes, &client.cert_bytes));
        assert_ne!(k0, base(ids, &client.cert_bytes[1..], &server.cert_bytes));
        // The same inputs with the wrong role do not interoperate.
        let wrong = client
            .crypt
            .derive(
                Role::Server,
                &at_client,
                ids,
                &client.cert_bytes,
                &server.cert_bytes,
            )
            .unwrap();
        assert_ne!(k0.send_key, wrong.send_key);
    }

    #[test]
    fn crypt_info_signature_and_fields_are_checked() {
        let (client, server) = handshake();
        // Wrong key.
        assert_eq!(
            verify_crypt_info(client.crypt.signed(), &server.key.public_key()).unwrap_err(),
            CryptoError::BadSignature
        );
        // Tampered bytes.
        let mut t = client.crypt.signed().clone();
        t.info.as_mut().unwrap()[3] ^= 1;
        assert_eq!(
            verify_crypt_info(&t, &client.key.public_key()).unwrap_err(),
            CryptoError::BadSignature
        );
        // Old protocol version, properly signed.
        let old = LocalCryptInfo::new(&client.key, [9; 32], 1, &[Cipher::Aes256Gcm], 7);
        assert_eq!(
            verify_crypt_info(old.signed(), &client.key.public_key()).unwrap_err(),
            CryptoError::OldProtocol(7)
        );
        // Fields read back.
        let r = verify_crypt_info(client.crypt.signed(), &client.key.public_key()).unwrap();
        assert_eq!(r.nonce(), 0xaaaa_0000_0000_0001);
        assert_eq!(r.protocol_version(), PROTOCOL_VERSION);
        assert_eq!(r.ciphers(), vec![Cipher::Aes256Gcm]);
    }

    #[test]
    fn low_order_peer_key_is_refused() {
        let (client, _) = handshake();
        // A properly signed crypt info carrying the all-zero (low-order) X25519 point.
        let evil_key = IdentityKey::from_seed(&[5; 32]);
        let info = SessionCryptInfo {
            key_type: Some(CryptKeyType::Curve25519 as i32),
            key_data: Some(vec![0; 32]),
            nonce: Some(1),
            protocol_version: Some(PROTOCOL_VERSION),
            ciphers: vec![Cipher::Aes256Gcm as i32],
        };
        let bytes = info.encode_to_vec();
        let signed = SessionCryptInfoSigned {
            signature: Some(evil_key.sign(&bytes).to_vec()),
            info: Some(bytes),
        };
        let remote = verify_crypt_info(&signed, &evil_key.public_key()).unwrap();
        let ids = ConnectionIds {
            local: 1,
            remote: 2,
        };
        assert_eq!(
            client
                .crypt
                .derive(Role::Client, &remote, ids, b"a", b"b")
                .unwrap_err(),
            CryptoError::KeyExchange
        );
    }

    #[test]
    fn cipher_negotiation() {
        let key = IdentityKey::from_seed(&[1; 32]);
        let offer = |ciphers: &[Cipher]| {
            let l = LocalCryptInfo::new(&key, [3; 32], 1, ciphers, PROTOCOL_VERSION);
            verify_crypt_info(l.signed(), &key.public_key()).unwrap()
        };
        let both = offer(&[Cipher::Null, Cipher::Aes256Gcm]);
        assert_eq!(
            choose_cipher(&[Cipher::Aes256Gcm], &both).unwrap(),
            Cipher::Aes256Gcm
        );
        // Empty list means AES-256-GCM (legacy peers).
        assert_eq!(offer(&[]).ciphers(), vec![Cipher::Aes256Gcm]);
        assert_eq!(
            choose_cipher(&[Cipher::Aes256Gcm], &offer(&[Cipher::Null])).unwrap_err(),
            CryptoError::NoCommonCipher
        );
        assert_eq!(
            accept_server_cipher(&[Cipher::Aes256Gcm], &offer(&[Cipher::Aes256Gcm])).unwrap(),
            Cipher::Aes256Gcm
        );
        assert!(accept_server_cipher(&[Cipher::Aes256Gcm], &both).is_err());
        assert!(accept_server_cipher(&[Cipher::Aes256Gcm], &offer(&[Cipher::Null])).is_err());
    }
}
