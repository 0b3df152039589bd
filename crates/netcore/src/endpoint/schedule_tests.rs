//! Checks of the endpoint's scheduling (the timer queue and the touched list): that it never
//! misses a connection with something to do.
//!
//! Two copies of the same client/server pair run in lockstep on the same random operations.
//! One schedules as built; in the other every connection is touched before every call, so it
//! looks at all of them as a full scan would. Both must send the same datagrams at every
//! step, and the scheduled one's `poll_timeout` must always equal the minimum over its
//! connections, computed by brute force.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::rate_limit::{Bucket, RateLimits};
use super::{Endpoint, EndpointSetup};
use crate::connection::ConnectionConfig;
use crate::time::Timestamp;

/// Connections per endpoint.
const PEERS: u16 = 24;

/// The address both sides use for connection `i`: the client dials it, and the server sees
/// the client there (each endpoint only keys its connections by the remote address).
fn addr(i: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 9000))
}

/// Datagrams of one `poll_transmit`, per destination in the order sent (the order across
/// destinations follows the touched list and does not matter).
type Sent = BTreeMap<SocketAddr, Vec<Vec<u8>>>;

/// The sizes of the datagrams sent, for failure messages.
fn sizes(sent: &Sent) -> Vec<(SocketAddr, Vec<usize>)> {
    sent.iter()
        .map(|(to, ds)| (*to, ds.iter().map(Vec::len).collect()))
        .collect()
}

/// One client/server pair.
struct Pair {
    client: Endpoint,
    server: Endpoint,
    /// Touch every connection before every call (the full-scan reference).
    scan_all: bool,
}

impl Pair {
    fn new(seed: u8, scan_all: bool) -> Self {
        let mut server = Endpoint::new(
            ConnectionConfig::default(),
            EndpointSetup::for_tests(seed.wrapping_add(1)),
        );
        let roomy = Bucket {
            burst: 10_000,
            per_second: 10_000,
        };
        server.set_rate_limits(RateLimits {
            per_source: roomy,
            global: roomy,
        });
        Pair {
            client: Endpoint::new(ConnectionConfig::default(), EndpointSetup::for_tests(seed)),
            server,
            scan_all,
        }
    }

    fn side(&mut self, server: bool) -> &mut Endpoint {
        if server {
            &mut self.server
        } else {
            &mut self.client
        }
    }

    fn touch_all(&mut self) {
        if self.scan_all {
            for ep in [&mut self.client, &mut self.server] {
                let ids: Vec<u32> = ep.conns.keys().copied().collect();
                for id in ids {
                    ep.touch(id);
                }
            }
        }
    }

    /// Runs the timers, then collects what each side sends: (client's, server's).
    fn transmit(&mut self, now: Timestamp) -> (Sent, Sent) {
        self.touch_all();
        self.client.handle_timeout(now);
        self.server.handle_timeout(now);
        self.touch_all();
        let mut out = (Sent::new(), Sent::new());
        let mut buf = Vec::new();
        self.client.poll_transmit(now, &mut buf, |to, d| {
            out.0.entry(to).or_default().push(d.to_vec());
        });
        self.server.poll_transmit(now, &mut buf, |to, d| {
            out.1.entry(to).or_default().push(d.to_vec());
        });
        out
    }

    fn poll_timeout(&self) -> Option<Timestamp> {
        [self.client.poll_timeout(), self.server.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }
}

/// The earliest deadline of any connection, by looking at every one.
fn brute_force_timeout(ep: &Endpoint) -> Option<Timestamp> {
    if !ep.control_out.is_empty() {
        return Some(Timestamp::ZERO);
    }
    ep.conns
        .values()
        .filter_map(|s| s.conn.poll_timeout())
        .min()
}

fn check_timeouts(p: &Pair, what: &str) {
    assert_eq!(
        p.client.poll_timeout(),
        brute_force_timeout(&p.client),
        "client after {what}"
    );
    assert_eq!(
        p.server.poll_timeout(),
        brute_force_timeout(&p.server),
        "server after {what}"
    );
}

/// One random operation on both copies.
fn operate(rng: &mut ChaCha8Rng, pairs: &mut [Pair; 2], now: &mut Timestamp) -> &'static str {
    let i = (rng.next_u32() % u32::from(PEERS)) as u16;
    let roll = rng.next_u32() % 100;
    match roll {
        0..=39 => {
            let server = rng.next_u32() % 2 == 0;
            let reliable = rng.next_u32() % 3 != 0;
            let no_nagle = rng.next_u32() % 4 == 0;
            let len = (rng.next_u32() % 3_000) as usize;
            let data = vec![i as u8; len];
            for p in pairs.iter_mut() {
                let side = p.side(server);
                if let Some(c) = side
                    .connection_at(addr(i))
                    .and_then(|h| side.connection_mut(h))
                {
                    if c.is_connected() {
                        let _ = c.send(*now, 1, reliable, no_nagle, &data);
                    }
                }
            }
            "send"
        }
        40..=69 => {
            *now += Duration::from_micros(u64::from(rng.next_u32() % 20_000));
            "a small step"
        }
        70..=89 => {
            let next = pairs[0].poll_timeout().unwrap_or(*now);
            *now = next.max(*now);
            "a step to the next deadline"
        }
        90..=93 => {
            for p in pairs.iter_mut() {
                if let Some(h) = p.client.connection_at(addr(i)) {
                    p.client.forget(h);
                }
            }
            "close"
        }
        94..=97 => {
            for p in pairs.iter_mut() {
                if p.client.connection_at(addr(i)).is_none() {
                    p.client.connect(*now, addr(i), None, true);
                }
            }
            "connect"
        }
        _ => {
            let cfg = ConnectionConfig {
                nagle: Duration::from_micros(u64::from(rng.next_u32() % 10_000)),
                ..ConnectionConfig::default()
            };
            for p in pairs.iter_mut() {
                p.server.set_config(*now, cfg);
            }
            "set_config"
        }
    }
}

fn run(seed: u8, steps: usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(u64::from(seed));
    let mut pairs = [Pair::new(seed, false), Pair::new(seed, true)];
    let mut now = Timestamp::from_micros(1_000_000);
    for p in pairs.iter_mut() {
        for i in 0..PEERS {
            p.client.connect(now, addr(i), None, true);
        }
    }
    let mut sent_total = 0usize;
    for step in 0..steps {
        let what = operate(&mut rng, &mut pairs, &mut now);
        check_timeouts(&pairs[0], what);
        let [scheduled, scan] = &mut pairs;
        let (to_server, to_client) = scheduled.transmit(now);
        let reference = scan.transmit(now);
        assert!(
            (&to_server, &to_client) == (&reference.0, &reference.1),
            "seed {seed} step {step} after {what}: the scheduled endpoint sent {:?}, a full \
             scan {:?} (datagram sizes per destination; client's, server's)",
            (sizes(&to_server), sizes(&to_client)),
            (sizes(&reference.0), sizes(&reference.1)),
        );
        check_timeouts(&pairs[0], "poll_transmit");
        // The same datagrams, with the same losses (5%), for both copies.
        let mut flights = Vec::new();
        for (to_server, sent) in [(true, &to_server), (false, &to_client)] {
            for (peer, ds) in sent {
                for d in ds {
                    if rng.next_u32() % 20 != 0 {
                        flights.push((to_server, *peer, d));
                    }
                }
            }
        }
        for p in pairs.iter_mut() {
            let mut got = Vec::new();
            for &(to_server, peer, d) in &flights {
                p.side(to_server).handle_datagram(now, peer, d, &mut got);
            }
        }
        sent_total += to_server
            .values()
            .chain(to_client.values())
            .map(Vec::len)
            .sum::<usize>();
        check_timeouts(&pairs[0], "datagrams");
    }
    // The run did something: connections came up and carried data.
    assert!(
        sent_total > steps / 2,
        "seed {seed}: only {sent_total} datagrams"
    );
    assert!(pairs[0].server.connection_count() > 0);
}

#[test]
fn scheduled_endpoints_send_what_a_full_scan_would() {
    for seed in 0..12 {
        run(seed, 2_000);
    }
}

/// Many connections whose timers all move: the queue stays bounded and the touched list
/// holds each connection once.
#[test]
fn queue_and_touched_list_stay_bounded() {
    let mut p = Pair::new(40, false);
    let mut now = Timestamp::from_micros(1_000_000);
    for i in 0..PEERS * 10 {
        p.client.connect(now, addr(i), None, true);
    }
    for _ in 0..200 {
        now += Duration::from_millis(7);
        let (to_server, to_client) = p.transmit(now);
        let mut got = Vec::new();
        for (from, ds) in &to_server {
            for d in ds {
                p.server.handle_datagram(now, *from, d, &mut got);
            }
        }
        for (from, ds) in &to_client {
            for d in ds {
                p.client.handle_datagram(now, *from, d, &mut got);
            }
        }
        for ep in [&p.client, &p.server] {
            let n = ep.conns.len();
            assert!(ep.timers.heap_len() <= 2 * n + super::timer_queue::COMPACT_SLACK);
            assert!(ep.touched.len() <= n, "{} touched of {n}", ep.touched.len());
            check_timeouts(&p, "a round");
        }
    }
    assert_eq!(p.server.connection_count(), usize::from(PEERS * 10));
    assert!(p
        .server
        .conns
        .values()
        .all(|s| s.conn.is_connected() && !s.conn.is_dead()));
}
