//! End-to-end connection-quality reports: the reference's `CMsgSteamDatagramConnectionQuality`
//! in a data packet's stats blob. We tell the peer how its packets reach us (rates, ping, the
//! share dropped or out of sequence, lifetime counters), and keep what it tells us of ours:
//! that is where `connectionQualityRemote` comes from.
//!
//! The schedule is the reference's, so a GNS peer hears from us as often as from its own kind:
//!
//! - Instantaneous figures are *ready* 20 s after the peer last acknowledged a report (or the
//!   connection began) and ride on the next packet that leaves anyway; at 30 s they are *due*
//!   and may send a packet of their own.
//! - Lifetime counters: ready at 120 s, due at 140 s.
//! - A report goes only if there is traffic to report on: for the instantaneous figures more
//!   than one packet per 3 s either way since the last report, for the lifetime counters more
//!   than 100 packets. Otherwise the period starts again without a report.
//! - One report is in flight at a time, until the peer acknowledges the packet that carried it
//!   (which starts the next period) or that packet's fate is settled without an ack we saw
//!   (lost: the report goes again with a later packet).
//!
//! The instantaneous figures cover the period since the last acknowledged report: packet and
//! byte rates both ways, our smoothed ping, and the shares of the peer's packets that never
//! came or came out of order or twice. They are computed from counters only, so what a packet
//! carries does not depend on how often the connection was polled.
//!
//! A report implies an acknowledgement request (the reference's implied `ACK_REQUEST_E2E`):
//! the packet that carries it is ack-eliciting on both sides.

use std::time::Duration;

use super::Connection;
use crate::time::Timestamp;
use crate::wire::control::{ConnectionQuality, LinkInstantaneousStats, LinkLifetimeStats};
use crate::wire::frames::AckFrame;

/// Instantaneous figures may go with the next packet this long after the last report.
pub const INSTANTANEOUS_READY: Duration = Duration::from_secs(20);
/// Instantaneous figures send a packet of their own this long after the last report.
pub const INSTANTANEOUS_DUE: Duration = Duration::from_secs(30);
/// Lifetime counters may go with the next packet this long after the last report.
pub const LIFETIME_READY: Duration = Duration::from_secs(120);
/// Lifetime counters send a packet of their own this long after the last report.
pub const LIFETIME_DUE: Duration = Duration::from_secs(140);
/// An instantaneous report needs more than one packet per this interval, either way.
const ACTIVE_SEND_INTERVAL: Duration = Duration::from_secs(3);
/// A lifetime report needs more than this many packets, either way, since the last one.
const LIFETIME_MIN_PACKETS: u32 = 100;

/// The reports a packet should carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Need {
    /// The instantaneous figures.
    pub instantaneous: bool,
    /// The lifetime counters.
    pub lifetime: bool,
    /// At least one of them may send a packet of its own.
    pub due: bool,
}

impl Need {
    /// Whether any report goes.
    pub fn any(self) -> bool {
        self.instantaneous || self.lifetime
    }
}

/// The counters a report period starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams sent.
    pub packets_sent: u64,
    /// Datagrams received (the peer's, accepted).
    pub packets_recv: u64,
    /// Bytes sent.
    pub bytes_sent: u64,
    /// Bytes received.
    pub bytes_recv: u64,
    /// The highest packet number of the peer's accepted.
    pub peer_highest: u64,
    /// The peer's packets that came out of order or twice.
    pub peer_weird: u64,
}

/// One report's period: since when, and the packet counters then (low 32 bits, compared with
/// wrapping arithmetic).
#[derive(Clone, Copy, Debug)]
struct Period {
    since: Timestamp,
    sent: u32,
    recv: u32,
}

impl Period {
    fn new(now: Timestamp, c: &Counters) -> Self {
        Period {
            since: now,
            sent: c.packets_sent as u32,
            recv: c.packets_recv as u32,
        }
    }

    /// Packets (sent, received) since the period began.
    fn packets(&self, c: &Counters) -> (u32, u32) {
        (
            (c.packets_sent as u32).wrapping_sub(self.sent),
            (c.packets_recv as u32).wrapping_sub(self.recv),
        )
    }
}

/// The instantaneous period: its start and every counter then, for the figures.
#[derive(Clone, Copy, Debug)]
struct InstantPeriod {
    since: Timestamp,
    at_start: Counters,
}

/// Bits of [`QualityReports::in_flight`] below the packet number.
const IN_FLIGHT_INSTANTANEOUS: u64 = 1;
const IN_FLIGHT_LIFETIME: u64 = 2;
const IN_FLIGHT_SHIFT: u32 = 2;

/// What the peer last reported about our packets.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerReport {
    /// Its latest instantaneous figures and when they came.
    pub instantaneous: Option<(Timestamp, LinkInstantaneousStats)>,
    /// Its latest lifetime counters and when they came.
    pub lifetime: Option<(Timestamp, PeerLifetime)>,
}

impl PeerReport {
    /// The fraction of our packets that reached the peer in order, by its latest figures (the
    /// reference's `m_flConnectionQualityRemote`); `None` until it reported a drop rate.
    pub fn quality(&self) -> Option<f64> {
        let (_, s) = self.instantaneous.as_ref()?;
        let dropped = f64::from(s.packets_dropped_pct?) / 100.0;
        let weird = f64::from(s.packets_weird_sequence_pct.unwrap_or(0)) / 100.0;
        Some((1.0 - dropped - weird).clamp(0.0, 1.0))
    }
}

/// The counters of the peer's lifetime report that we keep (the histograms are not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerLifetime {
    /// How long the connection has been up, seconds.
    pub connected_seconds: Option<u32>,
    /// Packets the peer sent.
    pub packets_sent: u64,
    /// KiB the peer sent.
    pub kb_sent: u64,
    /// Packets the peer received.
    pub packets_recv: u64,
    /// KiB the peer received.
    pub kb_recv: u64,
    /// Of ours, numbered packets it received.
    pub packets_recv_sequenced: u64,
    /// Of ours, packets it counts as dropped.
    pub packets_recv_dropped: u64,
    /// Of ours, packets that came out of order.
    pub packets_recv_out_of_order: u64,
    /// Of ours, packets that came twice.
    pub packets_recv_duplicate: u64,
}

impl From<&LinkLifetimeStats> for PeerLifetime {
    fn from(s: &LinkLifetimeStats) -> Self {
        PeerLifetime {
            connected_seconds: s.connected_seconds,
            packets_sent: s.packets_sent.unwrap_or(0),
            kb_sent: s.kb_sent.unwrap_or(0),
            packets_recv: s.packets_recv.unwrap_or(0),
            kb_recv: s.kb_recv.unwrap_or(0),
            packets_recv_sequenced: s.packets_recv_sequenced.unwrap_or(0),
            packets_recv_dropped: s.packets_recv_dropped.unwrap_or(0),
            packets_recv_out_of_order: s.packets_recv_out_of_order.unwrap_or(0),
            packets_recv_duplicate: s.packets_recv_duplicate.unwrap_or(0),
        }
    }
}

/// A connection's report schedule, the counters only reports need, and the peer's reports.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct QualityReports {
    instantaneous: InstantPeriod,
    lifetime: Period,
    /// The packet carrying our report until its fate is known: its number shifted left by
    /// [`IN_FLIGHT_SHIFT`], with the `IN_FLIGHT_*` bits of what it carries; 0 for none (packet
    /// numbers start at 2). Packed: every connection holds one.
    in_flight: u64,
    /// The peer's packets that came below the highest number seen before them.
    out_of_order: u32,
    /// The peer's packets that came again.
    duplicates: u32,
    /// Boxed: nothing until the peer's first report (20 s or more into a busy connection).
    peer: Option<Box<PeerReport>>,
}

impl QualityReports {
    /// A schedule whose first periods begin at `now`.
    pub fn new(now: Timestamp) -> Self {
        QualityReports {
            instantaneous: InstantPeriod {
                since: now,
                at_start: Counters::default(),
            },
            lifetime: Period::new(now, &Counters::default()),
            in_flight: 0,
            out_of_order: 0,
            duplicates: 0,
            peer: None,
        }
    }

    /// The report in flight, if any: (packet number, instantaneous, lifetime).
    fn in_flight(&self) -> Option<(u64, bool, bool)> {
        (self.in_flight != 0).then_some((
            self.in_flight >> IN_FLIGHT_SHIFT,
            self.in_flight & IN_FLIGHT_INSTANTANEOUS != 0,
            self.in_flight & IN_FLIGHT_LIFETIME != 0,
        ))
    }

    /// Whether the report in flight is still open: its packet is at or above the oldest one
    /// whose fate is open (`min_unacked`).
    fn waiting(&self, min_unacked: Option<u64>) -> bool {
        self.in_flight()
            .is_some_and(|(pn, _, _)| min_unacked.is_some_and(|m| m <= pn))
    }

    /// Whether a report is due, so that it may send a packet of its own. Changes nothing, so
    /// asking often (as a scheduler that polls every connection does) sends the same.
    pub fn due(&self, now: Timestamp, c: &Counters, min_unacked: Option<u64>) -> bool {
        if self.waiting(min_unacked) {
            return false;
        }
        let elapsed = now.saturating_since(self.instantaneous.since);
        let instantaneous = elapsed >= INSTANTANEOUS_DUE && {
            let p = Period::new(self.instantaneous.since, &self.instantaneous.at_start);
            Self::active(elapsed, p.packets(c))
        };
        let elapsed = now.saturating_since(self.lifetime.since);
        instantaneous || (elapsed >= LIFETIME_DUE && Self::busy(self.lifetime.packets(c)))
    }

    /// More than one packet per [`ACTIVE_SEND_INTERVAL`] either way over `elapsed`.
    fn active(elapsed: Duration, (sent, recv): (u32, u32)) -> bool {
        let threshold = (elapsed.as_micros() / ACTIVE_SEND_INTERVAL.as_micros()) as u32;
        sent > threshold || recv > threshold
    }

    /// More than [`LIFETIME_MIN_PACKETS`] either way.
    fn busy((sent, recv): (u32, u32)) -> bool {
        sent > LIFETIME_MIN_PACKETS || recv > LIFETIME_MIN_PACKETS
    }

    /// Which reports a packet built at `now` carries, given the counters so far and the
    /// oldest packet whose fate is open (`min_unacked`). Restarts a period that has nothing
    /// to report, as the reference does. Call it only for a packet that goes out.
    pub fn need(&mut self, now: Timestamp, c: &Counters, min_unacked: Option<u64>) -> Need {
        if self.in_flight != 0 {
            if self.waiting(min_unacked) {
                return Need::default();
            }
            // Settled without an ack we noticed: lost (or acked below an ack block); the
            // report goes again.
            self.in_flight = 0;
        }
        let mut need = Need::default();
        let elapsed = now.saturating_since(self.instantaneous.since);
        if elapsed >= INSTANTANEOUS_READY {
            let p = Period::new(self.instantaneous.since, &self.instantaneous.at_start);
            if Self::active(elapsed, p.packets(c)) {
                need.instantaneous = true;
                need.due |= elapsed >= INSTANTANEOUS_DUE;
            } else {
                // Idle since the last report: act as if one was acknowledged now.
                self.instantaneous = InstantPeriod {
                    since: now,
                    at_start: *c,
                };
            }
        }
        let elapsed = now.saturating_since(self.lifetime.since);
        if elapsed >= LIFETIME_READY {
            if Self::busy(self.lifetime.packets(c)) {
                need.lifetime = true;
                need.due |= elapsed >= LIFETIME_DUE;
            } else {
                // Check again a period later, counting from the same packets.
                self.lifetime.since = now;
            }
        }
        need
    }

    /// Packet `pn` left carrying the reports in `need`.
    pub fn on_sent(&mut self, pn: u64, need: Need) {
        if need.any() {
            self.in_flight = (pn << IN_FLIGHT_SHIFT)
                | if need.instantaneous {
                    IN_FLIGHT_INSTANTANEOUS
                } else {
                    0
                }
                | if need.lifetime { IN_FLIGHT_LIFETIME } else { 0 };
        }
    }

    /// The peer acknowledged packet `pn` (counters as given): if it carried our report, the
    /// next period starts now.
    fn on_acked(&mut self, now: Timestamp, pn: u64, c: &Counters) {
        let Some((_, instantaneous, lifetime)) = self.in_flight().filter(|f| f.0 == pn) else {
            return;
        };
        if instantaneous {
            self.instantaneous = InstantPeriod {
                since: now,
                at_start: *c,
            };
        }
        if lifetime {
            self.lifetime = Period::new(now, c);
        }
        self.in_flight = 0;
    }

    /// The packet number of the report in flight, if any.
    fn in_flight_pn(&self) -> Option<u64> {
        self.in_flight().map(|f| f.0)
    }

    /// The instantaneous figures for a report built at `now` from counters `c` and the
    /// smoothed ping: averages over the period since the last acknowledged report.
    pub fn instantaneous(
        &self,
        now: Timestamp,
        c: &Counters,
        ping: Option<Duration>,
    ) -> LinkInstantaneousStats {
        let p = &self.instantaneous;
        let start = &p.at_start;
        let secs = now.saturating_since(p.since).as_secs_f64().max(1e-3);
        let rate = |a: u64, b: u64| a.saturating_sub(b) as f64 / secs;
        let pct = |f: f64| (f * 100.0).round().clamp(0.0, 100.0) as u32;
        // The peer's packets numbered in the period, and of those the ones that came.
        let numbered = c.peer_highest.saturating_sub(start.peer_highest);
        let came = c
            .packets_recv
            .saturating_sub(start.packets_recv)
            .min(numbered);
        let (dropped, weird) = if numbered > 0 {
            let dropped = 1.0 - came as f64 / numbered as f64;
            let weird = c.peer_weird.saturating_sub(start.peer_weird) as f64 / numbered as f64;
            (Some(pct(dropped)), Some(pct(weird.min(1.0 - dropped))))
        } else {
            (None, None)
        };
        LinkInstantaneousStats {
            out_packets_per_sec_x10: Some((rate(c.packets_sent, start.packets_sent) * 10.0) as u32),
            out_bytes_per_sec: Some(rate(c.bytes_sent, start.bytes_sent) as u32),
            in_packets_per_sec_x10: Some((rate(c.packets_recv, start.packets_recv) * 10.0) as u32),
            in_bytes_per_sec: Some(rate(c.bytes_recv, start.bytes_recv) as u32),
            ping_ms: ping.map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX)),
            packets_dropped_pct: dropped,
            packets_weird_sequence_pct: weird,
            // Not measured: we keep no inter-arrival times.
            peak_jitter_usec: None,
        }
    }

    /// A packet of the peer's came below the highest number seen before it.
    pub fn on_out_of_order(&mut self) {
        self.out_of_order = self.out_of_order.saturating_add(1);
    }

    /// A packet of the peer's came again.
    pub fn on_duplicate(&mut self) {
        self.duplicates = self.duplicates.saturating_add(1);
    }

    /// Keeps the peer's report (received at `now`).
    pub fn on_peer_report(&mut self, now: Timestamp, q: &ConnectionQuality) {
        if q.instantaneous.is_none() && q.lifetime.is_none() {
            return;
        }
        let peer = self.peer.get_or_insert_with(Default::default);
        if let Some(i) = &q.instantaneous {
            peer.instantaneous = Some((now, i.clone()));
        }
        if let Some(l) = &q.lifetime {
            peer.lifetime = Some((now, PeerLifetime::from(l)));
        }
    }

    /// What the peer last reported, if it ever did.
    pub fn peer(&self) -> Option<&PeerReport> {
        self.peer.as_deref()
    }
}

impl Connection {
    /// The counters the reports are computed from.
    pub(super) fn report_counters(&self) -> Counters {
        Counters {
            packets_sent: self.stats.packets_sent,
            packets_recv: self.stats.packets_received,
            bytes_sent: self.stats.bytes_sent,
            bytes_recv: self.stats.bytes_received,
            peer_highest: self.replay.largest(),
            peer_weird: u64::from(self.reports.out_of_order) + u64::from(self.reports.duplicates),
        }
    }

    /// The report a packet sent at `now` carries for `need`: our view of the peer's packets.
    pub(super) fn quality_report(&self, now: Timestamp, need: Need) -> ConnectionQuality {
        let c = self.report_counters();
        let instantaneous = need
            .instantaneous
            .then(|| self.reports.instantaneous(now, &c, self.rtt.smoothed()));
        let lifetime = need.lifetime.then(|| {
            let s = &self.stats;
            // The peer's data packets are numbered from 2; those below its highest that never
            // came count as dropped.
            let span = self.replay.largest().saturating_sub(1);
            let secs = now.saturating_since(self.created).as_secs();
            LinkLifetimeStats {
                connected_seconds: Some(u32::try_from(secs).unwrap_or(u32::MAX)),
                packets_sent: Some(s.packets_sent),
                kb_sent: Some((s.bytes_sent + 512) / 1024),
                packets_recv: Some(s.packets_received),
                kb_recv: Some((s.bytes_received + 512) / 1024),
                packets_recv_sequenced: Some(s.packets_received),
                packets_recv_dropped: Some(span.saturating_sub(s.packets_received)),
                packets_recv_out_of_order: Some(u64::from(self.reports.out_of_order)),
                packets_recv_duplicate: Some(u64::from(self.reports.duplicates)),
                ..LinkLifetimeStats::default()
            }
        });
        ConnectionQuality {
            instantaneous,
            lifetime,
        }
    }

    /// Before an ack frame is applied: if it acknowledges the packet that carried our report,
    /// the report arrived.
    pub(super) fn note_report_acked(&mut self, now: Timestamp, ack: AckFrame<'_>) {
        let Some(pn) = self.reports.in_flight_pn() else {
            return;
        };
        let Some(latest) = ack.latest_pkt.resolve(self.next_pn) else {
            return;
        };
        let mut ranges = ack.ranges(latest);
        let mut acked = false;
        for r in ranges.by_ref() {
            match r {
                Ok(r) if r.acked.contains(&pn) => acked = true,
                Ok(_) => {}
                Err(_) => return,
            }
        }
        // Below the last block everything counts as received.
        acked |= pn < ranges.implicit_end();
        if acked {
            let c = self.report_counters();
            self.reports.on_acked(now, pn, &c);
        }
    }

    /// What the peer last reported about our packets, if it ever did.
    pub fn peer_report(&self) -> Option<&PeerReport> {
        self.reports.peer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> Timestamp {
        Timestamp::from_micros(secs * 1_000_000)
    }

    fn c(sent: u64, recv: u64) -> Counters {
        Counters {
            packets_sent: sent,
            packets_recv: recv,
            ..Counters::default()
        }
    }

    #[test]
    fn instantaneous_ready_at_20_s_due_at_30_s_when_there_is_traffic() {
        let mut q = QualityReports::new(t(0));
        assert_eq!(q.need(t(19), &c(100, 100), None), Need::default());
        assert!(!q.due(t(29), &c(100, 100), None));
        let n = q.need(t(20), &c(100, 100), None);
        assert!(n.instantaneous && !n.due && !n.lifetime);
        assert!(q.due(t(30), &c(150, 150), None));
        let n = q.need(t(30), &c(150, 150), None);
        assert!(n.instantaneous && n.due);
        // Sent in packet 40: nothing more until its fate is known.
        q.on_sent(40, n);
        assert_eq!(q.need(t(31), &c(160, 160), Some(35)), Need::default());
        assert!(!q.due(t(31), &c(160, 160), Some(35)));
        // Acknowledged: the next period starts at the ack.
        q.on_acked(t(32), 40, &c(160, 160));
        assert_eq!(q.need(t(51), &c(400, 400), None), Need::default());
        assert!(q.need(t(52), &c(400, 400), None).instantaneous);
    }

    #[test]
    fn a_lost_report_goes_again_and_an_idle_period_restarts() {
        let mut q = QualityReports::new(t(0));
        let n = q.need(t(30), &c(100, 0), None);
        q.on_sent(7, n);
        // Packet 7 settled (the oldest open packet is now 9) without an ack: send again.
        assert!(q.due(t(31), &c(101, 0), Some(9)));
        assert!(q.need(t(31), &c(101, 0), Some(9)).instantaneous);
        // Fewer packets than one per 3 s: no report, and the period restarts.
        let mut q = QualityReports::new(t(0));
        assert!(!q.due(t(30), &c(10, 10), None));
        assert_eq!(q.need(t(30), &c(10, 10), None), Need::default());
        assert_eq!(q.need(t(49), &c(100, 100), None), Need::default());
        assert!(q.need(t(50), &c(100, 100), None).instantaneous);
    }

    #[test]
    fn lifetime_ready_at_120_s_due_at_140_s_after_100_packets() {
        let mut q = QualityReports::new(t(0));
        // Too few packets at 120 s: the lifetime period starts again, from the same packets.
        let n = q.need(t(120), &c(100, 100), None);
        assert!(!n.lifetime, "100 packets are not more than 100");
        // (The instantaneous report that went instead, acknowledged at once.)
        q.on_sent(5, n);
        q.on_acked(t(120), 5, &c(100, 100));
        assert!(!q.need(t(239), &c(101, 100), None).lifetime);
        let n = q.need(t(240), &c(101, 100), None);
        assert!(n.lifetime, "{n:?}");
        // Not sent: at 260 s the lifetime counters are due even if nothing else is.
        let mut quiet = QualityReports::new(t(0));
        quiet.lifetime.since = t(120);
        quiet.instantaneous.since = t(250);
        assert!(!quiet.due(t(259), &c(200, 200), None));
        assert!(quiet.due(t(260), &c(200, 200), None));
    }

    #[test]
    fn instantaneous_figures_average_over_the_period() {
        let q = QualityReports::new(t(0));
        let now = Counters {
            packets_sent: 200,
            packets_recv: 90,
            bytes_sent: 40_000,
            bytes_recv: 9_000,
            peer_highest: 101,
            peer_weird: 5,
        };
        let i = q.instantaneous(t(20), &now, Some(Duration::from_millis(42)));
        assert_eq!(i.out_packets_per_sec_x10, Some(100));
        assert_eq!(i.out_bytes_per_sec, Some(2_000));
        assert_eq!(i.in_packets_per_sec_x10, Some(45));
        assert_eq!(i.ping_ms, Some(42));
        // 101 numbered (from 0), 90 came: 11 % dropped; 5 of 101 out of sequence.
        assert_eq!(i.packets_dropped_pct, Some(11));
        assert_eq!(i.packets_weird_sequence_pct, Some(5));
        // Nothing from the peer: no drop figures.
        let i = q.instantaneous(t(20), &c(10, 0), None);
        assert_eq!((i.packets_dropped_pct, i.ping_ms), (None, None));
    }

    #[test]
    fn peer_quality_is_one_minus_dropped_and_out_of_sequence() {
        let mut q = QualityReports::new(t(0));
        assert!(q.peer().is_none());
        q.on_peer_report(
            t(25),
            &ConnectionQuality {
                instantaneous: Some(LinkInstantaneousStats {
                    packets_dropped_pct: Some(10),
                    packets_weird_sequence_pct: Some(5),
                    ..Default::default()
                }),
                lifetime: None,
            },
        );
        let quality = q.peer().and_then(PeerReport::quality).unwrap();
        assert!((quality - 0.85).abs() < 1e-9, "{quality}");
        // No drop rate in the report: no quality figure.
        q.on_peer_report(
            t(26),
            &ConnectionQuality {
                instantaneous: Some(LinkInstantaneousStats::default()),
                lifetime: None,
            },
        );
        assert_eq!(q.peer().and_then(PeerReport::quality), None);
    }
}
