//! A probe for the network-namespace test bed (`__test__/p2p/`): one UDP socket, driven by
//! commands on stdin, one line each, answered by one line on stdout (`ok key=value ...` or
//! `err text`). The socket stays open between commands, so a NAT mapping learned with `stun`
//! is the one `punch` and `turn` then use.
//!
//! ```text
//! bind ADDR                     bind the socket            -> ok local=ADDR
//! stun SERVER [SERVER2]         netcore's STUN binding client on the socket
//!                                                          -> ok mapped=ADDR rtt_us=N
//! punch PEER MS                 send to PEER every 20 ms for MS ms; answer whatever arrives
//!                               from PEER's IP, at its source (as ICE does with a
//!                               peer-reflexive address)
//!                                                          -> ok received=N from=ADDR|- sent=N
//! turn SERVER USER PASS         allocate with netcore's TURN client
//!                                                          -> ok relayed=ADDR mapped=ADDR
//! permit IP                     CreatePermission for IP    -> ok
//! relay-echo MS                 for MS ms, echo every relayed datagram back through the relay
//!                                                          -> ok echoed=N from=ADDR|-
//! ping PEER MS                  send "ping" to PEER directly until an answer or MS ms
//!                                                          -> ok answered=0|1 after_us=N
//! gather IP/PREFIX STUN [TURN USER PASS]
//!                               netcore's Gatherer on the socket (host, STUN, TURN)
//!                                                          -> ok candidates=HEX notes=HEX
//! ice ROLE UFRAG PWD RUFRAG RPWD MS HEX
//!                               netcore's IceAgent (controlling|controlled) with the
//!                               gathered candidates and the peer's (HEX: lines joined by
//!                               newlines, hex-encoded), for up to MS ms
//!                                                          -> ok route=.. via=.. remote=.. after_ms=N
//! ```
//!
//! Not part of the library: a test tool. It exists because the protocol crate has no I/O, so
//! something must carry its datagrams inside each namespace.

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use netcore::p2p::demux::{classify, DatagramKind};
use netcore::p2p::ice::candidate::ICE_ENABLE_ALL;
use netcore::p2p::ice::{
    Candidate, GatherConfig, GatherEvent, GatherInput, Gatherer, IceAgent, IceConfig, IceEvent,
    Interface, Role, Via,
};
use netcore::p2p::stun::binding::{BindingClient, BindingConfig, BindingEvent};
use netcore::p2p::stun::transaction::Retransmit;
use netcore::p2p::stun::Message;
use netcore::p2p::turn::{TurnClient, TurnConfig, TurnEvent, TurnInput};
use netcore::Timestamp;

struct Probe {
    sock: Option<UdpSocket>,
    epoch: Instant,
    turn: Option<TurnClient>,
    gatherer: Option<Gatherer>,
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<String, String> {
    if s.len() % 2 != 0 {
        return Err("odd hex".into());
    }
    let bytes: Result<Vec<u8>, _> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
        .collect();
    String::from_utf8(bytes.map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

type Reply = Result<String, String>;

impl Probe {
    fn now(&self) -> Timestamp {
        Timestamp::ZERO + self.epoch.elapsed()
    }

    fn sock(&self) -> Result<&UdpSocket, String> {
        self.sock.as_ref().ok_or_else(|| "bind first".to_owned())
    }

    fn recv(&self, wait: Duration) -> Result<Option<(usize, SocketAddr, [u8; 2048])>, String> {
        let s = self.sock()?;
        s.set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 2048];
        match s.recv_from(&mut buf) {
            Ok((n, from)) => Ok(Some((n, from, buf))),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.to_string()),
        }
    }

    fn bind(&mut self, addr: &str) -> Reply {
        let s = UdpSocket::bind(addr).map_err(|e| e.to_string())?;
        let local = s.local_addr().map_err(|e| e.to_string())?;
        self.sock = Some(s);
        Ok(format!("local={local}"))
    }

    fn stun(&mut self, servers: &[SocketAddr]) -> Reply {
        let mut c = BindingClient::new(
            BindingConfig {
                servers: servers.to_vec(),
                ..Default::default()
            },
            self.now(),
        );
        loop {
            let now = self.now();
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
            while let Some(t) = c.poll_transmit() {
                let _ = self.sock()?.send_to(&t.payload, t.destination);
            }
            match c.poll_event() {
                Some(BindingEvent::Mapped { mapped, .. }) => {
                    let rtt = c.rtt().unwrap_or_default().as_micros();
                    return Ok(format!("mapped={mapped} rtt_us={rtt}"));
                }
                Some(BindingEvent::Failed(f)) => return Err(f.to_string()),
                None => {}
            }
            if let Some((n, from, buf)) = self.recv(Duration::from_millis(10))? {
                c.handle_input(self.now(), from, &buf[..n]);
            }
        }
    }

    fn punch(&mut self, peer: SocketAddr, ms: u64) -> Reply {
        let end = Instant::now() + Duration::from_millis(ms);
        let mut next = Instant::now();
        let (mut received, mut sent) = (0u32, 0u32);
        let mut from_seen: Option<SocketAddr> = None;
        while Instant::now() < end {
            if Instant::now() >= next {
                next += Duration::from_millis(20);
                let s = self.sock()?;
                let _ = s.send_to(b"punch", peer);
                sent += 1;
                if let Some(f) = from_seen.filter(|f| *f != peer) {
                    let _ = s.send_to(b"punch", f);
                    sent += 1;
                }
            }
            if let Some((_, from, _)) = self.recv(Duration::from_millis(5))? {
                if from.ip() == peer.ip() {
                    received += 1;
                    from_seen = Some(from);
                }
            }
        }
        let from = from_seen.map_or("-".to_owned(), |f| f.to_string());
        Ok(format!("received={received} from={from} sent={sent}"))
    }

    /// Runs the TURN client until `done` accepts an event, for up to `limit`; relayed data
    /// goes to `on_data`.
    fn drive_turn(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&TurnEvent) -> bool,
        mut on_data: impl FnMut(&mut TurnClient, &UdpSocket, SocketAddr, &[u8]),
    ) -> Result<Option<TurnEvent>, String> {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            let now = self.now();
            let sock = self.sock.as_ref().ok_or("bind first")?;
            let turn = self.turn.as_mut().ok_or("no turn allocation")?;
            if turn.poll_timeout().is_some_and(|t| t <= now) {
                turn.handle_timeout(now);
            }
            while let Some(t) = turn.poll_transmit() {
                let _ = sock.send_to(&t.payload, t.destination);
            }
            while let Some(e) = turn.poll_event() {
                if done(&e) {
                    return Ok(Some(e));
                }
            }
            if let Some((n, from, buf)) = self.recv(Duration::from_millis(5))? {
                let now = self.now();
                let sock = self.sock.as_ref().ok_or("bind first")?;
                let turn = self.turn.as_mut().ok_or("no turn allocation")?;
                if let TurnInput::Data { peer, payload } = turn.handle_input(now, from, &buf[..n]) {
                    let payload = payload.to_vec();
                    on_data(turn, sock, peer, &payload);
                }
            }
        }
        Ok(None)
    }

    fn turn(&mut self, server: SocketAddr, user: &str, pass: &str) -> Reply {
        self.turn = Some(TurnClient::new(
            TurnConfig::new(server, user, pass),
            self.now(),
        ));
        let ev = self.drive_turn(
            Duration::from_secs(8),
            |e| matches!(e, TurnEvent::Allocated { .. } | TurnEvent::Failed(_)),
            |_, _, _, _| {},
        )?;
        match ev {
            Some(TurnEvent::Allocated {
                relayed, mapped, ..
            }) => Ok(format!(
                "relayed={relayed} mapped={}",
                mapped.map_or("-".to_owned(), |m| m.to_string())
            )),
            Some(TurnEvent::Failed(e)) => Err(e.to_string()),
            _ => Err("no answer from the TURN server".to_owned()),
        }
    }

    fn permit(&mut self, ip: IpAddr) -> Reply {
        let now = self.now();
        self.turn
            .as_mut()
            .ok_or("no turn allocation")?
            .create_permission(ip, now)
            .map_err(|e| e.to_string())?;
        match self.drive_turn(
            Duration::from_secs(8),
            |e| {
                matches!(
                    e,
                    TurnEvent::PermissionCreated(_) | TurnEvent::PermissionFailed { .. }
                )
            },
            |_, _, _, _| {},
        )? {
            Some(TurnEvent::PermissionCreated(_)) => Ok(String::new()),
            Some(TurnEvent::PermissionFailed { error, .. }) => Err(error.to_string()),
            _ => Err("no answer to CreatePermission".to_owned()),
        }
    }

    fn relay_echo(&mut self, ms: u64) -> Reply {
        let mut echoed = 0u32;
        let mut seen: Option<SocketAddr> = None;
        self.drive_turn(
            Duration::from_millis(ms),
            |_| false,
            |turn, sock, peer, data| {
                if let Ok(t) = turn.send(peer, data) {
                    let _ = sock.send_to(&t.payload, t.destination);
                    echoed += 1;
                    seen = Some(peer);
                }
            },
        )?;
        let from = seen.map_or("-".to_owned(), |f| f.to_string());
        Ok(format!("echoed={echoed} from={from}"))
    }

    fn ping(&mut self, peer: SocketAddr, ms: u64) -> Reply {
        let start = Instant::now();
        let end = start + Duration::from_millis(ms);
        let mut next = start;
        while Instant::now() < end {
            if Instant::now() >= next {
                next += Duration::from_millis(50);
                let _ = self.sock()?.send_to(b"ping", peer);
            }
            if let Some((n, from, buf)) = self.recv(Duration::from_millis(5))? {
                if from == peer && &buf[..n] == b"ping" {
                    let us = start.elapsed().as_micros();
                    return Ok(format!("answered=1 after_us={us}"));
                }
            }
        }
        Ok("answered=0 after_us=-".to_owned())
    }

    fn gather(&mut self, iface: &str, stun: Option<SocketAddr>, turn: Option<TurnConfig>) -> Reply {
        let (ip, prefix) = iface.split_once('/').ok_or("IP/PREFIX")?;
        let ip: IpAddr = ip.parse().map_err(|e| format!("ip: {e}"))?;
        let prefix_len: u8 = prefix.parse().map_err(|e| format!("prefix: {e}"))?;
        let port = self.sock()?.local_addr().map_err(|e| e.to_string())?.port();
        let cfg = GatherConfig {
            interfaces: vec![Interface { ip, prefix_len }],
            port,
            stun_servers: stun.into_iter().collect(),
            turn_servers: turn.into_iter().collect(),
            ice_enable: ICE_ENABLE_ALL,
            retransmit: Retransmit::INTERACTIVE,
        };
        let mut g = Gatherer::new(cfg, self.now());
        let mut notes = Vec::new();
        let end = Instant::now() + Duration::from_secs(15);
        let mut complete = false;
        while !complete && Instant::now() < end {
            let now = self.now();
            if g.poll_timeout().is_some_and(|t| t <= now) {
                g.handle_timeout(now);
            }
            while let Some(t) = g.poll_transmit() {
                let _ = self.sock()?.send_to(&t.payload, t.destination);
            }
            while let Some(e) = g.poll_event() {
                match e {
                    GatherEvent::Failed(n) => notes.push(n),
                    GatherEvent::Complete => complete = true,
                    GatherEvent::Candidate(_) => {}
                }
            }
            if let Some((n, from, buf)) = self.recv(Duration::from_millis(5))? {
                g.handle_input(self.now(), from, &buf[..n]);
            }
        }
        let lines: Vec<String> = g
            .candidates()
            .iter()
            .map(|c| c.candidate.to_string())
            .collect();
        self.gatherer = Some(g);
        Ok(format!(
            "candidates={} notes={}",
            hex(&lines.join("\n")),
            hex(&notes.join("; "))
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn ice(&mut self, role: Role, creds: [&str; 4], ms: u64, remote: &str) -> Reply {
        let mut g = self.gatherer.take().ok_or("gather first")?;
        let start_now = self.now();
        let mut cfg = IceConfig::new(role, creds[0], creds[1], getrandom::u64().unwrap_or(1));
        cfg.connect_timeout = Duration::from_millis(ms);
        let mut agent = IceAgent::new(cfg, start_now);
        for c in g.candidates().to_vec() {
            agent.add_local_candidate(c.candidate, c.prefix_len);
        }
        agent.set_local_complete();
        agent.set_remote_credentials(creds[2], creds[3]);
        for line in unhex(remote)?.lines() {
            if let Ok(c) = Candidate::parse(line) {
                if let Some(t) = g.turn() {
                    let _ = t.create_permission(c.address.ip(), start_now);
                }
                let _ = agent.add_remote_candidate(c);
            }
        }
        agent.set_remote_complete();
        let started = Instant::now();
        let end = started + Duration::from_millis(ms);
        let mut selected: Option<(Duration, String)> = None;
        let mut failure: Option<String> = None;
        while Instant::now() < end && failure.is_none() {
            if selected
                .as_ref()
                .is_some_and(|(at, _)| started.elapsed() > *at + Duration::from_millis(1000))
            {
                break;
            }
            let now = self.now();
            if g.poll_timeout().is_some_and(|t| t <= now) {
                g.handle_timeout(now);
            }
            if agent.poll_timeout().is_some_and(|t| t <= now) {
                agent.handle_timeout(now);
            }
            let sock = self.sock.as_ref().ok_or("bind first")?;
            while let Some(t) = g.poll_transmit() {
                let _ = sock.send_to(&t.payload, t.destination);
            }
            while let Some(t) = agent.poll_transmit() {
                match t.via {
                    Via::Direct => {
                        let _ = sock.send_to(&t.payload, t.destination);
                    }
                    Via::Relay => {
                        if let Some(turn) = g.turn() {
                            let _ = turn.create_permission(t.destination.ip(), now);
                            if let Ok(w) = turn.send(t.destination, &t.payload) {
                                let _ = sock.send_to(&w.payload, w.destination);
                            }
                        }
                    }
                }
            }
            while let Some(e) = agent.poll_event() {
                match e {
                    IceEvent::Selected(p) => {
                        let text = format!(
                            "route={:?} via={:?} remote={} remote_kind={:?} rtt_us={}",
                            p.route,
                            p.via,
                            p.remote.address,
                            p.remote.kind,
                            p.rtt.as_micros()
                        );
                        selected = Some((started.elapsed(), text));
                    }
                    IceEvent::Failed(f) => failure = Some(format!("{} {}", f.end_reason, f.debug)),
                    IceEvent::RoleChanged(_) => {}
                }
            }
            if let Some((n, from, buf)) = self.recv(Duration::from_millis(2))? {
                let now = self.now();
                let data = &buf[..n];
                match g.handle_input(now, from, data) {
                    GatherInput::Relayed { peer, payload } => {
                        if classify(payload) == DatagramKind::Stun {
                            if let Ok(m) = Message::decode(payload) {
                                agent.handle_stun(now, Via::Relay, peer, &m);
                            }
                        }
                    }
                    GatherInput::Consumed => {}
                    GatherInput::NotMine => {
                        if classify(data) == DatagramKind::Stun {
                            if let Ok(m) = Message::decode(data) {
                                agent.handle_stun(now, Via::Direct, from, &m);
                            }
                        }
                    }
                }
            }
        }
        self.gatherer = Some(g);
        match (selected, failure) {
            (Some((at, text)), _) => Ok(format!("{text} after_ms={}", at.as_millis())),
            (None, Some(f)) => Err(f),
            (None, None) => Err("no pair selected in time".to_owned()),
        }
    }

    fn run(&mut self, line: &str) -> Reply {
        let w: Vec<&str> = line.split_whitespace().collect();
        let addr = |s: Option<&&str>| -> Result<SocketAddr, String> {
            s.ok_or("missing address")?
                .parse()
                .map_err(|e| format!("address: {e}"))
        };
        let num = |s: Option<&&str>| -> Result<u64, String> {
            s.ok_or("missing number")?
                .parse()
                .map_err(|e| format!("number: {e}"))
        };
        match w.first().copied() {
            Some("bind") => self.bind(w.get(1).copied().unwrap_or("0.0.0.0:0")),
            Some("stun") => {
                let mut servers = vec![addr(w.get(1))?];
                if w.len() > 2 {
                    servers.push(addr(w.get(2))?);
                }
                self.stun(&servers)
            }
            Some("punch") => self.punch(addr(w.get(1))?, num(w.get(2))?),
            Some("turn") => self.turn(
                addr(w.get(1))?,
                w.get(2).copied().unwrap_or(""),
                w.get(3).copied().unwrap_or(""),
            ),
            Some("permit") => self.permit(
                w.get(1)
                    .ok_or("missing ip")?
                    .parse()
                    .map_err(|e| format!("ip: {e}"))?,
            ),
            Some("relay-echo") => self.relay_echo(num(w.get(1))?),
            Some("ping") => self.ping(addr(w.get(1))?, num(w.get(2))?),
            Some("gather") => {
                let turn = match (w.get(3), w.get(4), w.get(5)) {
                    (Some(_), Some(u), Some(p)) => Some(TurnConfig::new(addr(w.get(3))?, u, p)),
                    _ => None,
                };
                let stun = match w.get(2) {
                    Some(_) => Some(addr(w.get(2))?),
                    None => None,
                };
                self.gather(w.get(1).copied().ok_or("missing IP/PREFIX")?, stun, turn)
            }
            Some("ice") => {
                let role = match w.get(1).copied() {
                    Some("controlling") => Role::Controlling,
                    Some("controlled") => Role::Controlled,
                    _ => return Err("role: controlling or controlled".into()),
                };
                let c = |i: usize| {
                    w.get(i)
                        .copied()
                        .ok_or_else(|| "missing credential".to_owned())
                };
                let creds = [c(2)?, c(3)?, c(4)?, c(5)?];
                self.ice(role, creds, num(w.get(6))?, w.get(7).copied().unwrap_or(""))
            }
            Some(other) => Err(format!("unknown command {other}")),
            None => Err("empty line".to_owned()),
        }
    }
}

fn main() {
    let mut p = Probe {
        sock: None,
        epoch: Instant::now(),
        turn: None,
        gatherer: None,
    };
    let stdin = std::io::stdin();
    let mut out = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let reply = match p.run(&line) {
            Ok(s) if s.is_empty() => "ok".to_owned(),
            Ok(s) => format!("ok {s}"),
            Err(e) => format!("err {e}"),
        };
        if writeln!(out, "{reply}").and_then(|()| out.flush()).is_err() {
            break;
        }
    }
}
