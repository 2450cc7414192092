//! The registered compute nodes: what `/computenodes` stores, URIs and ranges verbatim, in the
//! order given.

use sqlx::Row;

use crate::{Store, StoreError};

impl Store {
    /// The entries, in order.
    pub async fn compute_node_entries(&self) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT entry FROM compute_node_entries ORDER BY position, entry")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("entry")?)).collect()
    }

    /// Replaces every entry.
    pub async fn set_compute_node_entries(&self, entries: &[String]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("DELETE FROM compute_node_entries")
            .execute(&mut *transaction)
            .await?;
        for (position, entry) in entries.iter().enumerate() {
            sqlx::query(
                "INSERT INTO compute_node_entries (entry, position) VALUES ($1, $2) \
                 ON CONFLICT (entry) DO NOTHING",
            )
            .bind(entry)
            .bind(position as i64)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Adds entries after the existing ones; an entry already present stays where it is.
    pub async fn add_compute_node_entries(&self, entries: &[String]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        let next: i64 =
            sqlx::query("SELECT COALESCE(MAX(position), -1) + 1 AS next FROM compute_node_entries")
                .fetch_one(&mut *transaction)
                .await?
                .try_get("next")?;
        for (offset, entry) in entries.iter().enumerate() {
            sqlx::query(
                "INSERT INTO compute_node_entries (entry, position) VALUES ($1, $2) \
                 ON CONFLICT (entry) DO NOTHING",
            )
            .bind(entry)
            .bind(next + offset as i64)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Removes entries; absent ones are ignored.
    pub async fn remove_compute_node_entries(&self, entries: &[String]) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        for entry in entries {
            sqlx::query("DELETE FROM compute_node_entries WHERE entry = $1")
                .bind(entry)
                .execute(&mut *transaction)
                .await?;
        }
        transaction.commit().await?;
        Ok(())
    }
}
