//! The figures a connection reports: counters, RTT, rates and quality, queue sizes.

use std::time::Duration;

use super::{rates, Connection, ConnectionStats};

impl Connection {
    /// Counters so far.
    pub fn stats(&self) -> ConnectionStats {
        self.stats
    }

    /// Smoothed round-trip time, once measured.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt.smoothed()
    }

    /// Traffic rates and link quality over the last second or so.
    pub fn rates(&self) -> rates::Rates {
        self.meter.rates()
    }

    /// Current pacing rate, B/s.
    pub fn send_rate(&self) -> u64 {
        self.pacer.rate()
    }

    /// The congestion window: bytes the controller lets the connection have in flight.
    pub fn congestion_window(&self) -> u64 {
        self.cc.window()
    }

    /// Bytes of ack-eliciting packets in flight.
    pub fn bytes_in_flight(&self) -> u64 {
        self.sent.bytes_in_flight() as u64
    }

    /// Unreliable bytes queued and not yet sent.
    pub fn pending_unreliable(&self) -> usize {
        self.send.unreliable_bytes()
    }

    /// Reliable bytes queued and not yet sent (new or to be resent).
    pub fn pending_reliable(&self) -> usize {
        self.send
            .queued_bytes()
            .saturating_sub(self.send.unreliable_bytes())
    }

    /// Bytes waiting to go on the wire: new or lost reliable data, and unsent unreliable.
    pub fn queued_bytes(&self) -> usize {
        self.send.queued_bytes()
    }

    /// Reliable bytes sent and not yet acknowledged.
    pub fn unacked_reliable_bytes(&self) -> u64 {
        self.send.in_flight_bytes()
    }

    /// Bytes held for the peer: reliable data until acknowledged, unreliable until sent.
    pub fn buffered_bytes(&self) -> usize {
        self.send.buffered_bytes()
    }

    /// Reliable bytes queued again so far because the packet carrying them was lost.
    pub fn reliable_bytes_resent(&self) -> u64 {
        self.send.requeued_bytes()
    }

    /// Roughly how long a message queued now would wait before its first byte leaves.
    pub fn queue_time(&self) -> Duration {
        let rate = self.pacer.rate().max(1);
        Duration::from_micros((self.queued_bytes() as u64).saturating_mul(1_000_000) / rate)
    }

    /// The totals the rate meter turns into per-second figures.
    pub(super) fn totals(&self) -> rates::Totals {
        rates::Totals {
            packets_out: self.stats.packets_sent,
            bytes_out: self.stats.bytes_sent,
            packets_in: self.stats.packets_received,
            bytes_in: self.stats.bytes_received,
            settled: self.stats.packets_acked + self.stats.packets_lost,
            lost: self.stats.packets_lost,
        }
    }
}
