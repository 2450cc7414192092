//! User accounts: local ones with a password hash, and the directory users who signed in.

use o16n_types::{Role, Username};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::on_unique_violation;
use crate::{Store, StoreError};

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The unique user name.
    pub username: Username,
    /// The argon2 PHC string of the password; empty for a directory user.
    pub password_hash: String,
    /// The user's role (for a directory user, as their groups gave it when last read).
    pub role: Role,
    /// When the account was created, Unix seconds.
    pub created_at: i64,
    /// What the directory said of a directory user; `None` for a local account.
    pub directory: Option<DirectoryProfile>,
}

/// What is kept of a user who signs in through the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryProfile {
    /// Their display name, when the directory has one.
    pub display_name: Option<String>,
    /// Their e-mail address, when the directory has one.
    pub email: Option<String>,
    /// When their groups were last read, Unix seconds.
    pub groups_checked_at: i64,
}

/// The `source` of a directory user's row.
const LDAP_SOURCE: &str = "ldap";

/// The columns of a [`UserRecord`], for `concat!` into queries (which must be static text).
macro_rules! user_columns {
    () => {
        "username, password_hash, role, created_at, source, display_name, email, groups_checked_at"
    };
}

fn user_from_row(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let username: String = row.try_get("username")?;
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        username: Username::parse(&username)
            .map_err(|err| StoreError::Corrupt(format!("user `{username}`: {err}")))?,
        password_hash: row.try_get("password_hash")?,
        role: role
            .parse()
            .map_err(|err| StoreError::Corrupt(format!("user `{username}`: {err}")))?,
        created_at: row.try_get("created_at")?,
        directory: if row.try_get::<String, _>("source")? == LDAP_SOURCE {
            Some(DirectoryProfile {
                display_name: row.try_get("display_name")?,
                email: row.try_get("email")?,
                groups_checked_at: row
                    .try_get::<Option<i64>, _>("groups_checked_at")?
                    .unwrap_or(0),
            })
        } else {
            None
        },
    })
}

impl Store {
    /// Adds an account; [`StoreError::Conflict`] when the name is taken.
    pub async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let profile = user.directory.as_ref();
        sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(user.username.as_str())
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(user.created_at)
        .bind(if profile.is_some() {
            LDAP_SOURCE
        } else {
            "local"
        })
        .bind(profile.and_then(|profile| profile.display_name.clone()))
        .bind(profile.and_then(|profile| profile.email.clone()))
        .bind(profile.map(|profile| profile.groups_checked_at))
        .execute(&self.pool)
        .await
        .map_err(on_unique_violation("user"))?;
        Ok(())
    }

    /// Records what the directory said of a directory user, adding them on first sign-in.
    /// Returns `false`, changing nothing, when a local account has the name.
    pub async fn save_directory_user(
        &self,
        username: &Username,
        role: Role,
        profile: &DirectoryProfile,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(concat!(
            "INSERT INTO users (",
            user_columns!(),
            ") VALUES ($1, '', $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (username) DO UPDATE SET role = excluded.role, \
             display_name = excluded.display_name, email = excluded.email, \
             groups_checked_at = excluded.groups_checked_at WHERE users.source = $4"
        ))
        .bind(username.as_str())
        .bind(role.as_str())
        .bind(now)
        .bind(LDAP_SOURCE)
        .bind(&profile.display_name)
        .bind(&profile.email)
        .bind(profile.groups_checked_at)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() > 0)
    }

    /// The account with this name, if any.
    pub async fn find_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username = $1"
        ))
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every account, ordered by name.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Removes an account and, through the foreign key, its login sessions.
    /// Returns whether the account existed.
    pub async fn delete_user(&self, username: &Username) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Replaces an account's password hash. Returns whether the account exists.
    pub async fn update_password_hash(
        &self,
        username: &Username,
        password_hash: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET password_hash = $1 WHERE username = $2")
            .bind(password_hash)
            .bind(username.as_str())
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }
}
