//! Named environments on a compute node: the packages a session or service needs beyond its
//! runtime's default, built once per lock and kept under `DATA_DIR/environments`.
//!
//! A build either resolves an environment's spec into a lock (the first build, which the
//! application records) or reproduces a lock, so every node that runs the environment has the
//! same packages, also nodes that join later. A build is keyed by the SHA-256 of its runtime,
//! the default environment it layers on and its lock: identical locks share one build per node,
//! and a build that exists is never made again.
//!
//! Python environments are virtual environments made by `uv` (installed in the managed
//! environment) from the configured index, every file checked against the lock's hashes. A
//! worker of an environment sees its packages first and the default environment's after them
//! (the worker script adds that site directory), so numpy, pandas and dill are there unless
//! the environment brings its own. R environments are private libraries filled by R's own
//! tools (`o16n_build_env.R`) from the configured repositories, each tarball checked against
//! the MD5 of the lock; workers find them first on `.libPaths()` through `R_LIBS`.
//!
//! Builds are untrusted code: an R package's `configure` and a Python sdist's build backend run
//! during them. So they run in the sandbox, one at a time, as a user id of their own (the one
//! after the workers' range) with the network on (bubblewrap cannot restrict it to the
//! configured sources; the command lines name only those, and the application refuses
//! requirement lines that point elsewhere), and each build sees one fresh staging directory
//! and nothing else of the data directory: there is no package cache shared between builds to
//! poison. Python builds take wheels only (no package code runs) unless the operator allows
//! source builds; R packages build from source, so R environments need that permission too.
//! When a build's processes have all ended, its result is sealed (see [`crate::seal`]): owned
//! by the server, read-only, refused if it holds links where directories should be, hard links
//! or special files, and moved by handle to where workers find it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use o16n_compute::{
    EnvironmentBuild, EnvironmentBuildReport, EnvironmentRef, EnvironmentSpec, ResolvedPackage,
};
use o16n_types::RuntimeType;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bounded::read_head_and_tail;
use crate::egress::AllowedDestination;
use crate::launch::LaunchSpec;
use crate::pool::{Launch, NotReady, ready};
use crate::sandbox::{
    Arg, ForkedEnvironment, Launch as SandboxLaunch, Sandbox, WorkerLimits, environment_in_template,
};
use crate::worker::Launcher;
use crate::{RuntimeError, remove, seal};

/// The R script that resolves and installs an R environment, embedded like the workers.
const R_BUILD_SCRIPT: &str = include_str!("../../../workers/r/o16n_build_env.R");
/// The most bytes of a build's log that are kept (the end, where failures are).
const LOG_LIMIT: usize = 64 * 1024;
/// How much of the start and of the end of each build step's output is read into its log.
const BUILD_LOG_HEAD_BYTES: usize = 16 * 1024;
const BUILD_LOG_TAIL_BYTES: usize = LOG_LIMIT;
/// The largest lock a resolution may write.
const MAX_LOCK_BYTES: u64 = 4 * 1024 * 1024;
/// The file in a finished build that holds its lock.
const LOCK_FILE: &str = "o16n-lock";

/// Where packages come from and how builds run.
#[derive(Debug, Clone)]
pub struct EnvironmentsConfig {
    /// Where builds live (`build/` while they run, `python/` and `r/` when done).
    pub root: PathBuf,
    /// The Python package index (PEP 503 "simple" URL).
    pub python_index_url: String,
    /// Further Python indexes, searched after the first.
    pub python_extra_index_urls: Vec<String>,
    /// The R repositories an R environment takes packages from when it names none (the web
    /// node has checked any it names against its policy).
    pub r_repositories: Vec<String>,
    /// How long one build may run.
    pub build_timeout: Duration,
    /// Workers kept warm per environment in use (besides the runtimes' defaults).
    pub pool_size: usize,
    /// Whether builds may build packages from source, running the packages' own build code:
    /// Python sdists, and every R package (R packages come as source on Linux).
    pub source_builds: bool,
    /// The proxy settings builds use (`HTTPS_PROXY` and the like, from the server's own
    /// environment), so that builds reach the configured sources where the server does.
    pub proxy_env: Vec<(String, String)>,
}

/// The environments of one node. Cheap to share.
pub(crate) struct Environments {
    config: EnvironmentsConfig,
    sandbox: Sandbox,
    /// How the runtimes' default workers start, which an environment's workers extend.
    defaults: HashMap<RuntimeType, watch::Receiver<Launch>>,
    /// Every build this node has or is making, by key.
    builds: Mutex<HashMap<String, watch::Receiver<Launch>>>,
    /// One build at a time: builds share one user id.
    building: tokio::sync::Mutex<()>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// What names one environment's lock on this node (its launch, its pool), before the default
/// launch that the build key also depends on is known.
pub(crate) fn lock_handle(environment: &EnvironmentRef) -> String {
    build_key(environment.runtime, "", &environment.lock)
}

/// The key of a build: the runtime, the default environment it layers on, and the lock.
pub(crate) fn build_key(runtime: RuntimeType, base: &str, lock: &str) -> String {
    let mut digest = Sha256::new();
    for part in [runtime.as_str(), base, lock] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    crate::content::hex(&digest.finalize()[..16])
}

impl Environments {
    pub(crate) fn new(
        config: EnvironmentsConfig,
        sandbox: Sandbox,
        defaults: HashMap<RuntimeType, watch::Receiver<Launch>>,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Environments {
        Environments {
            config,
            sandbox,
            defaults,
            builds: Mutex::new(HashMap::new()),
            building: tokio::sync::Mutex::new(()),
            tasks,
            stop,
        }
    }

    /// How long a build may take.
    pub(crate) fn build_timeout(&self) -> Duration {
        self.config.build_timeout
    }

    /// The warm size of an environment's pool.
    pub(crate) fn pool_size(&self) -> usize {
        self.config.pool_size
    }

    /// How the default workers of `runtime` start, once they can.
    async fn default_launcher(&self, runtime: RuntimeType) -> Result<Launcher, RuntimeError> {
        let mut launch = self
            .defaults
            .get(&runtime)
            .ok_or_else(|| {
                RuntimeError::RuntimeNotSupported(format!("this process runs no {runtime} workers"))
            })?
            .clone();
        match ready(&mut launch, None).await {
            Ok(launcher) => Ok(launcher),
            Err(NotReady::Unavailable(why)) => Err(RuntimeError::RuntimeUnavailable(why)),
            Err(NotReady::Preparing(_)) => Err(RuntimeError::RuntimeUnavailable(format!(
                "the {runtime} runtime stopped"
            ))),
        }
    }

    /// How the default workers of `runtime` are made, once they can be.
    async fn default_spec(&self, runtime: RuntimeType) -> Result<LaunchSpec, RuntimeError> {
        self.default_launcher(runtime)
            .await?
            .spec()
            .cloned()
            .ok_or_else(|| {
                RuntimeError::RuntimeUnavailable("fake workers have no environments".to_owned())
            })
    }

    /// What identifies the default environment that an environment layers on: how its workers
    /// start, which names the interpreter its virtual environment is made for (the default's
    /// packages are not part of a build: workers find them at start).
    fn base_of(spec: &LaunchSpec) -> String {
        format!("{:?} {:?}", spec.program, spec.args)
    }

    /// Resolves a spec into a lock and builds it, or reproduces a lock: the build the
    /// application asked for.
    pub(crate) async fn build(&self, request: EnvironmentBuild) -> EnvironmentBuildReport {
        let started = Instant::now();
        let mut log = String::new();
        let outcome = self.build_logged(&request, &mut log).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        match outcome {
            Ok((lock, packages)) => EnvironmentBuildReport {
                success: true,
                lock: Some(lock),
                packages,
                log: tail(log),
                duration_ms,
            },
            Err(err) => {
                log.push_str(&format!("\nthe build failed: {err}\n"));
                EnvironmentBuildReport {
                    success: false,
                    lock: None,
                    packages: Vec::new(),
                    log: tail(log),
                    duration_ms,
                }
            }
        }
    }

    async fn build_logged(
        &self,
        request: &EnvironmentBuild,
        log: &mut String,
    ) -> Result<(String, Vec<ResolvedPackage>), RuntimeError> {
        let runtime = request.spec.runtime();
        let default = self.default_spec(runtime).await?;
        let lock = match &request.lock {
            Some(lock) => lock.clone(),
            None => {
                let _one_at_a_time = self.building.lock().await;
                self.resolve(&request.spec, &default, log).await?
            }
        };
        let key = build_key(runtime, &Self::base_of(&default), &lock);
        self.install(runtime, &key, &lock, &default, log).await?;
        let packages = o16n_compute::lock_packages(runtime, &lock);
        Ok((lock, packages))
    }

    /// The launch of the workers of `environment`, building it first when this node has no
    /// build of its lock: `Preparing` while that runs, then ready or unavailable with the
    /// reason. Every caller for one lock gets the same receiver (one build), except after a
    /// failure, which the next caller tries again.
    pub(crate) fn launch(
        self: &Arc<Self>,
        handle: &str,
        environment: &EnvironmentRef,
    ) -> watch::Receiver<Launch> {
        let mut builds = self
            .builds
            .lock()
            .expect("environments lock poisoned. This is a bug.");
        if let Some(existing) = builds.get(handle) {
            let failed = matches!(&*existing.borrow(), Launch::Unavailable(_));
            if !failed {
                return existing.clone();
            }
        }
        let (sender, receiver) = watch::channel(Launch::Preparing(format!(
            "environment `{}` is being built on this compute node",
            environment.name
        )));
        builds.insert(handle.to_owned(), receiver.clone());
        drop(builds);
        let environments = self.clone();
        let environment = environment.clone();
        let stop = self.stop.clone();
        self.tasks.spawn(async move {
            let prepared = tokio::select! {
                () = stop.cancelled() => return,
                prepared = environments.prepare(&environment) => prepared,
            };
            let _ = sender.send(match prepared {
                Ok(launcher) => Launch::Ready(launcher),
                Err(err) => {
                    tracing::warn!(environment = %environment.name, error = %err, "cannot build an environment");
                    Launch::Unavailable(format!(
                        "environment `{}` cannot be built on this compute node: {err}",
                        environment.name
                    ))
                }
            });
        });
        receiver
    }

    /// Builds `environment` from its lock if needed and describes how its workers start.
    async fn prepare(&self, environment: &EnvironmentRef) -> Result<Launcher, RuntimeError> {
        let default_launcher = self.default_launcher(environment.runtime).await?;
        let default = default_launcher.spec().cloned().ok_or_else(|| {
            RuntimeError::RuntimeUnavailable("fake workers have no environments".to_owned())
        })?;
        let key = build_key(
            environment.runtime,
            &Self::base_of(&default),
            &environment.lock,
        );
        let mut log = String::new();
        self.install(
            environment.runtime,
            &key,
            &environment.lock,
            &default,
            &mut log,
        )
        .await
        .map_err(|err| RuntimeError::RuntimeUnavailable(format!("{err}\n{}", tail(log))))?;
        let dir = self.finished_dir(environment.runtime, &key);
        let spec = match environment.runtime {
            RuntimeType::Python => python_launch(default, &dir),
            RuntimeType::R => r_launch(default, &dir),
        };
        Ok(forked_launcher(environment, default_launcher, spec, &dir))
    }

    fn finished_dir(&self, runtime: RuntimeType, key: &str) -> PathBuf {
        self.config
            .root
            .join(runtime.as_str().to_lowercase())
            .join(key)
    }

    fn build_dir(&self) -> PathBuf {
        self.config.root.join("build")
    }

    /// Installs `lock` as build `key` unless it exists.
    async fn install(
        &self,
        runtime: RuntimeType,
        key: &str,
        lock: &str,
        default: &LaunchSpec,
        log: &mut String,
    ) -> Result<(), RuntimeError> {
        let finished = self.finished_dir(runtime, key);
        if finished.join(LOCK_FILE).exists() {
            log.push_str("this compute node already has a build of this lock\n");
            return Ok(());
        }
        let _one_at_a_time = self.building.lock().await;
        if finished.join(LOCK_FILE).exists() {
            return Ok(());
        }
        self.refuse_unallowed_source_builds(runtime)?;
        let staging = self.staging()?;
        let outcome = async {
            tokio::fs::write(staging.join("lock"), lock).await?;
            let result = match runtime {
                RuntimeType::Python => {
                    self.run_step(default, &staging, log, &self.uv_venv_args(default))
                        .await?;
                    self.run_step(default, &staging, log, &self.uv_sync_args())
                        .await?;
                    "env"
                }
                RuntimeType::R => {
                    tokio::fs::create_dir_all(staging.join("library")).await?;
                    self.run_step(default, &staging, log, &r_args("install"))
                        .await?;
                    "library"
                }
            };
            if let Some(parent) = finished.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let sealing = seal::Sealing {
                staging: staging.clone(),
                result: result.to_owned(),
                lock_file: LOCK_FILE,
                lock: lock.to_owned(),
                finished: finished.clone(),
            };
            tokio::task::spawn_blocking(move || seal::seal(&sealing))
                .await
                .map_err(std::io::Error::other)?
                .map_err(|err| RuntimeError::RuntimeUnavailable(err.to_string()))
        }
        .await;
        remove::remove_tree_off_thread(staging, "a build's staging directory").await;
        outcome
    }

    /// Resolves a spec into a lock.
    async fn resolve(
        &self,
        spec: &EnvironmentSpec,
        default: &LaunchSpec,
        log: &mut String,
    ) -> Result<String, RuntimeError> {
        self.refuse_unallowed_source_builds(spec.runtime())?;
        let staging = self.staging()?;
        let outcome = async {
            match spec {
                EnvironmentSpec::Python { requirements } => {
                    tokio::fs::write(staging.join("requirements.in"), requirements).await?;
                    self.run_step(default, &staging, log, &self.uv_compile_args(default))
                        .await?;
                }
                EnvironmentSpec::R {
                    packages,
                    repositories,
                } => {
                    // The web node checked them against its policy; none asked means all the
                    // configured ones.
                    let repositories = if repositories.is_empty() {
                        &self.config.r_repositories
                    } else {
                        repositories
                    };
                    let request = serde_json::json!({
                        "packages": packages,
                        "repositories": repositories,
                    });
                    tokio::fs::write(staging.join("spec.json"), request.to_string()).await?;
                    tokio::fs::create_dir_all(staging.join("library")).await?;
                    self.run_step(default, &staging, log, &r_args("resolve"))
                        .await?;
                }
            }
            read_lock(&staging.join("lock")).await
        }
        .await;
        remove::remove_tree_off_thread(staging, "a build's staging directory").await;
        outcome
    }

    /// Refuses a build of `runtime` that would run packages' build code the operator did not
    /// allow (R packages always build from source).
    fn refuse_unallowed_source_builds(&self, runtime: RuntimeType) -> Result<(), RuntimeError> {
        if runtime == RuntimeType::R && !self.config.source_builds {
            return Err(RuntimeError::RuntimeUnavailable(
                "R packages are built from source, which runs their own build code; this node \
                 allows that only with environments.allow_source_builds = true"
                    .to_owned(),
            ));
        }
        Ok(())
    }

    /// A fresh directory for one build: the builder's home and its whole writable view. Its
    /// parents stay the server's, so a build cannot swap it for a link.
    fn staging(&self) -> Result<PathBuf, RuntimeError> {
        let build = self.build_dir();
        let staging = build.join("staging");
        std::fs::create_dir_all(&staging)?;
        if nix::unistd::geteuid().is_root() {
            // Earlier versions gave these to the builder; they are the server's.
            for dir in [&build, &staging] {
                std::os::unix::fs::lchown(dir, Some(0), Some(0))?;
            }
        }
        let host = staging.join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir(&host)?;
        Ok(host)
    }

    fn uv_index_args(&self) -> Vec<Arg> {
        let mut args = vec![
            Arg::plain("--index-url"),
            Arg::plain(&self.config.python_index_url),
        ];
        for extra in &self.config.python_extra_index_urls {
            args.push(Arg::plain("--extra-index-url"));
            args.push(Arg::plain(extra));
        }
        args
    }

    /// Wheels only, unless the operator allows source builds: installing a wheel runs no
    /// code of the package.
    fn uv_binary_args(&self) -> Vec<Arg> {
        if self.config.source_builds {
            Vec::new()
        } else {
            vec![Arg::plain("--only-binary"), Arg::plain(":all:")]
        }
    }

    fn uv_compile_args(&self, default: &LaunchSpec) -> Vec<Arg> {
        let mut args = vec![
            Arg::plain("pip"),
            Arg::plain("compile"),
            Arg::plain("--generate-hashes"),
            Arg::plain("--no-header"),
            Arg::plain("--no-annotate"),
            Arg::plain("--python"),
            default.program.clone(),
        ];
        args.extend(self.uv_index_args());
        args.extend(self.uv_binary_args());
        args.extend([
            Arg::plain("requirements.in"),
            Arg::plain("-o"),
            Arg::plain("lock"),
        ]);
        args
    }

    fn uv_venv_args(&self, default: &LaunchSpec) -> Vec<Arg> {
        vec![
            Arg::plain("venv"),
            Arg::plain("--relocatable"),
            Arg::plain("--python"),
            default.program.clone(),
            Arg::plain("env"),
        ]
    }

    fn uv_sync_args(&self) -> Vec<Arg> {
        let mut args = vec![
            Arg::plain("pip"),
            Arg::plain("sync"),
            Arg::plain("--python"),
            Arg::plain("env/bin/python"),
        ];
        args.extend(self.uv_index_args());
        args.extend(self.uv_binary_args());
        args.push(Arg::plain("lock"));
        args
    }

    /// Runs one build step in the sandbox, as the builder, with its output appended to `log`.
    async fn run_step(
        &self,
        default: &LaunchSpec,
        staging: &Path,
        log: &mut String,
        args: &[Arg],
    ) -> Result<(), RuntimeError> {
        let identity = self
            .sandbox
            .builder_identity(self.config.build_timeout)
            .await?;
        if let Some(owner) = identity.file_owner() {
            hand_to_builder(staging, owner)?;
        }
        let (program, mut env) = match default.runtime {
            RuntimeType::Python => (
                beside(&default.program, "uv"),
                vec![
                    // The build's own cache, discarded with it: nothing a build does to the
                    // cache reaches another build.
                    ("UV_CACHE_DIR".to_owned(), "cache".to_owned()),
                    ("UV_NO_CONFIG".to_owned(), "1".to_owned()),
                    ("UV_NO_PROGRESS".to_owned(), "1".to_owned()),
                    ("UV_PYTHON_DOWNLOADS".to_owned(), "never".to_owned()),
                    ("UV_LINK_MODE".to_owned(), "copy".to_owned()),
                    // The machine's certificate store (the sandbox shows `/etc/ssl`), so that
                    // a network whose TLS goes through a private authority works as for pip.
                    ("UV_NATIVE_TLS".to_owned(), "1".to_owned()),
                ],
            ),
            RuntimeType::R => (
                default
                    .args
                    .iter()
                    .find(|arg| is_rscript(arg))
                    .cloned()
                    .unwrap_or_else(|| Arg::plain("Rscript")),
                vec![("MAKEFLAGS".to_owned(), "-j1".to_owned())],
            ),
        };
        env.extend(self.config.proxy_env.iter().cloned());
        let mut all_args = args.to_vec();
        if default.runtime == RuntimeType::R {
            all_args.insert(0, Arg::InRuntime(PathBuf::from("o16n_build_env.R")));
            all_args.insert(0, Arg::plain("--vanilla"));
            let script = default.runtime_dir.join("o16n_build_env.R");
            if tokio::fs::read_to_string(&script).await.unwrap_or_default() != R_BUILD_SCRIPT {
                tokio::fs::write(&script, R_BUILD_SCRIPT).await?;
            }
        }
        // The build's own network namespace reaches the public internet and, whatever their
        // range, the configured sources and proxy.
        let sources = source_destinations(
            std::iter::once(&self.config.python_index_url)
                .chain(&self.config.python_extra_index_urls)
                .chain(&self.config.r_repositories)
                .chain(self.config.proxy_env.iter().map(|(_, value)| value)),
        )
        .await;
        let network = self.sandbox.build_network(&sources).await?;
        let mut command = self.sandbox.command(
            &SandboxLaunch {
                runtime_dir: &default.runtime_dir,
                program: &program,
                args: &all_args,
                env: &env,
                read_only: &default.read_only,
                limits: WorkerLimits {
                    memory_mb: 0,
                    network: true,
                },
            },
            staging,
            &identity,
            network.as_ref(),
        );
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|err| {
            RuntimeError::RuntimeUnavailable(format!("cannot start an environment build: {err}"))
        })?;
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let run = async {
            // A build's output is the packages' to choose: keep its start and its end.
            let (out, err, status) = tokio::join!(
                read_head_and_tail(&mut stdout, BUILD_LOG_HEAD_BYTES, BUILD_LOG_TAIL_BYTES),
                read_head_and_tail(&mut stderr, BUILD_LOG_HEAD_BYTES, BUILD_LOG_TAIL_BYTES),
                child.wait()
            );
            Ok::<_, std::io::Error>((status?, out?, err?))
        };
        let (status, out, err) = tokio::time::timeout(self.config.build_timeout, run)
            .await
            .map_err(|_| {
                RuntimeError::RuntimeUnavailable(format!(
                    "the build did not finish within {} s (runtime.environments.build_timeout_seconds)",
                    self.config.build_timeout.as_secs()
                ))
            })??;
        log.push_str(&out);
        log.push_str(&err);
        // Nothing of the builder may run on while the server reads or seals what it left.
        identity.release().await?;
        if status.success() {
            Ok(())
        } else {
            Err(RuntimeError::RuntimeUnavailable(format!(
                "a build step failed ({status})"
            )))
        }
    }
}

/// The addresses and ports of the HTTP(S) sources among `urls` (host names resolved now).
async fn source_destinations(urls: impl Iterator<Item = &String>) -> Vec<AllowedDestination> {
    let mut destinations = Vec::new();
    for url in urls {
        let Ok(url) = url::Url::parse(url) else {
            continue;
        };
        let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
            continue;
        };
        if !matches!(url.scheme(), "http" | "https") {
            continue;
        }
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let Ok(addresses) = tokio::net::lookup_host((host, port)).await else {
            tracing::warn!(%url, "a build source's host name does not resolve");
            continue;
        };
        for address in addresses {
            if let std::net::SocketAddr::V4(address) = address {
                destinations.push(AllowedDestination::single(*address.ip(), port));
            }
        }
    }
    destinations.sort_by_key(ToString::to_string);
    destinations.dedup();
    destinations
}

/// Reads the lock a resolution wrote. The staging directory is the build's, which may have put
/// a link or a FIFO there: the lock is opened without following links or blocking, must be a
/// regular file, and is read up to a limit.
async fn read_lock(path: &Path) -> Result<String, RuntimeError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::options()
            .read(true)
            .custom_flags((nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_NONBLOCK).bits())
            .open(&path)?;
        let metadata = file.metadata()?;
        if !metadata.is_file() || metadata.len() > MAX_LOCK_BYTES {
            return Err(std::io::Error::other(format!(
                "the resolution's lock is not a regular file of at most {} MiB",
                MAX_LOCK_BYTES / (1024 * 1024)
            )));
        }
        let mut text = String::new();
        file.take(MAX_LOCK_BYTES).read_to_string(&mut text)?;
        Ok(text)
    })
    .await
    .map_err(std::io::Error::other)?;
    read.map_err(|err| RuntimeError::RuntimeUnavailable(format!("the build failed: {err}")))
}

/// The program called `name` in the same directory as `program` (uv beside the interpreter
/// of the default environment, where `o16n runtime setup python` installs it).
fn beside(program: &Arg, name: &str) -> Arg {
    match program {
        Arg::InRuntime(path) => Arg::InRuntime(path.with_file_name(name)),
        Arg::Plain(path) => Arg::Plain(Path::new(path).with_file_name(name).into_os_string()),
    }
}

/// Hands a build's directory and what the server put into it (files and directories at its
/// top only) to the builder; entries the builder made are its own already. Links are not
/// followed.
fn hand_to_builder(staging: &Path, owner: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(staging, Some(owner), Some(owner))?;
    for entry in std::fs::read_dir(staging)? {
        std::os::unix::fs::lchown(entry?.path(), Some(owner), Some(owner))?;
    }
    Ok(())
}

fn is_rscript(arg: &Arg) -> bool {
    matches!(arg, Arg::Plain(text) if Path::new(text).file_name().is_some_and(|name| name == "Rscript"))
}

fn r_args(mode: &str) -> Vec<Arg> {
    vec![
        Arg::plain(mode),
        Arg::plain("spec.json"),
        Arg::plain("lock"),
        Arg::plain("library"),
    ]
}

/// How an environment's workers start: forked from their runtime's default template when it
/// has one and the environment replaces none of the default's packages (the template may have
/// imported them before the fork, and a worker would then mix two versions), else spawned. A forked worker
/// puts the environment's packages first once it has left root: the template imports nothing
/// of an environment, whose packages come from users.
fn forked_launcher(
    environment: &EnvironmentRef,
    default: Launcher,
    spec: LaunchSpec,
    dir: &Path,
) -> Launcher {
    let Launcher::Forked(base, template, _) = default else {
        return Launcher::Process(spec);
    };
    let packages = match environment.runtime {
        RuntimeType::Python => site_packages(dir),
        RuntimeType::R => Some(dir.to_path_buf()),
    };
    let Some(packages) = packages else {
        return Launcher::Process(spec);
    };
    if let Some(replaced) = replaced_package(&packages, &base.package_dirs) {
        tracing::info!(
            environment = %environment.name,
            "the environment's workers are spawned, not forked: it replaces `{replaced}` of the \
             default environment, which the template may have loaded"
        );
        return Launcher::Process(spec);
    }
    let seen = |path: &Path| environment_in_template(template.environments(), path);
    let (Some(packages), Some(prefix)) = (seen(&packages), seen(dir)) else {
        return Launcher::Process(spec);
    };
    Launcher::Forked(
        spec,
        template,
        Some(Box::new(ForkedEnvironment {
            packages: packages.to_string_lossy().into_owned(),
            prefix: prefix.to_string_lossy().into_owned(),
        })),
    )
}

/// The site-packages directory of a Python environment (`lib/pythonX.Y/site-packages`).
/// Each step must be a directory itself, not a link a build left: the server lists what it
/// finds there.
fn site_packages(env: &Path) -> Option<PathBuf> {
    let lib = env.join("lib");
    if !seal::is_real_directory(&lib) {
        return None;
    }
    std::fs::read_dir(lib)
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| seal::is_real_directory(&entry.path()))
        .map(|entry| entry.path().join("site-packages"))
        .find(|path| seal::is_real_directory(path))
}

/// A top-level module or package of `packages` that one of `defaults` has too, if any.
fn replaced_package(packages: &Path, defaults: &[PathBuf]) -> Option<String> {
    let names = |dir: &Path| -> std::collections::BTreeSet<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|entry| module_name(&entry.file_name().to_string_lossy()))
            .collect()
    };
    let own = names(packages);
    defaults
        .iter()
        .flat_map(|dir| names(dir))
        .find(|name| own.contains(name))
}

/// The module (or R package) an entry of a package directory provides: `numpy` for `numpy/`,
/// `six` for `six.py`, `_cffi_backend` for `_cffi_backend.cpython-311-x86_64-linux-gnu.so`;
/// none for metadata, caches and `.pth` files.
fn module_name(entry: &str) -> Option<String> {
    let metadata = [".dist-info", ".egg-info", ".pth", ".data"];
    if entry.starts_with("__") || entry.starts_with("00LOCK") || entry.starts_with('.') {
        return None;
    }
    if metadata.iter().any(|suffix| entry.ends_with(suffix)) {
        return None;
    }
    entry.split('.').next().map(str::to_owned)
}

/// A Python environment's workers: its interpreter, and the default environment (whose site
/// directory the worker script puts after the environment's own).
fn python_launch(mut spec: LaunchSpec, env: &Path) -> LaunchSpec {
    let prefix_of = |program: &Path| {
        program
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    };
    let base = match &spec.program {
        Arg::InRuntime(relative) => Arg::InRuntime(prefix_of(relative)),
        Arg::Plain(program) => Arg::plain(prefix_of(Path::new(program))),
    };
    spec.program = Arg::plain(env.join("bin").join("python"));
    spec.args.push(Arg::plain("--base-prefix"));
    spec.args.push(base);
    spec.read_only.push(env.to_path_buf());
    spec
}

/// An R environment's workers: the default ones with the private library first.
fn r_launch(mut spec: LaunchSpec, library: &Path) -> LaunchSpec {
    spec.env
        .push(("R_LIBS".to_owned(), library.display().to_string()));
    spec.read_only.push(library.to_path_buf());
    spec
}

/// The end of a log, within the limit.
fn tail(log: String) -> String {
    if log.len() <= LOG_LIMIT {
        return log;
    }
    let mut start = log.len() - LOG_LIMIT;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    format!("[...]\n{}", &log[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_locks_share_a_key_and_other_bases_do_not() {
        let a = build_key(RuntimeType::Python, "base", "x==1");
        assert_eq!(a, build_key(RuntimeType::Python, "base", "x==1"));
        assert_ne!(a, build_key(RuntimeType::Python, "other", "x==1"));
        assert_ne!(a, build_key(RuntimeType::R, "base", "x==1"));
    }

    #[test]
    fn an_environment_that_replaces_a_default_package_is_found() {
        let root = std::env::temp_dir().join(format!("o16n-env-test-{}", uuid::Uuid::new_v4()));
        let (own, default) = (root.join("own"), root.join("default"));
        for entry in [
            "numpy",
            "six.py",
            "pandas-3.1.1.dist-info",
            "_cffi.cpython-311.so",
        ] {
            let path = default.join(entry);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, "").unwrap();
        }
        std::fs::create_dir_all(own.join("tabulate")).unwrap();
        std::fs::write(own.join("_virtualenv.pth"), "").unwrap();
        std::fs::create_dir_all(own.join("pandas-2.0.0.dist-info")).unwrap();
        let defaults = [default];
        assert_eq!(replaced_package(&own, &defaults), None);
        std::fs::write(own.join("six.py"), "").unwrap();
        assert_eq!(replaced_package(&own, &defaults), Some("six".to_owned()));
        assert_eq!(
            module_name("_cffi.cpython-311.so"),
            Some("_cffi".to_owned())
        );
        assert_eq!(module_name("__pycache__"), None);
        assert_eq!(module_name("00LOCK-jsonlite"), None);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_long_log_keeps_its_end() {
        let log = "é".repeat(LOG_LIMIT);
        let kept = tail(log);
        assert!(kept.starts_with("[...]\n"));
        assert!(kept.len() <= LOG_LIMIT + 8);
    }
}
