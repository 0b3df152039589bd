//! Fuzz builds only: the answers of the slow, pure crypto steps (Ed25519 signing,
//! verification and point decompression, X25519, the session keys' HKDF) remembered per
//! thread, so a fuzz target that plays the same handshake in every input pays for its crypto
//! once instead of in every execution (the crypto crates are not what is being fuzzed).
//! Outside `cfg(fuzzing)`, [`cached`] is the computation itself.

#[cfg(fuzzing)]
mod memo {
    use std::any::Any;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Entries in one generation of the table (bounded memory: two generations at most).
    const MAX_ENTRIES: usize = 4096;

    /// Two generations: lookups try the young one, then the old one (a hit there moves the
    /// entry to the young one); when the young one is full it becomes the old one. Mutated
    /// handshakes make a new entry each, so a table that started over when full would also
    /// drop the genuine handshake's entries, which nearly every input uses: here those stay.
    #[derive(Default)]
    struct Memo {
        young: HashMap<Vec<u8>, Box<dyn Any>>,
        old: HashMap<Vec<u8>, Box<dyn Any>>,
    }

    thread_local! {
        static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
    }

    impl Memo {
        fn insert(&mut self, key: Vec<u8>, v: Box<dyn Any>) {
            if self.young.len() >= MAX_ENTRIES {
                self.old = std::mem::take(&mut self.young);
            }
            self.young.insert(key, v);
        }
    }

    pub fn cached<V: Clone + 'static>(
        tag: &'static str,
        parts: &[&[u8]],
        compute: impl FnOnce() -> V,
    ) -> V {
        let mut key = tag.as_bytes().to_vec();
        for p in parts {
            key.extend_from_slice(&(p.len() as u32).to_le_bytes());
            key.extend_from_slice(p);
        }
        let hit = MEMO.with(|m| {
            let mut m = m.borrow_mut();
            if let Some(v) = m.young.get(&key) {
                return v.downcast_ref::<V>().cloned();
            }
            let v = m.old.remove(&key)?;
            let hit = v.downcast_ref::<V>().cloned();
            m.insert(key.clone(), v);
            hit
        });
        if let Some(v) = hit {
            return v;
        }
        let v = compute();
        MEMO.with(|m| m.borrow_mut().insert(key, Box::new(v.clone())));
        v
    }
}

/// `compute()`, remembered by `tag` and `parts` in fuzz builds.
#[cfg(fuzzing)]
pub(crate) fn cached<V: Clone + 'static>(
    tag: &'static str,
    parts: &[&[u8]],
    compute: impl FnOnce() -> V,
) -> V {
    memo::cached(tag, parts, compute)
}

/// `compute()`, remembered by `tag` and `parts` in fuzz builds.
#[cfg(not(fuzzing))]
#[inline(always)]
pub(crate) fn cached<V>(_tag: &'static str, _parts: &[&[u8]], compute: impl FnOnce() -> V) -> V {
    compute()
}
