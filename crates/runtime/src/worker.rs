//! One worker process and the actor that owns it.
//!
//! [`spawn`] starts the interpreter in a sandbox of its own (see `sandbox.rs`), or has a warmed
//! template fork it into one (see `template.rs`), with a fresh working directory, waits for its
//! handshake (readiness is the `hello` frame, never a sleep) and starts the actor task that
//! owns the worker's processes and its pipes. Everyone else holds a cheap
//! [`WorkerHandle`] and sends it requests. A reader task turns the worker's protocol pipe into a
//! channel of frames, so that waiting for a frame can be raced against other events without
//! losing half-read data; a frame longer than the configured limit ends the worker instead of
//! making the server allocate what the worker announced.
//!
//! Both runtimes talk over two pipes the server creates: requests on the worker's stdin,
//! frames on its stdout. The Python worker moves them to private descriptors before any user
//! code runs and sends what user code prints as `console` frames. R cannot move descriptors,
//! so a shell hands it the pipes as descriptors 3 and 4 and points its stdout and stderr at
//! the server's stderr pipe, which is then the console: each request's part ends with an
//! [`END_MARKER`] line. A forked worker gets the same descriptors from its template.
//!
//! The worker is stopped when the last handle is dropped: a `shutdown` request, a grace period,
//! then SIGKILL; a guard kills the processes even if the actor itself is torn down. When the
//! worker dies on its own the actor records why (exit status and the last lines it wrote to
//! stderr) and every pending and later request gets that reason.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use o16n_types::RuntimeType;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::unix::pipe;
use tokio::process::Child;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::codec::FramedRead;

use crate::RuntimeError;
use crate::bounded::BoundedLines;
use crate::egress::NetworkNamespace;
use crate::launch::{ConsoleKind, LaunchSpec, MAX_STDERR_LINE_BYTES, StderrTail, describe_exit};
use crate::protocol::{self, FrameError, PROTOCOL_VERSION, Request, WorkerMessage};
use crate::sandbox::{ForkRequest, ForkedEnvironment, Identity, Sandbox};
use crate::template::{ForkFailure, Template, Templates};
use crate::workdir::WorkDir;

/// How long a worker gets to stop after an interrupt, or to report its end after a kill.
const GRACE_PERIOD: Duration = Duration::from_secs(3);
/// How long a worker gets to exit after a `shutdown` request before it is killed: its state is
/// discarded either way, and user code (an R `.Last`, an exit handler) must not keep it alive.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// How a pool starts its workers.
#[derive(Debug, Clone)]
pub(crate) enum Launcher {
    /// Real interpreters, each started on its own, sandboxed.
    Process(LaunchSpec),
    /// Real interpreters forked from a warmed template, each sandboxed as a spawned one; in a
    /// named environment (the template's runtime's) when one is given.
    Forked(LaunchSpec, Template, Option<Box<ForkedEnvironment>>),
    /// Fake workers speaking the protocol from inside the process (tests).
    #[cfg(test)]
    Fake(RuntimeType),
}

impl Launcher {
    /// Workers of `spec` forked from a template when `fork` is asked for and the sandbox
    /// allows it, else spawned.
    pub(crate) fn new(templates: &Templates, spec: LaunchSpec, fork: bool) -> Launcher {
        if !fork {
            return Launcher::Process(spec);
        }
        if let Some(why) = templates.why_not_forked(&spec) {
            tracing::info!(runtime = %spec.runtime, "workers are spawned, not forked from a template: {why}");
            return Launcher::Process(spec);
        }
        let template = Template::new(
            spec.clone(),
            templates.sandbox.clone(),
            templates.work_root.clone(),
            templates.environments.clone(),
            &templates.tasks,
            templates.stop.clone(),
        );
        Launcher::Forked(spec, template, None)
    }

    /// Starts one worker in a new working directory under `work_root`.
    pub(crate) async fn start(
        &self,
        work_root: &Path,
        sandbox: &Sandbox,
    ) -> Result<WorkerHandle, RuntimeError> {
        match self {
            Launcher::Process(spec) => spawn(spec, None, work_root, sandbox).await,
            Launcher::Forked(spec, template, environment) => {
                spawn(
                    spec,
                    Some((template, environment.as_deref())),
                    work_root,
                    sandbox,
                )
                .await
            }
            #[cfg(test)]
            Launcher::Fake(runtime) => crate::fake::spawn(*runtime, work_root).await,
        }
    }

    /// How real workers are started; `None` for fakes.
    pub(crate) fn spec(&self) -> Option<&LaunchSpec> {
        match self {
            Launcher::Process(spec) | Launcher::Forked(spec, _, _) => Some(spec),
            #[cfg(test)]
            Launcher::Fake(_) => None,
        }
    }
}

/// What an R worker prints on its console after each request.
const END_MARKER: &str = "\u{1e}o16n-end";

/// The console output of the running execution, shared with readers of
/// `GET /sessions/{id}/console-output`.
pub(crate) type ConsoleSink = Arc<Mutex<ConsoleBuffer>>;

/// The console output of one execution as the server keeps it: what user code prints is
/// hostile in size, so the server keeps at most a configured number of bytes and counts what
/// it drops; the output then ends with a line that says so.
#[derive(Debug, Default)]
pub(crate) struct ConsoleBuffer {
    text: String,
    dropped: u64,
}

impl ConsoleBuffer {
    /// Appends `text`, keeping at most `limit` bytes in all (cut at a character boundary).
    pub(crate) fn push(&mut self, text: &str, limit: usize) {
        // Once something was dropped, everything after it is: the output kept stays a prefix.
        if self.dropped > 0 {
            self.dropped += text.len() as u64;
            return;
        }
        let mut kept = limit.saturating_sub(self.text.len()).min(text.len());
        while !text.is_char_boundary(kept) {
            kept -= 1;
        }
        self.text.push_str(&text[..kept]);
        self.dropped += (text.len() - kept) as u64;
    }

    /// Counts output the worker dropped itself, past the same limit.
    pub(crate) fn count_dropped(&mut self, bytes: u64) {
        self.dropped = self.dropped.saturating_add(bytes);
    }

    /// Empties it for the next execution.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.dropped = 0;
    }

    /// The output kept, with a last line saying how much was dropped, if any.
    pub(crate) fn output(&self) -> String {
        if self.dropped == 0 {
            return self.text.clone();
        }
        let newline = if self.text.ends_with('\n') || self.text.is_empty() {
            ""
        } else {
            "\n"
        };
        format!(
            "{}{newline}[o16n: {} more bytes of console output were dropped \
             (runtime.max_console_kb)]\n",
            self.text, self.dropped
        )
    }
}

/// A request's answer: a message of the kind the request expects, or `failed`.
pub(crate) struct Reply {
    pub(crate) message: WorkerMessage,
    pub(crate) blob: Vec<u8>,
}

enum Command {
    Call {
        request: Request,
        blob: Vec<u8>,
        console: Option<ConsoleSink>,
        time_limit: Option<Duration>,
        reply: oneshot::Sender<Result<Reply, RuntimeError>>,
    },
}

/// A cheap, cloneable handle on a running worker.
#[derive(Clone)]
pub(crate) struct WorkerHandle {
    shared: Arc<Shared>,
}

struct Shared {
    id: String,
    /// The real processes, signalled directly so that an interrupt never waits for the actor
    /// (which is busy with the request being interrupted); `None` for a fake worker.
    processes: Option<Processes>,
    runtime: RuntimeType,
    workdir: WorkDir,
    commands: mpsc::Sender<Command>,
    exit_reason: watch::Receiver<Option<Exit>>,
}

/// How a worker ended.
#[derive(Debug, Clone)]
struct Exit {
    reason: String,
    /// Whether the server retired it (its last handle went) rather than it dying.
    retired: bool,
}

/// The processes of a worker, by what they are signalled for.
#[derive(Debug, Clone, Copy)]
struct Processes {
    /// The process the server started (bubblewrap, or the interpreter when unsandboxed); the
    /// leader of its process group.
    started: i32,
    /// The leader of the group that runs user code: the sandbox's init, or `started`.
    user_group: i32,
}

impl Processes {
    fn interrupt(self) {
        signal_group(self.user_group, Signal::SIGINT);
    }

    /// Kills the user code's group first: killing a sandbox's init ends its whole PID
    /// namespace, and bubblewrap then exits by itself.
    fn kill(self) {
        signal_group(self.user_group, Signal::SIGKILL);
        signal_group(self.started, Signal::SIGKILL);
    }
}

impl WorkerHandle {
    /// The worker's working directory: the session's files live here.
    pub(crate) fn workdir(&self) -> &WorkDir {
        &self.shared.workdir
    }

    /// Why the worker died, or `None` while it lives.
    pub(crate) fn exit_reason(&self) -> Option<String> {
        self.shared
            .exit_reason
            .borrow()
            .as_ref()
            .map(|exit| exit.reason.clone())
    }

    /// Completes when the worker has ended, with whether the server retired it (`true`) or it
    /// died (crashed, was killed, or broke the protocol). Holds no handle, so the worker may
    /// end while this waits.
    pub(crate) fn retired(&self) -> impl std::future::Future<Output = bool> + 'static {
        let mut exit_reason = self.shared.exit_reason.clone();
        async move {
            match exit_reason.wait_for(Option::is_some).await {
                Ok(exit) => exit.as_ref().is_some_and(|exit| exit.retired),
                Err(_) => false,
            }
        }
    }

    /// Completes when the worker process has ended.
    pub(crate) fn exited(&self) -> impl std::future::Future<Output = ()> + 'static {
        let mut exit_reason = self.shared.exit_reason.clone();
        async move {
            let _ = exit_reason.wait_for(Option::is_some).await;
        }
    }

    /// Sends a request and waits for its answer. With `time_limit`, the execution is
    /// interrupted when it runs longer, and the worker killed if it does not stop.
    pub(crate) async fn call(
        &self,
        request: Request,
        blob: Vec<u8>,
        console: Option<ConsoleSink>,
        time_limit: Option<Duration>,
    ) -> Result<Reply, RuntimeError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Call {
            request,
            blob,
            console,
            time_limit,
            reply,
        };
        if self.shared.commands.send(command).await.is_err() {
            return Err(RuntimeError::WorkerDied(self.death_notice()));
        }
        match answer.await {
            Ok(result) => result,
            Err(_) => Err(RuntimeError::WorkerDied(self.death_notice())),
        }
    }

    /// Interrupts the running execution (SIGINT to the group running user code). A worker
    /// that is not executing ignores it.
    pub(crate) fn interrupt(&self) {
        if let Some(processes) = self.live_processes() {
            processes.interrupt();
        }
    }

    /// Kills the worker and everything it started, at once. A fake worker is ended by dropping
    /// its last handle.
    pub(crate) fn kill(&self) {
        if let Some(processes) = self.live_processes() {
            processes.kill();
        }
    }

    /// The worker's processes while it lives: once it has ended, their pids may already name
    /// other processes (pids are reused, and a machine may have only 32,768).
    fn live_processes(&self) -> Option<Processes> {
        self.shared
            .processes
            .filter(|_| self.shared.exit_reason.borrow().is_none())
    }

    fn death_notice(&self) -> String {
        self.exit_reason()
            .unwrap_or_else(|| format!("the {} worker stopped", self.shared.runtime))
    }
}

fn signal_group(pid: i32, signal: Signal) {
    // ESRCH (already gone) is the only expected failure and needs no handling.
    let _ = killpg(Pid::from_raw(pid), signal);
}

/// What the actor needs of the thing on the other end of the pipes: a real process tree, or a
/// fake worker in tests.
#[async_trait::async_trait]
pub(crate) trait WorkerProcess: Send + 'static {
    /// Interrupts the running execution.
    fn interrupt(&self);
    /// Ends the worker at once.
    fn kill(&mut self);
    /// Waits for the end and says how it ended; gives up after `patience`.
    async fn wait(&mut self, patience: Duration) -> String;
    /// Records which process group runs user code, once the worker has answered.
    fn set_user_group(&mut self, _group: i32) {}
}

/// A worker process tree started by the server, killed when dropped (whatever happened to the
/// actor) unless it has ended and been reaped: its pids may then name other processes.
struct ChildProcess {
    child: Child,
    processes: Processes,
    /// The worker's user id (and network namespace), freed only once its processes are gone.
    _identity: Identity,
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[async_trait::async_trait]
impl WorkerProcess for ChildProcess {
    fn interrupt(&self) {
        if self.child.id().is_some() {
            self.processes.interrupt();
        }
    }

    fn kill(&mut self) {
        if self.child.id().is_some() {
            self.processes.kill();
        }
    }

    async fn wait(&mut self, patience: Duration) -> String {
        describe_exit(&mut self.child, Some(patience)).await
    }

    fn set_user_group(&mut self, group: i32) {
        self.processes.user_group = group;
    }
}

/// A worker forked by a template: its keeper leads its process group (and ignores
/// interrupts); the worker is PID 1 of its own PID namespace, so killing it ends everything it
/// started. Its status comes from the template. It is killed when dropped, unless it has ended
/// (its keeper's pid may then belong to another process).
struct ForkedProcess {
    processes: Processes,
    ended: watch::Receiver<Option<String>>,
    /// The server's end of the worker's lifeline: when it closes, the keeper kills the worker,
    /// so a worker never outlives its handle even if a signal missed it.
    _lifeline: std::io::PipeWriter,
    /// The worker's user id (and network namespace), freed only once its processes are gone.
    _identity: Identity,
}

impl Drop for ForkedProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

#[async_trait::async_trait]
impl WorkerProcess for ForkedProcess {
    fn interrupt(&self) {
        if self.ended.borrow().is_none() {
            self.processes.interrupt();
        }
    }

    fn kill(&mut self) {
        if self.ended.borrow().is_none() {
            self.processes.kill();
        }
    }

    async fn wait(&mut self, patience: Duration) -> String {
        match tokio::time::timeout(patience, self.ended.wait_for(Option::is_some)).await {
            Ok(Ok(status)) => status.clone().unwrap_or_default(),
            Ok(Err(_)) => "status unknown: its template stopped".to_owned(),
            Err(_) => "still running but not answering".to_owned(),
        }
    }
}

/// Starts a worker in a new working directory under `work_root` (forked from `template` when
/// there is one, into an environment if given) and waits for its handshake.
pub(crate) async fn spawn(
    spec: &LaunchSpec,
    template: Option<(&Template, Option<&ForkedEnvironment>)>,
    work_root: &Path,
    sandbox: &Sandbox,
) -> Result<WorkerHandle, RuntimeError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let identity = sandbox.identity()?;
    let path = work_root.join(&id);
    let workdir = WorkDir::create(&path, identity.file_owner())?;
    let started = match sandbox.network(spec.limits).await {
        Ok(network) => match template {
            Some((template, environment)) => {
                fork_process(
                    spec,
                    template,
                    environment,
                    sandbox,
                    identity,
                    network,
                    &path,
                )
                .await
            }
            None => spawn_process(spec, sandbox, identity, network, &path),
        },
        Err(err) => Err(err),
    };
    let pending = match started {
        Ok(started) => handshake(spec, started, workdir).await,
        Err(err) => Err(err),
    };
    match pending {
        Ok(pending) => Ok(pending.start(id)),
        Err(err) => {
            crate::remove::remove_tree_off_thread(path, "a worker's working directory").await;
            Err(err)
        }
    }
}

/// The identity of a worker that also holds its network namespace, if it has one.
fn with_network(mut identity: Identity, network: Option<NetworkNamespace>) -> Identity {
    if let Some(network) = network {
        identity.hold_network(network);
    }
    identity
}

/// One end of a pipe that the worker may reopen through `/dev/fd` (R reopens its protocol
/// descriptors that way). A pipe belongs to the user who created it, readable by that user
/// only; widening its mode grants nothing else, since only the worker itself can reach its
/// descriptors under `/proc`.
fn reopenable(end: impl Into<OwnedFd>) -> Result<OwnedFd, RuntimeError> {
    use std::os::unix::fs::PermissionsExt;
    let file = std::fs::File::from(end.into());
    file.set_permissions(std::fs::Permissions::from_mode(0o666))?;
    Ok(file.into())
}

/// A worker process whose handshake has not come yet.
struct Started {
    /// Its processes, for signals from outside the actor.
    processes: Processes,
    /// Whether the group to interrupt is found once the worker answers (a sandbox's init).
    find_user_group: bool,
    process: Box<dyn WorkerProcess>,
    /// The server's ends of the worker's stdin, stdout and stderr.
    writer: pipe::Sender,
    reader: pipe::Receiver,
    stderr: Box<dyn AsyncRead + Send + Unpin>,
}

/// The pipes of a worker: the server's ends, and the worker's.
struct Pipes {
    host_writes: std::io::PipeWriter,
    host_reads: std::io::PipeReader,
    worker_reads: OwnedFd,
    worker_writes: OwnedFd,
}

impl Pipes {
    fn new() -> Result<Pipes, RuntimeError> {
        let (worker_reads, host_writes) = std::io::pipe()?;
        let (host_reads, worker_writes) = std::io::pipe()?;
        Ok(Pipes {
            host_writes,
            host_reads,
            worker_reads: reopenable(worker_reads)?,
            worker_writes: reopenable(worker_writes)?,
        })
    }
}

fn spawn_process(
    spec: &LaunchSpec,
    sandbox: &Sandbox,
    identity: Identity,
    network: Option<NetworkNamespace>,
    workdir: &Path,
) -> Result<Started, RuntimeError> {
    let pipes = Pipes::new()?;
    let mut command = sandbox.command(&spec.sandbox_launch(), workdir, &identity, network.as_ref());
    command
        .stdin(pipes.worker_reads)
        .stdout(pipes.worker_writes)
        .stderr(Stdio::piped())
        // Its own process group, so that a kill reaches everything the server started.
        .process_group(0)
        .kill_on_drop(true);
    let spawned = command.spawn();
    // The command holds the worker's ends of the pipes; they must close here so that the
    // worker's death reads as the end of its pipe.
    drop(command);
    let mut child = spawned.map_err(|err| {
        RuntimeError::RuntimeUnavailable(format!(
            "cannot start the {} worker ({:?}): {err}",
            spec.runtime, spec.program
        ))
    })?;
    let started = child.id().expect("a just-spawned child has a pid") as i32;
    let processes = Processes {
        started,
        user_group: started,
    };
    let stderr = child.stderr.take().expect("stderr is piped");
    Ok(Started {
        processes,
        find_user_group: sandbox.enabled(),
        process: Box::new(ChildProcess {
            child,
            processes,
            _identity: with_network(identity, network),
        }),
        writer: pipe::Sender::from_owned_fd(pipes.host_writes.into())?,
        reader: pipe::Receiver::from_owned_fd(pipes.host_reads.into())?,
        stderr: Box::new(stderr),
    })
}

/// Has `template` fork the worker, in its own sandbox as `identity`.
async fn fork_process(
    spec: &LaunchSpec,
    template: &Template,
    environment: Option<&ForkedEnvironment>,
    sandbox: &Sandbox,
    identity: Identity,
    network: Option<NetworkNamespace>,
    workdir: &Path,
) -> Result<Started, RuntimeError> {
    let relative = workdir.strip_prefix(template.work_root()).map_err(|_| {
        RuntimeError::RuntimeUnavailable(format!(
            "the {} worker template does not see {}. This is a bug.",
            spec.runtime,
            workdir.display()
        ))
    })?;
    let request = ForkRequest {
        environment: environment.cloned(),
        // A worker whose network is on joins its prepared namespace; without one it gets
        // loopback only, never the template's (the host's) network.
        network: network.is_some(),
        ..sandbox.fork_request(spec.limits, &identity, relative)
    };
    // A template that ends while it forks is replaced by the next request; one retry, with
    // pipes of its own (a worker it may have forked has the first ones, and ends with them).
    let mut retried = false;
    let (host_writes, host_reads, host_stderr, lifeline, forked) = loop {
        let Pipes {
            host_writes,
            host_reads,
            worker_reads,
            worker_writes,
        } = Pipes::new()?;
        let (host_stderr, worker_stderr) = std::io::pipe()?;
        let (lifeline_read, lifeline) = std::io::pipe()?;
        // The worker's ends go to the template and close here once sent, so that the worker's
        // death reads as the end of its pipes.
        let mut descriptors = vec![
            worker_reads,
            worker_writes,
            worker_stderr.into(),
            lifeline_read.into(),
        ];
        if let Some(network) = &network {
            descriptors.push(network.descriptor()?);
        }
        match template.fork(request.clone(), descriptors).await {
            Ok(forked) => break (host_writes, host_reads, host_stderr, lifeline, forked),
            Err(ForkFailure::TemplateEnded(reason)) if !retried => {
                tracing::debug!(%reason, "forking again from a new template");
                retried = true;
            }
            Err(failure) => return Err(failure.into()),
        }
    };
    let processes = Processes {
        started: forked.keeper,
        user_group: forked.keeper,
    };
    Ok(Started {
        processes,
        find_user_group: false,
        process: Box::new(ForkedProcess {
            processes,
            ended: forked.ended,
            _lifeline: lifeline,
            _identity: with_network(identity, network),
        }),
        writer: pipe::Sender::from_owned_fd(host_writes.into())?,
        reader: pipe::Receiver::from_owned_fd(host_reads.into())?,
        stderr: Box::new(pipe::Receiver::from_owned_fd(host_stderr.into())?),
    })
}

/// Waits for the worker's `hello` and readies its actor.
async fn handshake(
    spec: &LaunchSpec,
    started: Started,
    workdir: WorkDir,
) -> Result<PendingWorker, RuntimeError> {
    let Started {
        mut processes,
        find_user_group,
        mut process,
        writer,
        reader,
        stderr,
    } = started;
    let stderr_tail = StderrTail::default();
    let pipe_console = match spec.console {
        ConsoleKind::Frames => None,
        ConsoleKind::Stderr => Some(Arc::new(PipeConsole::new(spec.max_console_bytes))),
    };
    tokio::spawn(collect_stderr(
        stderr,
        stderr_tail.clone(),
        pipe_console.clone(),
        processes.started,
    ));
    let (frame_sender, mut frames) = mpsc::channel(64);
    tokio::spawn(read_frames_task(reader, spec.max_frame_bytes, frame_sender));

    let handshake = tokio::time::timeout(spec.startup_timeout, frames.recv()).await;
    let failure = match handshake {
        Ok(Some(Ok((
            WorkerMessage::Hello {
                protocol,
                language,
                runtime_version,
            },
            _,
        )))) => {
            if protocol == PROTOCOL_VERSION {
                tracing::debug!(pid = processes.started, %language, %runtime_version, "worker is ready");
                None
            } else {
                Some(format!(
                    "the {} worker speaks protocol {protocol}, this server speaks {PROTOCOL_VERSION}",
                    spec.runtime
                ))
            }
        }
        Ok(Some(Ok(_))) => Some(format!(
            "the {} worker did not start with a handshake",
            spec.runtime
        )),
        Ok(Some(Err(_)) | None) => {
            let status = process.wait(Duration::from_secs(1)).await;
            Some(format!(
                "the {} worker exited during start-up ({status}){}",
                spec.runtime,
                stderr_tail.text()
            ))
        }
        Err(_) => Some(format!(
            "the {} worker did not become ready within {} s",
            spec.runtime,
            spec.startup_timeout.as_secs()
        )),
    };
    if let Some(reason) = failure {
        process.kill();
        return Err(RuntimeError::RuntimeUnavailable(reason));
    }
    if find_user_group {
        // The worker answered, so the sandbox's init exists: it is bubblewrap's only child.
        processes.user_group = first_child(processes.started).unwrap_or(processes.started);
        process.set_user_group(processes.user_group);
    }
    Ok(PendingWorker {
        processes: Some(processes),
        runtime: spec.runtime,
        workdir,
        actor: Actor {
            runtime: spec.runtime,
            process,
            writer: Box::new(writer),
            frames,
            stderr_tail,
            pipe_console,
            max_console_bytes: spec.max_console_bytes,
            requests: 0,
        },
    })
}

/// The first child of a process, from `/proc`.
fn first_child(pid: i32) -> Option<i32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

/// The console of an R worker: its stdout and stderr lines go to the sink of the running
/// request; end markers are counted so that a request's console is known to be complete.
struct PipeConsole {
    current: Mutex<Option<ConsoleSink>>,
    markers: AtomicU64,
    marker_seen: Notify,
    max_console_bytes: usize,
}

impl PipeConsole {
    fn new(max_console_bytes: usize) -> PipeConsole {
        PipeConsole {
            current: Mutex::default(),
            markers: AtomicU64::default(),
            marker_seen: Notify::default(),
            max_console_bytes,
        }
    }

    fn line(&self, line: &str) {
        let (text, is_marker) = match line.strip_suffix(END_MARKER) {
            Some(text) => (text, true),
            None => (line, false),
        };
        let current = self
            .current
            .lock()
            .expect("console lock poisoned. This is a bug.");
        if let Some(sink) = current.as_ref() {
            let mut sink = sink.lock().expect("console lock poisoned. This is a bug.");
            sink.push(text, self.max_console_bytes);
            if !is_marker {
                sink.push("\n", self.max_console_bytes);
            }
        }
        drop(current);
        if is_marker {
            self.markers.fetch_add(1, Ordering::SeqCst);
            self.marker_seen.notify_waiters();
        }
    }

    /// Waits (briefly) until `count` end markers have been seen.
    async fn wait_for_markers(&self, count: u64) {
        let waiting = async {
            loop {
                let seen = self.marker_seen.notified();
                tokio::pin!(seen);
                seen.as_mut().enable();
                if self.markers.load(Ordering::SeqCst) >= count {
                    return;
                }
                seen.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(2), waiting)
            .await
            .is_err()
        {
            tracing::debug!("a worker's console end marker did not arrive in time");
        }
    }
}

/// A started worker whose actor is not running yet.
pub(crate) struct PendingWorker {
    /// The real processes, for signals from outside the actor (none for a fake).
    processes: Option<Processes>,
    runtime: RuntimeType,
    workdir: WorkDir,
    actor: Actor,
}

impl PendingWorker {
    /// A worker whose other end is a fake (tests).
    #[cfg(test)]
    pub(crate) fn fake(
        runtime: RuntimeType,
        workdir: WorkDir,
        process: Box<dyn WorkerProcess>,
        writer: Box<dyn AsyncWrite + Send + Unpin>,
        frames: mpsc::Receiver<Frame>,
    ) -> PendingWorker {
        PendingWorker {
            processes: None,
            runtime,
            workdir,
            actor: Actor {
                runtime,
                process,
                writer,
                frames,
                stderr_tail: StderrTail::default(),
                pipe_console: None,
                max_console_bytes: usize::MAX,
                requests: 0,
            },
        }
    }

    pub(crate) fn start(self, id: String) -> WorkerHandle {
        let (commands, receiver) = mpsc::channel(8);
        let (exit_sender, exit_reason) = watch::channel(None);
        let workdir_path = self.workdir.path().to_path_buf();
        tokio::spawn(self.actor.run(receiver, exit_sender, workdir_path));
        WorkerHandle {
            shared: Arc::new(Shared {
                id,
                processes: self.processes,
                runtime: self.runtime,
                workdir: self.workdir,
                commands,
                exit_reason,
            }),
        }
    }
}

impl std::fmt::Debug for WorkerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerHandle")
            .field("id", &self.shared.id)
            .field("pid", &self.shared.processes.map(|p| p.started))
            .finish()
    }
}

pub(crate) type Frame = Result<(WorkerMessage, Vec<u8>), FrameError>;

struct Actor {
    runtime: RuntimeType,
    process: Box<dyn WorkerProcess>,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    frames: mpsc::Receiver<Frame>,
    stderr_tail: StderrTail,
    /// Set for workers whose console is their stderr.
    pipe_console: Option<Arc<PipeConsole>>,
    /// The most console output kept of one request.
    max_console_bytes: usize,
    /// Requests answered so far (each is followed by one end marker).
    requests: u64,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        exit_sender: watch::Sender<Option<Exit>>,
        workdir: PathBuf,
    ) {
        let mut retired = false;
        let reason = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Call { request, blob, console, time_limit, reply }) => {
                        let result = self.call(request, blob, console, time_limit).await;
                        let died = match &result {
                            Err(RuntimeError::WorkerDied(reason)) => Some(reason.clone()),
                            _ => None,
                        };
                        let _ = reply.send(result);
                        if let Some(reason) = died {
                            break reason;
                        }
                    }
                    None => {
                        self.shutdown().await;
                        retired = true;
                        break format!("the {} worker was shut down", self.runtime);
                    }
                },
                frame = self.frames.recv() => match frame {
                    // A worker that is not executing has nothing to say; output here can only
                    // be stray console text, which belongs to no request.
                    Some(Ok((WorkerMessage::Console { .. }, _))) => {}
                    Some(Ok(_)) => {
                        self.kill_now().await;
                        break format!("the {} worker sent an unexpected frame and was stopped", self.runtime);
                    }
                    Some(Err(FrameError::TooLarge { limit })) => {
                        self.kill_now().await;
                        break too_large(self.runtime, limit);
                    }
                    Some(Err(_)) | None => break self.death_reason().await,
                },
            }
        };
        tracing::debug!(%reason, "worker ended");
        self.kill_now().await;
        let _ = exit_sender.send(Some(Exit { reason, retired }));
        crate::remove::remove_tree_off_thread(workdir, "a worker's working directory").await;
    }

    async fn call(
        &mut self,
        request: Request,
        blob: Vec<u8>,
        console: Option<ConsoleSink>,
        time_limit: Option<Duration>,
    ) -> Result<Reply, RuntimeError> {
        if let Some(pipe_console) = &self.pipe_console {
            *pipe_console
                .current
                .lock()
                .expect("console lock poisoned. This is a bug.") = console.clone();
        }
        let result = self.exchange(request, blob, console, time_limit).await;
        if let Some(pipe_console) = &self.pipe_console {
            if result.is_ok() {
                self.requests += 1;
                pipe_console.wait_for_markers(self.requests).await;
            }
            *pipe_console
                .current
                .lock()
                .expect("console lock poisoned. This is a bug.") = None;
        }
        result
    }

    async fn exchange(
        &mut self,
        request: Request,
        blob: Vec<u8>,
        console: Option<ConsoleSink>,
        time_limit: Option<Duration>,
    ) -> Result<Reply, RuntimeError> {
        let expected = request.answered_by();
        if protocol::write_frame(&mut self.writer, &request, &blob)
            .await
            .is_err()
        {
            return Err(RuntimeError::WorkerDied(self.death_reason().await));
        }
        let mut deadline = time_limit.map(|limit| Instant::now() + limit);
        let mut interrupted = false;
        let limit_seconds = time_limit.unwrap_or_default().as_secs();
        loop {
            let frame = match deadline {
                Some(at) => match tokio::time::timeout_at(at, self.frames.recv()).await {
                    Ok(frame) => frame,
                    Err(_) if !interrupted => {
                        // Over time: interrupt, and give the code a grace period to stop.
                        self.process.interrupt();
                        interrupted = true;
                        deadline = Some(Instant::now() + GRACE_PERIOD);
                        continue;
                    }
                    Err(_) => {
                        self.kill_now().await;
                        return Err(RuntimeError::WorkerDied(format!(
                            "the execution exceeded its time limit of {limit_seconds} s and did \
                             not stop when interrupted, so the {} worker was killed",
                            self.runtime
                        )));
                    }
                },
                None => self.frames.recv().await,
            };
            match frame {
                Some(Ok((WorkerMessage::Console { text, dropped }, _))) => {
                    if let Some(console) = &console {
                        let mut console = console
                            .lock()
                            .expect("console lock poisoned. This is a bug.");
                        console.push(&text, self.max_console_bytes);
                        console.count_dropped(dropped);
                    }
                }
                Some(Ok((mut message, blob))) if message.answers(expected) => {
                    if interrupted {
                        let over_time = format!(
                            "the execution exceeded its time limit of {limit_seconds} s and was \
                             interrupted"
                        );
                        if let WorkerMessage::Executed { success, error, .. }
                        | WorkerMessage::Consumed { success, error, .. } = &mut message
                        {
                            *success = false;
                            *error = over_time;
                        }
                    }
                    return Ok(Reply { message, blob });
                }
                Some(Ok((message, _))) => {
                    self.kill_now().await;
                    return Err(RuntimeError::Protocol(format!(
                        "the {} worker answered {expected:?} with {}; it was stopped",
                        self.runtime,
                        describe_message(&message)
                    )));
                }
                Some(Err(FrameError::TooLarge { limit })) => {
                    self.kill_now().await;
                    return Err(RuntimeError::WorkerDied(too_large(self.runtime, limit)));
                }
                Some(Err(_)) | None => {
                    return Err(RuntimeError::WorkerDied(self.death_reason().await));
                }
            }
        }
    }

    async fn shutdown(&mut self) {
        let asked = protocol::write_frame(&mut self.writer, &Request::Shutdown, &[])
            .await
            .is_ok();
        if asked {
            self.process.wait(SHUTDOWN_GRACE).await;
        }
        self.kill_now().await;
    }

    async fn kill_now(&mut self) {
        self.process.kill();
        self.process.wait(GRACE_PERIOD).await;
    }

    async fn death_reason(&mut self) -> String {
        let status = self.process.wait(Duration::from_secs(1)).await;
        format!(
            "the {} worker died ({status}){}",
            self.runtime,
            self.stderr_tail.text()
        )
    }
}

/// A message's kind, for an error that says what was unexpected.
fn describe_message(message: &WorkerMessage) -> String {
    serde_json::to_value(message)
        .ok()
        .and_then(|value| value["type"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "an unknown message".to_owned())
}

fn too_large(runtime: RuntimeType, limit: usize) -> String {
    format!(
        "the {runtime} worker sent a message larger than {} MiB (runtime.max_frame_mb) and was \
         stopped",
        limit / (1024 * 1024)
    )
}

async fn collect_stderr(
    stderr: impl AsyncRead + Unpin,
    tail: StderrTail,
    console: Option<Arc<PipeConsole>>,
    pid: i32,
) {
    let keep_suffix = console.is_some().then_some(END_MARKER);
    let mut lines = BoundedLines::new(stderr, MAX_STDERR_LINE_BYTES, keep_suffix);
    while let Some(line) = lines.next_line().await {
        if let Some(console) = &console {
            console.line(&line);
            if line.ends_with(END_MARKER) {
                continue;
            }
        } else {
            tracing::debug!(pid, line = ?line, "worker stderr");
        }
        tail.push(line);
    }
}

async fn read_frames_task<R: AsyncRead + Unpin>(
    channel: R,
    max_frame_bytes: usize,
    frames: mpsc::Sender<Frame>,
) {
    let mut reader =
        FramedRead::with_capacity(channel, protocol::frame_codec(max_frame_bytes), 64 * 1024);
    loop {
        let frame = match reader.next().await {
            Some(Ok(body)) => protocol::decode_frame(body),
            Some(Err(err)) => Err(protocol::read_error(err, max_frame_bytes)),
            None => Err(FrameError::Closed),
        };
        let end = frame.is_err();
        if frames.send(frame).await.is_err() || end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_output_keeps_a_prefix_cut_at_a_character_and_counts_the_rest() {
        let mut console = ConsoleBuffer::default();
        console.push("abc", 5);
        console.push("dé", 5);
        let marker = |bytes| {
            format!(
                "\n[o16n: {bytes} more bytes of console output were dropped (runtime.max_console_kb)]\n"
            )
        };
        assert_eq!(console.output(), format!("abcd{}", marker(2)));
        console.push("short", 5);
        // What would have fitted after a drop is dropped too: the output stays a prefix.
        assert_eq!(console.output(), format!("abcd{}", marker(7)));
        console.clear();
        console.push("fresh", 5);
        assert_eq!(console.output(), "fresh");
    }
}
