//! One connection to one remote peer, as a sans-IO state machine.
//!
//! # The sans-IO contract
//!
//! A [`Connection`] never reads a clock and never touches a socket. Its owner (the endpoint,
//! driven by the driver or by the simulated network) feeds it:
//! - `now`, on every call, as a [`Timestamp`];
//! - datagram payloads addressed to it ([`Connection::handle_payload`]);
//! - messages the application wants sent ([`Connection::queue`]);
//!
//! and drains from it:
//! - datagrams to send ([`Connection::poll_transmit`]), written into a caller's buffer;
//! - received messages, appended to a caller's vector;
//! - the next instant it needs to be woken ([`Connection::poll_timeout`]).
//!
//! Because every input is explicit, the same code runs under the real UDP driver and under a
//! virtual clock in tests, and every test run is reproducible.
//!
//! # What this first version does
//!
//! This is the first end-to-end slice: messages are coalesced into datagrams up to the MTU
//! and decoded on arrival, with the framing in [`framing`]. It has no handshake, no
//! acknowledgements and no retransmission yet: on a lossy path a reliable message can be
//! lost. The transport issue replaces the framing with the GameNetworkingSockets SNP frames
//! and adds acks, retransmission, fragmentation and pacing behind this same interface.

pub mod framing;

use std::collections::VecDeque;
use std::net::SocketAddr;

use bytes::Bytes;

use crate::time::Timestamp;
use framing::{DecodeError, MessageRecord, PacketWriter};

/// A message waiting to be sent.
#[derive(Clone, Debug)]
pub struct OutMessage {
    /// The channel it is addressed to on the remote side.
    pub channel: i32,
    /// Steam send flags it was sent with.
    pub send_flags: u32,
    /// Its number in this connection's outgoing sequence.
    pub number: u64,
    /// The payload.
    pub data: Bytes,
}

/// A message received from the peer.
#[derive(Clone, Debug)]
pub struct InMessage {
    /// The channel it was sent to.
    pub channel: i32,
    /// Steam send flags the sender used.
    pub send_flags: u32,
    /// The sender's message number.
    pub number: u64,
    /// When the datagram carrying it arrived.
    pub received_at: Timestamp,
    /// The payload.
    pub data: Bytes,
}

/// Counters for status reports.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnectionStats {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Payload bytes sent, headers included.
    pub bytes_sent: u64,
    /// Datagrams received and decoded.
    pub packets_received: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Datagrams dropped because they did not decode.
    pub packets_malformed: u64,
}

/// One connection's state.
#[derive(Debug)]
pub struct Connection {
    remote: SocketAddr,
    mtu: usize,
    next_packet_number: u64,
    next_message_number: u64,
    outgoing: VecDeque<OutMessage>,
    queued_bytes: usize,
    last_activity: Timestamp,
    stats: ConnectionStats,
}

impl Connection {
    /// A connection to `remote`, sending datagrams of at most `mtu` bytes where it can.
    pub fn new(remote: SocketAddr, mtu: usize, now: Timestamp) -> Self {
        Connection {
            remote,
            mtu,
            next_packet_number: 0,
            next_message_number: 1,
            outgoing: VecDeque::new(),
            queued_bytes: 0,
            last_activity: now,
            stats: ConnectionStats::default(),
        }
    }

    /// The peer's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// Bytes of payload queued and not yet sent.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Counters so far.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Last time anything was sent or received.
    pub fn last_activity(&self) -> Timestamp {
        self.last_activity
    }

    /// Whether a message of `len` bytes can be framed at all by this version.
    pub fn fits(len: usize) -> bool {
        len <= framing::MAX_RECORD_PAYLOAD
    }

    /// Queues a message; returns the message number given to it.
    pub fn queue(&mut self, channel: i32, send_flags: u32, data: Bytes) -> u64 {
        let number = self.next_message_number;
        self.next_message_number += 1;
        self.queued_bytes += data.len();
        self.outgoing.push_back(OutMessage {
            channel,
            send_flags,
            number,
            data,
        });
        number
    }

    /// Writes the next datagram into `buf` (cleared first); false when nothing is waiting.
    ///
    /// Messages are packed in order until the next one would push the datagram past the MTU;
    /// a message larger than the MTU on its own travels alone.
    pub fn poll_transmit(&mut self, now: Timestamp, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        if self.outgoing.is_empty() {
            return false;
        }
        let mut writer = PacketWriter::start(buf, self.next_packet_number);
        self.next_packet_number += 1;
        while let Some(msg) = self.outgoing.front() {
            let record = MessageRecord {
                channel: msg.channel,
                send_flags: msg.send_flags,
                number: msg.number,
                data: &msg.data,
            };
            if !writer.is_empty() && writer.len() + record.encoded_len() > self.mtu {
                break;
            }
            writer.push(&record);
            self.queued_bytes -= msg.data.len();
            self.outgoing.pop_front();
        }
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += buf.len() as u64;
        self.last_activity = now;
        true
    }

    /// Decodes one datagram from the peer, appending its messages to `out`.
    ///
    /// A datagram that does not decode is counted and dropped whole: nothing from it is
    /// delivered, so a corrupt packet cannot inject a partial message.
    pub fn handle_payload(
        &mut self,
        now: Timestamp,
        payload: &[u8],
        out: &mut Vec<InMessage>,
    ) -> Result<(), DecodeError> {
        let records = match framing::decode_packet(payload) {
            Ok(r) => r,
            Err(e) => {
                self.stats.packets_malformed += 1;
                return Err(e);
            }
        };
        self.stats.packets_received += 1;
        self.stats.bytes_received += payload.len() as u64;
        self.last_activity = now;
        let shared = Bytes::copy_from_slice(payload);
        for r in records {
            out.push(InMessage {
                channel: r.channel,
                send_flags: r.send_flags,
                number: r.number,
                received_at: now,
                // Slices of one shared buffer: one copy per datagram, not per message.
                data: shared.slice(r.data_range),
            });
        }
        Ok(())
    }

    /// The next instant this connection must be woken, if any.
    ///
    /// This version has no timers of its own (no retransmission yet); the messages layer's
    /// idle timeout lives above it.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn small_messages_share_a_datagram_and_arrive_intact() {
        let mut a = Connection::new(addr(), 1300, Timestamp::ZERO);
        let mut b = Connection::new(addr(), 1300, Timestamp::ZERO);
        for i in 0..10u8 {
            a.queue(i32::from(i % 3), 8, Bytes::from(vec![i; 32]));
        }
        let mut buf = Vec::new();
        assert!(a.poll_transmit(Timestamp(5), &mut buf));
        assert!(
            !a.poll_transmit(Timestamp(5), &mut Vec::new()),
            "all fit in one datagram"
        );
        assert!(buf.len() <= 1300);
        let mut got = Vec::new();
        b.handle_payload(Timestamp(7), &buf, &mut got).unwrap();
        assert_eq!(got.len(), 10);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m.data.as_ref(), &vec![i as u8; 32][..]);
            assert_eq!(m.channel, (i % 3) as i32);
            assert_eq!(m.number, i as u64 + 1);
            assert_eq!(m.received_at, Timestamp(7));
        }
        assert_eq!(a.queued_bytes(), 0);
    }

    #[test]
    fn datagrams_respect_the_mtu() {
        let mut a = Connection::new(addr(), 1300, Timestamp::ZERO);
        for _ in 0..100 {
            a.queue(0, 0, Bytes::from(vec![7u8; 100]));
        }
        let mut buf = Vec::new();
        let mut datagrams = 0;
        while a.poll_transmit(Timestamp::ZERO, &mut buf) {
            assert!(buf.len() <= 1300, "datagram of {} bytes", buf.len());
            datagrams += 1;
        }
        assert!((8..=12).contains(&datagrams), "{datagrams} datagrams");
    }

    #[test]
    fn corrupt_datagram_delivers_nothing() {
        let mut a = Connection::new(addr(), 1300, Timestamp::ZERO);
        let mut b = Connection::new(addr(), 1300, Timestamp::ZERO);
        a.queue(1, 0, Bytes::from_static(b"hello"));
        a.queue(1, 0, Bytes::from_static(b"world"));
        let mut buf = Vec::new();
        assert!(a.poll_transmit(Timestamp::ZERO, &mut buf));
        buf.truncate(buf.len() - 1);
        let mut got = Vec::new();
        assert!(b.handle_payload(Timestamp::ZERO, &buf, &mut got).is_err());
        assert!(got.is_empty());
        assert_eq!(b.stats().packets_malformed, 1);
    }
}
