//! Time as the sans-IO core sees it.
//!
//! The protocol code never reads a clock: the driver (or the simulated network) passes `now`
//! in. A plain microsecond count keeps the core deterministic under a virtual clock, matches
//! the microsecond timestamps the reference protocol uses on the wire, and is cheap to copy.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time, in microseconds since an arbitrary epoch chosen by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The epoch itself.
    pub const ZERO: Timestamp = Timestamp(0);

    /// Builds a timestamp from microseconds since the epoch.
    pub const fn from_micros(us: u64) -> Self {
        Timestamp(us)
    }

    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        // Saturate rather than wrap: a timer "infinitely far" away must stay far away.
        Timestamp(
            self.0
                .saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

impl AddAssign<Duration> for Timestamp {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_sub(u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Timestamp::from_micros(10);
        assert_eq!((t - Duration::from_micros(20)).as_micros(), 0);
        assert_eq!(
            (Timestamp(u64::MAX - 1) + Duration::from_secs(1)).as_micros(),
            u64::MAX
        );
        assert_eq!(
            Timestamp(50).saturating_since(Timestamp(20)),
            Duration::from_micros(30)
        );
        assert_eq!(
            Timestamp(20).saturating_since(Timestamp(50)),
            Duration::ZERO
        );
    }
}
