//! Logging in, renewing and revoking token pairs, and authenticating requests.
//!
//! `POST /login` checks local accounts, or the LDAP directory when one is configured (then
//! local accounts are off, except `admin` when the operator keeps it). Either way the caller
//! gets o16n's own token pair, so renewal, revocation and the per-request check are the same
//! for everyone. Bearer tokens of an OpenID Connect provider are accepted beside o16n's own;
//! see `directory.rs` for both directory paths.

use o16n_auth::tokens::RefreshToken;
use o16n_store::LoginSessionRecord;
use std::net::IpAddr;

use o16n_types::{Code, ErrorCode, Role, Username};

use crate::events::Event;
use crate::login_guard::Attempt;
use crate::users::ADMIN_USERNAME;
use crate::{App, AppError};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Who is calling.
    pub username: Username,
    /// Their role when the token was issued.
    pub role: Role,
    /// The login session the token belongs to (the audit log's `LoginSessionId`); `None` for
    /// an identity provider's token, which o16n did not issue.
    pub login_session_id: Option<String>,
}

/// What a successful login or renewal hands out.
#[derive(Debug, Clone)]
pub struct TokenPair {
    /// The bearer token for API calls.
    pub access_token: String,
    /// The opaque token that renews the pair once.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// When the access token expires, Unix seconds.
    pub expires_on: i64,
}

/// How users may sign in, for a sign-in page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInMethods {
    /// With a user name and password: local accounts, or the LDAP directory.
    pub password: bool,
    /// With an access token of the OpenID Connect provider.
    pub provider_token: bool,
}

impl App {
    /// The ways of signing in that the configuration allows.
    pub fn sign_in_methods(&self) -> SignInMethods {
        let sign_in = &self.inner.config.sign_in;
        SignInMethods {
            password: sign_in.ldap.is_some()
                || !sign_in.directory_enabled()
                || sign_in.local_admin_enabled,
            provider_token: sign_in.oidc.is_some(),
        }
    }

    /// Checks a user name and password from `client` (its address, when known) and starts a
    /// login session. Failed sign-ins are limited per client address and per user name (429
    /// with the time to wait), and so are password checks at once (see `login_guard.rs`).
    #[tracing::instrument(skip_all, fields(user = username))]
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<TokenPair, AppError> {
        let attempt = self.inner.login_guard.admit(client, username)?;
        let sign_in = &self.inner.config.sign_in;
        let (provider, outcome) = match &sign_in.ldap {
            Some(directory) if !(username == ADMIN_USERNAME && sign_in.local_admin_enabled) => (
                "ldap",
                self.login_with_directory(directory.as_ref(), username, password)
                    .await,
            ),
            _ => (
                "local",
                self.login_locally(username, password, &attempt).await,
            ),
        };
        if let Some(metrics) = self.metrics() {
            metrics.login(provider, outcome.is_ok());
        }
        if let Err(err) = &outcome
            && err.code() == Code::Unauthorized
        {
            attempt.failed();
        }
        outcome
    }

    /// Whether a local account may sign in now: all may without a directory or provider; with
    /// one, only `admin`, and only when the operator keeps it on.
    fn local_account_allowed(&self, username: &Username) -> bool {
        let sign_in = &self.inner.config.sign_in;
        !sign_in.directory_enabled()
            || (username.as_str() == ADMIN_USERNAME && sign_in.local_admin_enabled)
    }

    async fn login_locally(
        &self,
        username: &str,
        password: &str,
        attempt: &Attempt<'_>,
    ) -> Result<TokenPair, AppError> {
        let user = match Username::parse(username) {
            Ok(name) if self.local_account_allowed(&name) => self
                .store()
                .find_user(&name)
                .await?
                .filter(|user| user.directory.is_none()),
            _ => None,
        };
        // Argon2 takes tens of megabytes and milliseconds: only so many run at once.
        let check = self.inner.login_guard.password_check().await?;
        attempt.still_allowed()?;
        let stored_hash = user.as_ref().map(|user| user.password_hash.clone());
        let matches = check.verify(password.to_owned(), stored_hash).await?;
        match user {
            Some(user) if matches => self.start_login_session(&user.username, user.role).await,
            _ => Err(AppError::InvalidCredentials),
        }
    }

    /// Starts a login session for a user whose credentials were checked, and issues its first
    /// token pair.
    pub(crate) async fn start_login_session(
        &self,
        username: &Username,
        role: Role,
    ) -> Result<TokenPair, AppError> {
        let now = self.now_unix();
        let lifetimes = self.inner.config.token_lifetimes;
        // Logins are rare next to requests, which makes them a cheap place to forget login
        // sessions that can no longer be renewed.
        self.store()
            .prune_login_sessions(
                now - lifetimes.refresh_idle.as_secs() as i64,
                now - lifetimes.max_session.as_secs() as i64,
            )
            .await?;

        let refresh = RefreshToken::generate();
        let session = LoginSessionRecord {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.clone(),
            refresh_digest: refresh.digest,
            generation: 1,
            created_at: now,
            last_used_at: now,
        };
        self.store().insert_login_session(&session).await?;
        self.remember_login_session(&session.id, Some(session.generation));
        tracing::info!(login_session = %session.id, "user logged in");
        self.token_pair(
            username,
            role,
            &session.id,
            session.generation,
            refresh.plain,
            now,
        )
    }

    /// Redeems a refresh token for a new pair; the old pair stops working.
    pub async fn renew(&self, refresh_token: &str) -> Result<TokenPair, AppError> {
        let digest = RefreshToken::digest_of(refresh_token);
        let session = self
            .store()
            .find_login_session_by_refresh(&digest)
            .await?
            .ok_or(AppError::InvalidRefreshToken)?;
        let now = self.now_unix();
        let lifetimes = self.inner.config.token_lifetimes;
        let idle_for = now - session.last_used_at;
        let age = now - session.created_at;
        if idle_for > lifetimes.refresh_idle.as_secs() as i64
            || age > lifetimes.max_session.as_secs() as i64
        {
            self.end_login_session(&session.id).await?;
            return Err(AppError::InvalidRefreshToken);
        }
        // The role is read again so that a renewed token reflects a changed role.
        let user = self
            .store()
            .find_user(&session.username)
            .await?
            .ok_or(AppError::InvalidRefreshToken)?;
        let role = match &user.directory {
            Some(profile) => match self.directory_role_now(&user, profile, now).await {
                Ok(role) => role,
                Err(err @ (AppError::InvalidRefreshToken | AppError::Forbidden(_))) => {
                    self.end_login_session(&session.id).await?;
                    return Err(err);
                }
                Err(other) => return Err(other),
            },
            None if self.local_account_allowed(&user.username) => user.role,
            None => {
                self.end_login_session(&session.id).await?;
                return Err(AppError::InvalidRefreshToken);
            }
        };

        let refresh = RefreshToken::generate();
        let renewed = self
            .store()
            .renew_login_session(&session.id, session.generation, &refresh.digest, now)
            .await?;
        if !renewed {
            // Another request redeemed this refresh token first.
            return Err(AppError::InvalidRefreshToken);
        }
        let generation = session.generation + 1;
        self.remember_login_session(&session.id, Some(generation));
        self.announce(&Event::LoginSession(session.id.clone()))
            .await;
        self.token_pair(
            &user.username,
            role,
            &session.id,
            generation,
            refresh.plain,
            now,
        )
    }

    /// Ends the login session of a refresh token, invalidating its access tokens too.
    pub async fn revoke(&self, refresh_token: &str) -> Result<(), AppError> {
        let digest = RefreshToken::digest_of(refresh_token);
        let session = self
            .store()
            .find_login_session_by_refresh(&digest)
            .await?
            .ok_or(AppError::InvalidRefreshToken)?;
        self.end_login_session(&session.id).await?;
        tracing::info!(login_session = %session.id, "refresh token revoked");
        Ok(())
    }

    /// Checks a bearer token, o16n's own or the identity provider's, and returns who is
    /// calling.
    pub async fn authenticate(&self, access_token: &str) -> Result<Principal, AppError> {
        let now = self.now_unix();
        let claims = match self.inner.verified_tokens.get(access_token) {
            Some(claims) => claims,
            None => {
                if let Some(principal) = self.inner.external_tokens.get(access_token) {
                    return Ok(principal.as_ref().clone());
                }
                if let Some(provider) = &self.inner.config.sign_in.oidc
                    && !o16n_auth::oidc::is_signed_with_secret(access_token)
                {
                    return self
                        .authenticate_external(provider, access_token, now)
                        .await;
                }
                let claims =
                    std::sync::Arc::new(self.inner.signer.verify(access_token, now).map_err(
                        |_| AppError::Unauthenticated("invalid or expired access token"),
                    )?);
                self.inner.verified_tokens.put_until(
                    access_token.to_owned(),
                    claims.clone(),
                    claims.exp.saturating_mul(1000),
                );
                claims
            }
        };
        let current_generation = match self.inner.login_sessions.get(&claims.sid) {
            Some(cached) => cached,
            None => {
                let generation = self.store().login_session_generation(&claims.sid).await?;
                self.remember_login_session(&claims.sid, generation);
                generation
            }
        };
        if current_generation != Some(claims.generation) {
            return Err(AppError::Unauthenticated(
                "the access token was revoked or replaced by a newer one",
            ));
        }
        let username = Username::parse(&claims.sub)
            .map_err(|_| AppError::Unauthenticated("invalid or expired access token"))?;
        let role = claims
            .role
            .parse()
            .map_err(|_| AppError::Unauthenticated("invalid or expired access token"))?;
        Ok(Principal {
            username,
            role,
            login_session_id: Some(claims.sid.clone()),
        })
    }

    /// Remembers what the database (or this node's own change) says of a login session: its
    /// generation, or `None` when it ended. A zero check interval remembers nothing, so that
    /// every request asks the database.
    fn remember_login_session(&self, session_id: &str, generation: Option<i64>) {
        let lifetime = self.config().revocation_check_interval;
        if !lifetime.is_zero() {
            self.inner
                .login_sessions
                .put_for(session_id.to_owned(), generation, lifetime);
        }
    }

    pub(crate) async fn end_login_session(&self, session_id: &str) -> Result<(), AppError> {
        self.store().delete_login_session(session_id).await?;
        self.login_sessions_ended(&[session_id.to_owned()]).await;
        Ok(())
    }

    /// Makes ended login sessions fail at once, here and on every other node.
    pub(crate) async fn login_sessions_ended(&self, session_ids: &[String]) {
        for id in session_ids {
            self.remember_login_session(id, None);
            self.announce(&Event::LoginSession(id.clone())).await;
        }
    }

    fn token_pair(
        &self,
        username: &Username,
        role: Role,
        session_id: &str,
        generation: i64,
        refresh_token: String,
        now: i64,
    ) -> Result<TokenPair, AppError> {
        let lifetime = self.inner.config.token_lifetimes.access;
        let (access_token, claims) = self.inner.signer.issue(
            username.as_str(),
            role.as_str(),
            session_id,
            generation,
            now,
            lifetime,
        )?;
        Ok(TokenPair {
            access_token,
            refresh_token,
            expires_in: lifetime.as_secs(),
            expires_on: claims.exp,
        })
    }
}
