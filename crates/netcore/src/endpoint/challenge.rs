//! Stateless challenge cookies: the answer to a `ChallengeRequest` that lets a server keep no
//! state for a source address until that source proves it can receive at it.
//!
//! A cookie is a keyed hash (SipHash-2-4) of the source address and a coarse time bucket,
//! under a secret the endpoint draws at start-up and replaces every [`ROTATION`] (from its
//! CSPRNG), keeping the previous one just long enough to check cookies it issued. A
//! `ConnectRequest` must echo a cookie from the current or the previous bucket, so a cookie
//! lives between one and two buckets, and a leaked secret is useless after one rotation.

use std::hash::Hasher;
use std::net::SocketAddr;
use std::time::Duration;

use siphasher::sip::SipHasher24;

use crate::time::Timestamp;

/// Length of one time bucket.
pub const BUCKET: Duration = Duration::from_secs(4);
/// How long one secret is used.
pub const ROTATION: Duration = Duration::from_secs(600);

#[derive(Clone, Copy)]
struct Secret {
    k0: u64,
    k1: u64,
}

/// Issues and checks cookies under a rotating secret.
#[derive(Clone)]
pub struct ChallengeKey {
    current: Secret,
    previous: Option<Secret>,
    /// The bucket at which `current` took over.
    since_bucket: u64,
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
        ChallengeKey {
            current: Self::secret(secret),
            previous: None,
            since_bucket: 0,
        }
    }

    fn secret(bytes: [u8; 16]) -> Secret {
        let mut k0 = [0u8; 8];
        let mut k1 = [0u8; 8];
        k0.copy_from_slice(&bytes[..8]);
        k1.copy_from_slice(&bytes[8..]);
        Secret {
            k0: u64::from_le_bytes(k0),
            k1: u64::from_le_bytes(k1),
        }
    }

    /// Replaces the secret with `fresh` random bytes once the current one has served its
    /// [`ROTATION`]; the previous secret still checks cookies for one more bucket.
    pub fn rotate_if_due(&mut self, now: Timestamp, fresh: impl FnOnce() -> [u8; 16]) {
        let bucket = Self::bucket(now);
        let per_rotation = ROTATION.as_micros() as u64 / BUCKET.as_micros() as u64;
        if bucket >= self.since_bucket + per_rotation {
            self.previous = Some(self.current);
            self.current = Self::secret(fresh());
            self.since_bucket = bucket;
        } else if self.previous.is_some() && bucket > self.since_bucket + 1 {
            // Every cookie the old secret issued has expired.
            self.previous = None;
        }
    }

    fn bucket(now: Timestamp) -> u64 {
        now.as_micros() / BUCKET.as_micros() as u64
    }

    fn hash(secret: Secret, addr: SocketAddr, bucket: u64) -> u64 {
        let mut h = SipHasher24::new_with_keys(secret.k0, secret.k1);
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
        Self::hash(self.current, addr, Self::bucket(now))
    }

    /// Whether `cookie` was issued to `addr` in this bucket or the previous one (under the
    /// current secret, or the one it replaced).
    pub fn verify(&self, addr: SocketAddr, now: Timestamp, cookie: u64) -> bool {
        let b = Self::bucket(now);
        let by = |secret: Secret| {
            Self::hash(secret, addr, b) == cookie
                || (b > 0 && Self::hash(secret, addr, b - 1) == cookie)
        };
        by(self.current) || self.previous.is_some_and(by)
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

    #[test]
    fn the_secret_rotates_and_old_cookies_die_with_it() {
        let mut key = ChallengeKey::new([7; 16]);
        let a: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let t0 = Timestamp::ZERO + Duration::from_secs(1);
        let before = key.issue(a, t0);
        // Just before the rotation nothing changes.
        let almost = t0 + ROTATION - BUCKET * 2;
        key.rotate_if_due(almost, || [8; 16]);
        assert_eq!(key.issue(a, t0), before);
        // At the rotation a new secret issues; a cookie from just before still verifies.
        let late = key.issue(a, t0 + ROTATION - BUCKET);
        let t1 = t0 + ROTATION;
        key.rotate_if_due(t1, || [8; 16]);
        assert_ne!(key.issue(a, t0), before, "new secret");
        assert!(
            key.verify(a, t1, late),
            "the previous secret covers the overlap"
        );
        // Two buckets on, the old secret is gone.
        let t2 = t1 + BUCKET * 2;
        key.rotate_if_due(t2, || [9; 16]);
        assert!(!key.verify(a, t2, late));
        assert!(key.verify(a, t2, key.issue(a, t2)));
    }
}
