//! Where a connection is in its life: the internal [`State`] with what each stage holds, and
//! Steam's public [`ConnectionState`] values it is reported as.
//!
//! ```text
//!  connect()            accept(held)              accept(answer now)
//!     |                     |                           |
//!  Connecting ---ConnectOK---+----> Established <--- Answering <--- Held
//!     |                     first sealed packet from the peer  ^  accept_held()
//!     +-- timeout / refusal -----+                             |
//!  any live state -- failure --> Closed(ProblemDetectedLocally)
//!                 -- peer closes --> Closed(ClosedByPeer)
//!                 -- we close -----> Closed(FinWait)
//! ```
//!
//! A closed connection still answers what the peer sends it, as the reference does
//! ([`StrayAnswer`]): our `ConnectionClosed` again if we ended it, `NoConnection` if the
//! peer did, at most once per [`ANSWER_INTERVAL`].

use std::time::Duration;

use crate::connection::handshake::Handshake;
use crate::connection::packet_keys::PacketKeys;
use crate::crypto::session_setup::ClientOffer;
use crate::end_reason::End;
use crate::identity::Identity;
use crate::time::Timestamp;
use crate::wire::control::{ConnectOk, ConnectionClosed, ControlMessage, NoConnection};

/// Shortest time between two answers of one closed connection to the peer's packets: one
/// answer ends the peer's side, and a peer that keeps sending (or a replay of its packets)
/// gets no more than four a second.
pub const ANSWER_INTERVAL: Duration = Duration::from_millis(250);

/// Steam's `ESteamNetworkingConnectionState` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum ConnectionState {
    /// No connection (or a handle that is gone).
    None = 0,
    /// The handshake runs (or an incoming connection waits to be accepted).
    Connecting = 1,
    /// P2P: looking for a route to the peer.
    FindingRoute = 2,
    /// Established: traffic flows both ways.
    Connected = 3,
    /// The peer closed the connection (or said it has none).
    ClosedByPeer = 4,
    /// We gave up on the connection (timeout, bad crypto, protocol violation).
    ProblemDetectedLocally = 5,
    /// We closed it and told the peer; waiting out stray packets.
    FinWait = -1,
    /// We closed it with linger: still flushing reliable data.
    Linger = -2,
    /// Gone; only its handle remains.
    Dead = -3,
}

impl ConnectionState {
    /// Steam's numeric value.
    pub fn code(self) -> i32 {
        self as i32
    }

    /// Every state with its Steam name (for the generated TS enum).
    pub const NAMED: &'static [(&'static str, i32)] = &[
        ("None", 0),
        ("Connecting", 1),
        ("FindingRoute", 2),
        ("Connected", 3),
        ("ClosedByPeer", 4),
        ("ProblemDetectedLocally", 5),
        ("FinWait", -1),
        ("Linger", -2),
        ("Dead", -3),
    ];

    /// Steam's name for the state.
    pub fn name(self) -> &'static str {
        Self::NAMED
            .iter()
            .find(|(_, c)| *c == self.code())
            .map_or("?", |(n, _)| *n)
    }
}

/// The peer's connection id and the session keys: what a connection has once the handshake
/// has agreed on them.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub(super) struct Link {
    /// The peer's id for this connection: our packets go to it.
    pub remote_id: u32,
    /// Seal and open data packets.
    pub keys: PacketKeys,
}

/// The connecting side's handshake in progress.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub(super) struct Dialing {
    /// Challenge and connect requests, with their resends.
    pub handshake: Handshake,
    /// Our crypto for the connect request in flight, once the cookie came.
    pub offer: Option<ClientOffer>,
    /// The non-address identity we dialled, which the peer must prove.
    pub expected: Option<Identity>,
}

/// A connection's stage, with what only that stage needs.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub(super) enum State {
    /// We dialled and the handshake runs: no keys yet, messages wait in their queues.
    Connecting(Box<Dialing>),
    /// The peer's connect request checked out and the keys are derived, but the application
    /// has not accepted the connection yet (the connection API): nothing is sent.
    Held {
        /// The agreed id and keys.
        link: Link,
        /// The `ConnectOK` to send once accepted.
        ok: Box<ConnectOk>,
    },
    /// We answered the peer's request. Our `ConnectOK` is kept until the peer's first sealed
    /// packet proves it arrived, and resent when the peer asks again.
    Answering {
        /// The agreed id and keys.
        link: Link,
        /// Our answer.
        ok: Box<ConnectOk>,
        /// The answer is owed: send it at the next transmit.
        owed: bool,
    },
    /// Keys both ways, no handshake message outstanding.
    Established(Link),
    /// Over: nothing more is sent or accepted.
    Closed(Box<Ending>),
}

/// How a closed connection ended, and what it still answers with.
#[derive(Debug)]
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub(super) struct Ending {
    /// `ClosedByPeer`, `ProblemDetectedLocally` or `FinWait`.
    pub state: ConnectionState,
    /// The reason and detail.
    pub end: End,
    /// The peer's id, if the handshake got that far (to address a close to it).
    pub remote_id: Option<u32>,
    /// We failed the connection and have not told the peer yet.
    pub notice_owed: bool,
    /// When we last answered a packet of the peer's.
    pub last_answer: Option<Timestamp>,
}

/// What a closed connection says to a packet the peer still sends it (the reference's
/// answers): when we ended it, our `ConnectionClosed` with the reason; when the peer did,
/// `NoConnection`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrayAnswer {
    /// We closed or failed the connection: say so again, with the reason.
    Closed {
        /// The peer's id for the connection, if known.
        to: Option<u32>,
        /// Ours.
        from: u32,
        /// Why it ended.
        end: End,
    },
    /// The peer closed it: we have no connection any more.
    NoConnection {
        /// Our id.
        from: u32,
        /// The peer's, if known.
        to: Option<u32>,
    },
}

impl StrayAnswer {
    /// The datagram.
    pub fn encode(&self) -> Option<Vec<u8>> {
        let msg = match self {
            StrayAnswer::Closed { to, from, end } => {
                ControlMessage::ConnectionClosed(ConnectionClosed {
                    to_connection_id: *to,
                    from_connection_id: Some(*from),
                    debug: (!end.debug.is_empty()).then(|| end.debug.clone()),
                    reason_code: u32::try_from(end.reason.code()).ok(),
                })
            }
            StrayAnswer::NoConnection { from, to } => ControlMessage::NoConnection(NoConnection {
                from_connection_id: Some(*from),
                to_connection_id: *to,
            }),
        };
        let mut d = Vec::new();
        msg.encode(&mut d).ok().map(|()| d)
    }
}

/// Whether an answer may go at `now` after the last at `last` (which it then becomes).
pub fn answer_due(last: &mut Option<Timestamp>, now: Timestamp) -> bool {
    if last.is_some_and(|t| now.saturating_since(t) < ANSWER_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}

impl State {
    /// The public state this stage is reported as.
    pub fn public(&self) -> ConnectionState {
        match self {
            State::Connecting(_) | State::Held { .. } => ConnectionState::Connecting,
            State::Answering { .. } | State::Established(_) => ConnectionState::Connected,
            State::Closed(e) => e.state,
        }
    }

    /// The agreed id and keys, while they are in use.
    pub fn link(&self) -> Option<&Link> {
        match self {
            State::Held { link, .. } | State::Answering { link, .. } | State::Established(link) => {
                Some(link)
            }
            State::Connecting(_) | State::Closed(_) => None,
        }
    }

    /// The agreed id and keys, for sealing or opening.
    pub fn link_mut(&mut self) -> Option<&mut Link> {
        match self {
            State::Held { link, .. } | State::Answering { link, .. } | State::Established(link) => {
                Some(link)
            }
            State::Connecting(_) | State::Closed(_) => None,
        }
    }

    /// The peer's connection id, once known (kept after the end, to address a close).
    pub fn remote_id(&self) -> Option<u32> {
        match self {
            State::Closed(e) => e.remote_id,
            other => other.link().map(|l| l.remote_id),
        }
    }

    /// Whether packets flow: the handshake is done on our side and nothing ended.
    pub fn carries_data(&self) -> bool {
        matches!(self, State::Answering { .. } | State::Established(_))
    }
}
