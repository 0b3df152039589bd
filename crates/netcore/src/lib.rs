//! The core of netmessages: Valve's ISteamNetworkingMessages model over UDP.
//!
//! Layers, top to bottom (see `docs/ARCHITECTURE.md`): [`messages`] (sessions keyed by
//! identity, channels, receive queues), [`endpoint`] (one socket's connections),
//! [`connection`] (one peer's state machine), [`snp`] (the transport's mechanisms),
//! [`wire`] and [`crypto`].
//!
//! Everything here is sans-IO: time comes in as a [`Timestamp`], datagrams come in as bytes,
//! and what to send, when to wake and what the application must hear about go out. The
//! crate depends on no socket or runtime library, and clippy refuses `Instant` and
//! `SystemTime` in it (`clippy.toml`): the `netdriver` crate is the only code that touches
//! sockets and the clock.

pub mod config;
pub mod connection;
pub mod crypto;
pub mod end_reason;
pub mod endpoint;
pub mod eresult;
pub mod identity;
pub mod messages;
pub mod p2p;
pub mod receive_pause;
pub mod sans_io;
#[cfg(any(test, feature = "sim", fuzzing))]
pub mod sim;
pub mod snp;
pub mod sockets;
pub mod time;
pub mod wire;

pub use config::Config;
pub use connection::ConnectionState;
pub use end_reason::{End, EndReason};
pub use eresult::EResult;
pub use identity::{Identity, IdentityType};
pub use time::Timestamp;
