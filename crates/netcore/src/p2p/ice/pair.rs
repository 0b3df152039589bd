//! Candidate pairs (RFC 8445 6.1.2): priority and the checklist states.

use std::net::{IpAddr, SocketAddr};

use super::candidate::is_private;

/// RFC 8445 6.1.2.3: `2^32 * min(G, D) + 2 * max(G, D) + (G > D ? 1 : 0)`, where G is the
/// controlling agent's candidate priority and D the controlled agent's.
/// Priorities are clamped to RFC 8445's range (below 2^31) first, so a peer's out-of-range
/// value cannot overflow the sum.
pub fn pair_priority(controlling: u32, controlled: u32) -> u64 {
    const MAX: u32 = 0x7FFF_FFFF;
    let (g, d) = (
        u64::from(controlling.min(MAX)),
        u64::from(controlled.min(MAX)),
    );
    (1u64 << 32) * g.min(d) + 2 * g.max(d) + u64::from(g > d)
}

/// A pair's place in the checklist (RFC 8445 6.1.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PairState {
    /// Waiting for a pair of its foundation to be checked first.
    Frozen,
    /// Ready to be checked.
    Waiting,
    /// A check is in flight.
    InProgress,
    /// A check got an authenticated answer from where it was sent.
    Succeeded,
    /// Its check timed out or was refused.
    Failed,
}

/// Whether `remote` is on the same private subnet as `local` (`prefix_len` bits): a direct
/// LAN path, which GNS prefers over any other and reports as "fast". Public addresses
/// sharing a prefix are data-center neighbours, not a LAN, so only private space counts.
pub fn on_local_subnet(local: SocketAddr, prefix_len: u8, remote: SocketAddr) -> bool {
    if prefix_len == 0 || !is_private(local.ip()) {
        return false;
    }
    match (local.ip(), remote.ip()) {
        (IpAddr::V4(l), IpAddr::V4(r)) => {
            let bits = u32::from(prefix_len.min(32));
            let mask = if bits == 32 {
                u32::MAX
            } else {
                !(u32::MAX >> bits)
            };
            u32::from(l) & mask == u32::from(r) & mask
        }
        (IpAddr::V6(l), IpAddr::V6(r)) => {
            let bits = u32::from(prefix_len.min(128));
            let mask = if bits == 128 {
                u128::MAX
            } else {
                !(u128::MAX >> bits)
            };
            u128::from(l) & mask == u128::from(r) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_formula() {
        assert_eq!(pair_priority(10, 5), (5u64 << 32) + 20 + 1);
        assert_eq!(pair_priority(5, 10), (5u64 << 32) + 20);
        // Symmetric except for the tiebreak bit, so both agents order pairs alike.
        assert!(pair_priority(u32::MAX, u32::MAX) > pair_priority(u32::MAX, 1));
    }

    #[test]
    fn subnets() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(on_local_subnet(a("192.168.1.2:1"), 24, a("192.168.1.77:9")));
        assert!(!on_local_subnet(
            a("192.168.1.2:1"),
            24,
            a("192.168.2.77:9")
        ));
        assert!(!on_local_subnet(a("192.168.1.2:1"), 0, a("192.168.1.77:9")));
        assert!(!on_local_subnet(a("203.0.113.2:1"), 24, a("203.0.113.3:9")));
        assert!(on_local_subnet(a("[fd00::1]:1"), 64, a("[fd00::2]:1")));
        assert!(!on_local_subnet(a("[fd00::1]:1"), 64, a("10.0.0.1:1")));
    }
}
