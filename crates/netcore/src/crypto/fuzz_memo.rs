//! Fuzz builds only: the answers of the slow, pure crypto steps (Ed25519 signing,
//! verification and point decompression, X25519) remembered per thread, so a fuzz target
//! that plays the same handshake in every input pays for its crypto once instead of in every
//! execution (the crypto crates are not what is being fuzzed). Outside `cfg(fuzzing)`,
//! [`cached`] is the computation itself.

#[cfg(fuzzing)]
mod memo {
    use std::any::Any;
    use std::cell::RefCell;
    use std::collections::HashMap;

    /// Entries kept before the table starts over (bounded memory).
    const MAX_ENTRIES: usize = 4096;

    thread_local! {
        static MEMO: RefCell<HashMap<Vec<u8>, Box<dyn Any>>> = RefCell::new(HashMap::new());
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
            m.borrow()
                .get(&key)
                .and_then(|v| v.downcast_ref::<V>())
                .cloned()
        });
        if let Some(v) = hit {
            return v;
        }
        let v = compute();
        MEMO.with(|m| {
            let mut m = m.borrow_mut();
            if m.len() >= MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, Box::new(v.clone()));
        });
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
