//! The cost of one driver wake-up on an endpoint with many established connections: the
//! calls the driver makes each time (`poll_timeout`, `handle_timeout`, `poll_transmit`),
//! with nothing due (`idle`), and after one datagram from one peer (`one_datagram`, the
//! common case when every peer sends a few small messages a second). The work should not
//! grow with the number of connections.
//!
//! Run: `cargo bench -p netcore --bench wakeup`.

// criterion_group! makes public functions that cannot carry doc comments.
#![allow(missing_docs)]
// A benchmark times itself; the protocol code it drives still takes `now` from it.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use netcore::connection::{ConnectionConfig, InMessage};
use netcore::endpoint::rate_limit::{Bucket, RateLimits};
use netcore::endpoint::{ConnectionHandle, Endpoint, EndpointSetup};
use netcore::Timestamp;

/// Connection counts measured.
const SIZES: [u32; 2] = [100, 10_000];

/// The address of connection `i`, on both sides: the client dials it, and the server sees
/// the client there (an endpoint only keys its connections by the remote address).
fn addr(i: u32) -> SocketAddr {
    let [_, a, b, c] = i.to_be_bytes();
    SocketAddr::from(([10, a, b, c], 9000))
}

/// One client endpoint with `n` connections, all to one server endpoint (the one measured).
struct Fleet {
    client: Endpoint,
    server: Endpoint,
    now: Timestamp,
    scratch: Vec<u8>,
    got: Vec<InMessage>,
    /// What the server sent on waking (bytes, then each datagram's address and end), handed
    /// to the client before it sends again so that its acks keep the client's window open.
    sent_bytes: Vec<u8>,
    sent: Vec<(SocketAddr, usize)>,
    /// The client's connections, `i` to `addr(i)`.
    conns: Vec<ConnectionHandle>,
}

impl Fleet {
    fn new(n: u32) -> Self {
        let mut server = Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(2));
        let roomy = Bucket {
            burst: 1_000_000,
            per_second: 1_000_000,
        };
        server.set_rate_limits(RateLimits {
            per_source: roomy,
            global: roomy,
        });
        let mut f = Fleet {
            client: Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(1)),
            server,
            now: Timestamp::from_micros(1_000_000),
            scratch: Vec::with_capacity(1_500),
            got: Vec::new(),
            sent_bytes: Vec::new(),
            sent: Vec::new(),
            conns: Vec::new(),
        };
        // In batches: the server queues at most `MAX_CONTROL_OUT` handshake replies at once.
        for i in 0..n {
            let h = f.client.connect(f.now, addr(i), None, false).expect("room");
            f.conns.push(h);
            if i % 500 == 499 || i + 1 == n {
                for _ in 0..6 {
                    f.round();
                }
            }
        }
        assert_eq!(f.server.connection_count(), n as usize);
        assert!((0..n).all(|i| f
            .server
            .connection_at(addr(i))
            .and_then(|h| f.server.connection(h))
            .is_some_and(|c| c.is_connected())));
        // Let acks and their timers settle, then stop at an instant nothing is due.
        for _ in 0..4 {
            f.now += Duration::from_millis(60);
            f.client.handle_timeout(f.now);
            f.server.handle_timeout(f.now);
            f.round();
        }
        assert!(f.server.poll_timeout().is_some_and(|t| t > f.now));
        f
    }

    /// Everything each side has to send, delivered to the other.
    fn round(&mut self) {
        let mut to_server = Vec::new();
        self.client
            .poll_transmit(self.now, &mut self.scratch, |to, d| {
                to_server.push((to, d.to_vec()))
            });
        for (from, d) in &to_server {
            self.server
                .handle_datagram(self.now, *from, d, &mut self.got);
        }
        let mut to_client = Vec::new();
        self.server
            .poll_transmit(self.now, &mut self.scratch, |to, d| {
                to_client.push((to, d.to_vec()))
            });
        for (from, d) in &to_client {
            self.client
                .handle_datagram(self.now, *from, d, &mut self.got);
        }
        self.got.clear();
    }

    /// One small message from every client connection, as datagrams for the server.
    fn one_message_each(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut start = 0;
        for &(from, end) in &self.sent {
            let d = &self.sent_bytes[start..end];
            self.client
                .handle_datagram(self.now, from, d, &mut self.got);
            start = end;
        }
        self.sent.clear();
        self.sent_bytes.clear();
        self.got.clear();
        self.now += Duration::from_millis(1);
        self.client.handle_timeout(self.now);
        for &h in &self.conns {
            if let Some(c) = self.client.connection_mut(h) {
                let _ = c.send(self.now, 0, false, true, b"20 of these a second");
            }
        }
        let mut out = Vec::new();
        self.client
            .poll_transmit(self.now, &mut self.scratch, |to, d| {
                out.push((to, d.to_vec()))
            });
        assert!(!out.is_empty(), "the client sends");
        out
    }

    /// What the driver does on waking: returns the datagrams the server sent.
    fn wake(&mut self) -> usize {
        let before = self.sent.len();
        black_box(self.server.poll_timeout());
        self.server.handle_timeout(self.now);
        let (bytes, sent) = (&mut self.sent_bytes, &mut self.sent);
        self.server
            .poll_transmit(self.now, &mut self.scratch, |to, d| {
                bytes.extend_from_slice(d);
                sent.push((to, bytes.len()));
            });
        self.sent.len() - before
    }
}

fn wakeup(c: &mut Criterion) {
    let mut g = c.benchmark_group("wakeup");
    for n in SIZES {
        let mut fleet = Fleet::new(n);
        g.bench_function(format!("idle_{n}_connections"), |b| {
            b.iter(|| black_box(fleet.wake()))
        });
        assert!(fleet.sent.is_empty(), "an idle wake-up sends nothing");
        let mut pending = Vec::new();
        g.bench_function(format!("one_datagram_{n}_connections"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if pending.is_empty() {
                        pending = fleet.one_message_each();
                        pending.reverse();
                    }
                    let Some((from, d)) = pending.pop() else {
                        break;
                    };
                    let start = Instant::now();
                    fleet
                        .server
                        .handle_datagram(fleet.now, from, &d, &mut fleet.got);
                    black_box(fleet.wake());
                    total += start.elapsed();
                    fleet.got.clear();
                }
                total
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! { name = benches; config = config(); targets = wakeup }
criterion_main!(benches);
