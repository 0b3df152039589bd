//! Certificates: "this Ed25519 public key belongs to this identity, for these apps, until
//! then", as the reference's `CertificateSigned` / `Certificate` protobufs.
//!
//! A certificate is either **CA-signed** (`ca_key_id` names the signing key, `ca_signature`
//! covers the serialized `cert` bytes exactly) or **unsigned** (no CA fields). The reference
//! uses unsigned certificates whenever there is no certificate authority, in particular for
//! peers known only by address: such a certificate still binds the crypt info signature to
//! a key, so the session is encrypted, but it proves nothing about who holds the key.
//!
//! Verification follows the reference's order of checks (see [`verify`]); the caller decides
//! with [`TrustPolicy::allow_unsigned`] whether unauthenticated peers are acceptable.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use prost::Message as _;

use super::identity_key::{IdentityKey, PublicKey};
use super::CryptoError;
use crate::identity::Identity;
use crate::wire::control::{CertKeyType, Certificate, CertificateSigned, IdentityLegacyBinary};

/// What goes into a new certificate besides the key.
#[derive(Clone, Debug, Default)]
pub struct CertParams {
    /// The owner; `None` for an anonymous certificate (the peer is then known by address).
    pub identity: Option<Identity>,
    /// Apps the key may be used for. The reference requires at least one when the
    /// certificate names an identity.
    pub app_ids: Vec<u32>,
    /// Unix seconds when issued.
    pub time_created: Option<u32>,
    /// Unix seconds after which the certificate is refused (checked for CA-signed ones).
    pub time_expiry: Option<u32>,
}

/// The unsigned `Certificate` for `key` with `params`.
pub fn build(key: &PublicKey, params: &CertParams) -> Certificate {
    Certificate {
        key_type: Some(CertKeyType::Ed25519 as i32),
        key_data: Some(key.to_bytes().to_vec()),
        identity_string: params.identity.as_ref().map(|i| i.to_string()),
        app_ids: params.app_ids.clone(),
        time_created: params.time_created,
        time_expiry: params.time_expiry,
        ..Default::default()
    }
}

/// Serializes `cert` once and signs those bytes with the CA key `ca`.
pub fn issue(cert: &Certificate, ca: &IdentityKey) -> CertificateSigned {
    let bytes = cert.encode_to_vec();
    let signature = ca.sign(&bytes);
    CertificateSigned {
        cert: Some(bytes),
        ca_key_id: Some(ca.public_key().key_id()),
        ca_signature: Some(signature.to_vec()),
        private_key_data: None,
    }
}

/// Wraps `cert` without a CA signature.
pub fn unsigned(cert: &Certificate) -> CertificateSigned {
    CertificateSigned {
        cert: Some(cert.encode_to_vec()),
        ..Default::default()
    }
}

/// The certificate the reference makes for itself when it has no CA: the key, the identity
/// (none for an address-only peer), the one app id, no validity times, no signature.
pub fn self_unsigned(
    key: &IdentityKey,
    identity: Option<&Identity>,
    app_id: u32,
) -> CertificateSigned {
    let params = CertParams {
        identity: identity.cloned(),
        app_ids: vec![app_id],
        ..Default::default()
    };
    unsigned(&build(&key.public_key(), &params))
}

/// What a receiver accepts.
#[derive(Clone, Debug, Default)]
pub struct TrustPolicy {
    /// CA public keys whose signatures make a certificate authenticated (found by
    /// [`PublicKey::key_id`]). They are roots: no chain, no expiry of their own.
    pub trusted_cas: Vec<PublicKey>,
    /// Accept certificates without a valid trusted CA signature (the reference's
    /// `IP_AllowWithoutAuth`; always on in its open-source build). A certificate whose CA
    /// signature fails is then treated as unsigned, as the reference does.
    pub allow_unsigned: bool,
    /// Our app id; a certificate restricted to apps must list it.
    pub app_id: u32,
}

/// A certificate that passed [`verify`].
#[derive(Clone, Debug)]
pub struct VerifiedCert {
    /// The exact serialized certificate, as received (key derivation input).
    pub cert_bytes: Vec<u8>,
    /// The parsed certificate.
    pub cert: Certificate,
    /// The key that must sign the peer's crypt info.
    pub key: PublicKey,
    /// The identity the certificate names; `None` if it names none or the anonymous
    /// local-host identity.
    pub identity: Option<Identity>,
    /// The trusted CA key that signed it; `None` for an unauthenticated certificate.
    pub ca_key_id: Option<u64>,
    /// Why an unauthenticated certificate proves nothing (`is not signed by a CA`, `is
    /// signed by CA key id N, which is not in trustedCAs`, ...), for error messages.
    pub unproven: Option<String>,
}

impl VerifiedCert {
    /// Whether a trusted CA vouches for the key (otherwise the peer is unauthenticated).
    pub fn is_authenticated(&self) -> bool {
        self.ca_key_id.is_some()
    }
}

/// Checks a received certificate, in the reference's order:
///
/// 1. `cert` bytes must be present.
/// 2. If a CA signature is present: `ca_key_id` must name a trusted CA, the signature must
///    verify over the `cert` bytes, and `time_expiry` must not be before `now_unix` (a missing
///    expiry counts as 0). If any of this fails, the certificate is refused, or, with
///    `allow_unsigned`, treated as unsigned.
/// 3. Without a (valid) CA signature the certificate is refused unless `allow_unsigned`.
/// 4. The identity it names (if any, and not the anonymous local host) must equal
///    `expected` when that is known, and the certificate must then list at least one app id.
///    A CA-signed certificate must name an identity.
/// 5. If it lists app ids, `policy.app_id` must be among them.
/// 6. The key must be an Ed25519 key.
pub fn verify(
    signed: &CertificateSigned,
    policy: &TrustPolicy,
    now_unix: u64,
    expected: Option<&Identity>,
) -> Result<VerifiedCert, CryptoError> {
    let bytes = signed
        .cert
        .as_deref()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| CryptoError::BadCert("no certificate".into()))?;

    let mut ca_key_id = None;
    let mut unproven = None;
    if signed.ca_signature.is_some() {
        match check_ca_signature(signed, bytes, policy, now_unix) {
            Ok(id) => ca_key_id = Some(id),
            Err(e) if !policy.allow_unsigned => return Err(e),
            Err(e) => unproven = Some(e.to_string()),
        }
    } else if !policy.allow_unsigned {
        return Err(CryptoError::Untrusted(
            "certificate is not CA-signed".into(),
        ));
    } else {
        unproven = Some("certificate is not CA-signed".into());
    }

    let cert =
        Certificate::decode(bytes).map_err(|e| CryptoError::BadCert(format!("protobuf: {e}")))?;

    let identity = cert_identity(&cert)?;
    match &identity {
        Some(id) => {
            if let Some(exp) = expected {
                if id != exp {
                    return Err(CryptoError::WrongIdentity {
                        cert: id.to_string(),
                        expected: exp.to_string(),
                    });
                }
            }
            if cert.app_ids.is_empty() {
                return Err(CryptoError::BadCert(
                    "a certificate naming an identity must be bound to an app id".into(),
                ));
            }
        }
        None if ca_key_id.is_some() => {
            return Err(CryptoError::BadCert(
                "a CA-signed certificate must name an identity".into(),
            ));
        }
        None => {}
    }

    if !cert.app_ids.is_empty() && !cert.app_ids.contains(&policy.app_id) {
        return Err(CryptoError::BadCert(format!(
            "certificate is not valid for app {}",
            policy.app_id
        )));
    }

    if cert.key_type() != CertKeyType::Ed25519 {
        return Err(CryptoError::BadKey("certificate key is not Ed25519"));
    }
    let key = PublicKey::from_bytes(cert.key_data.as_deref().unwrap_or_default())?;

    Ok(VerifiedCert {
        cert_bytes: bytes.to_vec(),
        cert,
        key,
        identity,
        ca_key_id,
        unproven,
    })
}

/// The key ids of the trusted CAs, for messages (`none` when there are none).
pub fn trusted_ids(policy: &TrustPolicy) -> String {
    if policy.trusted_cas.is_empty() {
        return "none".into();
    }
    policy
        .trusted_cas
        .iter()
        .map(|k| k.key_id().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Step 2 of [`verify`]: returns the CA key id if the signature is trusted and current.
fn check_ca_signature(
    signed: &CertificateSigned,
    bytes: &[u8],
    policy: &TrustPolicy,
    now_unix: u64,
) -> Result<u64, CryptoError> {
    let id = signed.ca_key_id.unwrap_or(0);
    if id == 0 {
        return Err(CryptoError::Untrusted("missing CA key id".into()));
    }
    let ca = policy
        .trusted_cas
        .iter()
        .find(|k| k.key_id() == id)
        .ok_or_else(|| {
            CryptoError::Untrusted(format!(
                "certificate is signed by CA key id {id}, which is not in trustedCAs (trusted: {})",
                trusted_ids(policy)
            ))
        })?;
    ca.verify(bytes, signed.ca_signature.as_deref().unwrap_or_default())?;
    let cert =
        Certificate::decode(bytes).map_err(|e| CryptoError::BadCert(format!("protobuf: {e}")))?;
    let expiry = u64::from(cert.time_expiry.unwrap_or(0));
    if expiry < now_unix {
        return Err(CryptoError::Expired {
            expiry,
            now: now_unix,
        });
    }
    Ok(id)
}

/// The identity a certificate names: `identity_string`, else the legacy binary form, else
/// the legacy SteamID; `None` if it names none, or names the anonymous local host.
pub fn cert_identity(cert: &Certificate) -> Result<Option<Identity>, CryptoError> {
    if let Some(text) = &cert.identity_string {
        return parse_identity_text(text);
    }
    if let Some(legacy) = &cert.legacy_identity_binary {
        return legacy_identity(legacy);
    }
    match cert.legacy_steam_id {
        Some(id) => Identity::steam_id(id)
            .map(Some)
            .map_err(|e| CryptoError::BadCert(e.to_string())),
        None => Ok(None),
    }
}

/// Parses an identity's text form as found in certificates and handshake messages. The
/// reference writes an address identity without a port when the port is 0 (`ip:::1`), and
/// treats a loopback address identity as "anonymous": both become `None` here.
pub fn parse_identity_text(text: &str) -> Result<Option<Identity>, CryptoError> {
    let bad = |e: String| CryptoError::BadCert(format!("identity {text:?}: {e}"));
    if let Some(rest) = text.strip_prefix("ip:") {
        let addr = match SocketAddr::from_str(rest) {
            Ok(a) => a,
            Err(_) => {
                let bare = rest.trim_start_matches('[').trim_end_matches(']');
                let ip = IpAddr::from_str(bare).map_err(|e| bad(e.to_string()))?;
                SocketAddr::new(ip, 0)
            }
        };
        let addr = crate::identity::normalize(addr);
        if addr.ip().is_loopback() {
            return Ok(None);
        }
        return Ok(Some(Identity::Ip(addr)));
    }
    Identity::from_str(text)
        .map(Some)
        .map_err(|e| bad(e.to_string()))
}

fn legacy_identity(legacy: &IdentityLegacyBinary) -> Result<Option<Identity>, CryptoError> {
    let bad = |e: crate::identity::IdentityError| CryptoError::BadCert(e.to_string());
    if let Some(id) = legacy.steam_id {
        return Identity::steam_id(id).map(Some).map_err(bad);
    }
    if let Some(s) = &legacy.generic_string {
        return Identity::generic_string(s).map(Some).map_err(bad);
    }
    if let Some(b) = &legacy.generic_bytes {
        return Identity::generic_bytes(b).map(Some).map_err(bad);
    }
    if legacy.ipv6_and_port.is_some() {
        return Err(CryptoError::BadCert(
            "legacy binary address identities are not supported".into(),
        ));
    }
    Ok(None)
}

/// Who the peer is, from what the handshake message and certificate say, as the reference
/// decides it for a UDP connection:
/// - the certificate's identity if it names one;
/// - else the message's `identity_string`, which may not be a specific address (a peer
///   claiming an address must put it in a certificate);
/// - else (nothing, or the anonymous local host) the address the message came from.
pub fn peer_identity(
    cert: &VerifiedCert,
    message_identity: Option<&str>,
    from: SocketAddr,
) -> Result<Identity, CryptoError> {
    if let Some(id) = &cert.identity {
        return Ok(id.clone());
    }
    let claimed = match message_identity {
        Some(text) => parse_identity_text(text)?,
        None => None,
    };
    match claimed {
        Some(Identity::Ip(_)) => Err(CryptoError::BadCert(
            "a specific address identity must be in the certificate".into(),
        )),
        Some(id) => Ok(id),
        None => Ok(Identity::Ip(crate::identity::normalize(from))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn alice() -> Identity {
        "str:alice".parse().unwrap()
    }

    fn ca_policy(ca: &IdentityKey) -> TrustPolicy {
        TrustPolicy {
            trusted_cas: vec![ca.public_key()],
            allow_unsigned: false,
            app_id: 480,
        }
    }

    fn alice_cert(key: &IdentityKey, expiry: u32) -> Certificate {
        build(
            &key.public_key(),
            &CertParams {
                identity: Some(alice()),
                app_ids: vec![480],
                time_created: Some((NOW - 10) as u32),
                time_expiry: Some(expiry),
            },
        )
    }

    #[test]
    fn ca_signed_round_trip() {
        let ca = IdentityKey::from_seed(&[1; 32]);
        let key = IdentityKey::from_seed(&[2; 32]);
        let signed = issue(&alice_cert(&key, (NOW + 3600) as u32), &ca);
        assert_eq!(signed.ca_key_id, Some(ca.public_key().key_id()));
        let v = verify(&signed, &ca_policy(&ca), NOW, Some(&alice())).unwrap();
        assert!(v.is_authenticated());
        assert_eq!(v.key, key.public_key());
        assert_eq!(v.identity, Some(alice()));
        assert_eq!(&v.cert_bytes, signed.cert.as_ref().unwrap());
        // Expected identity unknown (the server side): still fine, identity reported.
        let v = verify(&signed, &ca_policy(&ca), NOW, None).unwrap();
        assert_eq!(v.identity, Some(alice()));
    }

    #[test]
    fn wrong_identity_is_refused() {
        let ca = IdentityKey::from_seed(&[1; 32]);
        let key = IdentityKey::from_seed(&[2; 32]);
        let signed = issue(&alice_cert(&key, (NOW + 3600) as u32), &ca);
        let bob: Identity = "str:bob".parse().unwrap();
        assert!(matches!(
            verify(&signed, &ca_policy(&ca), NOW, Some(&bob)),
            Err(CryptoError::WrongIdentity { .. })
        ));
    }

    #[test]
    fn expired_cert_is_refused() {
        let ca = IdentityKey::from_seed(&[1; 32]);
        let key = IdentityKey::from_seed(&[2; 32]);
        let signed = issue(&alice_cert(&key, (NOW - 1) as u32), &ca);
        assert_eq!(
            verify(&signed, &ca_policy(&ca), NOW, Some(&alice())).unwrap_err(),
            CryptoError::Expired {
                expiry: NOW - 1,
                now: NOW
            }
        );
        // Expiring exactly now is still valid (the reference refuses expiry < now).
        let signed = issue(&alice_cert(&key, NOW as u32), &ca);
        verify(&signed, &ca_policy(&ca), NOW, Some(&alice())).unwrap();
    }

    #[test]
    fn untrusted_ca_and_bad_signature_are_refused() {
        let ca = IdentityKey::from_seed(&[1; 32]);
        let rogue = IdentityKey::from_seed(&[3; 32]);
        let key = IdentityKey::from_seed(&[2; 32]);
        let cert = alice_cert(&key, (NOW + 3600) as u32);

        let by_rogue = issue(&cert, &rogue);
        assert!(matches!(
            verify(&by_rogue, &ca_policy(&ca), NOW, None),
            Err(CryptoError::Untrusted(_))
        ));

        // Rogue signature presented under the trusted CA's id.
        let mut forged = by_rogue.clone();
        forged.ca_key_id = Some(ca.public_key().key_id());
        assert_eq!(
            verify(&forged, &ca_policy(&ca), NOW, None).unwrap_err(),
            CryptoError::BadSignature
        );

        // Tampered certificate bytes (key swapped) under a genuine signature.
        let mut tampered = issue(&cert, &ca);
        let mut c = Certificate::decode(tampered.cert.as_deref().unwrap()).unwrap();
        c.key_data = Some(rogue.public_key().to_bytes().to_vec());
        tampered.cert = Some(c.encode_to_vec());
        assert_eq!(
            verify(&tampered, &ca_policy(&ca), NOW, None).unwrap_err(),
            CryptoError::BadSignature
        );

        // Unsigned is refused when the policy wants a CA.
        assert!(matches!(
            verify(&unsigned(&cert), &ca_policy(&ca), NOW, None),
            Err(CryptoError::Untrusted(_))
        ));
    }

    #[test]
    fn allow_unsigned_downgrades_bad_ca_signatures() {
        let ca = IdentityKey::from_seed(&[1; 32]);
        let rogue = IdentityKey::from_seed(&[3; 32]);
        let key = IdentityKey::from_seed(&[2; 32]);
        let mut policy = ca_policy(&ca);
        policy.allow_unsigned = true;
        let v = verify(
            &issue(&alice_cert(&key, (NOW + 3600) as u32), &rogue),
            &policy,
            NOW,
            Some(&alice()),
        )
        .unwrap();
        assert!(!v.is_authenticated());
        // Wrong identity is refused even when unsigned.
        let bob: Identity = "str:bob".parse().unwrap();
        assert!(verify(
            &issue(&alice_cert(&key, (NOW + 3600) as u32), &rogue),
            &policy,
            NOW,
            Some(&bob)
        )
        .is_err());
    }

    #[test]
    fn self_unsigned_for_address_peers() {
        let key = IdentityKey::from_seed(&[4; 32]);
        let signed = self_unsigned(&key, None, 0);
        assert_eq!(signed.ca_key_id, None);
        assert_eq!(signed.ca_signature, None);
        let policy = TrustPolicy {
            allow_unsigned: true,
            ..Default::default()
        };
        let v = verify(&signed, &policy, NOW, None).unwrap();
        assert!(!v.is_authenticated());
        assert_eq!(v.identity, None);
        assert_eq!(v.cert.app_ids, vec![0]);
        let from: SocketAddr = "10.0.0.5:27015".parse().unwrap();
        assert_eq!(peer_identity(&v, None, from).unwrap(), Identity::Ip(from));
        assert_eq!(
            peer_identity(&v, Some("str:carol"), from).unwrap(),
            "str:carol".parse::<Identity>().unwrap()
        );
        assert!(peer_identity(&v, Some("ip:1.2.3.4:5"), from).is_err());
        assert_eq!(
            peer_identity(&v, Some("ip:::1"), from).unwrap(),
            Identity::Ip(from)
        );
        // Wrong app id.
        let policy = TrustPolicy {
            allow_unsigned: true,
            app_id: 7,
            ..Default::default()
        };
        assert!(verify(&signed, &policy, NOW, None).is_err());
    }

    #[test]
    fn identity_text_forms() {
        assert_eq!(parse_identity_text("ip:::1").unwrap(), None);
        assert_eq!(parse_identity_text("ip:127.0.0.1:5").unwrap(), None);
        assert_eq!(
            parse_identity_text("ip:1.2.3.4").unwrap(),
            Some(Identity::Ip("1.2.3.4:0".parse().unwrap()))
        );
        assert_eq!(parse_identity_text("str:alice").unwrap(), Some(alice()));
        assert!(parse_identity_text("bogus").is_err());
        let cert = Certificate {
            legacy_steam_id: Some(76561197960287930),
            ..Default::default()
        };
        assert_eq!(
            cert_identity(&cert).unwrap(),
            Some(Identity::SteamId(76561197960287930))
        );
    }
}
