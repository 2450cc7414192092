//! The sandbox every worker runs in: its own identity, file-system view, process view,
//! environment and limits, so that user code can neither reach the server's secrets nor another
//! worker.
//!
//! A worker is started through [bubblewrap](https://github.com/containers/bubblewrap) (`bwrap`,
//! the sandbox Flatpak uses) with new mount, PID, IPC and UTS namespaces (and a network
//! namespace with loopback only when the runtime's network is off). Its view holds the operating
//! system read-only (`/usr` and the few `/etc` files interpreters need), the runtime's own
//! directories read-only, a private `/tmp`, and its working directory at [`WORKDIR_IN_SANDBOX`];
//! nothing else of the data directory. The chain inside is `prlimit` (address space, processes,
//! file size, open files) then, when the server runs as root, `setpriv`, which switches to a
//! user id of the worker's own (allocated from a configured range and locked host-wide, see
//! [`UidLease`]) without capabilities and with `no_new_privs`. A server that is not root uses
//! bubblewrap's unprivileged user namespace instead; each worker then has an id of its own inside
//! its namespace, but on the host its files belong to the server's user.
//!
//! Workers are signalled through the sandbox's init process (PID 1 inside, the leader of the
//! worker's process group): an interrupt reaches the worker and whatever it started, and killing
//! the init tears down the whole PID namespace.
//!
//! The environment is built from nothing: only what the runtime needs reaches user code.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::RuntimeError;
use crate::egress::{AllowedDestination, Egress, NetworkNamespace};
use crate::reaper::Reaper;
use crate::seccomp;

/// Where a sandboxed worker finds its working directory (and its `HOME`).
pub(crate) const WORKDIR_IN_SANDBOX: &str = "/home/o16n";
/// Where a worker template sees the compute node's working directories (each worker it forks
/// keeps only its own, at [`WORKDIR_IN_SANDBOX`]).
const WORK_VIEW_IN_TEMPLATE: &str = "/run/o16n/work";
/// Where a worker template (and the workers it forks) sees the finished builds of named
/// environments: a neutral place, so that nothing else of the data directory shows.
const ENVIRONMENTS_IN_TEMPLATE: &str = "/opt/o16n/environments";
/// The directories of the environments' root that hold finished builds, one per runtime.
pub(crate) const ENVIRONMENT_RUNTIMES: [&str; 2] = ["python", "r"];
/// The directories a forked worker mounts afresh (see `workers/python/o16n_template.py`).
const PRIVATE_IN_WORKER: &[&str] = &["/tmp", "/dev", "/proc"];
/// The host name every worker sees.
const WORKER_HOSTNAME: &str = "o16n-worker";
/// Where a sandboxed worker finds its runtime's directory (worker script, managed
/// environment), read-only: a neutral place, so that nothing of the data directory shows.
const RUNTIME_IN_SANDBOX: &str = "/opt/o16n/runtime";

/// The files and directories of `/etc` that interpreters and the libraries they load read:
/// the dynamic linker's cache, time zones, name resolution, TLS roots, Debian's alternatives
/// (BLAS), R's own configuration and fonts (plots). Nothing else of `/etc` is visible.
const ETC_ENTRIES: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "gai.conf",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "protocols",
    "R",
    "resolv.conf",
    "services",
    "ssl",
    "timezone",
];

/// Top-level directories that are usually links into `/usr` (merged `/usr`) or directories of
/// their own; either way they are reproduced read-only.
const SYSTEM_ROOTS: &[&str] = &["/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// The sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Whether workers run sandboxed. Off runs them as the server's user, unisolated.
    pub enabled: bool,
    /// The first user id of the range given to workers (root servers only).
    pub first_uid: u32,
    /// How many user ids the range has: the most workers alive at once on this machine.
    pub uid_count: u32,
    /// Where the host-wide locks of allocated user ids live (root servers only).
    pub lock_dir: PathBuf,
    /// Most processes (and threads) a worker's user may have.
    pub max_processes: u64,
    /// Largest file a worker may write, in MiB.
    pub max_file_size_mb: u64,
    /// Most files a worker may have open.
    pub max_open_files: u64,
    /// Size of a worker's private `/tmp`, in MiB (memory, outside its address-space limit).
    pub tmp_size_mb: u64,
    /// Size of a worker's private `/dev/shm`, in MiB (memory, as `/tmp`).
    pub shm_size_mb: u64,
    /// What workers and builds with the network on may reach beyond the public internet (see
    /// [`crate::egress`]).
    pub network_allow: Vec<AllowedDestination>,
}

/// Limits and network access of one runtime's workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerLimits {
    /// Address-space limit in MiB; 0 for none.
    pub(crate) memory_mb: u64,
    /// Whether the worker may use the network (off: a network namespace with loopback only).
    pub(crate) network: bool,
}

/// How workers are isolated on this machine, decided once at start.
#[derive(Debug, Clone)]
enum Mode {
    /// No isolation: workers run as the server's user (the operator turned the sandbox off).
    Disabled,
    /// The server is root: bubblewrap sets up the namespaces, `setpriv` drops to a user id of
    /// the worker's own, and the reaper ends what still runs as the id before it is freed.
    HostUsers {
        bwrap: PathBuf,
        setpriv: PathBuf,
        reaper: Reaper,
    },
    /// The server is not root: bubblewrap's unprivileged user namespace.
    UserNamespace { bwrap: PathBuf },
}

/// The sandbox of one compute node: how to start a worker isolated. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Sandbox {
    mode: Mode,
    config: SandboxConfig,
    prlimit: Option<PathBuf>,
    /// Outbound-only network namespaces, on a root server.
    egress: Option<Egress>,
}

/// Who a worker runs as, held for as long as the worker lives. Dropping it frees the user id.
#[derive(Debug)]
pub(crate) struct Identity {
    /// The user and group id of the worker's processes (the same number).
    pub(crate) id: u32,
    /// The host-wide lock of a host user id (root servers).
    lease: Option<UidLease>,
}

impl Identity {
    /// Keeps `network`, the worker's network namespace, for as long as the identity: once the
    /// id's processes are all gone, nothing runs in it any more and it goes back to the stock
    /// for another worker (see [`NetworkNamespace::recycle`]).
    pub(crate) fn hold_network(&mut self, network: NetworkNamespace) {
        match &mut self.lease {
            Some(lease) => lease.network = Some(network),
            // Only a root server prepares namespaces, and it leases every id.
            None => drop(network),
        }
    }

    /// The owner that files the server puts into the working directory must have, so that the
    /// worker can change them; `None` when the worker runs as the server's user.
    pub(crate) fn file_owner(&self) -> Option<u32> {
        self.lease.as_ref().map(|_| self.id)
    }

    /// Frees the id once no process runs as it, and waits for that: what a build left is
    /// sealed only when nothing of the builder can change it any more.
    pub(crate) async fn release(mut self) -> Result<(), RuntimeError> {
        let Some(mut lease) = self.lease.take() else {
            return Ok(());
        };
        let lock = lease
            .lock
            .take()
            .expect("a lease holds its lock until it is freed");
        let (uid, reaper) = (lease.uid, lease.reaper.clone());
        let freed = tokio::task::spawn_blocking(move || sweep_then_unlock(uid, &reaper, lock));
        if freed.await.unwrap_or(false) {
            Ok(())
        } else {
            Err(RuntimeError::RuntimeUnavailable(format!(
                "processes of user id {uid} could not be ended; the id stays locked until the \
                 server exits"
            )))
        }
    }
}

/// A host user id locked for one worker: an exclusive `flock` on `LOCK_DIR/uid-N`, held while
/// the worker lives, so that two workers (of this server or of another on the same machine)
/// never share an id. Dropping it frees the id only once no process runs as it (see
/// [`Reaper`]), on a thread of its own so that nobody waits for the sweep.
#[derive(Debug)]
struct UidLease {
    uid: u32,
    lock: Option<Flock<File>>,
    reaper: Reaper,
    /// The network namespace of the worker that runs as the id, if any.
    network: Option<NetworkNamespace>,
}

impl Drop for UidLease {
    fn drop(&mut self) {
        let Some(lock) = self.lock.take() else {
            return;
        };
        let (uid, reaper, network) = (self.uid, self.reaper.clone(), self.network.take());
        if let Err(err) = std::thread::Builder::new()
            .name("o16n-uid-sweep".to_owned())
            .spawn(move || {
                if sweep_then_unlock(uid, &reaper, lock)
                    && let Some(network) = network
                {
                    network.recycle();
                }
            })
        {
            // Without a thread the id is not freed: safer than freeing it unswept.
            tracing::error!(uid, error = %err, "cannot start the sweep of a user id");
        }
    }
}

/// Ends every process of `uid`, then unlocks it; when some could not be ended, the id stays
/// locked until the server exits and this says `false`. Blocks.
fn sweep_then_unlock(uid: u32, reaper: &Reaper, lock: Flock<File>) -> bool {
    let ended = reaper.end_all(uid);
    if ended {
        drop(lock);
    } else {
        tracing::error!(
            uid,
            "processes of a finished worker's user id could not be ended; the id stays locked \
             until the server exits"
        );
        std::mem::forget(lock);
    }
    ended
}

impl Sandbox {
    /// No sandbox, for the scheduling tests that run fake workers; locks go under `lock_dir`.
    #[cfg(test)]
    pub(crate) async fn off_for_tests(lock_dir: PathBuf) -> Sandbox {
        Sandbox::detect(
            SandboxConfig {
                enabled: false,
                first_uid: 0,
                uid_count: 1,
                lock_dir,
                max_processes: 1,
                max_file_size_mb: 1,
                max_open_files: 16,
                tmp_size_mb: 1,
                shm_size_mb: 1,
                network_allow: Vec::new(),
            },
            &TaskTracker::new(),
            CancellationToken::new(),
        )
        .await
        .expect("an unsandboxed launch needs nothing from the machine")
    }

    /// Decides how to isolate workers and checks that it works, by starting a sandboxed `true`
    /// and, on a root server, preparing a network namespace (kept prepared by a task of
    /// `tasks` until `stop`). A server that cannot sandbox refuses to start unless the operator
    /// turned the sandbox off.
    pub(crate) async fn detect(
        config: SandboxConfig,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Sandbox, RuntimeError> {
        let prlimit = find_program("prlimit");
        if !config.enabled {
            return Ok(Sandbox {
                mode: Mode::Disabled,
                config,
                prlimit,
                egress: None,
            });
        }
        let unavailable = |why: String| {
            RuntimeError::SandboxUnavailable(format!(
                "{why}; user code cannot be isolated. Install what is missing, or set \
                 runtime.sandbox.enabled = false (O16N_RUNTIME__SANDBOX__ENABLED=false) to run \
                 user code unisolated as the server's user"
            ))
        };
        let bwrap = find_program("bwrap")
            .ok_or_else(|| unavailable("bubblewrap (bwrap) is not installed".to_owned()))?;
        if prlimit.is_none() {
            return Err(unavailable(
                "prlimit (util-linux) is not installed".to_owned(),
            ));
        }
        let mode = if nix::unistd::geteuid().is_root() {
            let setpriv = find_program("setpriv")
                .ok_or_else(|| unavailable("setpriv (util-linux) is not installed".to_owned()))?;
            let kill = find_program("kill")
                .ok_or_else(|| unavailable("kill (procps) is not installed".to_owned()))?;
            std::fs::create_dir_all(&config.lock_dir).map_err(|err| {
                unavailable(format!(
                    "the user id lock directory {} cannot be created: {err}",
                    config.lock_dir.display()
                ))
            })?;
            Mode::HostUsers {
                bwrap,
                setpriv,
                reaper: Reaper::new(kill),
            }
        } else {
            Mode::UserNamespace { bwrap }
        };
        let egress = match mode {
            Mode::HostUsers { .. } => Some(
                Egress::start(config.network_allow.clone(), tasks, stop)
                    .await
                    .map_err(unavailable)?,
            ),
            _ => None,
        };
        let sandbox = Sandbox {
            mode,
            config,
            prlimit,
            egress,
        };
        sandbox.check().await.map_err(unavailable)?;
        Ok(sandbox)
    }

    /// The network namespace a worker with `limits` joins: a prepared one when its network
    /// is on and the server is root, else none (loopback only, or the host's network on a
    /// server that is not root).
    pub(crate) async fn network(
        &self,
        limits: WorkerLimits,
    ) -> Result<Option<NetworkNamespace>, RuntimeError> {
        match &self.egress {
            Some(egress) if limits.network => Ok(Some(egress.take().await?)),
            _ => Ok(None),
        }
    }

    /// A network namespace for a build, which also reaches `sources` (its package index or
    /// repositories); none when the server is not root.
    pub(crate) async fn build_network(
        &self,
        sources: &[AllowedDestination],
    ) -> Result<Option<NetworkNamespace>, RuntimeError> {
        match &self.egress {
            Some(egress) => Ok(Some(egress.prepare(sources).await?)),
            None => Ok(None),
        }
    }

    /// Whether workers are isolated.
    pub(crate) fn enabled(&self) -> bool {
        !matches!(self.mode, Mode::Disabled)
    }

    /// Says how workers are isolated, for the log and `/status`.
    pub(crate) fn describe(&self) -> &'static str {
        match self.mode {
            Mode::Disabled => {
                "the sandbox is off: user code runs as the server's user and is not isolated"
            }
            Mode::HostUsers { .. } => {
                "every worker runs sandboxed (bubblewrap) as a user id of its own, with \
                 outbound-only network access where the network is on"
            }
            Mode::UserNamespace { .. } => {
                "every worker runs sandboxed (bubblewrap) in a user namespace of its own; its \
                 files belong to the server's user on the host and a worker whose network is \
                 on shares the host's (run the server as root for a host user id per worker \
                 and outbound-only access)"
            }
        }
    }

    /// Whether workers can be forked from a template here: the template builds each worker's
    /// sandbox itself, which takes the host's privileges to create namespaces and to give
    /// every worker a host user id of its own (a root server). Elsewhere workers are spawned.
    pub(crate) fn forks_workers(&self) -> bool {
        matches!(self.mode, Mode::HostUsers { .. })
    }

    /// Why the workers of a launch that needs `read_only` cannot be forked, if they cannot:
    /// a forked worker mounts its private `/tmp`, `/dev/shm` and `/proc` over the template's,
    /// which would hide an installation beneath them (a spawned worker's sandbox binds it on
    /// top).
    pub(crate) fn why_not_forked(&self, read_only: &[PathBuf]) -> Option<String> {
        if !self.forks_workers() {
            return Some(
                "forking needs a sandbox with a host user id per worker (a server running as \
                 root)"
                    .to_owned(),
            );
        }
        read_only
            .iter()
            .find(|path| {
                PRIVATE_IN_WORKER
                    .iter()
                    .any(|private| path.starts_with(private))
            })
            .map(|path| {
                format!(
                    "{} is beneath a directory every forked worker has a private one of",
                    path.display()
                )
            })
    }

    /// The command that starts a worker template of `launch` (`--template` follows the
    /// launch's arguments). The template sees what a worker sees, except that `work_root`
    /// (every working directory) is at [`WORK_VIEW_IN_TEMPLATE`], that the finished builds of
    /// named environments under `environments` are at [`ENVIRONMENTS_IN_TEMPLATE`] (read-only,
    /// for the environments' workers it forks), and that it is root with the capabilities to
    /// build its workers' sandboxes: it runs no user code, and every worker leaves root and
    /// those capabilities before any runs.
    pub(crate) fn template_command(
        &self,
        launch: &Launch<'_>,
        work_root: &Path,
        environments: &Path,
    ) -> Option<tokio::process::Command> {
        let Mode::HostUsers { bwrap, .. } = &self.mode else {
            return None;
        };
        let resolve = |arg: &Arg| -> OsString {
            match arg {
                Arg::Plain(text) => text.clone(),
                Arg::InRuntime(relative) => Path::new(RUNTIME_IN_SANDBOX).join(relative).into(),
            }
        };
        let mut command = tokio::process::Command::new(bwrap);
        command
            .args(self.bwrap_args(
                launch,
                View::Template {
                    work_root,
                    environments,
                },
            ))
            .arg("--")
            .arg(resolve(launch.program));
        command
            .args(launch.args.iter().map(resolve))
            .arg("--template");
        self.clean_environment(&mut command, Path::new(WORKDIR_IN_SANDBOX), launch.env);
        Some(command)
    }

    /// What a template must do to turn a forked child into a worker in `workdir` (beneath the
    /// `work_root` the template was started with) as `identity`, with the same limits and
    /// views as a spawned worker's.
    pub(crate) fn fork_request(
        &self,
        limits: WorkerLimits,
        identity: &Identity,
        workdir: &Path,
    ) -> ForkRequest {
        ForkRequest {
            workdir: Path::new(WORK_VIEW_IN_TEMPLATE)
                .join(workdir)
                .to_string_lossy()
                .into_owned(),
            work_view: WORK_VIEW_IN_TEMPLATE.to_owned(),
            home: WORKDIR_IN_SANDBOX.to_owned(),
            hostname: WORKER_HOSTNAME.to_owned(),
            uid: identity.id,
            network: limits.network,
            limits: ForkLimits {
                r#as: megabytes(limits.memory_mb),
                nproc: self.config.max_processes,
                fsize: megabytes(self.config.max_file_size_mb),
                nofile: self.config.max_open_files,
            },
            tmp_options: scratch_options(self.config.tmp_size_mb),
            shm_options: scratch_options(self.config.shm_size_mb),
            environment: None,
        }
    }

    /// Runs `true` in a sandbox to see that namespaces can be created here.
    async fn check(&self) -> Result<(), String> {
        let identity = self.identity().map_err(|err| err.to_string())?;
        let probe = tempfile_dir().map_err(|err| format!("no temporary directory: {err}"))?;
        if let Some(owner) = identity.file_owner() {
            std::os::unix::fs::chown(&probe, Some(owner), Some(owner))
                .map_err(|err| format!("cannot hand a directory to a worker user: {err}"))?;
        }
        let limits = WorkerLimits {
            memory_mb: 0,
            network: false,
        };
        let mut command = self.command(
            &Launch {
                runtime_dir: &probe,
                program: &Arg::plain("true"),
                args: &[],
                env: &[],
                read_only: &[],
                limits,
            },
            &probe,
            &identity,
            None,
        );
        let output = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), output).await;
        let _ = std::fs::remove_dir_all(&probe);
        match output {
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => Err(format!(
                "a test sandbox failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Ok(Err(err)) => Err(format!("bubblewrap cannot be started: {err}")),
            Err(_) => Err("a test sandbox did not finish within 30 s".to_owned()),
        }
    }

    /// A new identity for a worker: a locked host user id on a root server, else an id inside
    /// the worker's user namespace.
    pub(crate) fn identity(&self) -> Result<Identity, RuntimeError> {
        match self.mode {
            Mode::HostUsers { .. } => {
                let (id, lease) = self.lease_uid()?;
                Ok(Identity {
                    id,
                    lease: Some(lease),
                })
            }
            // Inside its own user namespace every worker is alone, so one id serves all.
            Mode::UserNamespace { .. } | Mode::Disabled => Ok(Identity {
                id: self.config.first_uid,
                lease: None,
            }),
        }
    }

    /// The identity environment builds run as: on a root server the user id just past the
    /// workers' range, the same for every build, so that the package cache it writes stays its
    /// own; locked host-wide like a worker's for as long as the build runs. Waits (up to
    /// `patience`) while another server on this machine builds.
    pub(crate) async fn builder_identity(
        &self,
        patience: Duration,
    ) -> Result<Identity, RuntimeError> {
        let Mode::HostUsers { .. } = self.mode else {
            return self.identity();
        };
        let uid = self
            .config
            .first_uid
            .checked_add(self.config.uid_count)
            .ok_or_else(|| {
                RuntimeError::RuntimeUnavailable(
                    "no user id is left past the workers' range for environment builds".to_owned(),
                )
            })?;
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if let Some(lease) = self.try_lock_uid(uid)? {
                return Ok(Identity {
                    id: uid,
                    lease: Some(lease),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RuntimeError::RuntimeUnavailable(format!(
                    "another server on this machine is building an environment as user id {uid}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Locks the first free user id of the range.
    fn lease_uid(&self) -> Result<(u32, UidLease), RuntimeError> {
        for offset in 0..self.config.uid_count {
            let Some(uid) = self.config.first_uid.checked_add(offset) else {
                break;
            };
            if let Some(lease) = self.try_lock_uid(uid)? {
                return Ok((uid, lease));
            }
        }
        Err(RuntimeError::RuntimeUnavailable(format!(
            "all {} worker user ids from {} are in use (runtime.sandbox.uid_count)",
            self.config.uid_count, self.config.first_uid
        )))
    }

    /// Locks user id `uid` host-wide, or `None` when something else holds it.
    fn try_lock_uid(&self, uid: u32) -> Result<Option<UidLease>, RuntimeError> {
        let path = self.config.lock_dir.join(format!("uid-{uid}"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let Mode::HostUsers { reaper, .. } = &self.mode else {
            unreachable!("only a root server locks host user ids. This is a bug.");
        };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(Some(UidLease {
                uid,
                lock: Some(lock),
                reaper: reaper.clone(),
                network: None,
            })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, errno)) => Err(RuntimeError::Io(std::io::Error::from(errno))),
        }
    }

    /// The command that starts `launch` in `workdir` as `identity`, sandboxed unless the
    /// sandbox is off. The environment is exactly the launch's plus the basics every program
    /// expects (`PATH`, `HOME`, locale, `TMPDIR`).
    pub(crate) fn command(
        &self,
        launch: &Launch<'_>,
        workdir: &Path,
        identity: &Identity,
        network: Option<&NetworkNamespace>,
    ) -> tokio::process::Command {
        let (home, runtime_dir) = match self.mode {
            Mode::Disabled => (workdir, launch.runtime_dir),
            _ => (Path::new(WORKDIR_IN_SANDBOX), Path::new(RUNTIME_IN_SANDBOX)),
        };
        let resolve = |arg: &Arg| -> OsString {
            match arg {
                Arg::Plain(text) => text.clone(),
                Arg::InRuntime(relative) => runtime_dir.join(relative).into_os_string(),
            }
        };
        let program = resolve(launch.program);
        let mut inner: Vec<OsString> = Vec::new();
        if let Some(prlimit) = &self.prlimit {
            inner.push(prlimit.into());
            inner.extend(self.limit_args(launch.limits));
            inner.push("--".into());
        }
        let mut command = match &self.mode {
            Mode::Disabled => {
                let mut command = match inner.first() {
                    Some(prlimit) => {
                        let mut command = tokio::process::Command::new(prlimit);
                        command.args(&inner[1..]);
                        command.arg(&program);
                        command
                    }
                    None => tokio::process::Command::new(&program),
                };
                command.current_dir(workdir);
                command
            }
            Mode::HostUsers { bwrap, setpriv, .. } => {
                inner.push(setpriv.into());
                inner.extend([
                    format!("--reuid={}", identity.id).into(),
                    format!("--regid={}", identity.id).into(),
                    "--clear-groups".into(),
                    "--inh-caps=-all".into(),
                    "--bounding-set=-all".into(),
                    "--no-new-privs".into(),
                    "--".into(),
                ]);
                inner.push(program);
                // A worker whose network is on starts in its prepared namespace; without one
                // it gets loopback only, never the host's network.
                let joined = network
                    .filter(|_| launch.limits.network)
                    .zip(self.egress.as_ref());
                let mut command = match joined {
                    Some((namespace, egress)) => {
                        let mut command = tokio::process::Command::new(egress.nsenter());
                        command
                            .arg(format!("--net={}", namespace.path().display()))
                            .arg("--")
                            .arg(bwrap);
                        command
                    }
                    None => tokio::process::Command::new(bwrap),
                };
                command.args(self.bwrap_args(
                    launch,
                    View::Worker {
                        workdir,
                        namespace_id: None,
                        keeps_network: joined.is_some(),
                    },
                ));
                command.arg("--").args(inner);
                command
            }
            Mode::UserNamespace { bwrap } => {
                inner.push(program);
                let mut command = tokio::process::Command::new(bwrap);
                command.args(self.bwrap_args(
                    launch,
                    View::Worker {
                        workdir,
                        namespace_id: Some(identity.id),
                        keeps_network: launch.limits.network,
                    },
                ));
                command.arg("--").args(inner);
                command
            }
        };
        command.args(launch.args.iter().map(resolve));
        self.clean_environment(&mut command, home, launch.env);
        command
    }

    /// Exactly the launch's variables plus the basics every program expects (`PATH`, `HOME`,
    /// locale, `TMPDIR`), and in a sandbox the system-call filters the worker installs.
    fn clean_environment(
        &self,
        command: &mut tokio::process::Command,
        home: &Path,
        env: &[(String, String)],
    ) {
        command
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home)
            .env("TMPDIR", "/tmp")
            .env("LANG", "C.UTF-8")
            .env("USER", "o16n")
            .env("LOGNAME", "o16n")
            .envs(env.iter().map(|(key, value)| (key, value)));
        if self.enabled() {
            command.env(seccomp::FILTERS_VARIABLE, seccomp::worker_filters());
        }
    }

    /// `prlimit` options: address space, and in a sandbox processes, file size and open files.
    fn limit_args(&self, limits: WorkerLimits) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if limits.memory_mb > 0 {
            args.push(format!("--as={}", limits.memory_mb * 1024 * 1024).into());
        }
        if self.enabled() {
            // The process limit counts every process of the user id: meaningful only when the
            // worker has an id of its own (a server's own processes would count too).
            args.push(format!("--nproc={}", self.config.max_processes).into());
            args.push(format!("--fsize={}", self.config.max_file_size_mb * 1024 * 1024).into());
            args.push(format!("--nofile={}", self.config.max_open_files).into());
        }
        args
    }

    fn bwrap_args(&self, launch: &Launch<'_>, view: View<'_>) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&dyn AsRef<std::ffi::OsStr>]| {
            args.extend(items.iter().map(|item| item.as_ref().to_os_string()));
        };
        // A session of its own makes the sandbox's init the leader of the worker's process
        // group; the server interrupts that group, never bubblewrap itself.
        push(&[&"--new-session", &"--die-with-parent"]);
        let namespace_id = match view {
            View::Worker {
                namespace_id,
                keeps_network,
                ..
            } => {
                push(&[
                    &"--unshare-pid",
                    &"--unshare-ipc",
                    &"--unshare-uts",
                    &"--unshare-cgroup-try",
                    &"--hostname",
                    &WORKER_HOSTNAME,
                ]);
                if !keeps_network {
                    push(&[&"--unshare-net"]);
                }
                namespace_id
            }
            // The template shares the host's PID namespace, so that the pids it reports are
            // the ones the server signals; each worker it forks gets the namespaces above.
            View::Template { .. } => {
                push(&[&"--cap-add", &"ALL"]);
                None
            }
        };
        if let Some(id) = namespace_id {
            let id = id.to_string();
            push(&[
                &"--unshare-user",
                &"--uid",
                &id,
                &"--gid",
                &id,
                &"--cap-drop",
                &"ALL",
            ]);
        }
        push(&[&"--ro-bind", &"/usr", &"/usr"]);
        for root in SYSTEM_ROOTS {
            match std::fs::read_link(root) {
                Ok(target) => push(&[&"--symlink", &target, root]),
                Err(_) => push(&[&"--ro-bind-try", root, root]),
            }
        }
        // Directories that bubblewrap creates on the way to a mount point are made open (0755,
        // empty) explicitly: left to itself it may make them readable by root only.
        push(&[&"--perms", &"0755", &"--dir", &"/etc"]);
        for entry in ETC_ENTRIES {
            let path = Path::new("/etc").join(entry);
            push(&[&"--ro-bind-try", &path, &path]);
        }
        // `/tmp` and `/dev/shm` live in memory that no address-space limit counts: each gets
        // a size of its own, or a worker could fill half the host's memory with files.
        let (tmp_size, shm_size) = (
            megabytes(self.config.tmp_size_mb).to_string(),
            megabytes(self.config.shm_size_mb).to_string(),
        );
        push(&[
            &"--proc",
            &"/proc",
            &"--dev",
            &"/dev",
            &"--perms",
            &"1777",
            &"--size",
            &tmp_size,
            &"--tmpfs",
            &"/tmp",
            &"--perms",
            &"1777",
            &"--size",
            &shm_size,
            &"--tmpfs",
            &"/dev/shm",
        ]);
        let read_only = outermost(launch.read_only, launch.runtime_dir);
        // The way to the runtime's own directories often passes a data directory or `/root`,
        // readable by their owner only on the host: made open here, and empty.
        let ancestors: std::collections::BTreeSet<&Path> = read_only
            .iter()
            .flat_map(|path| path.ancestors().skip(1))
            .filter(|ancestor| *ancestor != Path::new("/"))
            .collect();
        for ancestor in ancestors {
            push(&[&"--perms", &"0755", &"--dir", &ancestor]);
        }
        for path in read_only {
            push(&[&"--ro-bind", &path, &path]);
        }
        push(&[
            &"--perms",
            &"0755",
            &"--dir",
            &"/opt/o16n",
            &"--ro-bind",
            &launch.runtime_dir,
            &RUNTIME_IN_SANDBOX,
        ]);
        push(&[&"--perms", &"0755", &"--dir", &"/home"]);
        match view {
            View::Worker { workdir, .. } => push(&[
                &"--bind",
                &workdir,
                &WORKDIR_IN_SANDBOX,
                &"--chdir",
                &WORKDIR_IN_SANDBOX,
            ]),
            View::Template {
                work_root,
                environments,
            } => {
                push(&[
                    &"--dir",
                    &WORKDIR_IN_SANDBOX,
                    &"--perms",
                    &"0755",
                    &"--dir",
                    &"/run/o16n",
                    &"--bind",
                    &work_root,
                    &WORK_VIEW_IN_TEMPLATE,
                    &"--chdir",
                    &"/",
                ]);
                push(&[&"--perms", &"0755", &"--dir", &ENVIRONMENTS_IN_TEMPLATE]);
                for runtime in ENVIRONMENT_RUNTIMES {
                    push(&[
                        &"--ro-bind-try",
                        &environments.join(runtime),
                        &Path::new(ENVIRONMENTS_IN_TEMPLATE).join(runtime),
                    ]);
                }
            }
        }
        args
    }
}

/// What a sandbox shows beyond the operating system and the runtime.
#[derive(Clone, Copy)]
enum View<'a> {
    /// A spawned worker: its working directory at [`WORKDIR_IN_SANDBOX`], and a user id inside
    /// a user namespace of its own when the server is not root.
    Worker {
        workdir: &'a Path,
        namespace_id: Option<u32>,
        /// Whether it stays in the network namespace it is started in (a prepared one with
        /// outbound-only access, or the host's for a server that is not root); otherwise it
        /// gets one with loopback only.
        keeps_network: bool,
    },
    /// A worker template: every working directory, and the environments' finished builds, for
    /// the workers it forks.
    Template {
        work_root: &'a Path,
        environments: &'a Path,
    },
}

/// Where a finished environment build under `environments` (the environments' root, as a
/// template sees it from [`ENVIRONMENTS_IN_TEMPLATE`]) is seen by a template's workers.
pub(crate) fn environment_in_template(environments: &Path, build: &Path) -> Option<PathBuf> {
    let relative = build.strip_prefix(environments).ok()?;
    let runtime = relative.components().next()?.as_os_str().to_str()?;
    ENVIRONMENT_RUNTIMES
        .contains(&runtime)
        .then(|| Path::new(ENVIRONMENTS_IN_TEMPLATE).join(relative))
}

/// Bytes in `count` MiB.
fn megabytes(count: u64) -> u64 {
    count.saturating_mul(1024 * 1024)
}

/// The mount options of a worker's private in-memory directory of `size_mb` MiB.
fn scratch_options(size_mb: u64) -> String {
    format!("mode=1777,size={}", megabytes(size_mb.max(1)))
}

/// What a worker template does to turn a forked child into a worker (see
/// `workers/python/o16n_template.py`): sent as JSON with the worker's descriptors.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ForkRequest {
    /// The worker's working directory in the template's view.
    pub(crate) workdir: String,
    /// Where all working directories are in the template's view; the worker unmounts it.
    pub(crate) work_view: String,
    /// Where the worker sees its working directory.
    pub(crate) home: String,
    /// The worker's host name.
    pub(crate) hostname: String,
    /// The worker's user and group id.
    pub(crate) uid: u32,
    /// Whether the worker keeps the network (off: a network namespace with loopback only).
    pub(crate) network: bool,
    /// The worker's resource limits, as `setrlimit` takes them; 0 for none.
    pub(crate) limits: ForkLimits,
    /// The mount options of the worker's private `/tmp` and `/dev/shm` (their sizes).
    pub(crate) tmp_options: String,
    pub(crate) shm_options: String,
    /// The named environment the worker runs in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) environment: Option<ForkedEnvironment>,
}

/// A named environment that a worker forked from its runtime's default template enters once it
/// has left root: its packages go before the default's, as in a spawned worker of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ForkedEnvironment {
    /// The environment's packages as the worker sees them: a Python site-packages directory
    /// (its `.pth` files are processed) or an R library.
    pub(crate) packages: String,
    /// The environment's installation prefix (Python: what `sys.prefix` is in a spawned worker).
    pub(crate) prefix: String,
}

/// A forked worker's limits, the same as `prlimit` gives a spawned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ForkLimits {
    /// Address space in bytes.
    pub(crate) r#as: u64,
    /// Processes (and threads) of the worker's user.
    pub(crate) nproc: u64,
    /// Largest file in bytes.
    pub(crate) fsize: u64,
    /// Open files.
    pub(crate) nofile: u64,
}

/// A program or argument of a launch: as it is, or a path inside the runtime's directory,
/// which is elsewhere in a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Arg {
    /// Passed as it is.
    Plain(OsString),
    /// A path relative to the runtime's directory.
    InRuntime(PathBuf),
}

impl Arg {
    pub(crate) fn plain(text: impl Into<OsString>) -> Arg {
        Arg::Plain(text.into())
    }
}

/// What to start in a sandbox.
pub(crate) struct Launch<'a> {
    /// The runtime's directory (its worker script, and its managed environment if any).
    pub(crate) runtime_dir: &'a Path,
    /// The program (an interpreter, or a shell that prepares one).
    pub(crate) program: &'a Arg,
    /// Its arguments.
    pub(crate) args: &'a [Arg],
    /// The runtime's variables; nothing of the server's environment is passed on.
    pub(crate) env: &'a [(String, String)],
    /// Directories the program needs beyond the operating system and the runtime's directory,
    /// made visible read-only at the same paths.
    pub(crate) read_only: &'a [PathBuf],
    /// Limits and network access.
    pub(crate) limits: WorkerLimits,
}

/// The paths to bind, without those that `/usr` (bound whole), the runtime's directory (bound
/// elsewhere) or another of them contains.
fn outermost<'a>(paths: &'a [PathBuf], runtime_dir: &Path) -> Vec<&'a Path> {
    let mut sorted: Vec<&Path> = paths
        .iter()
        .map(PathBuf::as_path)
        .filter(|path| !path.starts_with("/usr") && !path.starts_with(runtime_dir))
        .collect();
    sorted.sort();
    sorted.dedup();
    let mut kept: Vec<&Path> = Vec::new();
    for path in sorted {
        if !kept.iter().any(|outer| path.starts_with(outer)) {
            kept.push(path);
        }
    }
    kept
}

/// The first executable called `name` in the usual system directories.
pub(crate) fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "o16n-sandbox-check-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(lock_dir: &Path) -> SandboxConfig {
        SandboxConfig {
            enabled: true,
            first_uid: 1_000_000_000,
            uid_count: 3,
            lock_dir: lock_dir.to_path_buf(),
            max_processes: 64,
            max_file_size_mb: 8,
            max_open_files: 256,
            tmp_size_mb: 16,
            shm_size_mb: 4,
            network_allow: Vec::new(),
        }
    }

    fn host_users(lock_dir: &Path) -> Sandbox {
        Sandbox {
            mode: Mode::HostUsers {
                bwrap: "/usr/bin/bwrap".into(),
                setpriv: "/usr/bin/setpriv".into(),
                reaper: Reaper::new("/usr/bin/kill".into()),
            },
            config: config(lock_dir),
            prlimit: Some("/usr/bin/prlimit".into()),
            egress: None,
        }
    }

    #[test]
    fn a_template_sees_every_working_directory_and_keeps_the_capabilities_to_sandbox_its_workers() {
        let locks = std::env::temp_dir().join(format!("o16n-uid-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&locks).unwrap();
        let sandbox = host_users(&locks);
        let limits = WorkerLimits {
            memory_mb: 100,
            network: false,
        };
        let command = sandbox
            .template_command(
                &Launch {
                    runtime_dir: Path::new("/data/runtimes/python"),
                    program: &Arg::plain("/opt/py/bin/python"),
                    args: &[Arg::InRuntime("worker.py".into())],
                    env: &[],
                    read_only: &[PathBuf::from("/opt/py")],
                    limits,
                },
                Path::new("/data/work"),
                Path::new("/data/environments"),
            )
            .expect("a root server forks workers");
        let args: Vec<String> = command
            .as_std()
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let text = args.join(" ");
        for expected in [
            "--cap-add ALL",
            "--bind /data/work /run/o16n/work",
            "--dir /home/o16n",
            "--ro-bind /data/runtimes/python /opt/o16n/runtime",
            "--ro-bind-try /data/environments/python /opt/o16n/environments/python",
            "--ro-bind-try /data/environments/r /opt/o16n/environments/r",
            "-- /opt/py/bin/python /opt/o16n/runtime/worker.py --template",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        // The pids it reports must be the host's; each worker unshares its own namespaces.
        assert!(!text.contains("--unshare-pid"), "{text}");
        assert!(!text.contains("setpriv"), "{text}");

        let identity = sandbox.identity().unwrap();
        let request = sandbox.fork_request(limits, &identity, Path::new("w1"));
        assert_eq!(request.workdir, "/run/o16n/work/w1");
        assert_eq!(request.work_view, "/run/o16n/work");
        assert_eq!(request.home, WORKDIR_IN_SANDBOX);
        assert_eq!(request.uid, identity.id);
        assert!(!request.network);
        assert_eq!(
            request.limits,
            ForkLimits {
                r#as: 100 * 1024 * 1024,
                nproc: 64,
                fsize: 8 * 1024 * 1024,
                nofile: 256,
            }
        );
        assert_eq!(
            environment_in_template(
                Path::new("/data/environments"),
                Path::new("/data/environments/python/k1/lib/python3.11/site-packages")
            ),
            Some(PathBuf::from(
                "/opt/o16n/environments/python/k1/lib/python3.11/site-packages"
            ))
        );
        assert_eq!(
            environment_in_template(
                Path::new("/data/environments"),
                Path::new("/data/environments/build/k1")
            ),
            None,
            "builds under way are not seen"
        );
        assert_eq!(sandbox.why_not_forked(&[PathBuf::from("/opt/py")]), None);
        assert!(
            sandbox
                .why_not_forked(&[PathBuf::from("/tmp/venv")])
                .is_some_and(|why| why.contains("/tmp/venv")),
            "a private /tmp would hide it"
        );
        let unprivileged = Sandbox {
            mode: Mode::UserNamespace {
                bwrap: "/usr/bin/bwrap".into(),
            },
            ..host_users(&locks)
        };
        assert!(!unprivileged.forks_workers());
        assert!(unprivileged.why_not_forked(&[]).is_some());
        std::fs::remove_dir_all(locks).unwrap();
    }

    #[test]
    fn user_ids_are_never_shared_while_held_and_come_back_when_freed() {
        let locks = std::env::temp_dir().join(format!("o16n-uid-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&locks).unwrap();
        // Two sandboxes stand for two servers on one machine: the lock is host-wide.
        let (first_server, second_server) = (host_users(&locks), host_users(&locks));
        let a = first_server.identity().unwrap();
        let b = second_server.identity().unwrap();
        let c = first_server.identity().unwrap();
        let mut ids = vec![a.id, b.id, c.id];
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3);
        assert!(second_server.identity().is_err(), "the range is exhausted");
        let freed = b.id;
        drop(b);
        // The id comes back once its sweep (on a thread of its own) found no process of it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let again = loop {
            match first_server.identity() {
                Ok(identity) => break identity,
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) => panic!("the freed id never came back: {err}"),
            }
        };
        assert_eq!(again.id, freed);
        std::fs::remove_dir_all(locks).unwrap();
    }

    #[test]
    fn a_sandboxed_command_drops_to_the_worker_id_behind_bubblewrap_and_limits() {
        let locks = std::env::temp_dir().join(format!("o16n-uid-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&locks).unwrap();
        let sandbox = host_users(&locks);
        let identity = sandbox.identity().unwrap();
        let limits = WorkerLimits {
            memory_mb: 100,
            network: false,
        };
        let command = sandbox.command(
            &Launch {
                runtime_dir: Path::new("/data/runtimes/python"),
                program: &Arg::plain("/opt/py/bin/python"),
                args: &[Arg::InRuntime("worker.py".into())],
                env: &[("O16N_X".to_owned(), "1".to_owned())],
                read_only: &[
                    PathBuf::from("/opt/py"),
                    PathBuf::from("/usr/lib/R"),
                    PathBuf::from("/data/runtimes/python/venv"),
                ],
                limits,
            },
            Path::new("/data/work/w1"),
            &identity,
            None,
        );
        let std_command = command.as_std();
        assert_eq!(std_command.get_program(), "/usr/bin/bwrap");
        let args: Vec<String> = std_command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect();
        let text = args.join(" ");
        for expected in [
            "--unshare-pid",
            "--unshare-net",
            "--new-session",
            "--perms 0755 --dir /opt --ro-bind /opt/py /opt/py",
            "--ro-bind /data/runtimes/python /opt/o16n/runtime",
            "--bind /data/work/w1 /home/o16n",
            "/usr/bin/prlimit --as=104857600 --nproc=64 --fsize=8388608 --nofile=256 --",
            &format!(
                "/usr/bin/setpriv --reuid={0} --regid={0} --clear-groups",
                identity.id
            ),
            "--no-new-privs -- /opt/py/bin/python /opt/o16n/runtime/worker.py",
        ] {
            assert!(text.contains(expected), "{expected:?} missing from {text}");
        }
        assert!(
            !text.contains("/usr/lib/R /usr/lib/R"),
            "/usr is bound whole"
        );
        assert!(!text.contains("venv"), "the runtime's directory holds it");
        let env: Vec<_> = std_command.get_envs().collect();
        assert!(env.iter().any(|(key, _)| *key == "O16N_X"));
        assert!(env.iter().all(|(key, _)| *key != "O16N_ADMIN_PASSWORD"));
        std::fs::remove_dir_all(locks).unwrap();
    }
}
