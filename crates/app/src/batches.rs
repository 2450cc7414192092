//! Asynchronous batch consumption: many records through one service in the background, safe
//! with several web nodes.
//!
//! Starting a batch validates every record against the service's declared inputs and stores
//! the execution with its inputs (one insert, whatever the size). Every web node runs a
//! scheduler ([`App::run_batch_scheduler`]) that claims executions by a lease in the database:
//! the node that holds the lease runs the batch's records that have no result yet, at most the
//! batch's parallelism at once, renews the lease while it works and gives it up when it is done
//! or shuts down. When a node dies its lease expires and another node takes the batch over. A
//! record's result is written once (the store inserts it with `ON CONFLICT DO NOTHING`), so a
//! record run twice across a takeover is stored once. A writer task stores results in groups
//! as they finish, so results are never held in memory.
//!
//! Cancelling deletes the execution: the node running it learns of it from the announcement
//! (or at its next lease renewal) and stops. A record whose compute node fails while it runs
//! is run again on another node rather than stored as a failure.
//!
//! States: `Pending` (stored, not started), `InProgress`, `Complete` (every record has a
//! result; records whose code failed are results with `success: false`), `Failed` (the batch
//! itself could not go on, e.g. its service was deleted).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use o16n_compute::{ComputeError, OutputFile, Priority};
use o16n_store::BatchRecord;
use o16n_types::BatchState;
use o16n_types::Role;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::services::{check_inputs, parse_name, parse_version};
use crate::{App, AppError, ConsumeOutcome, Principal};

/// The most results the writer stores in one transaction.
const WRITE_GROUP: usize = 256;
/// The longest a finished result waits to be written.
const WRITE_DELAY: Duration = Duration::from_millis(25);
/// The parallelism of a batch when the request names none (the reference's default).
pub const DEFAULT_PARALLELISM: i64 = 10;
/// The most batches one web node runs at once.
const MAX_RUNNING_BATCHES: usize = 32;
/// How often a record whose compute node failed is tried again before it fails.
const RECORD_ATTEMPTS: usize = 3;

/// A batch's state and, if asked for, its results in record order.
#[derive(Debug, Clone)]
pub struct BatchStatus {
    /// Where it stands.
    pub state: BatchState,
    /// Records done.
    pub completed: i64,
    /// Records in all.
    pub total: i64,
    /// The results of records `0..n` for the longest such run that is done (all when complete).
    pub results: Vec<Value>,
}

/// This node's part in running batches: the ones it runs, and a wake-up for its scheduler.
pub(crate) struct BatchRunners {
    /// This process's name in the leases it holds.
    node_id: String,
    /// The batches running here, to stop one when it is cancelled.
    running: Mutex<HashMap<String, CancellationToken>>,
    /// Pokes the scheduler when a batch is submitted here or announced by another node.
    wake: Notify,
}

impl BatchRunners {
    pub(crate) fn new() -> BatchRunners {
        BatchRunners {
            node_id: format!("node-{}", uuid::Uuid::new_v4().simple()),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.running
            .lock()
            .expect("batch runners lock poisoned. This is a bug.")
    }

    /// Stops the batch if it runs here (it was cancelled through another node).
    pub(crate) fn stop(&self, id: &str) {
        if let Some(token) = self.running().get(id) {
            token.cancel();
        }
    }

    /// Makes the scheduler look for batches to claim now.
    pub(crate) fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Output files as the reference returns them: by name, base64-encoded, `null` for one the
/// code did not write.
pub fn encoded_output_files(files: Vec<OutputFile>) -> Map<String, Value> {
    use base64::Engine;
    files
        .into_iter()
        .map(|file| {
            let content = file.content.map_or(Value::Null, |bytes| {
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            });
            (file.name, content)
        })
        .collect()
}

/// A record's result as the reference's `WebServiceResult`.
fn result_json(outcome: ConsumeOutcome) -> Value {
    let output_files = encoded_output_files(outcome.output_files);
    json!({
        "success": outcome.success,
        "errorMessage": outcome.error_message,
        "consoleOutput": outcome.console_output,
        "changedFiles": outcome.changed_files,
        "outputParameters": outcome.outputs,
        "outputFiles": output_files,
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
            state: BatchState::Pending,
            total_count: records.len() as i64,
            completed_count: 0,
            created_at: self.now_unix(),
        };
        self.store().insert_batch(&batch, &records_json).await?;
        tracing::info!(batch = %batch.id, parallel_count, "batch started");
        self.inner.batch_runners.wake();
        Ok(batch.id)
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

    /// The caller's newest batches of every service (everyone's for an Owner), at most
    /// `limit`.
    pub async fn recent_batches(
        &self,
        caller: &Principal,
        limit: i64,
    ) -> Result<Vec<BatchRecord>, AppError> {
        let owner = (caller.role != Role::Owner).then(|| caller.username.as_str());
        Ok(self.store().recent_batches(owner, limit).await?)
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
        if with_results || batch.state == BatchState::Complete {
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

    /// Cancels a batch and deletes it with its results; the node running it stops.
    pub async fn cancel_batch(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        id: &str,
    ) -> Result<(), AppError> {
        self.own_batch(caller, name, version, id).await?;
        self.store().delete_batch(id).await?;
        self.inner.batch_runners.stop(id);
        self.announce(&crate::events::Event::BatchCancelled(id.to_owned()))
            .await;
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

    /// Claims and runs batches until `stop` is cancelled: at once when a batch is submitted
    /// here or announced, else every poll interval (which also finds batches whose lease
    /// expired on a node that died). At shutdown, running batches stop and give up their
    /// leases, so that another node takes them over at once.
    pub async fn run_batch_scheduler(&self, stop: CancellationToken) {
        let mut runners = JoinSet::new();
        loop {
            let room = MAX_RUNNING_BATCHES.saturating_sub(self.inner.batch_runners.running().len());
            if room > 0 {
                match self.claim_batches(room).await {
                    Ok(claimed) => {
                        for batch in claimed {
                            let token = stop.child_token();
                            self.inner
                                .batch_runners
                                .running()
                                .insert(batch.id.clone(), token.clone());
                            let app = self.clone();
                            runners.spawn(async move { app.run_claimed_batch(batch, token).await });
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot claim batches"),
                }
            }
            while runners.try_join_next().is_some() {}
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.inner.batch_runners.wake.notified() => {}
                () = tokio::time::sleep(self.inner.config.batch_poll_interval) => {}
            }
        }
        while runners.join_next().await.is_some() {}
    }

    async fn claim_batches(&self, limit: usize) -> Result<Vec<BatchRecord>, AppError> {
        let now = self.inner.config.clock.now_ms();
        let until = now + self.inner.config.batch_lease.as_millis() as i64;
        Ok(self
            .store()
            .claim_batches(&self.inner.batch_runners.node_id, now, until, limit as i64)
            .await?)
    }

    /// Runs a batch this node holds the lease of, renewing the lease while it works.
    async fn run_claimed_batch(&self, batch: BatchRecord, token: CancellationToken) {
        let id = batch.id.clone();
        let node_id = self.inner.batch_runners.node_id.clone();
        tracing::info!(batch = %id, done = batch.completed_count, total = batch.total_count, "running batch");
        let renewer = {
            let (app, id, token) = (self.clone(), id.clone(), token.clone());
            tokio::spawn(async move { app.renew_lease_task(&id, token).await })
        };
        let outcome = self.run_batch(&batch, &token).await;
        renewer.abort();
        match outcome {
            Ok(None) => {}
            Ok(Some(state)) => {
                if let Err(err) = self.store().set_batch_state(&id, state).await {
                    tracing::error!(batch = %id, error = %err, "cannot record the batch's state");
                }
                tracing::info!(batch = %id, state = state.as_str(), "batch ended");
            }
            Err(err) => {
                tracing::error!(batch = %id, error = %err, "the batch stopped");
                let _ = self.store().set_batch_state(&id, BatchState::Failed).await;
            }
        }
        let _ = self.store().release_batch_lease(&id, &node_id).await;
        self.inner.batch_runners.running().remove(&id);
    }

    /// Renews the lease a third of its length before it ends; when the node no longer holds
    /// it (cancelled, finished or taken over), the batch stops here.
    async fn renew_lease_task(&self, id: &str, token: CancellationToken) {
        let lease = self.inner.config.batch_lease;
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                () = tokio::time::sleep(lease / 3) => {}
            }
            let until = self.inner.config.clock.now_ms() + lease.as_millis() as i64;
            match self
                .store()
                .renew_batch_lease(id, &self.inner.batch_runners.node_id, until)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::info!(
                        batch = id,
                        "the batch's lease is gone: cancelled, or taken over"
                    );
                    token.cancel();
                    return;
                }
                Err(err) => tracing::warn!(batch = id, error = %err, "cannot renew a batch lease"),
            }
        }
    }

    /// Runs the records without a result. Returns the state the batch ends in, or `None` when
    /// it stopped before the end (cancelled, lease lost, shutdown).
    async fn run_batch(
        &self,
        batch: &BatchRecord,
        token: &CancellationToken,
    ) -> Result<Option<BatchState>, AppError> {
        let id = batch.id.as_str();
        let Some(inputs) = self.store().batch_inputs(id).await? else {
            return Ok(None);
        };
        self.store()
            .set_batch_state(id, BatchState::InProgress)
            .await?;
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
        let permits = Arc::new(Semaphore::new(batch.parallel_count as usize));
        let mut running = JoinSet::new();
        let mut failed = false;
        for (index, input) in inputs.into_iter().enumerate() {
            let index = index as i64;
            if done.contains(&index) {
                continue;
            }
            let permit = tokio::select! {
                () = token.cancelled() => break,
                permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            };
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
            let (app, results, token) = (self.clone(), results.clone(), token.clone());
            running.spawn(async move {
                if let Some(result) = app.run_record(&service, input, &token).await {
                    let _ = results.send((index, result.to_string())).await;
                }
                drop(permit);
            });
        }
        while running.join_next().await.is_some() {}
        drop(results);
        writer
            .await
            .map_err(|err| AppError::Internal(format!("the batch writer failed: {err}")))??;
        Ok(if token.is_cancelled() {
            None
        } else if failed {
            Some(BatchState::Failed)
        } else {
            Some(BatchState::Complete)
        })
    }

    /// Runs one record, again on another compute node when the one it ran on failed (at most
    /// a few times); `None` when the batch stopped meanwhile.
    async fn run_record(
        &self,
        service: &o16n_types::Service,
        input: Map<String, Value>,
        token: &CancellationToken,
    ) -> Option<Value> {
        for attempt in 1..=RECORD_ATTEMPTS {
            if token.is_cancelled() {
                return None;
            }
            let started = std::time::Instant::now();
            let outcome = self
                .run_service(service, input.clone(), Priority::Batch)
                .await;
            let stages = crate::metrics::ServiceStages {
                node: outcome
                    .as_ref()
                    .map(|outcome| outcome.timings)
                    .unwrap_or_default(),
                total: started.elapsed(),
            };
            self.count_service_request(service, &outcome, &stages);
            if let Some(metrics) = self.metrics() {
                metrics.batch_record(outcome.as_ref().is_ok_and(|outcome| outcome.success));
            }
            match outcome {
                Ok(outcome) => return Some(result_json(outcome)),
                Err(AppError::Compute(
                    ComputeError::NodeUnavailable(message) | ComputeError::NodeUnreachable(message),
                )) if attempt < RECORD_ATTEMPTS => {
                    tracing::warn!(%message, attempt, "a batch record's compute node failed; running it again");
                }
                Err(err) => return Some(failed_result(err.to_string())),
            }
        }
        None
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
