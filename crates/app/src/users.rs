//! Local accounts: the bootstrap of `admin` and the administration of other users.

use o16n_store::{StoreError, UserRecord};
use o16n_types::{Role, Username};

use crate::{App, AppError, run_blocking};

/// The name of the built-in administrator account (an Owner).
pub const ADMIN_USERNAME: &str = "admin";

/// What [`App::ensure_admin`] found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminBootstrap {
    /// The account already existed; nothing changed.
    Existing,
    /// The account was created with the password given by the operator.
    CreatedWithGivenPassword,
    /// The account was created with this generated password, which must be shown once.
    CreatedWithGeneratedPassword(String),
}

impl App {
    /// Creates the `admin` account on first start.
    ///
    /// `initial_password` is the operator's choice (from `O16N_ADMIN_PASSWORD`) and must satisfy
    /// the password rule; without one a strong password is generated and returned.
    pub async fn ensure_admin(
        &self,
        initial_password: Option<&str>,
    ) -> Result<AdminBootstrap, AppError> {
        let admin = Username::parse(ADMIN_USERNAME).expect("the admin name is valid");
        if self.store().find_user(&admin).await?.is_some() {
            return Ok(AdminBootstrap::Existing);
        }
        let (password, outcome) = match initial_password {
            Some(given) => {
                o16n_auth::check_password_rule(given)?;
                (given.to_owned(), AdminBootstrap::CreatedWithGivenPassword)
            }
            None => {
                let generated = o16n_auth::generate_password();
                (
                    generated.clone(),
                    AdminBootstrap::CreatedWithGeneratedPassword(generated),
                )
            }
        };
        match self.insert_user(admin, Role::Owner, password).await {
            Ok(()) => Ok(outcome),
            // Another node sharing the database created it first; theirs stands.
            Err(AppError::Store(StoreError::Conflict(_))) => Ok(AdminBootstrap::Existing),
            Err(err) => Err(err),
        }
    }

    /// Adds a local user with a password that satisfies the rule.
    pub async fn add_user(
        &self,
        username: &str,
        role: Role,
        password: &str,
    ) -> Result<(), AppError> {
        let username = parse_username(username)?;
        o16n_auth::check_password_rule(password)?;
        self.insert_user(username, role, password.to_owned())
            .await
            .map_err(|err| match err {
                AppError::Store(StoreError::Conflict(_)) => {
                    AppError::Conflict("a user with this name already exists".to_owned())
                }
                other => other,
            })
    }

    /// Every user, ordered by name, with their role and where they sign in: `local`, or
    /// `ldap` for a directory user who has signed in (with the role their groups last gave).
    pub async fn list_users(&self) -> Result<Vec<(Username, Role, &'static str)>, AppError> {
        Ok(self
            .store()
            .list_users()
            .await?
            .into_iter()
            .map(|user| {
                let source = if user.directory.is_some() {
                    "ldap"
                } else {
                    "local"
                };
                (user.username, user.role, source)
            })
            .collect())
    }

    /// Removes a local user and ends their login sessions. `admin` cannot be removed.
    pub async fn remove_user(&self, username: &str) -> Result<(), AppError> {
        let username = parse_username(username)?;
        if username.as_str() == ADMIN_USERNAME {
            return Err(AppError::Forbidden(
                "the admin account cannot be removed".to_owned(),
            ));
        }
        let ended = self.store().delete_login_sessions_of(&username).await?;
        if !self.store().delete_user(&username).await? {
            return Err(AppError::NotFound(format!("user `{username}` not found")));
        }
        self.login_sessions_ended(&ended).await;
        Ok(())
    }

    /// Sets a user's password and ends their login sessions, so that whoever knew the old
    /// password loses access.
    pub async fn change_password(&self, username: &str, password: &str) -> Result<(), AppError> {
        let username = parse_username(username)?;
        o16n_auth::check_password_rule(password)?;
        let password = password.to_owned();
        let hash = run_blocking(move || o16n_auth::hash_password(&password)).await??;
        if !self.store().update_password_hash(&username, &hash).await? {
            return Err(AppError::NotFound(format!("user `{username}` not found")));
        }
        let ended = self.store().delete_login_sessions_of(&username).await?;
        self.login_sessions_ended(&ended).await;
        Ok(())
    }

    async fn insert_user(
        &self,
        username: Username,
        role: Role,
        password: String,
    ) -> Result<(), AppError> {
        let password_hash = run_blocking(move || o16n_auth::hash_password(&password)).await??;
        self.store()
            .insert_user(&UserRecord {
                username,
                password_hash,
                role,
                created_at: self.now_unix(),
                directory: None,
            })
            .await?;
        Ok(())
    }
}

fn parse_username(text: &str) -> Result<Username, AppError> {
    Username::parse(text).map_err(|err| AppError::InvalidInput(err.to_string()))
}
