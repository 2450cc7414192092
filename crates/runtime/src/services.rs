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
//!
//! A service's dedicated pool (`dedicated.rs`) is a set of these of its own, with workers of
//! its own pool, one service, a number kept warm ([`ServiceWorkers::prewarm`]) and a limit on
//! how long a request waits for one of them.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use o16n_compute::{
    ConsumeOutcome, OutputFile, PoolStatus, Priority, ServiceSpec, StageTimings, TypedValue,
};
use o16n_types::RuntimeType;
use serde_json::Map;
use tokio::sync::Notify;

use crate::content::ContentStore;
use crate::pool::{Lease, Pool};
use crate::protocol::{FailureKind, Request, WorkerMessage};
use crate::session::accepted;
use crate::worker::{ConsoleSink, WorkerHandle};
use crate::{RuntimeError, snapshot};

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
    /// The service whose dedicated pool these workers are, and how long a request may wait
    /// for one; `None` for the shared service workers, where requests wait as long as it takes.
    dedicated: Option<DedicatedLimits>,
    state: Mutex<State>,
    /// Signalled when a worker is given back and an interactive request may be waiting.
    freed: Notify,
    /// Signalled when a worker is given back and no interactive request waits.
    freed_for_batches: Notify,
}

/// What sets the workers of a dedicated pool apart.
#[derive(Debug, Clone)]
pub(crate) struct DedicatedLimits {
    /// The service, `name/version`.
    pub(crate) service: String,
    /// How long a request waits for a worker before it is refused.
    pub(crate) wait_limit: Duration,
}

#[derive(Default)]
struct State {
    slots: Vec<Slot>,
    growing: usize,
    next_id: u64,
    /// Interactive requests waiting for a worker; batch records yield to them.
    interactive_waiting: usize,
    /// Requests of either priority waiting for a worker, for the pool figures.
    waiting: usize,
}

struct Slot {
    id: u64,
    lease: Lease,
    /// Whose services this worker runs.
    owner: String,
    /// Loaded service keys, least recently used first.
    loaded: VecDeque<String>,
    busy: bool,
    /// Taken by a warm-up rather than a request: the worker still counts as starting.
    warming: bool,
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
        dedicated: Option<DedicatedLimits>,
    ) -> Self {
        ServiceWorkers {
            runtime,
            pool,
            config,
            execution_timeout,
            dedicated,
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
        contents: &ContentStore,
    ) -> Result<ConsumeOutcome, RuntimeError> {
        // Content the node lacks is asked for before a worker is taken for nothing.
        if let Some(content) = &spec.content {
            contents.get(content)?;
        }
        let queued = Instant::now();
        let taken = self.take(&spec.key, &spec.owner, priority).await?;
        let mut timings = StageTimings {
            queue_micros: micros_since(queued),
            ..StageTimings::default()
        };
        // The request's future may be dropped at any await (the client went away); the guard
        // gives the worker back however this ends.
        let mut slot = SlotGuard {
            workers: self,
            slot: taken.slot,
            worker_died: false,
        };
        let outcome = self.run(&taken, spec, inputs, contents, &mut timings).await;
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
                output_files: Vec::new(),
                timings,
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
        let mut counted = None;
        let deadline = self
            .dedicated
            .as_ref()
            .map(|limits| tokio::time::Instant::now() + limits.wait_limit);
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
                    if counted.is_none() {
                        self.state().waiting += 1;
                        counted = Some(Waiting { workers: self });
                    }
                    if priority == Priority::Interactive && waiting.is_none() {
                        self.state().interactive_waiting += 1;
                        waiting = Some(InteractiveWaiting { workers: self });
                    }
                    match (deadline, &self.dedicated) {
                        (Some(deadline), Some(limits)) => {
                            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                                return Err(RuntimeError::DedicatedPoolBusy {
                                    service: limits.service.clone(),
                                    max: self.config.max_workers,
                                    waited_secs: limits.wait_limit.as_secs(),
                                });
                            }
                        }
                        _ => freed.await,
                    }
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
            warming: false,
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
            slot.warming = false;
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
        contents: &ContentStore,
        timings: &mut StageTimings,
    ) -> Result<ConsumeOutcome, RuntimeError> {
        if !taken.has_service {
            let loading = Instant::now();
            self.load(taken, spec, contents).await?;
            timings.load_micros = micros_since(loading);
        }
        let executing = Instant::now();
        let request = Request::Consume {
            key: spec.key.clone(),
            code: spec.code.clone(),
            inputs,
            outputs: spec.outputs.clone(),
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
        if let WorkerMessage::Failed {
            kind: FailureKind::NotLoaded,
            ..
        } = reply.message
        {
            // The worker lost the service (it should not, but a reload is cheap and correct).
            self.load(taken, spec, contents).await?;
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
        let (message, blob) = accepted(reply)?;
        let WorkerMessage::Consumed {
            success,
            error,
            outputs,
            output_files,
            changed_files,
        } = message
        else {
            unreachable!("the worker actor checks the kind of every answer");
        };
        timings.execute_micros = micros_since(executing);
        let console_output = console
            .lock()
            .expect("console lock poisoned. This is a bug.")
            .output();
        // The files' bytes follow one another in the blob, in the order of the list.
        let mut rest = blob.as_slice();
        let mut files = Vec::with_capacity(output_files.len());
        for entry in output_files {
            let content = match entry.size {
                Some(size) => {
                    let size = usize::try_from(size).unwrap_or(usize::MAX);
                    if size > rest.len() {
                        return Err(RuntimeError::Protocol(format!(
                            "output file `{}` is longer than the answer",
                            entry.name
                        )));
                    }
                    let (content, after) = rest.split_at(size);
                    rest = after;
                    Some(content.to_vec())
                }
                None => None,
            };
            files.push(OutputFile {
                name: entry.name,
                content,
            });
        }
        Ok(ConsumeOutcome {
            success,
            error_message: error,
            console_output,
            changed_files,
            outputs,
            output_files: files,
            timings: *timings,
        })
    }

    /// Loads a service into a worker, evicting its least recently used one if it is full.
    async fn load(
        &self,
        taken: &Taken,
        spec: &ServiceSpec,
        contents: &ContentStore,
    ) -> Result<(), RuntimeError> {
        let directory = service_directory(&spec.key);
        let archive = match &spec.content {
            Some(content) => Some(contents.get(content)?),
            None => None,
        };
        let worker = taken.worker.clone();
        let target = directory.clone();
        let runtime = spec.runtime;
        let workspace = tokio::task::spawn_blocking(move || {
            let workdir = worker.workdir();
            workdir.remove_dir_all(&target)?;
            workdir.create_dirs(&target)?;
            match archive {
                Some(archive) => snapshot::unpack_into(runtime, &archive, workdir, &target),
                None => Ok(Vec::new()),
            }
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
        if let Err(err) = accepted(reply) {
            let _ = taken.worker.workdir().remove_dir_all(&directory);
            return Err(match err {
                RuntimeError::InvalidInput(message) => RuntimeError::ServiceLoad(message),
                other => other,
            });
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
            let reply = taken
                .worker
                .call(
                    Request::UnloadService { key: key.clone() },
                    Vec::new(),
                    None,
                    None,
                )
                .await?;
            accepted(reply)?;
            let _ = taken
                .worker
                .workdir()
                .remove_dir_all(&service_directory(&key));
        }
        tracing::debug!(runtime = %self.runtime, key = %spec.key, "service loaded into a worker");
        Ok(())
    }

    /// Loads `spec` into new workers until `target` workers are alive (at most the maximum),
    /// one after the other. The dedicated pools keep their initial size warm with it.
    pub(crate) async fn prewarm(
        &self,
        spec: &ServiceSpec,
        target: usize,
        contents: &ContentStore,
    ) -> Result<(), RuntimeError> {
        let target = target.min(self.config.max_workers);
        loop {
            {
                let mut state = self.state();
                state
                    .slots
                    .retain(|slot| slot.busy || slot.lease.worker().exit_reason().is_none());
                if state.slots.len() + state.growing >= target {
                    return Ok(());
                }
                state.growing += 1;
            }
            let taken = self.grow(&spec.owner).await?;
            if let Some(slot) = self
                .state()
                .slots
                .iter_mut()
                .find(|slot| slot.id == taken.slot)
            {
                slot.warming = true;
            }
            let mut slot = SlotGuard {
                workers: self,
                slot: taken.slot,
                worker_died: true,
            };
            self.load(&taken, spec, contents).await?;
            slot.worker_died = false;
        }
    }

    /// The figures of these workers as a pool: free ones are idle, ones taken by a request
    /// busy, and ones still being warmed up starting (a warm-up is not work a caller waits on).
    pub(crate) fn status(&self, mut status: PoolStatus) -> PoolStatus {
        let state = self.state();
        let taken = state.slots.iter().filter(|slot| slot.busy).count();
        let warming = state.slots.iter().filter(|slot| slot.warming).count();
        status.busy = taken - warming;
        status.idle = state.slots.len() - taken;
        status.starting = state.growing + warming;
        status.size = state.slots.len() + state.growing;
        status.waiting = state.waiting;
        status
    }

    /// Requests waiting for a worker.
    pub(crate) fn waiting(&self) -> usize {
        self.state().waiting
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

/// Counts a request of either priority as waiting while it exists.
struct Waiting<'a> {
    workers: &'a ServiceWorkers,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.workers.state().waiting -= 1;
    }
}

fn micros_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Where a loaded service's files live, relative to the worker's working directory.
fn service_directory(key: &str) -> PathBuf {
    Path::new("services").join(key)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::pool::{Launch, PoolConfig};
    use crate::sandbox::Sandbox;
    use crate::worker::Launcher;

    struct Bench {
        workers: Arc<ServiceWorkers>,
        contents: Arc<ContentStore>,
        _root: tempfile::TempDir,
        _tasks: TaskTracker,
    }

    /// Service workers of fake Python workers, at most `max_workers` of them.
    async fn bench(max_workers: usize) -> Bench {
        bench_with(max_workers, None).await
    }

    /// The workers of a dedicated pool of `max_workers` whose requests wait at most 5 s.
    async fn dedicated_bench(max_workers: usize) -> Bench {
        bench_with(
            max_workers,
            Some(DedicatedLimits {
                service: "scoring/v1".to_owned(),
                wait_limit: Duration::from_secs(5),
            }),
        )
        .await
    }

    async fn bench_with(max_workers: usize, dedicated: Option<DedicatedLimits>) -> Bench {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("work")).unwrap();
        let sandbox = Sandbox::off_for_tests(root.path().join("locks")).await;
        let (_launch, ready) = watch::channel(Launch::Ready(Launcher::Fake(RuntimeType::Python)));
        let tasks = TaskTracker::new();
        let pool = Pool::start(
            RuntimeType::Python,
            PoolConfig {
                initial_size: 0,
                max_size: 8,
                acquire_timeout: Duration::from_secs(30),
            },
            root.path().join("work"),
            sandbox,
            ready,
            &tasks,
            CancellationToken::new(),
        );
        let workers = ServiceWorkers::new(
            RuntimeType::Python,
            pool,
            ServiceWorkersConfig {
                max_workers,
                max_loaded_per_worker: 4,
            },
            Duration::from_secs(600),
            dedicated,
        );
        let contents = ContentStore::open(root.path().join("content"), 1 << 20).unwrap();
        Bench {
            workers: Arc::new(workers),
            contents: Arc::new(contents),
            _root: root,
            _tasks: tasks,
        }
    }

    fn service(owner: &str, code: &str) -> ServiceSpec {
        ServiceSpec {
            key: format!("{owner}-{}", code.len()),
            owner: owner.to_owned(),
            runtime: RuntimeType::Python,
            code: code.to_owned(),
            init_code: None,
            outputs: Vec::new(),
            output_file_names: Vec::new(),
            content: None,
            pool: None,
            environment: None,
        }
    }

    impl Bench {
        fn consume(
            &self,
            spec: ServiceSpec,
            priority: Priority,
        ) -> tokio::task::JoinHandle<Result<ConsumeOutcome, RuntimeError>> {
            let (workers, contents) = (self.workers.clone(), self.contents.clone());
            tokio::spawn(async move {
                workers
                    .consume(&spec, Vec::new(), priority, &contents)
                    .await
            })
        }

        fn worker_owners(&self) -> Vec<String> {
            self.workers
                .state()
                .slots
                .iter()
                .map(|slot| slot.owner.clone())
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_interactive_request_goes_before_batch_records_that_waited_longer() {
        let bench = bench(1).await;
        let busy = bench.consume(service("alice", "sleep 100"), Priority::Batch);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let batch = bench.consume(service("alice", "sleep 100"), Priority::Batch);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let interactive = bench.consume(service("alice", "sleep 1"), Priority::Interactive);

        busy.await.unwrap().unwrap();
        let interactive_done = interactive.await.unwrap().unwrap();
        assert!(interactive_done.success);
        assert!(
            !batch.is_finished(),
            "the batch record ran before the interactive request"
        );
        assert!(batch.await.unwrap().unwrap().success);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_runs_the_services_of_one_owner_only() {
        let bench = bench(1).await;
        bench
            .consume(service("alice", "x"), Priority::Interactive)
            .await
            .unwrap()
            .unwrap();
        // Only the worker's end is watched: a handle kept here would keep it alive.
        let alices_worker_ended = bench.workers.state().slots[0].lease.worker().exited();
        assert_eq!(bench.worker_owners(), ["alice"]);

        bench
            .consume(service("bob", "x"), Priority::Interactive)
            .await
            .unwrap()
            .unwrap();

        assert_eq!(bench.worker_owners(), ["bob"]);
        tokio::time::timeout(Duration::from_secs(60), alices_worker_ended)
            .await
            .expect("alice's worker was not discarded");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_dropped_mid_run_gives_its_worker_back() {
        let bench = bench(1).await;
        let abandoned = bench.consume(service("alice", "sleep 1000"), Priority::Interactive);
        tokio::time::sleep(Duration::from_millis(10)).await;
        abandoned.abort();
        let _ = abandoned.await;

        let next = bench.consume(service("alice", "x"), Priority::Interactive);
        let outcome = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("the worker was not given back")
            .unwrap()
            .unwrap();
        assert!(outcome.success);
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_being_warmed_counts_as_starting_not_busy() {
        let bench = dedicated_bench(2).await;
        let mut spec = service("alice", "x");
        spec.init_code = Some("sleep 1000".to_owned());
        let workers = &bench.workers;
        let warming = workers.prewarm(&spec, 2, &bench.contents);
        tokio::pin!(warming);
        tokio::select! {
            _ = &mut warming => panic!("the warm-up did not wait for the initCode"),
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        let status = workers.status(workers.pool.status());
        assert_eq!((status.idle, status.busy, status.starting), (0, 0, 1));

        warming.await.unwrap();
        let status = workers.status(workers.pool.status());
        assert_eq!((status.idle, status.busy, status.starting), (2, 0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dedicated_pool_keeps_workers_warm_and_refuses_a_request_that_waited_too_long() {
        let bench = dedicated_bench(1).await;
        let mut spec = service("alice", "sleep 60000");
        spec.init_code = Some("loaded".to_owned());
        bench
            .workers
            .prewarm(&spec, 3, &bench.contents)
            .await
            .unwrap();
        let warm = bench.workers.status(bench.workers.pool.status());
        assert_eq!(
            (warm.idle, warm.busy, warm.size),
            (1, 0, 1),
            "the maximum caps the warm size"
        );

        let running = bench.consume(spec.clone(), Priority::Interactive);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let status = bench.workers.status(bench.workers.pool.status());
        assert_eq!((status.busy, status.waiting), (1, 0));
        let waiting = bench.consume(spec.clone(), Priority::Interactive);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(bench.workers.status(bench.workers.pool.status()).waiting, 1);

        let refused = waiting.await.unwrap();
        assert!(
            matches!(&refused, Err(RuntimeError::DedicatedPoolBusy { service, .. }) if service == "scoring/v1"),
            "{:?}",
            refused.err()
        );
        assert_eq!(bench.workers.status(bench.workers.pool.status()).waiting, 0);
        let outcome = running.await.unwrap().unwrap();
        assert!(outcome.success);
        assert_eq!(
            outcome.timings.load_micros, 0,
            "the warm worker had the service loaded"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_worker_that_answers_with_the_wrong_kind_is_stopped() {
        let root = tempfile::tempdir().unwrap();
        let worker = crate::fake::spawn(RuntimeType::Python, root.path())
            .await
            .unwrap();
        let request = Request::Execute {
            code: "misbehave".to_owned(),
            inputs: Vec::new(),
            outputs: Vec::new(),
        };

        let answer = worker.call(request, Vec::new(), None, None).await;

        assert!(
            matches!(&answer, Err(RuntimeError::Protocol(message)) if message.contains("done")),
            "{:?}",
            answer.err()
        );
        worker.exited().await;
    }
}
