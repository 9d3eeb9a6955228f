//! Large message parts that the sessions of one process decode once.
//!
//! A member decodes each payload it receives. One member per process decodes each payload
//! once, whatever happens here. A simulation runs thousands of members in one process, and
//! every one of them receives the same broadcast: a TGDH tree of n blinded keys, decoded by
//! each of n members, costs n² allocations and copies per join, and the members then compare
//! n different copies with the trees they share. A [`DecodedOnce`] field is decoded once per
//! distinct content while several sessions of the plugin are alive in the process, and every
//! member that receives the same bytes gets the same shared value.
//!
//! The value handed out is exactly what decoding the received bytes gives: a cached value is
//! used only for byte-identical input (compared in full, not only by hash), and the encoding
//! is deterministic. A hostile sender gains nothing: it can only make a receiver decode, as
//! it always could. What the cache holds is bounded ([`MAX_ENTRIES`], [`MAX_CACHED_BYTES`]).

use std::any::Any;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shared::content_hash;

/// Encodings shorter than this are decoded by each session: hashing and comparing them would
/// save little.
pub(crate) const MIN_CACHED_BYTES: usize = 16 << 10;
/// How many decoded values the process keeps at most: the broadcasts a simulation has in
/// flight at once that are worth sharing (a join's trees, a merge's) are a few.
pub(crate) const MAX_ENTRIES: usize = 8;
/// How many bytes of encodings the kept values may stand for, together.
pub(crate) const MAX_CACHED_BYTES: usize = 64 << 20;

/// A value sent as one byte string (its `postcard` encoding), decoded once per process for
/// every session that receives the same bytes (see the module docs). It dereferences to the
/// value.
pub struct DecodedOnce<T>(Arc<T>);

impl<T> DecodedOnce<T> {
    /// A value to send.
    pub fn new(value: T) -> Self {
        Self(Arc::new(value))
    }

    /// The shared value: two receivers of the same bytes hold the same `Arc` (while the
    /// process caches it), so a plugin can remember what it learnt from one per value.
    pub fn shared(&self) -> &Arc<T> {
        &self.0
    }
}

impl<T> std::ops::Deref for DecodedOnce<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for DecodedOnce<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for DecodedOnce<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<T: Serialize> Serialize for DecodedOnce<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = postcard::to_allocvec(&*self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&bytes)
    }
}

impl<'de, T: DeserializeOwned + Send + Sync + 'static> Deserialize<'de> for DecodedOnce<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(BytesVisitor(PhantomData))
    }
}

struct BytesVisitor<T>(PhantomData<T>);

impl<T: DeserializeOwned + Send + Sync + 'static> Visitor<'_> for BytesVisitor<T> {
    type Value = DecodedOnce<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a byte string holding an encoded value")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        decode_shared(bytes).map(DecodedOnce).map_err(E::custom)
    }
}

/// The value `bytes` encode: the one already decoded from equal bytes, if the process keeps
/// it, else decoded now (and kept, if several sessions are alive and the bytes are many).
fn decode_shared<T: DeserializeOwned + Send + Sync + 'static>(
    bytes: &[u8],
) -> Result<Arc<T>, postcard::Error> {
    decode_shared_among(bytes, LIVE_SESSIONS.load(Ordering::Relaxed))
}

/// [`decode_shared`] with `sessions` alive.
fn decode_shared_among<T: DeserializeOwned + Send + Sync + 'static>(
    bytes: &[u8],
    sessions: usize,
) -> Result<Arc<T>, postcard::Error> {
    if bytes.len() < MIN_CACHED_BYTES || sessions < 2 {
        return decode(bytes).map(Arc::new);
    }
    let hash = content_hash(bytes);
    if let Some(value) = CACHE.lock().unwrap_or_else(PoisonError::into_inner).get::<T>(hash, bytes)
    {
        return Ok(value);
    }
    let value = Arc::new(decode::<T>(bytes)?);
    let shared: Arc<dyn Any + Send + Sync> = value.clone();
    CACHE.lock().unwrap_or_else(PoisonError::into_inner).insert(hash, bytes, shared);
    Ok(value)
}

/// Decodes a whole byte string: trailing bytes are refused, as for a whole payload.
fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    let (value, rest) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(postcard::Error::DeserializeBadEncoding);
    }
    Ok(value)
}

/// The decoded values kept, most recently used last.
static CACHE: Mutex<Cache> = Mutex::new(Cache { entries: VecDeque::new(), bytes: 0 });

/// Sessions of this plugin alive in the process (see [`LiveSession`]).
static LIVE_SESSIONS: AtomicUsize = AtomicUsize::new(0);

struct Cache {
    entries: VecDeque<Entry>,
    /// The sum of the entries' encoding lengths.
    bytes: usize,
}

struct Entry {
    hash: u64,
    encoding: Box<[u8]>,
    value: Arc<dyn Any + Send + Sync>,
}

impl Cache {
    /// The value of type `T` decoded from `bytes` (hashing as `hash`), if kept; it becomes
    /// the most recently used.
    fn get<T: Any + Send + Sync>(&mut self, hash: u64, bytes: &[u8]) -> Option<Arc<T>> {
        let i = self
            .entries
            .iter()
            .position(|e| e.hash == hash && (*e.value).is::<T>() && *e.encoding == *bytes)?;
        let entry = self.entries.remove(i)?;
        let value = entry.value.clone().downcast::<T>().ok();
        self.entries.push_back(entry);
        value
    }

    fn insert(&mut self, hash: u64, bytes: &[u8], value: Arc<dyn Any + Send + Sync>) {
        if bytes.len() > MAX_CACHED_BYTES {
            return;
        }
        self.bytes += bytes.len();
        self.entries.push_back(Entry { hash, encoding: bytes.into(), value });
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_CACHED_BYTES {
            let Some(old) = self.entries.pop_front() else { break };
            self.bytes -= old.encoding.len();
        }
    }
}

/// What a plugin learnt about shared decoded values (the [`DecodedOnce::shared`] of a
/// message its members received), remembered per process for the [`REMEMBERED`] values used
/// last. A member that received the same value as another member of its process, and holds
/// the same shared state, can reuse what that member checked instead of checking again.
///
/// Each value is held while remembered, so that its address is not reused, and remembered
/// per DH group: what a check found holds for one group's encodings.
pub struct Remembered<T, F> {
    entries: Mutex<VecDeque<(Arc<T>, crate::GroupId, F)>>,
}

/// How many values a [`Remembered`] keeps facts about: a join has one big broadcast in
/// flight, a merge one per group.
pub(crate) const REMEMBERED: usize = 4;

impl<T, F: Default> Remembered<T, F> {
    /// Nothing remembered (for a `static`).
    pub const fn new() -> Self {
        Self { entries: Mutex::new(VecDeque::new()) }
    }

    /// Runs `f` on the facts remembered about `value` in `group` (the default, if none), and
    /// remembers them as `f` left them.
    pub fn with<R>(&self, value: &Arc<T>, group: crate::GroupId, f: impl FnOnce(&mut F) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let known = entries.iter().position(|(v, g, _)| Arc::ptr_eq(v, value) && *g == group);
        let (value, group, mut facts) = match known.and_then(|i| entries.remove(i)) {
            Some(entry) => entry,
            None => (value.clone(), group, F::default()),
        };
        let result = f(&mut facts);
        entries.push_back((value, group, facts));
        while entries.len() > REMEMBERED {
            entries.pop_front();
        }
        result
    }
}

impl<T, F: Default> Default for Remembered<T, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, F> std::fmt::Debug for Remembered<T, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remembered")
    }
}

/// Counts a session of this plugin as alive for as long as it is held: a process with one
/// member keeps nothing decoded (see [`decode_shared`]).
#[derive(Debug)]
pub(crate) struct LiveSession(());

impl LiveSession {
    pub(crate) fn new() -> Self {
        LIVE_SESSIONS.fetch_add(1, Ordering::Relaxed);
        Self(())
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        LIVE_SESSIONS.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tests share the process's cache: one at a time, or one could evict another's entry.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn alone() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Message {
        header: u32,
        big: DecodedOnce<Vec<u64>>,
    }

    fn encoded(len: u64) -> Vec<u8> {
        postcard::to_allocvec(&Message { header: 7, big: DecodedOnce::new((0..len).collect()) })
            .expect("encodes")
    }

    #[test]
    fn receivers_of_equal_bytes_share_one_value_while_sessions_are_alive() {
        let _alone = alone();
        let (_a, _b) = (LiveSession::new(), LiveSession::new());
        let bytes = encoded(20_000);
        assert!(bytes.len() > MIN_CACHED_BYTES);
        let first: Message = postcard::from_bytes(&bytes).expect("decodes");
        let second: Message = postcard::from_bytes(&bytes).expect("decodes");
        assert_eq!(first.big.len(), 20_000);
        assert!(Arc::ptr_eq(first.big.shared(), second.big.shared()), "decoded once");
        assert_eq!(first, second);
        // Other bytes, other value; small values are not shared.
        let other: Message = postcard::from_bytes(&encoded(20_001)).expect("decodes");
        assert!(!Arc::ptr_eq(first.big.shared(), other.big.shared()));
        let small = encoded(10);
        let (x, y): (Message, Message) =
            (postcard::from_bytes(&small).expect("decodes"), postcard::from_bytes(&small).unwrap());
        assert!(!Arc::ptr_eq(x.big.shared(), y.big.shared()));
        assert_eq!(x, y);
    }

    #[test]
    fn a_changed_byte_is_decoded_afresh_and_bad_encodings_are_refused() {
        let _alone = alone();
        let (_a, _b) = (LiveSession::new(), LiveSession::new());
        let bytes = encoded(25_000);
        let first: Message = postcard::from_bytes(&bytes).expect("decodes");
        let mut changed = bytes.clone();
        let last = changed.len() - 1;
        changed[last] ^= 1;
        let second: Message = postcard::from_bytes(&changed).expect("decodes");
        assert_ne!(first.big[24_999], second.big[24_999]);
        // The inner byte string must hold exactly one value.
        let mut inner = postcard::to_allocvec(&(0u32, 1u8)).expect("encodes");
        inner.push(0);
        let with_trailing =
            postcard::to_allocvec(&(9u32, serde_bytes::Bytes::new(&inner))).expect("encodes");
        assert!(postcard::from_bytes::<(u32, DecodedOnce<(u32, u8)>)>(&with_trailing).is_err());
        let truncated = &bytes[..bytes.len() / 2];
        assert!(postcard::from_bytes::<Message>(truncated).is_err());
    }

    #[test]
    fn one_session_keeps_nothing() {
        let _alone = alone();
        let inner = postcard::to_allocvec(&(0..20_000u64).collect::<Vec<u64>>()).expect("encodes");
        assert!(inner.len() >= MIN_CACHED_BYTES, "large enough to be kept for two sessions");
        let decode = || decode_shared_among::<Vec<u64>>(&inner, 1).expect("decodes");
        let (first, second) = (decode(), decode());
        assert!(!Arc::ptr_eq(&first, &second));
        let hash = content_hash(&inner[..]);
        let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(cache.entries.iter().all(|e| e.hash != hash), "nothing kept for one session");
    }

    #[test]
    fn facts_are_remembered_per_value_and_group_for_the_last_few_values() {
        static SEEN: Remembered<u32, u32> = Remembered::new();
        let values: Vec<Arc<u32>> = (0..=REMEMBERED as u32).map(Arc::new).collect();
        let ffdhe = crate::GroupId::Ffdhe2048;
        let count = |v: &Arc<u32>, g| {
            SEEN.with(v, g, |n| {
                *n += 1;
                *n
            })
        };
        assert_eq!((count(&values[0], ffdhe), count(&values[0], ffdhe)), (1, 2));
        let equal_elsewhere = Arc::new(0);
        assert_eq!(count(&equal_elsewhere, ffdhe), 1, "by address, not by content");
        assert_eq!(count(&values[0], crate::GroupId::Ffdhe3072), 1, "per group");
        for v in &values[1..] {
            count(v, ffdhe);
        }
        assert_eq!(count(&values[0], ffdhe), 1, "the least recently used value was forgotten");
        assert_eq!(count(&values[REMEMBERED], ffdhe), 2);
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let _alone = alone();
        let (_a, _b) = (LiveSession::new(), LiveSession::new());
        for len in 0..3 * MAX_ENTRIES as u64 {
            let _: Message = postcard::from_bytes(&encoded(10_000 + len)).expect("decodes");
        }
        let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(cache.entries.len() <= MAX_ENTRIES);
        assert!(cache.bytes <= MAX_CACHED_BYTES);
        assert_eq!(cache.bytes, cache.entries.iter().map(|e| e.encoding.len()).sum::<usize>());
    }
}
