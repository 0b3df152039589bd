//! A short pause in reading the socket when a receive backlog fills (a session's in the
//! messages model, a connection's in the connection API), so a flood of unreliable messages
//! waits in the kernel's buffer for the application instead of being dropped at the
//! backlog's limit.
//!
//! The application drains its queues on its own thread, which learns of new messages only
//! after a thread hand-off. Meanwhile the I/O side decodes datagrams much faster: with the
//! default limit of 1,000 messages, a burst of small unreliable messages filled a backlog in
//! a few dozen datagrams and the rest were dropped, while the application had CPU to spare
//! and the kernel's buffer (4 MiB) was nearly empty. So when a session's backlog becomes
//! full, the endpoint asks its driver to stop reading for at most [`MAX_PAUSE`]; the pause
//! ends as soon as the application has read that backlog down to half its limit.
//!
//! The pause is bounded so that one peer (or an application that never reads a channel)
//! cannot hold up every other peer's datagrams for long: a backlog that stays full pauses
//! once, when it fills, and later datagrams are read (and unreliable ones past the limit
//! dropped) as before. Timers, and so acks and retransmissions, keep running while paused.

use std::time::Duration;

use crate::time::Timestamp;

/// Longest a pause lasts.
pub const MAX_PAUSE: Duration = Duration::from_millis(5);

/// The endpoint's receive pause, if one is in force, for the backlog named by a `K` (a
/// peer's identity, a connection's handle).
#[derive(Debug)]
pub struct ReceivePause<K> {
    /// Until when, and for which backlog.
    active: Option<(Timestamp, K)>,
}

impl<K> Default for ReceivePause<K> {
    fn default() -> Self {
        Self { active: None }
    }
}

impl<K: PartialEq + Clone> ReceivePause<K> {
    /// `peer`'s backlog just became full at `now`: pause, unless a pause is already in force.
    pub fn on_full(&mut self, now: Timestamp, peer: &K) {
        if self.active.is_none() {
            self.active = Some((now + MAX_PAUSE, peer.clone()));
        }
    }

    /// `peer` was read down to `count` messages and `bytes` bytes against the limits: the
    /// pause ends once it is at half of them (or the peer is gone: `None`).
    pub fn on_read(&mut self, peer: &K, backlog: Option<(usize, usize)>, limits: (usize, usize)) {
        let Some((_, paused_for)) = &self.active else {
            return;
        };
        if paused_for != peer {
            return;
        }
        let drained =
            backlog.is_none_or(|(count, bytes)| count <= limits.0 / 2 && bytes <= limits.1 / 2);
        if drained {
            self.active = None;
        }
    }

    /// Ends a pause whose time is up.
    pub fn on_timeout(&mut self, now: Timestamp) {
        if self.active.as_ref().is_some_and(|(until, _)| *until <= now) {
            self.active = None;
        }
    }

    /// Whether the driver should leave datagrams in the kernel for now.
    pub fn is_paused(&self) -> bool {
        self.active.is_some()
    }

    /// When the pause ends at the latest.
    pub fn deadline(&self) -> Option<Timestamp> {
        self.active.as_ref().map(|(until, _)| *until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use std::net::SocketAddr;

    fn peer(port: u16) -> Identity {
        Identity::Ip(SocketAddr::from(([10, 0, 0, 1], port)))
    }

    fn ms(n: u64) -> Timestamp {
        Timestamp::from_micros(n * 1000)
    }

    #[test]
    fn a_pause_ends_when_the_backlog_is_half_read_or_its_time_is_up() {
        let mut p = ReceivePause::<Identity>::default();
        assert!(!p.is_paused());
        p.on_full(ms(1), &peer(1));
        assert!(p.is_paused());
        assert_eq!(p.deadline(), Some(ms(1) + MAX_PAUSE));
        // A second full backlog neither extends nor replaces it.
        p.on_full(ms(2), &peer(2));
        assert_eq!(p.deadline(), Some(ms(1) + MAX_PAUSE));
        // Reads of another peer, or not far enough, leave it.
        p.on_read(&peer(2), Some((0, 0)), (1000, 1 << 20));
        p.on_read(&peer(1), Some((501, 100)), (1000, 1 << 20));
        assert!(p.is_paused());
        p.on_read(&peer(1), Some((500, 100)), (1000, 1 << 20));
        assert!(!p.is_paused());
        // Time up.
        p.on_full(ms(10), &peer(1));
        p.on_timeout(ms(14));
        assert!(p.is_paused());
        p.on_timeout(ms(15));
        assert!(!p.is_paused());
        // The peer went away.
        p.on_full(ms(20), &peer(3));
        p.on_read(&peer(3), None, (1000, 1 << 20));
        assert!(!p.is_paused());
    }
}
