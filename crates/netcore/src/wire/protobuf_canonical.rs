//! An independent reading of the control datagrams, for the differential fuzz target: the
//! canonical bytes of a control datagram, worked out from the protobuf wire format and the
//! framing rules directly, without prost or the codec in `control`.
//!
//! The canonical form is what an encoder that writes each present field once, in field
//! number order, with minimal varints, produces: unknown fields are dropped, the last
//! occurrence of a scalar or byte field wins, the occurrences of an embedded message are
//! merged, a `uint32` read from a wider varint keeps its low 32 bits. What the protobuf rules
//! refuse (a bad key, a wire type that does not match a known field, a truncated value, a
//! string that is not UTF-8, a varint past 64 bits, an unmatched group end, nesting past the
//! depth limit) is refused here too. The two readings must agree on every datagram.

use std::collections::BTreeMap;

/// A message's fields: (field number, type).
type Schema = &'static [(u32, Kind)];

/// How a field is encoded.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Fixed32,
    Fixed64,
    /// A `uint32` varint.
    Uint32,
    String,
    Bytes,
    Message(Schema),
}

impl Kind {
    fn wire_type(self) -> u8 {
        match self {
            Kind::Uint32 => 0,
            Kind::Fixed64 => 1,
            Kind::String | Kind::Bytes | Kind::Message(_) => 2,
            Kind::Fixed32 => 5,
        }
    }
}

// The schemas, from the reference protocol's .proto files (field number, type).
const CERT_SIGNED: Schema = &[
    (1, Kind::Bytes),
    (4, Kind::Bytes),
    (5, Kind::Fixed64),
    (6, Kind::Bytes),
];
const CRYPT_SIGNED: Schema = &[(1, Kind::Bytes), (2, Kind::Bytes)];
const LEGACY_IDENTITY: Schema = &[
    (2, Kind::Bytes),
    (3, Kind::String),
    (4, Kind::Bytes),
    (16, Kind::Fixed64),
];
const CHALLENGE_REQUEST: Schema = &[(1, Kind::Fixed32), (3, Kind::Fixed64), (4, Kind::Uint32)];
const CHALLENGE_REPLY: Schema = &[
    (1, Kind::Fixed32),
    (2, Kind::Fixed64),
    (3, Kind::Fixed64),
    (4, Kind::Uint32),
];
const CONNECT_REQUEST: Schema = &[
    (1, Kind::Fixed32),
    (2, Kind::Fixed64),
    (3, Kind::Fixed64),
    (4, Kind::Message(CERT_SIGNED)),
    (5, Kind::Fixed64),
    (6, Kind::Uint32),
    (7, Kind::Message(CRYPT_SIGNED)),
    (8, Kind::Uint32),
    (9, Kind::Message(LEGACY_IDENTITY)),
    (10, Kind::String),
];
const CONNECT_OK: Schema = &[
    (1, Kind::Fixed32),
    (2, Kind::Fixed64),
    (3, Kind::Fixed64),
    (4, Kind::Uint32),
    (5, Kind::Fixed32),
    (7, Kind::Message(CRYPT_SIGNED)),
    (8, Kind::Message(CERT_SIGNED)),
    (10, Kind::Message(LEGACY_IDENTITY)),
    (11, Kind::String),
];
const CONNECTION_CLOSED: Schema = &[
    (2, Kind::String),
    (3, Kind::Uint32),
    (4, Kind::Fixed32),
    (5, Kind::Fixed32),
];
const NO_CONNECTION: Schema = &[(2, Kind::Fixed32), (3, Kind::Fixed32)];

/// Nesting allowed below the top-level message (the protobuf runtime's default limit).
const DEPTH: u32 = 100;

/// Smallest datagram read at all, smallest padded datagram, largest one sent.
const MIN_LEN: usize = 5;
const MIN_PADDED: usize = 512;
const MAX_SEND: usize = 1300;

/// A refusal (the reason does not matter to the comparison).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refused;

#[derive(Clone, Debug)]
enum Value {
    Varint(u64),
    Fixed32([u8; 4]),
    Fixed64([u8; 8]),
    Bytes(Vec<u8>),
    Message(Fields),
}

type Fields = BTreeMap<u32, Value>;

struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        if n > self.data.len() {
            return Err(Refused);
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, Refused> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = *self.take(1)?.first().ok_or(Refused)?;
            if i == 9 && b > 1 {
                // Past 64 bits.
                return Err(Refused);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Refused)
    }

    fn key(&mut self) -> Result<(u32, u8), Refused> {
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| Refused)?;
        let wire_type = (key & 7) as u8;
        let field = key >> 3;
        if wire_type > 5 || field == 0 {
            return Err(Refused);
        }
        Ok((field, wire_type))
    }
}

/// Skips an unknown field of `wire_type`; `depth` counts down into groups.
fn skip(r: &mut Reader<'_>, field: u32, wire_type: u8, depth: u32) -> Result<(), Refused> {
    if depth == 0 {
        return Err(Refused);
    }
    match wire_type {
        0 => r.varint().map(|_| ()),
        1 => r.take(8).map(|_| ()),
        5 => r.take(4).map(|_| ()),
        2 => {
            let len = r.varint()?;
            let len = usize::try_from(len).map_err(|_| Refused)?;
            r.take(len).map(|_| ())
        }
        3 => loop {
            let (inner, wt) = r.key()?;
            if wt == 4 {
                return if inner == field { Ok(()) } else { Err(Refused) };
            }
            skip(r, inner, wt, depth - 1)?;
        },
        _ => Err(Refused),
    }
}

/// Reads `data` as a message of `schema` into `fields` (merging with what is there).
fn merge(schema: Schema, data: &[u8], depth: u32, fields: &mut Fields) -> Result<(), Refused> {
    let mut r = Reader { data };
    while !r.data.is_empty() {
        let (field, wire_type) = r.key()?;
        let Some(&(_, kind)) = schema.iter().find(|(f, _)| *f == field) else {
            skip(&mut r, field, wire_type, depth)?;
            continue;
        };
        if kind.wire_type() != wire_type {
            return Err(Refused);
        }
        let value = match kind {
            Kind::Uint32 => Value::Varint(r.varint()? & 0xffff_ffff),
            Kind::Fixed32 => {
                let b = r.take(4)?;
                Value::Fixed32([b[0], b[1], b[2], b[3]])
            }
            Kind::Fixed64 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(r.take(8)?);
                Value::Fixed64(a)
            }
            Kind::String | Kind::Bytes | Kind::Message(_) => {
                let len = usize::try_from(r.varint()?).map_err(|_| Refused)?;
                let body = r.take(len)?;
                match kind {
                    Kind::String => {
                        std::str::from_utf8(body).map_err(|_| Refused)?;
                        Value::Bytes(body.to_vec())
                    }
                    Kind::Message(inner) => {
                        if depth == 0 {
                            return Err(Refused);
                        }
                        let mut sub = match fields.remove(&field) {
                            Some(Value::Message(sub)) => sub,
                            _ => Fields::new(),
                        };
                        merge(inner, body, depth - 1, &mut sub)?;
                        Value::Message(sub)
                    }
                    _ => Value::Bytes(body.to_vec()),
                }
            }
        };
        fields.insert(field, value);
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn encode(fields: &Fields, out: &mut Vec<u8>) {
    for (&field, value) in fields {
        let wire_type = match value {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Bytes(_) | Value::Message(_) => 2,
            Value::Fixed32(_) => 5,
        };
        put_varint(out, u64::from(field << 3 | wire_type));
        match value {
            Value::Varint(v) => put_varint(out, *v),
            Value::Fixed32(b) => out.extend_from_slice(b),
            Value::Fixed64(b) => out.extend_from_slice(b),
            Value::Bytes(b) => {
                put_varint(out, b.len() as u64);
                out.extend_from_slice(b);
            }
            Value::Message(sub) => {
                let mut inner = Vec::new();
                encode(sub, &mut inner);
                put_varint(out, inner.len() as u64);
                out.extend_from_slice(&inner);
            }
        }
    }
}

/// The canonical body of a message of `schema`, or why it is refused.
fn canonical_body(schema: Schema, body: &[u8]) -> Result<Vec<u8>, Refused> {
    let mut fields = Fields::new();
    merge(schema, body, DEPTH, &mut fields)?;
    let mut out = Vec::new();
    encode(&fields, &mut out);
    Ok(out)
}

/// A control datagram's canonical form: `Err` if it does not read as one, `Ok(None)` if it
/// reads but its canonical form cannot be sent (over the MTU, or too short to be read back).
pub fn control_datagram(data: &[u8]) -> Result<Option<Vec<u8>>, Refused> {
    if data.len() < MIN_LEN {
        return Err(Refused);
    }
    let lead = data[0];
    let (schema, padded) = match lead {
        32 => (CHALLENGE_REQUEST, true),
        33 => (CHALLENGE_REPLY, false),
        34 => (CONNECT_REQUEST, false),
        35 => (CONNECT_OK, false),
        36 => (CONNECTION_CLOSED, true),
        37 => (NO_CONNECTION, false),
        _ => return Err(Refused),
    };
    let body = if padded {
        if data.len() < MIN_PADDED {
            return Err(Refused);
        }
        let len = usize::from(u16::from_le_bytes([data[1], data[2]]));
        if len == 0 {
            return Err(Refused);
        }
        data.get(3..3 + len).ok_or(Refused)?
    } else {
        &data[1..]
    };
    let body = canonical_body(schema, body)?;
    let header = if padded { 3 } else { 1 };
    let unpadded = header + body.len();
    if !(MIN_LEN..=MAX_SEND).contains(&unpadded) || (padded && body.is_empty()) {
        return Ok(None);
    }
    let mut out = vec![lead];
    if padded {
        out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    }
    out.extend_from_slice(&body);
    if padded {
        out.resize(unpadded.max(MIN_PADDED), 0);
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::control::*;
    use prost::Message;

    /// The schemas above match the codec's messages: a message with every field set reads
    /// back to prost's own encoding.
    #[test]
    fn schemas_match_the_codec() {
        let cert = CertificateSigned {
            cert: Some(vec![1, 2, 3]),
            ca_key_id: Some(0x1122_3344_5566_7788),
            ca_signature: Some(vec![4; 64]),
            private_key_data: Some(vec![5]),
        };
        let crypt = SessionCryptInfoSigned {
            info: Some(vec![6; 10]),
            signature: Some(vec![7; 64]),
        };
        let legacy = IdentityLegacyBinary {
            steam_id: Some(76_561_197_960_287_930),
            generic_bytes: Some(vec![8, 9]),
            generic_string: Some("alice".into()),
            ipv6_and_port: Some(vec![0; 18]),
        };
        let cases: Vec<(Schema, Vec<u8>)> = vec![
            (
                CHALLENGE_REQUEST,
                ChallengeRequest {
                    connection_id: Some(1),
                    my_timestamp: Some(2),
                    protocol_version: Some(u32::MAX),
                }
                .encode_to_vec(),
            ),
            (
                CHALLENGE_REPLY,
                ChallengeReply {
                    connection_id: Some(1),
                    challenge: Some(2),
                    your_timestamp: Some(3),
                    protocol_version: Some(13),
                }
                .encode_to_vec(),
            ),
            (
                CONNECT_REQUEST,
                ConnectRequest {
                    client_connection_id: Some(1),
                    challenge: Some(2),
                    my_timestamp: Some(3),
                    ping_est_ms: Some(4),
                    crypt: Some(crypt.clone()),
                    cert: Some(cert.clone()),
                    legacy_protocol_version: Some(5),
                    identity_string: Some("str:bob".into()),
                    legacy_client_steam_id: Some(6),
                    legacy_identity_binary: Some(legacy.clone()),
                }
                .encode_to_vec(),
            ),
            (
                CONNECT_OK,
                ConnectOk {
                    client_connection_id: Some(1),
                    server_connection_id: Some(2),
                    your_timestamp: Some(3),
                    delay_time_usec: Some(4),
                    crypt: Some(crypt),
                    cert: Some(cert),
                    identity_string: Some("str:carol".into()),
                    legacy_server_steam_id: Some(5),
                    legacy_identity_binary: Some(legacy),
                }
                .encode_to_vec(),
            ),
            (
                CONNECTION_CLOSED,
                ConnectionClosed {
                    to_connection_id: Some(1),
                    from_connection_id: Some(2),
                    debug: Some("why".into()),
                    reason_code: Some(5003),
                }
                .encode_to_vec(),
            ),
            (
                NO_CONNECTION,
                NoConnection {
                    from_connection_id: Some(1),
                    to_connection_id: Some(2),
                }
                .encode_to_vec(),
            ),
        ];
        for (schema, bytes) in cases {
            assert_eq!(canonical_body(schema, &bytes), Ok(bytes));
        }
    }

    #[test]
    fn canonical_form_rules() {
        // NoConnection with field 2 twice (last wins), an unknown varint field, and a
        // non-minimal varint key: canonical keeps one field 2 and drops the rest.
        let body = [
            0x15, 1, 0, 0, 0, // field 2 = 1
            0x38, 0x96, 0x01, // field 7 (unknown) = 150
            0x95, 0x00, 2, 0, 0, 0, // field 2 = 2, key as a two-byte varint
        ];
        assert_eq!(
            canonical_body(NO_CONNECTION, &body),
            Ok(vec![0x15, 2, 0, 0, 0])
        );
        // A uint32 from a wider varint keeps its low 32 bits.
        let wide = [0x18, 0xff, 0xff, 0xff, 0xff, 0x1f]; // 2^35 - 1
        assert_eq!(
            canonical_body(CONNECTION_CLOSED, &wide),
            Ok(vec![0x18, 0xff, 0xff, 0xff, 0xff, 0x0f])
        );
        // Refusals: wrong wire type for a known field, bad UTF-8, an unmatched group end.
        assert_eq!(canonical_body(NO_CONNECTION, &[0x10, 1]), Err(Refused));
        assert_eq!(
            canonical_body(CONNECTION_CLOSED, &[0x12, 1, 0xff]),
            Err(Refused)
        );
        assert_eq!(canonical_body(NO_CONNECTION, &[0x3c]), Err(Refused));
        // A group of unknown fields is skipped whole.
        assert_eq!(
            canonical_body(NO_CONNECTION, &[0x3b, 0x08, 1, 0x3c, 0x15, 9, 0, 0, 0]),
            Ok(vec![0x15, 9, 0, 0, 0])
        );
    }
}
