//! Asynchronous batch consumption: many records through one service in the background.
//!
//! Starting a batch validates every record against the service's declared inputs, stores the
//! execution with its inputs (one insert, whatever the size) and starts a runner task. The
//! runner runs the records that have no result yet, at most the batch's parallelism at once,
//! through the same path as a single request; a writer task stores their results in groups as
//! they finish, so results are never held in memory. A restart loses nothing: at start-up,
//! runners resume every unfinished batch; a result that was not written yet is a record that
//! runs again, and a record's result is written only once.
//!
//! States: `Pending` (stored, not started), `InProgress`, `Complete` (every record has a
//! result; records whose code failed are results with `success: false`), `Failed` (the batch
//! itself could not go on, e.g. its service was deleted).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use o16n_runtime::Priority;
use o16n_store::BatchRecord;
use o16n_types::Role;
use serde_json::{Map, Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::services::{check_inputs, parse_name, parse_version};
use crate::{App, AppError, ConsumeOutcome, Principal, now_unix};

/// The most results the writer stores in one transaction.
const WRITE_GROUP: usize = 256;
/// The longest a finished result waits to be written.
const WRITE_DELAY: std::time::Duration = std::time::Duration::from_millis(25);
/// The parallelism of a batch when the request names none (the reference's default).
pub const DEFAULT_PARALLELISM: i64 = 10;

/// A batch's state and, if asked for, its results in record order.
#[derive(Debug, Clone)]
pub struct BatchStatus {
    /// `Pending`, `InProgress`, `Complete` or `Failed`.
    pub state: String,
    /// Records done.
    pub completed: i64,
    /// Records in all.
    pub total: i64,
    /// The results of records `0..n` for the longest such run that is done (all when complete).
    pub results: Vec<Value>,
}

/// Batches cancelled in this process, so that their runners stop.
#[derive(Default)]
pub(crate) struct Cancellations(Mutex<HashSet<String>>);

impl Cancellations {
    fn cancel(&self, id: &str) {
        self.0
            .lock()
            .expect("cancellations lock poisoned. This is a bug.")
            .insert(id.to_owned());
    }

    fn is_cancelled(&self, id: &str) -> bool {
        self.0
            .lock()
            .expect("cancellations lock poisoned. This is a bug.")
            .contains(id)
    }
}

/// A record's result as the reference's `WebServiceResult`.
fn result_json(outcome: ConsumeOutcome) -> Value {
    json!({
        "success": outcome.success,
        "errorMessage": outcome.error_message,
        "consoleOutput": outcome.console_output,
        "changedFiles": outcome.changed_files,
        "outputParameters": outcome.outputs,
        "outputFiles": outcome.output_files,
    })
}

/// The result of a record that could not run at all.
fn failed_result(message: String) -> Value {
    json!({
        "success": false,
        "errorMessage": message,
        "consoleOutput": "",
        "changedFiles": [],
        "outputParameters": {},
        "outputFiles": {},
    })
}

impl App {
    /// Starts a batch of records, given as the JSON text of an array of input objects, and
    /// returns its id. The text is stored as given once it is checked, which keeps submitting a
    /// large batch cheap.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name, version))]
    pub async fn start_batch(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        records_json: String,
        parallel_count: Option<i64>,
    ) -> Result<String, AppError> {
        let records: Vec<Value> = serde_json::from_str(&records_json).map_err(|err| {
            AppError::InvalidInput(format!(
                "the body must be a JSON array of input records: {err}"
            ))
        })?;
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        let service = self.current_service(&name, &version).await?;
        if records.is_empty() {
            return Err(AppError::InvalidInput(
                "a batch needs at least one record".to_owned(),
            ));
        }
        let parallel_count = parallel_count.unwrap_or(DEFAULT_PARALLELISM);
        if parallel_count < 1 {
            return Err(AppError::InvalidInput(
                "parallelCount must be at least 1".to_owned(),
            ));
        }
        let parallel_count = parallel_count.min(self.inner.config.max_batch_parallelism);
        for (index, record) in records.iter().enumerate() {
            let Value::Object(fields) = record else {
                return Err(AppError::InvalidInput(format!(
                    "record {index} is not an object of inputs"
                )));
            };
            check_inputs(&service.inputs, fields)
                .map_err(|err| AppError::InvalidInput(format!("record {index}: {err}")))?;
        }
        let batch = BatchRecord {
            id: uuid::Uuid::new_v4().to_string(),
            service_name: name.to_string(),
            service_version: version.to_string(),
            owner: caller.username.to_string(),
            parallel_count,
            state: "Pending".to_owned(),
            total_count: records.len() as i64,
            completed_count: 0,
            created_at: now_unix(),
        };
        self.store().insert_batch(&batch, &records_json).await?;
        tracing::info!(batch = %batch.id, parallel_count, "batch started");
        self.spawn_batch_runner(batch.id.clone(), parallel_count);
        Ok(batch.id)
    }

    /// Resumes every batch that was pending or running when the server stopped.
    pub async fn resume_batches(&self) -> Result<usize, AppError> {
        let unfinished = self.store().unfinished_batches().await?;
        for batch in &unfinished {
            tracing::info!(batch = %batch.id, done = batch.completed_count, total = batch.total_count, "resuming batch");
            self.spawn_batch_runner(batch.id.clone(), batch.parallel_count);
        }
        Ok(unfinished.len())
    }

    /// The ids of the caller's batches of a service (all of them for an Owner).
    pub async fn list_batches(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
    ) -> Result<Vec<String>, AppError> {
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        self.current_service(&name, &version).await?;
        let batches = self
            .store()
            .list_batches(name.as_str(), version.as_str())
            .await?;
        Ok(batches
            .into_iter()
            .filter(|batch| may_see(caller, batch))
            .map(|batch| batch.id)
            .collect())
    }

    /// A batch's state, with its results in record order when `with_results`.
    pub async fn batch_status(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        id: &str,
        with_results: bool,
    ) -> Result<BatchStatus, AppError> {
        let batch = self.own_batch(caller, name, version, id).await?;
        let mut results = Vec::new();
        if with_results || batch.state == "Complete" {
            // Element i must be record i's result, so only the finished run from 0 is shown.
            for result in self.store().batch_results_prefix(id).await? {
                results.push(serde_json::from_str(&result).unwrap_or(Value::Null));
            }
        }
        Ok(BatchStatus {
            state: batch.state,
            completed: batch.completed_count,
            total: batch.total_count,
            results,
        })
    }

    /// Cancels a batch and deletes it with its results.
    pub async fn cancel_batch(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        id: &str,
    ) -> Result<(), AppError> {
        self.own_batch(caller, name, version, id).await?;
        self.inner.batch_cancellations.cancel(id);
        self.store().delete_batch(id).await?;
        tracing::info!(batch = id, "batch cancelled and deleted");
        Ok(())
    }

    /// The output files one record of a batch produced, by name (base64).
    pub async fn batch_record_files(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        id: &str,
        index: i64,
    ) -> Result<Map<String, Value>, AppError> {
        let batch = self.own_batch(caller, name, version, id).await?;
        if !(0..batch.total_count).contains(&index) {
            return Err(AppError::NotFound(format!(
                "batch `{id}` has no record {index} (records are numbered from 0)"
            )));
        }
        let result = self
            .store()
            .batch_record_result(id, index)
            .await?
            .ok_or_else(|| {
                AppError::NotFound(format!("record {index} of batch `{id}` is not done yet"))
            })?;
        let result: Value = serde_json::from_str(&result).unwrap_or(Value::Null);
        Ok(result["outputFiles"]
            .as_object()
            .map(|files| {
                files
                    .iter()
                    .filter(|(_, content)| !content.is_null())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// A batch of the caller's (or any, for an Owner) that belongs to this service version.
    async fn own_batch(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        id: &str,
    ) -> Result<BatchRecord, AppError> {
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        self.current_service(&name, &version).await?;
        self.store()
            .find_batch(id)
            .await?
            .filter(|batch| {
                batch.service_name == name.as_str() && batch.service_version == version.as_str()
            })
            .filter(|batch| may_see(caller, batch))
            .ok_or_else(|| AppError::NotFound(format!("batch execution `{id}` not found")))
    }

    fn spawn_batch_runner(&self, id: String, parallel_count: i64) {
        let app = self.clone();
        tokio::spawn(async move {
            if let Err(err) = app.run_batch(&id, parallel_count).await {
                tracing::error!(batch = %id, error = %err, "the batch stopped");
                let _ = app.store().set_batch_state(&id, "Failed").await;
            }
        });
    }

    async fn run_batch(&self, id: &str, parallel_count: i64) -> Result<(), AppError> {
        let (Some(batch), Some(inputs)) = (
            self.store().find_batch(id).await?,
            self.store().batch_inputs(id).await?,
        ) else {
            return Ok(());
        };
        self.store().set_batch_state(id, "InProgress").await?;
        let (name, version) = (
            parse_name(&batch.service_name)?,
            parse_version(&batch.service_version)?,
        );
        let inputs: Vec<Map<String, Value>> = serde_json::from_str(&inputs).map_err(|err| {
            AppError::Internal(format!("stored batch inputs do not parse: {err}"))
        })?;
        let done: HashSet<i64> = self
            .store()
            .done_batch_records(id)
            .await?
            .into_iter()
            .collect();
        let (results, finished) = tokio::sync::mpsc::channel(WRITE_GROUP * 4);
        let writer = tokio::spawn(write_results(self.clone(), id.to_owned(), finished));
        let permits = Arc::new(Semaphore::new(parallel_count as usize));
        let mut running = JoinSet::new();
        let mut failed = false;
        for (index, input) in inputs.into_iter().enumerate() {
            let index = index as i64;
            if done.contains(&index) {
                continue;
            }
            if self.inner.batch_cancellations.is_cancelled(id) {
                break;
            }
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            while running.try_join_next().is_some() {}
            // The definition is read per record (from the cache), so that an update applies to
            // the records that run after it and a deleted service fails the batch.
            let service = match self.current_service(&name, &version).await {
                Ok(service) => service,
                Err(AppError::NotFound(message)) => {
                    tracing::warn!(batch = id, %message, "the batch's service is gone");
                    failed = true;
                    break;
                }
                Err(err) => return Err(err),
            };
            let (app, results) = (self.clone(), results.clone());
            running.spawn(async move {
                let result = match app.run_service(&service, input, Priority::Batch).await {
                    Ok(outcome) => result_json(outcome),
                    Err(err) => failed_result(err.to_string()),
                };
                let _ = results.send((index, result.to_string())).await;
                drop(permit);
            });
        }
        while running.join_next().await.is_some() {}
        drop(results);
        writer
            .await
            .map_err(|err| AppError::Internal(format!("the batch writer failed: {err}")))??;
        if failed {
            self.store().set_batch_state(id, "Failed").await?;
        } else if !self.inner.batch_cancellations.is_cancelled(id) {
            self.store().set_batch_state(id, "Complete").await?;
            tracing::info!(batch = id, "batch complete");
        }
        Ok(())
    }
}

/// Stores finished results in groups: up to [`WRITE_GROUP`] at once, none waiting longer than
/// [`WRITE_DELAY`].
async fn write_results(
    app: App,
    id: String,
    mut finished: tokio::sync::mpsc::Receiver<(i64, String)>,
) -> Result<(), AppError> {
    let mut group = Vec::with_capacity(WRITE_GROUP);
    loop {
        let Some(first) = finished.recv().await else {
            return Ok(());
        };
        group.push(first);
        let deadline = tokio::time::Instant::now() + WRITE_DELAY;
        while group.len() < WRITE_GROUP {
            match tokio::time::timeout_at(deadline, finished.recv()).await {
                Ok(Some(result)) => group.push(result),
                Ok(None) | Err(_) => break,
            }
        }
        app.store().complete_batch_records(&id, &group).await?;
        group.clear();
    }
}

fn may_see(caller: &Principal, batch: &BatchRecord) -> bool {
    caller.role == Role::Owner || batch.owner == caller.username.as_str()
}
