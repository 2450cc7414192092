//! A pool of warm workers for one runtime, shaped like the reference's shell pool
//! (`InitialSize`, `MaxSize`).
//!
//! The pool keeps `initial_size` workers started and warmed (imports done) so that a session is
//! handed one at once, and replaces every worker it hands out in the background. It never has
//! more than `max_size` workers alive (idle, leased or starting). A leased worker is never
//! returned: a worker that served a user's session may hold that user's data, so it is
//! discarded when the lease ends and a fresh one takes its place.
//!
//! Until the runtime is ready (for example while the Python environment is being created) and
//! when workers keep failing to start, the pool reports why in its [`PoolStatus`] and refuses
//! leases at once with that reason instead of letting requests hang.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use o16n_types::RuntimeType;
use tokio::sync::{Notify, watch};

use o16n_compute::{PoolHealth, PoolStatus};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::RuntimeError;
use crate::sandbox::Sandbox;
use crate::worker::{Launcher, WorkerHandle};

/// The pool's settings.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Workers kept warm and ready.
    pub initial_size: usize,
    /// Most workers alive at once.
    pub max_size: usize,
    /// How long a lease waits for a worker when all are busy.
    pub acquire_timeout: Duration,
}

/// A pool handle; cheap to clone.
#[derive(Clone)]
pub(crate) struct Pool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    runtime: RuntimeType,
    config: PoolConfig,
    work_root: PathBuf,
    sandbox: Sandbox,
    launch: watch::Receiver<Launch>,
    state: Mutex<PoolState>,
    /// Signalled when a worker becomes idle.
    worker_ready: Notify,
    /// Signalled when the pool may need new workers; shared with the maintenance task, which
    /// must be able to wait on it without keeping the pool alive.
    refill: Arc<Notify>,
    /// How the pool's workers came and went, for the metrics.
    counts: Arc<WorkerCounts>,
}

/// Workers started, failing to start, retired and dying, counted since the pool began.
#[derive(Default)]
struct WorkerCounts {
    started: AtomicU64,
    start_failures: AtomicU64,
    retired: AtomicU64,
    died: AtomicU64,
}

/// Whether and how workers can be started.
#[derive(Debug, Clone)]
pub(crate) enum Launch {
    Preparing(String),
    Ready(Launcher),
    Unavailable(String),
}

/// Why a launch is not ready.
pub(crate) enum NotReady {
    /// It cannot be: the reason.
    Unavailable(String),
    /// It was still being prepared when the wait ended: what is under way.
    Preparing(String),
}

/// Waits until `launch` is ready, at most until `deadline` (without one, for as long as it is
/// being prepared).
pub(crate) async fn ready(
    launch: &mut watch::Receiver<Launch>,
    deadline: Option<tokio::time::Instant>,
) -> Result<Launcher, NotReady> {
    loop {
        let preparing = match &*launch.borrow_and_update() {
            Launch::Ready(launcher) => return Ok(launcher.clone()),
            Launch::Unavailable(why) => return Err(NotReady::Unavailable(why.clone())),
            Launch::Preparing(what) => what.clone(),
        };
        let changed = match deadline {
            Some(deadline) => matches!(
                tokio::time::timeout_at(deadline, launch.changed()).await,
                Ok(Ok(()))
            ),
            None => launch.changed().await.is_ok(),
        };
        if !changed {
            return Err(NotReady::Preparing(preparing));
        }
    }
}

#[derive(Default)]
struct PoolState {
    idle: VecDeque<WorkerHandle>,
    busy: usize,
    starting: usize,
    /// Leases waiting for a worker.
    waiting: usize,
    /// The last start-up failure while the launch spec is ready; cleared by a success.
    start_failure: Option<String>,
}

impl PoolState {
    fn alive(&self) -> usize {
        self.idle.len() + self.busy + self.starting
    }
}

/// A worker leased from the pool. Dropping the lease discards the worker (it is never reused)
/// and lets the pool start a replacement.
pub(crate) struct Lease {
    worker: WorkerHandle,
    pool: Pool,
}

impl Lease {
    pub(crate) fn worker(&self) -> &WorkerHandle {
        &self.worker
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let mut state = self
            .pool
            .inner
            .state
            .lock()
            .expect("pool lock poisoned. This is a bug.");
        state.busy -= 1;
        drop(state);
        self.pool.inner.refill.notify_one();
    }
}

impl Pool {
    /// Creates the pool and starts its maintenance task. Workers start once `launch` is ready.
    pub(crate) fn start(
        runtime: RuntimeType,
        config: PoolConfig,
        work_root: PathBuf,
        sandbox: Sandbox,
        launch: watch::Receiver<Launch>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Pool {
        let pool = Pool {
            inner: Arc::new(PoolInner {
                runtime,
                config,
                work_root,
                sandbox,
                launch,
                state: Mutex::new(PoolState::default()),
                worker_ready: Notify::new(),
                refill: Arc::new(Notify::new()),
                counts: Arc::default(),
            }),
        };
        tasks.spawn(maintain_task(Arc::downgrade(&pool.inner), stop));
        pool
    }

    fn state(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.inner
            .state
            .lock()
            .expect("pool lock poisoned. This is a bug.")
    }

    /// The launch spec, waiting (until `deadline`) while the runtime is being prepared.
    async fn launch_spec(&self, deadline: tokio::time::Instant) -> Result<Launcher, RuntimeError> {
        ready(&mut self.inner.launch.clone(), Some(deadline))
            .await
            .map_err(|not_ready| match not_ready {
                NotReady::Unavailable(why) => RuntimeError::RuntimeUnavailable(why),
                NotReady::Preparing(what) => RuntimeError::RuntimeUnavailable(format!(
                    "the {} runtime is not ready yet: {what}",
                    self.inner.runtime
                )),
            })
    }

    /// Leases a worker: a warm one at once when there is one, else a new one (if the pool may
    /// grow and none is starting) or the next to become ready, waiting at most the acquire
    /// timeout (also while the runtime is still being prepared). When the last attempt to start a worker failed, that failure is returned at
    /// once rather than making the caller wait for a worker that may never come.
    pub(crate) async fn lease(&self) -> Result<Lease, RuntimeError> {
        let deadline = tokio::time::Instant::now() + self.inner.config.acquire_timeout;
        let spec = self.launch_spec(deadline).await?;
        loop {
            // Registered before the state is inspected, so that a worker becoming ready in
            // between is not missed.
            let ready = self.inner.worker_ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            let start_own = {
                let mut state = self.state();
                while let Some(worker) = state.idle.pop_front() {
                    if worker.exit_reason().is_none() {
                        state.busy += 1;
                        drop(state);
                        self.inner.refill.notify_one();
                        return Ok(Lease {
                            worker,
                            pool: self.clone(),
                        });
                    }
                }
                if let Some(failure) = &state.start_failure {
                    return Err(RuntimeError::RuntimeUnavailable(failure.clone()));
                }
                if state.starting == 0 && state.alive() < self.inner.config.max_size {
                    state.starting += 1;
                    true
                } else {
                    false
                }
            };
            if start_own {
                return self.start_for_lease(&spec).await;
            }
            let waiting = WaitingGuard::new(self);
            let waited = tokio::time::timeout_at(deadline, ready).await;
            drop(waiting);
            if waited.is_err() {
                let state = self.state();
                return Err(if state.alive() >= self.inner.config.max_size {
                    RuntimeError::PoolExhausted {
                        runtime: self.inner.runtime.as_str(),
                        max: self.inner.config.max_size,
                    }
                } else {
                    RuntimeError::RuntimeUnavailable(format!(
                        "no {} worker became ready within {} s",
                        self.inner.runtime,
                        self.inner.config.acquire_timeout.as_secs()
                    ))
                });
            }
        }
    }

    /// Starts a worker for a caller who found none idle (its `starting` slot is taken).
    async fn start_for_lease(&self, launcher: &Launcher) -> Result<Lease, RuntimeError> {
        let mut reservation = StartingGuard {
            pool: self,
            armed: true,
        };
        let started = launcher
            .start(&self.inner.work_root, &self.inner.sandbox)
            .await;
        self.count_start(&started);
        reservation.armed = false;
        let mut state = self.state();
        state.starting -= 1;
        match started {
            Ok(worker) => {
                state.busy += 1;
                state.start_failure = None;
                drop(state);
                self.inner.refill.notify_one();
                // The worker is its starter's; callers who waited for it (they may not start
                // one while another starts) may now start their own.
                self.inner.worker_ready.notify_waiters();
                Ok(Lease {
                    worker,
                    pool: self.clone(),
                })
            }
            Err(err) => {
                state.start_failure = Some(err.to_string());
                drop(state);
                self.inner.worker_ready.notify_waiters();
                Err(err)
            }
        }
    }

    /// Counts a start, and the worker's end when it comes.
    fn count_start(&self, started: &Result<WorkerHandle, RuntimeError>) {
        let counts = self.inner.counts.clone();
        match started {
            Ok(worker) => {
                counts.started.fetch_add(1, Ordering::Relaxed);
                let retired = worker.retired();
                tokio::spawn(async move {
                    let counter = if retired.await {
                        &counts.retired
                    } else {
                        &counts.died
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                });
            }
            Err(_) => {
                counts.start_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes the idle workers out of the pool (for shutdown); they stop when dropped.
    pub(crate) fn drain(&self) -> Vec<WorkerHandle> {
        self.state().idle.drain(..).collect()
    }

    /// Where the pool stands.
    pub(crate) fn status(&self) -> PoolStatus {
        let state = self.state();
        let health = match &*self.inner.launch.borrow() {
            Launch::Preparing(what) => PoolHealth::Preparing(what.clone()),
            Launch::Unavailable(why) => PoolHealth::Unavailable(why.clone()),
            Launch::Ready(_) => match &state.start_failure {
                Some(failure) if state.idle.is_empty() => PoolHealth::Unavailable(failure.clone()),
                _ => PoolHealth::Ready,
            },
        };
        PoolStatus {
            runtime: self.inner.runtime,
            health,
            initial_size: self.inner.config.initial_size,
            max_size: self.inner.config.max_size,
            size: state.alive(),
            busy: state.busy,
            idle: state.idle.len(),
            starting: state.starting,
            waiting: state.waiting,
            service: None,
            revision: None,
            environment: None,
            workers_started: self.inner.counts.started.load(Ordering::Relaxed),
            worker_start_failures: self.inner.counts.start_failures.load(Ordering::Relaxed),
            workers_retired: self.inner.counts.retired.load(Ordering::Relaxed),
            workers_died: self.inner.counts.died.load(Ordering::Relaxed),
        }
    }
}

/// Releases a `starting` reservation if the caller that made it is abandoned mid-start (its
/// request was dropped), so that the pool's accounting stays true.
struct StartingGuard<'a> {
    pool: &'a Pool,
    armed: bool,
}

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.pool.state().starting -= 1;
            self.pool.inner.refill.notify_one();
        }
    }
}

/// Counts a lease as waiting while it exists, however the wait ends (the lease's future may be
/// dropped).
struct WaitingGuard<'a> {
    pool: &'a Pool,
}

impl<'a> WaitingGuard<'a> {
    fn new(pool: &'a Pool) -> Self {
        pool.state().waiting += 1;
        WaitingGuard { pool }
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.pool.state().waiting -= 1;
    }
}

/// Keeps `initial_size` workers warm. Holds only a weak reference, so it ends with the pool,
/// or when `stop` is cancelled.
async fn maintain_task(pool: std::sync::Weak<PoolInner>, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    let Some(mut launch) = pool.upgrade().map(|inner| inner.launch.clone()) else {
        return;
    };
    // Once the runtime's preparation is over its sender is gone and no change can come.
    let mut launch_may_change = true;
    loop {
        let Some(inner) = pool.upgrade() else { return };
        let pool_handle = Pool { inner };
        let spec = match &*pool_handle.inner.launch.borrow() {
            Launch::Ready(spec) => Some(spec.clone()),
            _ => None,
        };
        let mut failed = false;
        if let Some(spec) = spec {
            let wanted = {
                let mut state = pool_handle.state();
                state.idle.retain(|worker| worker.exit_reason().is_none());
                let config = &pool_handle.inner.config;
                let missing = config
                    .initial_size
                    .saturating_sub(state.idle.len() + state.starting);
                let room = config.max_size.saturating_sub(state.alive());
                let wanted = missing.min(room);
                state.starting += wanted;
                wanted
            };
            for _ in 0..wanted {
                let started = spec
                    .start(&pool_handle.inner.work_root, &pool_handle.inner.sandbox)
                    .await;
                pool_handle.count_start(&started);
                let mut state = pool_handle.state();
                state.starting -= 1;
                match started {
                    Ok(worker) => {
                        state.idle.push_back(worker);
                        state.start_failure = None;
                        drop(state);
                        pool_handle.inner.worker_ready.notify_waiters();
                    }
                    Err(err) => {
                        tracing::warn!(runtime = %pool_handle.inner.runtime, error = %err, "cannot start a worker");
                        state.start_failure = Some(err.to_string());
                        drop(state);
                        // Waiting leases must learn of the failure rather than time out.
                        pool_handle.inner.worker_ready.notify_waiters();
                        failed = true;
                    }
                }
            }
        }
        let refill = pool_handle.inner.refill.clone();
        // Hold no strong reference while waiting, so that dropping the pool ends this task.
        drop(pool_handle);
        let wait = if failed {
            let wait = backoff;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            wait
        } else {
            backoff = Duration::from_secs(1);
            // Also wake up now and then to notice idle workers that died.
            Duration::from_secs(2)
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = refill.notified() => {}
            changed = launch.changed(), if launch_may_change => launch_may_change = changed.is_ok(),
            () = tokio::time::sleep(wait) => {}
        }
    }
}
