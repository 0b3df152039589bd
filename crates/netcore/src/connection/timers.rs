//! The connection's timers: one deadline each, derived from the state that sets it, merged
//! by [`Connection::poll_timeout`] and acted on by [`Connection::handle_timeout`].
//!
//! Deadlines are computed, not stored: each follows from the state it guards (the ack record,
//! the sent-packet record, the Nagle deadline, the pacer), so no event can leave a stale
//! timer behind.

use std::time::Duration;

use super::state::{ConnectionState, State};
use super::Connection;
use crate::end_reason::EndReason;
use crate::snp::rtt::MIN_PTO;
use crate::time::Timestamp;
use crate::wire::datagram::MAX_PLAINTEXT_SEND;

/// Fewest probe timeouts that fit in `timeoutConnected` (see
/// [`Connection::probe_timeout_cap`]).
const PROBES_PER_TIMEOUT: u32 = 8;

/// The grid keepalives fall due on (see `keepalive_deadline`): late by at most this much, a
/// probe is no less timely (it goes a third of `timeoutConnected` into a silence).
const KEEPALIVE_GRID: Duration = Duration::from_millis(64);
/// ... and at most this fraction of a keepalive interval, for short timeouts.
const KEEPALIVE_GRID_PER_INTERVAL: u32 = 8;

/// Packets that carried only acks are forgotten after this many probe timeouts unacked (the
/// peer acks them only when it next sends something, which may be never).
const ACK_ONLY_PTOS: u32 = 1;

/// The connection's timers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// Resend the handshake's current request (connecting side).
    HandshakeResend,
    /// Give up on a connection not established within `timeoutInitial` (connecting, or held
    /// for the application's accept).
    Establish,
    /// Something is owed at once: our `ConnectOK`, an ack the peer asked for, or a probe.
    Immediate,
    /// The delayed-ack deadline.
    Ack,
    /// Loss detection: the time threshold of a packet below the largest acknowledged, the
    /// probe timeout after the newest ack-eliciting packet, or the age at which an ack-only
    /// packet is forgotten.
    Retransmit,
    /// Probe a quiet peer.
    Keepalive,
    /// Queued data is due (Nagle), or a full packet waits for nothing.
    Nagle,
    /// The pacer allows the next packet.
    Pacing,
    /// Give up on a silent peer (`timeoutConnected`).
    Silence,
}

impl Timer {
    /// Every timer.
    pub const ALL: [Timer; 9] = [
        Timer::HandshakeResend,
        Timer::Establish,
        Timer::Immediate,
        Timer::Ack,
        Timer::Retransmit,
        Timer::Keepalive,
        Timer::Nagle,
        Timer::Pacing,
        Timer::Silence,
    ];
}

impl Connection {
    /// When `timer` fires, if it is set.
    pub fn deadline(&self, timer: Timer) -> Option<Timestamp> {
        let established_timer = match &self.state {
            State::Closed(_) => return None,
            State::Connecting(d) => {
                return match timer {
                    Timer::HandshakeResend => Some(d.handshake.next_send()),
                    Timer::Establish => Some(self.created + self.cfg.timeout_initial),
                    _ => None,
                }
            }
            State::Held { .. } => {
                return (timer == Timer::Establish).then(|| self.created + self.cfg.timeout_initial)
            }
            State::Answering { owed, .. } => timer == Timer::Immediate && *owed,
            State::Established(_) => false,
        };
        match timer {
            Timer::HandshakeResend | Timer::Establish => None,
            Timer::Immediate => {
                (established_timer || self.ack_now || self.probe_now).then_some(Timestamp::ZERO)
            }
            Timer::Ack => self.acks.ack_deadline(),
            Timer::Retransmit => [
                self.sent.loss_time(),
                self.probe_deadline(),
                self.sent
                    .ack_only_expiry(self.probe_timeout() * ACK_ONLY_PTOS),
            ]
            .into_iter()
            .flatten()
            .min(),
            // Only when `keepalive_due` can hold: with data in flight the retransmission
            // timer probes instead, and a passed deadline here would fire in a loop.
            Timer::Keepalive => {
                (self.sent.bytes_in_flight() == 0).then(|| self.keepalive_deadline())
            }
            // A passed Nagle deadline means the data is due and something else (the pacer,
            // the window) holds it: then that is what wakes us. Probes owed go at once.
            Timer::Nagle => {
                if self.recovery.probes_owed > 0 {
                    Some(Timestamp::ZERO)
                } else if !self.send.has_sendable()
                    || self.pacing_wake.is_some()
                    || self.window_blocked
                {
                    None
                } else if self.send.sendable_bytes() >= MAX_PLAINTEXT_SEND {
                    // A full packet waits for no Nagle timer: it is due now. Stated here so a
                    // caller that queued it knows whether the driver must wake.
                    Some(Timestamp::ZERO)
                } else {
                    self.nagle_deadline
                }
            }
            Timer::Pacing => self.pacing_wake.filter(|_| self.send.has_sendable()),
            Timer::Silence => Some(self.silence_deadline()),
        }
    }

    /// The next instant [`Connection::handle_timeout`] must run, if any: the earliest
    /// [`Connection::deadline`] of all timers.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        let at = self.earliest_deadline();
        #[cfg(test)]
        assert_eq!(
            at,
            Timer::ALL.iter().filter_map(|&t| self.deadline(t)).min(),
            "poll_timeout is the earliest timer"
        );
        at
    }

    /// The earliest deadline, asking only the timers the state can set and stopping at one due
    /// now (the endpoint asks after every event, so this is on every datagram's path).
    fn earliest_deadline(&self) -> Option<Timestamp> {
        let owed = match &self.state {
            State::Closed(_) => return None,
            State::Connecting(_) => {
                return [Timer::HandshakeResend, Timer::Establish]
                    .into_iter()
                    .filter_map(|t| self.deadline(t))
                    .min()
            }
            State::Held { .. } => return self.deadline(Timer::Establish),
            State::Answering { owed, .. } => *owed,
            State::Established(_) => false,
        };
        // What `Timer::Immediate` and `Timer::Nagle` report as due at once.
        if owed || self.ack_now || self.probe_now || self.recovery.probes_owed > 0 {
            return Some(Timestamp::ZERO);
        }
        [
            Timer::Ack,
            Timer::Retransmit,
            Timer::Keepalive,
            Timer::Nagle,
            Timer::Pacing,
            Timer::Silence,
        ]
        .into_iter()
        .filter_map(|t| self.deadline(t))
        .min()
    }

    /// Runs the timers that are due: handshake and silence timeouts, loss detection, probes.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.run_timers(now);
        // The retransmit timer may just have settled the last ack-only packets.
        self.shed_if_idle(now);
    }

    fn run_timers(&mut self, now: Timestamp) {
        match &self.state {
            State::Closed(_) => return,
            State::Connecting(_) | State::Held { .. } => {
                if now >= self.created + self.cfg.timeout_initial {
                    let ms = self.cfg.timeout_initial.as_millis();
                    let debug = if matches!(self.state, State::Held { .. }) {
                        format!(
                            "the application did not accept {} within {ms} ms",
                            self.remote
                        )
                    } else {
                        format!("could not connect to {} within {ms} ms", self.remote)
                    };
                    self.end_with(
                        ConnectionState::ProblemDetectedLocally,
                        EndReason::MiscTimeout,
                        debug,
                    );
                }
                return;
            }
            State::Answering { .. } | State::Established(_) => {}
        }
        if now >= self.silence_deadline() {
            let debug = format!(
                "no reply from {} for {} ms",
                self.remote,
                self.cfg.timeout.as_millis()
            );
            self.end_with(
                ConnectionState::ProblemDetectedLocally,
                EndReason::MiscTimeout,
                debug,
            );
            return;
        }
        if self.sent.loss_time().is_some_and(|t| t <= now) {
            let lost = self.sent.on_loss_timeout(now, self.rtt.loss_rtt());
            self.on_lost(now, lost, false);
        }
        // Nothing depends on ack-only packets; forgetting them lets stop-waiting move on.
        let _ = self
            .sent
            .expire_ack_only(now, self.probe_timeout() * ACK_ONLY_PTOS);
        if self.probe_deadline().is_some_and(|t| t <= now) {
            self.on_probe_timeout(now);
        }
    }

    /// The longest probe timeout, backoff included: fewer than `PROBES_PER_TIMEOUT` probes
    /// must never fit in `timeoutConnected`. While data is in flight no keepalive goes out,
    /// so probes are what a live peer answers; on a lossy path it needs several chances
    /// before we give up.
    pub(super) fn probe_timeout_cap(&self) -> Duration {
        (self.cfg.timeout / PROBES_PER_TIMEOUT).max(MIN_PTO)
    }

    fn silence_deadline(&self) -> Timestamp {
        self.last_heard.unwrap_or(self.created) + self.cfg.timeout
    }

    /// How long a connection may stay quiet before it probes the peer: a third of the
    /// connected timeout, so a live peer answers several probes before the timeout.
    fn keepalive_interval(&self) -> Duration {
        (self.cfg.timeout / 3).clamp(Duration::from_millis(50), Duration::from_secs(5))
    }

    /// When a quiet connection probes: a keepalive interval after it last heard from the
    /// peer (or probed), rounded up to a grid shared by every connection on the same clock
    /// ([`KEEPALIVE_GRID`]), so a server's idle sessions probe in batches, one wake-up of the
    /// driver each, rather than one wake-up per session.
    fn keepalive_deadline(&self) -> Timestamp {
        let heard = self.last_heard.unwrap_or(self.created);
        let base = self.last_keepalive.map_or(heard, |k| k.max(heard));
        let interval = self.keepalive_interval();
        let grid = u64::try_from(
            (interval / KEEPALIVE_GRID_PER_INTERVAL)
                .min(KEEPALIVE_GRID)
                .as_micros(),
        )
        .unwrap_or(u64::MAX)
        .max(1);
        let due = (base + interval).as_micros();
        Timestamp::from_micros(due.div_ceil(grid).saturating_mul(grid))
    }

    /// Whether a quiet connection should probe the peer now.
    pub(super) fn keepalive_due(&self, now: Timestamp) -> bool {
        self.state.carries_data()
            && self.sent.bytes_in_flight() == 0
            && now >= self.keepalive_deadline()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ConnectionConfig;
    use super::{KEEPALIVE_GRID, KEEPALIVE_GRID_PER_INTERVAL};
    use crate::endpoint::{Endpoint, EndpointSetup};
    use crate::sim::Pair;

    /// For a connected pair with `timeout`, idle long enough for a keepalive or two: A's next
    /// keepalive deadline, its interval, and when A last heard from B or probed.
    fn deadline_after(timeout: Duration, idle: Duration) -> (u64, Duration, u64) {
        let cfg = ConnectionConfig {
            timeout,
            ..ConnectionConfig::default()
        };
        let ep = |seed| Endpoint::new(cfg, EndpointSetup::for_tests(seed));
        let (mut p, ha, _) = Pair::connected(ep(1), ep(2));
        p.one_way = Duration::from_micros(1_337);
        let end = p.now + idle;
        while p.now < end {
            p.advance(Duration::from_micros(3_001));
        }
        let c = p.a.endpoint.connection_mut(ha).expect("the connection");
        assert!(c.is_connected(), "keepalives keep it up");
        let heard = c.last_heard.unwrap_or(c.created);
        let base = c.last_keepalive.map_or(heard, |k| k.max(heard));
        let interval = c.keepalive_interval();
        (
            c.keepalive_deadline().as_micros(),
            interval,
            base.as_micros(),
        )
    }

    #[test]
    fn keepalives_fall_due_on_a_shared_grid() {
        for (timeout, idle) in [
            (Duration::from_secs(10), Duration::from_millis(7_777)),
            (Duration::from_millis(600), Duration::from_millis(555)),
        ] {
            let (due, interval, base) = deadline_after(timeout, idle);
            let grid = (interval / KEEPALIVE_GRID_PER_INTERVAL).min(KEEPALIVE_GRID);
            let grid = u64::try_from(grid.as_micros()).unwrap();
            let earliest = base + u64::try_from(interval.as_micros()).unwrap();
            assert_eq!(
                due % grid,
                0,
                "{timeout:?}: {due} not on the {grid} us grid"
            );
            assert!(
                due >= earliest && due < earliest + grid,
                "{timeout:?}: due {due}, a full interval from {base} is {earliest}"
            );
        }
    }
}
