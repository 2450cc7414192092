//! This node's caches of what the database or a signature check already answered: login
//! sessions' generations, verified bearer tokens, service definitions.
//!
//! They are one type, [`ExpiringCache`]: a bounded `moka` cache whose entries each carry their
//! own expiry, read from the [`Clock`] every other expiry is measured with, so that a test moves
//! the clock forward instead of waiting. When full, moka evicts the entries least likely to be
//! used again; an expired entry is never returned, whether or not it was evicted yet.

use std::hash::Hash;
use std::time::Duration;

use o16n_types::Clock;

/// A bounded map whose entries expire at a time of the node's clock.
pub(crate) struct ExpiringCache<K, V> {
    entries: moka::sync::Cache<K, (V, i64)>,
    clock: Clock,
}

impl<K, V> ExpiringCache<K, V>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// A cache of at most `capacity` entries, measuring expiry by `clock`.
    pub(crate) fn new(capacity: u64, clock: Clock) -> Self {
        ExpiringCache {
            entries: moka::sync::Cache::new(capacity),
            clock,
        }
    }

    /// The value kept for `key`, unless it has expired.
    pub(crate) fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (value, expires_at_ms) = self.entries.get(key)?;
        (expires_at_ms > self.clock.now_ms()).then_some(value)
    }

    /// Keeps `value` until `expires_at_ms` (Unix milliseconds).
    pub(crate) fn put_until(&self, key: K, value: V, expires_at_ms: i64) {
        self.entries.insert(key, (value, expires_at_ms));
    }

    /// Keeps `value` for `lifetime` from now.
    pub(crate) fn put_for(&self, key: K, value: V, lifetime: Duration) {
        let expires_at_ms = self
            .clock
            .now_ms()
            .saturating_add(i64::try_from(lifetime.as_millis()).unwrap_or(i64::MAX));
        self.put_until(key, value, expires_at_ms);
    }

    /// Forgets what is kept for `key`.
    pub(crate) fn forget<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.entries.invalidate(key);
    }

    /// Forgets everything.
    pub(crate) fn clear(&self) {
        self.entries.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_returned_until_its_expiry_by_the_clock() {
        let clock = Clock::default();
        let cache = ExpiringCache::new(10, clock.clone());
        cache.put_for("s".to_owned(), 2, Duration::from_secs(30));
        assert_eq!(cache.get("s"), Some(2));
        clock.advance(Duration::from_secs(29));
        assert_eq!(cache.get("s"), Some(2));
        clock.advance(Duration::from_secs(1));
        assert_eq!(cache.get("s"), None);
    }

    #[test]
    fn forgotten_and_cleared_entries_are_gone() {
        let cache = ExpiringCache::new(10, Clock::default());
        cache.put_for("a".to_owned(), 1, Duration::from_secs(60));
        cache.put_for("b".to_owned(), 2, Duration::from_secs(60));
        cache.forget("a");
        assert_eq!(cache.get("a"), None);
        assert_eq!(cache.get("b"), Some(2));
        cache.clear();
        assert_eq!(cache.get("b"), None);
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = ExpiringCache::new(100, Clock::default());
        for key in 0..10_000 {
            cache.put_for(key, key, Duration::from_secs(60));
        }
        cache.entries.run_pending_tasks();
        assert!(cache.entries.entry_count() <= 100);
    }
}
