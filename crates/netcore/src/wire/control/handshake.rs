//! The bodies of the six control messages: the stateless challenge, the connect handshake and
//! the two ways to say a connection is gone.
//!
//! Hand-written `prost` messages with the reference protocol's field numbers and types
//! (`steamnetworkingsockets_messages_udp.proto`), so no build script or `protoc` is needed.
//! Connection ids are `fixed32`, timestamps and challenges `fixed64`, as there.

use super::certs::{CertificateSigned, IdentityLegacyBinary, SessionCryptInfoSigned};

/// Lead byte 32, padded. A client asks for a challenge.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChallengeRequest {
    /// The client's half of the connection id (must be non-zero).
    #[prost(fixed32, optional, tag = "1")]
    pub connection_id: Option<u32>,
    /// Client's clock, microseconds; echoed back for a ping estimate.
    #[prost(fixed64, optional, tag = "3")]
    pub my_timestamp: Option<u64>,
    /// Client's protocol version.
    #[prost(uint32, optional, tag = "4")]
    pub protocol_version: Option<u32>,
}

/// Lead byte 33. The server's stateless challenge.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ChallengeReply {
    /// Echo of the client's connection id.
    #[prost(fixed32, optional, tag = "1")]
    pub connection_id: Option<u32>,
    /// The challenge the client must return in its ConnectRequest.
    #[prost(fixed64, optional, tag = "2")]
    pub challenge: Option<u64>,
    /// Echo of the request's `my_timestamp`.
    #[prost(fixed64, optional, tag = "3")]
    pub your_timestamp: Option<u64>,
    /// Server's protocol version.
    #[prost(uint32, optional, tag = "4")]
    pub protocol_version: Option<u32>,
}

/// Lead byte 34. The client returns the challenge and presents its cert and session keys.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectRequest {
    /// The client's half of the connection id.
    #[prost(fixed32, optional, tag = "1")]
    pub client_connection_id: Option<u32>,
    /// The challenge from ChallengeReply.
    #[prost(fixed64, optional, tag = "2")]
    pub challenge: Option<u64>,
    /// Client's clock, microseconds; echoed in ConnectOK.
    #[prost(fixed64, optional, tag = "5")]
    pub my_timestamp: Option<u64>,
    /// Client's ping estimate, milliseconds.
    #[prost(uint32, optional, tag = "6")]
    pub ping_est_ms: Option<u32>,
    /// Signed ephemeral keys and cipher offer.
    #[prost(message, optional, tag = "7")]
    pub crypt: Option<SessionCryptInfoSigned>,
    /// The client's certificate (possibly unsigned).
    #[prost(message, optional, tag = "4")]
    pub cert: Option<CertificateSigned>,
    /// Old place of the protocol version (now inside `crypt`).
    #[prost(uint32, optional, tag = "8")]
    pub legacy_protocol_version: Option<u32>,
    /// Client identity, when the cert does not name one.
    #[prost(string, optional, tag = "10")]
    pub identity_string: Option<String>,
    /// Legacy SteamID identity.
    #[prost(fixed64, optional, tag = "3")]
    pub legacy_client_steam_id: Option<u64>,
    /// Legacy binary identity.
    #[prost(message, optional, tag = "9")]
    pub legacy_identity_binary: Option<IdentityLegacyBinary>,
}

/// Lead byte 35. The server accepts.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectOk {
    /// Echo of the client's half of the connection id.
    #[prost(fixed32, optional, tag = "1")]
    pub client_connection_id: Option<u32>,
    /// The server's half of the connection id (low 16 bits must be non-zero).
    #[prost(fixed32, optional, tag = "5")]
    pub server_connection_id: Option<u32>,
    /// Echo of the request's `my_timestamp`.
    #[prost(fixed64, optional, tag = "3")]
    pub your_timestamp: Option<u64>,
    /// Microseconds between receiving the request and answering.
    #[prost(uint32, optional, tag = "4")]
    pub delay_time_usec: Option<u32>,
    /// Signed ephemeral keys and chosen cipher.
    #[prost(message, optional, tag = "7")]
    pub crypt: Option<SessionCryptInfoSigned>,
    /// The server's certificate.
    #[prost(message, optional, tag = "8")]
    pub cert: Option<CertificateSigned>,
    /// Server identity, when the cert does not name one.
    #[prost(string, optional, tag = "11")]
    pub identity_string: Option<String>,
    /// Legacy SteamID identity.
    #[prost(fixed64, optional, tag = "2")]
    pub legacy_server_steam_id: Option<u64>,
    /// Legacy binary identity.
    #[prost(message, optional, tag = "10")]
    pub legacy_identity_binary: Option<IdentityLegacyBinary>,
}

/// Lead byte 36, padded. The sender closed the connection; the peer answers NoConnection.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionClosed {
    /// The receiver's half of the connection id, if known.
    #[prost(fixed32, optional, tag = "4")]
    pub to_connection_id: Option<u32>,
    /// The sender's half of the connection id.
    #[prost(fixed32, optional, tag = "5")]
    pub from_connection_id: Option<u32>,
    /// Human-readable reason.
    #[prost(string, optional, tag = "2")]
    pub debug: Option<String>,
    /// `ConnectionEnd` code.
    #[prost(uint32, optional, tag = "3")]
    pub reason_code: Option<u32>,
}

/// Lead byte 37. "No such connection here"; never answered.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NoConnection {
    /// The sender's half of the connection id that was tried.
    #[prost(fixed32, optional, tag = "2")]
    pub from_connection_id: Option<u32>,
    /// The receiver's half of the connection id, if known.
    #[prost(fixed32, optional, tag = "3")]
    pub to_connection_id: Option<u32>,
}
