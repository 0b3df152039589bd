//! Per-link random streams.
//!
//! Every directed link draws from its own ChaCha8 stream keyed by the network seed and the
//! link's two addresses, so adding a node or changing another link's settings never shifts the
//! randomness a given link sees. Each datagram consumes a fixed number of draws whatever the
//! configuration, so changing one knob (say loss) leaves the others' draws (say jitter) alone.

use std::net::SocketAddr;
use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The random numbers one datagram's fate is decided with.
#[derive(Clone, Copy, Debug)]
pub(super) struct Draws {
    pub loss: f64,
    pub jitter: u64,
    pub reorder: f64,
    pub duplicate: f64,
    pub duplicate_delay: u64,
}

/// The random stream of one directed link.
#[derive(Clone, Debug)]
pub(super) struct LinkRng(ChaCha8Rng);

impl LinkRng {
    /// The stream of the link `from -> to` under `seed`.
    pub fn for_link(seed: u64, from: SocketAddr, to: SocketAddr) -> Self {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        key[8..16].copy_from_slice(&addr_hash(from).to_le_bytes());
        key[16..24].copy_from_slice(&addr_hash(to).to_le_bytes());
        LinkRng(ChaCha8Rng::from_seed(key))
    }

    /// Draws the numbers for one datagram (always the same count of draws).
    pub fn draws(&mut self) -> Draws {
        Draws {
            loss: self.unit(),
            jitter: self.0.next_u64(),
            reorder: self.unit(),
            duplicate: self.unit(),
            duplicate_delay: self.0.next_u64(),
        }
    }

    /// A uniform value in `[0, 1)` with 53 bits of precision.
    fn unit(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// True with probability `p` given a uniform draw in `[0, 1)`; NaN and `p <= 0` are never.
pub(super) fn chance(draw: f64, p: f64) -> bool {
    draw < p
}

/// Maps a raw 64-bit draw onto `[0, max]` microseconds (multiply-shift: no division, no skew
/// worth noticing at these ranges).
pub(super) fn micros_upto(raw: u64, max: Duration) -> u64 {
    let max = u64::try_from(max.as_micros()).unwrap_or(u64::MAX);
    let span = u128::from(max) + 1;
    u64::try_from((u128::from(raw) * span) >> 64).unwrap_or(max)
}

/// A stable (platform- and run-independent) FNV-1a hash of an address, for keying streams.
fn addr_hash(addr: SocketAddr) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    match addr {
        SocketAddr::V4(a) => {
            eat(&[4]);
            eat(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            eat(&[6]);
            eat(&a.ip().octets());
        }
    }
    eat(&addr.port().to_be_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn streams_differ_per_link_and_seed_and_repeat() {
        let (x, y) = (a("10.0.0.1:1"), a("10.0.0.2:1"));
        let first = |seed, f, t| LinkRng::for_link(seed, f, t).0.next_u64();
        assert_eq!(first(1, x, y), first(1, x, y));
        assert_ne!(first(1, x, y), first(1, y, x));
        assert_ne!(first(1, x, y), first(2, x, y));
    }

    #[test]
    fn micros_upto_stays_in_range() {
        let max = Duration::from_micros(10);
        assert_eq!(micros_upto(0, max), 0);
        assert_eq!(micros_upto(u64::MAX, max), 10);
        assert_eq!(micros_upto(u64::MAX, Duration::ZERO), 0);
        assert_eq!(micros_upto(u64::MAX / 2, max), 5);
    }

    #[test]
    fn chance_edges() {
        assert!(!chance(0.0, 0.0));
        assert!(chance(0.999, 1.0));
        assert!(!chance(0.5, f64::NAN));
    }
}
