//! Pure encode/decode of the GameNetworkingSockets UDP protocol, version 13.
//!
//! Nothing here keeps connection state, reads a clock or touches a socket: bytes in, values
//! out, and back. Decoders borrow from the input, never allocate for data packets and never
//! panic on hostile bytes (a `WireError` says why a packet is dropped); every decoder has a fuzz
//! target in `crates/netcore/fuzz`. `docs/PROTOCOL.md` describes the format.
//!
//! Layers, outermost first:
//! - [`datagram`]: lead byte classification and the clear-text data packet header.
//! - [`control`]: the protobuf handshake and teardown messages.
//! - [`frames`]: SNP frames inside a decrypted data packet.
//! - [`reliable_header`]: message headers inside a lane's reliable byte stream.
//! - [`expand`], [`varint`]: truncated numbers and integer encodings shared by the above.

pub mod control;
pub mod datagram;
pub mod error;
pub mod expand;
pub mod frames;
#[doc(hidden)]
#[cfg(any(test, fuzzing))]
pub mod fuzz_checks;
#[doc(hidden)]
#[cfg(any(test, fuzzing))]
pub mod protobuf_canonical;
pub mod reliable_header;
pub mod varint;

pub use error::WireError;
