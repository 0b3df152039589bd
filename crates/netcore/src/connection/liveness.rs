//! Is the peer of a live connection still there? Asked when a checked `ConnectRequest` with a
//! new client id arrives from the connection's address: either the peer restarted (it has
//! lost its keys and cannot answer us) or someone replays a request seen on the path (the
//! peer still answers). Control messages are not authenticated, but a data packet that opens
//! under the session's keys can only come from the genuine peer, so the answer is a probe:
//! a keepalive that asks for an immediate ack. A live peer acks it; a restarted one answers
//! `NoConnection` for the id it does not know (which ends this connection), or nothing.

use std::time::Duration;

use super::state::ConnectionState;
use super::Connection;
use crate::end_reason::EndReason;
use crate::time::Timestamp;

/// Fewest probes sent, unanswered, before the peer counts as gone (on a path losing 5 % of
/// packets, three probes and their acks are all lost about once in a thousand tries).
pub const MIN_PROBES: u8 = 3;
/// Least time between two probes, however many requests arrive: a flood of replayed
/// requests costs the peer at most one small packet per interval.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(200);
/// How long probes must go unanswered before the peer counts as gone: several connect
/// retries of a restarted peer (ours resend every 250 ms, the reference's every 500 ms),
/// far below `timeoutConnected`.
pub const SILENT_AFTER: Duration = Duration::from_secs(1);

/// Probes under way for one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// The first probe of this round: only a packet heard after it proves the peer alive.
    since: Timestamp,
    /// The last probe asked for.
    last: Timestamp,
    /// Probes asked for since `since`.
    sent: u8,
}

/// What a probe round says about the peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// The peer answered recently, or a probe is still under way: keep the connection.
    Answering,
    /// [`MIN_PROBES`] probes over [`SILENT_AFTER`] went unanswered: the peer is gone.
    Silent,
}

impl Connection {
    /// A peer's new connection attempt arrived from our peer's address: probes the peer
    /// (at most once per [`PROBE_INTERVAL`]) and says whether it still answers. Only a
    /// connection that carries data can be probed; any other one counts as silent.
    pub fn check_peer_alive(&mut self, now: Timestamp) -> Liveness {
        if !self.is_connected() {
            return Liveness::Silent;
        }
        let heard = self.last_heard.unwrap_or(self.created);
        match self.probe.as_deref().copied() {
            Some(p) if heard <= p.since => {
                if p.sent >= MIN_PROBES && now.saturating_since(p.since) >= SILENT_AFTER {
                    return Liveness::Silent;
                }
                if now.saturating_since(p.last) >= PROBE_INTERVAL {
                    self.probe = Some(Box::new(Probe {
                        last: now,
                        sent: p.sent.saturating_add(1),
                        ..p
                    }));
                    self.probe_now = true;
                }
            }
            // The peer answered since the last round (or none ran): start one.
            Some(p) if now.saturating_since(p.last) < PROBE_INTERVAL => {}
            _ => {
                self.probe = Some(Box::new(Probe {
                    since: now,
                    last: now,
                    sent: 1,
                }));
                self.probe_now = true;
            }
        }
        Liveness::Answering
    }

    /// Ends the connection: its peer asked for a new one and then answered none of our
    /// probes (see [`Connection::check_peer_alive`]).
    pub fn give_up_silent_peer(&mut self, now: Timestamp) {
        let (sent, ms) = self.probe.as_deref().map_or((0, 0), |p| {
            (p.sent, now.saturating_since(p.since).as_millis())
        });
        let debug = format!(
            "{} asked for a new connection and answered none of {sent} probes in {ms} ms",
            self.remote
        );
        self.end_with(
            ConnectionState::ProblemDetectedLocally,
            EndReason::MiscTimeout,
            debug,
        );
    }

    /// Whether a probe waits to go out with the next packet.
    pub fn probe_pending(&self) -> bool {
        self.probe_now
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::ConnectionConfig;
    use crate::endpoint::{Endpoint, EndpointSetup};
    use crate::sim::pair::{EndpointNode, Pair};

    fn ep(seed: u8) -> Endpoint {
        Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(seed))
    }

    #[test]
    fn a_live_peer_answers_every_probe_and_a_gone_one_falls_silent() {
        let (mut p, _ha, hb): (Pair<EndpointNode, EndpointNode>, _, _) =
            Pair::connected(ep(1), ep(2));
        let t = p.now;
        let c = p.b.endpoint.connection_mut(hb).unwrap();
        assert_eq!(c.check_peer_alive(t), Liveness::Answering);
        assert!(c.probe_pending());
        // The probe goes out and the peer acks it: the next check starts a new round.
        let before = p.b.endpoint.connection(hb).unwrap().stats().packets_sent;
        p.rounds(2);
        let c = p.b.endpoint.connection_mut(hb).unwrap();
        assert!(!c.probe_pending());
        assert_eq!(c.stats().packets_sent, before + 1, "one probe");
        for i in 1..20u64 {
            let now = t + PROBE_INTERVAL * (i as u32);
            p.now = now;
            let c = p.b.endpoint.connection_mut(hb).unwrap();
            assert_eq!(c.check_peer_alive(now), Liveness::Answering, "check {i}");
            p.rounds(2);
        }
        // The peer vanishes: probes go unanswered, and after SILENT_AFTER it is gone.
        p.a = EndpointNode::new(ep(9));
        let start = p.now + PROBE_INTERVAL;
        let mut verdicts = Vec::new();
        for i in 0..12u32 {
            let now = start + PROBE_INTERVAL * i;
            p.now = now;
            let c = p.b.endpoint.connection_mut(hb).unwrap();
            verdicts.push(c.check_peer_alive(now));
            // What the stranger at A answers (NoConnection) is dropped here.
            p.b.endpoint.poll_transmit(now, &mut Vec::new(), |_, _| {});
        }
        let first_silent = verdicts
            .iter()
            .position(|v| *v == Liveness::Silent)
            .expect("falls silent");
        // A round starts at the first check after the last ack; silence needs SILENT_AFTER.
        assert!((5..=7).contains(&first_silent), "{verdicts:?}");
    }

    #[test]
    fn probes_are_rate_limited() {
        let (mut p, _ha, hb): (Pair<EndpointNode, EndpointNode>, _, _) =
            Pair::connected(ep(1), ep(2));
        let t = p.now;
        let mut sent = 0;
        for i in 0..1000u64 {
            let now = t + Duration::from_millis(i);
            let c = p.b.endpoint.connection_mut(hb).unwrap();
            c.check_peer_alive(now);
            p.b.endpoint
                .poll_transmit(now, &mut Vec::new(), |_, _| sent += 1);
        }
        // One second of requests, one per millisecond: at most one probe per interval.
        assert!(sent <= 6, "{sent} probes");
        assert!(sent >= 4, "{sent} probes");
    }
}
