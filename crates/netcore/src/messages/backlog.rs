//! One session's unread messages per channel: what tells the application which channel's
//! backlog holds the session when its receive limit is reached (an unread channel blocks
//! every channel of that peer, since the limit is per session).
//!
//! A session reads from a handful of channels, so a short vector searched linearly beats a
//! map. The first channel's entry lives inline (a session that uses one channel allocates
//! nothing per message), in the 24 bytes an empty vector takes anyway.

use smallvec::SmallVec;

/// Unread messages and bytes of one session, by channel.
#[derive(Debug, Default)]
pub struct ChannelBacklog {
    /// (channel, messages, bytes); only channels with something unread.
    entries: SmallVec<[(i32, u32, usize); 1]>,
}

/// The backlog of one channel (or of a session not yet accepted, `channel: None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backlog {
    /// The channel, or `None` for messages held until the session is accepted.
    pub channel: Option<i32>,
    /// Messages waiting.
    pub messages: usize,
    /// Their bytes.
    pub bytes: usize,
}

impl ChannelBacklog {
    /// A message of `bytes` bytes arrived on `channel`.
    pub fn add(&mut self, channel: i32, bytes: usize) {
        match self.entries.iter_mut().find(|e| e.0 == channel) {
            Some(e) => {
                e.1 = e.1.saturating_add(1);
                e.2 += bytes;
            }
            None => self.entries.push((channel, 1, bytes)),
        }
    }

    /// `messages` messages of `bytes` bytes in all left `channel` (read or purged).
    pub fn remove(&mut self, channel: i32, messages: usize, bytes: usize) {
        if let Some(i) = self.entries.iter().position(|e| e.0 == channel) {
            let e = &mut self.entries[i];
            e.1 =
                e.1.saturating_sub(u32::try_from(messages).unwrap_or(u32::MAX));
            e.2 = e.2.saturating_sub(bytes);
            if e.1 == 0 {
                self.entries.swap_remove(i);
                if self.entries.is_empty() {
                    // Give the storage back: most sessions read everything most of the time.
                    self.entries = SmallVec::new();
                }
            }
        }
    }

    /// The channel holding the most unread messages (ties: the most bytes).
    pub fn largest(&self) -> Option<Backlog> {
        self.entries
            .iter()
            .max_by_key(|e| (e.1, e.2))
            .map(|&(channel, messages, bytes)| Backlog {
                channel: Some(channel),
                messages: messages as usize,
                bytes,
            })
    }

    /// Every channel with unread messages, in no particular order.
    pub fn channels(&self) -> impl Iterator<Item = Backlog> + '_ {
        self.entries
            .iter()
            .map(|&(channel, messages, bytes)| Backlog {
                channel: Some(channel),
                messages: messages as usize,
                bytes,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_per_channel_and_names_the_largest() {
        let mut b = ChannelBacklog::default();
        assert_eq!(b.largest(), None);
        for _ in 0..3 {
            b.add(5, 10);
        }
        b.add(0, 100);
        let big = b.largest().unwrap();
        assert_eq!((big.channel, big.messages, big.bytes), (Some(5), 3, 30));
        b.remove(5, 3, 30);
        assert_eq!(b.largest().unwrap().channel, Some(0));
        b.remove(0, 1, 100);
        assert_eq!(b.largest(), None);
        assert!(!b.entries.spilled(), "the storage was given back");
        // Removing from a channel never seen is harmless.
        b.remove(9, 1, 1);
    }
}
