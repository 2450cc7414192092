//! A cache of access tokens whose signature this node has already verified, so that a client
//! that sends the same token on every request (they all do) costs one HMAC check per token,
//! not one per request.
//!
//! Only the signature and the decoding are skipped: the cached expiry is checked on every use,
//! and the login session's generation (revocation) is checked by the caller as for a fresh
//! token. A token is found only by its exact text.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use o16n_auth::tokens::AccessClaims;

/// The most tokens kept; when full, the cache starts again empty (tokens live minutes, so
/// re-verifying the active ones is cheap).
const CAPACITY: usize = 10_000;

#[derive(Default)]
pub(crate) struct VerifiedTokens {
    entries: RwLock<HashMap<String, Arc<AccessClaims>>>,
}

impl VerifiedTokens {
    /// The claims of a token verified before, if it has not expired at `now` (Unix seconds).
    pub(crate) fn get(&self, token: &str, now: i64) -> Option<Arc<AccessClaims>> {
        let entries = self
            .entries
            .read()
            .expect("verified token cache lock poisoned. This is a bug.");
        entries
            .get(token)
            .filter(|claims| claims.exp > now)
            .cloned()
    }

    /// Remembers the claims of a token whose signature was just verified.
    pub(crate) fn put(&self, token: &str, claims: Arc<AccessClaims>) {
        let mut entries = self
            .entries
            .write()
            .expect("verified token cache lock poisoned. This is a bug.");
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(token.to_owned(), claims);
    }
}
