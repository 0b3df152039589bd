//! The whole sans-IO path per message: two connected `Endpoint`s, messages queued on one,
//! every datagram polled out (frames built, packet sealed), fed to the other (opened,
//! decoded, messages delivered), and its acks fed back. No sockets, no clock, no JS: this is
//! the driver's CPU per message in the protocol core.
//!
//! Run: `cargo bench -p netcore --bench connection`.

// criterion_group! makes public functions that cannot carry doc comments.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use netcore::connection::ConnectionConfig;
use netcore::endpoint::{ConnectionHandle, Endpoint, EndpointSetup};
use netcore::sim::{EndpointNode, Pair};

/// Virtual time that passes per pump round (one flight one way, its acks the other): a
/// 50 µs round trip, so the RTT estimate and timers stay realistic for loopback.
const ONE_WAY: Duration = Duration::from_micros(25);

/// Two endpoints, A connected to B, on the shared test harness.
struct Bench {
    pair: Pair<EndpointNode, EndpointNode>,
    conn: ConnectionHandle,
}

impl Bench {
    fn new() -> Self {
        // Rates high enough that the pacer never holds a packet: this measures CPU, not a
        // configured rate (the JS benchmark's `netmessages-fast` uses 100 MB/s likewise).
        let cfg = ConnectionConfig {
            rate_min: 1_000_000_000,
            rate_max: 1_000_000_000,
            send_buffer: 4 << 20,
            ..ConnectionConfig::default()
        };
        let (mut pair, conn, _) = Pair::connected(
            Endpoint::new(cfg, EndpointSetup::for_tests(5)),
            Endpoint::new(cfg, EndpointSetup::for_tests(6)),
        );
        pair.one_way = ONE_WAY;
        Bench { pair, conn }
    }

    /// Queues `count` messages of `payload` on A (channel 0) and pumps until B has them all;
    /// returns the datagrams exchanged.
    fn transfer(&mut self, count: usize, reliable: bool, payload: &[u8]) -> usize {
        self.pair.b.received.clear();
        let now = self.pair.now;
        let conn = self
            .pair
            .a
            .endpoint
            .connection_mut(self.conn)
            .expect("connected");
        for _ in 0..count {
            conn.send(now, 0, reliable, false, payload)
                .expect("buffer has room");
        }
        conn.flush(now);
        let mut datagrams = 0;
        while self.pair.b.received.len() < count {
            let n = self.pair.round();
            datagrams += n;
            if n == 0 {
                // Nothing moved: a timer holds the data (delayed ack, pacing); run it.
                let next = self.pair.next_timeout().expect("pending data has a timer");
                self.pair.now = self.pair.now.max(next);
                self.pair.run_timers();
            }
        }
        self.pair.a.received.clear();
        assert_eq!(
            self.pair.b.received.len(),
            count,
            "every message delivered once"
        );
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
        let mut pair = Bench::new();
        // Warm the connection up (congestion window, RTT estimate) before measuring.
        for _ in 0..20 {
            pair.transfer(count, reliable, &payload);
        }
        g.throughput(Throughput::Elements(count as u64));
        g.bench_function(name, |b| {
            b.iter(|| black_box(pair.transfer(count, reliable, black_box(&payload))))
        });
        let sent = pair
            .pair
            .a
            .endpoint
            .connection(pair.conn)
            .expect("connected")
            .stats();
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
