//! The fake network: Steam's `fakePacket*` knobs applied to real datagrams.
//!
//! Steam lets an application degrade its own traffic on purpose, to test a game under loss,
//! lag, reordering and duplication without a special network. It does this in its socket
//! layer, on real datagrams, once on the way out (the `*Send` knobs) and once on the way in
//! (the `*Recv` knobs), and so does this module. Per datagram, in the reference's order:
//!
//! 1. **loss**: with probability `fakePacketLoss*` percent the datagram is dropped;
//! 2. **lag**: it is held for `fakePacketLag*` ms;
//! 3. **reorder**: with probability `fakePacketReorder*` percent it is held
//!    `fakePacketReorderTime` ms longer, so datagrams behind it overtake it;
//! 4. **duplication**: with probability `fakePacketDup*` percent a copy follows the original
//!    after 1 µs to `fakePacketDupTimeMax` ms more.
//!
//! A datagram that ends up with no delay goes through at once. The struct is sans-clock:
//! datagrams and `now` in, datagrams that are due out, and [`FakeLink::next_release`] for the
//! driver's sleep. Knobs are passed in with every datagram ([`FakeParams`]), so a `setConfig`
//! takes effect on the next datagram; datagrams already held keep their release time.
//!
//! When every knob of a direction is 0 the datagram is neither copied nor given a random draw:
//! [`FakeLink::process`] answers [`Fate::Now`] and the caller uses its own buffer.
//!
//! The queue is bounded: at most [`MAX_HELD_DATAGRAMS`] datagrams and [`MAX_HELD_BYTES`] bytes
//! per direction. A datagram that does not fit is dropped, as a router with a full queue
//! would; the transport recovers it like any other loss. (At the largest lag, 5 s, the caps
//! allow about 3 MB/s of 1300-byte datagrams to be held, far beyond a test's needs.)

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use netcore::config::Config;
use netcore::time::Timestamp;

/// Most datagrams held per direction; beyond it datagrams are dropped.
pub const MAX_HELD_DATAGRAMS: usize = 16_384;
/// Most payload bytes held per direction; beyond it datagrams are dropped.
pub const MAX_HELD_BYTES: usize = 16 * 1024 * 1024;

/// The knobs of one direction, read from the [`Config`] for each batch of datagrams.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeParams {
    /// Percent of datagrams dropped (0..=100).
    pub loss_pct: u32,
    /// Delay added to every datagram.
    pub lag: Duration,
    /// Percent of datagrams held back by `reorder_time` (0..=100).
    pub reorder_pct: u32,
    /// Extra delay of a reordered datagram.
    pub reorder_time: Duration,
    /// Percent of datagrams duplicated (0..=100).
    pub dup_pct: u32,
    /// Largest extra delay of a duplicate behind its original.
    pub dup_time_max: Duration,
}

fn pct(v: i64) -> u32 {
    u32::try_from(v.clamp(0, 100)).unwrap_or(0)
}

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

impl FakeParams {
    /// The `*Send` knobs of `c` (with the shared reorder time and duplicate delay).
    pub fn send(c: &Config) -> Self {
        FakeParams {
            loss_pct: pct(c.fake_packet_loss_send),
            lag: ms(c.fake_packet_lag_send),
            reorder_pct: pct(c.fake_packet_reorder_send),
            reorder_time: ms(c.fake_packet_reorder_time),
            dup_pct: pct(c.fake_packet_dup_send),
            dup_time_max: ms(c.fake_packet_dup_time_max),
        }
    }

    /// The `*Recv` knobs of `c` (with the shared reorder time and duplicate delay).
    pub fn recv(c: &Config) -> Self {
        FakeParams {
            loss_pct: pct(c.fake_packet_loss_recv),
            lag: ms(c.fake_packet_lag_recv),
            reorder_pct: pct(c.fake_packet_reorder_recv),
            reorder_time: ms(c.fake_packet_reorder_time),
            dup_pct: pct(c.fake_packet_dup_recv),
            dup_time_max: ms(c.fake_packet_dup_time_max),
        }
    }

    /// Whether no knob of this direction does anything: datagrams pass untouched.
    pub fn is_off(&self) -> bool {
        self.loss_pct == 0 && self.lag.is_zero() && self.reorder_pct == 0 && self.dup_pct == 0
    }
}

/// What became of a datagram handed to [`FakeLink::process`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Use it now, from the caller's own buffer (a duplicate may still be held).
    Now,
    /// A copy is held; it comes out of [`FakeLink::pop_due`] later.
    Held,
    /// Dropped: fake loss, or the queue was full.
    Dropped,
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FakeStats {
    /// Dropped by `fakePacketLoss*`.
    pub lost: u64,
    /// Dropped because the queue was full.
    pub overflowed: u64,
    /// Held for lag or reordering.
    pub delayed: u64,
    /// Duplicates made.
    pub duplicated: u64,
}

/// A held datagram; the heap pops the earliest release first, ties in arrival order.
#[derive(Debug)]
struct Held<A> {
    due: Timestamp,
    seq: u64,
    addr: A,
    data: Vec<u8>,
}

impl<A> PartialEq for Held<A> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<A> Eq for Held<A> {}

impl<A> PartialOrd for Held<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<A> Ord for Held<A> {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: `BinaryHeap` is a max-heap and we want the earliest (due, seq) on top.
        (other.due, other.seq).cmp(&(self.due, self.seq))
    }
}

/// One direction of the fake network (outgoing or incoming datagrams), for datagrams to or
/// from an `A` (an address, or the driver's socket index and address).
#[derive(Debug)]
pub struct FakeLink<A = SocketAddr> {
    rng: ChaCha8Rng,
    held: BinaryHeap<Held<A>>,
    held_bytes: usize,
    seq: u64,
    stats: FakeStats,
}

impl<A: Copy> FakeLink<A> {
    /// An empty link whose random decisions follow `seed`.
    pub fn new(seed: u64) -> Self {
        FakeLink {
            rng: ChaCha8Rng::seed_from_u64(seed),
            held: BinaryHeap::new(),
            held_bytes: 0,
            seq: 0,
            stats: FakeStats::default(),
        }
    }

    /// Decides the fate of one datagram to (or from) `addr` at `now` under `p`. On
    /// [`Fate::Now`] the caller sends (or handles) `data` itself; otherwise nothing is left
    /// to do with it now.
    pub fn process(&mut self, p: &FakeParams, now: Timestamp, addr: A, data: &[u8]) -> Fate {
        if p.is_off() {
            return Fate::Now;
        }
        if self.chance(p.loss_pct) {
            self.stats.lost += 1;
            return Fate::Dropped;
        }
        let mut delay = p.lag;
        if self.chance(p.reorder_pct) {
            delay += p.reorder_time;
        }
        let due = now + delay;
        if self.chance(p.dup_pct) {
            let extra = Duration::from_micros(1 + self.below(duration_micros(p.dup_time_max)));
            if self.hold(due + extra, addr, data) {
                self.stats.duplicated += 1;
            }
        }
        if delay.is_zero() {
            return Fate::Now;
        }
        if self.hold(due, addr, data) {
            self.stats.delayed += 1;
            Fate::Held
        } else {
            Fate::Dropped
        }
    }

    /// When the next held datagram is due, if any is held.
    pub fn next_release(&self) -> Option<Timestamp> {
        self.held.peek().map(|h| h.due)
    }

    /// Takes the next datagram due at or before `now`, earliest first.
    pub fn pop_due(&mut self, now: Timestamp) -> Option<(A, Vec<u8>)> {
        if self.held.peek()?.due > now {
            return None;
        }
        self.pop()
    }

    /// Takes every held datagram whatever its release time, earliest first (at close).
    pub fn drain_all(&mut self) -> impl Iterator<Item = (A, Vec<u8>)> + '_ {
        std::iter::from_fn(move || self.pop())
    }

    /// Number of datagrams held.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Counters so far.
    pub fn stats(&self) -> FakeStats {
        self.stats
    }

    fn pop(&mut self) -> Option<(A, Vec<u8>)> {
        let h = self.held.pop()?;
        self.held_bytes -= h.data.len();
        Some((h.addr, h.data))
    }

    /// Queues a copy of `data` for `due`; false (and counted) if the queue is full.
    fn hold(&mut self, due: Timestamp, addr: A, data: &[u8]) -> bool {
        if self.held.len() >= MAX_HELD_DATAGRAMS
            || self.held_bytes.saturating_add(data.len()) > MAX_HELD_BYTES
        {
            self.stats.overflowed += 1;
            return false;
        }
        self.held_bytes += data.len();
        self.seq += 1;
        self.held.push(Held {
            due,
            seq: self.seq,
            addr,
            data: data.to_vec(),
        });
        true
    }

    /// True with probability `pct` percent; 0 never draws, 100 always passes without a draw.
    fn chance(&mut self, pct: u32) -> bool {
        match pct {
            0 => false,
            100.. => true,
            // Uniform in [0, 100) by multiply-shift: no division, skew below 2^-25.
            _ => (u64::from(self.rng.next_u32()) * 100) >> 32 < u64::from(pct),
        }
    }

    /// Uniform in `[0, n]`.
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let span = u128::from(n) + 1;
        u64::try_from((u128::from(self.rng.next_u64()) * span) >> 64).unwrap_or(n)
    }
}

fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Both directions of one endpoint's fake network.
#[derive(Debug)]
pub struct FakeNetwork<A = SocketAddr> {
    /// Outgoing datagrams, before the kernel.
    pub send: FakeLink<A>,
    /// Incoming datagrams, before the protocol.
    pub recv: FakeLink<A>,
}

impl<A: Copy> FakeNetwork<A> {
    /// Seeded from `seed` (deterministic, for tests).
    pub fn with_seed(seed: u64) -> Self {
        FakeNetwork {
            send: FakeLink::new(seed),
            recv: FakeLink::new(seed ^ 0x9e37_79b9_7f4a_7c15),
        }
    }

    /// Seeded from the process's hash randomness, so two endpoints differ.
    pub fn new() -> Self {
        FakeNetwork::with_seed(std::collections::hash_map::RandomState::new().hash_one(0u64))
    }

    /// The earlier of both directions' next release.
    pub fn next_release(&self) -> Option<Timestamp> {
        match (self.send.next_release(), self.recv.next_release()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl<A: Copy> Default for FakeNetwork<A> {
    fn default() -> Self {
        FakeNetwork::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:4000".parse().unwrap()
    }

    fn ms_(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_micros(ms * 1000)
    }

    /// Runs `n` one-byte-index datagrams through `link` at 1 ms intervals and collects what
    /// comes out (immediately or when due), with the time it came out.
    fn run(link: &mut FakeLink, p: &FakeParams, n: u32) -> Vec<(u32, Timestamp)> {
        let mut out = Vec::new();
        let mut now = t(0);
        for i in 0..n {
            while let Some((_, d)) = link.pop_due(now) {
                out.push((u32::from_le_bytes(d.try_into().unwrap()), now));
            }
            if link.process(p, now, addr(), &i.to_le_bytes()) == Fate::Now {
                out.push((i, now));
            }
            now += ms_(1);
        }
        while let Some(due) = link.next_release() {
            now = now.max(due);
            while let Some((_, d)) = link.pop_due(now) {
                out.push((u32::from_le_bytes(d.try_into().unwrap()), now));
            }
        }
        out
    }

    #[test]
    fn off_passes_everything_at_once_without_holding() {
        let mut link = FakeLink::new(1);
        let p = FakeParams::send(&Config::default());
        assert!(p.is_off());
        assert!(FakeParams::recv(&Config::default()).is_off());
        let out = run(&mut link, &p, 1000);
        assert_eq!(out.len(), 1000);
        assert!(out
            .iter()
            .enumerate()
            .all(|(i, &(v, at))| v as usize == i && at == t(i as u64)));
        assert!(link.is_empty());
        assert_eq!(link.stats(), FakeStats::default());
        // The reorder time and duplicate delay alone do nothing.
        let p = FakeParams {
            reorder_time: ms_(50),
            dup_time_max: ms_(50),
            ..FakeParams::default()
        };
        assert!(p.is_off());
    }

    #[test]
    fn params_come_from_the_config_per_direction() {
        let mut c = Config::default();
        c.apply(&[
            ("fakePacketLossSend".into(), 20.0),
            ("fakePacketLagRecv".into(), 50.0),
            ("fakePacketReorderRecv".into(), 5.0),
            ("fakePacketReorderTime".into(), 30.0),
            ("fakePacketDupSend".into(), 7.0),
            ("fakePacketDupTimeMax".into(), 12.0),
        ])
        .unwrap();
        let s = FakeParams::send(&c);
        assert_eq!(
            s,
            FakeParams {
                loss_pct: 20,
                lag: Duration::ZERO,
                reorder_pct: 0,
                reorder_time: ms_(30),
                dup_pct: 7,
                dup_time_max: ms_(12),
            }
        );
        let r = FakeParams::recv(&c);
        assert_eq!(
            (r.loss_pct, r.lag, r.reorder_pct, r.dup_pct),
            (0, ms_(50), 5, 0)
        );
    }

    #[test]
    fn loss_drops_about_the_given_share() {
        let mut link = FakeLink::new(7);
        let p = FakeParams {
            loss_pct: 20,
            ..FakeParams::default()
        };
        let out = run(&mut link, &p, 20_000);
        let lost = 20_000 - out.len();
        assert!((3_600..4_400).contains(&lost), "lost {lost}");
        assert_eq!(link.stats().lost, lost as u64);
        // What passes is in order and not delayed.
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(out.iter().all(|&(v, at)| at == t(u64::from(v))));

        let all = FakeParams {
            loss_pct: 100,
            ..FakeParams::default()
        };
        assert!(run(&mut FakeLink::new(7), &all, 1000).is_empty());
    }

    #[test]
    fn lag_delays_every_datagram_in_order() {
        let mut link = FakeLink::new(3);
        let p = FakeParams {
            lag: ms_(50),
            ..FakeParams::default()
        };
        assert_eq!(link.process(&p, t(10), addr(), b"a"), Fate::Held);
        assert_eq!(link.next_release(), Some(t(60)));
        assert_eq!(link.pop_due(t(59)), None);
        assert_eq!(link.pop_due(t(60)), Some((addr(), b"a".to_vec())));
        assert_eq!(link.next_release(), None);

        let out = run(&mut link, &p, 500);
        assert_eq!(out.len(), 500);
        for (i, &(v, at)) in out.iter().enumerate() {
            assert_eq!(v as usize, i);
            assert_eq!(at, t(i as u64 + 50));
        }
    }

    #[test]
    fn reorder_lets_later_datagrams_overtake() {
        let mut link = FakeLink::new(11);
        let p = FakeParams {
            reorder_pct: 10,
            reorder_time: ms_(15),
            ..FakeParams::default()
        };
        let out = run(&mut link, &p, 2000);
        assert_eq!(out.len(), 2000, "reordering loses nothing");
        let mut seen: Vec<u32> = out.iter().map(|o| o.0).collect();
        let inversions = seen.windows(2).filter(|w| w[0] > w[1]).count();
        assert!(inversions > 100, "{inversions} inversions");
        let delayed = out.iter().filter(|&&(v, at)| at > t(u64::from(v))).count();
        assert!((140..260).contains(&delayed), "{delayed} delayed");
        assert!(out
            .iter()
            .all(|&(v, at)| at == t(u64::from(v)) || at == t(u64::from(v) + 15)));
        seen.sort_unstable();
        assert!(seen.iter().enumerate().all(|(i, &v)| v as usize == i));
    }

    #[test]
    fn duplicates_follow_their_original_within_the_max_delay() {
        let mut link = FakeLink::new(5);
        let p = FakeParams {
            lag: ms_(20),
            dup_pct: 100,
            dup_time_max: ms_(10),
            ..FakeParams::default()
        };
        let out = run(&mut link, &p, 300);
        assert_eq!(out.len(), 600);
        assert_eq!(link.stats().duplicated, 300);
        for i in 0..300u32 {
            let times: Vec<Timestamp> = out.iter().filter(|o| o.0 == i).map(|o| o.1).collect();
            assert_eq!(times.len(), 2, "datagram {i}");
            let sent = t(u64::from(i));
            assert_eq!(times[0], sent + ms_(20));
            // Released when the driver looks (every 1 ms here), at most 10 ms + 1 µs late.
            assert!(times[1] > times[0] && times[1] <= times[0] + ms_(11));
        }

        // Without lag the original goes at once and only the copy is held.
        let mut link = FakeLink::new(5);
        let p = FakeParams {
            dup_pct: 100,
            dup_time_max: Duration::ZERO,
            ..FakeParams::default()
        };
        assert_eq!(link.process(&p, t(1), addr(), b"x"), Fate::Now);
        assert_eq!(link.len(), 1);
        assert_eq!(link.next_release(), Some(t(1) + Duration::from_micros(1)));
    }

    #[test]
    fn the_queue_is_bounded_by_count_and_bytes() {
        let mut link = FakeLink::new(9);
        let p = FakeParams {
            lag: ms_(100),
            ..FakeParams::default()
        };
        for _ in 0..MAX_HELD_DATAGRAMS {
            assert_eq!(link.process(&p, t(0), addr(), b"x"), Fate::Held);
        }
        assert_eq!(link.process(&p, t(0), addr(), b"x"), Fate::Dropped);
        assert_eq!(link.stats().overflowed, 1);
        assert_eq!(link.len(), MAX_HELD_DATAGRAMS);
        assert_eq!(link.drain_all().count(), MAX_HELD_DATAGRAMS);
        assert!(link.is_empty());

        let big = vec![0u8; 65_536];
        let fit = MAX_HELD_BYTES / big.len();
        for _ in 0..fit {
            assert_eq!(link.process(&p, t(0), addr(), &big), Fate::Held);
        }
        assert_eq!(link.process(&p, t(0), addr(), &big), Fate::Dropped);
        assert_eq!(link.stats().overflowed, 2);
        assert_eq!(link.drain_all().count(), fit);
        // Freed space is usable again.
        assert_eq!(link.process(&p, t(0), addr(), &big), Fate::Held);
    }

    #[test]
    fn knobs_change_live_and_held_datagrams_keep_their_time() {
        let mut link = FakeLink::new(2);
        let lag = FakeParams {
            lag: ms_(40),
            ..FakeParams::default()
        };
        assert_eq!(link.process(&lag, t(0), addr(), b"held"), Fate::Held);
        let off = FakeParams::default();
        assert_eq!(link.process(&off, t(1), addr(), b"now"), Fate::Now);
        assert_eq!(link.pop_due(t(39)), None);
        assert_eq!(link.pop_due(t(40)), Some((addr(), b"held".to_vec())));
    }

    #[test]
    fn the_same_seed_gives_the_same_fates() {
        let p = FakeParams {
            loss_pct: 30,
            lag: ms_(5),
            reorder_pct: 20,
            reorder_time: ms_(15),
            dup_pct: 10,
            dup_time_max: ms_(10),
        };
        let a = run(&mut FakeLink::new(42), &p, 1000);
        let b = run(&mut FakeLink::new(42), &p, 1000);
        let c = run(&mut FakeLink::new(43), &p, 1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let net: FakeNetwork = FakeNetwork::with_seed(42);
        assert_eq!(net.next_release(), None);
    }

    #[test]
    fn the_network_releases_at_the_earlier_direction() {
        let mut net = FakeNetwork::with_seed(1);
        let lag = |n| FakeParams {
            lag: ms_(n),
            ..FakeParams::default()
        };
        net.send.process(&lag(30), t(0), addr(), b"s");
        assert_eq!(net.next_release(), Some(t(30)));
        net.recv.process(&lag(10), t(0), addr(), b"r");
        assert_eq!(net.next_release(), Some(t(10)));
    }
}
