//! Control messages: the handshake and teardown datagrams that travel outside the encrypted
//! data stream, as protobuf bodies behind a one-byte message id.
//!
//! Two framings exist (see `docs/PROTOCOL.md`):
//!
//! ```text
//! plain:   id | protobuf body                                   (ChallengeReply, ConnectRequest,
//!                                                                ConnectOK, NoConnection)
//! padded:  id | u16 LE body length | protobuf body | zero bytes  (ChallengeRequest,
//!          ...to at least MIN_PADDED_PACKET bytes in total        ConnectionClosed)
//! ```
//!
//! The padded ones are the two a stranger can provoke a reply to; requiring them to be large
//! means a spoofed sender cannot use us to amplify traffic. Decoding allocates only for the
//! message's own strings and byte fields, bounded by the datagram size.

pub mod certs;
pub mod handshake;
pub mod stats;

pub use certs::*;
pub use handshake::*;
pub use stats::*;

use prost::Message;

use super::datagram::{classify, ControlKind, Lead, MIN_DATAGRAM_LEN, MIN_PADDED_PACKET, MTU};
use super::WireError;

/// Bytes before the body of a padded message: the id and the u16 length.
pub const PADDED_HEADER_LEN: usize = 3;

/// One decoded control datagram.
#[derive(Clone, Debug, PartialEq)]
pub enum ControlMessage {
    /// Id 32.
    ChallengeRequest(ChallengeRequest),
    /// Id 33.
    ChallengeReply(ChallengeReply),
    /// Id 34.
    ConnectRequest(ConnectRequest),
    /// Id 35.
    ConnectOk(ConnectOk),
    /// Id 36.
    ConnectionClosed(ConnectionClosed),
    /// Id 37.
    NoConnection(NoConnection),
}

impl ControlMessage {
    /// Which message this is.
    pub fn kind(&self) -> ControlKind {
        match self {
            ControlMessage::ChallengeRequest(_) => ControlKind::ChallengeRequest,
            ControlMessage::ChallengeReply(_) => ControlKind::ChallengeReply,
            ControlMessage::ConnectRequest(_) => ControlKind::ConnectRequest,
            ControlMessage::ConnectOk(_) => ControlKind::ConnectOk,
            ControlMessage::ConnectionClosed(_) => ControlKind::ConnectionClosed,
            ControlMessage::NoConnection(_) => ControlKind::NoConnection,
        }
    }

    fn body_len(&self) -> usize {
        match self {
            ControlMessage::ChallengeRequest(m) => m.encoded_len(),
            ControlMessage::ChallengeReply(m) => m.encoded_len(),
            ControlMessage::ConnectRequest(m) => m.encoded_len(),
            ControlMessage::ConnectOk(m) => m.encoded_len(),
            ControlMessage::ConnectionClosed(m) => m.encoded_len(),
            ControlMessage::NoConnection(m) => m.encoded_len(),
        }
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        // `encode_raw` cannot fail on a `Vec`, which grows as needed.
        match self {
            ControlMessage::ChallengeRequest(m) => m.encode_raw(out),
            ControlMessage::ChallengeReply(m) => m.encode_raw(out),
            ControlMessage::ConnectRequest(m) => m.encode_raw(out),
            ControlMessage::ConnectOk(m) => m.encode_raw(out),
            ControlMessage::ConnectionClosed(m) => m.encode_raw(out),
            ControlMessage::NoConnection(m) => m.encode_raw(out),
        }
    }

    /// Bytes [`ControlMessage::encode`] appends, padding included.
    pub fn encoded_len(&self) -> usize {
        let body = self.body_len();
        if self.kind().is_padded() {
            (PADDED_HEADER_LEN + body).max(MIN_PADDED_PACKET)
        } else {
            1 + body
        }
    }

    /// Appends the whole datagram (id, framing, body, padding).
    ///
    /// Refuses a datagram over the [`MTU`], a padded message with an empty body (receivers
    /// reject a zero length prefix) and a plain one under [`MIN_DATAGRAM_LEN`] (receivers drop
    /// those unread). Nothing is appended on error.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let kind = self.kind();
        let body = self.body_len();
        let unpadded = if kind.is_padded() {
            PADDED_HEADER_LEN + body
        } else {
            1 + body
        };
        if unpadded > MTU {
            return Err(WireError::NoRoom {
                needed: unpadded,
                available: MTU,
            });
        }
        if kind.is_padded() && body == 0 {
            return Err(WireError::Unencodable {
                what: "padded control message with an empty body",
            });
        }
        if unpadded < MIN_DATAGRAM_LEN {
            return Err(WireError::Unencodable {
                what: "control message shorter than a datagram",
            });
        }
        let start = out.len();
        out.push(kind.id());
        if kind.is_padded() {
            // body <= MTU here, so it fits the u16 prefix.
            out.extend_from_slice(&(body as u16).to_le_bytes());
        }
        self.write_body(out);
        if kind.is_padded() {
            out.resize(start + unpadded.max(MIN_PADDED_PACKET), 0);
        }
        Ok(())
    }

    /// Decodes a whole control datagram.
    pub fn decode(datagram: &[u8]) -> Result<Self, WireError> {
        let kind = match classify(datagram)? {
            Lead::Control(kind) => kind,
            Lead::Data => {
                return Err(WireError::UnknownLeadByte(
                    datagram.first().copied().unwrap_or(0),
                ))
            }
        };
        let body = if kind.is_padded() {
            padded_body(datagram)?
        } else {
            datagram.get(1..).unwrap_or_default()
        };
        let parsed = match kind {
            ControlKind::ChallengeRequest => {
                ChallengeRequest::decode(body).map(ControlMessage::ChallengeRequest)
            }
            ControlKind::ChallengeReply => {
                ChallengeReply::decode(body).map(ControlMessage::ChallengeReply)
            }
            ControlKind::ConnectRequest => {
                ConnectRequest::decode(body).map(ControlMessage::ConnectRequest)
            }
            ControlKind::ConnectOk => ConnectOk::decode(body).map(ControlMessage::ConnectOk),
            ControlKind::ConnectionClosed => {
                ConnectionClosed::decode(body).map(ControlMessage::ConnectionClosed)
            }
            ControlKind::NoConnection => {
                NoConnection::decode(body).map(ControlMessage::NoConnection)
            }
        };
        parsed.map_err(|_| WireError::Protobuf)
    }
}

/// The body of a padded message, after the size and length checks the reference makes.
fn padded_body(datagram: &[u8]) -> Result<&[u8], WireError> {
    let len = datagram.len();
    if len < MIN_PADDED_PACKET {
        return Err(WireError::NotPadded { len });
    }
    let body_len = match datagram {
        [_, lo, hi, ..] => usize::from(u16::from_le_bytes([*lo, *hi])),
        _ => return Err(WireError::NotPadded { len }),
    };
    if body_len == 0 {
        return Err(WireError::BadPaddedLength {
            body: body_len,
            len,
        });
    }
    datagram
        .get(PADDED_HEADER_LEN..PADDED_HEADER_LEN + body_len)
        .ok_or(WireError::BadPaddedLength {
            body: body_len,
            len,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(msg: &ControlMessage) -> Result<(), TestCaseError> {
        let mut out = vec![0xee];
        match msg.encode(&mut out) {
            Ok(()) => {
                prop_assert_eq!(out.len(), 1 + msg.encoded_len());
                prop_assert_eq!(ControlMessage::decode(&out[1..]), Ok(msg.clone()));
                if msg.kind().is_padded() {
                    prop_assert!(out.len() > MIN_PADDED_PACKET);
                }
            }
            Err(_) => {
                // Only refused for the documented reasons, and nothing was written.
                prop_assert_eq!(out.len(), 1);
                let body = msg.body_len();
                prop_assert!(
                    body + PADDED_HEADER_LEN > MTU
                        || body + 1 < MIN_DATAGRAM_LEN
                        || (msg.kind().is_padded() && body == 0)
                );
            }
        }
        Ok(())
    }

    #[test]
    fn hand_written_challenge_request() {
        // id 32, length 16 (LE), then connection_id (field 1, fixed32) = 0x01020304,
        // my_timestamp (field 3, fixed64) = 0, protocol_version (field 4, varint) = 13, then
        // zeros to 512 bytes.
        let mut bytes = vec![32, 16, 0, 0x0d, 0x04, 0x03, 0x02, 0x01, 0x19];
        bytes.extend_from_slice(&[0; 8]);
        bytes.extend_from_slice(&[0x20, 0x0d]);
        bytes.resize(512, 0);
        let msg = ControlMessage::ChallengeRequest(ChallengeRequest {
            connection_id: Some(0x0102_0304),
            my_timestamp: Some(0),
            protocol_version: Some(13),
        });
        assert_eq!(ControlMessage::decode(&bytes), Ok(msg.clone()));
        let mut out = Vec::new();
        msg.encode(&mut out).expect("encodes");
        assert_eq!(out, bytes);
        // One byte short of the padding minimum is refused, as the reference does.
        assert_eq!(
            ControlMessage::decode(&bytes[..511]),
            Err(WireError::NotPadded { len: 511 })
        );
    }

    #[test]
    fn hand_written_no_connection() {
        // id 37, from_connection_id (field 2, fixed32) = 7, to_connection_id (field 3) = 9.
        let bytes = [37, 0x15, 7, 0, 0, 0, 0x1d, 9, 0, 0, 0];
        let msg = ControlMessage::NoConnection(NoConnection {
            from_connection_id: Some(7),
            to_connection_id: Some(9),
        });
        assert_eq!(ControlMessage::decode(&bytes), Ok(msg.clone()));
        let mut out = Vec::new();
        msg.encode(&mut out).expect("encodes");
        assert_eq!(out, bytes);
    }

    #[test]
    fn padded_length_checks() {
        let mut bytes = vec![36, 0, 0];
        bytes.resize(512, 0);
        // Zero length prefix.
        assert!(matches!(
            ControlMessage::decode(&bytes),
            Err(WireError::BadPaddedLength { .. })
        ));
        // Length prefix past the end.
        bytes[1] = 0xff;
        bytes[2] = 0x01;
        assert!(matches!(
            ControlMessage::decode(&bytes),
            Err(WireError::BadPaddedLength { .. })
        ));
        // A data packet is not a control message.
        assert_eq!(
            ControlMessage::decode(&[0x80, 0, 0, 0, 0, 0, 0]),
            Err(WireError::UnknownLeadByte(0x80))
        );
        // Garbage protobuf: field 0 is invalid.
        assert_eq!(
            ControlMessage::decode(&[33, 0, 0, 0, 0]),
            Err(WireError::Protobuf)
        );
    }

    #[test]
    fn refuses_empty_or_oversized() {
        let mut out = Vec::new();
        let empty = ControlMessage::ConnectionClosed(ConnectionClosed::default());
        assert!(empty.encode(&mut out).is_err());
        let huge = ControlMessage::ConnectionClosed(ConnectionClosed {
            debug: Some("x".repeat(MTU)),
            ..Default::default()
        });
        assert!(matches!(
            huge.encode(&mut out),
            Err(WireError::NoRoom { .. })
        ));
        assert!(out.is_empty());
    }

    fn bytes_opt(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max))
    }

    fn cert() -> impl Strategy<Value = CertificateSigned> {
        (
            bytes_opt(200),
            proptest::option::of(any::<u64>()),
            bytes_opt(64),
        )
            .prop_map(|(cert, ca_key_id, ca_signature)| CertificateSigned {
                cert,
                ca_key_id,
                ca_signature,
                private_key_data: None,
            })
    }

    fn crypt() -> impl Strategy<Value = SessionCryptInfoSigned> {
        (bytes_opt(120), bytes_opt(64))
            .prop_map(|(info, signature)| SessionCryptInfoSigned { info, signature })
    }

    fn message() -> impl Strategy<Value = ControlMessage> {
        let o32 = || proptest::option::of(any::<u32>());
        let o64 = || proptest::option::of(any::<u64>());
        let ostr = |n: usize| {
            proptest::option::of(
                proptest::string::string_regex(&format!(".{{0,{n}}}")).expect("regex"),
            )
        };
        prop_oneof![
            (o32(), o64(), o32()).prop_map(|(a, b, c)| ControlMessage::ChallengeRequest(
                ChallengeRequest {
                    connection_id: a,
                    my_timestamp: b,
                    protocol_version: c
                }
            )),
            (o32(), o64(), o64(), o32()).prop_map(|(a, b, c, d)| ControlMessage::ChallengeReply(
                ChallengeReply {
                    connection_id: a,
                    challenge: b,
                    your_timestamp: c,
                    protocol_version: d
                }
            )),
            (
                o32(),
                o64(),
                o64(),
                proptest::option::of(crypt()),
                proptest::option::of(cert()),
                ostr(40)
            )
                .prop_map(|(a, b, c, crypt, cert, id)| ControlMessage::ConnectRequest(
                    ConnectRequest {
                        client_connection_id: a,
                        challenge: b,
                        my_timestamp: c,
                        crypt,
                        cert,
                        identity_string: id,
                        ..Default::default()
                    }
                )),
            (
                o32(),
                o32(),
                o64(),
                proptest::option::of(crypt()),
                proptest::option::of(cert())
            )
                .prop_map(|(a, b, c, crypt, cert)| ControlMessage::ConnectOk(
                    ConnectOk {
                        client_connection_id: a,
                        server_connection_id: b,
                        your_timestamp: c,
                        crypt,
                        cert,
                        ..Default::default()
                    }
                )),
            (o32(), o32(), ostr(1400), o32()).prop_map(|(a, b, d, r)| {
                ControlMessage::ConnectionClosed(ConnectionClosed {
                    to_connection_id: a,
                    from_connection_id: b,
                    debug: d,
                    reason_code: r,
                })
            }),
            (o32(), o32()).prop_map(|(a, b)| ControlMessage::NoConnection(NoConnection {
                from_connection_id: a,
                to_connection_id: b,
            })),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn round_trips(msg in message()) {
            round_trip(&msg)?;
        }

        #[test]
        fn any_bytes_never_panic(id in 30u8..40, len_prefix in any::<u16>(), mut bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            bytes.insert(0, id);
            if bytes.len() > 3 {
                bytes[1..3].copy_from_slice(&len_prefix.to_le_bytes());
            }
            let _ = ControlMessage::decode(&bytes);
        }
    }
}
