//! Bearer tokens of an OpenID Connect provider (`auth.oidc`): the provider's discovery
//! document and signing keys, fetched from the configured authority and cached, and the
//! check of a token against them.
//!
//! Keys are fetched on first use, again when they are older than [`OidcSettings::key_max_age`],
//! and again when a token names a key id the cache does not hold (the provider rotated its
//! keys), at most once per [`OidcSettings::key_refetch_interval`], so that tokens with made-up
//! key ids cannot make the server hammer the provider. A failed fetch keeps the keys it had.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use o16n_auth::AuthError;
use o16n_auth::oidc::{ExternalIdentity, OidcRules, signing_key_id, verify_external_token};
use o16n_types::Clock;
use serde::Deserialize;

use crate::DirectoryError;

/// Where the provider is and how its tokens are read (`auth.oidc`).
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The issuer URL; the discovery document is at
    /// `{authority}/.well-known/openid-configuration`.
    pub authority: String,
    /// The audience tokens must be meant for.
    pub audience: String,
    /// The claim that names the user.
    pub username_claim: String,
    /// The claim that lists the user's groups.
    pub groups_claim: String,
    /// The longest one fetch from the provider may take.
    pub timeout: Duration,
    /// The shortest time between two fetches caused by unknown key ids.
    pub key_refetch_interval: Duration,
    /// Keys older than this are fetched again before use.
    pub key_max_age: Duration,
}

/// An OpenID Connect provider whose tokens are accepted.
pub struct OidcProvider {
    settings: OidcSettings,
    http: reqwest::Client,
    clock: Clock,
    /// The keys and what is known about them; held across a fetch so that concurrent
    /// requests wait for one fetch instead of each making their own.
    cache: tokio::sync::Mutex<KeyCache>,
}

#[derive(Default)]
struct KeyCache {
    keys: Option<ProviderKeys>,
    /// When the last fetch was tried (Unix milliseconds of the clock), successful or not.
    last_attempt_ms: Option<i64>,
}

#[derive(Clone)]
struct ProviderKeys {
    rules: Arc<OidcRules>,
    set: Arc<JwkSet>,
    fetched_at_ms: i64,
}

/// The part of the discovery document o16n reads.
#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

impl OidcProvider {
    /// A provider; nothing is fetched until the first token or check.
    pub fn new(settings: OidcSettings, clock: Clock) -> Result<OidcProvider, DirectoryError> {
        let authority = settings.authority.trim_end_matches('/');
        // The keys decide who may call: fetched over plain HTTP, anyone on the path could
        // substitute their own. Plain HTTP is only for a provider on this machine.
        let acceptable = authority.starts_with("https://")
            || (authority.starts_with("http://") && crate::on_this_machine(authority));
        if !acceptable {
            return Err(DirectoryError::Misconfigured(format!(
                "auth.oidc.authority must be an https:// URL (http:// only on this machine), not {:?}",
                settings.authority
            )));
        }
        if settings.audience.is_empty() {
            return Err(DirectoryError::Misconfigured(
                "auth.oidc.audience must name the audience tokens are issued for".to_owned(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .build()
            .map_err(|err| DirectoryError::Misconfigured(format!("HTTP client: {err}")))?;
        Ok(OidcProvider {
            settings,
            http,
            clock,
            cache: tokio::sync::Mutex::new(KeyCache::default()),
        })
    }

    /// Checks a token and reads who it names.
    pub async fn verify(&self, token: &str) -> Result<ExternalIdentity, DirectoryError> {
        let now_s = self.clock.now_ms() / 1000;
        let keys = self.keys(None).await?;
        match verify_external_token(token, &keys.set, &keys.rules, now_s) {
            Err(AuthError::UnknownSigningKey) => {
                let kid = signing_key_id(token)?;
                let keys = self.keys(kid.as_deref()).await?;
                Ok(verify_external_token(token, &keys.set, &keys.rules, now_s)?)
            }
            outcome => Ok(outcome?),
        }
    }

    /// Whether the provider's keys can be had (fetched now if there are none yet).
    pub async fn check(&self) -> Result<(), DirectoryError> {
        self.keys(None).await.map(drop)
    }

    /// The cached keys, fetched first when there are none, when they are too old, or when
    /// `unknown_kid` is not among them and the last fetch is long enough ago.
    async fn keys(&self, unknown_kid: Option<&str>) -> Result<ProviderKeys, DirectoryError> {
        let mut cache = self.cache.lock().await;
        let now_ms = self.clock.now_ms();
        let since = |at: i64| Duration::from_millis(now_ms.saturating_sub(at).max(0) as u64);
        let may_fetch = cache
            .last_attempt_ms
            .is_none_or(|at| since(at) >= self.settings.key_refetch_interval);
        let wanted = match &cache.keys {
            None => true,
            Some(keys) if since(keys.fetched_at_ms) >= self.settings.key_max_age => true,
            Some(keys) => unknown_kid.is_some_and(|kid| keys.set.find(kid).is_none()),
        };
        // Without keys every request would fail anyway, so the first fetch is retried at once.
        if wanted && (may_fetch || cache.keys.is_none()) {
            cache.last_attempt_ms = Some(now_ms);
            match self.fetch(now_ms).await {
                Ok(keys) => cache.keys = Some(keys),
                Err(err) => match &cache.keys {
                    Some(_) => tracing::warn!(
                        "cannot refresh the identity provider's keys, keeping the old ones: {err}"
                    ),
                    None => return Err(err),
                },
            }
        }
        cache.keys.clone().ok_or_else(|| {
            DirectoryError::Unavailable("the identity provider's keys are not known".to_owned())
        })
    }

    async fn fetch(&self, now_ms: i64) -> Result<ProviderKeys, DirectoryError> {
        let authority = self.settings.authority.trim_end_matches('/');
        let discovery: Discovery = self
            .get_json(&format!("{authority}/.well-known/openid-configuration"))
            .await?;
        let set: JwkSet = self.get_json(&discovery.jwks_uri).await?;
        tracing::info!(
            keys = set.keys.len(),
            "fetched the identity provider's signing keys"
        );
        Ok(ProviderKeys {
            rules: Arc::new(OidcRules {
                // The discovery document's issuer is the one tokens carry (Azure AD's v1
                // tokens name another host than the authority they are discovered from).
                issuer: discovery.issuer,
                audience: self.settings.audience.clone(),
                username_claim: self.settings.username_claim.clone(),
                groups_claim: self.settings.groups_claim.clone(),
            }),
            set: Arc::new(set),
            fetched_at_ms: now_ms,
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, DirectoryError> {
        let failed = |why: String| {
            DirectoryError::Unavailable(format!("the identity provider failed at {url}: {why}"))
        };
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|err| failed(err.to_string()))?;
        if !response.status().is_success() {
            return Err(failed(format!("HTTP {}", response.status())));
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| failed(err.to_string()))?;
        serde_json::from_slice(&body).map_err(|err| failed(format!("unexpected answer: {err}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(authority: &str) -> OidcSettings {
        OidcSettings {
            authority: authority.to_owned(),
            audience: "o16n".to_owned(),
            username_claim: "upn".to_owned(),
            groups_claim: "groups".to_owned(),
            timeout: Duration::from_secs(1),
            key_refetch_interval: Duration::from_secs(60),
            key_max_age: Duration::from_secs(3600),
        }
    }

    #[test]
    fn keys_come_over_https_or_from_this_machine() {
        // The server installs the process's TLS provider at start; the HTTP client needs it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        for good in [
            "https://login.microsoftonline.com/tenant/v2.0",
            "http://127.0.0.1:8080",
            "http://localhost:9000/realm",
        ] {
            assert!(
                OidcProvider::new(settings(good), Clock::default()).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "http://idp.corp.example",
            "http://localhost.evil.example",
            "http://127.evil.example",
            "ftp://x",
            "",
        ] {
            assert!(
                matches!(
                    OidcProvider::new(settings(bad), Clock::default()),
                    Err(DirectoryError::Misconfigured(_))
                ),
                "{bad}"
            );
        }
    }
}
