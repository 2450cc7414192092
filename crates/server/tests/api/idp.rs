//! An OpenID Connect provider for the token tests, on a loopback port: its discovery document
//! and key set are served over HTTP as a real provider serves them, and tokens are signed with
//! its own RSA keys (RS256, as Azure AD signs them). Keys can be added (rotation) and the
//! provider taken down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{Value, json};

/// The audience the tests' tokens are issued for.
pub(crate) const AUDIENCE: &str = "o16n-api";

#[derive(Default)]
struct Provider {
    issuer: Mutex<String>,
    /// Published keys, and unpublished ones tests sign with to play a stranger.
    keys: Mutex<Vec<(String, EncodingKey, Jwk, bool)>>,
    key_set_fetches: AtomicUsize,
    down: AtomicBool,
}

pub(crate) struct TestIdp {
    provider: Arc<Provider>,
    pub(crate) issuer: String,
}

impl TestIdp {
    /// Starts the provider with one published key, `k1`.
    pub(crate) async fn start() -> TestIdp {
        let provider = Arc::new(Provider::default());
        let router = axum::Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/keys", get(key_set))
            .with_state(provider.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        *provider.issuer.lock().unwrap() = issuer.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        let idp = TestIdp { provider, issuer };
        idp.add_key("k1", true);
        idp
    }

    /// Makes a new RSA key; a published one appears in the key set.
    pub(crate) fn add_key(&self, kid: &str, published: bool) {
        let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        let key = EncodingKey::from_rsa_der(private.to_pkcs1_der().unwrap().as_bytes());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        self.provider
            .keys
            .lock()
            .unwrap()
            .push((kid.to_owned(), key, jwk, published));
    }

    /// Takes the provider down (every request 503) or brings it back.
    pub(crate) fn set_down(&self, down: bool) {
        self.provider.down.store(down, Ordering::SeqCst);
    }

    /// How often the key set was fetched.
    pub(crate) fn key_set_fetches(&self) -> usize {
        self.provider.key_set_fetches.load(Ordering::SeqCst)
    }

    /// Claims of a good token for `upn` in `groups`, valid from now for ten minutes.
    pub(crate) fn claims(&self, upn: &str, groups: &[&str]) -> Value {
        let now = o16n_types::Clock::default().now_ms() / 1000;
        json!({
            "iss": self.issuer, "aud": AUDIENCE, "upn": upn, "groups": groups,
            "iat": now, "nbf": now - 5, "exp": now + 600, "sub": format!("subject-of-{upn}"),
        })
    }

    /// A token with `claims`, signed with key `kid`.
    pub(crate) fn sign(&self, kid: &str, claims: &Value) -> String {
        let keys = self.provider.keys.lock().unwrap();
        let (_, key, _, _) = keys.iter().find(|(id, ..)| id == kid).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, key).unwrap()
    }

    /// A good token of `upn` in `groups`, signed with `k1`.
    pub(crate) fn token(&self, upn: &str, groups: &[&str]) -> String {
        self.sign("k1", &self.claims(upn, groups))
    }
}

async fn discovery(State(provider): State<Arc<Provider>>) -> Result<Json<Value>, StatusCode> {
    if provider.down.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let issuer = provider.issuer.lock().unwrap().clone();
    Ok(Json(json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/keys"),
        "id_token_signing_alg_values_supported": ["RS256"],
    })))
}

async fn key_set(State(provider): State<Arc<Provider>>) -> Result<Json<JwkSet>, StatusCode> {
    if provider.down.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    provider.key_set_fetches.fetch_add(1, Ordering::SeqCst);
    let keys = provider.keys.lock().unwrap();
    Ok(Json(JwkSet {
        keys: keys
            .iter()
            .filter(|(.., published)| *published)
            .map(|(_, _, jwk, _)| jwk.clone())
            .collect(),
    }))
}
