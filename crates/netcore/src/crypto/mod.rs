//! Connection security as the reference protocol does it: Ed25519 identity keys and
//! certificates, a signed ephemeral X25519 exchange per connection, HMAC-SHA256 key
//! derivation, and AES-256-GCM on every data packet.
//!
//! Pure like the rest of the core: no clock (callers pass Unix seconds) and no hidden
//! randomness (callers pass seeds, ephemeral secrets and nonces; [`random_bytes`] draws them
//! from the operating system for the driver).
//!
//! | file | mechanism |
//! |---|---|
//! | [`identity_key`] | Ed25519 keys, signatures, the reference's 64-bit key id |
//! | [`cert`] | certificates: build, CA-sign or leave unsigned, verify; peer identity |
//! | [`session_keys`] | signed crypt info, cipher choice, key derivation |
//! | [`aead`] | per-packet AES-256-GCM seal/open in place |
//!
//! # What is protected, what is not
//!
//! - **Protected:** the SNP payload of every data packet (confidential and authenticated,
//!   bound to its packet number and to this session's keys), so data cannot be read, forged,
//!   altered or moved to another packet number or connection. Replays decrypt fine: the
//!   receiver's packet number window must drop them.
//! - **Authenticated only with a trusted CA:** who the peer is. With an unsigned certificate
//!   (address-only peers, or no CA configured) the exchange resists passive eavesdropping
//!   only; an active man in the middle can run a separate session with each side.
//! - **Not protected:** the clear data packet header and its optional stats blob (it can be
//!   altered or stripped), and every control message (ChallengeRequest/Reply, ConnectRequest,
//!   ConnectOK outside the signed cert and crypt info, ConnectionClosed, NoConnection): they
//!   can be spoofed, so an off-path attacker who learns the connection ids can still close
//!   or stall a connection. Packet sizes and timing are visible.
//!
//! # How the handshake uses it (integration notes)
//!
//! Once per endpoint: an [`IdentityKey`] (stored seed or generated) and our
//! `CertificateSigned` (CA-issued with [`cert::issue`], or [`cert::self_unsigned`] with our
//! identity, or with `None` for an `ip:` endpoint; app id 0 unless configured).
//! `private_key_data` is never sent.
//!
//! 1. **ChallengeRequest / ChallengeReply** carry no crypto.
//! 2. **Client, on ChallengeReply:** draw a fresh 32-byte ephemeral secret and a random
//!    u64 nonce; build [`LocalCryptInfo`] with our ciphers in preference order
//!    (`[Aes256Gcm]`) and protocol 13. ConnectRequest: `cert` = our
//!    certificate, `crypt` = `local.signed()`, `identity_string` = our identity only if the
//!    certificate names none (never an `ip:` identity), `client_connection_id` as today. Every
//!    resend carries the same `crypt`.
//! 3. **Server, on a ConnectRequest with a valid challenge:** `cert::verify(req.cert,
//!    policy, now, None)`, then [`verify_crypt_info`](session_keys::verify_crypt_info)`(
//!    req.crypt, &verified.key)`, then [`cert::peer_identity`]`(&verified,
//!    req.identity_string, from)`; refuse on any error (end reasons: 4002 bad crypt,
//!    4003 bad cert, 4006 old protocol; no state is kept).
//!    [`choose_cipher`](session_keys::choose_cipher) from our list; build our
//!    `LocalCryptInfo` with fresh randomness and exactly `[chosen]`; derive with
//!    `Role::Server`, `ConnectionIds { local: server id, remote: client id }`, our cert bytes
//!    and the client's. ConnectOK: `cert` = ours, `crypt` = our signed info,
//!    `identity_string` as for the client, `server_connection_id`. Keep the signed info and
//!    answer a repeated ConnectRequest with the identical ConnectOK; drop the
//!    `LocalCryptInfo` itself once keys exist.
//! 4. **Client, on ConnectOK:** verify the server's cert with `expected` = the identity we
//!    dialled (`None` when we dialled an `ip:` identity: a peer behind NAT may not know its
//!    outside address), its crypt info,
//!    [`accept_server_cipher`](session_keys::accept_server_cipher) (exactly one, one we
//!    offered); resolve its identity with `peer_identity` and, for a non-`ip:` target,
//!    check it is the one dialled; derive with `Role::Client`,
//!    `ConnectionIds { local: client id, remote: server id }`. Only then is it Connected.
//! 5. **Data:** build [`SessionCipher`] from the keys. Seal the SNP frames with `send` and
//!    the packet's full 64-bit packet number, after the header (and stats blob); open with
//!    `recv` after widening the received number. The replay window may be *checked* first
//!    (cheap rejection of duplicates), but nothing may be *updated* (window, acks, timeouts,
//!    stats blob) until the open succeeded; a failure drops and counts the packet. Since
//!    protocol 10, ConnectRequest and ConnectOK implicitly use packet number 1, so data
//!    packets start at 2 in each direction.
//! 6. **Simultaneous open** (PROTOCOL.md section 9): the side that becomes the answering
//!    side is the server of the surviving connection; it must verify the peer's
//!    ConnectRequest and make a new server crypt info (one cipher) as in step 3, not reuse
//!    its client one.
//! 7. **Unencrypted** (`Cipher::Null`, only if both sides list it): no `SessionCipher`; the
//!    payload is the plaintext and the tag is absent.

pub mod aead;
pub mod cert;
mod fuzz_memo;
pub mod identity_key;
pub mod session_keys;
pub mod session_setup;

/// Hex test vectors (from the primitives' public specifications) for the modules' tests.
#[cfg(test)]
mod test_hex {
    /// Decodes a hex string (test input only).
    pub fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
}

pub use aead::{PacketCipher, SessionCipher, TAG_LEN};
pub use cert::{CertParams, TrustPolicy, VerifiedCert};
pub use identity_key::{IdentityKey, PublicKey};
pub use session_keys::{ConnectionIds, LocalCryptInfo, RemoteCryptInfo, Role, SessionKeys};

/// Why a crypto step failed. Handshake errors end the attempt; [`CryptoError::Aead`] on a
/// data packet only drops that packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// A key is malformed or of the wrong type.
    #[error("bad key: {0}")]
    BadKey(&'static str),
    /// A signature is missing, malformed or does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A certificate is malformed or not acceptable.
    #[error("bad certificate: {0}")]
    BadCert(String),
    /// A CA-signed certificate expired.
    #[error("certificate expired at {expiry}, now {now}")]
    Expired {
        /// `time_expiry` (0 if absent).
        expiry: u64,
        /// The time checked against.
        now: u64,
    },
    /// No trusted CA vouches for the certificate, and unsigned ones are not allowed.
    #[error("certificate not trusted: {0}")]
    Untrusted(String),
    /// The certificate names someone other than the peer we expected.
    #[error("certificate was issued to {cert}, not {expected}")]
    WrongIdentity {
        /// Identity in the certificate.
        cert: String,
        /// Identity expected.
        expected: String,
    },
    /// The crypt info is malformed.
    #[error("bad crypt info: {0}")]
    BadCryptInfo(String),
    /// The peer's protocol version is below the minimum we accept.
    #[error("peer protocol version {0} is too old")]
    OldProtocol(u32),
    /// No cipher acceptable to both sides.
    #[error("no cipher acceptable to both sides")]
    NoCommonCipher,
    /// The key exchange gave no shared secret (low-order public key).
    #[error("key exchange failed")]
    KeyExchange,
    /// A packet failed authentication.
    #[error("packet failed authentication")]
    Aead,
    /// The buffer has no room for the tag.
    #[error("buffer too small")]
    BufferTooSmall,
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
}

/// `N` bytes from the operating system's random source: for the driver to draw identity
/// seeds, ephemeral secrets and nonces. The core itself never calls it.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|_| CryptoError::Random)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::wire::control::Cipher;
    use crate::wire::datagram::PROTOCOL_VERSION;

    const NOW: u64 = 1_700_000_000;

    /// The whole handshake as the integration notes describe it, with CA-issued certs, then
    /// packets both ways.
    #[test]
    fn end_to_end_handshake_and_packets() {
        let ca = IdentityKey::from_seed(&[9; 32]);
        let policy = TrustPolicy {
            trusted_cas: vec![ca.public_key()],
            allow_unsigned: false,
            app_id: 480,
        };
        let mk = |seed: u8, name: &str| {
            let key = IdentityKey::from_seed(&[seed; 32]);
            let c = cert::build(
                &key.public_key(),
                &CertParams {
                    identity: Some(name.parse::<Identity>().unwrap()),
                    app_ids: vec![480],
                    time_created: Some(NOW as u32),
                    time_expiry: Some(NOW as u32 + 86400),
                },
            );
            (key, cert::issue(&c, &ca))
        };
        let (ckey, ccert) = mk(1, "str:client");
        let (skey, scert) = mk(2, "str:server");
        let (cid, sid) = (0x1234_5678, 0x9abc_def0);
        let ours = [Cipher::Aes256Gcm];
        let from = "192.0.2.1:27015".parse().unwrap();

        // Client -> ConnectRequest.
        let ccrypt = LocalCryptInfo::new(&ckey, [0x31; 32], 11, &ours, PROTOCOL_VERSION);

        // Server.
        let vc = cert::verify(&ccert, &policy, NOW, None).unwrap();
        assert!(vc.is_authenticated());
        let rc = session_keys::verify_crypt_info(ccrypt.signed(), &vc.key).unwrap();
        assert_eq!(
            cert::peer_identity(&vc, None, from).unwrap(),
            "str:client".parse::<Identity>().unwrap()
        );
        let chosen = session_keys::choose_cipher(&ours, &rc).unwrap();
        let scrypt = LocalCryptInfo::new(&skey, [0x32; 32], 22, &[chosen], PROTOCOL_VERSION);
        let skeys = scrypt
            .derive(
                Role::Server,
                &rc,
                ConnectionIds {
                    local: sid,
                    remote: cid,
                },
                scert.cert.as_deref().unwrap(),
                &vc.cert_bytes,
            )
            .unwrap();

        // Client, on ConnectOK.
        let expected: Identity = "str:server".parse().unwrap();
        let vs = cert::verify(&scert, &policy, NOW, Some(&expected)).unwrap();
        let rs = session_keys::verify_crypt_info(scrypt.signed(), &vs.key).unwrap();
        assert_eq!(
            session_keys::accept_server_cipher(&ours, &rs).unwrap(),
            Cipher::Aes256Gcm
        );
        let ckeys = ccrypt
            .derive(
                Role::Client,
                &rs,
                ConnectionIds {
                    local: cid,
                    remote: sid,
                },
                ccert.cert.as_deref().unwrap(),
                &vs.cert_bytes,
            )
            .unwrap();
        assert_eq!(ckeys.send_key, skeys.recv_key);

        let (c, s) = (SessionCipher::new(&ckeys), SessionCipher::new(&skeys));
        for (pkt, (a, b)) in [(&c, &s), (&s, &c)].into_iter().enumerate() {
            let pkt = pkt as u64 + 2;
            let mut buf = [0u8; 64];
            buf[..5].copy_from_slice(b"hello");
            let n = a.send.seal_in_place(pkt, &mut buf, 5).unwrap();
            // Our own receive direction cannot open what we sent.
            let mut mirror = buf;
            assert!(a.recv.open_in_place(pkt, &mut mirror[..n]).is_err());
            let m = b.recv.open_in_place(pkt, &mut buf[..n]).unwrap();
            assert_eq!(&buf[..m], b"hello");
        }
    }

    #[test]
    fn random_bytes_differ() {
        assert_ne!(random_bytes::<32>().unwrap(), random_bytes::<32>().unwrap());
    }
}
