//! The STUN message (RFC 8489 section 5): a 20-byte header and TLV attributes.
//!
//! [`Message::decode`] checks the framing once (header, cookie, every attribute's length
//! fits, FINGERPRINT if present) and then borrows from the datagram: reading attributes never
//! allocates and never fails on framing. [`MessageBuilder`] writes a message, computing
//! MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT over exactly the bytes the RFC
//! names (the header length field counting up to the attribute being computed).

use std::net::SocketAddr;

use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use super::attributes::{self as attr, ErrorCode};
use super::StunError;

/// The fixed value in bytes 4..8 of every RFC 5389/8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Header length.
pub const HEADER_LEN: usize = 20;
/// FINGERPRINT is the CRC-32 of the message XORed with this ("STUN").
pub const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// Most attributes a decoded message may hold: a bound on the work a hostile datagram causes.
pub const MAX_ATTRIBUTES: usize = 64;

const SHA1_LEN: usize = 20;
const SHA256_LEN: usize = 32;

/// A 96-bit transaction id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TransactionId(pub [u8; 12]);

impl TransactionId {
    /// A fresh random id (from the OS), or `None` if the OS random source failed.
    pub fn random() -> Option<TransactionId> {
        let mut b = [0u8; 12];
        getrandom::fill(&mut b).ok()?;
        Some(TransactionId(b))
    }
}

/// The class bits of a message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Expects a response.
    Request,
    /// Expects none.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

/// A STUN method (12 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    /// Binding (RFC 8489).
    pub const BINDING: Method = Method(0x001);
    /// TURN Allocate (RFC 8656).
    pub const ALLOCATE: Method = Method(0x003);
    /// TURN Refresh.
    pub const REFRESH: Method = Method(0x004);
    /// TURN Send (indication).
    pub const SEND: Method = Method(0x006);
    /// TURN Data (indication).
    pub const DATA: Method = Method(0x007);
    /// TURN CreatePermission.
    pub const CREATE_PERMISSION: Method = Method(0x008);
    /// TURN ChannelBind.
    pub const CHANNEL_BIND: Method = Method(0x009);
}

/// Method and class, as packed into the 14-bit type field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The method.
    pub method: Method,
    /// The class.
    pub class: Class,
}

impl MessageType {
    /// Builds a type.
    pub const fn new(method: Method, class: Class) -> Self {
        MessageType { method, class }
    }

    /// The 16-bit wire value: method bits M11..M0 with the class bits C1 (bit 8) and C0
    /// (bit 4) interleaved.
    pub fn to_u16(self) -> u16 {
        let m = self.method.0 & 0x0FFF;
        let c: u16 = match self.class {
            Class::Request => 0,
            Class::Indication => 1,
            Class::Success => 2,
            Class::Error => 3,
        };
        ((m & 0x0F80) << 2) | ((m & 0x0070) << 1) | (m & 0x000F) | ((c & 2) << 7) | ((c & 1) << 4)
    }

    /// Unpacks a wire value; the top two bits must be zero.
    pub fn from_u16(v: u16) -> Option<Self> {
        if v & 0xC000 != 0 {
            return None;
        }
        let method = ((v >> 2) & 0x0F80) | ((v >> 1) & 0x0070) | (v & 0x000F);
        let class = match ((v >> 7) & 2) | ((v >> 4) & 1) {
            0 => Class::Request,
            1 => Class::Indication,
            2 => Class::Success,
            _ => Class::Error,
        };
        Some(MessageType {
            method: Method(method),
            class,
        })
    }
}

/// One attribute as found in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    /// Attribute type.
    pub typ: u16,
    /// Value, without padding.
    pub value: &'a [u8],
    /// Offset of the attribute's TLV header in the message.
    pub offset: usize,
}

/// Which message-integrity attribute a message carries or a builder adds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integrity {
    /// MESSAGE-INTEGRITY: HMAC-SHA1 (what RFC 5389 peers, coturn's long-term mechanism and
    /// GNS's ICE checks use).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256 (RFC 8489).
    Sha256,
}

/// A decoded STUN message borrowing its datagram.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Method and class.
    pub typ: MessageType,
    /// Transaction id.
    pub transaction_id: TransactionId,
    raw: &'a [u8],
    /// Offset just past the last attribute that counts (attributes after MESSAGE-INTEGRITY,
    /// except the integrity and fingerprint ones, are ignored as RFC 8489 14.5 says).
    counted_end: usize,
}

/// Whether `datagram` looks like a STUN message (RFC 7983's first-byte range 0..=3, the
/// magic cookie, and a length field matching the datagram), without decoding attributes.
pub fn is_stun(datagram: &[u8]) -> bool {
    if datagram.len() < HEADER_LEN || datagram[0] > 3 {
        return false;
    }
    let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
    datagram[4..8] == MAGIC_COOKIE.to_be_bytes()
        && len % 4 == 0
        && len + HEADER_LEN == datagram.len()
}

impl<'a> Message<'a> {
    /// Decodes the framing of a whole datagram.
    pub fn decode(buf: &'a [u8]) -> Result<Message<'a>, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::TooShort);
        }
        // RFC 7983: STUN's first byte is 0..=3 (methods below 0x80, all that are defined);
        // the demultiplexer relies on it, so the decoder agrees.
        if buf[0] > 3 {
            return Err(StunError::NotStun);
        }
        let typ = u16::from_be_bytes([buf[0], buf[1]]);
        let typ = MessageType::from_u16(typ).ok_or(StunError::NotStun)?;
        if buf[4..8] != MAGIC_COOKIE.to_be_bytes() {
            return Err(StunError::NotStun);
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if len % 4 != 0 || len + HEADER_LEN != buf.len() {
            return Err(StunError::BadLength);
        }
        let mut tid = [0u8; 12];
        tid.copy_from_slice(&buf[8..20]);

        let mut off = HEADER_LEN;
        let mut count = 0usize;
        let mut counted_end = None;
        let mut seen_fingerprint = false;
        while off < buf.len() {
            if seen_fingerprint {
                return Err(StunError::BadAttribute("attribute after FINGERPRINT"));
            }
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            let (typ, value_len, next) = tlv_at(buf, off)?;
            match typ {
                attr::FINGERPRINT => {
                    if value_len != 4 {
                        return Err(StunError::BadAttribute("FINGERPRINT length"));
                    }
                    let want = u32::from_be_bytes([
                        buf[off + 4],
                        buf[off + 5],
                        buf[off + 6],
                        buf[off + 7],
                    ]);
                    if fingerprint(&buf[..off], (off + 8 - HEADER_LEN) as u16) != want {
                        return Err(StunError::BadFingerprint);
                    }
                    seen_fingerprint = true;
                    counted_end.get_or_insert(off);
                }
                attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 => {
                    counted_end.get_or_insert(off);
                }
                _ => {}
            }
            off = next;
        }
        Ok(Message {
            typ,
            transaction_id: TransactionId(tid),
            raw: buf,
            counted_end: counted_end.unwrap_or(buf.len()),
        })
    }

    /// The whole message as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// All attributes in order, including any after MESSAGE-INTEGRITY.
    pub fn attributes(&self) -> AttributeIter<'a> {
        AttributeIter {
            buf: self.raw,
            off: HEADER_LEN,
        }
    }

    /// The first attribute of type `typ` among those that count (before any integrity
    /// attribute; integrity and fingerprint attributes themselves are always found).
    pub fn get(&self, typ: u16) -> Option<&'a [u8]> {
        let always = matches!(
            typ,
            attr::MESSAGE_INTEGRITY | attr::MESSAGE_INTEGRITY_SHA256 | attr::FINGERPRINT
        );
        self.attributes()
            .take_while(|a| always || a.offset < self.counted_end)
            .find(|a| a.typ == typ)
            .map(|a| a.value)
    }

    /// Comprehension-required attribute types (below 0x8000) that are not in `known`, for a
    /// 420 (Unknown Attribute) answer to a request. At most [`MAX_ATTRIBUTES`].
    pub fn unknown_required(&self, known: &[u16]) -> Vec<u16> {
        self.attributes()
            .filter(|a| a.offset < self.counted_end && a.typ < 0x8000 && !known.contains(&a.typ))
            .map(|a| a.typ)
            .collect()
    }

    /// The integrity attribute this message carries, if any (SHA-256 preferred).
    pub fn integrity_kind(&self) -> Option<Integrity> {
        if self.get(attr::MESSAGE_INTEGRITY_SHA256).is_some() {
            Some(Integrity::Sha256)
        } else if self.get(attr::MESSAGE_INTEGRITY).is_some() {
            Some(Integrity::Sha1)
        } else {
            None
        }
    }

    /// Checks every integrity attribute present with `key` (the short-term password, or the
    /// long-term key from [`super::long_term_key`]); fails if there is none.
    pub fn verify_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let mut checked = false;
        for a in self.attributes() {
            match a.typ {
                attr::MESSAGE_INTEGRITY => {
                    if a.value.len() != SHA1_LEN {
                        return Err(StunError::BadAttribute("MESSAGE-INTEGRITY length"));
                    }
                    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(key)
                        .map_err(|_| StunError::BadIntegrity)?;
                    self.feed(&mut mac, a.offset, SHA1_LEN);
                    mac.verify_slice(a.value)
                        .map_err(|_| StunError::BadIntegrity)?;
                    checked = true;
                }
                attr::MESSAGE_INTEGRITY_SHA256 => {
                    // RFC 8489 14.6: may be truncated to 16..32 bytes, in multiples of 4.
                    let n = a.value.len();
                    if !(16..=SHA256_LEN).contains(&n) || n % 4 != 0 {
                        return Err(StunError::BadAttribute("MESSAGE-INTEGRITY-SHA256 length"));
                    }
                    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
                        .map_err(|_| StunError::BadIntegrity)?;
                    self.feed(&mut mac, a.offset, n);
                    mac.verify_truncated_left(a.value)
                        .map_err(|_| StunError::BadIntegrity)?;
                    checked = true;
                }
                _ => {}
            }
        }
        if checked {
            Ok(())
        } else {
            Err(StunError::NoIntegrity)
        }
    }

    /// Feeds the header (its length patched to end after an integrity attribute of `len`
    /// value bytes at `offset`) and the attributes before `offset` to `mac`.
    fn feed<M: Mac>(&self, mac: &mut M, offset: usize, len: usize) {
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&self.raw[..HEADER_LEN]);
        let patched = (offset + 4 + len - HEADER_LEN) as u16;
        header[2..4].copy_from_slice(&patched.to_be_bytes());
        mac.update(&header);
        mac.update(&self.raw[HEADER_LEN..offset]);
    }

    // Typed accessors. A malformed value reads as absent: whatever needs it then fails as if
    // the attribute were missing.

    /// XOR-MAPPED-ADDRESS.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_address(attr::XOR_MAPPED_ADDRESS)
    }

    /// MAPPED-ADDRESS (old servers send only this).
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        attr::decode_address(self.get(attr::MAPPED_ADDRESS)?).ok()
    }

    /// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS.
    pub fn any_mapped_address(&self) -> Option<SocketAddr> {
        self.xor_mapped_address().or_else(|| self.mapped_address())
    }

    /// An XOR-encoded address attribute of type `typ` (XOR-PEER-ADDRESS, ...).
    pub fn xor_address(&self, typ: u16) -> Option<SocketAddr> {
        attr::decode_xor_address(self.get(typ)?, &self.transaction_id).ok()
    }

    /// Every XOR-PEER-ADDRESS (CreatePermission may carry several).
    pub fn xor_peer_addresses(&self) -> impl Iterator<Item = SocketAddr> + 'a {
        let tid = self.transaction_id;
        let end = self.counted_end;
        self.attributes()
            .take_while(move |a| a.offset < end)
            .filter(|a| a.typ == attr::XOR_PEER_ADDRESS)
            .filter_map(move |a| attr::decode_xor_address(a.value, &tid).ok())
    }

    /// ERROR-CODE.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        attr::decode_error_code(self.get(attr::ERROR_CODE)?).ok()
    }

    /// USERNAME (as UTF-8; RFC 8489 limits it to 508 bytes, GNS accepts up to 512).
    pub fn username(&self) -> Option<&'a str> {
        self.text(attr::USERNAME, 512)
    }

    /// REALM.
    pub fn realm(&self) -> Option<&'a str> {
        self.text(attr::REALM, 763)
    }

    /// NONCE.
    pub fn nonce(&self) -> Option<&'a str> {
        self.text(attr::NONCE, 763)
    }

    /// SOFTWARE.
    pub fn software(&self) -> Option<&'a str> {
        self.text(attr::SOFTWARE, 763)
    }

    /// PRIORITY (ICE).
    pub fn priority(&self) -> Option<u32> {
        attr::decode_u32(self.get(attr::PRIORITY)?)
    }

    /// Whether USE-CANDIDATE is present.
    pub fn use_candidate(&self) -> bool {
        self.get(attr::USE_CANDIDATE).is_some()
    }

    /// ICE-CONTROLLING's tiebreaker.
    pub fn ice_controlling(&self) -> Option<u64> {
        attr::decode_u64(self.get(attr::ICE_CONTROLLING)?)
    }

    /// ICE-CONTROLLED's tiebreaker.
    pub fn ice_controlled(&self) -> Option<u64> {
        attr::decode_u64(self.get(attr::ICE_CONTROLLED)?)
    }

    /// LIFETIME (TURN), in seconds.
    pub fn lifetime(&self) -> Option<u32> {
        attr::decode_u32(self.get(attr::LIFETIME)?)
    }

    /// DATA (TURN).
    pub fn data(&self) -> Option<&'a [u8]> {
        self.get(attr::DATA)
    }

    /// CHANNEL-NUMBER (TURN).
    pub fn channel_number(&self) -> Option<u16> {
        let v = self.get(attr::CHANNEL_NUMBER)?;
        (v.len() == 4).then(|| u16::from_be_bytes([v[0], v[1]]))
    }

    fn text(&self, typ: u16, max: usize) -> Option<&'a str> {
        let v = self.get(typ)?;
        if v.len() > max {
            return None;
        }
        std::str::from_utf8(v).ok()
    }
}

/// Iterates a message's attributes (framing already checked by [`Message::decode`]).
#[derive(Clone, Debug)]
pub struct AttributeIter<'a> {
    buf: &'a [u8],
    off: usize,
}

impl<'a> Iterator for AttributeIter<'a> {
    type Item = RawAttribute<'a>;

    fn next(&mut self) -> Option<RawAttribute<'a>> {
        let (typ, len, next) = tlv_at(self.buf, self.off).ok()?;
        let value = &self.buf[self.off + 4..self.off + 4 + len];
        let a = RawAttribute {
            typ,
            value,
            offset: self.off,
        };
        self.off = next;
        Some(a)
    }
}

/// Type, value length and the offset of the next attribute for the TLV at `off`.
fn tlv_at(buf: &[u8], off: usize) -> Result<(u16, usize, usize), StunError> {
    let head = buf
        .get(off..off + 4)
        .ok_or(StunError::BadAttribute("truncated attribute header"))?;
    let typ = u16::from_be_bytes([head[0], head[1]]);
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    let next = off + 4 + len.div_ceil(4) * 4;
    if next > buf.len() {
        return Err(StunError::BadAttribute("attribute runs past the message"));
    }
    Ok((typ, len, next))
}

/// FINGERPRINT value for a message whose first `prefix.len()` bytes are `prefix`, with the
/// header length field replaced by `len_field`.
fn fingerprint(prefix: &[u8], len_field: u16) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&prefix[..2]);
    h.update(&len_field.to_be_bytes());
    h.update(&prefix[4..]);
    h.finalize() ^ FINGERPRINT_XOR
}

/// Writes a STUN message. Attribute values longer than a TLV can hold, or a message over
/// 64 KiB, make [`MessageBuilder::finish`] fail instead of writing a broken message.
#[derive(Clone, Debug)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    tid: TransactionId,
    overflow: bool,
}

impl MessageBuilder {
    /// Starts a message.
    pub fn new(typ: MessageType, tid: TransactionId) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&typ.to_u16().to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(&tid.0);
        MessageBuilder {
            buf,
            tid,
            overflow: false,
        }
    }

    /// The transaction id being written.
    pub fn transaction_id(&self) -> TransactionId {
        self.tid
    }

    /// Adds an attribute with its padding.
    pub fn add(&mut self, typ: u16, value: &[u8]) -> &mut Self {
        let Ok(len) = u16::try_from(value.len()) else {
            self.overflow = true;
            return self;
        };
        self.buf.extend_from_slice(&typ.to_be_bytes());
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        let pad = (4 - value.len() % 4) % 4;
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.set_len(self.buf.len());
        self
    }

    /// Adds an XOR-encoded address attribute (XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS, ...).
    pub fn xor_address(&mut self, typ: u16, addr: SocketAddr) -> &mut Self {
        let (v, n) = attr::encode_xor_address(addr, &self.tid);
        self.add(typ, &v[..n])
    }

    /// Adds MAPPED-ADDRESS.
    pub fn mapped_address(&mut self, addr: SocketAddr) -> &mut Self {
        let (v, n) = attr::encode_address(addr);
        self.add(attr::MAPPED_ADDRESS, &v[..n])
    }

    /// Adds a 32-bit attribute.
    pub fn u32(&mut self, typ: u16, v: u32) -> &mut Self {
        self.add(typ, &v.to_be_bytes())
    }

    /// Adds a 64-bit attribute.
    pub fn u64(&mut self, typ: u16, v: u64) -> &mut Self {
        self.add(typ, &v.to_be_bytes())
    }

    /// Adds ERROR-CODE.
    pub fn error_code(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = Vec::with_capacity(4 + reason.len());
        v.extend_from_slice(&[0, 0, (code / 100) as u8 & 0x07, (code % 100) as u8]);
        v.extend_from_slice(reason.as_bytes());
        self.add(attr::ERROR_CODE, &v)
    }

    /// Adds MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 computed with `key` over what is
    /// written so far.
    pub fn integrity(&mut self, kind: Integrity, key: &[u8]) -> &mut Self {
        let (typ, len) = match kind {
            Integrity::Sha1 => (attr::MESSAGE_INTEGRITY, SHA1_LEN),
            Integrity::Sha256 => (attr::MESSAGE_INTEGRITY_SHA256, SHA256_LEN),
        };
        self.set_len(self.buf.len() + 4 + len);
        let digest: Vec<u8> = match kind {
            Integrity::Sha1 => match <Hmac<Sha1> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(&self.buf);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => vec![0; len],
            },
            Integrity::Sha256 => match <Hmac<Sha256> as Mac>::new_from_slice(key) {
                Ok(mut m) => {
                    m.update(&self.buf);
                    m.finalize().into_bytes().to_vec()
                }
                Err(_) => vec![0; len],
            },
        };
        self.add(typ, &digest)
    }

    /// Adds FINGERPRINT over what is written so far (must come last).
    pub fn fingerprint(&mut self) -> &mut Self {
        let total = self.buf.len() + 8;
        let Ok(len_field) = u16::try_from(total - HEADER_LEN) else {
            self.overflow = true;
            return self;
        };
        let fp = fingerprint(&self.buf, len_field);
        self.add(attr::FINGERPRINT, &fp.to_be_bytes())
    }

    /// The finished message.
    pub fn finish(&self) -> Result<Vec<u8>, StunError> {
        if self.overflow || self.buf.len() - HEADER_LEN > usize::from(u16::MAX) {
            return Err(StunError::TooLong);
        }
        Ok(self.buf.clone())
    }

    /// The finished message, consuming the builder.
    pub fn into_bytes(self) -> Result<Vec<u8>, StunError> {
        if self.overflow || self.buf.len() - HEADER_LEN > usize::from(u16::MAX) {
            return Err(StunError::TooLong);
        }
        Ok(self.buf)
    }

    fn set_len(&mut self, total: usize) {
        match u16::try_from(total - HEADER_LEN) {
            Ok(l) => self.buf[2..4].copy_from_slice(&l.to_be_bytes()),
            Err(_) => self.overflow = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_bits_interleave() {
        let t = |m, c| MessageType::new(m, c).to_u16();
        assert_eq!(t(Method::BINDING, Class::Request), 0x0001);
        assert_eq!(t(Method::BINDING, Class::Success), 0x0101);
        assert_eq!(t(Method::BINDING, Class::Error), 0x0111);
        assert_eq!(t(Method::BINDING, Class::Indication), 0x0011);
        assert_eq!(t(Method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(t(Method::SEND, Class::Indication), 0x0016);
        assert_eq!(t(Method::DATA, Class::Indication), 0x0017);
        assert_eq!(t(Method::CHANNEL_BIND, Class::Success), 0x0109);
        for v in 0..0x4000u16 {
            assert_eq!(MessageType::from_u16(v).unwrap().to_u16(), v);
        }
        assert_eq!(MessageType::from_u16(0x4001), None);
    }

    /// RFC 5769 2.1: a sample request with short-term credentials, SOFTWARE, PRIORITY,
    /// ICE-CONTROLLED, USERNAME, MESSAGE-INTEGRITY and FINGERPRINT.
    const RFC5769_REQUEST: [u8; 108] = [
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6,
        0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74,
        0x65, 0x73, 0x74, 0x20, 0x63, 0x6c, 0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e,
        0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f, 0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36,
        0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76, 0x59, 0x20, 0x20,
        0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5,
        0x7a, 0x3b, 0xcf,
    ];

    #[test]
    fn rfc5769_sample_request() {
        let m = Message::decode(&RFC5769_REQUEST).unwrap();
        assert_eq!(m.typ, MessageType::new(Method::BINDING, Class::Request));
        assert_eq!(m.software(), Some("STUN test client"));
        assert_eq!(m.priority(), Some(0x6e0001ff));
        assert_eq!(m.ice_controlled(), Some(0x932ff9b151263b36));
        assert_eq!(m.username(), Some("evtj:h6vY"));
        m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt").unwrap();
        assert_eq!(m.verify_integrity(b"wrong"), Err(StunError::BadIntegrity));

        // Rebuilding it gives the same bytes (the sample pads SOFTWARE and USERNAME with
        // spaces, which are part of the values here).
        let mut b = MessageBuilder::new(m.typ, m.transaction_id);
        b.add(attr::SOFTWARE, b"STUN test client")
            .u32(attr::PRIORITY, 0x6e0001ff)
            .u64(attr::ICE_CONTROLLED, 0x932ff9b151263b36)
            .add(attr::USERNAME, b"evtj:h6vY")
            .integrity(Integrity::Sha1, b"VOkJxbRl1RmTxUk/WvJxBt")
            .fingerprint();
        let bytes = b.finish().unwrap();
        // USERNAME differs only in its padding bytes (the sample pads with spaces).
        assert_eq!(bytes.len(), RFC5769_REQUEST.len());
        Message::decode(&bytes)
            .unwrap()
            .verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt")
            .unwrap();
    }

    /// RFC 5769 2.2: an IPv4 response.
    #[test]
    fn rfc5769_sample_ipv4_response() {
        let resp: [u8; 80] = [
            0x01, 0x01, 0x00, 0x3c, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x08, 0x00, 0x01,
            0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43, 0x00, 0x08, 0x00, 0x14, 0x2b, 0x91, 0xf5, 0x99,
            0xfd, 0x9e, 0x90, 0xc3, 0x8c, 0x74, 0x89, 0xf9, 0x2a, 0xf9, 0xba, 0x53, 0xf0, 0x6b,
            0xe7, 0xd7, 0x80, 0x28, 0x00, 0x04, 0xc0, 0x7d, 0x4c, 0x96,
        ];
        let m = Message::decode(&resp).unwrap();
        assert_eq!(m.typ.class, Class::Success);
        assert_eq!(
            m.xor_mapped_address(),
            Some("192.0.2.1:32853".parse().unwrap())
        );
        m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt").unwrap();
    }

    /// RFC 5769 2.3: an IPv6 response.
    #[test]
    fn rfc5769_sample_ipv6_response() {
        let resp: [u8; 92] = [
            0x01, 0x01, 0x00, 0x48, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34,
            0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae, 0x80, 0x22, 0x00, 0x0b, 0x74, 0x65, 0x73, 0x74,
            0x20, 0x76, 0x65, 0x63, 0x74, 0x6f, 0x72, 0x20, 0x00, 0x20, 0x00, 0x14, 0x00, 0x02,
            0xa1, 0x47, 0x01, 0x13, 0xa9, 0xfa, 0xa5, 0xd3, 0xf1, 0x79, 0xbc, 0x25, 0xf4, 0xb5,
            0xbe, 0xd2, 0xb9, 0xd9, 0x00, 0x08, 0x00, 0x14, 0xa3, 0x82, 0x95, 0x4e, 0x4b, 0xe6,
            0x7b, 0xf1, 0x17, 0x84, 0xc9, 0x7c, 0x82, 0x92, 0xc2, 0x75, 0xbf, 0xe3, 0xed, 0x41,
            0x80, 0x28, 0x00, 0x04, 0xc8, 0xfb, 0x0b, 0x4c,
        ];
        let m = Message::decode(&resp).unwrap();
        assert_eq!(
            m.xor_mapped_address(),
            Some(
                "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
                    .parse()
                    .unwrap()
            )
        );
        m.verify_integrity(b"VOkJxbRl1RmTxUk/WvJxBt").unwrap();
    }

    /// RFC 5769 2.4: a request with long-term credentials.
    #[test]
    fn rfc5769_sample_long_term_request() {
        let req: [u8; 116] = [
            0x00, 0x01, 0x00, 0x60, 0x21, 0x12, 0xa4, 0x42, 0x78, 0xad, 0x34, 0x33, 0xc6, 0xad,
            0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e, 0x00, 0x06, 0x00, 0x12, 0xe3, 0x83, 0x9e, 0xe3,
            0x83, 0x88, 0xe3, 0x83, 0xaa, 0xe3, 0x83, 0x83, 0xe3, 0x82, 0xaf, 0xe3, 0x82, 0xb9,
            0x00, 0x00, 0x00, 0x15, 0x00, 0x1c, 0x66, 0x2f, 0x2f, 0x34, 0x39, 0x39, 0x6b, 0x39,
            0x35, 0x34, 0x64, 0x36, 0x4f, 0x4c, 0x33, 0x34, 0x6f, 0x4c, 0x39, 0x46, 0x53, 0x54,
            0x76, 0x79, 0x36, 0x34, 0x73, 0x41, 0x00, 0x14, 0x00, 0x0b, 0x65, 0x78, 0x61, 0x6d,
            0x70, 0x6c, 0x65, 0x2e, 0x6f, 0x72, 0x67, 0x00, 0x00, 0x08, 0x00, 0x14, 0xf6, 0x70,
            0x24, 0x65, 0x6d, 0xd6, 0x4a, 0x3e, 0x02, 0xb8, 0xe0, 0x71, 0x2e, 0x85, 0xc9, 0xa2,
            0x8c, 0xa8, 0x96, 0x66,
        ];
        let m = Message::decode(&req).unwrap();
        assert_eq!(m.realm(), Some("example.org"));
        assert_eq!(m.nonce(), Some("f//499k954d6OL34oL9FSTvy64sA"));
        let user = m.username().unwrap();
        // The sample's password is "TheMatrIX" after SASLprep of "The<U+00AD>M<U+00AA>tr<U+2168>".
        let key = super::super::long_term_key(user, "example.org", "TheMatrIX");
        m.verify_integrity(&key).unwrap();
    }

    #[test]
    fn sha256_integrity_round_trip_and_truncation() {
        let tid = TransactionId([9; 12]);
        let mut b = MessageBuilder::new(MessageType::new(Method::BINDING, Class::Request), tid);
        b.add(attr::USERNAME, b"a:b")
            .integrity(Integrity::Sha256, b"pw")
            .fingerprint();
        let bytes = b.finish().unwrap();
        let m = Message::decode(&bytes).unwrap();
        assert_eq!(m.integrity_kind(), Some(Integrity::Sha256));
        m.verify_integrity(b"pw").unwrap();
        assert!(m.verify_integrity(b"px").is_err());
    }

    #[test]
    fn attributes_after_integrity_are_ignored() {
        let tid = TransactionId([1; 12]);
        let mut b = MessageBuilder::new(MessageType::new(Method::BINDING, Class::Request), tid);
        b.add(attr::USERNAME, b"u:v")
            .integrity(Integrity::Sha1, b"k")
            .u32(attr::PRIORITY, 7);
        let bytes = b.finish().unwrap();
        let m = Message::decode(&bytes).unwrap();
        assert_eq!(
            m.priority(),
            None,
            "PRIORITY after MESSAGE-INTEGRITY is not covered"
        );
        m.verify_integrity(b"k").unwrap();
    }

    #[test]
    fn framing_errors() {
        let tid = TransactionId([3; 12]);
        let mut b = MessageBuilder::new(MessageType::new(Method::BINDING, Class::Request), tid);
        b.add(attr::SOFTWARE, b"x").fingerprint();
        let good = b.finish().unwrap();
        assert!(Message::decode(&good).is_ok());
        assert!(is_stun(&good));

        let mut bad = good.clone();
        bad[4] ^= 1;
        assert_eq!(Message::decode(&bad).unwrap_err(), StunError::NotStun);
        assert!(!is_stun(&bad));

        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert_eq!(
            Message::decode(&bad).unwrap_err(),
            StunError::BadFingerprint
        );

        let mut bad = good.clone();
        bad.push(0);
        assert_eq!(Message::decode(&bad).unwrap_err(), StunError::BadLength);

        // An attribute claiming more bytes than remain.
        let mut bad = good.clone();
        bad[22..24].copy_from_slice(&100u16.to_be_bytes());
        assert!(matches!(
            Message::decode(&bad),
            Err(StunError::BadAttribute(_))
        ));
        assert_eq!(
            Message::decode(&good[..10]).unwrap_err(),
            StunError::TooShort
        );
    }

    #[test]
    fn too_long_values_fail_at_finish() {
        let mut b = MessageBuilder::new(
            MessageType::new(Method::SEND, Class::Indication),
            TransactionId([0; 12]),
        );
        b.add(attr::DATA, &vec![0u8; 70_000]);
        assert_eq!(b.finish(), Err(StunError::TooLong));
    }

    #[test]
    fn unknown_required_attributes() {
        let mut b = MessageBuilder::new(
            MessageType::new(Method::BINDING, Class::Request),
            TransactionId([0; 12]),
        );
        b.add(0x7777, b"?")
            .add(0x8888, b"optional")
            .add(attr::USERNAME, b"a");
        let bytes = b.finish().unwrap();
        let m = Message::decode(&bytes).unwrap();
        assert_eq!(m.unknown_required(&[attr::USERNAME]), vec![0x7777]);
    }
}
