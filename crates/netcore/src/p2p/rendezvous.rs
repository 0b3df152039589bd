//! The signaling payload: GNS's `CMsgSteamNetworkingP2PRendezvous` and the ICE messages inside
//! it, as prost messages with the reference's field numbers and types (proto2: optional
//! fields, unpacked repeated scalars), so a GNS peer can take part.
//!
//! A rendezvous message travels best-effort through the signaling service. It carries, at
//! most once each: a connect request (our crypt info and certificate, virtual ports), a
//! connect OK (the answer), a close, and a small reliable stream of [`ReliableMessage`]s
//! (ICE credentials and candidates) numbered by `first_reliable_msg` and acknowledged by
//! `ack_reliable_msg`, which [`ReliableSignals`] implements.
//!
//! ICE credentials as GNS makes them: the local ufrag is [`base64_lower_30_bits`] of our
//! connection id (so the peer can derive it from `from_connection_id` without it being sent),
//! the password is the same encoding of 32 random bits, sent as [`IceAuth::pwd_frag`].

use std::collections::VecDeque;
use std::time::Duration;

use prost::Message as _;

use crate::time::Timestamp;
use crate::wire::control::{CertificateSigned, SessionCryptInfoSigned};

/// `CMsgICECandidate`: one candidate in RFC 5245 `candidate-attribute` form.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IceCandidateMsg {
    /// `candidate:<foundation> <component> udp <priority> <address> <port> typ <type> ...`.
    #[prost(string, optional, tag = "3")]
    pub candidate: Option<String>,
}

/// `CMsgICERendezvous.Auth`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IceAuth {
    /// Our ICE password.
    #[prost(string, optional, tag = "1")]
    pub pwd_frag: Option<String>,
}

/// `CMsgICERendezvous`: credentials and/or one candidate.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IceRendezvous {
    /// Our ICE credentials (sent once, early).
    #[prost(message, optional, tag = "2")]
    pub auth: Option<IceAuth>,
    /// A candidate we gathered.
    #[prost(message, optional, tag = "1")]
    pub add_candidate: Option<IceCandidateMsg>,
}

/// `CMsgSteamNetworkingP2PRendezvous.ConnectRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectRequest {
    /// Signed key exchange parameters.
    #[prost(message, optional, tag = "6")]
    pub crypt: Option<SessionCryptInfoSigned>,
    /// Our certificate.
    #[prost(message, optional, tag = "7")]
    pub cert: Option<CertificateSigned>,
    /// Virtual port we connect to.
    #[prost(uint32, optional, tag = "9")]
    pub to_virtual_port: Option<u32>,
    /// Our virtual port.
    #[prost(uint32, optional, tag = "10")]
    pub from_virtual_port: Option<u32>,
    /// FakeIP we connect from (unused here).
    #[prost(string, optional, tag = "11")]
    pub from_fakeip: Option<String>,
}

/// `CMsgSteamNetworkingP2PRendezvous.ConnectOK`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectOk {
    /// Signed key exchange parameters.
    #[prost(message, optional, tag = "5")]
    pub crypt: Option<SessionCryptInfoSigned>,
    /// Our certificate.
    #[prost(message, optional, tag = "6")]
    pub cert: Option<CertificateSigned>,
}

/// `CMsgSteamNetworkingP2PRendezvous.ConnectionClosed`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionClosed {
    /// Human-readable reason.
    #[prost(string, optional, tag = "5")]
    pub debug: Option<String>,
    /// `ESteamNetConnectionEnd`.
    #[prost(uint32, optional, tag = "6")]
    pub reason_code: Option<u32>,
}

/// `CMsgSteamNetworkingP2PRendezvous.ReliableMessage`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReliableMessage {
    /// ICE credentials or a candidate.
    #[prost(message, optional, tag = "1")]
    pub ice: Option<IceRendezvous>,
}

/// `CMsgSteamNetworkingP2PRendezvous.ApplicationMessage`: an unreliable message sent inside
/// the signal before the route exists.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ApplicationMessage {
    /// Message bytes.
    #[prost(bytes = "vec", optional, tag = "1")]
    pub data: Option<Vec<u8>>,
    /// Message number.
    #[prost(uint64, optional, tag = "2")]
    pub msg_num: Option<u64>,
    /// Send flags.
    #[prost(uint32, optional, tag = "3")]
    pub flags: Option<u32>,
    /// Lane, if not 0.
    #[prost(uint32, optional, tag = "4")]
    pub lane_idx: Option<u32>,
}

/// `CMsgSteamNetworkingP2PRendezvous`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Rendezvous {
    /// Sender's identity (text form).
    #[prost(string, optional, tag = "8")]
    pub from_identity: Option<String>,
    /// Sender's connection id.
    #[prost(fixed32, optional, tag = "9")]
    pub from_connection_id: Option<u32>,
    /// Recipient's identity, if known.
    #[prost(string, optional, tag = "10")]
    pub to_identity: Option<String>,
    /// Recipient's connection id, if known.
    #[prost(fixed32, optional, tag = "1")]
    pub to_connection_id: Option<u32>,
    /// SDR routes (Steam only; carried opaquely).
    #[prost(bytes = "vec", optional, tag = "2")]
    pub sdr_routes: Option<Vec<u8>>,
    /// SDR route revision (Steam only).
    #[prost(uint32, optional, tag = "3")]
    pub ack_peer_routes_revision: Option<u32>,
    /// Whether the sender does ICE.
    #[prost(bool, optional, tag = "7")]
    pub ice_enabled: Option<bool>,
    /// Steam hosted-server ticket (carried opaquely).
    #[prost(bytes = "vec", optional, tag = "14")]
    pub hosted_server_ticket: Option<Vec<u8>>,
    /// Opening a connection.
    #[prost(message, optional, tag = "4")]
    pub connect_request: Option<ConnectRequest>,
    /// Accepting one.
    #[prost(message, optional, tag = "5")]
    pub connect_ok: Option<ConnectOk>,
    /// Closing one.
    #[prost(message, optional, tag = "6")]
    pub connection_closed: Option<ConnectionClosed>,
    /// Highest reliable message id received.
    #[prost(uint32, optional, tag = "11")]
    pub ack_reliable_msg: Option<u32>,
    /// Id of `reliable_messages[0]`.
    #[prost(uint32, optional, tag = "12")]
    pub first_reliable_msg: Option<u32>,
    /// Reliable messages, consecutive ids from `first_reliable_msg`.
    #[prost(message, repeated, tag = "13")]
    pub reliable_messages: Vec<ReliableMessage>,
    /// Unreliable application messages.
    #[prost(message, repeated, tag = "15")]
    pub application_messages: Vec<ApplicationMessage>,
}

/// Largest rendezvous message we accept or build (GNS keeps them "a few KB").
pub const MAX_RENDEZVOUS_LEN: usize = 16 * 1024;

/// Why a rendezvous blob was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RendezvousError {
    /// Over [`MAX_RENDEZVOUS_LEN`].
    #[error("rendezvous message of {0} bytes is too long")]
    TooLong(usize),
    /// Not valid protobuf for this message.
    #[error("rendezvous message does not parse: {0}")]
    Protobuf(String),
}

impl Rendezvous {
    /// Decodes a signal, refusing oversized ones before parsing.
    pub fn decode_signal(bytes: &[u8]) -> Result<Rendezvous, RendezvousError> {
        if bytes.len() > MAX_RENDEZVOUS_LEN {
            return Err(RendezvousError::TooLong(bytes.len()));
        }
        Rendezvous::decode(bytes).map_err(|e| RendezvousError::Protobuf(e.to_string()))
    }

    /// Encodes a signal.
    pub fn encode_signal(&self) -> Result<Vec<u8>, RendezvousError> {
        let v = self.encode_to_vec();
        if v.len() > MAX_RENDEZVOUS_LEN {
            return Err(RendezvousError::TooLong(v.len()));
        }
        Ok(v)
    }
}

/// GNS's `Base64EncodeLower30Bits`: the low 30 bits of `n` as five base-64 characters, most
/// significant first. The ICE ufrag is this of the connection id; the password this of 32
/// random bits.
pub fn base64_lower_30_bits(n: u32) -> String {
    const CHARS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    [24, 18, 12, 6, 0]
        .iter()
        .map(|s| CHARS[((n >> s) & 63) as usize] as char)
        .collect()
}

/// GNS resends unacknowledged reliable signal messages after this long.
pub const RELIABLE_RTO: Duration = Duration::from_secs(2);
/// Most reliable messages waiting for an ack (ICE sends credentials and a handful of
/// candidates; more means the peer never acks).
pub const MAX_UNACKED: usize = 64;
/// GNS splits reliable messages over several signals past about this many bytes.
const SIGNAL_BUDGET: usize = 800;

struct Outbound {
    id: u32,
    msg: ReliableMessage,
    len: usize,
    resend_at: Option<Timestamp>,
}

/// The reliable message stream inside rendezvous signals, as GNS runs it: ids count up from
/// 1, a signal carries a run of consecutive messages from `first_reliable_msg`, the receiver
/// takes only the next expected ids (it drops runs that skip ahead) and acks the highest id
/// it has in every signal; unacked messages are resent after [`RELIABLE_RTO`].
#[derive(Default)]
pub struct ReliableSignals {
    next_id: u32,
    unacked: VecDeque<Outbound>,
    last_received: u32,
    ack_due: bool,
}

impl ReliableSignals {
    /// An empty stream.
    pub fn new() -> Self {
        ReliableSignals {
            next_id: 1,
            ..Default::default()
        }
    }

    /// Queues a message; `false` if [`MAX_UNACKED`] are already waiting.
    pub fn push(&mut self, msg: ReliableMessage) -> bool {
        if self.unacked.len() >= MAX_UNACKED {
            return false;
        }
        let len = msg.encoded_len();
        self.unacked.push_back(Outbound {
            id: self.next_id.max(1),
            msg,
            len,
            resend_at: None,
        });
        self.next_id = self.next_id.max(1).wrapping_add(1);
        true
    }

    /// Whether a signal should go out now: new or due messages, or an ack to give.
    pub fn wants_to_send(&self, now: Timestamp) -> bool {
        self.ack_due
            || self
                .unacked
                .iter()
                .any(|o| o.resend_at.is_none_or(|t| t <= now))
    }

    /// When a resend is next due.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.unacked.iter().filter_map(|o| o.resend_at).min()
    }

    /// Fills the reliable part of an outgoing signal: always the ack, and a run of messages
    /// starting at the first one due (within about 800 bytes).
    pub fn fill(&mut self, msg: &mut Rendezvous, now: Timestamp) {
        msg.ack_reliable_msg = Some(self.last_received);
        self.ack_due = false;
        let Some(start) = self
            .unacked
            .iter()
            .position(|o| o.resend_at.is_none_or(|t| t <= now))
        else {
            return;
        };
        let mut size = 0;
        for o in self.unacked.iter_mut().skip(start) {
            if size > SIGNAL_BUDGET {
                break;
            }
            if msg.first_reliable_msg.is_none() {
                msg.first_reliable_msg = Some(o.id);
            }
            msg.reliable_messages.push(o.msg.clone());
            size += o.len;
            o.resend_at = Some(now + RELIABLE_RTO);
        }
    }

    /// Takes the reliable part of a received signal; returns the messages new to us, in order.
    pub fn receive(&mut self, msg: &Rendezvous) -> Vec<ReliableMessage> {
        if let Some(ack) = msg.ack_reliable_msg {
            while self.unacked.front().is_some_and(|o| o.id <= ack) {
                self.unacked.pop_front();
            }
        }
        let mut fresh = Vec::new();
        if let Some(first) = msg.first_reliable_msg {
            self.ack_due = true;
            let expected = self.last_received.wrapping_add(1);
            if first <= expected {
                let skip = (expected - first) as usize;
                for m in msg.reliable_messages.iter().skip(skip) {
                    self.last_received = self.last_received.wrapping_add(1);
                    fresh.push(m.clone());
                }
            }
        }
        fresh
    }
}

#[cfg(test)]
mod tests;
