//! A STUN binding client: asks STUN servers, one after the other, which address our datagrams
//! come from (the server-reflexive address, RFC 8489 section 3), retransmitting on the
//! [`Retransmit`] schedule. Sans-IO: the caller feeds datagrams from the servers and timer
//! ticks, and sends what [`BindingClient::poll_transmit`] hands out from the socket whose
//! mapping it wants to learn.
//!
//! Like GNS, a server that times out or refuses makes the client try the next one; the client
//! fails only when every server has. [`BindingClient::refresh`] asks again (a NAT keepalive
//! that also notices a changed mapping).

use std::collections::VecDeque;
use std::net::SocketAddr;

use super::attributes as attr;
use super::message::{Class, Message, MessageBuilder, MessageType, Method, TransactionId};
use super::transaction::{Retransmit, RetransmitTimer, TimerAction};
use crate::p2p::Transmit;
use crate::time::Timestamp;

/// What the client is configured with.
#[derive(Clone, Debug, Default)]
pub struct BindingConfig {
    /// STUN servers, tried in order.
    pub servers: Vec<SocketAddr>,
    /// Retransmission schedule per server.
    pub retransmit: Retransmit,
    /// SOFTWARE attribute to send, if any.
    pub software: Option<String>,
}

/// Why no mapping was learned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingFailure {
    /// No server configured (for this address family).
    NoServers,
    /// Every server timed out.
    TimedOut,
    /// The last server answered with an error (earlier ones timed out or refused too).
    Rejected {
        /// The server.
        server: SocketAddr,
        /// ERROR-CODE.
        code: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The OS random source failed (no transaction id).
    Random,
}

impl std::fmt::Display for BindingFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindingFailure::NoServers => write!(f, "no STUN server configured"),
            BindingFailure::TimedOut => write!(f, "no STUN server answered (unreachable?)"),
            BindingFailure::Rejected {
                server,
                code,
                reason,
            } => write!(f, "STUN server {server} refused: {code} {reason}"),
            BindingFailure::Random => write!(f, "OS random source failed"),
        }
    }
}

/// What the client reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindingEvent {
    /// A server told us our mapped address (again, after a refresh; compare to notice a change).
    Mapped {
        /// The server that answered.
        server: SocketAddr,
        /// Our address as it saw it.
        mapped: SocketAddr,
    },
    /// No server gave an answer.
    Failed(BindingFailure),
}

struct InFlight {
    server_index: usize,
    tid: TransactionId,
    request: Vec<u8>,
    timer: RetransmitTimer,
}

/// See the module docs.
pub struct BindingClient {
    config: BindingConfig,
    in_flight: Option<InFlight>,
    /// Index of the server that last answered.
    answered_by: Option<usize>,
    mapped: Option<SocketAddr>,
    last_rejection: Option<BindingFailure>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<BindingEvent>,
    /// Round-trip time of the last answered request.
    rtt: Option<std::time::Duration>,
}

impl BindingClient {
    /// A client that starts asking the first server at `now` (call
    /// [`BindingClient::handle_timeout`] then).
    pub fn new(config: BindingConfig, now: Timestamp) -> Self {
        let mut c = BindingClient {
            config,
            in_flight: None,
            answered_by: None,
            mapped: None,
            last_rejection: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rtt: None,
        };
        c.start(0, now);
        c
    }

    /// The last mapped address learned.
    pub fn mapped(&self) -> Option<SocketAddr> {
        self.mapped
    }

    /// The server that gave it.
    pub fn server(&self) -> Option<SocketAddr> {
        self.answered_by
            .and_then(|i| self.config.servers.get(i).copied())
    }

    /// Round-trip time of the last answer.
    pub fn rtt(&self) -> Option<std::time::Duration> {
        self.rtt
    }

    /// Whether a request is outstanding.
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Asks again, starting with the server that answered last (keepalive / mapping check).
    pub fn refresh(&mut self, now: Timestamp) {
        if self.in_flight.is_none() {
            self.last_rejection = None;
            self.start(self.answered_by.unwrap_or(0), now);
        }
    }

    fn start(&mut self, server_index: usize, now: Timestamp) {
        if server_index >= self.config.servers.len() {
            let why = if self.config.servers.is_empty() {
                BindingFailure::NoServers
            } else {
                self.last_rejection
                    .take()
                    .unwrap_or(BindingFailure::TimedOut)
            };
            self.events.push_back(BindingEvent::Failed(why));
            return;
        }
        let Some(tid) = TransactionId::random() else {
            self.events
                .push_back(BindingEvent::Failed(BindingFailure::Random));
            return;
        };
        let mut b = MessageBuilder::new(MessageType::new(Method::BINDING, Class::Request), tid);
        if let Some(s) = &self.config.software {
            b.add(attr::SOFTWARE, s.as_bytes());
        }
        b.fingerprint();
        let Ok(request) = b.into_bytes() else {
            self.events
                .push_back(BindingEvent::Failed(BindingFailure::NoServers));
            return;
        };
        self.in_flight = Some(InFlight {
            server_index,
            tid,
            request,
            timer: RetransmitTimer::new(self.config.retransmit, now),
        });
    }

    /// Offers a received datagram; returns whether it was an answer to our request (then it
    /// is consumed).
    pub fn handle_input(&mut self, now: Timestamp, from: SocketAddr, datagram: &[u8]) -> bool {
        let Some(f) = &self.in_flight else {
            return false;
        };
        let server = self.config.servers[f.server_index];
        if from != server {
            return false;
        }
        let Ok(msg) = Message::decode(datagram) else {
            return false;
        };
        if msg.transaction_id != f.tid || msg.typ.method != Method::BINDING {
            return false;
        }
        let next = f.server_index + 1;
        let sent = f.timer.last_sent();
        match msg.typ.class {
            Class::Success => {
                let Some(mapped) = msg.any_mapped_address() else {
                    // An answer without an address is as good as none: try the next server.
                    self.in_flight = None;
                    self.start(next, now);
                    return true;
                };
                self.rtt = sent.map(|s| now.saturating_since(s));
                self.answered_by = Some(f.server_index);
                self.in_flight = None;
                self.mapped = Some(mapped);
                self.events
                    .push_back(BindingEvent::Mapped { server, mapped });
                true
            }
            Class::Error => {
                let (code, reason) = msg
                    .error_code()
                    .map(|e| (e.code, e.reason.to_owned()))
                    .unwrap_or((0, String::new()));
                self.last_rejection = Some(BindingFailure::Rejected {
                    server,
                    code,
                    reason,
                });
                self.in_flight = None;
                self.start(next, now);
                true
            }
            _ => false,
        }
    }

    /// Next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// Next event.
    pub fn poll_event(&mut self) -> Option<BindingEvent> {
        self.events.pop_front()
    }

    /// When [`BindingClient::handle_timeout`] must next run.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.in_flight.as_ref().map(|f| f.timer.deadline())
    }

    /// Sends and resends the request; moves on to the next server when one times out.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        loop {
            let Some(f) = &mut self.in_flight else {
                return;
            };
            match f.timer.poll(now) {
                TimerAction::Wait => return,
                TimerAction::Send => {
                    self.transmits.push_back(Transmit {
                        destination: self.config.servers[f.server_index],
                        payload: f.request.clone(),
                    });
                    return;
                }
                TimerAction::TimedOut => {
                    let next = f.server_index + 1;
                    self.in_flight = None;
                    self.start(next, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn server_answer(req: &[u8], mapped: SocketAddr) -> Vec<u8> {
        let m = Message::decode(req).unwrap();
        let mut b = MessageBuilder::new(
            MessageType::new(Method::BINDING, Class::Success),
            m.transaction_id,
        );
        b.xor_address(attr::XOR_MAPPED_ADDRESS, mapped)
            .fingerprint();
        b.into_bytes().unwrap()
    }

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    #[test]
    fn learns_mapping_and_measures_rtt() {
        let s: SocketAddr = "203.0.113.1:3478".parse().unwrap();
        let mut c = BindingClient::new(
            BindingConfig {
                servers: vec![s],
                software: Some("netmessages".into()),
                ..Default::default()
            },
            at(0),
        );
        c.handle_timeout(at(0));
        let t = c.poll_transmit().unwrap();
        assert_eq!(t.destination, s);
        let req = Message::decode(&t.payload).unwrap();
        assert_eq!(req.software(), Some("netmessages"));
        let mapped: SocketAddr = "198.51.100.7:40000".parse().unwrap();
        let resp = server_answer(&t.payload, mapped);
        // From elsewhere: ignored.
        assert!(!c.handle_input(at(30), "203.0.113.9:3478".parse().unwrap(), &resp));
        assert!(c.handle_input(at(30), s, &resp));
        assert_eq!(
            c.poll_event(),
            Some(BindingEvent::Mapped { server: s, mapped })
        );
        assert_eq!(c.rtt(), Some(Duration::from_millis(30)));
        assert_eq!(c.poll_timeout(), None);
        // A duplicate answer is no longer ours.
        assert!(!c.handle_input(at(31), s, &resp));
    }

    #[test]
    fn falls_over_to_next_server_then_fails() {
        let a: SocketAddr = "203.0.113.1:3478".parse().unwrap();
        let b: SocketAddr = "203.0.113.2:3478".parse().unwrap();
        let mut c = BindingClient::new(
            BindingConfig {
                servers: vec![a, b],
                retransmit: Retransmit::INTERACTIVE,
                software: None,
            },
            at(0),
        );
        let mut sent = Vec::new();
        let mut failed_at = None;
        while let Some(t) = c.poll_timeout() {
            c.handle_timeout(t);
            while let Some(tx) = c.poll_transmit() {
                sent.push((t.as_micros() / 1000, tx.destination));
            }
            if let Some(BindingEvent::Failed(f)) = c.poll_event() {
                assert_eq!(f, BindingFailure::TimedOut);
                failed_at = Some(t.as_micros() / 1000);
            }
        }
        let to_a: Vec<_> = sent.iter().filter(|s| s.1 == a).map(|s| s.0).collect();
        let to_b: Vec<_> = sent.iter().filter(|s| s.1 == b).map(|s| s.0).collect();
        assert_eq!(to_a, vec![0, 400, 1000, 1900, 3250]);
        assert_eq!(to_b, vec![5275, 5675, 6275, 7175, 8525]);
        assert_eq!(failed_at, Some(10550));
    }

    #[test]
    fn error_answer_moves_on_and_is_reported_last() {
        let a: SocketAddr = "203.0.113.1:3478".parse().unwrap();
        let mut c = BindingClient::new(
            BindingConfig {
                servers: vec![a],
                ..Default::default()
            },
            at(0),
        );
        c.handle_timeout(at(0));
        let t = c.poll_transmit().unwrap();
        let m = Message::decode(&t.payload).unwrap();
        let mut b = MessageBuilder::new(
            MessageType::new(Method::BINDING, Class::Error),
            m.transaction_id,
        );
        b.error_code(400, "Bad Request");
        assert!(c.handle_input(at(5), a, &b.into_bytes().unwrap()));
        assert_eq!(
            c.poll_event(),
            Some(BindingEvent::Failed(BindingFailure::Rejected {
                server: a,
                code: 400,
                reason: "Bad Request".into()
            }))
        );
    }

    #[test]
    fn no_servers() {
        let mut c = BindingClient::new(BindingConfig::default(), at(0));
        assert_eq!(
            c.poll_event(),
            Some(BindingEvent::Failed(BindingFailure::NoServers))
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn refresh_asks_the_answering_server_again() {
        let a: SocketAddr = "203.0.113.1:3478".parse().unwrap();
        let b: SocketAddr = "203.0.113.2:3478".parse().unwrap();
        let mut c = BindingClient::new(
            BindingConfig {
                servers: vec![a, b],
                ..Default::default()
            },
            at(0),
        );
        // a times out, b answers.
        let mut answered = false;
        while let Some(t) = c.poll_timeout() {
            c.handle_timeout(t);
            while let Some(tx) = c.poll_transmit() {
                if tx.destination == b {
                    let r = server_answer(&tx.payload, "198.51.100.1:1".parse().unwrap());
                    assert!(c.handle_input(t, b, &r));
                    answered = true;
                }
            }
        }
        assert!(answered);
        c.refresh(at(20_000));
        c.handle_timeout(at(20_000));
        assert_eq!(c.poll_transmit().unwrap().destination, b);
    }
}
