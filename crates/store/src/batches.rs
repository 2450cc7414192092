//! Asynchronous batch executions and their results. Submitting is one insert (the inputs are one
//! JSON array); results are written in groups, once per record, and read in record order.

use sqlx::Row;
use sqlx::any::AnyRow;

use o16n_types::BatchState;

use crate::{Store, StoreError};

/// Rows per multi-row insert: well below the placeholder limits of SQLite and PostgreSQL.
const INSERT_CHUNK: usize = 500;

/// A stored batch state, read back.
fn parse_state(text: &str) -> Result<BatchState, StoreError> {
    text.parse()
        .map_err(|err: o16n_types::ParseBatchStateError| StoreError::Corrupt(err.to_string()))
}

/// A batch execution as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRecord {
    /// The execution id (a GUID).
    pub id: String,
    /// The service it runs.
    pub service_name: String,
    /// The service version it runs.
    pub service_version: String,
    /// Who started it.
    pub owner: String,
    /// Records run at once.
    pub parallel_count: i64,
    /// Where it stands.
    pub state: BatchState,
    /// Number of records.
    pub total_count: i64,
    /// Records done.
    pub completed_count: i64,
    /// When it was started, Unix seconds.
    pub created_at: i64,
}

fn batch_from_row(row: &AnyRow) -> Result<BatchRecord, StoreError> {
    Ok(BatchRecord {
        id: row.try_get("id")?,
        service_name: row.try_get("service_name")?,
        service_version: row.try_get("service_version")?,
        owner: row.try_get("owner")?,
        parallel_count: row.try_get("parallel_count")?,
        state: parse_state(&row.try_get::<String, _>("state")?)?,
        total_count: row.try_get("total_count")?,
        completed_count: row.try_get("completed_count")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a new execution with its records' inputs as one JSON array.
    pub async fn insert_batch(
        &self,
        batch: &BatchRecord,
        inputs_json: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batch_executions (id, service_name, service_version, owner, parallel_count, state, \
             total_count, completed_count, created_at, inputs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&batch.id)
        .bind(&batch.service_name)
        .bind(&batch.service_version)
        .bind(&batch.owner)
        .bind(batch.parallel_count)
        .bind(batch.state.as_str())
        .bind(batch.total_count)
        .bind(batch.completed_count)
        .bind(batch.created_at)
        .bind(inputs_json)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One execution.
    pub async fn find_batch(&self, id: &str) -> Result<Option<BatchRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, service_name, service_version, owner, parallel_count, state, total_count, \
             completed_count, created_at FROM batch_executions WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(batch_from_row).transpose()
    }

    /// The records' inputs of an execution, as the JSON array it was submitted with.
    pub async fn batch_inputs(&self, id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT inputs FROM batch_executions WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|row| row.try_get("inputs")).transpose()?)
    }

    /// The executions of a service version, oldest first.
    pub async fn list_batches(
        &self,
        service_name: &str,
        service_version: &str,
    ) -> Result<Vec<BatchRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, service_name, service_version, owner, parallel_count, state, total_count, \
             completed_count, created_at FROM batch_executions WHERE service_name = $1 AND service_version = $2 \
             ORDER BY created_at, id",
        )
        .bind(service_name)
        .bind(service_version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_from_row).collect()
    }

    /// The newest executions of every service, only `owner`'s when given, at most `limit`.
    pub async fn recent_batches(
        &self,
        owner: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BatchRecord>, StoreError> {
        let rows = match owner {
            Some(owner) => {
                sqlx::query(
                    "SELECT id, service_name, service_version, owner, parallel_count, state, \
                     total_count, completed_count, created_at FROM batch_executions \
                     WHERE owner = $1 ORDER BY created_at DESC, id LIMIT $2",
                )
                .bind(owner)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query(
                    "SELECT id, service_name, service_version, owner, parallel_count, state, \
                     total_count, completed_count, created_at FROM batch_executions \
                     ORDER BY created_at DESC, id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter().map(batch_from_row).collect()
    }

    /// Claims up to `limit` unfinished executions that no web node holds a lease on (or whose
    /// lease expired before `now_ms`) for `node` until `until_ms`, oldest first. Two web nodes
    /// never claim the same execution: on PostgreSQL rows another transaction is claiming are
    /// skipped (`FOR UPDATE SKIP LOCKED`).
    pub async fn claim_batches(
        &self,
        node: &str,
        now_ms: i64,
        until_ms: i64,
        limit: i64,
    ) -> Result<Vec<BatchRecord>, StoreError> {
        let locking = match self.backend {
            crate::Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            crate::Backend::Sqlite => "",
        };
        let statement = format!(
            "UPDATE batch_executions SET lease_owner = $1, lease_until = $2 WHERE id IN \
             (SELECT id FROM batch_executions WHERE state IN ('Pending', 'InProgress') \
              AND (lease_until IS NULL OR lease_until < $3) ORDER BY created_at, id LIMIT $4 {locking}) \
             RETURNING id, service_name, service_version, owner, parallel_count, state, total_count, \
             completed_count, created_at"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(statement))
            .bind(node)
            .bind(until_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(batch_from_row).collect()
    }

    /// Extends `node`'s lease on an execution. Returns `false` when the node holds it no
    /// longer: it was cancelled (deleted), finished, or taken over after the lease expired.
    pub async fn renew_batch_lease(
        &self,
        id: &str,
        node: &str,
        until_ms: i64,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "UPDATE batch_executions SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 \
             AND state IN ('Pending', 'InProgress')",
        )
        .bind(until_ms)
        .bind(id)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Gives up `node`'s lease on an execution, so that another web node may take it at once.
    pub async fn release_batch_lease(&self, id: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE batch_executions SET lease_owner = NULL, lease_until = NULL \
             WHERE id = $1 AND lease_owner = $2",
        )
        .bind(id)
        .bind(node)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The indexes of the records that have a result, in order.
    pub async fn done_batch_records(&self, id: &str) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT record_index FROM batch_results WHERE execution_id = $1 ORDER BY record_index",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok(row.try_get("record_index")?))
            .collect()
    }

    /// Writes the results of several records in one transaction and counts the new ones. A
    /// result is written once: a record already done (a resumed runner racing an old one, or an
    /// execution deleted meanwhile) is skipped. Returns how many were written.
    pub async fn complete_batch_records(
        &self,
        id: &str,
        results: &[(i64, String)],
    ) -> Result<u64, StoreError> {
        if results.is_empty() {
            return Ok(0);
        }
        let mut transaction = self.pool.begin().await?;
        let exists = sqlx::query("SELECT 1 FROM batch_executions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?
            .is_some();
        if !exists {
            return Ok(0);
        }
        let mut written = 0;
        for chunk in results.chunks(INSERT_CHUNK) {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|row| format!("(${}, ${}, ${})", row * 3 + 1, row * 3 + 2, row * 3 + 3))
                .collect();
            // Only numbered placeholders are formatted into the statement; every value is bound.
            let statement = format!(
                "INSERT INTO batch_results (execution_id, record_index, result) VALUES {} \
                 ON CONFLICT (execution_id, record_index) DO NOTHING",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for (index, result) in chunk {
                query = query.bind(id).bind(*index).bind(result.as_str());
            }
            written += query.execute(&mut *transaction).await?.rows_affected();
        }
        sqlx::query(
            "UPDATE batch_executions SET completed_count = completed_count + $1 WHERE id = $2",
        )
        .bind(written as i64)
        .bind(id)
        .execute(&mut *transaction)
        .await?;
        transaction.commit().await?;
        Ok(written)
    }

    /// The results of the records `0..n` for the longest run from 0 that is done, in order.
    pub async fn batch_results_prefix(&self, id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT record_index, result FROM batch_results WHERE execution_id = $1 ORDER BY record_index")
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        let mut prefix = Vec::with_capacity(rows.len());
        for (expected, row) in rows.iter().enumerate() {
            let index: i64 = row.try_get("record_index")?;
            if index != expected as i64 {
                break;
            }
            prefix.push(row.try_get("result")?);
        }
        Ok(prefix)
    }

    /// One record's result, if it is done.
    pub async fn batch_record_result(
        &self,
        id: &str,
        index: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT result FROM batch_results WHERE execution_id = $1 AND record_index = $2",
        )
        .bind(id)
        .bind(index)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("result")).transpose()?)
    }

    /// Sets an execution's state.
    pub async fn set_batch_state(&self, id: &str, state: BatchState) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_executions SET state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes an execution and its results. Returns whether it existed.
    pub async fn delete_batch(&self, id: &str) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("DELETE FROM batch_results WHERE execution_id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        let deleted = sqlx::query("DELETE FROM batch_executions WHERE id = $1")
            .bind(id)
            .execute(&mut *transaction)
            .await?
            .rows_affected();
        transaction.commit().await?;
        Ok(deleted > 0)
    }
}
