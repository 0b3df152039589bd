//! What the driver drives: sans-IO protocol state behind one or more UDP sockets.
//!
//! The driver owns the sockets (numbered *ports*, in the order they were added) and the
//! clock; a [`Protocol`] owns everything else. Both the messages model
//! ([`netcore::messages::Messages`], one port) and the connection API (several ports: one
//! per listen socket, one for outgoing connections) implement it.

use std::net::SocketAddr;

use netcore::config::Config;
use netcore::messages::{Event, Messages};
use netcore::time::Timestamp;

/// Sans-IO protocol state the driver runs: datagrams and `now` in; datagrams (each with the
/// port it leaves from), a deadline and events out.
pub trait Protocol: Send + 'static {
    /// What the application hears about.
    type Event: Send + 'static;

    /// A datagram arrived on `port` from `from`.
    fn handle_datagram(&mut self, now: Timestamp, port: usize, from: SocketAddr, data: &[u8]);

    /// Hands every datagram due now to `send(port, destination, bytes)`, writing each in
    /// `buf` first.
    fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        send: &mut dyn FnMut(usize, SocketAddr, &[u8]),
    );

    /// When [`Protocol::handle_timeout`] must next run.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Runs what is due.
    fn handle_timeout(&mut self, now: Timestamp);

    /// The next event for the application.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// Whether events wait for [`Protocol::poll_event`].
    fn has_events(&self) -> bool;

    /// The configuration in force (the driver reads the fake-network knobs from it).
    fn config(&self) -> &Config;

    /// Replaces the configuration (already validated); applies to what exists, too.
    fn set_config(&mut self, now: Timestamp, config: Config);

    /// Whether every reliable byte is delivered: a closing endpoint may stop lingering.
    fn is_settled(&self) -> bool;

    /// Closes everything politely (the endpoint is shutting down).
    fn close_all(&mut self);
}

impl Protocol for Messages {
    type Event = Event;

    fn handle_datagram(&mut self, now: Timestamp, _port: usize, from: SocketAddr, data: &[u8]) {
        Messages::handle_datagram(self, now, from, data);
    }

    fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        send: &mut dyn FnMut(usize, SocketAddr, &[u8]),
    ) {
        Messages::poll_transmit(self, now, buf, |to, d| send(0, to, d));
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        Messages::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        Messages::handle_timeout(self, now);
    }

    fn poll_event(&mut self) -> Option<Event> {
        Messages::poll_event(self)
    }

    fn has_events(&self) -> bool {
        Messages::has_events(self)
    }

    fn config(&self) -> &Config {
        Messages::config(self)
    }

    fn set_config(&mut self, now: Timestamp, config: Config) {
        Messages::set_config(self, now, config);
    }

    fn is_settled(&self) -> bool {
        Messages::is_settled(self)
    }

    fn close_all(&mut self) {
        Messages::close_all(self);
    }
}
