//! A load generator for netmessages servers: many sessions from one process, each a real
//! netcore connection (challenge, signed key exchange, AES-GCM) on a UDP socket of its own,
//! at a source address of its own (127.x.y.z on loopback, so the server's per-source limits
//! see distinct peers, as they would on the internet). `--raw` sends plain UDP datagrams
//! from the same sockets instead: the load for a `dgram` baseline server.
//!
//! Timed run:
//! ```text
//! netmessages-loadgen --target 127.0.0.1:27015 --sessions 10000 --rate 20 --size 32 \
//!     --seconds 10 [--warmup 3] [--connect-per-second 4000] [--reliable] [--raw]
//! ```
//! prints one JSON line: sessions connected, messages sent in the measured window and the
//! achieved rate, its own CPU, send refusals.
//!
//! `--control` is the benchmark's mode: commands on stdin, one per line (`target HOST:PORT`,
//! `hello`, `go`, `stop`), JSON replies on stdout (`{"ready":…}`, `{"peered":…}`,
//! `{"helloed":…}`, `{"result":…}`). `hello` opens every session (paced) with one message
//! each, then all stay quiet until `go`, which starts `--rate` messages a second per session,
//! staggered evenly; `stop` reports and exits.
//!
//! Node clients on two cores cannot drive 10,000 sessions at 20 messages a second; this can,
//! on one core, and says what it achieved.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token};
use netcore::connection::{ConnectionConfig, Framing};
use netcore::crypto::session_setup::LocalSecurity;
use netcore::crypto::IdentityKey;
use netcore::endpoint::{ConnectionHandle, Endpoint, EndpointSetup, IncomingPolicy};
use netcore::Timestamp;

struct Options {
    target: Option<SocketAddr>,
    sessions: usize,
    rate: f64,
    size: usize,
    seconds: f64,
    warmup: f64,
    connect_per_second: f64,
    reliable: bool,
    raw: bool,
    control: bool,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        target: None,
        sessions: 1000,
        rate: 20.0,
        size: 32,
        seconds: 10.0,
        warmup: 3.0,
        connect_per_second: 4000.0,
        reliable: false,
        raw: false,
        control: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |v: String| {
            v.parse::<f64>()
                .map_err(|_| format!("{a}: not a number: {v}"))
        };
        match a.as_str() {
            "--target" => {
                let v = value()?;
                o.target = Some(
                    v.parse()
                        .map_err(|_| format!("--target: not host:port: {v}"))?,
                );
            }
            "--sessions" => o.sessions = num(value()?)? as usize,
            "--rate" => o.rate = num(value()?)?,
            "--size" => o.size = num(value()?)? as usize,
            "--seconds" => o.seconds = num(value()?)?,
            "--warmup" => o.warmup = num(value()?)?,
            "--connect-per-second" => o.connect_per_second = num(value()?)?,
            "--reliable" => o.reliable = true,
            "--raw" => o.raw = true,
            "--control" => o.control = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.sessions == 0 || o.sessions > 60_000 || o.rate <= 0.0 || o.size > 1200 {
        return Err("--sessions 1..60000, --rate > 0, --size <= 1200".into());
    }
    if !o.control && o.target.is_none() {
        return Err("--target HOST:PORT is needed (or --control)".into());
    }
    Ok(o)
}

/// The source address of session `i`: a distinct loopback address per session.
fn source(i: usize) -> SocketAddr {
    let n = i + 1;
    let ip = Ipv4Addr::new(127, 1 + (n >> 16) as u8, (n >> 8) as u8, n as u8);
    SocketAddr::new(IpAddr::V4(ip), 0)
}

fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: user and system time in clock ticks (100 Hz on Linux).
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            let user: f64 = f.get(11)?.parse().ok()?;
            let sys: f64 = f.get(12)?.parse().ok()?;
            Some((user + sys) / 100.0)
        })
        .unwrap_or(0.0)
}

/// One simulated peer: a socket and, unless `--raw`, the endpoint holding its session.
struct Session {
    socket: UdpSocket,
    /// `None` with `--raw`.
    endpoint: Option<(Endpoint, ConnectionHandle)>,
    /// Its one `hello` message went out.
    helloed: bool,
}

impl Session {
    fn connected(&self) -> bool {
        match &self.endpoint {
            Some((e, h)) => e.connection(*h).is_some_and(|c| c.is_connected()),
            None => true,
        }
    }

    fn deadline(&self) -> Option<Timestamp> {
        self.endpoint.as_ref().and_then(|(e, _)| e.poll_timeout())
    }
}

/// Where the run is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for `target` (control mode).
    NoTarget,
    /// Waiting for `hello` (control mode).
    Peered,
    /// Opening sessions, each sending one message once connected.
    Hello,
    /// Every session said hello; quiet until `go`.
    Quiet,
    /// Sending at the rate.
    Sending,
}

struct Load {
    o: Options,
    epoch: Instant,
    poll: Poll,
    sessions: Vec<Session>,
    timers: BinaryHeap<Reverse<(Timestamp, usize)>>,
    security: LocalSecurity,
    unix: u64,
    buf: Vec<u8>,
    payload: Vec<u8>,
    target: SocketAddr,
    phase: Phase,
    /// When sessions started opening.
    opened_at: Duration,
    next_sender: usize,
    next_send_at: Duration,
    go_at: Duration,
    sent: u64,
    refused: u64,
    /// Handshakes that failed and were dialled again.
    redials: u64,
    /// Sessions that have not sent their hello yet.
    unhelloed: Vec<usize>,
}

impl Load {
    fn now(&self) -> Timestamp {
        Timestamp::from_micros(self.epoch.elapsed().as_micros() as u64)
    }

    fn flush(s: &mut Session, buf: &mut Vec<u8>, t: Timestamp) {
        let Some((e, _)) = s.endpoint.as_mut() else {
            return;
        };
        let socket = &s.socket;
        e.poll_transmit(t, buf, |to, d| {
            // A full kernel buffer drops the datagram: the protocol recovers it like a loss.
            let _ = socket.send_to(d, to);
        });
    }

    fn schedule(&mut self, i: usize) {
        if let Some(d) = self.sessions.get(i).and_then(Session::deadline) {
            self.timers.push(Reverse((d, i)));
        }
    }

    fn open_one(&mut self) -> io::Result<()> {
        let i = self.sessions.len();
        let mut socket = UdpSocket::bind(source(i))?;
        self.poll
            .registry()
            .register(&mut socket, Token(i), Interest::READABLE)?;
        let endpoint = if self.o.raw {
            None
        } else {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| io::Error::other(e.to_string()))?;
            let cfg = ConnectionConfig {
                framing: Framing::Messages,
                ..ConnectionConfig::default()
            };
            let mut e = Endpoint::new(
                cfg,
                EndpointSetup {
                    secret,
                    security: self.security.clone(),
                    unix_at_epoch: self.unix,
                },
            );
            e.set_incoming(IncomingPolicy::Refuse);
            let h = e
                .connect(self.now(), self.target, None, false)
                .ok_or_else(|| io::Error::other("connection table full"))?;
            Some((e, h))
        };
        let mut s = Session {
            socket,
            endpoint,
            helloed: false,
        };
        let t = self.now();
        Self::flush(&mut s, &mut self.buf, t);
        self.sessions.push(s);
        self.unhelloed.push(i);
        self.schedule(i);
        Ok(())
    }

    /// Sends one message on session `i` if it is connected; whether it went.
    fn send_on(&mut self, i: usize) -> bool {
        let t = self.now();
        let (reliable, target) = (self.o.reliable, self.target);
        let Some(s) = self.sessions.get_mut(i) else {
            return false;
        };
        if !s.connected() {
            return false;
        }
        let ok = match &mut s.endpoint {
            Some((e, h)) => e
                .connection_mut(*h)
                .is_some_and(|c| c.send(t, 0, reliable, true, &self.payload).is_ok()),
            None => s.socket.send_to(&self.payload, target).is_ok(),
        };
        Self::flush(s, &mut self.buf, t);
        self.schedule(i);
        ok
    }

    /// One turn of the loop: opens, sends and timers that are due, then waits up to `max`
    /// for datagrams and handles them.
    fn turn(&mut self, max: Duration) -> io::Result<()> {
        let elapsed = self.epoch.elapsed();
        if matches!(self.phase, Phase::Hello | Phase::Quiet | Phase::Sending) {
            let gap = Duration::from_secs_f64(1.0 / self.o.connect_per_second.max(1.0));
            while self.sessions.len() < self.o.sessions
                && elapsed >= self.opened_at + gap.mul_f64(self.sessions.len() as f64)
            {
                self.open_one()?;
            }
        }
        if self.phase == Phase::Hello {
            // Only the sessions still to say hello, so a turn costs what is left to do.
            let mut waiting = std::mem::take(&mut self.unhelloed);
            waiting.retain(|&i| {
                if self.send_on(i) {
                    if let Some(s) = self.sessions.get_mut(i) {
                        s.helloed = true;
                    }
                    self.sent += 1;
                    false
                } else {
                    self.redial_if_failed(i);
                    true
                }
            });
            self.unhelloed = waiting;
            if self.sessions.len() == self.o.sessions && self.unhelloed.is_empty() {
                self.phase = Phase::Quiet;
                if self.o.control {
                    reply(&format!(
                        "{{\"type\":\"helloed\",\"sessions\":{},\"redials\":{}}}",
                        self.sessions.len(),
                        self.redials
                    ));
                }
            }
        }
        if self.phase == Phase::Sending {
            let spacing =
                Duration::from_secs_f64(1.0 / self.o.rate).div_f64(self.o.sessions as f64);
            // A bounded number of sends per turn, and no debt older than 100 ms: a generator
            // that cannot keep up must still read datagrams and commands (stop) between
            // sends; what it could not send shows in its measured send rate.
            let now = self.epoch.elapsed();
            let behind = Duration::from_millis(100);
            if now > self.next_send_at + behind {
                self.next_send_at = now - behind;
            }
            let mut budget = 4096u32;
            while budget > 0 && self.epoch.elapsed() >= self.next_send_at {
                budget -= 1;
                let i = self.next_sender;
                self.next_sender = (self.next_sender + 1) % self.o.sessions;
                self.next_send_at += spacing;
                if self.send_on(i) {
                    self.sent += 1;
                } else {
                    self.refused += 1;
                }
            }
        }
        let t = self.now();
        while let Some(&Reverse((d, i))) = self.timers.peek() {
            if d > t {
                break;
            }
            self.timers.pop();
            if let Some(s) = self.sessions.get_mut(i) {
                // Stale entries (the deadline moved) cost one call that finds nothing due.
                if let Some((e, _)) = s.endpoint.as_mut() {
                    if e.poll_timeout().is_some_and(|d| d <= t) {
                        e.handle_timeout(t);
                    }
                }
                Self::flush(s, &mut self.buf, t);
                if let Some(d) = s.deadline().filter(|&d| d > t) {
                    self.timers.push(Reverse((d, i)));
                }
            }
        }
        let mut wait = max;
        if let Some(Reverse((d, _))) = self.timers.peek() {
            wait =
                wait.min(Duration::from_micros(d.as_micros()).saturating_sub(self.epoch.elapsed()));
        }
        if self.phase == Phase::Sending {
            wait = wait.min(self.next_send_at.saturating_sub(self.epoch.elapsed()));
        }
        if matches!(self.phase, Phase::Hello) {
            wait = wait.min(Duration::from_millis(1));
        }
        let mut events = Events::with_capacity(1024);
        self.poll.poll(&mut events, Some(wait))?;
        let mut recv = [0u8; 2048];
        for ev in events.iter() {
            let i = ev.token().0;
            let t = self.now();
            let Some(s) = self.sessions.get_mut(i) else {
                continue;
            };
            let mut out = Vec::new();
            // Until WouldBlock (mio is edge-triggered) or an error for this socket.
            while let Ok((n, from)) = s.socket.recv_from(&mut recv) {
                if let (Some((e, _)), Some(d)) = (s.endpoint.as_mut(), recv.get(..n)) {
                    e.handle_datagram(t, from, d, &mut out);
                }
                out.clear();
            }
            if let Some((e, _)) = s.endpoint.as_mut() {
                while e.poll_event().is_some() {}
            }
            Self::flush(s, &mut self.buf, t);
            self.schedule(i);
        }
        Ok(())
    }

    /// A session whose handshake failed (the server was too busy to answer in time) dials
    /// again, so every peer ends up connected.
    fn redial_if_failed(&mut self, i: usize) {
        let (t, target) = (self.now(), self.target);
        let Some(s) = self.sessions.get_mut(i) else {
            return;
        };
        let Some((e, h)) = s.endpoint.as_mut() else {
            return;
        };
        if e.connection(*h).is_some_and(|c| c.is_dead()) {
            e.forget(*h);
            if let Some(fresh) = e.connect(t, target, None, false) {
                *h = fresh;
                self.redials += 1;
            }
            Self::flush(s, &mut self.buf, t);
            self.schedule(i);
        }
    }

    fn go(&mut self) {
        self.phase = Phase::Sending;
        self.go_at = self.epoch.elapsed();
        self.next_send_at = self.go_at;
        self.sent = 0;
        self.refused = 0;
    }

    fn connected(&self) -> usize {
        self.sessions.iter().filter(|s| s.connected()).count()
    }
}

fn reply(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("netmessages-loadgen: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(o) {
        eprintln!("netmessages-loadgen: {e}");
        std::process::exit(1);
    }
}

fn run(o: Options) -> io::Result<()> {
    let key = IdentityKey::generate().map_err(|e| io::Error::other(e.to_string()))?;
    let control = o.control;
    let mut load = Load {
        payload: vec![0x5a; o.size],
        target: o.target.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
        phase: if control {
            Phase::NoTarget
        } else {
            Phase::Hello
        },
        o,
        epoch: Instant::now(),
        poll: Poll::new()?,
        sessions: Vec::new(),
        timers: BinaryHeap::new(),
        security: LocalSecurity::unauthenticated(key),
        unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        buf: Vec::with_capacity(1500),
        opened_at: Duration::ZERO,
        next_sender: 0,
        next_send_at: Duration::ZERO,
        go_at: Duration::ZERO,
        sent: 0,
        refused: 0,
        redials: 0,
        unhelloed: Vec::new(),
    };
    if control {
        return run_controlled(&mut load);
    }
    // Timed: hello, then send; the window starts `--warmup` s after sending starts.
    let deadline_hello = Duration::from_secs(60);
    while load.phase == Phase::Hello && load.epoch.elapsed() < deadline_hello {
        load.turn(Duration::from_millis(5))?;
    }
    load.go();
    let warm = Duration::from_secs_f64(load.o.warmup);
    let window = Duration::from_secs_f64(load.o.seconds);
    while load.epoch.elapsed() < load.go_at + warm {
        load.turn(Duration::from_millis(5))?;
    }
    let (sent0, refused0, cpu0, connected0) =
        (load.sent, load.refused, cpu_seconds(), load.connected());
    let w0 = load.epoch.elapsed();
    while load.epoch.elapsed() < w0 + window {
        load.turn(Duration::from_millis(5))?;
    }
    let secs = (load.epoch.elapsed() - w0).as_secs_f64();
    reply(&format!(
        "{{\"sessions\":{},\"connected\":{},\"connectedAtWindow\":{connected0},\"sentPerSec\":{:.1},\"targetPerSec\":{:.1},\"sentInWindow\":{},\"refused\":{},\"cpuPercent\":{:.1},\"raw\":{}}}",
        load.sessions.len(),
        load.connected(),
        (load.sent - sent0) as f64 / secs,
        load.o.sessions as f64 * load.o.rate,
        load.sent - sent0,
        load.refused - refused0,
        (cpu_seconds() - cpu0) / secs * 100.0,
        load.o.raw,
    ));
    Ok(())
}

fn run_controlled(load: &mut Load) -> io::Result<()> {
    // Commands arrive on a thread of their own (stdin blocks); the loop polls the channel.
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    reply("{\"type\":\"ready\"}");
    loop {
        match rx.try_recv() {
            Ok(line) => {
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some("target"), Some(addr)) => {
                        load.target = addr
                            .parse()
                            .map_err(|_| io::Error::other(format!("bad target {addr}")))?;
                        load.phase = Phase::Peered;
                        reply("{\"type\":\"peered\"}");
                    }
                    (Some("hello"), _) => {
                        load.phase = Phase::Hello;
                        load.opened_at = load.epoch.elapsed();
                    }
                    (Some("go"), _) => load.go(),
                    (Some("stop"), _) => {
                        let ms = (load.epoch.elapsed() - load.go_at).as_secs_f64() * 1000.0;
                        reply(&format!(
                            "{{\"type\":\"result\",\"sent\":{},\"backpressure\":{},\"sendingMs\":{ms:.1},\"connected\":{},\"sessions\":{},\"redials\":{},\"cpuSeconds\":{:.2}}}",
                            load.sent,
                            load.refused,
                            load.connected(),
                            load.sessions.len(),
                            load.redials,
                            cpu_seconds(),
                        ));
                        return Ok(());
                    }
                    _ => reply(&format!(
                        "{{\"type\":\"error\",\"error\":\"unknown command {line}\"}}"
                    )),
                }
            }
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => return Ok(()),
        }
        load.turn(Duration::from_millis(2))?;
    }
}
