//! TURN (RFC 8656): the relay that works where hole punching does not (both peers behind
//! symmetric NATs).
//!
//! - [`channel_data`]: the 4-byte ChannelData framing for relayed data.
//! - [`client`]: the allocation state machine (Allocate with the 401 realm/nonce exchange,
//!   438 stale nonce, Refresh, CreatePermission, ChannelBind, Send/Data indications).
//!
//! One [`client::TurnClient`] serves a whole endpoint: its sessions share the allocation, each
//! peer gets a permission and a channel. GNS allocates per connection and uses only
//! indications; its roadmap lists both as future work.

pub mod channel_data;
pub mod client;

pub use client::{AllocationState, TurnClient, TurnConfig, TurnError, TurnEvent, TurnInput};
