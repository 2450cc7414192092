//! The compute side of o16n: worker processes that run R and Python code, their pools, and the
//! remote sessions built on them.
//!
//! [`ComputeNode`] is the narrow interface the web side uses. Everything it takes and returns is
//! plain data (ids, names, values, bytes), so that a later version can put a network between
//! web nodes and compute nodes (the reference's compute nodes listen on 12805) without changing
//! its callers. In the one-box server it runs in-process.
//!
//! **Invariant:** no user code runs in this process. Code runs in worker processes
//! (`worker.rs`), each in a sandbox of its own (`sandbox.rs`), that speak the framed protocol of
//! `protocol.rs` on a channel of their own; what user code prints is captured as console output
//! and never reaches that channel. Start reading at [`ComputeNode`], then `session.rs`,
//! `pool.rs`, `worker.rs` and `sandbox.rs`.

mod error;
mod pool;
pub mod protocol;
pub mod python_env;
mod r_env;
mod sandbox;
mod services;
mod session;
mod snapshot;
mod workdir;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use o16n_types::RuntimeType;
use tokio::sync::watch;

pub use error::RuntimeError;
pub use pool::{PoolConfig, PoolHealth, PoolStatus};
pub use protocol::TypedValue;
pub use python_env::PythonConfig;
pub use r_env::RConfig;
pub use sandbox::SandboxConfig;
pub use services::{ConsumeOutcome, Priority, ServiceSpec, ServiceWorkersConfig, SnapshotFetch};
pub use session::{ExecuteOutcome, ExecuteRequest, SessionInfo};

use pool::{Launch, Pool};
use sandbox::Sandbox;
use services::ServiceWorkers;
use session::Sessions;

/// Settings of a compute node.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    /// Where workers' working directories are created; emptied at start.
    pub work_root: PathBuf,
    /// How workers are isolated.
    pub sandbox: SandboxConfig,
    /// The Python runtime.
    pub python: PythonConfig,
    /// The Python pool.
    pub python_pool: PoolConfig,
    /// The Python workers that run services.
    pub python_services: ServiceWorkersConfig,
    /// The R runtime.
    pub r: RConfig,
    /// The R pool.
    pub r_pool: PoolConfig,
    /// The R workers that run services.
    pub r_services: ServiceWorkersConfig,
    /// The longest an execution may run before it is interrupted.
    pub execution_timeout: Duration,
    /// Sessions unused for this long are closed.
    pub session_idle_timeout: Duration,
}

/// A compute node: pools of warm workers per runtime and the sessions running on them.
/// Cheap to clone.
#[derive(Clone)]
pub struct ComputeNode {
    inner: Arc<ComputeInner>,
}

struct ComputeInner {
    pools: HashMap<RuntimeType, Pool>,
    services: HashMap<RuntimeType, ServiceWorkers>,
    sessions: Sessions,
    /// Whether user code is isolated, and how, in words.
    isolation: Option<&'static str>,
}

impl ComputeNode {
    /// Starts the node: checks that workers can be sandboxed (refusing to start when they
    /// cannot, unless the sandbox is off), clears working directories left by an earlier run,
    /// starts the pools, and prepares the Python environment in the background when it is
    /// missing.
    pub async fn start(config: ComputeConfig) -> Result<ComputeNode, RuntimeError> {
        let sandbox = Sandbox::detect(config.sandbox.clone()).await?;
        if sandbox.enabled() {
            tracing::info!("{}", sandbox.describe());
        } else {
            tracing::warn!("{}", sandbox.describe());
        }
        if config.work_root.exists() {
            tokio::fs::remove_dir_all(&config.work_root).await?;
        }
        tokio::fs::create_dir_all(&config.work_root).await?;

        let (python_launch, launch_receiver) = watch::channel(Launch::Preparing(
            "the Python environment is being checked".to_owned(),
        ));
        prepare_python(config.python.clone(), python_launch);
        let python_pool = Pool::start(
            RuntimeType::Python,
            config.python_pool.clone(),
            config.work_root.clone(),
            sandbox.clone(),
            launch_receiver,
        );
        let python_services = ServiceWorkers::new(
            RuntimeType::Python,
            python_pool.clone(),
            config.python_services.clone(),
            config.execution_timeout,
        );
        let (r_launch, r_launch_receiver) =
            watch::channel(Launch::Preparing("R is being checked".to_owned()));
        prepare_r(config.r.clone(), r_launch);
        let r_pool = Pool::start(
            RuntimeType::R,
            config.r_pool.clone(),
            config.work_root.clone(),
            sandbox.clone(),
            r_launch_receiver,
        );
        let r_services = ServiceWorkers::new(
            RuntimeType::R,
            r_pool.clone(),
            config.r_services.clone(),
            config.execution_timeout,
        );
        let sessions = Sessions::new(config.execution_timeout);
        sessions.start_idle_reaper(config.session_idle_timeout);
        Ok(ComputeNode {
            inner: Arc::new(ComputeInner {
                pools: HashMap::from([
                    (RuntimeType::Python, python_pool),
                    (RuntimeType::R, r_pool),
                ]),
                services: HashMap::from([
                    (RuntimeType::Python, python_services),
                    (RuntimeType::R, r_services),
                ]),
                sessions,
                isolation: sandbox.enabled().then(|| sandbox.describe()),
            }),
        })
    }

    /// A node that runs no code: every runtime is reported unavailable. Used by processes that
    /// only administer the database (the `o16n admin` commands).
    pub fn without_runtimes() -> ComputeNode {
        ComputeNode {
            inner: Arc::new(ComputeInner {
                pools: HashMap::new(),
                services: HashMap::new(),
                sessions: Sessions::new(Duration::ZERO),
                isolation: None,
            }),
        }
    }

    /// How user code is isolated, or `None` when it is not (the sandbox is off, or this node
    /// runs no code).
    pub fn isolation(&self) -> Option<&'static str> {
        self.inner.isolation
    }

    /// The state of every runtime's pool, R included (reported as unavailable when absent).
    pub fn status(&self) -> Vec<PoolStatus> {
        let mut statuses: Vec<PoolStatus> = self.inner.pools.values().map(Pool::status).collect();
        for runtime in [RuntimeType::Python, RuntimeType::R] {
            if !self.inner.pools.contains_key(&runtime) {
                statuses.push(PoolStatus {
                    runtime,
                    health: PoolHealth::Unavailable(missing_runtime_message(runtime)),
                    initial_size: 0,
                    max_size: 0,
                    size: 0,
                    busy: 0,
                    idle: 0,
                    starting: 0,
                });
            }
        }
        statuses.sort_by_key(|status| status.runtime);
        statuses
    }

    fn pool(&self, runtime: RuntimeType) -> Result<&Pool, RuntimeError> {
        self.inner
            .pools
            .get(&runtime)
            .ok_or_else(|| RuntimeError::RuntimeNotSupported(missing_runtime_message(runtime)))
    }

    /// Opens a session for `owner` on a dedicated worker.
    pub async fn create_session(
        &self,
        owner: &str,
        name: Option<String>,
        runtime: RuntimeType,
    ) -> Result<SessionInfo, RuntimeError> {
        let lease = self.pool(runtime)?.lease().await?;
        Ok(self.inner.sessions.open(owner, name, runtime, lease))
    }

    /// Runs one request of a web service on a worker that has it loaded, loading it (with the
    /// snapshot `fetch_snapshot` provides) where needed.
    pub async fn consume(
        &self,
        spec: &ServiceSpec,
        inputs: Vec<TypedValue>,
        priority: Priority,
        fetch_snapshot: impl FnOnce() -> SnapshotFetch,
    ) -> Result<ConsumeOutcome, RuntimeError> {
        let workers = self.inner.services.get(&spec.runtime).ok_or_else(|| {
            RuntimeError::RuntimeNotSupported(missing_runtime_message(spec.runtime))
        })?;
        workers
            .consume(spec, inputs, priority, fetch_snapshot)
            .await
    }

    /// The sessions of `owner` that are alive.
    pub fn list_sessions(&self, owner: &str) -> Vec<SessionInfo> {
        self.inner.sessions.list(owner)
    }

    /// The session machinery; every method checks that the session belongs to `owner`.
    pub fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    /// Stops every session and worker, waiting briefly for the processes to exit.
    pub async fn shutdown(&self) {
        let mut workers = self.inner.sessions.close_all();
        for service_workers in self.inner.services.values() {
            workers.extend(service_workers.drain());
        }
        for pool in self.inner.pools.values() {
            workers.extend(pool.drain());
        }
        let exits: Vec<_> = workers.iter().map(|worker| worker.exited()).collect();
        drop(workers);
        let all_exited = async {
            for exit in exits {
                exit.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), all_exited).await;
    }
}

fn missing_runtime_message(runtime: RuntimeType) -> String {
    format!("this process runs no {runtime} workers")
}

/// Makes the R launch spec ready once R and jsonlite are found.
fn prepare_r(config: RConfig, launch: watch::Sender<Launch>) {
    tokio::spawn(async move {
        let _ = launch.send(match r_env::launch_spec(&config).await {
            Ok(spec) => Launch::Ready(spec),
            Err(err) => {
                tracing::warn!(error = %err, "the R runtime is not available");
                Launch::Unavailable(err.to_string())
            }
        });
    });
}

/// Makes the Python launch spec ready, creating the managed environment first if needed.
fn prepare_python(config: PythonConfig, launch: watch::Sender<Launch>) {
    tokio::spawn(async move {
        if let Some(executable) = &config.executable
            && !executable.exists()
        {
            let _ = launch.send(Launch::Unavailable(format!(
                "the configured Python interpreter {} does not exist (runtime.python.executable)",
                executable.display()
            )));
            return;
        }
        if config.needs_setup() {
            let _ = launch.send(Launch::Preparing(
                "the managed Python environment is being created (first start: pip is installing \
                 numpy, pandas, scikit-learn and dill; this takes a minute or two)"
                    .to_owned(),
            ));
        }
        let prepared = match python_env::setup(&config).await {
            Ok(interpreter) => python_env::launch_spec(&config, interpreter).await,
            Err(err) => Err(err),
        };
        let _ = launch.send(match prepared {
            Ok(spec) => Launch::Ready(spec),
            Err(err) => {
                tracing::error!(error = %err, "the Python runtime cannot be prepared");
                Launch::Unavailable(format!(
                    "the Python runtime cannot be prepared: {err}; run `o16n runtime setup python` to see the details"
                ))
            }
        });
    });
}
