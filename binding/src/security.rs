//! Identities, keys and certificates across the boundary: parsing, the `create` options
//! that say who an endpoint is and whom it trusts, and the key and certificate helpers.

use napi::bindgen_prelude::*;
use napi_derive::napi;
use netcore::crypto::session_setup::LocalSecurity;
use netcore::Identity;

/// An identity's type tag and canonical text.
#[napi(object)]
pub struct IdentityParts {
    /// Steam's `ESteamNetworkingIdentityType` value.
    pub kind: u32,
    /// Canonical text form.
    pub text: String,
}

/// Parses an identity in Steam's text form; throws with the reason on bad input.
#[napi]
pub fn parse_identity(text: String) -> Result<IdentityParts> {
    let id: Identity = text
        .parse()
        .map_err(|e: netcore::identity::IdentityError| {
            Error::new(Status::InvalidArg, e.to_string())
        })?;
    Ok(IdentityParts {
        kind: id.kind() as u32,
        text: id.to_string(),
    })
}

/// Who an endpoint is and whom it trusts (the `create` options of the same names).
#[napi(object)]
pub struct SecurityOptions {
    /// Ed25519 private key (32-byte seed); generated when absent.
    pub private_key: Option<Buffer>,
    /// CA-issued certificate (protobuf bytes) binding `identity` to that key.
    pub certificate: Option<Buffer>,
    /// Our identity, canonical text.
    pub identity: Option<String>,
    /// CA public keys (32 bytes each) whose certificates we accept.
    #[napi(js_name = "trustedCAs")]
    pub trusted_cas: Option<Vec<Buffer>>,
    /// Accept `ip:` peers without a certificate (default true).
    pub allow_unauthenticated: Option<bool>,
}

fn key32(what: &str, b: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(b).map_err(|_| {
        Error::new(
            Status::InvalidArg,
            format!("{what} must be 32 bytes, got {}", b.len()),
        )
    })
}

/// The core's security material for the `create` options.
pub fn security(opts: SecurityOptions) -> Result<LocalSecurity> {
    let seed = opts
        .private_key
        .as_deref()
        .map(|k| key32("privateKey", k))
        .transpose()?;
    let identity = opts.identity.as_deref().map(identity).transpose()?;
    let cas = opts
        .trusted_cas
        .unwrap_or_default()
        .iter()
        .map(|k| key32("a trusted CA key", k))
        .collect::<Result<Vec<_>>>()?;
    LocalSecurity::from_options(
        seed,
        opts.certificate.as_deref(),
        identity,
        &cas,
        opts.allow_unauthenticated.unwrap_or(true),
    )
    .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))
}

/// An Ed25519 key pair: the private key is the 32-byte seed.
#[napi(object)]
pub struct KeyPair {
    /// Keep secret.
    pub private_key: Buffer,
    /// Share with peers (for a CA: put it in their `trustedCAs`).
    pub public_key: Buffer,
}

/// Generates an Ed25519 key pair from the OS's random source.
#[napi]
pub fn generate_key_pair() -> Result<KeyPair> {
    let key = netcore::crypto::IdentityKey::generate()
        .map_err(|e| Error::new(Status::GenericFailure, e.to_string()))?;
    Ok(KeyPair {
        private_key: Buffer::from(key.seed().to_vec()),
        public_key: Buffer::from(key.public_key().to_bytes().to_vec()),
    })
}

/// The public key of a private key.
#[napi]
pub fn public_key_of(private_key: Buffer) -> Result<Buffer> {
    let key = netcore::crypto::IdentityKey::from_seed(&key32("privateKey", &private_key)?);
    Ok(Buffer::from(key.public_key().to_bytes().to_vec()))
}

/// The reference's 64-bit key id of a public key (decimal): what certificates name their
/// CA by, and what an untrusted-CA failure reports.
#[napi]
pub fn key_id_of(public_key: Buffer) -> Result<String> {
    let key = netcore::crypto::PublicKey::from_bytes(&key32("publicKey", &public_key)?)
        .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))?;
    Ok(key.key_id().to_string())
}

/// A certificate for `identity` and `public_key`, signed with the CA's private key, valid
/// from now for `valid_seconds`.
#[napi]
pub fn issue_certificate(
    ca_private_key: Buffer,
    public_key: Buffer,
    identity_text: String,
    valid_seconds: f64,
) -> Result<Buffer> {
    if !valid_seconds.is_finite() || valid_seconds <= 0.0 {
        return Err(Error::new(
            Status::InvalidArg,
            "validSeconds must be a positive number".to_owned(),
        ));
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    netcore::crypto::session_setup::issue_certificate(
        &key32("the CA private key", &ca_private_key)?,
        &key32("publicKey", &public_key)?,
        &identity(&identity_text)?,
        now,
        valid_seconds as u64,
    )
    .map(Buffer::from)
    .map_err(|e| Error::new(Status::InvalidArg, e.to_string()))
}

/// Parses an identity's text form; a bad one is an `InvalidArg` error.
pub fn identity(text: &str) -> Result<Identity> {
    text.parse().map_err(|e: netcore::identity::IdentityError| {
        Error::new(Status::InvalidArg, e.to_string())
    })
}
