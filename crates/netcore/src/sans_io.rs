//! [`SansIo`]: what every protocol state a driver runs has in common (the messages model,
//! the connection API, and the P2P layer in front of either). Datagrams and `now` go in;
//! datagrams (each with the driver's *port*, the socket it leaves from), a deadline and events
//! come out. The driver's `netdriver::Protocol` and the P2P layer's `p2p::layer::Host` each
//! add what only they need.

use std::net::SocketAddr;

use crate::config::Config;
use crate::messages::{Event, Messages};
use crate::sockets::{Sockets, SocketsEvent};
use crate::time::Timestamp;

/// Sans-IO protocol state behind one or more UDP sockets (numbered ports).
pub trait SansIo {
    /// What the application hears about.
    type Event;

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

    /// When [`SansIo::handle_timeout`] must next run.
    fn poll_timeout(&self) -> Option<Timestamp>;

    /// Runs what is due.
    fn handle_timeout(&mut self, now: Timestamp);

    /// The next event for the application.
    fn poll_event(&mut self) -> Option<Self::Event>;

    /// Whether events wait for [`SansIo::poll_event`].
    fn has_events(&self) -> bool;

    /// The configuration in force.
    fn config(&self) -> &Config;
}

/// The messages model has one socket: port 0.
impl SansIo for Messages {
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
}

impl SansIo for Sockets {
    type Event = SocketsEvent;

    fn handle_datagram(&mut self, now: Timestamp, port: usize, from: SocketAddr, data: &[u8]) {
        Sockets::handle_datagram(self, now, port, from, data);
    }

    fn poll_transmit(
        &mut self,
        now: Timestamp,
        buf: &mut Vec<u8>,
        send: &mut dyn FnMut(usize, SocketAddr, &[u8]),
    ) {
        Sockets::poll_transmit(self, now, buf, send);
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        Sockets::poll_timeout(self)
    }

    fn handle_timeout(&mut self, now: Timestamp) {
        Sockets::handle_timeout(self, now);
    }

    fn poll_event(&mut self) -> Option<SocketsEvent> {
        Sockets::poll_event(self)
    }

    fn has_events(&self) -> bool {
        Sockets::has_events(self)
    }

    fn config(&self) -> &Config {
        Sockets::config(self)
    }
}
