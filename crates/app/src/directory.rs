//! Signing in through the organisation's directory: LDAP users at `POST /login`, and bearer
//! tokens of an OpenID Connect provider on every request.
//!
//! Directory users are kept as accounts without a password (their display name, e-mail and
//! role as their groups last gave it), so that their login sessions work as local users' do.
//! The directory is asked at login, and again at a renewal once the groups are older than
//! `auth.roles.cache_lifetime_minutes`; never per request. A provider's token is checked once
//! per node and then cached until it expires, like o16n's own tokens.
//!
//! Names are never shared between kinds of account: a directory user or a provider's user
//! whose name is that of a local account cannot sign in (the operator removes one of them).

use std::sync::Arc;

use o16n_directory::{Directory, DirectoryError, OidcProvider};
use o16n_store::{DirectoryProfile, UserRecord};
use o16n_types::{Role, Username};

use crate::login::TokenPair;
use crate::users::ADMIN_USERNAME;
use crate::{App, AppError, Principal};

impl App {
    /// Checks a user name and password with the directory and starts a login session.
    pub(crate) async fn login_with_directory(
        &self,
        directory: &dyn Directory,
        username: &str,
        password: &str,
    ) -> Result<TokenPair, AppError> {
        let user = directory.authenticate(username, password).await?;
        let name = directory_username(&user.unique_id)?;
        let role = self.role_of_groups(&name, &user.groups)?;
        let now = self.now_unix();
        let profile = DirectoryProfile {
            display_name: user.display_name,
            email: user.email,
            groups_checked_at: now,
        };
        if !self
            .store()
            .save_directory_user(&name, role, &profile, now)
            .await?
        {
            return Err(name_taken(&name));
        }
        tracing::info!(user = %name, role = %role, "directory user signed in");
        self.start_login_session(&name, role).await
    }

    /// A directory user's role at a renewal: as stored while their groups are fresh, else as
    /// the directory says now. [`AppError::InvalidRefreshToken`] when the directory no longer
    /// has them or is no longer configured.
    pub(crate) async fn directory_role_now(
        &self,
        user: &UserRecord,
        profile: &DirectoryProfile,
        now: i64,
    ) -> Result<Role, AppError> {
        let sign_in = &self.inner.config.sign_in;
        let Some(directory) = &sign_in.ldap else {
            return Err(AppError::InvalidRefreshToken);
        };
        let age = now.saturating_sub(profile.groups_checked_at);
        if age < sign_in.role_cache_lifetime.as_secs() as i64 {
            return Ok(user.role);
        }
        let Some(found) = directory.lookup(user.username.as_str()).await? else {
            tracing::info!(user = %user.username, "the directory no longer has this user");
            return Err(AppError::InvalidRefreshToken);
        };
        let role = self.role_of_groups(&user.username, &found.groups)?;
        let refreshed = DirectoryProfile {
            display_name: found.display_name,
            email: found.email,
            groups_checked_at: now,
        };
        self.store()
            .save_directory_user(&user.username, role, &refreshed, now)
            .await?;
        Ok(role)
    }

    /// Checks an identity provider's token and remembers who it names until it expires.
    pub(crate) async fn authenticate_external(
        &self,
        provider: &OidcProvider,
        token: &str,
        now: i64,
    ) -> Result<Principal, AppError> {
        let identity = provider.verify(token).await.map_err(|err| match err {
            // The message says what is wrong with the token; the provider being down is a 503.
            DirectoryError::Token(_) | DirectoryError::Unavailable(_) => AppError::Directory(err),
            other => AppError::Internal(other.to_string()),
        })?;
        let name = directory_username(&identity.username)?;
        if let Some(existing) = self.store().find_user(&name).await?
            && existing.directory.is_none()
        {
            return Err(name_taken(&name));
        }
        let role = self.role_of_groups(&name, &identity.groups)?;
        let principal = Principal {
            username: name,
            role,
            login_session_id: None,
        };
        self.inner.external_tokens.put_until(
            token.to_owned(),
            Arc::new(principal.clone()),
            identity
                .expires_at
                .min(now + EXTERNAL_TOKEN_CACHE_SECONDS)
                .saturating_mul(1000),
        );
        Ok(principal)
    }

    /// The role the configured mapping gives a member of `groups`.
    fn role_of_groups(&self, name: &Username, groups: &[String]) -> Result<Role, AppError> {
        self.inner
            .config
            .sign_in
            .roles
            .role_for(groups.iter().map(String::as_str))
            .ok_or_else(|| {
                tracing::info!(user = %name, ?groups, "no configured group gives this user a role");
                AppError::Forbidden(format!(
                    "{name} has no role on this server: none of their groups is named in auth.roles"
                ))
            })
    }
}

/// How long an identity provider's checked token is trusted without being checked again, at
/// most: a role change in the provider reaches long-lived tokens within this time.
const EXTERNAL_TOKEN_CACHE_SECONDS: i64 = 300;

/// The o16n user name of a directory or provider identity.
fn directory_username(unique_id: &str) -> Result<Username, AppError> {
    if unique_id == ADMIN_USERNAME {
        // `admin` is the local administrator; a directory user of that name would own its
        // services.
        return Err(name_taken(&Username::parse(ADMIN_USERNAME).expect("valid")));
    }
    Username::parse(unique_id).map_err(|err| {
        AppError::Directory(DirectoryError::Rejected(format!(
            "the directory's name for this user cannot be an o16n user name ({err}); choose another unique user identifier attribute or claim"
        )))
    })
}

fn name_taken(name: &Username) -> AppError {
    AppError::Directory(DirectoryError::Rejected(format!(
        "a local account is named {name}, so the directory user of that name cannot sign in"
    )))
}
