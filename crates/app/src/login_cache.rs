//! A short-lived cache of login-session generations, so that authenticating a request does not
//! cost a database round trip every time.
//!
//! Every request's access token must belong to a login session that still exists at the same
//! generation. Asking the database each time would put a query on the hot path of every
//! consumption; instead each node remembers the answer for `revocation_check_interval`. Renewals
//! and revocations made on this node update the cache at once.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// The most entries kept before stale ones are swept out.
const SWEEP_THRESHOLD: usize = 10_000;

pub(crate) struct LoginSessionCache {
    ttl: Duration,
    entries: RwLock<HashMap<String, CachedGeneration>>,
}

#[derive(Clone, Copy)]
struct CachedGeneration {
    /// `None` means the session no longer exists.
    generation: Option<i64>,
    checked_at: Instant,
}

impl LoginSessionCache {
    pub(crate) fn new(ttl: Duration) -> Self {
        LoginSessionCache {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached generation of a login session, if the cache still trusts it.
    /// The outer `None` means "ask the database".
    pub(crate) fn get(&self, session_id: &str) -> Option<Option<i64>> {
        let entries = self
            .entries
            .read()
            .expect("login cache lock poisoned. This is a bug.");
        entries
            .get(session_id)
            .filter(|entry| entry.checked_at.elapsed() < self.ttl)
            .map(|entry| entry.generation)
    }

    /// Forgets what is cached about a login session (another node changed it).
    pub(crate) fn forget(&self, session_id: &str) {
        self.entries
            .write()
            .expect("login cache lock poisoned. This is a bug.")
            .remove(session_id);
    }

    /// Forgets everything cached.
    pub(crate) fn clear(&self) {
        self.entries
            .write()
            .expect("login cache lock poisoned. This is a bug.")
            .clear();
    }

    /// Records what the database (or this node's own change) says about a login session.
    pub(crate) fn put(&self, session_id: &str, generation: Option<i64>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self
            .entries
            .write()
            .expect("login cache lock poisoned. This is a bug.");
        if entries.len() >= SWEEP_THRESHOLD {
            let ttl = self.ttl;
            entries.retain(|_, entry| entry.checked_at.elapsed() < ttl);
        }
        entries.insert(
            session_id.to_owned(),
            CachedGeneration {
                generation,
                checked_at: Instant::now(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_the_interval() {
        let cache = LoginSessionCache::new(Duration::from_millis(30));
        cache.put("s", Some(2));
        assert_eq!(cache.get("s"), Some(Some(2)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(cache.get("s"), None);
    }

    #[test]
    fn a_zero_interval_caches_nothing() {
        let cache = LoginSessionCache::new(Duration::ZERO);
        cache.put("s", Some(1));
        assert_eq!(cache.get("s"), None);
    }

    #[test]
    fn a_revocation_is_remembered_as_absent() {
        let cache = LoginSessionCache::new(Duration::from_secs(60));
        cache.put("s", Some(1));
        cache.put("s", None);
        assert_eq!(cache.get("s"), Some(None));
    }
}
