//! The whole sans-IO path per message: two connected `Endpoint`s, messages queued on one,
//! every datagram polled out (frames built, packet sealed), fed to the other (opened,
//! decoded, messages delivered), and its acks fed back. No sockets, no clock, no JS: this is
//! the driver's CPU per message in the protocol core.
//!
//! Run: `cargo bench -p netcore --bench connection`.

// criterion_group! makes public functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netcore::connection::{ConnectionConfig, InMessage};
use netcore::endpoint::{Endpoint, EndpointSetup};
use netcore::Timestamp;

const A: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    1000,
);
const B: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)),
    2000,
);

/// Virtual time that passes per pump round (one flight one way, its acks the other): a
/// 50 µs round trip, so the RTT estimate and timers stay realistic for loopback.
const ROUND: Duration = Duration::from_micros(50);

/// Datagrams from one side's `poll_transmit`, copied into reused buffers.
#[derive(Default)]
struct Outbox {
    bufs: Vec<Vec<u8>>,
    len: usize,
}

impl Outbox {
    fn collect(&mut self, ep: &mut Endpoint, now: Timestamp, scratch: &mut Vec<u8>) -> usize {
        self.len = 0;
        ep.poll_transmit(now, scratch, |_, d| {
            if self.bufs.len() <= self.len {
                self.bufs.push(Vec::with_capacity(1_500));
            }
            let b = &mut self.bufs[self.len];
            b.clear();
            b.extend_from_slice(d);
            self.len += 1;
        });
        self.len
    }

    fn deliver(
        &self,
        to: &mut Endpoint,
        now: Timestamp,
        from: SocketAddr,
        out: &mut Vec<InMessage>,
    ) {
        for d in &self.bufs[..self.len] {
            to.handle_datagram(now, from, d, out);
        }
    }
}

/// Two endpoints, A connected to B, and the state of the exchange between them.
struct Pair {
    a: Endpoint,
    b: Endpoint,
    now: Timestamp,
    to_a: Outbox,
    to_b: Outbox,
    scratch: Vec<u8>,
    got_a: Vec<InMessage>,
    got_b: Vec<InMessage>,
}

impl Pair {
    fn new() -> Self {
        // Rates high enough that the pacer never holds a packet: this measures CPU, not a
        // configured rate (the JS benchmark's `netmessages-fast` uses 100 MB/s likewise).
        let cfg = ConnectionConfig {
            rate_min: 1_000_000_000,
            rate_max: 1_000_000_000,
            send_buffer: 4 << 20,
            ..ConnectionConfig::default()
        };
        let mut p = Pair {
            a: Endpoint::new(cfg, EndpointSetup::for_tests(5)),
            b: Endpoint::new(cfg, EndpointSetup::for_tests(6)),
            now: Timestamp::from_micros(1_000_000),
            to_a: Outbox::default(),
            to_b: Outbox::default(),
            scratch: Vec::with_capacity(1_500),
            got_a: Vec::new(),
            got_b: Vec::new(),
        };
        // The handshake, as in the endpoint's tests: exchange until both sides are connected.
        p.a.connect(p.now, B, None).expect("room for a connection");
        for _ in 0..8 {
            p.round();
        }
        let connected = |e: &Endpoint, r| e.connection(r).is_some_and(|c| c.is_connected());
        assert!(
            connected(&p.a, B) && connected(&p.b, A),
            "handshake completed"
        );
        p
    }

    /// One flight A -> B and B's answer B -> A; returns the datagrams exchanged.
    fn round(&mut self) -> usize {
        let n = self.to_b.collect(&mut self.a, self.now, &mut self.scratch);
        self.to_b.deliver(&mut self.b, self.now, A, &mut self.got_b);
        self.now += ROUND / 2;
        let m = self.to_a.collect(&mut self.b, self.now, &mut self.scratch);
        self.to_a.deliver(&mut self.a, self.now, B, &mut self.got_a);
        self.now += ROUND / 2;
        n + m
    }

    /// Queues `count` messages of `payload` on A (channel 0) and pumps until B has them all;
    /// returns the datagrams exchanged.
    fn transfer(&mut self, count: usize, reliable: bool, payload: &[u8]) -> usize {
        self.got_b.clear();
        let now = self.now;
        let conn = self.a.connection_mut(B).expect("connected");
        for _ in 0..count {
            conn.send(now, 0, reliable, false, payload)
                .expect("buffer has room");
        }
        conn.flush(now);
        let mut datagrams = 0;
        while self.got_b.len() < count {
            let n = self.round();
            datagrams += n;
            if n == 0 {
                // Nothing moved: a timer holds the data (delayed ack, pacing); run it.
                let next = [self.a.poll_timeout(), self.b.poll_timeout()]
                    .into_iter()
                    .flatten()
                    .min()
                    .expect("pending data has a timer");
                self.now = self.now.max(next);
                self.a.handle_timeout(self.now);
                self.b.handle_timeout(self.now);
            }
        }
        assert_eq!(self.got_b.len(), count, "every message delivered once");
        datagrams
    }
}

fn per_message(c: &mut Criterion) {
    let mut g = c.benchmark_group("sans_io_path");
    for (name, count, reliable, len) in [
        ("unreliable_32B_x1000", 1_000usize, false, 32usize),
        ("reliable_1200B_x200", 200, true, 1_200),
    ] {
        let payload = vec![0x5au8; len];
        let mut pair = Pair::new();
        // Warm the connection up (congestion window, RTT estimate) before measuring.
        for _ in 0..20 {
            pair.transfer(count, reliable, &payload);
        }
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(pair.transfer(count, reliable, black_box(&payload))))
        });
        let sent = pair.a.connection(B).expect("connected").stats();
        let datagrams = pair.transfer(count, reliable, &payload);
        eprintln!(
            "  {name}: {datagrams} datagrams per {count} messages (both directions); \
             A sent {} packets, {} lost so far",
            sent.packets_sent, sent.packets_lost
        );
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! { name = benches; config = config(); targets = per_message }
criterion_main!(benches);
