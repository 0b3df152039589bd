//! The handshake's crypto steps for both sides, on top of the primitives: what goes into
//! `ConnectRequest` and `ConnectOK`, how the other side's certificate and crypt info are
//! checked, who the peer is, and the session cipher that results.
//!
//! Trust policy (ours, stricter than the reference's open-source build): a peer's identity
//! comes from its certificate only when a trusted CA signed it. A peer without such a
//! certificate is known by its source address (`ip:`), and only while unauthenticated peers
//! are allowed; whatever identity it claims is ignored. So nobody can claim a non-address
//! identity without a key and a CA certificate for it.

use std::net::SocketAddr;

use super::cert::{self, TrustPolicy, VerifiedCert};
use super::session_keys::{self, ConnectionIds, LocalCryptInfo, Role, SessionKeys};
use super::{CryptoError, IdentityKey};
use crate::end_reason::EndReason;
use crate::identity::{normalize, Identity};
use crate::wire::control::{CertificateSigned, Cipher, ConnectOk, ConnectRequest};
use crate::wire::datagram::PROTOCOL_VERSION;

/// Ciphers we offer, in preference order.
pub const OUR_CIPHERS: &[Cipher] = &[Cipher::Aes256Gcm];

/// Why the other side's handshake was refused: Steam's end reason and a description.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Why, as Steam's end reason.
    pub end_reason: EndReason,
    /// For logs and `endDebug`.
    pub debug: String,
}

impl From<CryptoError> for Refusal {
    fn from(e: CryptoError) -> Self {
        let end_reason = match e {
            CryptoError::BadCert(_)
            | CryptoError::Expired { .. }
            | CryptoError::Untrusted(_)
            | CryptoError::WrongIdentity { .. } => EndReason::RemoteBadCert,
            CryptoError::OldProtocol(_) => EndReason::RemoteBadProtocolVersion,
            _ => EndReason::RemoteBadCrypt,
        };
        Refusal {
            end_reason,
            debug: e.to_string(),
        }
    }
}

/// An endpoint's long-lived security material and policy.
#[derive(Clone)]
pub struct LocalSecurity {
    key: IdentityKey,
    cert: CertificateSigned,
    /// Our identity, when a certificate proves it (otherwise peers know us by address).
    identity: Option<Identity>,
    policy: TrustPolicy,
}

impl std::fmt::Debug for LocalSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalSecurity")
            .field("identity", &self.identity)
            .field("trusted_cas", &self.policy.trusted_cas.len())
            .field("allow_unsigned", &self.policy.allow_unsigned)
            .finish_non_exhaustive()
    }
}

impl LocalSecurity {
    /// `key` with `cert` (a CA-issued certificate for `identity`), or, without one, an
    /// unsigned certificate naming no identity (peers then know us by address).
    pub fn new(
        key: IdentityKey,
        cert: Option<CertificateSigned>,
        identity: Option<Identity>,
        policy: TrustPolicy,
    ) -> Self {
        let cert = cert.unwrap_or_else(|| cert::self_unsigned(&key, None, policy.app_id));
        LocalSecurity {
            key,
            cert,
            identity,
            policy,
        }
    }

    /// Security from the application's options: an identity key (`seed`, or a generated
    /// one), optionally a CA-issued `certificate` (protobuf `CertificateSigned` bytes) for
    /// `identity`, the CA public keys it trusts, and whether address-only peers are allowed.
    ///
    /// Refuses inconsistent options: a certificate for another key or another identity, a
    /// non-address identity without a certificate (nobody could verify it), a certificate
    /// no configured CA signed when `identity` is named, or no way at all to accept a peer.
    pub fn from_options(
        seed: Option<[u8; 32]>,
        certificate: Option<&[u8]>,
        identity: Option<Identity>,
        trusted_cas: &[[u8; 32]],
        allow_unauthenticated: bool,
    ) -> Result<Self, CryptoError> {
        use prost::Message as _;
        let key = match seed {
            Some(seed) => IdentityKey::from_seed(&seed),
            None => IdentityKey::generate()?,
        };
        let cas = trusted_cas
            .iter()
            .map(|k| super::PublicKey::from_bytes(k))
            .collect::<Result<Vec<_>, _>>()?;
        if !allow_unauthenticated && cas.is_empty() {
            return Err(CryptoError::Untrusted(
                "allowUnauthenticated is false and no trustedCAs are given: no peer could ever be accepted"
                    .into(),
            ));
        }
        let identity = identity.filter(|id| id.ip_addr().is_none());
        let cert = match certificate {
            None => {
                if let Some(id) = &identity {
                    return Err(CryptoError::BadCert(format!(
                        "identity {id} needs a certificate issued by a CA peers trust"
                    )));
                }
                None
            }
            Some(bytes) => {
                let signed = CertificateSigned::decode(bytes).map_err(|e| {
                    CryptoError::BadCert(format!("certificate does not decode: {e}"))
                })?;
                let inner = signed
                    .cert
                    .as_deref()
                    .ok_or_else(|| CryptoError::BadCert("certificate is empty".into()))?;
                let parsed = crate::wire::control::Certificate::decode(inner).map_err(|e| {
                    CryptoError::BadCert(format!("certificate does not decode: {e}"))
                })?;
                if parsed.key_data.as_deref() != Some(&key.public_key().to_bytes()[..]) {
                    return Err(CryptoError::BadCert(
                        "the certificate is for another key than privateKey".into(),
                    ));
                }
                let named = cert::cert_identity(&parsed)?;
                if named != identity {
                    return Err(CryptoError::WrongIdentity {
                        cert: named.map_or_else(|| "no identity".into(), |i| i.to_string()),
                        expected: identity
                            .as_ref()
                            .map_or_else(|| "no identity".into(), |i| i.to_string()),
                    });
                }
                Some(signed)
            }
        };
        let policy = TrustPolicy {
            trusted_cas: cas,
            allow_unsigned: allow_unauthenticated,
            app_id: 0,
        };
        Ok(Self::new(key, cert, identity, policy))
    }

    /// A generated-key endpoint that accepts unauthenticated (address-only) peers: the
    /// default, as in the reference's open-source build.
    pub fn unauthenticated(key: IdentityKey) -> Self {
        let policy = TrustPolicy {
            allow_unsigned: true,
            ..TrustPolicy::default()
        };
        Self::new(key, None, None, policy)
    }

    /// Our identity when a certificate proves it.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    fn cert_bytes(&self) -> &[u8] {
        self.cert.cert.as_deref().unwrap_or_default()
    }

    fn identity_string(&self) -> Option<String> {
        // Only a certificate can carry an identity that counts; sending a bare claim would
        // be ignored by a peer with our policy, and a reference peer might believe it.
        None
    }

    /// Who the peer is, by our policy (see the module doc).
    fn peer_identity(
        &self,
        verified: &VerifiedCert,
        from: SocketAddr,
    ) -> Result<Identity, Refusal> {
        if verified.is_authenticated() {
            if let Some(id) = &verified.identity {
                return Ok(id.clone());
            }
        }
        if self.policy.allow_unsigned {
            return Ok(Identity::Ip(normalize(from)));
        }
        let why = verified
            .unproven
            .as_deref()
            .unwrap_or("certificate is not CA-signed");
        Err(Refusal {
            end_reason: EndReason::RemoteBadCert,
            debug: format!(
                "peer has no certificate from a trusted CA ({why}); allowUnauthenticated is false, and trustedCAs decides which CAs count"
            ),
        })
    }
}

/// A certificate binding `identity` to `subject_key`, signed by the CA key `ca_seed`,
/// valid from `now_unix` for `valid_secs`: protobuf `CertificateSigned` bytes, for
/// `LocalSecurity::from_options` on the subject's endpoint.
pub fn issue_certificate(
    ca_seed: &[u8; 32],
    subject_key: &[u8; 32],
    identity: &Identity,
    now_unix: u64,
    valid_secs: u64,
) -> Result<Vec<u8>, CryptoError> {
    use prost::Message as _;
    let ca = IdentityKey::from_seed(ca_seed);
    let subject = super::PublicKey::from_bytes(subject_key)?;
    let clamp = |t: u64| u32::try_from(t).unwrap_or(u32::MAX);
    let params = cert::CertParams {
        identity: Some(identity.clone()),
        app_ids: vec![0],
        time_created: Some(clamp(now_unix)),
        time_expiry: Some(clamp(now_unix.saturating_add(valid_secs))),
    };
    Ok(cert::issue(&cert::build(&subject, &params), &ca).encode_to_vec())
}

/// The connecting side's crypto for one connection attempt.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct ClientOffer {
    crypt: LocalCryptInfo,
}

impl std::fmt::Debug for ClientOffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientOffer(..)")
    }
}

/// A finished handshake: the keys for data packets and who the peer proved to be.
pub struct Established {
    /// What seals what we send and opens what we receive (the connection builds the cipher
    /// from them while it needs it).
    pub keys: SessionKeys,
    /// The peer, by our trust policy.
    pub peer: Identity,
}

impl ClientOffer {
    /// A fresh offer: `ephemeral` and `nonce` must be new random values for every attempt.
    pub fn new(sec: &LocalSecurity, ephemeral: [u8; 32], nonce: u64) -> Self {
        ClientOffer {
            crypt: LocalCryptInfo::new(&sec.key, ephemeral, nonce, OUR_CIPHERS, PROTOCOL_VERSION),
        }
    }

    /// Puts our certificate and signed crypt info into a `ConnectRequest`.
    pub fn fill(&self, sec: &LocalSecurity, req: &mut ConnectRequest) {
        req.cert = Some(sec.cert.clone());
        req.crypt = Some(self.crypt.signed().clone());
        req.identity_string = sec.identity_string();
    }

    /// Checks the server's `ConnectOK` and derives the session. `expected` is the identity
    /// we dialled when it is not an address (the server must prove it).
    pub fn finish(
        &self,
        sec: &LocalSecurity,
        ok: &ConnectOk,
        ids: ConnectionIds,
        now_unix: u64,
        from: SocketAddr,
        expected: Option<&Identity>,
    ) -> Result<Established, Refusal> {
        let signed = ok.cert.as_ref().ok_or_else(|| Refusal {
            end_reason: EndReason::RemoteBadCert,
            debug: "ConnectOK without a certificate".into(),
        })?;
        let verified = cert::verify(signed, &sec.policy, now_unix, expected)?;
        let crypt = ok.crypt.as_ref().ok_or_else(|| Refusal {
            end_reason: EndReason::RemoteBadCrypt,
            debug: "ConnectOK without crypt info".into(),
        })?;
        let remote = session_keys::verify_crypt_info(crypt, &verified.key)?;
        session_keys::accept_server_cipher(OUR_CIPHERS, &remote)?;
        let peer = sec.peer_identity(&verified, from)?;
        if let Some(want) = expected {
            if &peer != want {
                if let Some(why) = &verified.unproven {
                    // The name may be right, but nothing we trust vouches for it: say which
                    // CA signed it and where trust is decided.
                    return Err(Refusal {
                        end_reason: EndReason::RemoteBadCert,
                        debug: format!(
                            "{want} did not prove its name: {why}; trustedCAs decides which CAs prove names"
                        ),
                    });
                }
                return Err(CryptoError::WrongIdentity {
                    cert: peer.to_string(),
                    expected: want.to_string(),
                }
                .into());
            }
        }
        let keys = self.crypt.derive(
            Role::Client,
            &remote,
            ids,
            sec.cert_bytes(),
            &verified.cert_bytes,
        )?;
        Ok(Established { keys, peer })
    }
}

/// The answering side: checks a `ConnectRequest`'s certificate and crypt info, and returns
/// the session and the crypto fields of our `ConnectOK` (certificate and crypt info).
pub fn accept_client(
    sec: &LocalSecurity,
    req: &ConnectRequest,
    ids: ConnectionIds,
    now_unix: u64,
    from: SocketAddr,
    ephemeral: [u8; 32],
    nonce: u64,
) -> Result<(Established, ConnectOk), Refusal> {
    let signed = req.cert.as_ref().ok_or_else(|| Refusal {
        end_reason: EndReason::RemoteBadCert,
        debug: "ConnectRequest without a certificate".into(),
    })?;
    let verified = cert::verify(signed, &sec.policy, now_unix, None)?;
    let crypt = req.crypt.as_ref().ok_or_else(|| Refusal {
        end_reason: EndReason::RemoteBadCrypt,
        debug: "ConnectRequest without crypt info".into(),
    })?;
    let remote = session_keys::verify_crypt_info(crypt, &verified.key)?;
    let chosen = session_keys::choose_cipher(OUR_CIPHERS, &remote)?;
    let peer = sec.peer_identity(&verified, from)?;
    let ours = LocalCryptInfo::new(&sec.key, ephemeral, nonce, &[chosen], PROTOCOL_VERSION);
    let keys = ours.derive(
        Role::Server,
        &remote,
        ids,
        sec.cert_bytes(),
        &verified.cert_bytes,
    )?;
    let ok = ConnectOk {
        cert: Some(sec.cert.clone()),
        crypt: Some(ours.signed().clone()),
        identity_string: sec.identity_string(),
        ..ConnectOk::default()
    };
    Ok((Established { keys, peer }, ok))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::cert::{CertParams, TrustPolicy};

    const NOW: u64 = 1_800_000_000;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    /// Runs both halves; returns what each side concluded.
    fn handshake(
        client: &LocalSecurity,
        server: &LocalSecurity,
        expected: Option<&Identity>,
    ) -> Result<(Established, Established), Refusal> {
        let offer = ClientOffer::new(client, [1; 32], 11);
        let mut req = ConnectRequest::default();
        offer.fill(client, &mut req);
        let (srv, ok) = accept_client(
            server,
            &req,
            ConnectionIds {
                local: 200,
                remote: 100,
            },
            NOW,
            addr("10.0.0.1:1000"),
            [2; 32],
            22,
        )?;
        let cli = offer.finish(
            client,
            &ok,
            ConnectionIds {
                local: 100,
                remote: 200,
            },
            NOW,
            addr("10.0.0.2:2000"),
            expected,
        )?;
        Ok((cli, srv))
    }

    fn ca_issued(ca: &IdentityKey, key: &IdentityKey, name: &str) -> CertificateSigned {
        let params = CertParams {
            identity: Some(Identity::generic_string(name).unwrap()),
            app_ids: vec![0],
            time_created: None,
            time_expiry: Some((NOW + 3600) as u32),
        };
        cert::issue(&cert::build(&key.public_key(), &params), ca)
    }

    #[test]
    fn unauthenticated_peers_are_known_by_address_and_keys_match() {
        let a = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[3; 32]));
        let b = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[4; 32]));
        let (cli, srv) = handshake(&a, &b, None).unwrap();
        assert_eq!(cli.peer, Identity::Ip(addr("10.0.0.2:2000")));
        assert_eq!(srv.peer, Identity::Ip(addr("10.0.0.1:1000")));
        // What the client seals, the server opens.
        let mut buf = b"hello".to_vec();
        buf.resize(5 + crate::crypto::TAG_LEN, 0);
        let (cli, srv) = (
            crate::crypto::SessionCipher::new(&cli.keys),
            crate::crypto::SessionCipher::new(&srv.keys),
        );
        let n = cli.send.seal_in_place(7, &mut buf, 5).unwrap();
        assert_eq!(srv.recv.open_in_place(7, &mut buf[..n]).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
    }

    #[test]
    fn a_ca_certificate_proves_a_name_and_a_claim_without_one_is_ignored() {
        let ca = IdentityKey::from_seed(&[9; 32]);
        let policy = TrustPolicy {
            trusted_cas: vec![ca.public_key()],
            allow_unsigned: true,
            app_id: 0,
        };
        let bob_key = IdentityKey::from_seed(&[5; 32]);
        let bob_id = Identity::generic_string("bob").unwrap();
        let bob = LocalSecurity::new(
            IdentityKey::from_seed(&[5; 32]),
            Some(ca_issued(&ca, &bob_key, "bob")),
            Some(bob_id.clone()),
            policy.clone(),
        );
        let alice =
            LocalSecurity::new(IdentityKey::from_seed(&[6; 32]), None, None, policy.clone());
        let (cli, srv) = handshake(&alice, &bob, Some(&bob_id)).unwrap();
        assert_eq!(cli.peer, bob_id, "alice dialled bob and bob proved it");
        assert_eq!(srv.peer, Identity::Ip(addr("10.0.0.1:1000")));
        // Mallory has a key but no CA certificate for "bob": dialling bob at her address fails.
        let mallory_key = IdentityKey::from_seed(&[7; 32]);
        let self_signed = cert::self_unsigned(&mallory_key, Some(&bob_id), 0);
        let mallory =
            LocalSecurity::new(mallory_key, Some(self_signed), Some(bob_id.clone()), policy);
        let err = handshake(&alice, &mallory, Some(&bob_id))
            .err()
            .expect("refused");
        assert_eq!(err.end_reason, EndReason::RemoteBadCert);
    }

    #[test]
    fn without_unauthenticated_peers_a_certificate_is_required() {
        let strict = TrustPolicy {
            trusted_cas: vec![IdentityKey::from_seed(&[9; 32]).public_key()],
            allow_unsigned: false,
            app_id: 0,
        };
        let server = LocalSecurity::new(IdentityKey::from_seed(&[4; 32]), None, None, strict);
        let client = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[3; 32]));
        let err = handshake(&client, &server, None).err().expect("refused");
        assert_eq!(err.end_reason, EndReason::RemoteBadCert);
    }

    #[test]
    fn tampered_crypt_info_is_bad_crypt() {
        let a = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[3; 32]));
        let b = LocalSecurity::unauthenticated(IdentityKey::from_seed(&[4; 32]));
        let offer = ClientOffer::new(&a, [1; 32], 11);
        let mut req = ConnectRequest::default();
        offer.fill(&a, &mut req);
        if let Some(info) = req.crypt.as_mut().and_then(|c| c.info.as_mut()) {
            if let Some(last) = info.last_mut() {
                *last ^= 1;
            }
        }
        let err = accept_client(
            &b,
            &req,
            ConnectionIds {
                local: 2,
                remote: 1,
            },
            NOW,
            addr("10.0.0.1:1"),
            [2; 32],
            3,
        )
        .err()
        .expect("refused");
        assert_eq!(err.end_reason, EndReason::RemoteBadCrypt);
    }

    #[test]
    fn options_are_checked_for_consistency() {
        let ca = [9u8; 32];
        let ca_pub = IdentityKey::from_seed(&ca).public_key().to_bytes();
        let seed = [5u8; 32];
        let subject = IdentityKey::from_seed(&seed).public_key().to_bytes();
        let bob = Identity::generic_string("bob").unwrap();
        let cert = issue_certificate(&ca, &subject, &bob, NOW, 3600).unwrap();
        let ok = LocalSecurity::from_options(
            Some(seed),
            Some(&cert),
            Some(bob.clone()),
            &[ca_pub],
            true,
        )
        .unwrap();
        assert_eq!(ok.identity(), Some(&bob));
        // Someone else's certificate, a mismatched name, a name without certificate, garbage.
        assert!(LocalSecurity::from_options(
            Some([6; 32]),
            Some(&cert),
            Some(bob.clone()),
            &[],
            true
        )
        .is_err());
        let alice = Identity::generic_string("alice").unwrap();
        assert!(LocalSecurity::from_options(
            Some(seed),
            Some(&cert),
            Some(alice.clone()),
            &[],
            true
        )
        .is_err());
        assert!(LocalSecurity::from_options(Some(seed), None, Some(alice), &[], true).is_err());
        assert!(
            LocalSecurity::from_options(Some(seed), Some(b"nonsense"), Some(bob), &[], true)
                .is_err()
        );
        // Nothing could ever be accepted.
        assert!(LocalSecurity::from_options(None, None, None, &[], false).is_err());
        // An address identity needs nothing.
        let ip = Identity::Ip("1.2.3.4:5".parse().unwrap());
        assert!(LocalSecurity::from_options(None, None, Some(ip), &[], true).is_ok());
    }
}
