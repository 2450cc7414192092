//! A cache of bearer tokens whose signature this node has already verified, so that a client
//! that sends the same token on every request (they all do) costs one signature check per
//! token, not one per request. It keeps o16n's own tokens' claims, and the callers named by an
//! identity provider's tokens.
//!
//! Only the signature and the decoding are skipped: the cached expiry is checked on every use,
//! and the login session's generation (revocation) of o16n's own tokens is checked by the
//! caller as for a fresh token. A token is found only by its exact text.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The most tokens kept; when full, the cache starts again empty (tokens live minutes, so
/// re-verifying the active ones is cheap).
const CAPACITY: usize = 10_000;

/// What is kept of each token, with its expiry in Unix seconds.
type Entry<T> = (Arc<T>, i64);

pub(crate) struct VerifiedTokens<T> {
    entries: RwLock<HashMap<String, Entry<T>>>,
}

impl<T> Default for VerifiedTokens<T> {
    fn default() -> Self {
        VerifiedTokens {
            entries: RwLock::default(),
        }
    }
}

impl<T> VerifiedTokens<T> {
    /// What a token verified before gave, if it has not expired at `now` (Unix seconds).
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Arc<T>> {
        let entries = self
            .entries
            .read()
            .expect("verified token cache lock poisoned. This is a bug.");
        entries
            .get(token)
            .filter(|(_, expires_at)| *expires_at > now)
            .map(|(value, _)| value.clone())
    }

    /// Remembers what a token whose signature was just verified gave, until `expires_at`.
    pub(crate) fn put(&self, token: &str, value: Arc<T>, expires_at: i64) {
        let mut entries = self
            .entries
            .write()
            .expect("verified token cache lock poisoned. This is a bug.");
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(token.to_owned(), (value, expires_at));
    }
}
