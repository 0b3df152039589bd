//! A connection's figures as text for people: what Steam's `GetDetailedConnectionStatus`
//! answers (the state, current rates, lifetime totals), laid out in the same spirit and in
//! our own words. Both the messages API (per session) and the connection API (per
//! connection) print it; the messages layer appends its session lines.

use std::fmt::Write as _;

use super::{Connection, ConnectionState};
use crate::time::Timestamp;

impl Connection {
    /// The detailed status text, as of `now`.
    pub fn detailed_status(&self, now: Timestamp) -> String {
        let mut out = String::with_capacity(1024);
        self.write_detailed_status(now, &mut out);
        out
    }

    /// Appends the detailed status text to `out`.
    pub fn write_detailed_status(&self, now: Timestamp, out: &mut String) {
        let state = self.state();
        let _ = write!(
            out,
            "Connection #{} with {} at {}: ",
            self.local_id(),
            self.peer(),
            self.remote()
        );
        match (state, self.end()) {
            (ConnectionState::ClosedByPeer, Some(end)) => {
                let _ = writeln!(out, "closed by the peer, reason {end}");
            }
            (ConnectionState::ProblemDetectedLocally, Some(end)) => {
                let _ = writeln!(out, "failed (problem detected locally), reason {end}");
            }
            (_, Some(end)) => {
                let _ = writeln!(out, "closed ({}), reason {end}", state.name());
            }
            (ConnectionState::Connecting, None) => {
                let _ = writeln!(out, "connecting (handshake running)");
            }
            (ConnectionState::Connected, None) => {
                let _ = writeln!(out, "connected");
            }
            (s, None) => {
                let _ = writeln!(out, "{}", s.name());
            }
        }
        let age = now.saturating_since(self.created);
        let _ = writeln!(
            out,
            "    Age {:.1} s; we {} it",
            age.as_secs_f64(),
            if self.initiated() {
                "opened"
            } else {
                "answered"
            }
        );

        let r = self.rates();
        let _ = writeln!(out, "Current rates (last second or so):");
        let _ = writeln!(
            out,
            "    Sent: {:>8.1} pkts/s {:>10}/s",
            r.out_packets,
            bytes(r.out_bytes.max(0.0) as u64)
        );
        let _ = writeln!(
            out,
            "    Recv: {:>8.1} pkts/s {:>10}/s",
            r.in_packets,
            bytes(r.in_bytes.max(0.0) as u64)
        );
        match self.rtt() {
            Some(rtt) => {
                let _ = writeln!(out, "    Ping: {:.1} ms", rtt.as_secs_f64() * 1e3);
            }
            None => {
                let _ = writeln!(out, "    Ping: not measured yet");
            }
        }
        if r.quality_local < 0.0 || r.quality_remote < 0.0 {
            let _ = writeln!(out, "    Quality: not measured yet");
        } else {
            let _ = writeln!(
                out,
                "    Quality: {:.1}% of the peer's packets reach us, {:.1}% of ours reach the peer",
                r.quality_local * 100.0,
                r.quality_remote * 100.0
            );
        }
        let _ = writeln!(out, "    Send rate: {}/s", bytes(self.send_rate()));
        let _ = writeln!(
            out,
            "    Queued: {} unreliable, {} reliable (waits ~{:.1} ms); {} sent and not yet acknowledged",
            bytes(self.pending_unreliable() as u64),
            bytes(self.pending_reliable() as u64),
            self.queue_time().as_secs_f64() * 1e3,
            bytes(self.unacked_reliable_bytes())
        );

        let s = self.stats();
        let _ = writeln!(out, "Lifetime totals:");
        let _ = writeln!(
            out,
            "    Sent: {:>12} pkts {:>14}",
            count(s.packets_sent),
            bytes(s.bytes_sent)
        );
        let _ = writeln!(
            out,
            "    Recv: {:>12} pkts {:>14}",
            count(s.packets_received),
            bytes(s.bytes_received)
        );
        let settled = s.packets_acked + s.packets_lost;
        let _ = writeln!(
            out,
            "    Lost: {:>12} pkts ({}% of those settled); {} of reliable data sent again",
            count(s.packets_lost),
            percent(s.packets_lost, settled),
            bytes(self.reliable_bytes_resent())
        );
        let _ = writeln!(
            out,
            "    Recovery: {} probe timeouts; {} losses proved false",
            count(s.probe_timeouts),
            count(s.packets_spurious)
        );
        let _ = writeln!(
            out,
            "    Dropped on arrival: {} ({} failed authentication, {} replays)",
            count(s.packets_dropped),
            count(s.packets_unauthenticated),
            count(s.packets_replayed)
        );
        if self.recv_blocked {
            let _ = writeln!(
                out,
                "    Receiving: blocked (the application's backlog is full; new reliable data is refused until it reads)"
            );
        }
    }
}

/// `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `512 B`, `1.5 KB`, `12.0 MB` (powers of 1024, as Steam's text does).
pub fn bytes(n: u64) -> String {
    const K: f64 = 1024.0;
    let f = n as f64;
    if f < K {
        format!("{n} B")
    } else if f < K * K {
        format!("{:.1} KB", f / K)
    } else if f < K * K * K {
        format!("{:.1} MB", f / (K * K))
    } else {
        format!("{:.1} GB", f / (K * K * K))
    }
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0.0".into()
    } else {
        format!("{:.1}", part as f64 * 100.0 / whole as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KB");
        assert_eq!(bytes(3 << 20), "3.0 MB");
        assert_eq!(percent(1, 3), "33.3");
        assert_eq!(percent(0, 0), "0.0");
    }
}
