//! napi-rs glue between `netcore` and the JavaScript API: type conversion only.
//!
//! Everything with protocol meaning lives in `netcore` (and its driver, `netdriver`); this
//! crate turns JS values into Rust ones and back, and forwards driver events to a JS callback
//! through a ThreadsafeFunction (one call per driver wake-up, not per message). One module
//! per concern: `config`, `security` (identities, keys, certificates), `events`, `endpoint`
//! (the messages model), `sockets` (the connection API), `receive_batch`, `tables` (the enum and config tables the TS layer is generated from).

mod config;
mod endpoint;
mod events;
mod p2p;
mod receive_batch;
mod security;
mod sockets;
mod tables;

pub use config::{check_config, ConfigProblem};
pub use endpoint::NativeEndpoint;
pub use events::NativeEvent;
pub use security::{generate_key_pair, issue_certificate, parse_identity, public_key_of};
pub use sockets::NativeSockets;
pub use tables::tables;
