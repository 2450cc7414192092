//! Login sessions: one row per chain of token pairs, from a login to its expiry or revocation.
//! See `o16n_auth::tokens` for what the generation means.

use o16n_types::Username;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::on_unique_violation;
use crate::{Store, StoreError};

/// A login session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSessionRecord {
    /// Random id, also the audit log's `LoginSessionId`.
    pub id: String,
    /// Whose session this is.
    pub username: Username,
    /// SHA-256 digest of the current refresh token.
    pub refresh_digest: String,
    /// Grows by one at every renewal; only tokens of the current generation are valid.
    pub generation: i64,
    /// When the user logged in, Unix seconds.
    pub created_at: i64,
    /// When the session was last created or renewed, Unix seconds.
    pub last_used_at: i64,
}

fn login_session_from_row(row: &AnyRow) -> Result<LoginSessionRecord, StoreError> {
    let username: String = row.try_get("username")?;
    Ok(LoginSessionRecord {
        id: row.try_get("id")?,
        username: Username::parse(&username)
            .map_err(|err| StoreError::Corrupt(format!("login session user: {err}")))?,
        refresh_digest: row.try_get("refresh_digest")?,
        generation: row.try_get("generation")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
    })
}

impl Store {
    /// Records a new login session.
    pub async fn insert_login_session(
        &self,
        session: &LoginSessionRecord,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO login_sessions (id, username, refresh_digest, generation, created_at, last_used_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.id)
        .bind(session.username.as_str())
        .bind(&session.refresh_digest)
        .bind(session.generation)
        .bind(session.created_at)
        .bind(session.last_used_at)
        .execute(&self.pool)
        .await
        .map_err(on_unique_violation("login session"))?;
        Ok(())
    }

    /// The login session whose current refresh token has this digest.
    pub async fn find_login_session_by_refresh(
        &self,
        refresh_digest: &str,
    ) -> Result<Option<LoginSessionRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, refresh_digest, generation, created_at, last_used_at \
             FROM login_sessions WHERE refresh_digest = $1",
        )
        .bind(refresh_digest)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(login_session_from_row).transpose()
    }

    /// The current generation of a login session, or `None` when it was revoked or expired.
    pub async fn login_session_generation(&self, id: &str) -> Result<Option<i64>, StoreError> {
        let row = sqlx::query("SELECT generation FROM login_sessions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("generation")).transpose()?)
    }

    /// Moves a login session to the next generation with a new refresh token, but only if it
    /// is still at `expected_generation`. Returns `false` when another renewal won the race or
    /// the session is gone, so that one refresh token can be redeemed only once.
    pub async fn renew_login_session(
        &self,
        id: &str,
        expected_generation: i64,
        new_refresh_digest: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE login_sessions SET generation = generation + 1, refresh_digest = $1, last_used_at = $2 \
             WHERE id = $3 AND generation = $4",
        )
        .bind(new_refresh_digest)
        .bind(now)
        .bind(id)
        .bind(expected_generation)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Ends a login session. Returns whether it existed.
    pub async fn delete_login_session(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM login_sessions WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() > 0)
    }

    /// Ends every login session of a user, e.g. after a password change. Returns their ids.
    pub async fn delete_login_sessions_of(
        &self,
        username: &Username,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("DELETE FROM login_sessions WHERE username = $1 RETURNING id")
            .bind(username.as_str())
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("id")?)).collect()
    }

    /// Deletes login sessions idle since before `idle_before` or started before
    /// `created_before`: they can no longer be renewed. Returns how many went.
    pub async fn prune_login_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64, StoreError> {
        let result =
            sqlx::query("DELETE FROM login_sessions WHERE last_used_at < $1 OR created_at < $2")
                .bind(idle_before)
                .bind(created_before)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected())
    }
}
