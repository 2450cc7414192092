//! Session snapshots. Listing never loads the (possibly large) content.

use o16n_types::RuntimeType;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::on_unique_violation;
use crate::{Store, StoreError};

/// A snapshot's description, without its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    /// The snapshot id (a GUID).
    pub id: String,
    /// The optional name given at creation.
    pub name: Option<String>,
    /// The user who took it; only they can see it.
    pub owner: String,
    /// The runtime of the session it was taken from.
    pub runtime: RuntimeType,
    /// When it was taken, Unix seconds.
    pub created_at: i64,
    /// Size of the zip content in bytes.
    pub content_size: i64,
    /// The digest of the zip content.
    pub content_digest: String,
    /// The named environment of the session it was taken from; `None` for the default.
    pub environment: Option<String>,
}

fn snapshot_from_row(row: &AnyRow) -> Result<SnapshotRecord, StoreError> {
    let runtime: String = row.try_get("runtime")?;
    Ok(SnapshotRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        owner: row.try_get("owner")?,
        runtime: runtime
            .parse()
            .map_err(|err| StoreError::Corrupt(format!("snapshot runtime: {err}")))?,
        created_at: row.try_get("created_at")?,
        content_size: row.try_get("content_size")?,
        content_digest: row
            .try_get::<Option<String>, _>("content_digest")?
            .ok_or_else(|| StoreError::Corrupt("a snapshot without content".to_owned()))?,
        environment: row.try_get("environment")?,
    })
}

impl Store {
    /// Stores a snapshot whose zip content is stored already (see [`Store::put_content`]).
    pub async fn insert_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO snapshots (id, name, owner, runtime, created_at, content_size, content, \
             content_digest, environment) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&snapshot.id)
        .bind(snapshot.name.as_deref())
        .bind(&snapshot.owner)
        .bind(snapshot.runtime.as_str())
        .bind(snapshot.created_at)
        .bind(snapshot.content_size)
        .bind(&[][..])
        .bind(&snapshot.content_digest)
        .bind(snapshot.environment.as_deref())
        .execute(&self.pool)
        .await
        .map_err(on_unique_violation("snapshot"))?;
        Ok(())
    }

    /// The snapshots of `owner`, oldest first.
    pub async fn list_snapshots(&self, owner: &str) -> Result<Vec<SnapshotRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, owner, runtime, created_at, content_size, content_digest, environment FROM snapshots \
             WHERE owner = $1 ORDER BY created_at, id",
        )
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot_from_row).collect()
    }

    /// A snapshot's description, if it exists.
    pub async fn find_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, owner, runtime, created_at, content_size, content_digest, environment FROM snapshots \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(snapshot_from_row).transpose()
    }

    /// Deletes a snapshot, and its content unless a service keeps a copy. Returns whether it
    /// existed.
    pub async fn delete_snapshot(&self, id: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM snapshots WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if result.rows_affected() == 0 {
            return Ok(false);
        }
        self.collect_unreferenced_content().await?;
        Ok(true)
    }
}
