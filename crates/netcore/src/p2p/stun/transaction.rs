//! Request retransmission over UDP (RFC 8489 6.2.1).
//!
//! A request is sent, then resent after RTO, and each following wait grows by the backoff
//! factor, until `sends` copies have gone out; the transaction then fails after a last wait.
//! The RFC's defaults (RTO 500 ms, doubling, Rc = 7, Rm = 16) give up after 39.5 s, which is
//! right for a general-purpose client but far beyond an interactive connect timeout, so the
//! P2P code uses [`Retransmit::INTERACTIVE`] (GNS's ICE schedule: 400 ms growing by 1.5x, five
//! sends, failure after about 5.3 s). Both are the same algorithm with other parameters, which
//! RFC 8489 allows ("Rc SHOULD be configurable", RTO "MAY" be tuned for the path).

use std::time::Duration;

use crate::time::Timestamp;

/// A retransmission schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retransmit {
    /// Wait after the first send.
    pub rto: Duration,
    /// Each wait is the previous one times this, in percent (200 = doubling).
    pub backoff_percent: u32,
    /// Cap on one wait.
    pub max_rto: Duration,
    /// Copies sent in all (RFC 8489's Rc).
    pub sends: u32,
    /// Wait after the last send before failing, as a multiple of `rto` (RFC 8489's Rm);
    /// `None` waits one more backoff step instead.
    pub final_wait_rto: Option<u32>,
}

impl Retransmit {
    /// RFC 8489's defaults: 500 ms, doubling, 7 sends, then 16 x RTO: fails after 39.5 s.
    pub const RFC8489: Retransmit = Retransmit {
        rto: Duration::from_millis(500),
        backoff_percent: 200,
        max_rto: Duration::from_secs(60),
        sends: 7,
        final_wait_rto: Some(16),
    };

    /// The interactive schedule GNS uses for STUN, TURN and ICE checks: sends at 0, 0.4, 1.0,
    /// 1.9 and 3.25 s; fails at about 5.3 s.
    pub const INTERACTIVE: Retransmit = Retransmit {
        rto: Duration::from_millis(400),
        backoff_percent: 150,
        max_rto: Duration::from_secs(3),
        sends: 5,
        final_wait_rto: None,
    };

    /// The wait after send number `n` (1-based).
    pub fn wait_after(&self, n: u32) -> Duration {
        if n >= self.sends.max(1) {
            if let Some(m) = self.final_wait_rto {
                return self.rto.saturating_mul(m);
            }
        }
        let mut w = self.rto;
        for _ in 1..n.min(64) {
            w = (w.saturating_mul(self.backoff_percent) / 100).min(self.max_rto);
        }
        w.min(self.max_rto)
    }

    /// Time from the first send to failure.
    pub fn total(&self) -> Duration {
        (1..=self.sends.max(1)).map(|n| self.wait_after(n)).sum()
    }
}

impl Default for Retransmit {
    fn default() -> Self {
        Retransmit::INTERACTIVE
    }
}

/// What a transaction wants when its timer fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimerAction {
    /// Not due yet.
    Wait,
    /// Send the request (again).
    Send,
    /// No answer after the last send: the transaction failed.
    TimedOut,
}

/// One outstanding request's timer (the request bytes live with its owner).
#[derive(Clone, Copy, Debug)]
pub struct RetransmitTimer {
    schedule: Retransmit,
    sent: u32,
    next: Timestamp,
    first_sent: Option<Timestamp>,
    last_sent: Option<Timestamp>,
}

impl RetransmitTimer {
    /// A timer whose first send is due at `now`.
    pub fn new(schedule: Retransmit, now: Timestamp) -> Self {
        RetransmitTimer {
            schedule,
            sent: 0,
            next: now,
            first_sent: None,
            last_sent: None,
        }
    }

    /// When [`RetransmitTimer::poll`] next has something to do.
    pub fn deadline(&self) -> Timestamp {
        self.next
    }

    /// Copies sent so far.
    pub fn sends(&self) -> u32 {
        self.sent
    }

    /// When the latest copy went out.
    pub fn last_sent(&self) -> Option<Timestamp> {
        self.last_sent
    }

    /// When the first copy went out.
    pub fn first_sent(&self) -> Option<Timestamp> {
        self.first_sent
    }

    /// Advances the timer: [`TimerAction::Send`] means the caller sends a copy now.
    pub fn poll(&mut self, now: Timestamp) -> TimerAction {
        if now < self.next {
            return TimerAction::Wait;
        }
        if self.sent >= self.schedule.sends.max(1) {
            return TimerAction::TimedOut;
        }
        self.sent += 1;
        self.first_sent.get_or_insert(now);
        self.last_sent = Some(now);
        self.next = now + self.schedule.wait_after(self.sent);
        TimerAction::Send
    }

    /// Sends the next copy now and restarts the backoff (ICE's triggered check reuses the
    /// transaction, RFC 8445 7.3.1.4).
    pub fn retrigger(&mut self, now: Timestamp) {
        self.sent = 0;
        self.next = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: Retransmit) -> (Vec<u64>, u64) {
        let mut t = RetransmitTimer::new(s, Timestamp::ZERO);
        let mut sends = Vec::new();
        loop {
            let now = t.deadline();
            match t.poll(now) {
                TimerAction::Send => sends.push(now.as_micros() / 1000),
                TimerAction::TimedOut => return (sends, now.as_micros() / 1000),
                TimerAction::Wait => unreachable!(),
            }
        }
    }

    #[test]
    fn rfc8489_schedule() {
        // RFC 8489 6.2.1's example: sends at 0, 500, 1500, 3500, 7500, 15500, 31500 ms and
        // failure at 39500 ms.
        let (sends, fail) = run(Retransmit::RFC8489);
        assert_eq!(sends, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(fail, 39500);
        assert_eq!(Retransmit::RFC8489.total(), Duration::from_millis(39500));
    }

    #[test]
    fn interactive_schedule() {
        let (sends, fail) = run(Retransmit::INTERACTIVE);
        assert_eq!(sends, vec![0, 400, 1000, 1900, 3250]);
        assert_eq!(fail, 5275);
    }

    #[test]
    fn wait_and_retrigger() {
        let mut t = RetransmitTimer::new(Retransmit::INTERACTIVE, Timestamp::ZERO);
        assert_eq!(t.poll(Timestamp::ZERO), TimerAction::Send);
        assert_eq!(t.poll(Timestamp::from_micros(1000)), TimerAction::Wait);
        t.retrigger(Timestamp::from_micros(2000));
        assert_eq!(t.poll(Timestamp::from_micros(2000)), TimerAction::Send);
        assert_eq!(t.sends(), 1);
        assert_eq!(t.deadline(), Timestamp::from_micros(402_000));
    }
}
