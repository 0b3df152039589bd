//! Moving a connection between stages: the handshake's replies (cookie, `ConnectOK`), the
//! answering side's accept, a simultaneous open that adopts the peer's attempt, and the
//! ends (the peer's close or `NoConnection`, our close, a local failure).

use super::handshake::{self};
use super::packet_keys::PacketKeys;
use super::state::{answer_due, ConnectionState, Ending, Link, State, StrayAnswer};
use super::{closed_datagram, Connection};
use crate::crypto::session_keys::ConnectionIds;
use crate::crypto::session_setup::{ClientOffer, Established, LocalSecurity};
use crate::end_reason::{End, EndReason};
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::control::{ConnectOk, ConnectRequest};

impl Connection {
    /// The answering side's state for a checked request, and who the peer proved to be.
    pub(super) fn server_state(
        local_id: u32,
        client_id: u32,
        their_ts: u64,
        est: Established,
        mut ok: ConnectOk,
        hold: bool,
    ) -> (State, Identity) {
        ok.client_connection_id = Some(client_id);
        ok.server_connection_id = Some(local_id);
        ok.your_timestamp = Some(their_ts);
        ok.delay_time_usec = Some(0);
        let link = Link {
            remote_id: client_id,
            keys: PacketKeys::new(est.keys),
        };
        let ok = Box::new(ok);
        let state = if hold {
            State::Held { link, ok }
        } else {
            State::Answering {
                link,
                ok,
                owed: true,
            }
        };
        (state, est.peer)
    }

    /// The application accepted a held incoming connection: answer the peer now. False
    /// if the connection is not held (already accepted, or over).
    pub fn accept_held(&mut self, now: Timestamp) -> bool {
        let State::Held { .. } = self.state else {
            return false;
        };
        if let State::Held { link, ok } = self.take_state() {
            self.state = State::Answering {
                link,
                ok,
                owed: true,
            };
        }
        // The connected timeout runs from the accept, not from the peer's request.
        self.last_heard = Some(now);
        true
    }

    /// The current state, moved out for the next stage to take its contents (a closed
    /// placeholder stands in meanwhile: only the transitions below use this).
    fn take_state(&mut self) -> State {
        let stand_in = State::Closed(Box::new(Ending {
            state: ConnectionState::Dead,
            end: End::new(EndReason::Invalid, String::new()),
            remote_id: None,
            notice_owed: false,
            last_answer: None,
        }));
        std::mem::replace(&mut self.state, stand_in)
    }

    /// The peer's first sealed packet proved it has our answer.
    pub(super) fn establish(&mut self) {
        if let State::Answering { .. } = self.state {
            if let State::Answering { link, .. } = self.take_state() {
                self.state = State::Established(link);
            }
        }
    }

    /// Ends the connection (the first end wins): `state` is `ClosedByPeer`,
    /// `ProblemDetectedLocally` or `FinWait`. A local failure owes the peer a
    /// `ConnectionClosed` when we know its id ([`Connection::take_close_notice`]), as the
    /// reference sends one the moment it gives up.
    pub(super) fn end_with(&mut self, state: ConnectionState, reason: EndReason, debug: String) {
        if matches!(self.state, State::Closed(_)) {
            return;
        }
        let remote_id = self.state.remote_id();
        self.state = State::Closed(Box::new(Ending {
            state,
            end: End::new(reason, debug),
            remote_id,
            notice_owed: state == ConnectionState::ProblemDetectedLocally && remote_id.is_some(),
            last_answer: None,
        }));
    }

    /// The `ConnectionClosed` a local failure owes the peer, once.
    pub fn take_close_notice(&mut self) -> Option<Vec<u8>> {
        let State::Closed(e) = &mut self.state else {
            return None;
        };
        if !std::mem::take(&mut e.notice_owed) {
            return None;
        }
        closed_datagram(e.remote_id?, self.local_id, &e.end)
    }

    /// What this connection, once closed, answers to a packet of the peer's (`None` while it
    /// lives).
    pub fn stray_answer(&self) -> Option<StrayAnswer> {
        let State::Closed(e) = &self.state else {
            return None;
        };
        Some(match e.state {
            ConnectionState::ClosedByPeer => StrayAnswer::NoConnection {
                from: self.local_id,
                to: e.remote_id,
            },
            _ => StrayAnswer::Closed {
                to: e.remote_id,
                from: self.local_id,
                end: e.end.clone(),
            },
        })
    }

    /// The datagram answering a packet of the peer's that reached this closed connection at
    /// `now`: see [`StrayAnswer`]. `None` while the connection lives, or when it answered
    /// less than [`super::state::ANSWER_INTERVAL`] ago.
    pub fn answer_stray(&mut self, now: Timestamp) -> Option<Vec<u8>> {
        let answer = self.stray_answer()?;
        let State::Closed(e) = &mut self.state else {
            return None;
        };
        if !answer_due(&mut e.last_answer, now) {
            return None;
        }
        // What it answers is news to the peer only until it hears it: a failure's notice
        // still owed goes with this answer.
        e.notice_owed = false;
        answer.encode()
    }

    /// The server answered our challenge: present the cookie with our certificate and a
    /// fresh signed crypt info (`offer`).
    pub fn on_challenge_reply(
        &mut self,
        now: Timestamp,
        challenge: u64,
        echoed: Option<u64>,
        offer: ClientOffer,
        sec: &LocalSecurity,
    ) {
        let State::Connecting(d) = &mut self.state else {
            return;
        };
        if !d.handshake.wants_challenge() {
            return;
        }
        let mut req = ConnectRequest::default();
        offer.fill(sec, &mut req);
        d.handshake
            .on_challenge_reply(self.local_id, challenge, req);
        d.offer = Some(offer);
        self.rtt_from_echo(now, echoed);
    }

    /// The server accepted us. Checks its certificate and crypt info and derives the
    /// session; a refusal fails the connection (4002/4003/4006) and returns the datagram
    /// that tells the server why.
    pub fn on_connect_ok(
        &mut self,
        now: Timestamp,
        ok: &ConnectOk,
        sec: &LocalSecurity,
        now_unix: u64,
    ) -> Option<Vec<u8>> {
        let State::Connecting(d) = &self.state else {
            return None;
        };
        let in_connect = matches!(d.handshake.phase(), handshake::Phase::Connect { .. });
        let (Some(server_id), Some(offer)) = (ok.server_connection_id, d.offer.as_ref()) else {
            return None;
        };
        if !in_connect {
            return None;
        }
        let ids = ConnectionIds {
            local: self.local_id,
            remote: server_id,
        };
        match offer.finish(sec, ok, ids, now_unix, self.remote, d.expected.as_ref()) {
            Ok(est) => {
                self.peer = est.peer;
                self.state = State::Established(Link {
                    remote_id: server_id,
                    keys: PacketKeys::new(est.keys),
                });
                self.last_heard = Some(now);
                self.rtt_from_echo(now, ok.your_timestamp);
                None
            }
            Err(refusal) => {
                // The server's id is not ours to know yet (no link), so the failure owes no
                // notice of its own: this datagram is the notice.
                let end = End::new(refusal.end_reason, refusal.debug);
                let datagram = closed_datagram(server_id, self.local_id, &end);
                self.end_with(
                    ConnectionState::ProblemDetectedLocally,
                    end.reason,
                    end.debug,
                );
                datagram
            }
        }
    }

    /// Our `ConnectOK` was lost (the peer asked again): send it again.
    pub fn resend_connect_ok(&mut self) {
        if let State::Answering { owed, .. } = &mut self.state {
            *owed = true;
        }
    }

    /// Both sides opened at once and the peer's attempt wins: become the answering side of
    /// its connection (with the session the endpoint derived for it), keeping everything
    /// queued here.
    pub fn adopt_incoming(
        &mut self,
        now: Timestamp,
        client_id: u32,
        their_ts: u64,
        est: Established,
        ok: ConnectOk,
    ) {
        self.initiated = false;
        let (state, peer) = Self::server_state(self.local_id, client_id, their_ts, est, ok, false);
        self.state = state;
        self.peer = peer;
        self.last_heard = Some(now);
    }

    /// The peer said it closed the connection: nothing more is sent or expected. During
    /// our handshake that is a refusal (e.g. it rejected our certificate): a failure.
    pub fn on_peer_closed(&mut self, reason: EndReason, debug: Option<&str>) {
        if self.is_connecting() {
            let why = debug.unwrap_or("no reason given");
            let reason = match reason {
                EndReason::Invalid => EndReason::MiscInternalError,
                r => r,
            };
            let debug = format!("{} refused the connection: {why}", self.remote);
            self.end_with(ConnectionState::ProblemDetectedLocally, reason, debug);
        } else {
            let debug = debug.unwrap_or_default().to_owned();
            self.end_with(ConnectionState::ClosedByPeer, reason, debug);
        }
    }

    /// The peer says it has no connection with the id we send to (it restarted or forgot
    /// us): the connection is over, unusually.
    pub fn on_peer_has_no_connection(&mut self) {
        let debug = format!("{} has no such connection", self.remote);
        self.end_with(
            ConnectionState::ProblemDetectedLocally,
            EndReason::MiscPeerSentNoConnection,
            debug,
        );
        // The peer is the one who told us: it needs no notice.
        if let State::Closed(e) = &mut self.state {
            e.notice_owed = false;
        }
    }

    /// Fails the connection from outside its own state machine (its path could not be found
    /// or was lost: P2P's ICE or signaling), with `reason` and `debug`. Nothing is sent; the
    /// first end wins.
    pub fn fail(&mut self, reason: EndReason, debug: String) {
        self.end_with(ConnectionState::ProblemDetectedLocally, reason, debug);
    }

    /// Closes the connection from our side with `reason` and returns the datagram that
    /// tells the peer (none if it never learned our ids or the connection already ended).
    pub fn close(&mut self, reason: EndReason, debug: &str) -> Option<Vec<u8>> {
        let remote_id = self.state.remote_id().filter(|_| !self.is_dead());
        let end = End::new(reason, debug);
        let datagram = remote_id.and_then(|to| closed_datagram(to, self.local_id, &end));
        self.end_with(ConnectionState::FinWait, end.reason, end.debug);
        datagram
    }
}
