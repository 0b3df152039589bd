//! Stateless challenge cookies: the answer to a `ChallengeRequest` that lets a server keep no
//! state for a source address until that source proves it can receive at it.
//!
//! A cookie is a keyed hash (SipHash-2-4) of the source address and a coarse time bucket,
//! under a secret the endpoint draws at start-up. A `ConnectRequest` must echo a cookie from
//! the current or the previous bucket, so a cookie lives between one and two buckets.

use std::hash::Hasher;
use std::net::SocketAddr;
use std::time::Duration;

use siphasher::sip::SipHasher24;

use crate::time::Timestamp;

/// Length of one time bucket.
pub const BUCKET: Duration = Duration::from_secs(4);

/// Issues and checks cookies under one secret.
#[derive(Clone)]
pub struct ChallengeKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for ChallengeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.write_str("ChallengeKey(..)")
    }
}

impl ChallengeKey {
    /// A key from 16 secret random bytes (the driver draws them from the OS).
    pub fn new(secret: [u8; 16]) -> Self {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&secret[..8]);
        k1.copy_from_slice(&secret[8..]);
        ChallengeKey {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    fn bucket(now: Timestamp) -> u64 {
        now.as_micros() / BUCKET.as_micros() as u64
    }

    fn hash(&self, addr: SocketAddr, bucket: u64) -> u64 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        match addr {
            SocketAddr::V4(a) => h.write(&a.ip().octets()),
            SocketAddr::V6(a) => h.write(&a.ip().octets()),
        }
        h.write_u16(addr.port());
        h.write_u64(bucket);
        h.finish()
    }

    /// The cookie for `addr` now.
    pub fn issue(&self, addr: SocketAddr, now: Timestamp) -> u64 {
        self.hash(addr, Self::bucket(now))
    }

    /// Whether `cookie` was issued to `addr` in this bucket or the previous one.
    pub fn verify(&self, addr: SocketAddr, now: Timestamp, cookie: u64) -> bool {
        let b = Self::bucket(now);
        self.hash(addr, b) == cookie || (b > 0 && self.hash(addr, b - 1) == cookie)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_bind_address_and_expire() {
        let key = ChallengeKey::new([7; 16]);
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:5001".parse().unwrap();
        let t = Timestamp::ZERO + Duration::from_secs(10);
        let c = key.issue(a, t);
        assert!(key.verify(a, t, c));
        assert!(!key.verify(b, t, c), "bound to the address");
        assert!(key.verify(a, t + BUCKET, c), "still valid one bucket later");
        assert!(!key.verify(a, t + BUCKET * 2, c), "expired after two");
        assert!(
            !ChallengeKey::new([8; 16]).verify(a, t, c),
            "bound to the secret"
        );
    }
}
