//! The I/O driver of netmessages: the only code that touches sockets and the clock.
//!
//! [`driver::Driver`] runs any sans-IO [`Protocol`] over one or more UDP sockets on the
//! process's I/O thread (see `driver.rs` for the threads, locks and wake-ups);
//! [`EndpointHandle`] is the messages model on it, [`SocketsHandle`] the connection API. [`fake_network`] applies Steam's
//! `fakePacket*` knobs to real datagrams.

pub mod caller_receive;
pub mod driver;
#[cfg(test)]
mod driver_threads_tests;
pub mod fake_network;
mod io;
pub mod log;
mod messages_endpoint;
mod p2p;
pub mod protocol;
mod readiness;
pub mod reuse_port;
mod sockets_endpoint;

pub use caller_receive::CallerSocket;
pub use driver::{BindError, Driver, EventSink, Secrets, CALLER_GRACE, CLOSE_LINGER};
pub use io::dual_stack_available;
pub use messages_endpoint::{EndpointHandle, OutgoingMessage};
pub use p2p::{P2pError, P2pOptions};
pub use protocol::Protocol;
pub use sockets_endpoint::{OutgoingToConnection, SocketsHandle};
