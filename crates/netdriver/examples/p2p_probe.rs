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
//! ```
//!
//! Not part of the library: a test tool. It exists because the protocol crate has no I/O, so
//! something must carry its datagrams inside each namespace.

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use netcore::p2p::stun::binding::{BindingClient, BindingConfig, BindingEvent};
use netcore::p2p::turn::{TurnClient, TurnConfig, TurnEvent, TurnInput};
use netcore::Timestamp;

struct Probe {
    sock: Option<UdpSocket>,
    epoch: Instant,
    turn: Option<TurnClient>,
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
