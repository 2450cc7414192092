//! Asynchronous batch executions and their records. Records are written and read in chunks, so
//! that a batch of any size never has to be in memory at once.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Store, StoreError};

/// Rows per multi-row insert: well below the placeholder limits of SQLite and PostgreSQL.
const INSERT_CHUNK: usize = 500;

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
    /// `Pending`, `InProgress`, `Complete` or `Failed`.
    pub state: String,
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
        state: row.try_get("state")?,
        total_count: row.try_get("total_count")?,
        completed_count: row.try_get("completed_count")?,
        created_at: row.try_get("created_at")?,
    })
}

impl Store {
    /// Stores a new execution and its records' inputs (JSON), in one transaction.
    pub async fn insert_batch(
        &self,
        batch: &BatchRecord,
        inputs: &[String],
    ) -> Result<(), StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO batch_executions (id, service_name, service_version, owner, parallel_count, state, \
             total_count, completed_count, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&batch.id)
        .bind(&batch.service_name)
        .bind(&batch.service_version)
        .bind(&batch.owner)
        .bind(batch.parallel_count)
        .bind(&batch.state)
        .bind(batch.total_count)
        .bind(batch.completed_count)
        .bind(batch.created_at)
        .execute(&mut *transaction)
        .await?;
        for (chunk_index, chunk) in inputs.chunks(INSERT_CHUNK).enumerate() {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|row| format!("(${}, ${}, ${})", row * 3 + 1, row * 3 + 2, row * 3 + 3))
                .collect();
            // Only numbered placeholders are formatted into the statement; every value is bound.
            let statement = format!(
                "INSERT INTO batch_records (execution_id, record_index, input) VALUES {}",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(statement));
            for (offset, input) in chunk.iter().enumerate() {
                let index = (chunk_index * INSERT_CHUNK + offset) as i64;
                query = query.bind(&batch.id).bind(index).bind(input.as_str());
            }
            query.execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
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

    /// Executions that were pending or running, to resume after a restart.
    pub async fn unfinished_batches(&self) -> Result<Vec<BatchRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, service_name, service_version, owner, parallel_count, state, total_count, \
             completed_count, created_at FROM batch_executions WHERE state IN ('Pending', 'InProgress') \
             ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_from_row).collect()
    }

    /// Up to `limit` records without a result, from `after_index` on: (index, input JSON).
    pub async fn pending_batch_records(
        &self,
        id: &str,
        after_index: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT record_index, input FROM batch_records WHERE execution_id = $1 AND record_index > $2 \
             AND result IS NULL ORDER BY record_index LIMIT $3",
        )
        .bind(id)
        .bind(after_index)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("record_index")?, row.try_get("input")?)))
            .collect()
    }

    /// Writes a record's result once and counts it; a second write of the same record (a
    /// resumed runner racing an old one) changes nothing. Returns whether it was written.
    pub async fn complete_batch_record(
        &self,
        id: &str,
        index: i64,
        result: &str,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        let written = sqlx::query(
            "UPDATE batch_records SET result = $1 WHERE execution_id = $2 AND record_index = $3 AND result IS NULL",
        )
        .bind(result)
        .bind(id)
        .bind(index)
        .execute(&mut *transaction)
        .await?
        .rows_affected()
            == 1;
        if written {
            sqlx::query(
                "UPDATE batch_executions SET completed_count = completed_count + 1 WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(written)
    }

    /// The results of the records `0..count` that have one, in record order.
    pub async fn batch_results(
        &self,
        id: &str,
        count: i64,
    ) -> Result<Vec<(i64, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT record_index, result FROM batch_records WHERE execution_id = $1 AND record_index < $2 \
             ORDER BY record_index",
        )
        .bind(id)
        .bind(count)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("record_index")?, row.try_get("result")?)))
            .collect()
    }

    /// One record's result, if it has one (outer `None`: no such record).
    pub async fn batch_record_result(
        &self,
        id: &str,
        index: i64,
    ) -> Result<Option<Option<String>>, StoreError> {
        let row = sqlx::query(
            "SELECT result FROM batch_records WHERE execution_id = $1 AND record_index = $2",
        )
        .bind(id)
        .bind(index)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|row| row.try_get("result")).transpose()?)
    }

    /// Sets an execution's state.
    pub async fn set_batch_state(&self, id: &str, state: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE batch_executions SET state = $1 WHERE id = $2")
            .bind(state)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes an execution and its records. Returns whether it existed.
    pub async fn delete_batch(&self, id: &str) -> Result<bool, StoreError> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query("DELETE FROM batch_records WHERE execution_id = $1")
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
