//! A connection's lanes by id: a vector kept sorted by id, holding the lanes inline.
//!
//! Most connections use one lane, and every idle one keeps its lanes. A `BTreeMap` node has
//! room for eleven entries, so a map of boxed lanes costs a 144-byte node plus the lane's
//! box for the first one; this vector costs one block of exactly one lane. It grows one lane
//! at a time for the first few (lanes are created rarely, and the next one may never come),
//! then by doubling, so a connection that configures all 255 lanes does not copy them
//! quadratically. Lookups are binary searches over a handful of ids.

/// Lanes up to this many grow the vector by exactly one; beyond, it doubles.
const GROW_EXACTLY: usize = 4;

/// Lanes of type `T` by lane id, in id order.
#[cfg_attr(any(test, fuzzing), derive(Clone))]
pub struct LaneMap<T> {
    entries: Vec<(u32, T)>,
}

impl<T> Default for LaneMap<T> {
    fn default() -> Self {
        LaneMap {
            entries: Vec::new(),
        }
    }
}

impl<T> LaneMap<T> {
    /// The lane `id`, made by `make` if it does not exist yet.
    pub fn get_or_insert_with(&mut self, id: u32, make: impl FnOnce() -> T) -> &mut T {
        let i = match self.entries.binary_search_by_key(&id, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                let len = self.entries.len();
                if len == self.entries.capacity() {
                    self.entries
                        .reserve_exact(if len < GROW_EXACTLY { 1 } else { len });
                }
                self.entries.insert(i, (id, make()));
                i
            }
        };
        &mut self.entries[i].1
    }

    /// The lane `id`, if it exists.
    pub fn get(&self, id: u32) -> Option<&T> {
        let i = self.entries.binary_search_by_key(&id, |e| e.0).ok()?;
        Some(&self.entries[i].1)
    }

    /// The lane `id`, if it exists, to change.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut T> {
        let i = self.entries.binary_search_by_key(&id, |e| e.0).ok()?;
        Some(&mut self.entries[i].1)
    }

    /// Every lane with its id, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.entries.iter().map(|(id, l)| (*id, l))
    }

    /// Every lane with its id, in id order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut T)> {
        self.entries.iter_mut().map(|(id, l)| (*id, l))
    }

    /// Every lane, in id order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, l)| l)
    }

    /// Every lane, in id order, to change.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.entries.iter_mut().map(|(_, l)| l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_stay_in_id_order_and_are_found_by_id() {
        let mut m = LaneMap::default();
        for id in [5u32, 1, 9, 3, 7, 0, 2] {
            *m.get_or_insert_with(id, || id * 10) += 1;
        }
        // An existing lane is returned, not made again.
        *m.get_or_insert_with(9, || 0) += 1;
        let ids: Vec<u32> = m.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [0, 1, 2, 3, 5, 7, 9]);
        assert_eq!(m.get(9), Some(&92));
        assert_eq!(m.get(4), None);
        *m.get_mut(3).expect("lane 3") = 0;
        assert_eq!(
            m.values().copied().collect::<Vec<_>>(),
            [1, 11, 21, 0, 51, 71, 92]
        );
    }

    #[test]
    fn the_first_lanes_take_exactly_their_room() {
        let mut m = LaneMap::default();
        m.get_or_insert_with(0, || [0u8; 200]);
        assert_eq!(m.entries.capacity(), 1);
        for id in 1..GROW_EXACTLY as u32 {
            m.get_or_insert_with(id, || [0u8; 200]);
            assert_eq!(m.entries.capacity(), id as usize + 1);
        }
        // Past that it doubles.
        m.get_or_insert_with(100, || [0u8; 200]);
        assert_eq!(m.entries.capacity(), 2 * GROW_EXACTLY);
    }
}
