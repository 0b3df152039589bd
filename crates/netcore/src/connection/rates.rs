//! Per-second traffic rates and link quality for status reports, measured over windows of
//! about one second so the figures follow the present rather than the connection's lifetime.

use std::time::Duration;

use crate::time::Timestamp;

/// Length of one measurement window.
pub const WINDOW: Duration = Duration::from_secs(1);

/// Running totals the meter samples.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    /// Datagrams sent.
    pub packets_out: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Datagrams received.
    pub packets_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Our ack-eliciting packets settled (acked or lost).
    pub settled: u64,
    /// Of those, lost. (The peer's packet numbers, for the local quality, come in through
    /// [`RateMeter::on_peer_packet`].)
    pub lost: u64,
}

/// Rates over the last complete window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Datagrams sent per second.
    pub out_packets: f64,
    /// Bytes sent per second.
    pub out_bytes: f64,
    /// Datagrams received per second.
    pub in_packets: f64,
    /// Bytes received per second.
    pub in_bytes: f64,
    /// Fraction of the peer's packets that reached us (-1: not measured yet).
    pub quality_local: f64,
    /// Fraction of our packets that reached the peer (-1: not measured yet).
    pub quality_remote: f64,
}

/// Turns running totals into per-window rates.
#[derive(Clone, Debug)]
pub struct RateMeter {
    start: Timestamp,
    base: Totals,
    peer_lowest: Option<u64>,
    peer_highest: u64,
    peer_received: u64,
    last: Rates,
}

impl RateMeter {
    /// A meter whose first window starts at `now`.
    pub fn new(now: Timestamp) -> Self {
        RateMeter {
            start: now,
            base: Totals::default(),
            peer_lowest: None,
            peer_highest: 0,
            peer_received: 0,
            last: Rates {
                quality_local: -1.0,
                quality_remote: -1.0,
                ..Rates::default()
            },
        }
    }

    /// Notes a packet number received from the peer.
    pub fn on_peer_packet(&mut self, pn: u64) {
        self.peer_lowest = Some(self.peer_lowest.map_or(pn, |l| l.min(pn)));
        self.peer_highest = self.peer_highest.max(pn);
        self.peer_received += 1;
    }

    /// Closes the window if it is over; cheap enough to call on every packet.
    pub fn tick(&mut self, now: Timestamp, totals: Totals) {
        let elapsed = now.saturating_since(self.start);
        if elapsed < WINDOW {
            return;
        }
        let secs = elapsed.as_secs_f64();
        let per_sec = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let settled = totals.settled.saturating_sub(self.base.settled);
        let lost = totals.lost.saturating_sub(self.base.lost);
        let quality_remote = if settled > 0 {
            1.0 - lost as f64 / settled as f64
        } else {
            self.last.quality_remote
        };
        let quality_local = match self.peer_lowest {
            Some(low) => {
                let span = self.peer_highest.saturating_sub(low) + 1;
                (self.peer_received as f64 / span as f64).min(1.0)
            }
            None => self.last.quality_local,
        };
        self.last = Rates {
            out_packets: per_sec(totals.packets_out, self.base.packets_out),
            out_bytes: per_sec(totals.bytes_out, self.base.bytes_out),
            in_packets: per_sec(totals.packets_in, self.base.packets_in),
            in_bytes: per_sec(totals.bytes_in, self.base.bytes_in),
            quality_local,
            quality_remote,
        };
        self.start = now;
        self.base = totals;
        self.peer_lowest = None;
        self.peer_highest = 0;
        self.peer_received = 0;
    }

    /// The rates of the last complete window.
    pub fn rates(&self) -> Rates {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_quality_over_a_window() {
        let t0 = Timestamp::from_micros(1_000);
        let mut m = RateMeter::new(t0);
        assert_eq!(m.rates().quality_local, -1.0);
        for pn in 1..=100u64 {
            if pn % 10 != 5 {
                m.on_peer_packet(pn);
            }
        }
        let totals = Totals {
            packets_out: 50,
            bytes_out: 50_000,
            packets_in: 90,
            bytes_in: 9_000,
            settled: 40,
            lost: 4,
        };
        m.tick(t0 + Duration::from_millis(500), totals);
        assert_eq!(m.rates().out_packets, 0.0, "window not over yet");
        m.tick(t0 + WINDOW, totals);
        let r = m.rates();
        assert_eq!(r.out_packets, 50.0);
        assert_eq!(r.out_bytes, 50_000.0);
        assert_eq!(r.in_packets, 90.0);
        assert!((r.quality_local - 0.9).abs() < 1e-9);
        assert!((r.quality_remote - 0.9).abs() < 1e-9);
        // A quiet window: rates fall to zero, qualities keep their last value.
        m.tick(t0 + WINDOW * 2, totals);
        assert_eq!(m.rates().in_packets, 0.0);
        assert!((m.rates().quality_remote - 0.9).abs() < 1e-9);
    }
}
