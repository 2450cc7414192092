//! Open sessions and the compute node that holds each, so that every web node serves every
//! session (no stickiness needed at a load balancer) and lists the same sessions.

use o16n_types::RuntimeType;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::on_unique_violation;
use crate::{Backend, Store, StoreError};

/// An open session as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// The session id (a GUID).
    pub id: String,
    /// Its owner.
    pub owner: String,
    /// The optional name given at creation.
    pub name: Option<String>,
    /// Its runtime.
    pub runtime: RuntimeType,
    /// The compute node that holds it.
    pub node: String,
    /// When it was created, Unix seconds.
    pub created_at: i64,
    /// The named environment its worker runs in; `None` for the runtime's default.
    pub environment: Option<String>,
}

fn session_from_row(row: &AnyRow) -> Result<SessionRecord, StoreError> {
    let runtime: String = row.try_get("runtime")?;
    Ok(SessionRecord {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        name: row.try_get("name")?,
        runtime: runtime
            .parse()
            .map_err(|err| StoreError::Corrupt(format!("session runtime: {err}")))?,
        node: row.try_get("node")?,
        created_at: row.try_get("created_at")?,
        environment: row.try_get("environment")?,
    })
}

const COLUMNS: &str = "id, owner, name, runtime, node, created_at, environment";

impl Store {
    /// Records a new session unless its owner has `max_per_owner` on record already (no
    /// limit when `None`); returns whether it was recorded. One statement counts and inserts:
    /// SQLite runs it alone, so the limit is exact there; on PostgreSQL, inserts of one owner
    /// racing at the same instant on several web nodes may each see the others' absent.
    pub async fn insert_session(
        &self,
        session: &SessionRecord,
        max_per_owner: Option<u64>,
    ) -> Result<bool, StoreError> {
        let limit = max_per_owner.map_or(i64::MAX, |max| i64::try_from(max).unwrap_or(i64::MAX));
        let mut transaction = self.pool.begin().await?;
        self.relax_commit(&mut transaction).await?;
        let inserted = sqlx::query(
            "INSERT INTO sessions (id, owner, name, runtime, node, created_at, environment) \
             SELECT $1, $2, $3, $4, $5, $6, $7 \
             WHERE (SELECT COUNT(*) FROM sessions WHERE owner = $2) < $8",
        )
        .bind(&session.id)
        .bind(&session.owner)
        .bind(session.name.as_deref())
        .bind(session.runtime.as_str())
        .bind(&session.node)
        .bind(session.created_at)
        .bind(session.environment.as_deref())
        .bind(limit)
        .execute(&mut *transaction)
        .await
        .map_err(on_unique_violation("session"))?
        .rows_affected()
            == 1;
        transaction.commit().await?;
        Ok(inserted)
    }

    /// One session.
    pub async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }

    /// The sessions of `owner`, oldest first.
    pub async fn list_sessions(&self, owner: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE owner = $1 ORDER BY created_at, id"
        )))
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// The sessions a compute node holds.
    pub async fn sessions_on_node(&self, node: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM sessions WHERE node = $1 ORDER BY created_at, id"
        )))
        .bind(node)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Forgets a session. Returns whether it was recorded.
    pub async fn delete_session(&self, id: &str) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        self.relax_commit(&mut transaction).await?;
        let result = sqlx::query("DELETE FROM sessions WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        transaction.commit().await?;
        Ok(result.rows_affected() > 0)
    }

    /// Forgets every session of a compute node (one that lost them by restarting). Returns how
    /// many went.
    pub async fn delete_sessions_on_node(&self, node: &str) -> Result<u64, StoreError> {
        let result = sqlx::query("DELETE FROM sessions WHERE node = $1")
            .bind(node)
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected())
    }

    /// Lets PostgreSQL commit `transaction` without waiting for its log to reach the disk. A
    /// session lives no longer than its compute node's process, so the record of one opened or
    /// closed in the last moments before a database crash matters little (the session is then
    /// reported closed, or its record forgotten at the next call), while a synchronous commit
    /// would add milliseconds to every session create and close.
    async fn relax_commit(
        &self,
        transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    ) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut **transaction)
                .await?;
        }
        Ok(())
    }
}
