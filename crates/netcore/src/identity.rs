//! Peer identities in Steam's text forms.
//!
//! A session is keyed by the remote identity, never by an address, so the same type names a
//! peer everywhere: in the messages layer, in events to JavaScript and (later) in certificates.
//! The text forms are Steam's (`ip:1.2.3.4:27015`, `str:alice`, `gen:<hex>`,
//! `steamid:<n>`), so identities printed by Steam tools and by us read the same.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Longest generic string identity, in bytes (Steam keeps 32 bytes including a terminator).
pub const MAX_GENERIC_STRING: usize = 31;
/// Longest generic bytes identity.
pub const MAX_GENERIC_BYTES: usize = 32;

/// Steam's numeric identity type tags (`ESteamNetworkingIdentityType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum IdentityType {
    /// No identity.
    Invalid = 0,
    /// An IP address and port.
    IpAddress = 1,
    /// An application-chosen string.
    GenericString = 2,
    /// Application-chosen bytes.
    GenericBytes = 3,
    /// A 64-bit SteamID.
    SteamId = 16,
}

impl IdentityType {
    /// Every type with its Steam name (for the generated TS enum).
    pub const NAMED: &'static [(&'static str, i32)] = &[
        ("Invalid", 0),
        ("IPAddress", 1),
        ("GenericString", 2),
        ("GenericBytes", 3),
        ("SteamID", 16),
    ];
}

/// Who a peer is.
///
/// Every variant is held inline (no heap), so the copy that goes with every delivered
/// message, event and map key costs a memcpy, not an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A peer known by its address: reached directly there.
    Ip(SocketAddr),
    /// A peer known by a string of 1..=31 bytes without NUL.
    GenericString(GenericText),
    /// A peer known by 1..=32 bytes.
    GenericBytes(GenericBytes),
    /// A peer known by a SteamID (nonzero).
    SteamId(u64),
}

/// The 1..=32 bytes of a generic identity, inline. Bytes past `len` are always zero, so the
/// derived comparisons and hash see only the identity's own bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GenericBytes {
    len: u8,
    bytes: [u8; MAX_GENERIC_BYTES],
}

impl GenericBytes {
    /// `b` inline, if it fits (the caller checks Steam's rules).
    fn new(b: &[u8]) -> Option<Self> {
        let mut bytes = [0; MAX_GENERIC_BYTES];
        bytes.get_mut(..b.len())?.copy_from_slice(b);
        Some(GenericBytes {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The identity's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::ops::Deref for GenericBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for GenericBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_bytes(), f)
    }
}

/// The text of a generic string identity (1..=31 bytes of UTF-8), inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GenericText(GenericBytes);

impl GenericText {
    /// The identity's text.
    pub fn as_str(&self) -> &str {
        // Built from a `&str` only, so always UTF-8; the fallback is never taken.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }
}

impl std::ops::Deref for GenericText {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for GenericText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for GenericText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a text or value is not an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid identity: {0}")]
pub struct IdentityError(pub String);

impl Identity {
    /// Builds a generic string identity, checking Steam's length and character rules.
    pub fn generic_string(s: &str) -> Result<Self, IdentityError> {
        if s.is_empty() || s.len() > MAX_GENERIC_STRING {
            return Err(IdentityError(format!(
                "a string identity is 1..={MAX_GENERIC_STRING} bytes of UTF-8, got {}",
                s.len()
            )));
        }
        if s.contains('\0') {
            return Err(IdentityError(
                "a string identity may not contain NUL".into(),
            ));
        }
        GenericBytes::new(s.as_bytes())
            .map(|b| Identity::GenericString(GenericText(b)))
            .ok_or_else(|| IdentityError("a string identity is too long".into()))
    }

    /// Builds a generic bytes identity (1..=32 bytes).
    pub fn generic_bytes(b: &[u8]) -> Result<Self, IdentityError> {
        if b.is_empty() || b.len() > MAX_GENERIC_BYTES {
            return Err(IdentityError(format!(
                "a bytes identity is 1..={MAX_GENERIC_BYTES} bytes, got {}",
                b.len()
            )));
        }
        GenericBytes::new(b)
            .map(Identity::GenericBytes)
            .ok_or_else(|| IdentityError("a bytes identity is too long".into()))
    }

    /// Builds a SteamID identity; zero is not a valid SteamID.
    pub fn steam_id(id: u64) -> Result<Self, IdentityError> {
        if id == 0 {
            return Err(IdentityError("a SteamID identity may not be 0".into()));
        }
        Ok(Identity::SteamId(id))
    }

    /// Parses `host:port` (IPv4) or `[v6]:port` into an IP identity.
    pub fn from_ip_str(s: &str) -> Result<Self, IdentityError> {
        SocketAddr::from_str(s)
            .map(|a| Identity::Ip(normalize(a)))
            .map_err(|_| IdentityError(format!("not an 'ip:port' address: {s:?}")))
    }

    /// Steam's type tag of this identity.
    pub fn kind(&self) -> IdentityType {
        match self {
            Identity::Ip(_) => IdentityType::IpAddress,
            Identity::GenericString(_) => IdentityType::GenericString,
            Identity::GenericBytes(_) => IdentityType::GenericBytes,
            Identity::SteamId(_) => IdentityType::SteamId,
        }
    }

    /// The address to reach this identity at directly, if it is an IP identity.
    pub fn ip_addr(&self) -> Option<SocketAddr> {
        match self {
            Identity::Ip(a) => Some(*a),
            _ => None,
        }
    }
}

/// An IPv4 address seen through a dual-stack IPv6 socket is still the same IPv4 peer.
pub fn normalize(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // SocketAddr's Display already brackets IPv6 addresses.
            Identity::Ip(a) => write!(f, "ip:{a}"),
            Identity::GenericString(s) => write!(f, "str:{s}"),
            Identity::GenericBytes(b) => {
                f.write_str("gen:")?;
                for byte in b.as_bytes() {
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Identity::SteamId(id) => write!(f, "steamid:{id}"),
        }
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(text: &str) -> Result<Self, IdentityError> {
        let (prefix, rest) = text
            .split_once(':')
            .ok_or_else(|| IdentityError(format!("missing type prefix in {text:?}")))?;
        match prefix {
            "ip" => Identity::from_ip_str(rest),
            "str" => Identity::generic_string(rest),
            "gen" => {
                if rest.len() % 2 != 0 || !rest.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(IdentityError(format!(
                        "'gen:' needs hex digit pairs: {rest:?}"
                    )));
                }
                let bytes: Vec<u8> = rest
                    .as_bytes()
                    .chunks(2)
                    .filter_map(|pair| {
                        std::str::from_utf8(pair)
                            .ok()
                            .and_then(|p| u8::from_str_radix(p, 16).ok())
                    })
                    .collect();
                Identity::generic_bytes(&bytes)
            }
            "steamid" => rest
                .parse::<u64>()
                .map_err(|_| IdentityError(format!("not a SteamID: {rest:?}")))
                .and_then(Identity::steam_id),
            other => Err(IdentityError(format!("unknown identity type {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip() {
        for text in [
            "ip:1.2.3.4:27015",
            "ip:[::1]:27015",
            "str:alice",
            "gen:00ff10",
            "steamid:76561197960287930",
        ] {
            let id: Identity = text.parse().unwrap();
            assert_eq!(id.to_string(), text);
        }
    }

    #[test]
    fn kinds_match_steam_values() {
        assert_eq!(Identity::SteamId(1).kind() as u32, 16);
        assert_eq!("str:x".parse::<Identity>().unwrap().kind() as u32, 2);
        assert_eq!("gen:ab".parse::<Identity>().unwrap().kind() as u32, 3);
        assert_eq!("ip:1.1.1.1:1".parse::<Identity>().unwrap().kind() as u32, 1);
    }

    #[test]
    fn rejects_bad_text() {
        for bad in [
            "",
            "alice",
            "ip:1.2.3.4",
            "ip:999.1.1.1:5",
            "str:",
            "str:0123456789012345678901234567890123",
            "gen:abc",
            "gen:zz",
            "gen:",
            "steamid:0",
            "steamid:-5",
            "foo:bar",
        ] {
            assert!(
                bad.parse::<Identity>().is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn generic_identities_differ_by_length_too() {
        // Inline storage pads with zeros: a shorter identity must not equal a longer one
        // whose extra bytes are zero.
        let one: Identity = "gen:00".parse().unwrap();
        let two: Identity = "gen:0000".parse().unwrap();
        assert_ne!(one, two);
        assert_ne!(
            "str:ab".parse::<Identity>().unwrap(),
            "str:abc".parse::<Identity>().unwrap()
        );
        let longest = "x".repeat(MAX_GENERIC_STRING);
        let id = Identity::generic_string(&longest).unwrap();
        assert_eq!(id.to_string(), format!("str:{longest}"));
        let bytes = [0xa5; MAX_GENERIC_BYTES];
        let Identity::GenericBytes(b) = Identity::generic_bytes(&bytes).unwrap() else {
            panic!("not a bytes identity");
        };
        assert_eq!(b.as_bytes(), &bytes[..]);
        assert!(Identity::generic_bytes(&[1; MAX_GENERIC_BYTES + 1]).is_err());
    }

    #[test]
    fn an_identity_is_small_and_inline() {
        // A SocketAddr is 32 bytes; the inline generic forms add a little to it.
        assert!(std::mem::size_of::<Identity>() <= 40);
    }

    #[test]
    fn mapped_v4_is_normalized() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:9".parse().unwrap();
        assert_eq!(
            normalize(mapped),
            "127.0.0.1:9".parse::<SocketAddr>().unwrap()
        );
    }
}
