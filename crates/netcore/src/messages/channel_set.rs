//! The channels a session used: a vector kept sorted.
//!
//! Every idle session keeps its set, and one usually holds a channel or two: a `BTreeSet`
//! allocates a 56-byte node for the first, this vector 16 bytes (room for four). Inserting is
//! a binary search, done for every message received, as cheap as the tree's.

/// A set of channels, in ascending order.
#[derive(Clone, Debug, Default)]
pub struct ChannelSet {
    channels: Vec<i32>,
}

impl ChannelSet {
    /// Adds `channel` (nothing if present).
    pub fn insert(&mut self, channel: i32) {
        if let Err(i) = self.channels.binary_search(&channel) {
            self.channels.insert(i, channel);
        }
    }

    /// Removes `channel` (nothing if absent).
    pub fn remove(&mut self, channel: i32) {
        if let Ok(i) = self.channels.binary_search(&channel) {
            self.channels.remove(i);
        }
    }

    /// Whether no channel is in the set.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The channels, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &i32> {
        self.channels.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_in_order_without_duplicates() {
        let mut s = ChannelSet::default();
        assert!(s.is_empty());
        for ch in [3, -1, 7, 3, 0, 7] {
            s.insert(ch);
        }
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [-1, 0, 3, 7]);
        s.remove(3);
        s.remove(42);
        assert_eq!(s.iter().copied().collect::<Vec<_>>(), [-1, 0, 7]);
        for ch in [-1, 0, 7] {
            s.remove(ch);
        }
        assert!(s.is_empty());
    }
}
