//! Certificates, session crypt info and legacy identities, as embedded in ConnectRequest and
//! ConnectOK.
//!
//! Signed structures keep the *serialized bytes* of what was signed (`cert`, `info`) rather than
//! a nested message, because a signature covers one exact serialization; re-encoding a parsed
//! message could change its bytes. Parse the inner bytes with `Certificate::decode` or
//! `SessionCryptInfo::decode` (from `prost::Message`) only after checking the signature.
//! Field numbers and types match the reference protocol (proto2, so repeated scalars are not
//! packed).

/// Key type of a [`Certificate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CertKeyType {
    /// Not set.
    Invalid = 0,
    /// An Ed25519 signing key.
    Ed25519 = 1,
}

/// Key type of a [`SessionCryptInfo`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum CryptKeyType {
    /// Not set.
    Invalid = 0,
    /// An X25519 key-exchange key.
    Curve25519 = 1,
}

/// Data ciphers a peer offers (client, in preference order) or selected (server).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum Cipher {
    /// Not set.
    Invalid = 0,
    /// No encryption and no authentication.
    Null = 1,
    /// AES-256-GCM with a 16-byte tag; an empty list means this one.
    Aes256Gcm = 2,
}

/// Identity in the old binary form (GNS `CMsgSteamNetworkingIdentityLegacyBinary`); current
/// peers send `identity_string` instead, but old ones may send this.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IdentityLegacyBinary {
    /// A 64-bit SteamID.
    #[prost(fixed64, optional, tag = "16")]
    pub steam_id: Option<u64>,
    /// Generic bytes identity.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub generic_bytes: Option<Vec<u8>>,
    /// Generic string identity.
    #[prost(string, optional, tag = "3")]
    pub generic_string: Option<String>,
    /// 16 address bytes and a 2-byte port.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub ipv6_and_port: Option<Vec<u8>>,
}

/// The signed part of a certificate (GNS `CMsgSteamDatagramCertificate`): a public key and who
/// may use it, for how long.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Certificate {
    /// [`CertKeyType`] of `key_data`.
    #[prost(enumeration = "CertKeyType", optional, tag = "1")]
    pub key_type: Option<i32>,
    /// The public key.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub key_data: Option<Vec<u8>>,
    /// Legacy SteamID owner.
    #[prost(fixed64, optional, tag = "4")]
    pub legacy_steam_id: Option<u64>,
    /// Legacy binary owner identity.
    #[prost(message, optional, tag = "11")]
    pub legacy_identity_binary: Option<IdentityLegacyBinary>,
    /// Owner identity in text form (`str:alice`, `ip:1.2.3.4:5`, ...).
    #[prost(string, optional, tag = "12")]
    pub identity_string: Option<String>,
    /// Data centers whose servers may use the key.
    #[prost(fixed32, repeated, packed = "false", tag = "5")]
    pub gameserver_datacenter_ids: Vec<u32>,
    /// Unix seconds when issued.
    #[prost(fixed32, optional, tag = "8")]
    pub time_created: Option<u32>,
    /// Unix seconds when it expires.
    #[prost(fixed32, optional, tag = "9")]
    pub time_expiry: Option<u32>,
    /// Apps the key is restricted to.
    #[prost(uint32, repeated, packed = "false", tag = "10")]
    pub app_ids: Vec<u32>,
}

/// A certificate as sent (GNS `CMsgSteamDatagramCertificateSigned`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct CertificateSigned {
    /// Serialized [`Certificate`], exactly as signed.
    #[prost(bytes = "vec", optional, tag = "4")]
    pub cert: Option<Vec<u8>>,
    /// Id of the CA key that signed it; absent for an unsigned cert.
    #[prost(fixed64, optional, tag = "5")]
    pub ca_key_id: Option<u64>,
    /// The CA's signature over `cert`.
    #[prost(bytes = "vec", optional, tag = "6")]
    pub ca_signature: Option<Vec<u8>>,
    /// Private key bundled with the cert; never sent over the wire.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub private_key_data: Option<Vec<u8>>,
}

/// Per-connection key exchange parameters (GNS `CMsgSteamDatagramSessionCryptInfo`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionCryptInfo {
    /// [`CryptKeyType`] of `key_data`.
    #[prost(enumeration = "CryptKeyType", optional, tag = "1")]
    pub key_type: Option<i32>,
    /// The ephemeral public key.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub key_data: Option<Vec<u8>>,
    /// Nonce mixed into key derivation.
    #[prost(fixed64, optional, tag = "3")]
    pub nonce: Option<u64>,
    /// Protocol version of the sender (signed, so it cannot be forged).
    #[prost(uint32, optional, tag = "4")]
    pub protocol_version: Option<u32>,
    /// [`Cipher`] values.
    #[prost(enumeration = "Cipher", repeated, packed = "false", tag = "5")]
    pub ciphers: Vec<i32>,
}

/// Crypt info as sent (GNS `CMsgSteamDatagramSessionCryptInfoSigned`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionCryptInfoSigned {
    /// Serialized [`SessionCryptInfo`], exactly as signed.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub info: Option<Vec<u8>>,
    /// Signature over `info` with the certificate's key.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signature: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn hand_written_crypt_info() {
        // key_type (field 1, varint) = 1; nonce (field 3, fixed64) = 0x0102030405060708;
        // protocol_version (field 4, varint) = 13; ciphers (field 5, varint, unpacked) = 2.
        let bytes = [
            0x08, 0x01, 0x19, 0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01, 0x20, 0x0d, 0x28,
            0x02,
        ];
        let info = SessionCryptInfo::decode(&bytes[..]).expect("parses");
        assert_eq!(info.key_type(), CryptKeyType::Curve25519);
        assert_eq!(info.nonce, Some(0x0102_0304_0506_0708));
        assert_eq!(info.protocol_version, Some(13));
        assert_eq!(info.ciphers, vec![Cipher::Aes256Gcm as i32]);
        assert_eq!(info.encode_to_vec(), bytes);
    }

    #[test]
    fn certificate_round_trip_unpacked_repeated() {
        let cert = Certificate {
            key_type: Some(CertKeyType::Ed25519 as i32),
            key_data: Some(vec![7; 32]),
            identity_string: Some("str:alice".into()),
            app_ids: vec![1, 2],
            gameserver_datacenter_ids: vec![9],
            ..Default::default()
        };
        let bytes = cert.encode_to_vec();
        // proto2 repeated scalars are one key per element: app_ids (field 10, varint) is 0x50.
        assert_eq!(bytes.iter().filter(|&&b| b == 0x50).count(), 2);
        assert_eq!(Certificate::decode(&bytes[..]), Ok(cert));
    }
}
