//! Attribute types and value codecs (RFC 8489 section 14, RFC 8445 section 16.1, RFC 8656
//! section 18).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::message::{TransactionId, MAGIC_COOKIE};
use super::StunError;

/// MAPPED-ADDRESS.
pub const MAPPED_ADDRESS: u16 = 0x0001;
/// USERNAME.
pub const USERNAME: u16 = 0x0006;
/// MESSAGE-INTEGRITY (HMAC-SHA1).
pub const MESSAGE_INTEGRITY: u16 = 0x0008;
/// ERROR-CODE.
pub const ERROR_CODE: u16 = 0x0009;
/// UNKNOWN-ATTRIBUTES.
pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
/// CHANNEL-NUMBER (TURN).
pub const CHANNEL_NUMBER: u16 = 0x000C;
/// LIFETIME (TURN).
pub const LIFETIME: u16 = 0x000D;
/// XOR-PEER-ADDRESS (TURN).
pub const XOR_PEER_ADDRESS: u16 = 0x0012;
/// DATA (TURN).
pub const DATA: u16 = 0x0013;
/// REALM.
pub const REALM: u16 = 0x0014;
/// NONCE.
pub const NONCE: u16 = 0x0015;
/// XOR-RELAYED-ADDRESS (TURN).
pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
/// REQUESTED-ADDRESS-FAMILY (TURN).
pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
/// REQUESTED-TRANSPORT (TURN).
pub const REQUESTED_TRANSPORT: u16 = 0x0019;
/// DONT-FRAGMENT (TURN).
pub const DONT_FRAGMENT: u16 = 0x001A;
/// MESSAGE-INTEGRITY-SHA256.
pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
/// XOR-MAPPED-ADDRESS.
pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
/// PRIORITY (ICE).
pub const PRIORITY: u16 = 0x0024;
/// USE-CANDIDATE (ICE).
pub const USE_CANDIDATE: u16 = 0x0025;
/// SOFTWARE.
pub const SOFTWARE: u16 = 0x8022;
/// ALTERNATE-SERVER.
pub const ALTERNATE_SERVER: u16 = 0x8023;
/// FINGERPRINT.
pub const FINGERPRINT: u16 = 0x8028;
/// ICE-CONTROLLED.
pub const ICE_CONTROLLED: u16 = 0x8029;
/// ICE-CONTROLLING.
pub const ICE_CONTROLLING: u16 = 0x802A;

/// REQUESTED-TRANSPORT's value for UDP (protocol 17, then three RFFU bytes).
pub const TRANSPORT_UDP: [u8; 4] = [17, 0, 0, 0];

const FAMILY_V4: u8 = 0x01;
const FAMILY_V6: u8 = 0x02;

/// An ERROR-CODE value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    /// 300..=699.
    pub code: u16,
    /// The server's reason phrase (may be empty).
    pub reason: &'a str,
}

/// Decodes MAPPED-ADDRESS (or ALTERNATE-SERVER).
pub fn decode_address(v: &[u8]) -> Result<SocketAddr, StunError> {
    let (family, port, addr) = address_parts(v)?;
    let ip = match family {
        FAMILY_V4 => IpAddr::V4(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])),
        _ => {
            let mut b = [0u8; 16];
            b.copy_from_slice(addr);
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Decodes an XOR-encoded address with the message's transaction id.
pub fn decode_xor_address(v: &[u8], tid: &TransactionId) -> Result<SocketAddr, StunError> {
    let (family, xport, xaddr) = address_parts(v)?;
    let port = xport ^ (MAGIC_COOKIE >> 16) as u16;
    let mask = xor_mask(tid);
    let ip = match family {
        FAMILY_V4 => {
            let mut b = [0u8; 4];
            for (i, o) in b.iter_mut().enumerate() {
                *o = xaddr[i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(b))
        }
        _ => {
            let mut b = [0u8; 16];
            for (i, o) in b.iter_mut().enumerate() {
                *o = xaddr[i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
    Ok(SocketAddr::new(ip, port))
}

/// Encodes MAPPED-ADDRESS: the value bytes and how many of them are used (8 or 20).
pub fn encode_address(addr: SocketAddr) -> ([u8; 20], usize) {
    let mut v = [0u8; 20];
    v[2..4].copy_from_slice(&addr.port().to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            v[1] = FAMILY_V4;
            v[4..8].copy_from_slice(&ip.octets());
            (v, 8)
        }
        IpAddr::V6(ip) => {
            v[1] = FAMILY_V6;
            v[4..20].copy_from_slice(&ip.octets());
            (v, 20)
        }
    }
}

/// Encodes an XOR-encoded address attribute value (8 or 20 bytes used).
pub fn encode_xor_address(addr: SocketAddr, tid: &TransactionId) -> ([u8; 20], usize) {
    let (mut v, n) = encode_address(addr);
    let mask = xor_mask(tid);
    for i in 0..2 {
        v[2 + i] ^= mask[i];
    }
    for i in 0..n - 4 {
        v[4 + i] ^= mask[i];
    }
    (v, n)
}

/// The cookie followed by the transaction id: what XOR addresses are masked with.
fn xor_mask(tid: &TransactionId) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[4..].copy_from_slice(&tid.0);
    m
}

fn address_parts(v: &[u8]) -> Result<(u8, u16, &[u8]), StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttribute("address too short"));
    }
    let family = v[1];
    let port = u16::from_be_bytes([v[2], v[3]]);
    match (family, v.len()) {
        (FAMILY_V4, 8) | (FAMILY_V6, 20) => Ok((family, port, &v[4..])),
        _ => Err(StunError::BadAttribute("address family or length")),
    }
}

/// Decodes ERROR-CODE.
pub fn decode_error_code(v: &[u8]) -> Result<ErrorCode<'_>, StunError> {
    if v.len() < 4 {
        return Err(StunError::BadAttribute("ERROR-CODE too short"));
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(StunError::BadAttribute("ERROR-CODE out of range"));
    }
    // A reason that is not UTF-8 is dropped rather than failing the whole code.
    let reason = std::str::from_utf8(&v[4..]).unwrap_or("");
    Ok(ErrorCode {
        code: class * 100 + number,
        reason,
    })
}

/// A 4-byte big-endian value.
pub fn decode_u32(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
}

/// An 8-byte big-endian value.
pub fn decode_u64(v: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(v).ok().map(u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_address_round_trips_v4_v6() {
        let tid = TransactionId([0xA5; 12]);
        for a in ["1.2.3.4:5", "[2001:db8::1]:65535", "0.0.0.0:0"] {
            let addr: SocketAddr = a.parse().unwrap();
            let (v, n) = encode_xor_address(addr, &tid);
            assert_eq!(decode_xor_address(&v[..n], &tid).unwrap(), addr);
            let (v, n) = encode_address(addr);
            assert_eq!(decode_address(&v[..n]).unwrap(), addr);
        }
    }

    #[test]
    fn bad_values() {
        assert!(decode_address(&[0, 1, 0, 0, 1, 2, 3]).is_err());
        assert!(decode_address(&[0, 3, 0, 0, 1, 2, 3, 4]).is_err());
        assert!(decode_error_code(&[0, 0, 2, 0]).is_err());
        assert!(decode_error_code(&[0, 0, 4, 100]).is_err());
        let e = decode_error_code(&[0, 0, 4, 1, b'x']).unwrap();
        assert_eq!((e.code, e.reason), (401, "x"));
    }
}
