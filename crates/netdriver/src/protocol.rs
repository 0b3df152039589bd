//! What the driver drives: sans-IO protocol state behind one or more UDP sockets.
//!
//! The driver owns the sockets (numbered *ports*, in the order they were added) and the
//! clock; a [`Protocol`] owns everything else. Both the messages model
//! ([`netcore::messages::Messages`], one port) and the connection API (several ports: one
//! per listen socket, one for outgoing connections) implement it.

use netcore::config::Config;
use netcore::messages::Messages;
use netcore::sans_io::SansIo;
use netcore::time::Timestamp;

/// Sans-IO protocol state the driver runs ([`SansIo`]: datagrams and `now` in; datagrams, a
/// deadline and events out), and what the driver needs beyond that.
pub trait Protocol: SansIo<Event: Send + 'static> + Send + 'static {
    /// Replaces the configuration (already validated); applies to what exists, too.
    fn set_config(&mut self, now: Timestamp, config: Config);

    /// Whether every reliable byte is delivered: a closing endpoint may stop lingering.
    fn is_settled(&self) -> bool;

    /// Closes everything politely (the endpoint is shutting down).
    fn close_all(&mut self);

    /// Whether to leave received datagrams in the kernel's buffer for now: a receive backlog
    /// just filled and the application is draining it. The protocol's deadline includes the
    /// pause's end, and a change that lifts it makes [`Driver::with`](crate::Driver::with)
    /// ask for a wake-up.
    fn receive_paused(&self) -> bool {
        false
    }
}

impl Protocol for Messages {
    fn set_config(&mut self, now: Timestamp, config: Config) {
        Messages::set_config(self, now, config);
    }

    fn is_settled(&self) -> bool {
        Messages::is_settled(self)
    }

    fn receive_paused(&self) -> bool {
        Messages::receive_paused(self)
    }

    fn close_all(&mut self) {
        Messages::close_all(self);
    }
}
