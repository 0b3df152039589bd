//! Limits on what an endpoint answers to sources it has no connection with.
//!
//! A `ChallengeRequest` (and a data packet for an unknown connection id) is answered without
//! keeping state, but each answer costs a hash, a send and outbound bytes, and its source
//! address is unproven. So answers to unknown peers draw from two token buckets: one per
//! source IP (IPv6: per /64, which one host usually controls whole) and one for the whole
//! endpoint. With a bucket empty the datagram is dropped unanswered and counted; the
//! connecting side resends, so a legitimate client only waits.
//!
//! State is a table of [`SOURCE_BUCKETS`] buckets, chosen by a keyed hash of the source IP,
//! allocated in chunks of [`CHUNK`] buckets as sources land in them (an endpoint that only
//! dials out never needs one, one that answers a few sources holds a few chunks, and a
//! process may hold thousands of endpoints; a copy of one, as the fuzz harness makes per
//! input, copies only the chunks in use): a flood from any number of (spoofed) sources cannot
//! grow it past the whole table. Sources
//! whose hashes collide share a bucket; the key is secret, so an attacker cannot aim at a
//! chosen victim's bucket except by spoofing that victim's own address.

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

use siphasher::sip::SipHasher13;

use crate::time::Timestamp;

/// Buckets in the per-source table (a power of two).
pub const SOURCE_BUCKETS: usize = 4096;
/// Buckets allocated together (a power of two dividing [`SOURCE_BUCKETS`]).
pub const CHUNK: usize = 64;
/// Chunks in the table.
const CHUNKS: usize = SOURCE_BUCKETS / CHUNK;

/// The per-source table: each chunk allocated on first use.
type Table = [Option<Box<[State; CHUNK]>>; CHUNKS];

/// One token bucket's shape: how many answers at once, and how many per second after that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Answers allowed at once (bucket size).
    pub burst: u32,
    /// Answers per second refilled.
    pub per_second: u32,
}

/// The limits on answers to unknown peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// Per source IP (IPv6: per /64).
    pub per_source: Bucket,
    /// For the whole endpoint.
    pub global: Bucket,
}

impl Default for RateLimits {
    /// Roomy enough for thousands of clients behind one address (or the many-sessions
    /// benchmark, which opens 10,000 sessions from 127.0.0.1 within 50 ms: the first 8,192
    /// are answered at once, the rest on their first resend), while one source, spoofed or
    /// not, gets at most 2,048 answers a second after its burst.
    fn default() -> Self {
        RateLimits {
            per_source: Bucket {
                burst: 8192,
                per_second: 2048,
            },
            global: Bucket {
                burst: 16_384,
                per_second: 8192,
            },
        }
    }
}

/// The default budget for the expensive part of handshakes: checking a connect request's
/// certificate and signed crypt info, two X25519 operations and our signature (measured at
/// about 0.2 ms of CPU each on the 2-core test machine, where everything else a datagram
/// costs is a few microseconds). A valid cookie proves only that the source can receive at its
/// address, and one cookie serves any number of requests for a few seconds, so without a bound
/// a handful of real hosts could keep a core busy. 512 a second overall is about a tenth of a
/// core; small bursts keep one wake-up of the driver short (a live session's packets wait
/// behind at most a burst's worth). A refused request is not answered: the peer retries (ours
/// every 250 ms), so a legitimate crowd connecting at once gets through at this rate.
pub const HANDSHAKE_LIMITS: RateLimits = RateLimits {
    per_source: Bucket {
        burst: 64,
        per_second: 256,
    },
    global: Bucket {
        burst: 128,
        per_second: 512,
    },
};

/// Tokens are kept in millionths so refilling by elapsed microseconds stays exact.
const SCALE: u64 = 1_000_000;

#[derive(Clone, Copy, Debug, Default)]
struct State {
    /// Tokens times [`SCALE`]; `None` means the bucket is full (never used, or untouched long
    /// enough to refill).
    micro_tokens: Option<u64>,
    last: Timestamp,
}

impl State {
    /// Refills for the time since the last call, then takes one token if there is one.
    fn take(&mut self, shape: Bucket, now: Timestamp) -> bool {
        let cap = u64::from(shape.burst).saturating_mul(SCALE);
        let elapsed = now.as_micros().saturating_sub(self.last.as_micros());
        let refill = elapsed.saturating_mul(u64::from(shape.per_second));
        let tokens = match self.micro_tokens {
            None => cap,
            Some(t) => t.saturating_add(refill).min(cap),
        };
        self.last = self.last.max(now);
        if tokens >= SCALE {
            self.micro_tokens = Some(tokens - SCALE);
            true
        } else {
            self.micro_tokens = Some(tokens);
            false
        }
    }
}

/// Why an answer was withheld.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Answer it.
    Allow,
    /// The source's bucket is empty.
    SourceLimited,
    /// The endpoint-wide bucket is empty.
    GlobalLimited,
}

/// The per-source table and the global bucket.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct Limiter {
    limits: RateLimits,
    k0: u64,
    k1: u64,
    /// Allocated by the first check, its chunks as sources hash into them.
    sources: Option<Box<Table>>,
    global: State,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the hash key nor 4096 buckets are worth printing.
        f.debug_struct("Limiter")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter whose bucket choice is keyed by 16 secret bytes.
    pub fn new(limits: RateLimits, secret: [u8; 16]) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&secret[..8]);
        k1.copy_from_slice(&secret[8..]);
        Limiter {
            limits,
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
            sources: None,
            global: State::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> RateLimits {
        self.limits
    }

    /// Changes the limits; buckets keep their current fill.
    pub fn set_limits(&mut self, limits: RateLimits) {
        self.limits = limits;
    }

    fn slot(&self, ip: IpAddr) -> usize {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                h.write_u8(4);
                h.write(&a.octets());
            }
            IpAddr::V6(a) => {
                h.write_u8(6);
                h.write(&a.octets()[..8]);
            }
        }
        (h.finish() as usize) & (SOURCE_BUCKETS - 1)
    }

    /// Whether an answer to `from` may go out now; takes a token from both buckets if so.
    pub fn check(&mut self, from: SocketAddr, now: Timestamp) -> Verdict {
        let slot = self.slot(from.ip());
        // The source's bucket first: one noisy source must not drain the global budget.
        let sources = self
            .sources
            .get_or_insert_with(|| Box::new(std::array::from_fn(|_| None)));
        let Some(chunk) = sources.get_mut(slot / CHUNK) else {
            return Verdict::SourceLimited;
        };
        let chunk = chunk.get_or_insert_with(|| Box::new([State::default(); CHUNK]));
        let Some(bucket) = chunk.get_mut(slot % CHUNK) else {
            return Verdict::SourceLimited;
        };
        if !bucket.take(self.limits.per_source, now) {
            return Verdict::SourceLimited;
        }
        if !self.global.take(self.limits.global, now) {
            return Verdict::GlobalLimited;
        }
        Verdict::Allow
    }

    /// Lets go of the per-source table (every bucket full again): for the fuzz harness, whose
    /// snapshot of an endpoint is then cheap to copy.
    #[cfg(any(test, fuzzing))]
    pub fn forget_sources(&mut self) {
        self.sources = None;
    }

    /// Bytes of state held: at most the whole table, whatever the number of sources.
    pub fn state_bytes(&self) -> usize {
        let table = self.sources.as_deref().map_or(0, |t| {
            std::mem::size_of::<Table>()
                + t.iter().flatten().count() * std::mem::size_of::<[State; CHUNK]>()
        });
        table + std::mem::size_of::<Self>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limiter(per_source: (u32, u32), global: (u32, u32)) -> Limiter {
        Limiter::new(
            RateLimits {
                per_source: Bucket {
                    burst: per_source.0,
                    per_second: per_source.1,
                },
                global: Bucket {
                    burst: global.0,
                    per_second: global.1,
                },
            },
            [7; 16],
        )
    }

    fn v4(a: u8, b: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, a, b], port))
    }

    #[test]
    fn one_source_gets_its_burst_then_its_rate() {
        let mut l = limiter((10, 100), (1_000_000, 1_000_000));
        let t = Timestamp::from_micros(5_000_000);
        let allowed = (0..50u16)
            .filter(|&p| l.check(v4(0, 1, p), t) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 10, "burst, whatever the source port");
        assert_eq!(l.check(v4(0, 1, 1), t), Verdict::SourceLimited);
        // 100/s: one token per 10 ms.
        let t2 = t + Duration::from_millis(10);
        assert_eq!(l.check(v4(0, 1, 1), t2), Verdict::Allow);
        assert_eq!(l.check(v4(0, 1, 1), t2), Verdict::SourceLimited);
        // One second refills 100 tokens, capped at the burst of 10.
        let t3 = t2 + Duration::from_secs(1);
        let allowed = (0..50)
            .filter(|_| l.check(v4(0, 1, 1), t3) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 10);
        // Over a simulated 10 s at 1,000 requests/s, about 100/s are answered.
        let mut answered = 0;
        for i in 0..10_000u64 {
            let now = t3 + Duration::from_millis(i);
            if l.check(v4(0, 1, 9), now) == Verdict::Allow {
                answered += 1;
            }
        }
        assert!((990..=1010).contains(&answered), "{answered} answered");
    }

    #[test]
    fn sources_do_not_share_a_bucket_unless_hashes_collide() {
        let mut l = limiter((2, 1), (1_000_000, 1_000_000));
        let t = Timestamp::from_micros(1);
        for _ in 0..5 {
            l.check(v4(0, 1, 1), t);
        }
        assert_eq!(l.check(v4(0, 1, 1), t), Verdict::SourceLimited);
        // Other addresses are served, except the few that land in the same bucket.
        let served = (0..=255u8)
            .filter(|&b| b != 1 && l.check(v4(1, b, 1), t) == Verdict::Allow)
            .count();
        assert!(served >= 250, "{served} of 255 other sources served");
    }

    #[test]
    fn ipv6_is_limited_per_slash_64_and_mapped_v4_as_v4() {
        let mut l = limiter((3, 1), (1_000_000, 1_000_000));
        let t = Timestamp::from_micros(1);
        let in_64 = |i: u16| -> SocketAddr {
            SocketAddr::new(
                IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, i, i, i, i)),
                9,
            )
        };
        let allowed = (0..20)
            .filter(|&i| l.check(in_64(i), t) == Verdict::Allow)
            .count();
        assert_eq!(allowed, 3, "every address of a /64 shares one bucket");
        let mapped: SocketAddr = "[::ffff:10.0.0.7]:5".parse().unwrap();
        for _ in 0..3 {
            assert_eq!(l.check(mapped, t), Verdict::Allow);
        }
        assert_eq!(l.check(v4(0, 7, 6), t), Verdict::SourceLimited);
    }

    #[test]
    fn the_global_cap_holds_against_many_sources() {
        let mut l = limiter((4, 4), (100, 50));
        let t = Timestamp::from_micros(1_000_000);
        let mut allowed = 0;
        let mut global = 0;
        for i in 0..60_000u32 {
            let from = SocketAddr::from((i.to_be_bytes(), 1));
            match l.check(from, t + Duration::from_micros(u64::from(i) * 50)) {
                Verdict::Allow => allowed += 1,
                Verdict::GlobalLimited => global += 1,
                Verdict::SourceLimited => {}
            }
        }
        // 3 s at 50/s after a burst of 100.
        assert!((240..=260).contains(&allowed), "{allowed} allowed");
        assert!(global > 50_000);
    }

    #[test]
    fn state_is_bounded_whatever_the_number_of_sources() {
        let mut l = Limiter::new(RateLimits::default(), [1; 16]);
        assert!(
            l.state_bytes() < 1024,
            "nothing allocated before the first check"
        );
        l.check(SocketAddr::from(([1, 2, 3, 4], 5)), Timestamp::ZERO);
        let one = l.state_bytes();
        assert!(one < 4 * 1024, "one source holds one chunk: {one} bytes");
        for i in 0..200_000u32 {
            l.check(
                SocketAddr::from((i.wrapping_mul(2_654_435_761).to_be_bytes(), 7)),
                Timestamp::from_micros(u64::from(i)),
            );
        }
        let full = l.state_bytes();
        let whole = std::mem::size_of::<Table>()
            + SOURCE_BUCKETS * std::mem::size_of::<State>()
            + std::mem::size_of::<Limiter>();
        assert_eq!(full, whole, "every chunk in use, and no more");
        assert!(full < 128 * 1024, "{full} bytes");
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let mut l = limiter((1, 1), (1_000_000, 1_000_000));
        let t = Timestamp::from_micros(10_000_000);
        assert_eq!(l.check(v4(0, 1, 1), t), Verdict::Allow);
        assert_eq!(
            l.check(v4(0, 1, 1), Timestamp::from_micros(1)),
            Verdict::SourceLimited
        );
        assert_eq!(l.check(v4(0, 1, 1), t), Verdict::SourceLimited);
    }
}
