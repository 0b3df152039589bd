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
    /// Fraction of the peer's packets that reached us, in sequence (-1: not measured yet).
    pub quality_local: f64,
    /// Fraction of our packets that reached the peer: what the peer last reported, else our
    /// estimate from its acks (-1: neither yet).
    pub quality_remote: f64,
}

/// Turns running totals into per-window rates.
#[derive(Clone, Debug)]
pub struct RateMeter {
    start: Timestamp,
    base: Totals,
    peer_lowest: Option<u64>,
    peer_highest: u64,
    peer_received: u32,
    /// The peer's packets this window that came out of order or twice.
    peer_weird: u32,
    /// The quality the peer last reported for our packets.
    peer_quality: Option<f32>,
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
            peer_weird: 0,
            peer_quality: None,
            last: Rates {
                quality_local: -1.0,
                quality_remote: -1.0,
                ..Rates::default()
            },
        }
    }

    /// Notes a packet number received from the peer; `out_of_order` when it came below the
    /// highest number seen before it.
    pub fn on_peer_packet(&mut self, pn: u64, out_of_order: bool) {
        self.peer_lowest = Some(self.peer_lowest.map_or(pn, |l| l.min(pn)));
        self.peer_highest = self.peer_highest.max(pn);
        self.peer_received = self.peer_received.saturating_add(1);
        if out_of_order {
            self.peer_weird = self.peer_weird.saturating_add(1);
        }
    }

    /// Notes a packet of the peer's that came again.
    pub fn on_peer_duplicate(&mut self) {
        self.peer_weird = self.peer_weird.saturating_add(1);
    }

    /// The quality the peer reported for our packets, which `quality_remote` shows from now on.
    pub fn on_peer_quality(&mut self, quality: f64) {
        self.peer_quality = Some(quality as f32);
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
        // As the reference: the share received in sequence, of all the peer sent (the span of
        // its packet numbers seen this window).
        let quality_local = match self.peer_lowest {
            Some(low) => {
                let span = (self.peer_highest.saturating_sub(low) + 1) as f64;
                let received = f64::from(self.peer_received).min(span);
                let dropped = 1.0 - received / span;
                let weird = (f64::from(self.peer_weird) / span).min(1.0 - dropped);
                1.0 - dropped - weird
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
        self.peer_weird = 0;
    }

    /// The rates of the last complete window (and the peer's latest quality report).
    pub fn rates(&self) -> Rates {
        let mut r = self.last;
        if let Some(q) = self.peer_quality {
            r.quality_remote = f64::from(q);
        }
        r
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
                m.on_peer_packet(pn, false);
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

    #[test]
    fn out_of_sequence_packets_lower_the_local_quality_and_the_peer_sets_the_remote() {
        let t0 = Timestamp::from_micros(1_000);
        let mut m = RateMeter::new(t0);
        // 100 numbers, 10 never came, 4 came late, 5 came twice.
        for pn in 0..100u64 {
            if pn % 10 != 5 {
                m.on_peer_packet(pn, pn % 20 == 1 && pn > 1);
            }
        }
        for _ in 0..5 {
            m.on_peer_duplicate();
        }
        m.tick(t0 + WINDOW, Totals::default());
        let q = m.rates().quality_local;
        assert!((q - 0.81).abs() < 1e-6, "{q}");
        // Our own estimate of the remote quality gives way to the peer's report.
        m.on_peer_quality(0.75);
        assert!((m.rates().quality_remote - 0.75).abs() < 1e-6);
    }
}
