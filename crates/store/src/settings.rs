//! Node-wide settings that must be the same on every node sharing the database, such as the
//! token signing key.

use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// Returns the value stored under `key`, storing `candidate` first if there is none.
    ///
    /// Several nodes starting at once may each propose a value; `ON CONFLICT DO NOTHING` lets
    /// exactly one win and everyone reads the winner back.
    pub async fn setting_or_insert(
        &self,
        key: &str,
        candidate: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(candidate)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("value")?)
    }
}
