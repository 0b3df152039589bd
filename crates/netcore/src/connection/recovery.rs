//! Acks and loss on the sending side: applying the peer's ack frames to the sent-packet
//! record, RTT samples, congestion control and pacing, requeueing the reliable data of
//! packets declared lost, probes when no ack comes, and the stop-waiting point.
//!
//! # How a loss is found
//! - By an ack: a packet below the largest acknowledged is lost once it is past the
//!   reordering thresholds (`snp::sent_packets`, `snp::reorder`). The receiver reports a gap
//!   within a few milliseconds of seeing it (a NACK), so even the last packets of a flight
//!   are found this way as long as one packet after them arrives.
//! - By a probe: when no ack at all comes for the probe timeout after the newest
//!   ack-eliciting packet (the tail of a flight was lost, or every ack was), up to
//!   [`PROBES`] probe packets go out at once, carrying the oldest data in flight again and
//!   asking for an immediate ack; the ack of a probe then reveals the losses (RFC 9002's
//!   PTO, TCP's tail-loss probe). Nothing is declared lost by the timer itself, so a probe
//!   that fires early costs one or two packets, not a collapsed window.
//!
//! A loss that proves false (the packet's ack arrives after all) is counted
//! (`packets_spurious`), widens the reordering thresholds, and when every loss of the latest
//! congestion event proved false the controller undoes that event's reduction.
//!
//! # Stop-waiting
//! The frame tells the peer the oldest packet we still want acks for. We never move it past
//! the newest packet the peer has reported receiving, as the reference does: a receiver
//! drops the gaps below the point, and one it had not yet reported (NACKed) would be lost
//! to us (the reference asserts "Expiring packet gap, which had pending NACK"). Nor past a
//! packet still tracked, or remembered as lost: a late ack for it is what proves a loss false.

use std::time::Duration;

use super::{Connection, Sent};
use crate::snp::ack_ranges::{LAZY_ACK_DELAY, MAX_ACK_DELAY};
use crate::snp::ack_request::AckRequests;
use crate::snp::congestion::{self, AckSummary, DeliveryRate, RttSample};
use crate::snp::rtt::INITIAL_RTT;
use crate::time::Timestamp;
use crate::wire::frames::AckFrame;

/// Probe packets sent when the probe timer fires: two, so one lost probe (or its lost ack)
/// does not cost another, doubled, timeout.
pub(super) const PROBES: u8 = 2;

/// Probe timeouts in a row after which the losses the next ack reveals count as persistent
/// congestion (a blackout of about seven probe timeouts), which collapses the window.
const PERSISTENT_PTOS: u32 = 3;

/// Losses since the current congestion event began, and how many proved false.
#[derive(Clone, Copy, Debug, Default)]
struct Episode {
    /// When the event began; losses of packets sent before then belong to it.
    start: Option<Timestamp>,
    lost: u32,
    spurious: u32,
}

/// The sender's recovery state beyond the sent-packet record.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Recovery {
    /// Probe packets still to send (the probe timer fired).
    pub probes_owed: u8,
    /// When the probe timer last fired (`Timestamp::ZERO`: not since the last ack): the next
    /// one counts from here at the earliest.
    pub probe_fired: Timestamp,
    /// The newest ack-eliciting packet asked for an immediate ack, so the probe timeout
    /// need not allow for the peer's ack delay.
    pub last_asked_immediate: bool,
    /// When data packets ask for an immediate ack.
    pub ack_requests: AckRequests,
    /// Delivery progress, for the controller's rate samples.
    pub delivery: DeliveryRate,
    /// The newest packet number the peer has reported receiving.
    peer_latest: u64,
    /// The stop-waiting point last sent.
    stop_waiting: u64,
    episode: Episode,
}

impl Connection {
    /// Bytes in flight the congestion window (at least the `sendRateMin` floor) allows.
    pub(super) fn in_flight_limit(&self) -> u64 {
        let srtt = self.rtt.smoothed().unwrap_or(INITIAL_RTT);
        self.cc
            .window()
            .max(congestion::min_rate_window(self.cfg.rate_min, srtt))
    }

    /// Whether the congestion window (or the sent-packet record) leaves room for a packet.
    /// The window counts only the bytes still ahead of the peer's acks
    /// (`SentPackets::bytes_ahead`): on a path that holds some packets back, those would
    /// otherwise fill the window while the bottleneck idles.
    pub(super) fn window_open(&self) -> bool {
        (self.sent.bytes_ahead() as u64) < self.in_flight_limit() && !self.sent.is_full()
    }

    /// The stop-waiting point for a packet numbered `pn` (see the module docs); never moves
    /// back.
    pub(super) fn stop_waiting_point(&mut self, pn: u64) -> u64 {
        let wanted = self
            .sent
            .min_wanted()
            .unwrap_or(pn)
            .min(self.recovery.peer_latest);
        self.recovery.stop_waiting = self.recovery.stop_waiting.max(wanted);
        self.recovery.stop_waiting
    }

    /// Applies one ack frame from the peer.
    pub(super) fn on_ack_frame(&mut self, now: Timestamp, ack: AckFrame<'_>) {
        let Some(latest) = ack.latest_pkt.resolve(self.next_pn) else {
            return;
        };
        // Two passes over the blocks (they are decoded in place, cheaply): the first refuses
        // a malformed frame before anything changes, the second feeds the record without a
        // list of ranges allocated per ack.
        let mut check = ack.ranges(latest);
        if check.by_ref().any(|r| r.is_err()) {
            return;
        }
        if let Some(sent) = self.sent.largest_sent() {
            self.recovery.peer_latest = self.recovery.peer_latest.max(latest.min(sent));
        }
        // Below the last block, down to our stop-waiting point, counts as received.
        let implicit_end = check.implicit_end();
        let acked = ack
            .ranges(latest)
            .filter_map(Result::ok)
            .filter(|r| !r.acked.is_empty())
            .map(|r| r.acked.start..=r.acked.end - 1);
        let ptos_in_a_row = self.rtt.backoff();
        let result = self
            .sent
            .on_ack_frame(acked, Some(implicit_end), now, self.rtt.loss_rtt());
        if let Some(sample) = result.rtt_sample {
            let delay = Duration::from_micros(ack.delay_micros().unwrap_or(0));
            self.rtt.on_sample(sample, delay);
        }
        let in_flight_before =
            self.sent.bytes_ahead() as u64 + result.acked.iter().map(|(_, s)| s.bytes).sum::<u64>();
        let app_limited = congestion::app_limited(in_flight_before, self.cc.window());
        if !result.acked.is_empty() {
            self.rtt.reset_backoff();
            self.recovery.probe_fired = Timestamp::ZERO;
        }
        let srtt = self.rtt.smoothed().unwrap_or(INITIAL_RTT);
        let sample = RttSample {
            latest: self.rtt.latest().unwrap_or(srtt),
            smoothed: srtt,
            min: self.rtt.min().unwrap_or(srtt),
        };
        let mut acked_bytes = 0;
        for (_, s) in result.acked {
            if s.bytes > 0 {
                self.stats.packets_acked += 1;
                acked_bytes += s.bytes;
                self.cc.on_ack(now, s.at, s.bytes, app_limited, &sample);
                self.recovery.delivery.on_acked(now, s.bytes, &s.rate);
            }
            self.send.on_acked(s.reliable);
        }
        for f in &result.spurious {
            self.stats.packets_spurious += 1;
            let e = &mut self.recovery.episode;
            if e.start.is_some_and(|start| f.declared >= start) {
                e.spurious += 1;
                if e.spurious == e.lost {
                    self.cc.on_spurious_congestion(now);
                }
            }
        }
        self.on_lost(now, result.lost, ptos_in_a_row >= PERSISTENT_PTOS);
        let summary = AckSummary {
            now,
            rate: self.recovery.delivery.take_sample(self.rtt.min()),
            delivered: self.recovery.delivery.delivered(),
            acked: acked_bytes,
            in_flight: self.sent.bytes_ahead() as u64,
            rtt: sample,
        };
        self.cc.on_ack_summary(&summary);
        self.pacer.set_rate(now, self.cc.pacing_rate(srtt));
    }

    /// Packets declared lost (by a later ack or the loss timer): a congestion signal, and
    /// their reliable data goes out again without waiting for Nagle. `persistent` marks a
    /// blackout (see [`PERSISTENT_PTOS`]).
    pub(super) fn on_lost(&mut self, now: Timestamp, lost: Vec<(u64, Sent)>, persistent: bool) {
        let lost: Vec<Sent> = lost
            .into_iter()
            .map(|(_, s)| s)
            .filter(|s| s.bytes > 0)
            .collect();
        let Some(newest) = lost.iter().map(|s| s.at).max() else {
            return;
        };
        self.stats.packets_lost += lost.len() as u64;
        self.cc
            .on_packets_lost(now, lost.iter().map(|s| s.bytes).sum());
        let e = &mut self.recovery.episode;
        if e.start.is_none_or(|start| newest > start) {
            *e = Episode {
                start: Some(now),
                lost: 0,
                spurious: 0,
            };
        }
        e.lost += lost.len() as u32;
        self.cc.on_congestion_event(now, newest, persistent);
        for s in lost {
            self.send.on_lost(s.reliable);
        }
        // Resent data goes out without waiting for Nagle.
        self.nagle_deadline = Some(now);
    }

    /// The probe timeout in force: the estimator's, backoff included, allowing for the
    /// peer's ack delay unless the newest packet asked for an immediate ack (the longer, lazy
    /// delay when only unreliable data is in flight: see `ack_ranges`), and never so long
    /// that fewer than `PROBES_PER_TIMEOUT` probes fit in `timeoutConnected`.
    pub(super) fn probe_timeout(&self) -> Duration {
        let ack_delay = if self.recovery.last_asked_immediate {
            Duration::ZERO
        } else if self.send.in_flight_bytes() == 0 {
            LAZY_ACK_DELAY
        } else {
            MAX_ACK_DELAY
        };
        self.rtt.pto(ack_delay).min(self.probe_timeout_cap())
    }

    /// When the probe timer fires, if anything ack-eliciting is in flight and nothing else
    /// will go soon: while data waits only for the pacer (or Nagle), the next data packet
    /// elicits an ack as well as a probe would, so the timer restarts from it instead. A
    /// probe then would cost rate for nothing: it ignores the pacer but runs it into debt,
    /// and the copies of in-flight data it carries are mostly of packets that arrived.
    pub(super) fn probe_deadline(&self) -> Option<Timestamp> {
        if self.send.has_sendable() && self.window_open() {
            return None;
        }
        let last = self.sent.last_ack_eliciting_sent()?;
        let base = self.recovery.probe_fired.max(last);
        Some(base + self.probe_timeout())
    }

    /// The probe timer fired: back the timeout off and queue [`PROBES`] probes, which send
    /// the data of the oldest packets in flight again (without declaring them lost: if
    /// they arrived after all, the copies are discarded by the receiver).
    pub(super) fn on_probe_timeout(&mut self, now: Timestamp) {
        self.stats.probe_timeouts += 1;
        self.rtt.on_pto_expired();
        self.recovery.probe_fired = now;
        self.recovery.probes_owed = PROBES;
        let again: Vec<_> = self
            .sent
            .oldest_in_flight()
            .filter(|s| !s.reliable.is_empty())
            .take(usize::from(PROBES))
            .map(|s| s.reliable.clone())
            .collect();
        for carried in again {
            self.send.on_lost(carried);
        }
        self.nagle_deadline = Some(now);
    }

    /// The RTT sample a handshake reply's echoed timestamp gives.
    pub(super) fn rtt_from_echo(&mut self, now: Timestamp, echoed: Option<u64>) {
        if let Some(sent) = echoed.filter(|&t| t <= now.as_micros()) {
            self.rtt.on_sample(
                now.saturating_since(Timestamp::from_micros(sent)),
                Duration::ZERO,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use super::super::{Connection, ConnectionConfig};
    use crate::endpoint::{ConnectionHandle, Endpoint, EndpointSetup};
    use crate::sim::pair::{Datagram, Direction, EndpointNode};
    use crate::sim::Pair;
    use crate::snp::congestion::CongestionControl;

    type P = Pair<EndpointNode, EndpointNode>;

    fn endpoint(seed: u8, cfg: ConnectionConfig) -> Endpoint {
        Endpoint::new(cfg, EndpointSetup::for_tests(seed))
    }

    fn conn(e: &mut Endpoint, h: ConnectionHandle) -> &mut Connection {
        e.connection_mut(h).expect("the connection")
    }

    /// A connected pair `one_way` apart, with a few round trips of traffic behind it so the
    /// RTT estimate is settled.
    fn pair(one_way: Duration, cfg: ConnectionConfig) -> (P, ConnectionHandle, ConnectionHandle) {
        let (mut p, ha, hb) = Pair::connected(endpoint(1, cfg), endpoint(2, cfg));
        p.one_way = one_way;
        for _ in 0..10 {
            let now = p.now;
            conn(&mut p.a.endpoint, ha)
                .send(now, 0, true, true, b"warm up")
                .unwrap();
            conn(&mut p.b.endpoint, hb)
                .send(now, 0, true, true, b"warm up")
                .unwrap();
            p.rounds(2);
        }
        p.a.take_received();
        p.b.take_received();
        (p, ha, hb)
    }

    /// A tap that drops the A-to-B datagrams whose index (counted from now) `drop` says.
    fn drop_a_to_b(p: &mut P, drop: impl Fn(usize) -> bool + 'static) {
        let mut seen = 0;
        p.tap = Some(Box::new(move |dir, flight: &mut Vec<Datagram>| {
            if dir == Direction::AtoB {
                let mut i = 0;
                flight.retain(|_| {
                    let keep = !drop(seen + i);
                    i += 1;
                    keep
                });
                seen += i;
            }
        }));
    }

    #[test]
    fn a_flight_end_asks_for_an_immediate_ack() {
        let (mut p, ha, _) = pair(Duration::ZERO, ConnectionConfig::default());
        let now = p.now;
        conn(&mut p.a.endpoint, ha)
            .send(now, 0, true, true, b"one")
            .unwrap();
        // One round, no time passing: the receiver acks at once, not after its delayed-ack
        // timer (it acks by itself only every fourth packet).
        p.round();
        let c = conn(&mut p.a.endpoint, ha);
        assert_eq!(c.sent.bytes_in_flight(), 0, "not acked yet");
        assert!(c.recovery.last_asked_immediate);
    }

    /// Sends 40 small messages from A, one every 50 ms (a game's 20 Hz inputs), stepping the
    /// clock 5 ms at a time; returns the packets A and B sent meanwhile (B sends only acks).
    fn sparse_stream(
        p: &mut P,
        ha: ConnectionHandle,
        hb: ConnectionHandle,
        reliable: bool,
    ) -> (u64, u64) {
        let a0 = conn(&mut p.a.endpoint, ha).stats.packets_sent;
        let b0 = conn(&mut p.b.endpoint, hb).stats.packets_sent;
        for _ in 0..40 {
            let now = p.now;
            conn(&mut p.a.endpoint, ha)
                .send(now, 0, reliable, true, b"input")
                .unwrap();
            for _ in 0..10 {
                p.advance(Duration::from_millis(5));
            }
        }
        let a = conn(&mut p.a.endpoint, ha).stats.packets_sent - a0;
        let b = conn(&mut p.b.endpoint, hb).stats.packets_sent - b0;
        (a, b)
    }

    #[test]
    fn sparse_unreliable_messages_are_acked_lazily_and_reliable_ones_promptly() {
        let (mut p, ha, hb) = pair(Duration::from_millis(1), ConnectionConfig::default());
        let probes0 = conn(&mut p.a.endpoint, ha).stats.probe_timeouts;
        let (a, b) = sparse_stream(&mut p, ha, hb, false);
        assert_eq!(p.b.take_received().len(), 40, "every message arrived");
        // About one ack per 15 packets (the lazy delay, 750 ms, at 50 ms apart; the count of
        // 16 comes a packet later), where it once was one per packet and then one per four:
        // the peer held its acks, and nothing asked it not to. But they come.
        assert!(a >= 40, "A sent {a} packets");
        assert!(b * 10 <= a, "B sent {b} acks for A's {a} packets");
        assert!(b >= 2, "B sent {b} acks for A's {a} packets");
        let c = conn(&mut p.a.endpoint, ha);
        assert_eq!(
            c.stats.probe_timeouts, probes0,
            "no probe fired for unreliable data"
        );
        // The lazy acks do come: nothing stays in flight once the stream stops.
        for _ in 0..160 {
            p.advance(Duration::from_millis(5));
        }
        assert_eq!(conn(&mut p.a.endpoint, ha).sent.bytes_in_flight(), 0);

        // Reliable messages at the same spacing are each acked at once: their fate matters.
        let (a, b) = sparse_stream(&mut p, ha, hb, true);
        assert_eq!(p.b.take_received().len(), 40);
        assert!(
            b * 10 >= a * 9,
            "B sent {b} acks for A's {a} reliable packets"
        );
    }

    #[test]
    fn no_probe_while_paced_data_waits() {
        // 64 KiB/s: a 1,000-byte packet every ~15 ms, far longer than the probe timeout on
        // this 2 ms round trip.
        let cfg = ConnectionConfig {
            rate_min: 64 << 10,
            rate_max: 64 << 10,
            ..ConnectionConfig::default()
        };
        let (mut p, ha, _) = pair(Duration::from_millis(1), cfg);
        // Every ack is lost: only the paced data packets themselves could reveal anything.
        p.tap = Some(Box::new(|dir, flight: &mut Vec<Datagram>| {
            if dir == Direction::BtoA {
                flight.clear();
            }
        }));
        let start = p.now;
        for i in 0..16u8 {
            conn(&mut p.a.endpoint, ha)
                .send(start, 0, true, true, &[i; 1000])
                .unwrap();
        }
        p.run_until(start + Duration::from_millis(90), 10_000, |_| false);
        let c = conn(&mut p.a.endpoint, ha);
        assert!(c.send.has_sendable() && c.window_open(), "still pacing");
        assert!(c.stats.packets_sent >= 5, "{:?}", c.stats);
        assert_eq!(c.stats.probe_timeouts, 0, "{:?}", c.stats);
        assert_eq!(c.send.resent_bytes(), 0, "no copies of data in flight");
    }

    #[test]
    fn stop_waiting_never_passes_what_the_peer_reported() {
        let (mut p, ha, hb) = pair(Duration::from_millis(5), ConnectionConfig::default());
        // B sends, A only acks; everything A sends is lost for a while, so its ack-only
        // packets expire without the peer ever having reported them.
        drop_a_to_b(&mut p, |i| i < 40);
        for _ in 0..40 {
            let now = p.now;
            conn(&mut p.b.endpoint, hb)
                .send(now, 1, true, true, b"data")
                .unwrap();
            p.advance(Duration::from_millis(20));
            let c = conn(&mut p.a.endpoint, ha);
            let next = c.next_pn;
            let sw = c.stop_waiting_point(next);
            assert!(
                sw <= c.recovery.peer_latest,
                "stop-waiting {sw} past the newest packet the peer reported ({})",
                c.recovery.peer_latest
            );
        }
        assert!(
            conn(&mut p.a.endpoint, ha).sent.len() < 40,
            "ack-only packets expire"
        );
    }

    #[test]
    fn a_late_packet_is_a_false_loss_and_its_reduction_is_undone() {
        let cfg = ConnectionConfig {
            congestion: CongestionControl::Cubic,
            rate_min: 1 << 20,
            rate_max: 1 << 20,
            ..ConnectionConfig::default()
        };
        let (mut p, ha, _) = pair(Duration::from_millis(10), cfg);
        let window = conn(&mut p.a.endpoint, ha).cc.window();
        // The third datagram of the next flight is held back two round trips.
        let held: Rc<RefCell<Vec<(usize, Datagram)>>> = Rc::default();
        let (held2, mut seen, mut flights) = (held.clone(), 0usize, 0usize);
        p.tap = Some(Box::new(move |dir, flight: &mut Vec<Datagram>| {
            if dir != Direction::AtoB {
                return;
            }
            flights += 1;
            let mut h = held2.borrow_mut();
            if let Some(pos) = h.iter().position(|(due, _)| *due <= flights) {
                let (_, d) = h.remove(pos);
                flight.push(d);
            }
            let mut i = 0;
            flight.retain(|d| {
                let hold = seen + i == 2;
                i += 1;
                if hold {
                    h.push((flights + 2, d.clone()));
                }
                !hold
            });
            seen += i;
        }));
        let start = p.now;
        for i in 0..10u8 {
            conn(&mut p.a.endpoint, ha)
                .send(start, 0, true, true, &[i; 1000])
                .unwrap();
        }
        p.run_until(start + Duration::from_secs(1), 10_000, |p| {
            let c = p.a.endpoint.connection(ha).expect("the connection");
            c.stats.packets_spurious > 0 && c.sent.bytes_in_flight() == 0
        });
        let c = conn(&mut p.a.endpoint, ha);
        assert!(held.borrow().is_empty(), "the held datagram was delivered");
        assert_eq!(c.stats.packets_lost, 1, "{:?}", c.stats);
        assert_eq!(c.stats.packets_spurious, 1, "{:?}", c.stats);
        assert!(
            c.cc.window() >= window,
            "window {} < {window}",
            c.cc.window()
        );
    }
}
