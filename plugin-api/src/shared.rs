//! Sharing of equal immutable values between the members of one process.
//!
//! One member per process holds one copy of its view whatever happens here. A simulation runs
//! thousands of members in one process, all holding the same view: copied per member, n ids
//! for each of n members would be most of the simulation's memory, and every lookup would
//! miss the processor's caches in a different copy. A [`Registry`] hands out one shared copy
//! per distinct value alive.
//!
//! The SDK shares views this way; plugins share the public parts of their agreed state (TGDH
//! its tree's public nodes, STR its chain's positions), which every member of a group holds
//! the same. Only immutable values are shared: a member that changes one changes a copy.

use std::hash::{BuildHasher, Hash};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};

/// Entries a registry holds before its first sweep of dead ones.
pub(crate) const SWEEP_AT: usize = 64;

/// The values alive in this process, by a hash of their content (see the module docs).
///
/// A registry holds only weak references: a value lives as long as some member holds it.
/// Dead entries are swept when the registry has doubled since its last sweep, so that
/// registering costs amortized constant time however many values are alive.
pub struct Registry<T>(OnceLock<Mutex<Live<T>>>);

/// The entries, and the size at which the next sweep runs.
struct Live<T> {
    entries: foldhash::HashMap<u64, Weak<T>>,
    sweep_at: usize,
}

impl<T> Registry<T> {
    /// An empty registry (for a `static`).
    pub const fn new() -> Self {
        Self(OnceLock::new())
    }

    /// The live value whose content hashes as `key` does and that `same` accepts, or else a
    /// new one from `build`, registered for the next holders. A collision of hashes costs
    /// only sharing: the value registered last under a hash is the one shared.
    pub fn share<K: Hash + ?Sized>(
        &self,
        key: &K,
        same: impl FnOnce(&T) -> bool,
        build: impl FnOnce() -> T,
    ) -> Arc<T> {
        self.with_live(key, same, || Arc::new(build()))
    }

    /// [`Registry::share`] for a value already in an `Arc`: the live value that `same`
    /// finds equal to `value`, if there is one (and `value` is dropped), else `value`,
    /// registered.
    pub fn intern<K: Hash + ?Sized>(
        &self,
        key: &K,
        value: Arc<T>,
        same: impl FnOnce(&T, &T) -> bool,
    ) -> Arc<T> {
        let candidate = Arc::clone(&value);
        self.with_live(key, |held| same(held, &candidate), || value)
    }

    fn with_live<K: Hash + ?Sized>(
        &self,
        key: &K,
        same: impl FnOnce(&T) -> bool,
        make: impl FnOnce() -> Arc<T>,
    ) -> Arc<T> {
        let hash = content_hash(key);
        let mut live = self
            .0
            .get_or_init(|| Mutex::new(Live { entries: Default::default(), sweep_at: SWEEP_AT }))
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(value) = live.entries.get(&hash).and_then(Weak::upgrade).filter(|v| same(v)) {
            return value;
        }
        let value = make();
        if live.entries.len() >= live.sweep_at {
            live.entries.retain(|_, held| held.strong_count() > 0);
            live.sweep_at = SWEEP_AT.max(2 * live.entries.len());
        }
        live.entries.insert(hash, Arc::downgrade(&value));
        value
    }

    /// How many entries the registry holds, dead or alive.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> usize {
        self.0
            .get()
            .map_or(0, |live| live.lock().unwrap_or_else(PoisonError::into_inner).entries.len())
    }
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> std::fmt::Debug for Registry<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// A hash of `key`, keyed per process.
pub(crate) fn content_hash<K: Hash + ?Sized>(key: &K) -> u64 {
    // foldhash, not SipHash: TGDH hashes every node it copies, and a collision costs only
    // sharing (see [`Registry::share`]).
    static HASHER: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
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
        assert!(NUMBERS.entries() <= 2 * SWEEP_AT + 1, "{} entries", NUMBERS.entries());
    }

    #[test]
    fn interning_returns_the_live_equal_value_or_registers_the_given_one() {
        static NAMES: Registry<String> = Registry::new();
        let intern = |name: &str| NAMES.intern(name, Arc::new(name.to_owned()), |a, b| a == b);
        let first = intern("x");
        let again = intern("x");
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(Arc::strong_count(&first), 2, "the second copy was dropped, not kept");
        let other = intern("y");
        assert!(!Arc::ptr_eq(&first, &other));
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
