//! napi-rs glue between `netcore` and the JavaScript API: type conversion only.
//!
//! Everything with protocol meaning lives in `netcore` (and its driver, `netdriver`); this
//! crate turns JS values into Rust ones and back, and forwards driver events to a JS callback
//! through a ThreadsafeFunction (one call per driver wake-up, not per message). One module
//! per concern: `config`, `security` (identities, keys, certificates), `events`, `endpoint`
//! (the messages model; `fast_send`, its per-call send as a plain N-API function), `sockets`
//! (the connection API), `receive_batch`, `log` (the
//! process-wide debug output function), `tables` (the enum and config tables the TS layer is
//! generated from).

mod config;
mod endpoint;
mod events;
mod fast_send;
mod log;
mod p2p;
mod receive_batch;
mod security;
mod sockets;
mod tables;
mod uv_reader;

pub use config::{check_config, ConfigProblem};
pub use endpoint::{bind_endpoint, NativeEndpoint};
pub use events::NativeEvent;
pub use log::{debug_level, debug_line, set_debug_output};
pub use security::{
    generate_key_pair, issue_certificate, key_id_of, parse_identity, public_key_of,
};
pub use sockets::NativeSockets;
pub use tables::tables;
