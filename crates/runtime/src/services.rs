//! Running web services: a set of shared workers, leased from the pool, that keep recently
//! used services loaded.
//!
//! A worker belongs to the owner of the first service it loads and only ever runs that
//! owner's services: code of one user's service could otherwise read another user's models
//! and globals in the same process. A request goes to a free worker of the service's owner that
//! already has the service's current revision loaded, else to any free worker of that owner
//! (which loads it: snapshot files, workspace, then `initCode`, once), else to a new worker
//! while the set may grow, else it replaces a free worker of another owner (discarded; the pool
//! starts a fresh one), else it waits for one to become free. A worker keeps at most
//! `max_loaded_per_worker` services, dropping the least recently used. An update publishes a
//! new revision key, so the next request loads the new definition everywhere. These workers
//! only ever run services; sessions always get fresh workers of their own.

use std::collections::VecDeque;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use o16n_types::{ParameterDefinition, RuntimeType};
use serde_json::{Map, Value};
use tokio::sync::Notify;

use crate::pool::{Lease, Pool};
use crate::protocol::{FailureKind, Request, TypedName, TypedValue};
use crate::worker::{ConsoleSink, WorkerHandle};
use crate::{RuntimeError, snapshot};

/// What a worker needs to run a service.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Identifies the service revision; a new one on every update.
    pub key: String,
    /// The user who published it; a worker runs the services of one owner only.
    pub owner: String,
    /// The runtime that runs it.
    pub runtime: RuntimeType,
    /// Run on every request.
    pub code: String,
    /// Run once when a worker loads the service.
    pub init_code: Option<String>,
    /// Declared outputs.
    pub outputs: Vec<ParameterDefinition>,
    /// Files returned with every response.
    pub output_file_names: Vec<String>,
}

/// The result of one request, as the reference's `WebServiceResult`.
#[derive(Debug, Clone)]
pub struct ConsumeOutcome {
    /// Whether the code ran without an error.
    pub success: bool,
    /// The error when it did not.
    pub error_message: String,
    /// What it printed.
    pub console_output: String,
    /// Files it created or modified.
    pub changed_files: Vec<String>,
    /// Declared outputs by name.
    pub outputs: Map<String, Value>,
    /// Declared output files, base64 (or null when not written).
    pub output_files: Map<String, Value>,
}

/// Fetches a service's snapshot archive when a worker needs to load it (rarely, so it is not
/// kept in memory).
pub type SnapshotFetch =
    Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, RuntimeError>> + Send + 'static>>;

/// Who is waiting for a worker: interactive requests go before batch records, so that a
/// running batch never delays other consumers by more than the record in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// A request someone is waiting on.
    Interactive,
    /// A record of an asynchronous batch.
    Batch,
}

/// Settings of the service workers of one runtime.
#[derive(Debug, Clone)]
pub struct ServiceWorkersConfig {
    /// Most workers running services at once.
    pub max_workers: usize,
    /// Most services one worker keeps loaded.
    pub max_loaded_per_worker: usize,
}

pub(crate) struct ServiceWorkers {
    runtime: RuntimeType,
    pool: Pool,
    config: ServiceWorkersConfig,
    execution_timeout: Duration,
    state: Mutex<State>,
    /// Signalled when a worker is given back and an interactive request may be waiting.
    freed: Notify,
    /// Signalled when a worker is given back and no interactive request waits.
    freed_for_batches: Notify,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    growing: usize,
    next_id: u64,
    /// Interactive requests waiting for a worker; batch records yield to them.
    interactive_waiting: usize,
}

struct Slot {
    id: u64,
    lease: Lease,
    /// Whose services this worker runs.
    owner: String,
    /// Loaded service keys, least recently used first.
    loaded: VecDeque<String>,
    busy: bool,
}

/// What [`ServiceWorkers::try_take`] found.
enum Step {
    Taken(Taken),
    Grow,
    Wait,
}

/// A worker taken for one request.
struct Taken {
    slot: u64,
    worker: WorkerHandle,
    has_service: bool,
}

impl ServiceWorkers {
    pub(crate) fn new(
        runtime: RuntimeType,
        pool: Pool,
        config: ServiceWorkersConfig,
        execution_timeout: Duration,
    ) -> Self {
        ServiceWorkers {
            runtime,
            pool,
            config,
            execution_timeout,
            state: Mutex::new(State::default()),
            freed: Notify::new(),
            freed_for_batches: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("service workers lock poisoned. This is a bug.")
    }

    /// Runs one request of a service.
    pub(crate) async fn consume(
        &self,
        spec: &ServiceSpec,
        inputs: Vec<TypedValue>,
        priority: Priority,
        fetch_snapshot: impl FnOnce() -> SnapshotFetch,
    ) -> Result<ConsumeOutcome, RuntimeError> {
        let taken = self.take(&spec.key, &spec.owner, priority).await?;
        // The request's future may be dropped at any await (the client went away); the guard
        // gives the worker back however this ends.
        let mut slot = SlotGuard {
            workers: self,
            slot: taken.slot,
            worker_died: false,
        };
        let outcome = self.run(&taken, spec, inputs, fetch_snapshot).await;
        slot.worker_died = matches!(outcome, Err(RuntimeError::WorkerDied(_)));
        drop(slot);
        match outcome {
            // A failing initCode is the service's own error, reported like one in its code.
            Err(RuntimeError::ServiceLoad(error_message)) => Ok(ConsumeOutcome {
                success: false,
                error_message,
                console_output: String::new(),
                changed_files: Vec::new(),
                outputs: Map::new(),
                output_files: Map::new(),
            }),
            Err(RuntimeError::WorkerDied(reason)) => Err(RuntimeError::RuntimeUnavailable(
                format!("the worker running the service stopped before answering: {reason}"),
            )),
            other => other,
        }
    }

    async fn take(
        &self,
        key: &str,
        owner: &str,
        priority: Priority,
    ) -> Result<Taken, RuntimeError> {
        let mut waiting = None;
        loop {
            let freed = match priority {
                Priority::Interactive => self.freed.notified(),
                Priority::Batch => self.freed_for_batches.notified(),
            };
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.try_take(key, owner, priority) {
                Step::Taken(taken) => return Ok(taken),
                Step::Wait => {
                    if priority == Priority::Interactive && waiting.is_none() {
                        self.state().interactive_waiting += 1;
                        waiting = Some(InteractiveWaiting { workers: self });
                    }
                    freed.await;
                }
                Step::Grow => return self.grow(owner).await,
            }
        }
    }

    /// The locked part of [`Self::take`]: a free worker of the owner (preferring one that has
    /// the service), or permission to grow (after discarding another owner's free worker if the
    /// set is full), or "wait".
    fn try_take(&self, key: &str, owner: &str, priority: Priority) -> Step {
        let mut state = self.state();
        if priority == Priority::Batch && state.interactive_waiting > 0 {
            return Step::Wait;
        }
        state
            .slots
            .retain(|slot| slot.busy || slot.lease.worker().exit_reason().is_none());
        let free_with_service = state.slots.iter().position(|slot| {
            !slot.busy && slot.owner == owner && slot.loaded.iter().any(|loaded| loaded == key)
        });
        let free = free_with_service.or_else(|| {
            state
                .slots
                .iter()
                .position(|slot| !slot.busy && slot.owner == owner)
        });
        if let Some(index) = free {
            let slot = &mut state.slots[index];
            slot.busy = true;
            return Step::Taken(Taken {
                slot: slot.id,
                worker: slot.lease.worker().clone(),
                has_service: free_with_service.is_some(),
            });
        }
        if state.slots.len() + state.growing >= self.config.max_workers {
            // Full: a free worker of another owner makes room; dropping its lease discards it.
            match state.slots.iter().position(|slot| !slot.busy) {
                Some(index) => {
                    state.slots.swap_remove(index);
                }
                None => return Step::Wait,
            }
        }
        state.growing += 1;
        Step::Grow
    }

    /// Leases one more worker from the pool for `owner`'s services (a growth slot is reserved).
    async fn grow(&self, owner: &str) -> Result<Taken, RuntimeError> {
        let mut growth = GrowthGuard {
            workers: self,
            armed: true,
        };
        let leased = self.pool.lease().await;
        growth.armed = false;
        let mut state = self.state();
        state.growing -= 1;
        let lease = match leased {
            Ok(lease) => lease,
            Err(err) => {
                let interactive_waiting = state.interactive_waiting > 0;
                drop(state);
                self.wake_next(interactive_waiting);
                return Err(err);
            }
        };
        let id = state.next_id;
        state.next_id += 1;
        let worker = lease.worker().clone();
        state.slots.push(Slot {
            id,
            lease,
            owner: owner.to_owned(),
            loaded: VecDeque::new(),
            busy: true,
        });
        Ok(Taken {
            slot: id,
            worker,
            has_service: false,
        })
    }

    fn give_back(&self, slot_id: u64, worker_died: bool) {
        let mut state = self.state();
        if worker_died {
            state.slots.retain(|slot| slot.id != slot_id);
        } else if let Some(slot) = state.slots.iter_mut().find(|slot| slot.id == slot_id) {
            slot.busy = false;
        }
        let interactive_waiting = state.interactive_waiting > 0;
        drop(state);
        self.wake_next(interactive_waiting);
    }

    /// Wakes the next waiter for a free worker: an interactive request if one waits.
    fn wake_next(&self, interactive_waiting: bool) {
        if interactive_waiting {
            self.freed.notify_one();
        } else {
            self.freed_for_batches.notify_one();
        }
    }

    async fn run(
        &self,
        taken: &Taken,
        spec: &ServiceSpec,
        inputs: Vec<TypedValue>,
        fetch_snapshot: impl FnOnce() -> SnapshotFetch,
    ) -> Result<ConsumeOutcome, RuntimeError> {
        let mut fetch_snapshot = Some(fetch_snapshot);
        if !taken.has_service {
            let fetch = fetch_snapshot.take().expect("fetched at most once");
            self.load(taken, spec, fetch().await?).await?;
        }
        let request = Request::Consume {
            key: spec.key.clone(),
            code: spec.code.clone(),
            inputs,
            outputs: spec
                .outputs
                .iter()
                .map(|output| TypedName {
                    name: output.name.clone(),
                    kind: output.kind.as_str(),
                })
                .collect(),
            output_files: spec.output_file_names.clone(),
        };
        let console = ConsoleSink::default();
        let mut reply = taken
            .worker
            .call(
                request.clone(),
                Vec::new(),
                Some(console.clone()),
                Some(self.execution_timeout),
            )
            .await?;
        if reply.message.kind == Some(FailureKind::NotLoaded) {
            // The worker lost the service (it should not, but a reload is cheap and correct).
            let archive = match fetch_snapshot.take() {
                Some(fetch) => fetch().await?,
                None => None,
            };
            self.load(taken, spec, archive).await?;
            reply = taken
                .worker
                .call(
                    request,
                    Vec::new(),
                    Some(console.clone()),
                    Some(self.execution_timeout),
                )
                .await?;
        }
        let message = reply.message;
        if !message.ok {
            return Err(RuntimeError::Protocol(message.error.unwrap_or_default()));
        }
        let console_output = console
            .lock()
            .expect("console lock poisoned. This is a bug.")
            .clone();
        Ok(ConsumeOutcome {
            success: message.success.unwrap_or(false),
            error_message: message.error.unwrap_or_default(),
            console_output,
            changed_files: message.changed_files,
            outputs: message.named_outputs,
            output_files: message.output_files,
        })
    }

    /// Loads a service into a worker, evicting its least recently used one if it is full.
    async fn load(
        &self,
        taken: &Taken,
        spec: &ServiceSpec,
        archive: Option<Vec<u8>>,
    ) -> Result<(), RuntimeError> {
        let directory = service_directory(&spec.key);
        let mut files = Vec::new();
        let mut workspace = Vec::new();
        if let Some(archive) = archive {
            let unpacked = snapshot::unpack_off_thread(spec.runtime, archive).await?;
            files = unpacked.files;
            workspace = unpacked.workspace;
        }
        let worker = taken.worker.clone();
        let target = directory.clone();
        tokio::task::spawn_blocking(move || {
            let workdir = worker.workdir();
            workdir.remove_dir_all(&target)?;
            workdir.create_dirs(&target)?;
            workdir.write_tree(&target, files)
        })
        .await
        .map_err(|err| RuntimeError::Io(std::io::Error::other(err)))??;
        let reply = taken
            .worker
            .call(
                Request::LoadService {
                    key: spec.key.clone(),
                    init_code: spec.init_code.clone(),
                    directory: directory.to_string_lossy().into_owned(),
                },
                workspace,
                None,
                Some(self.execution_timeout),
            )
            .await?;
        if !reply.message.ok {
            let _ = taken.worker.workdir().remove_dir_all(&directory);
            return Err(RuntimeError::ServiceLoad(
                reply.message.error.unwrap_or_default(),
            ));
        }
        let evicted = {
            let mut state = self.state();
            let slot = state
                .slots
                .iter_mut()
                .find(|slot| slot.id == taken.slot)
                .expect("a taken slot stays until given back. This is a bug.");
            slot.loaded.retain(|loaded| loaded != &spec.key);
            slot.loaded.push_back(spec.key.clone());
            let mut evicted = Vec::new();
            while slot.loaded.len() > self.config.max_loaded_per_worker {
                evicted.extend(slot.loaded.pop_front());
            }
            evicted
        };
        for key in evicted {
            taken
                .worker
                .call(
                    Request::UnloadService { key: key.clone() },
                    Vec::new(),
                    None,
                    None,
                )
                .await?;
            let _ = taken
                .worker
                .workdir()
                .remove_dir_all(&service_directory(&key));
        }
        tracing::debug!(runtime = %self.runtime, key = %spec.key, "service loaded into a worker");
        Ok(())
    }

    /// The workers, for shutdown.
    pub(crate) fn drain(&self) -> Vec<WorkerHandle> {
        let slots: Vec<Slot> = self.state().slots.drain(..).collect();
        slots
            .iter()
            .map(|slot| slot.lease.worker().clone())
            .collect()
    }
}

/// Gives a taken worker back when dropped.
struct SlotGuard<'a> {
    workers: &'a ServiceWorkers,
    slot: u64,
    worker_died: bool,
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        self.workers.give_back(self.slot, self.worker_died);
    }
}

/// Releases a reserved growth slot if the lease that fills it is abandoned.
struct GrowthGuard<'a> {
    workers: &'a ServiceWorkers,
    armed: bool,
}

impl Drop for GrowthGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.workers.state();
            state.growing -= 1;
            let interactive_waiting = state.interactive_waiting > 0;
            drop(state);
            self.workers.wake_next(interactive_waiting);
        }
    }
}

/// Counts an interactive request as waiting while it exists.
struct InteractiveWaiting<'a> {
    workers: &'a ServiceWorkers,
}

impl Drop for InteractiveWaiting<'_> {
    fn drop(&mut self) {
        let mut state = self.workers.state();
        state.interactive_waiting -= 1;
        let still_waiting = state.interactive_waiting > 0;
        drop(state);
        // Batch records held back for this request may go again.
        if !still_waiting {
            self.workers.freed_for_batches.notify_waiters();
        }
    }
}

/// Where a loaded service's files live, relative to the worker's working directory.
fn service_directory(key: &str) -> PathBuf {
    Path::new("services").join(key)
}
