//! One directed link: its settings, its counters, and the decision of what happens to each
//! datagram put on it (dropped and why, or when it arrives, and whether a copy follows).
//!
//! The order of effects mirrors a path with one bottleneck router: oversize datagrams are
//! refused first (MTU), then the datagram waits in the router's byte-bounded drop-tail queue to
//! be serialised at the link rate, then may be lost on the wire, then takes the propagation
//! delay plus jitter. Jitter alone never reorders (arrivals are kept in FIFO order, as on a
//! single path); only datagrams picked for reordering skip the FIFO and take an extra delay.
//! Duplicates are made in the network after the bottleneck, so they cost no bandwidth.

use std::time::Duration;

use super::rng::{chance, micros_upto, LinkRng};
use crate::time::Timestamp;

/// Default MTU: the UDP payload that fits an Ethernet frame over IPv4 (1500 - 20 - 8).
pub const DEFAULT_MTU: usize = 1472;

/// Default bound of a link's bottleneck queue, in bytes (only used with a bandwidth limit).
pub const DEFAULT_QUEUE_BYTES: usize = 64 * 1024;

/// How one directed link behaves. Probabilities are in `[0, 1]` (values outside act as the
/// nearest bound; NaN acts as 0).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is lost on the wire.
    pub loss: f64,
    /// Probability that a datagram starts a burst of losses: it and the next
    /// `burst_len - 1` datagrams are lost on the wire (a fade or a flapping route).
    pub burst_loss: f64,
    /// Datagrams lost in a row by one burst (at least 1).
    pub burst_len: u32,
    /// Probability that a delivered datagram also arrives a second time.
    pub duplicate: f64,
    /// The copy arrives up to this much after the original (uniform).
    pub duplicate_delay_max: Duration,
    /// Probability that a datagram skips the FIFO and takes `reorder_delay` extra.
    pub reorder: f64,
    /// Extra delay of a reordered datagram.
    pub reorder_delay: Duration,
    /// Base one-way propagation delay.
    pub delay: Duration,
    /// Extra per-datagram delay, uniform in `[0, jitter]`.
    pub jitter: Duration,
    /// Link rate in bytes per second; `None` is unlimited, `Some(0)` passes nothing.
    pub bandwidth: Option<u64>,
    /// Bytes not yet serialised onto the link (the one on the wire included) beyond which new
    /// datagrams are dropped (drop-tail). A datagram that finds the link idle is always
    /// accepted.
    pub queue_bytes: usize,
    /// Largest datagram carried; larger ones are dropped and counted.
    pub mtu: usize,
}

impl Default for LinkConfig {
    /// A perfect link: no loss, no delay, unlimited rate, Ethernet MTU.
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            burst_loss: 0.0,
            burst_len: 1,
            duplicate: 0.0,
            duplicate_delay_max: Duration::ZERO,
            reorder: 0.0,
            reorder_delay: Duration::ZERO,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            bandwidth: None,
            queue_bytes: DEFAULT_QUEUE_BYTES,
            mtu: DEFAULT_MTU,
        }
    }
}

/// Why a datagram did not arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Random loss on the wire.
    Lost,
    /// The bottleneck queue was full.
    Queue,
    /// Larger than the link MTU.
    Mtu,
    /// The link was cut (or an end isolated) when it was sent or when it would have arrived.
    LinkDown,
    /// The network-wide in-flight cap was reached.
    Cap,
    /// No node at the destination when it arrived.
    NoNode,
}

/// Counters of one directed link (or a sum of links).
///
/// Every datagram sent, and every duplicate made, ends in exactly one of `delivered`, `lost`,
/// the `dropped_*` counters or `undeliverable`, once it is no longer in flight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams handed to the link by the sender.
    pub sent: u64,
    /// Bytes handed to the link by the sender.
    pub bytes_sent: u64,
    /// Datagrams (copies included) handed to the receiving node.
    pub delivered: u64,
    /// Bytes (copies included) handed to the receiving node.
    pub bytes_delivered: u64,
    /// Lost at random.
    pub lost: u64,
    /// Extra copies scheduled.
    pub duplicated: u64,
    /// Datagrams that skipped the FIFO with extra delay.
    pub reordered: u64,
    /// Dropped by the bottleneck queue.
    pub dropped_queue: u64,
    /// Dropped for exceeding the MTU.
    pub dropped_mtu: u64,
    /// Dropped because the link was cut or an end isolated.
    pub dropped_down: u64,
    /// Dropped by the network-wide in-flight cap.
    pub dropped_cap: u64,
    /// Arrived where no node was.
    pub undeliverable: u64,
}

impl LinkStats {
    /// Counts one datagram dropped for `reason`.
    pub fn count_drop(&mut self, reason: DropReason) {
        let c = match reason {
            DropReason::Lost => &mut self.lost,
            DropReason::Queue => &mut self.dropped_queue,
            DropReason::Mtu => &mut self.dropped_mtu,
            DropReason::LinkDown => &mut self.dropped_down,
            DropReason::Cap => &mut self.dropped_cap,
            DropReason::NoNode => &mut self.undeliverable,
        };
        *c += 1;
    }

    /// All datagrams that did not arrive, whatever the reason.
    pub fn dropped_total(&self) -> u64 {
        self.lost
            + self.dropped_queue
            + self.dropped_mtu
            + self.dropped_down
            + self.dropped_cap
            + self.undeliverable
    }

    /// Adds `other` into `self` (for totals over links).
    pub fn add(&mut self, other: &LinkStats) {
        self.sent += other.sent;
        self.bytes_sent += other.bytes_sent;
        self.delivered += other.delivered;
        self.bytes_delivered += other.bytes_delivered;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.dropped_queue += other.dropped_queue;
        self.dropped_mtu += other.dropped_mtu;
        self.dropped_down += other.dropped_down;
        self.dropped_cap += other.dropped_cap;
        self.undeliverable += other.undeliverable;
    }
}

/// When an accepted datagram arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Arrival {
    pub at: Timestamp,
    pub reordered: bool,
    pub duplicate_at: Option<Timestamp>,
}

/// The mutable state of one directed link.
#[derive(Debug)]
pub(super) struct LinkState {
    rng: LinkRng,
    /// When the bottleneck finishes serialising what it has accepted so far.
    busy_until: Timestamp,
    /// Latest arrival of an in-order datagram: later ones may not arrive before it.
    fifo_tail: Timestamp,
    /// Datagrams still to lose in the current burst.
    burst_left: u32,
    pub stats: LinkStats,
}

impl LinkState {
    pub fn new(rng: LinkRng) -> Self {
        LinkState {
            rng,
            busy_until: Timestamp::ZERO,
            fifo_tail: Timestamp::ZERO,
            burst_left: 0,
            stats: LinkStats::default(),
        }
    }

    /// Decides the fate of a datagram of `len` bytes put on the link at `now`. Updates the
    /// link's queue and ordering state but no counters (the caller counts, since it may still
    /// refuse the copy).
    pub fn admit(
        &mut self,
        cfg: &LinkConfig,
        now: Timestamp,
        len: usize,
    ) -> Result<Arrival, DropReason> {
        let d = self.rng.draws();
        if len > cfg.mtu {
            return Err(DropReason::Mtu);
        }
        let departure = match cfg.bandwidth {
            None => now,
            Some(0) => return Err(DropReason::Queue),
            Some(rate) => {
                let start = self.busy_until.max(now);
                let waiting_us = start.as_micros().saturating_sub(now.as_micros());
                let backlog = u128::from(waiting_us) * u128::from(rate) / 1_000_000;
                if waiting_us > 0 && backlog + len as u128 > cfg.queue_bytes as u128 {
                    return Err(DropReason::Queue);
                }
                let tx_us = (len as u128 * 1_000_000).div_ceil(u128::from(rate));
                let done = start + Duration::from_micros(u64::try_from(tx_us).unwrap_or(u64::MAX));
                self.busy_until = done;
                done
            }
        };
        if self.burst_left > 0 {
            self.burst_left -= 1;
            return Err(DropReason::Lost);
        }
        if chance(d.loss, cfg.loss) {
            return Err(DropReason::Lost);
        }
        // The same draw decides a burst's start (the slice of [0, 1) just above `loss`), so a
        // link without bursts draws exactly as before.
        if cfg.burst_loss > 0.0 && chance(d.loss, cfg.loss.max(0.0) + cfg.burst_loss) {
            self.burst_left = cfg.burst_len.saturating_sub(1);
            return Err(DropReason::Lost);
        }
        let base = departure + cfg.delay + Duration::from_micros(micros_upto(d.jitter, cfg.jitter));
        let reordered = chance(d.reorder, cfg.reorder);
        let at = if reordered {
            base + cfg.reorder_delay
        } else {
            let at = base.max(self.fifo_tail);
            self.fifo_tail = at;
            at
        };
        let duplicate_at = chance(d.duplicate, cfg.duplicate).then(|| {
            at + Duration::from_micros(micros_upto(d.duplicate_delay, cfg.duplicate_delay_max))
        });
        Ok(Arrival {
            at,
            reordered,
            duplicate_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn state(seed: u64) -> LinkState {
        let a = SocketAddr::from(([10, 0, 0, 1], 1000));
        let b = SocketAddr::from(([10, 0, 0, 2], 1000));
        LinkState::new(LinkRng::for_link(seed, a, b))
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn perfect_link_delivers_now() {
        let mut s = state(1);
        let r = s.admit(&LinkConfig::default(), Timestamp(5), 100);
        assert_eq!(
            r,
            Ok(Arrival {
                at: Timestamp(5),
                reordered: false,
                duplicate_at: None
            })
        );
    }

    #[test]
    fn mtu_is_inclusive() {
        let mut s = state(1);
        let cfg = LinkConfig {
            mtu: 1200,
            ..LinkConfig::default()
        };
        assert!(s.admit(&cfg, Timestamp(0), 1200).is_ok());
        assert_eq!(s.admit(&cfg, Timestamp(0), 1201), Err(DropReason::Mtu));
    }

    #[test]
    fn bandwidth_serialises_and_queue_drops_tail() {
        let mut s = state(1);
        // 1000 B/s: a 100-byte datagram takes 100 ms on the link; 300 bytes may be pending.
        let cfg = LinkConfig {
            bandwidth: Some(1000),
            queue_bytes: 300,
            ..LinkConfig::default()
        };
        let t0 = Timestamp(0);
        let arrivals: Vec<_> = (0..5).map(|_| s.admit(&cfg, t0, 100)).collect();
        assert_eq!(arrivals[0].map(|a| a.at), Ok(t0 + ms(100)));
        assert_eq!(arrivals[1].map(|a| a.at), Ok(t0 + ms(200)));
        assert_eq!(arrivals[2].map(|a| a.at), Ok(t0 + ms(300)));
        // 300 bytes are now pending: one more would exceed the bound.
        assert_eq!(arrivals[3], Err(DropReason::Queue));
        assert_eq!(arrivals[4], Err(DropReason::Queue));
        // Once the link drains, datagrams pass again.
        assert_eq!(
            s.admit(&cfg, t0 + ms(300), 100).map(|a| a.at),
            Ok(t0 + ms(400))
        );
    }

    #[test]
    fn zero_bandwidth_passes_nothing() {
        let mut s = state(1);
        let cfg = LinkConfig {
            bandwidth: Some(0),
            ..LinkConfig::default()
        };
        assert_eq!(s.admit(&cfg, Timestamp(0), 1), Err(DropReason::Queue));
    }

    #[test]
    fn jitter_keeps_fifo_and_bounds() {
        let mut s = state(3);
        let cfg = LinkConfig {
            delay: ms(20),
            jitter: ms(10),
            ..LinkConfig::default()
        };
        let mut last = Timestamp::ZERO;
        let mut spread = Vec::new();
        for i in 0..2000u64 {
            let now = Timestamp(i * 1000);
            let a = s.admit(&cfg, now, 10).map(|a| a.at);
            let at = a.unwrap_or(Timestamp::ZERO);
            assert!(at >= now + ms(20) && at <= now + ms(30), "{i}: {at:?}");
            assert!(at >= last, "jitter reordered datagram {i}");
            last = at;
            spread.push(at.as_micros() - now.as_micros());
        }
        let min = spread.iter().min().copied().unwrap_or(0);
        let max = spread.iter().max().copied().unwrap_or(0);
        assert!(max - min > 8_000, "jitter barely used: {min}..{max}");
    }

    #[test]
    fn loss_one_and_zero_are_absolute() {
        let mut s = state(4);
        let all = LinkConfig {
            loss: 1.0,
            ..LinkConfig::default()
        };
        let none = LinkConfig::default();
        for _ in 0..500 {
            assert_eq!(s.admit(&all, Timestamp(0), 1), Err(DropReason::Lost));
            assert!(s.admit(&none, Timestamp(0), 1).is_ok());
        }
    }

    #[test]
    fn burst_loss_drops_runs() {
        let mut s = state(6);
        let cfg = LinkConfig {
            burst_loss: 0.002,
            burst_len: 10,
            ..LinkConfig::default()
        };
        let fates: Vec<bool> = (0..100_000)
            .map(|_| s.admit(&cfg, Timestamp(0), 1).is_ok())
            .collect();
        let lost = fates.iter().filter(|ok| !**ok).count();
        // About 2 % lost (a burst may start inside another, which then only extends it).
        assert!((1_500..2_500).contains(&lost), "{lost} lost");
        // Every run of losses is a whole number of bursts long.
        let mut run = 0;
        for ok in fates.iter().chain([true].iter()) {
            if *ok {
                assert!(run % 10 == 0, "a run of {run} losses");
                run = 0;
            } else {
                run += 1;
            }
        }
    }

    #[test]
    fn reorder_and_duplicate_delays_apply() {
        let mut s = state(5);
        let cfg = LinkConfig {
            delay: ms(10),
            reorder: 1.0,
            reorder_delay: ms(7),
            duplicate: 1.0,
            duplicate_delay_max: ms(3),
            ..LinkConfig::default()
        };
        for _ in 0..200 {
            let a = s.admit(&cfg, Timestamp(0), 1);
            let Ok(a) = a else {
                panic!("dropped on a lossless link")
            };
            assert!(a.reordered);
            assert_eq!(a.at, Timestamp(0) + ms(17));
            let dup = a.duplicate_at.unwrap_or(Timestamp::ZERO);
            assert!(dup >= a.at && dup <= a.at + ms(3));
        }
    }

    #[test]
    fn stats_add_and_drop_total() {
        let mut s = LinkStats::default();
        for r in [
            DropReason::Lost,
            DropReason::Queue,
            DropReason::Mtu,
            DropReason::LinkDown,
            DropReason::Cap,
            DropReason::NoNode,
        ] {
            s.count_drop(r);
        }
        assert_eq!(s.dropped_total(), 6);
        let mut t = s;
        t.add(&s);
        assert_eq!(t.dropped_total(), 12);
        assert_eq!(t.undeliverable, 2);
    }
}
