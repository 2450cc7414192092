//! The compute side of o16n: worker processes that run R and Python code, their pools, and the
//! remote sessions built on them.
//!
//! [`ComputeNode`] implements the compute interface ([`o16n_compute::Compute`]): a one-box
//! server calls it in-process, and a compute node of a cluster serves it to web nodes over the
//! cluster's internal API. Content (snapshot archives) arrives by digest and is kept in the
//! node's cache (`content.rs`).
//!
//! **Invariant:** no user code runs in this process. Code runs in worker processes
//! (`worker.rs`), each in a sandbox of its own (`sandbox.rs`), that speak the framed protocol of
//! `protocol.rs` on a channel of their own; what user code prints is captured as console output
//! and never reaches that channel. Start reading at [`ComputeNode`], then `session.rs`,
//! `pool.rs`, `worker.rs` and `sandbox.rs`.

mod bounded;
mod content;
mod dedicated;
mod egress;
mod environments;
mod error;
#[cfg(test)]
mod fake;
mod launch;
mod pool;
pub mod protocol;
pub mod python_env;
mod r_env;
mod reaper;
mod remove;
mod sandbox;
mod seal;
mod seccomp;
mod services;
mod session;
mod snapshot;
mod template;
mod workdir;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use o16n_compute::{
    ByteStream, Compute, ComputeCall, ComputeError, ComputeReply, ConsumeOutcome, ConsumeRequest,
    ContentRef, Download, EnvironmentBuild, EnvironmentBuildReport, EnvironmentRef, ExecuteOutcome,
    ExecuteRequest, NewSession, NodeStatus, PoolStatus, ServiceSpec, SessionInfo, SessionRef,
};
use o16n_types::{Clock, RuntimeType};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use egress::AllowedDestination;
pub use environments::EnvironmentsConfig;
pub use error::RuntimeError;
pub use pool::PoolConfig;
pub use python_env::PythonConfig;
pub use r_env::RConfig;
pub use sandbox::SandboxConfig;
pub use services::ServiceWorkersConfig;

use content::ContentStore;
use dedicated::{DedicatedPools, DedicatedSettings};
use environments::Environments;
use pool::{Launch, Pool};
use sandbox::Sandbox;
use services::ServiceWorkers;
use session::Sessions;
use template::Templates;
use worker::Launcher;

/// Settings of a compute node.
#[derive(Debug, Clone)]
pub struct ComputeConfig {
    /// Where workers' working directories are created; emptied at start.
    pub work_root: PathBuf,
    /// Where content received by digest is kept; emptied at start.
    pub content_dir: PathBuf,
    /// The most bytes of content kept; the least recently used goes first.
    pub content_cache_bytes: u64,
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
    /// Named environments: where packages come from, how builds run, their pools' size.
    pub environments: EnvironmentsConfig,
    /// How long a request of a service with a dedicated pool waits for one of its workers.
    pub dedicated_pool_wait: Duration,
    /// The longest an execution may run before it is interrupted.
    pub execution_timeout: Duration,
    /// Sessions unused for this long are closed.
    pub session_idle_timeout: Duration,
    /// The clock that idle sessions are measured by.
    pub clock: Clock,
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
    dedicated: DedicatedPools,
    environments: Arc<Environments>,
    /// The pool and service workers of every environment in use, by build.
    environment_pools: Mutex<HashMap<String, Arc<EnvironmentPool>>>,
    /// What environment pools are made of: the runtimes' pool and service settings.
    pool_settings: HashMap<RuntimeType, (PoolConfig, ServiceWorkersConfig)>,
    work_root: PathBuf,
    sandbox: Sandbox,
    execution_timeout: Duration,
    sessions: Sessions,
    contents: Arc<ContentStore>,
    /// Whether user code is isolated, and how, in words.
    isolation: Option<&'static str>,
    /// When the node started, in Unix seconds.
    started_at: i64,
    /// The node's background tasks (pool maintenance, runtime preparation, idle sessions),
    /// stopped at shutdown.
    tasks: TaskTracker,
    stop: CancellationToken,
}

impl ComputeNode {
    /// Starts the node: checks that workers can be sandboxed (refusing to start when they
    /// cannot, unless the sandbox is off), clears what an earlier run left, starts the pools,
    /// and prepares the Python environment in the background when it is missing.
    pub async fn start(config: ComputeConfig) -> Result<ComputeNode, RuntimeError> {
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let sandbox = Sandbox::detect(config.sandbox.clone(), &tasks, stop.clone()).await?;
        if sandbox.enabled() {
            tracing::info!("{}", sandbox.describe());
        } else {
            tracing::warn!("{}", sandbox.describe());
        }
        remove::remove_tree_blocking(config.work_root.clone()).await?;
        tokio::fs::create_dir_all(&config.work_root).await?;
        let contents = Arc::new(ContentStore::open(
            config.content_dir.clone(),
            config.content_cache_bytes,
        )?);
        let templates = Templates {
            sandbox: sandbox.clone(),
            work_root: config.work_root.clone(),
            environments: config.environments.root.clone(),
            tasks: tasks.clone(),
            stop: stop.clone(),
        };

        let (python_launch, launch_receiver) = watch::channel(Launch::Preparing(
            "the Python environment is being checked".to_owned(),
        ));
        tasks.spawn(prepare_python(
            config.python.clone(),
            templates.clone(),
            python_launch,
        ));
        let python_pool = Pool::start(
            RuntimeType::Python,
            config.python_pool.clone(),
            config.work_root.clone(),
            sandbox.clone(),
            launch_receiver.clone(),
            &tasks,
            stop.clone(),
        );
        let (r_launch, r_launch_receiver) =
            watch::channel(Launch::Preparing("R is being checked".to_owned()));
        tasks.spawn(prepare_r(config.r.clone(), templates.clone(), r_launch));
        let r_pool = Pool::start(
            RuntimeType::R,
            config.r_pool.clone(),
            config.work_root.clone(),
            sandbox.clone(),
            r_launch_receiver.clone(),
            &tasks,
            stop.clone(),
        );
        let services = HashMap::from([
            (
                RuntimeType::Python,
                ServiceWorkers::new(
                    RuntimeType::Python,
                    python_pool.clone(),
                    config.python_services.clone(),
                    config.execution_timeout,
                    None,
                ),
            ),
            (
                RuntimeType::R,
                ServiceWorkers::new(
                    RuntimeType::R,
                    r_pool.clone(),
                    config.r_services.clone(),
                    config.execution_timeout,
                    None,
                ),
            ),
        ]);
        let default_launches = HashMap::from([
            (RuntimeType::Python, launch_receiver),
            (RuntimeType::R, r_launch_receiver),
        ]);
        let environments = Arc::new(Environments::new(
            config.environments.clone(),
            sandbox.clone(),
            default_launches.clone(),
            tasks.clone(),
            stop.clone(),
        ));
        let dedicated = DedicatedPools::new(
            DedicatedSettings {
                launch: default_launches,
                environments: environments.clone(),
                node_limits: HashMap::from([
                    (RuntimeType::Python, config.python_services.max_workers),
                    (RuntimeType::R, config.r_services.max_workers),
                ]),
                work_root: config.work_root.clone(),
                sandbox: sandbox.clone(),
                execution_timeout: config.execution_timeout,
                wait_limit: config.dedicated_pool_wait,
                contents: contents.clone(),
            },
            tasks.clone(),
            stop.clone(),
        );
        let sessions = Sessions::new(
            config.execution_timeout,
            config.session_idle_timeout,
            config.clock.clone(),
        );
        sessions.start_idle_reaper(&tasks, stop.clone());
        Ok(ComputeNode {
            inner: Arc::new(ComputeInner {
                pools: HashMap::from([
                    (RuntimeType::Python, python_pool),
                    (RuntimeType::R, r_pool),
                ]),
                services,
                dedicated,
                environments,
                environment_pools: Mutex::new(HashMap::new()),
                pool_settings: HashMap::from([
                    (
                        RuntimeType::Python,
                        (config.python_pool.clone(), config.python_services.clone()),
                    ),
                    (
                        RuntimeType::R,
                        (config.r_pool.clone(), config.r_services.clone()),
                    ),
                ]),
                work_root: config.work_root.clone(),
                sandbox: sandbox.clone(),
                execution_timeout: config.execution_timeout,
                sessions,
                contents,
                isolation: sandbox.enabled().then(|| sandbox.describe()),
                started_at: config.clock.now_ms() / 1000,
                tasks,
                stop,
            }),
        })
    }

    fn pool(&self, runtime: RuntimeType) -> Result<&Pool, RuntimeError> {
        self.inner
            .pools
            .get(&runtime)
            .ok_or_else(|| RuntimeError::RuntimeNotSupported(missing_runtime_message(runtime)))
    }

    /// The pool and service workers of an environment, built on this node first when needed
    /// (the caller waits for the build, at most its time limit).
    async fn environment_pool(
        &self,
        environment: &EnvironmentRef,
    ) -> Result<Arc<EnvironmentPool>, RuntimeError> {
        let key = environments::lock_handle(environment);
        let existing = self
            .inner
            .environment_pools
            .lock()
            .expect("environment pools lock poisoned. This is a bug.")
            .get(&key)
            .cloned();
        if let Some(pool) = existing {
            return Ok(pool);
        }
        let mut launch = self.inner.environments.launch(&key, environment);
        let deadline = tokio::time::Instant::now() + self.inner.environments.build_timeout();
        pool::ready(&mut launch, Some(deadline))
            .await
            .map_err(|not_ready| match not_ready {
                pool::NotReady::Unavailable(why) => RuntimeError::RuntimeUnavailable(why),
                pool::NotReady::Preparing(_) => RuntimeError::RuntimeUnavailable(format!(
                    "environment `{}` was not built on this compute node in time",
                    environment.name
                )),
            })?;
        let mut pools = self
            .inner
            .environment_pools
            .lock()
            .expect("environment pools lock poisoned. This is a bug.");
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let (pool_config, services_config) = self
            .inner
            .pool_settings
            .get(&environment.runtime)
            .cloned()
            .ok_or_else(|| {
                RuntimeError::RuntimeNotSupported(missing_runtime_message(environment.runtime))
            })?;
        let pool = Pool::start(
            environment.runtime,
            PoolConfig {
                initial_size: self
                    .inner
                    .environments
                    .pool_size()
                    .min(pool_config.max_size),
                ..pool_config
            },
            self.inner.work_root.clone(),
            self.inner.sandbox.clone(),
            launch,
            &self.inner.tasks,
            self.inner.stop.clone(),
        );
        let services = ServiceWorkers::new(
            environment.runtime,
            pool.clone(),
            services_config,
            self.inner.execution_timeout,
            None,
        );
        let created = Arc::new(EnvironmentPool {
            name: environment.name.clone(),
            pool,
            services,
        });
        // The pool of the environment's previous build goes: its idle workers stop, and
        // sessions and requests running on it finish there (they hold it).
        pools.retain(|_, pool| pool.name != environment.name);
        pools.insert(key, created.clone());
        tracing::info!(environment = %environment.name, "environment pool created");
        Ok(created)
    }

    fn environment_pools(&self) -> Vec<Arc<EnvironmentPool>> {
        self.inner
            .environment_pools
            .lock()
            .expect("environment pools lock poisoned. This is a bug.")
            .values()
            .cloned()
            .collect()
    }

    /// The state of every runtime's shared pool (counting the service requests waiting for
    /// its workers), then of every environment's and every dedicated pool.
    fn pool_statuses(&self) -> Vec<PoolStatus> {
        let mut statuses: Vec<PoolStatus> = self
            .inner
            .pools
            .iter()
            .map(|(runtime, pool)| {
                let mut status = pool.status();
                if let Some(workers) = self.inner.services.get(runtime) {
                    status.waiting += workers.waiting();
                }
                status
            })
            .collect();
        statuses.sort_by_key(|status| status.runtime);
        let mut environment_statuses: Vec<PoolStatus> = self
            .environment_pools()
            .iter()
            .map(|environment| {
                let mut status = environment.pool.status();
                status.waiting += environment.services.waiting();
                status.environment = Some(environment.name.clone());
                status
            })
            .collect();
        environment_statuses.sort_by(|a, b| a.environment.cmp(&b.environment));
        statuses.extend(environment_statuses);
        statuses.extend(self.inner.dedicated.statuses());
        statuses
    }

    /// The service workers that run `service`: its dedicated pool's, its environment's, or
    /// the shared ones.
    async fn consume_on(
        &self,
        service: &ServiceSpec,
    ) -> Result<ServiceWorkersRef<'_>, RuntimeError> {
        if let Some(environment) = &service.environment {
            // Built before anything waits for a worker, so that a first request on this node
            // waits for the build rather than for the pool's patience.
            let pool = self.environment_pool(environment).await?;
            if service.pool.is_none() {
                return Ok(ServiceWorkersRef::Environment(pool));
            }
        }
        if service.pool.is_some() {
            return Ok(ServiceWorkersRef::Dedicated(
                self.inner.dedicated.pool_for(service)?,
            ));
        }
        self.inner
            .services
            .get(&service.runtime)
            .map(ServiceWorkersRef::Shared)
            .ok_or_else(|| {
                RuntimeError::RuntimeNotSupported(missing_runtime_message(service.runtime))
            })
    }

    /// Stops every session, worker and background task, waiting briefly for the processes to
    /// exit.
    pub async fn shutdown(&self) {
        self.inner.stop.cancel();
        self.inner.tasks.close();
        let mut workers = self.inner.sessions.close_all();
        for service_workers in self.inner.services.values() {
            workers.extend(service_workers.drain());
        }
        workers.extend(self.inner.dedicated.drain());
        for environment in self.environment_pools() {
            workers.extend(environment.services.drain());
            workers.extend(environment.pool.drain());
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
            self.inner.tasks.wait().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), all_exited).await;
    }
}

#[async_trait]
impl Compute for ComputeNode {
    async fn call(&self, call: ComputeCall) -> Result<ComputeReply, ComputeError> {
        match call {
            ComputeCall::Status => self.status().await.map(Into::into),
            ComputeCall::CreateSession(request) => {
                self.create_session(request).await.map(Into::into)
            }
            ComputeCall::Sessions => self.sessions().await.map(Into::into),
            ComputeCall::CloseSession { session, force } => {
                self.close_session(&session, force).await.map(Into::into)
            }
            ComputeCall::Execute { session, request } => {
                self.execute(&session, request).await.map(Into::into)
            }
            ComputeCall::Cancel { session } => self.cancel(&session).await.map(Into::into),
            ComputeCall::ConsoleOutput { session } => {
                self.console_output(&session).await.map(Into::into)
            }
            ComputeCall::History { session } => self.history(&session).await.map(Into::into),
            ComputeCall::ListFiles { session } => self.list_files(&session).await.map(Into::into),
            ComputeCall::DeleteFile { session, name } => {
                self.delete_file(&session, &name).await.map(Into::into)
            }
            ComputeCall::ListObjects { session } => {
                self.list_objects(&session).await.map(Into::into)
            }
            ComputeCall::GetObject { session, name } => {
                self.get_object(&session, &name).await.map(Into::into)
            }
            ComputeCall::PutObject {
                session,
                name,
                content,
            } => self
                .put_object(&session, &name, content)
                .await
                .map(Into::into),
            ComputeCall::DeleteObject { session, name } => {
                self.delete_object(&session, &name).await.map(Into::into)
            }
            ComputeCall::ImportSnapshot { session, content } => self
                .import_snapshot(&session, &content)
                .await
                .map(Into::into),
            ComputeCall::Consume(request) => self.consume(request).await.map(Into::into),
            ComputeCall::SetDedicatedPools(services) => {
                self.set_dedicated_pools(services).await.map(Into::into)
            }
            ComputeCall::BuildEnvironment(build) => {
                self.build_environment(build).await.map(Into::into)
            }
        }
    }

    async fn upload_file(
        &self,
        session: &SessionRef,
        name: &str,
        content: ByteStream,
    ) -> Result<(), ComputeError> {
        Ok(self
            .inner
            .sessions
            .upload_file(session, name, content)
            .await?)
    }

    async fn download_file(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<Download, ComputeError> {
        Ok(self.inner.sessions.download_file(session, name).await?)
    }

    async fn export_snapshot(&self, session: &SessionRef) -> Result<Download, ComputeError> {
        Ok(self.inner.sessions.export_snapshot(session).await?)
    }

    async fn put_content(
        &self,
        content: &ContentRef,
        bytes: ByteStream,
    ) -> Result<(), ComputeError> {
        Ok(self.inner.contents.put(content, bytes).await?)
    }
}

/// The operations of the compute interface on values, each answering one [`ComputeCall`].
impl ComputeNode {
    async fn status(&self) -> Result<NodeStatus, ComputeError> {
        Ok(NodeStatus {
            pools: self.pool_statuses(),
            isolation: self.inner.isolation.map(str::to_owned),
            sessions: self.inner.sessions.count(),
            started_at: self.inner.started_at,
        })
    }

    async fn create_session(&self, request: NewSession) -> Result<SessionInfo, ComputeError> {
        let lease = match &request.environment {
            Some(environment) if environment.runtime != request.runtime => {
                return Err(ComputeError::InvalidInput(format!(
                    "environment `{}` is for {}, not {}",
                    environment.name, environment.runtime, request.runtime
                )));
            }
            Some(environment) => {
                self.environment_pool(environment)
                    .await?
                    .pool
                    .lease()
                    .await?
            }
            None => self.pool(request.runtime)?.lease().await?,
        };
        Ok(self
            .inner
            .sessions
            .open(&request.owner, request.name, request.runtime, lease))
    }

    async fn sessions(&self) -> Result<Vec<SessionInfo>, ComputeError> {
        Ok(self.inner.sessions.all())
    }

    async fn close_session(&self, session: &SessionRef, force: bool) -> Result<(), ComputeError> {
        Ok(self.inner.sessions.close(session, force)?)
    }

    async fn execute(
        &self,
        session: &SessionRef,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, ComputeError> {
        Ok(self.inner.sessions.execute(session, request).await?)
    }

    async fn cancel(&self, session: &SessionRef) -> Result<(), ComputeError> {
        Ok(self.inner.sessions.cancel(session)?)
    }

    async fn console_output(&self, session: &SessionRef) -> Result<String, ComputeError> {
        Ok(self.inner.sessions.console_output(session)?)
    }

    async fn history(&self, session: &SessionRef) -> Result<Vec<String>, ComputeError> {
        Ok(self.inner.sessions.history(session)?)
    }

    async fn list_files(&self, session: &SessionRef) -> Result<Vec<String>, ComputeError> {
        Ok(self.inner.sessions.list_files(session)?)
    }

    async fn delete_file(&self, session: &SessionRef, name: &str) -> Result<(), ComputeError> {
        Ok(self.inner.sessions.delete_file(session, name).await?)
    }

    async fn list_objects(&self, session: &SessionRef) -> Result<Vec<String>, ComputeError> {
        Ok(self.inner.sessions.list_objects(session).await?)
    }

    async fn get_object(&self, session: &SessionRef, name: &str) -> Result<Vec<u8>, ComputeError> {
        Ok(self.inner.sessions.get_object(session, name).await?)
    }

    async fn put_object(
        &self,
        session: &SessionRef,
        name: &str,
        content: Vec<u8>,
    ) -> Result<(), ComputeError> {
        Ok(self
            .inner
            .sessions
            .put_object(session, name, content)
            .await?)
    }

    async fn delete_object(&self, session: &SessionRef, name: &str) -> Result<(), ComputeError> {
        Ok(self.inner.sessions.delete_object(session, name).await?)
    }

    async fn import_snapshot(
        &self,
        session: &SessionRef,
        content: &ContentRef,
    ) -> Result<(), ComputeError> {
        // The session is checked first, so that a bad id is "not found" and not a request for
        // content.
        self.inner.sessions.runtime(session)?;
        let archive = self.inner.contents.get(content)?;
        Ok(self
            .inner
            .sessions
            .import_snapshot(session, archive)
            .await?)
    }

    async fn consume(&self, request: ConsumeRequest) -> Result<ConsumeOutcome, ComputeError> {
        let workers = self.consume_on(&request.service).await?;
        Ok(workers
            .get()
            .consume(
                &request.service,
                request.inputs,
                request.priority,
                &self.inner.contents,
            )
            .await?)
    }

    async fn set_dedicated_pools(&self, services: Vec<ServiceSpec>) -> Result<(), ComputeError> {
        Ok(self.inner.dedicated.set(services)?)
    }

    async fn build_environment(
        &self,
        build: EnvironmentBuild,
    ) -> Result<EnvironmentBuildReport, ComputeError> {
        Ok(self.inner.environments.build(build).await)
    }
}

/// The workers of one environment on this node: a pool for its sessions, and service workers
/// leased from that pool for its services.
struct EnvironmentPool {
    name: String,
    pool: Pool,
    services: ServiceWorkers,
}

/// The service workers a request runs on: a dedicated pool is held for as long as the request
/// runs, even when it is replaced meanwhile.
enum ServiceWorkersRef<'a> {
    Shared(&'a ServiceWorkers),
    Environment(Arc<EnvironmentPool>),
    Dedicated(Arc<dedicated::DedicatedPool>),
}

impl ServiceWorkersRef<'_> {
    fn get(&self) -> &ServiceWorkers {
        match self {
            ServiceWorkersRef::Shared(workers) => workers,
            ServiceWorkersRef::Environment(environment) => &environment.services,
            ServiceWorkersRef::Dedicated(pool) => pool.workers(),
        }
    }
}

fn missing_runtime_message(runtime: RuntimeType) -> String {
    format!("this process runs no {runtime} workers")
}

/// Makes the R launcher ready once R and jsonlite are found and the helper library is built:
/// it installs every sandboxed R worker's system-call filter and forks workers from templates.
async fn prepare_r(config: RConfig, templates: Templates, launch: watch::Sender<Launch>) {
    let _ = launch.send(match r_env::launch_spec(&config).await {
        Ok(spec) => match r_env::build_fork_helper(&config).await {
            Err(err) if templates.sandbox.enabled() => Launch::Unavailable(format!(
                "R workers cannot install their system-call filter: {err}"
            )),
            helper => {
                if let Err(err) = &helper {
                    tracing::warn!(error = %err, "R workers are spawned, not forked from a template");
                }
                // Where templates cannot run at all, the launcher says why workers are spawned.
                let fork = config.fork_workers
                    && (templates.why_not_forked(&spec).is_some() || helper.is_ok());
                Launch::Ready(Launcher::new(&templates, spec, fork))
            }
        },
        Err(err) => {
            tracing::warn!(error = %err, "the R runtime is not available");
            Launch::Unavailable(err.to_string())
        }
    });
}

/// Makes the Python launcher ready, creating the managed environment first if needed.
async fn prepare_python(config: PythonConfig, templates: Templates, launch: watch::Sender<Launch>) {
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
        Ok(spec) => Launch::Ready(Launcher::new(&templates, spec, config.fork_workers)),
        Err(err) => {
            tracing::error!(error = %err, "the Python runtime cannot be prepared");
            Launch::Unavailable(format!(
                "the Python runtime cannot be prepared: {err}; run `o16n runtime setup python` to see the details"
            ))
        }
    });
}
