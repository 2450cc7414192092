//! Local user accounts.

use o16n_types::{Role, Username};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::on_unique_violation;
use crate::{Store, StoreError};

/// A local account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The unique user name.
    pub username: Username,
    /// The argon2 PHC string of the password.
    pub password_hash: String,
    /// The user's role.
    pub role: Role,
    /// When the account was created, Unix seconds.
    pub created_at: i64,
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
    })
}

impl Store {
    /// Adds an account; [`StoreError::Conflict`] when the name is taken.
    pub async fn insert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(user.username.as_str())
        .bind(&user.password_hash)
        .bind(user.role.as_str())
        .bind(user.created_at)
        .execute(&self.pool)
        .await
        .map_err(on_unique_violation("user"))?;
        Ok(())
    }

    /// The account with this name, if any.
    pub async fn find_user(&self, username: &Username) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT username, password_hash, role, created_at FROM users WHERE username = $1",
        )
        .bind(username.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// Every account, ordered by name.
    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT username, password_hash, role, created_at FROM users ORDER BY username",
        )
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
