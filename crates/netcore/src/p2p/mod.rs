//! Peer-to-peer building blocks, sans-IO like the rest of the crate: reaching a peer known
//! only by identity through NATs, the way GameNetworkingSockets does it (ICE over STUN and
//! TURN, rendezvous messages carried by a signaling service), with the relay GNS lacks.
//!
//! - [`stun`]: RFC 8489 codec, credentials, retransmission, binding client.
//! - [`turn`]: RFC 8656 client: one allocation shared by every session of an endpoint, with a
//!   permission and a channel per peer.
//! - [`ice`]: RFC 8445 agent (candidates, pairs, checks, nomination, consent) as GNS's native
//!   ICE client does it.
//! - [`rendezvous`]: GNS's `CMsgSteamNetworkingP2PRendezvous`, the signaling payload.
//! - [`demux`]: tells STUN, TURN ChannelData and GNS datagrams apart on one socket.
//! - [`transport`]: one socket's P2P sessions: gathering, an ICE agent and the rendezvous
//!   stream per peer, the selected path behind a virtual address the protocol dials.
//! - [`layer`]: the transport in front of a protocol state (messages model, connection
//!   API), with the few hooks it needs of it.
//!
//! `docs/P2P.md` describes the whole, deployment included.

pub mod demux;
#[doc(hidden)]
#[cfg(any(test, fuzzing))]
pub mod fuzz_checks;
pub mod ice;
pub mod layer;
pub mod rendezvous;
pub mod stun;
pub mod transport;
pub mod turn;

use std::net::SocketAddr;

/// A datagram to send from the endpoint's socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// The bytes.
    pub payload: Vec<u8>,
}

/// Steam's `k_ESteamNetConnectionEnd_Local_P2P_ICE_NoPublicAddresses`: we could not learn our
/// public address (STUN failed) and have no relay.
pub const END_LOCAL_P2P_ICE_NO_PUBLIC_ADDRESSES: i32 = 3006;
/// Steam's `k_ESteamNetConnectionEnd_Remote_P2P_ICE_NoPublicAddresses`: the peer sent no
/// public, reflexive or relayed candidate.
pub const END_REMOTE_P2P_ICE_NO_PUBLIC_ADDRESSES: i32 = 4007;
/// Steam's `k_ESteamNetConnectionEnd_Misc_Generic`.
pub const END_MISC_GENERIC: i32 = 5001;
/// Steam's `k_ESteamNetConnectionEnd_Misc_InternalError`.
pub const END_MISC_INTERNAL_ERROR: i32 = 5002;
/// Steam's `k_ESteamNetConnectionEnd_Misc_Timeout`.
pub const END_MISC_TIMEOUT: i32 = 5003;
/// Steam's `k_ESteamNetConnectionEnd_Misc_P2P_Rendezvous`: signaling failed.
pub const END_MISC_P2P_RENDEZVOUS: i32 = 5008;
/// Steam's `k_ESteamNetConnectionEnd_Misc_P2P_NAT_Firewall`: candidates on both sides but no
/// check got through.
pub const END_MISC_P2P_NAT_FIREWALL: i32 = 5009;
