//! The connecting side of the handshake: `ChallengeRequest`, then `ConnectRequest` with the
//! server's cookie, each resent until answered, within `timeoutInitial`.
//!
//! The answering side needs no state machine of its own: the endpoint answers challenges
//! statelessly, and a valid `ConnectRequest` creates a connection that answers with
//! `ConnectOK` (at once, or once the application accepts it: see `state.rs`).

use std::time::Duration;

use crate::time::Timestamp;
use crate::wire::control::{ChallengeRequest, ConnectRequest, ControlMessage};
use crate::wire::datagram::PROTOCOL_VERSION;

/// First resend delay. The delay doubles per attempt up to [`MAX_RETRY`]; with both at
/// 250 ms today, every resend waits 250 ms.
pub const FIRST_RETRY: Duration = Duration::from_millis(250);
/// Longest delay between resends. Short enough that a handshake over a path losing half of
/// the packets each way (a quarter of round trips succeed) almost surely completes within
/// the default 10 s `timeoutInitial`: about 40 tries, two phases.
pub const MAX_RETRY: Duration = Duration::from_millis(250);

/// Where the handshake stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    /// Asking for a cookie.
    Challenge,
    /// Presenting the cookie, with our certificate and signed crypt info (the same on every
    /// resend).
    Connect {
        /// The request to (re)send; only the timestamp changes.
        request: Box<ConnectRequest>,
    },
}

/// The connecting side's progress.
#[derive(Clone, Debug)]
pub struct Handshake {
    phase: Phase,
    last_sent: Option<Timestamp>,
    attempts: u32,
}

impl Default for Handshake {
    fn default() -> Self {
        Self::new()
    }
}

impl Handshake {
    /// A handshake about to send its first `ChallengeRequest`.
    pub fn new() -> Self {
        Handshake {
            phase: Phase::Challenge,
            last_sent: None,
            attempts: 0,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    fn retry_delay(&self) -> Duration {
        FIRST_RETRY
            .saturating_mul(1 << self.attempts.saturating_sub(1).min(8))
            .min(MAX_RETRY)
    }

    /// When the next request is due.
    pub fn next_send(&self) -> Timestamp {
        match self.last_sent {
            None => Timestamp::ZERO,
            Some(t) => t + self.retry_delay(),
        }
    }

    /// The request to send now, if one is due.
    pub fn poll(&mut self, now: Timestamp, local_id: u32) -> Option<ControlMessage> {
        if now < self.next_send() {
            return None;
        }
        self.last_sent = Some(now);
        self.attempts += 1;
        Some(match &self.phase {
            Phase::Challenge => ControlMessage::ChallengeRequest(ChallengeRequest {
                connection_id: Some(local_id),
                my_timestamp: Some(now.as_micros()),
                protocol_version: Some(PROTOCOL_VERSION),
            }),
            Phase::Connect { request } => {
                let mut req = (**request).clone();
                req.my_timestamp = Some(now.as_micros());
                ControlMessage::ConnectRequest(req)
            }
        })
    }

    /// Whether we are still waiting for the server's cookie.
    pub fn wants_challenge(&self) -> bool {
        self.phase == Phase::Challenge
    }

    /// The server answered the challenge: present the cookie at once, in `request` (which
    /// carries our certificate and crypt info; the id, cookie and version are set here).
    pub fn on_challenge_reply(
        &mut self,
        local_id: u32,
        challenge: u64,
        mut request: ConnectRequest,
    ) {
        if self.phase == Phase::Challenge {
            request.client_connection_id = Some(local_id);
            request.challenge = Some(challenge);
            request.legacy_protocol_version = Some(PROTOCOL_VERSION);
            self.phase = Phase::Connect {
                request: Box::new(request),
            };
            self.last_sent = None;
            self.attempts = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_repeat_and_the_cookie_moves_to_connect() {
        let mut h = Handshake::new();
        let t0 = Timestamp::from_micros(1_000);
        assert!(matches!(
            h.poll(t0, 9),
            Some(ControlMessage::ChallengeRequest(_))
        ));
        assert!(h.poll(t0 + Duration::from_millis(249), 9).is_none());
        let t1 = t0 + FIRST_RETRY;
        assert!(h.poll(t1, 9).is_some());
        assert_eq!(h.next_send(), t1 + MAX_RETRY);
        h.on_challenge_reply(9, 42, ConnectRequest::default());
        match h.poll(t1, 9) {
            Some(ControlMessage::ConnectRequest(r)) => {
                assert_eq!(r.challenge, Some(42));
                assert_eq!(r.client_connection_id, Some(9));
            }
            other => panic!("expected a ConnectRequest, got {other:?}"),
        }
        // A late duplicate reply does not restart the connect phase.
        h.on_challenge_reply(9, 43, ConnectRequest::default());
        assert!(matches!(h.phase(), Phase::Connect { request } if request.challenge == Some(42)));
    }
}
