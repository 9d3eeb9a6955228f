//! Sharing of equal immutable values between the members of one process.
//!
//! One member per process holds one copy of its view whatever happens here. A simulation runs
//! thousands of members in one process, all holding the same view: copied per member, n ids
//! for each of n members would be most of the simulation's memory, and every lookup would
//! miss the processor's caches in a different copy. A [`Registry`] hands out one shared copy
//! per distinct value alive.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

/// Live values a registry keeps at most before it drops the dead ones.
pub(crate) const SWEEP_AT: usize = 64;

/// The values alive in this process, by a hash of their content (see the module docs).
pub(crate) struct Registry<T>(OnceLock<Mutex<HashMap<u64, Weak<T>>>>);

impl<T> Registry<T> {
    /// An empty registry (for a `static`).
    pub(crate) const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// The live value whose content hashes as `key` does and that `same` accepts, or else a
    /// new one from `build`, registered for the next holders. A collision of hashes costs
    /// only sharing: the value registered last under a hash is the one shared.
    pub(crate) fn share<K: Hash + ?Sized>(
        &self,
        key: &K,
        same: impl FnOnce(&T) -> bool,
        build: impl FnOnce() -> T,
    ) -> Arc<T> {
        let hash = content_hash(key);
        let mut live = self.live().lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = live.get(&hash).and_then(Weak::upgrade).filter(|v| same(v)) {
            return value;
        }
        let value = Arc::new(build());
        if live.len() >= SWEEP_AT {
            live.retain(|_, held| held.strong_count() > 0);
        }
        live.insert(hash, Arc::downgrade(&value));
        value
    }

    fn live(&self) -> &Mutex<HashMap<u64, Weak<T>>> {
        self.0.get_or_init(Mutex::default)
    }

    /// How many entries the registry holds, dead or alive.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.live().lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A hash of `key`, keyed per process.
fn content_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    static HASHER: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    HASHER.get_or_init(Default::default).hash_one(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_copy_while_alive_and_the_registry_stays_bounded() {
        static NUMBERS: Registry<Vec<u32>> = Registry::new();
        let share = |v: &[u32]| NUMBERS.share(v, |held| held == v, || v.to_vec());
        let first = share(&[1, 2, 3]);
        assert!(Arc::ptr_eq(&first, &share(&[1, 2, 3])));
        assert!(!Arc::ptr_eq(&first, &share(&[3, 2, 1])));
        let weak = Arc::downgrade(&first);
        drop(first);
        assert_eq!(weak.strong_count(), 0, "the registry does not keep values alive");
        assert_eq!(*share(&[1, 2, 3]), [1, 2, 3]);
        for i in 0..3 * SWEEP_AT as u32 {
            let _dropped = share(&[i, i]);
        }
        assert!(NUMBERS.entries() <= SWEEP_AT + 1, "{} entries", NUMBERS.entries());
    }

    #[test]
    fn a_value_the_check_refuses_is_built_afresh() {
        static WORDS: Registry<String> = Registry::new();
        let a = WORDS.share("key", |_| true, || "a".to_owned());
        let b = WORDS.share("key", |held| held == "b", || "b".to_owned());
        assert_eq!((a.as_str(), b.as_str()), ("a", "b"));
        assert!(Arc::ptr_eq(&b, &WORDS.share("key", |held| held == "b", || unreachable!())));
    }
}
