//! When the sender asks its peer for an immediate ack.
//!
//! A receiver may hold its ack for a while: ours for up to four packets or 50 ms, the
//! reference's for 50 ms whatever arrives (it acks sooner only when asked, through the stats
//! blob's `ACK_REQUEST_E2E | ACK_REQUEST_IMMEDIATE` flags). A sender whose congestion window
//! is the limit then idles until the ack comes, and the end of a burst waits the whole hold
//! time before its fate is known. So data packets ask for an immediate ack:
//!
//! - at least once per quarter of the in-flight limit sent, which keeps acks (and the
//!   window) moving at any rate, whatever the receiver's own policy;
//! - on the packet that ends a flight (nothing more is ready to send) or that fills the
//!   window, so the sender learns promptly what arrived and its probe timeout need not allow
//!   for the receiver's hold time; at most once per [`MIN_SPACING_RTT_FRACTION`] of a round
//!   trip, so a stream of small flights does not turn every packet into an ack request.
//!   A flight of unreliable data alone asks only when it fills the window: nothing in it
//!   will be resent, so its end need not be known promptly, and a stream of small
//!   unreliable messages (a game's inputs or snapshots) would otherwise ask for an ack per
//!   packet, which the receiver holds back for them (`ack_ranges::LAZY_ACK_DELAY`).

use std::time::Duration;

use crate::time::Timestamp;

/// Requests for flight ends and full windows are at least a round trip divided by this
/// apart.
pub const MIN_SPACING_RTT_FRACTION: u32 = 4;

/// Requests sent per in-flight limit's worth of data, at least.
pub const REQUESTS_PER_WINDOW: u64 = 4;

/// The sender's ack-request clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct AckRequests {
    /// When the last request went.
    last: Option<Timestamp>,
    /// Ack-eliciting bytes sent since the last request.
    bytes_since: u64,
}

/// What the sender knows about an ack-eliciting packet it is about to seal.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing {
    /// Its size.
    pub bytes: u64,
    /// Nothing more is ready to send after it.
    pub ends_flight: bool,
    /// It carries reliable data (a flight of unreliable data alone need not ask at its end).
    pub reliable: bool,
    /// After it, the congestion window (or the peer's receive window) leaves no room.
    pub fills_window: bool,
    /// The in-flight limit in force.
    pub window: u64,
    /// The smoothed round trip.
    pub srtt: Duration,
}

impl AckRequests {
    /// Whether the packet described by `p`, about to go at `now`, asks for an immediate ack.
    /// Counts it either way.
    pub fn on_packet(&mut self, now: Timestamp, p: &Outgoing) -> bool {
        self.bytes_since = self.bytes_since.saturating_add(p.bytes);
        let clock = self.bytes_since.saturating_mul(REQUESTS_PER_WINDOW) >= p.window.max(1);
        let spaced = self
            .last
            .is_none_or(|l| now.saturating_since(l) >= p.srtt / MIN_SPACING_RTT_FRACTION);
        let request = clock || (((p.ends_flight && p.reliable) || p.fills_window) && spaced);
        if request {
            self.last = Some(now);
            self.bytes_since = 0;
        }
        request
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: u64) -> Timestamp {
        Timestamp::from_micros(us)
    }

    fn packet(ends_flight: bool, fills_window: bool) -> Outgoing {
        Outgoing {
            bytes: 1_000,
            ends_flight,
            reliable: true,
            fills_window,
            window: 40_000,
            srtt: Duration::from_millis(40),
        }
    }

    #[test]
    fn a_steady_stream_asks_four_times_per_window() {
        let mut r = AckRequests::default();
        let asked = (0..400)
            .filter(|i| r.on_packet(at(i * 100), &packet(false, false)))
            .count();
        // 400 KB through a 40 KB window: one request per 10 KB.
        assert_eq!(asked, 40);
    }

    #[test]
    fn flight_ends_ask_but_not_too_often() {
        let mut r = AckRequests::default();
        assert!(r.on_packet(at(0), &packet(true, false)));
        // 10 ms (a quarter of the RTT) must pass before the next flight end asks.
        assert!(!r.on_packet(at(5_000), &packet(true, false)));
        assert!(!r.on_packet(at(9_999), &packet(false, true)));
        assert!(r.on_packet(at(10_000), &packet(false, true)));
        // Sparse traffic (20 Hz): every packet ends a flight and asks.
        let asked = (1..=20)
            .filter(|i| r.on_packet(at(10_000 + i * 50_000), &packet(true, false)))
            .count();
        assert_eq!(asked, 20);
    }

    #[test]
    fn unreliable_flights_ask_only_when_they_fill_the_window() {
        let mut r = AckRequests::default();
        let unreliable = |ends_flight, fills_window| Outgoing {
            bytes: 100,
            reliable: false,
            ..packet(ends_flight, fills_window)
        };
        // Sparse, small unreliable messages (20 Hz, 2 KB in all, well under a quarter of
        // the window): no packet asks.
        let asked = (0..20)
            .filter(|i| r.on_packet(at(i * 50_000), &unreliable(true, false)))
            .count();
        assert_eq!(asked, 0);
        // A full window still asks, so the sender's window reopens promptly.
        assert!(r.on_packet(at(2_000_000), &unreliable(true, true)));
    }

    #[test]
    fn nothing_special_no_request() {
        let mut r = AckRequests::default();
        assert!(!r.on_packet(at(0), &packet(false, false)));
        assert!(!r.on_packet(at(100_000), &packet(false, false)));
    }
}
