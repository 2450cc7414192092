//! One worker process and the actor that owns it.
//!
//! [`spawn`] starts the interpreter in its own process group and working directory, waits for
//! its handshake (readiness is the `hello` frame, never a sleep) and starts the actor task that
//! owns the child and its pipes. Everyone else holds a cheap [`WorkerHandle`] and sends it
//! requests. A reader task turns the worker's stdout into a channel of frames, so that waiting
//! for a frame can be raced against other events without losing half-read data.
//!
//! The worker is stopped when the last handle is dropped: a `shutdown` request, a grace period,
//! then SIGKILL to the whole process group; a guard kills the group even if the actor itself is
//! torn down. When the worker dies on its own the actor records why (exit status and the last
//! lines it wrote to stderr) and every pending and later request gets that reason.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use o16n_types::RuntimeType;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use tokio::process::Child;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::RuntimeError;
use crate::protocol::{self, FrameError, PROTOCOL_VERSION, Request, ResultMessage, WorkerMessage};

/// How many of the worker's last stderr lines are kept for error messages.
const STDERR_TAIL_LINES: usize = 20;
/// How long a worker gets to exit after a `shutdown` request, or to stop after an interrupt.
const GRACE_PERIOD: Duration = Duration::from_secs(3);

/// How to start a worker.
#[derive(Debug, Clone)]
pub(crate) struct LaunchSpec {
    /// The runtime.
    pub(crate) runtime: RuntimeType,
    /// The interpreter.
    pub(crate) program: PathBuf,
    /// Its arguments (the worker script).
    pub(crate) args: Vec<OsString>,
    /// Extra environment.
    pub(crate) env: Vec<(String, String)>,
    /// How long start-up and warm-up may take.
    pub(crate) startup_timeout: Duration,
    /// How the protocol and the console travel.
    pub(crate) channel: ChannelKind,
}

/// How a worker talks to the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChannelKind {
    /// The protocol on the worker's stdin/stdout, which it moves to private descriptors; the
    /// console comes as `console` frames (Python).
    Stdio,
    /// The protocol on a loopback TCP connection the worker opens to the host, proving itself
    /// with a one-time token; the console is the worker's stdout and stderr, each request's
    /// ending with an [`END_MARKER`] line on both (R, which cannot move descriptors).
    LoopbackTcp,
}

/// What a loopback-TCP worker prints on stdout and stderr after each request.
const END_MARKER: &str = "\u{1e}o16n-end";

/// The console output of the running execution, shared with readers of
/// `GET /sessions/{id}/console-output`.
pub(crate) type ConsoleSink = Arc<Mutex<String>>;

/// A request's answer.
pub(crate) struct Reply {
    pub(crate) message: ResultMessage,
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
    pid: i32,
    runtime: RuntimeType,
    workdir: PathBuf,
    commands: mpsc::Sender<Command>,
    exit_reason: watch::Receiver<Option<String>>,
}

impl WorkerHandle {
    /// The worker's working directory: the session's files live here.
    pub(crate) fn workdir(&self) -> &Path {
        &self.shared.workdir
    }

    /// Why the worker died, or `None` while it lives.
    pub(crate) fn exit_reason(&self) -> Option<String> {
        self.shared.exit_reason.borrow().clone()
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

    /// Interrupts the running execution (SIGINT to the process group). A worker that is not
    /// executing ignores it.
    pub(crate) fn interrupt(&self) {
        signal_group(self.shared.pid, Signal::SIGINT);
    }

    /// Kills the worker and everything it started, at once.
    pub(crate) fn kill(&self) {
        signal_group(self.shared.pid, Signal::SIGKILL);
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

/// Kills the worker's process group when dropped, whatever happened to the actor.
struct ProcessGroupGuard(i32);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        signal_group(self.0, Signal::SIGKILL);
    }
}

/// Starts a worker in a new working directory under `work_root` and waits for its handshake.
pub(crate) async fn spawn(
    spec: &LaunchSpec,
    work_root: &Path,
) -> Result<WorkerHandle, RuntimeError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let workdir = work_root.join(&id);
    tokio::fs::create_dir_all(&workdir).await?;
    let started = spawn_process(spec, &workdir).await;
    match started {
        Ok(handle) => Ok(handle.with_id(id)),
        Err(err) => {
            let _ = tokio::fs::remove_dir_all(&workdir).await;
            Err(err)
        }
    }
}

async fn spawn_process(spec: &LaunchSpec, workdir: &Path) -> Result<PendingWorker, RuntimeError> {
    let listener = match spec.channel {
        ChannelKind::Stdio => None,
        ChannelKind::LoopbackTcp => Some(tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?),
    };
    let token = uuid::Uuid::new_v4().simple().to_string();
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(workdir)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that cancel and kill reach whatever user code started.
        .process_group(0)
        .kill_on_drop(true);
    match &listener {
        Some(listener) => {
            command
                .stdin(Stdio::null())
                .env(
                    "O16N_PROTOCOL_PORT",
                    listener.local_addr()?.port().to_string(),
                )
                .env("O16N_PROTOCOL_TOKEN", &token);
        }
        None => {
            command.stdin(Stdio::piped());
        }
    }
    let mut child = command.spawn().map_err(|err| {
        RuntimeError::RuntimeUnavailable(format!(
            "cannot start the {} interpreter {}: {err}",
            spec.runtime,
            spec.program.display()
        ))
    })?;
    let pid = child.id().expect("a just-spawned child has a pid") as i32;
    let guard = ProcessGroupGuard(pid);
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let (frame_sender, mut frames) = mpsc::channel(64);

    let (writer, pipe_console): (Box<dyn AsyncWrite + Send + Unpin>, Option<Arc<PipeConsole>>) =
        match listener {
            None => {
                tokio::spawn(collect_stderr(stderr, stderr_tail.clone(), None, pid));
                tokio::spawn(read_frames_task(stdout, frame_sender));
                (Box::new(child.stdin.take().expect("stdin is piped")), None)
            }
            Some(listener) => {
                let console = Arc::new(PipeConsole::default());
                tokio::spawn(collect_stderr(
                    stderr,
                    stderr_tail.clone(),
                    Some(console.clone()),
                    pid,
                ));
                tokio::spawn(console_lines_task(stdout, console.clone(), 0));
                let accepted = tokio::select! {
                    accepted = tokio::time::timeout(spec.startup_timeout, listener.accept()) => accepted,
                    _ = child.wait() => Ok(Err(std::io::Error::other("the worker exited"))),
                };
                match accepted {
                    Ok(Ok((stream, _))) => {
                        let _ = stream.set_nodelay(true);
                        let (read_half, write_half) = stream.into_split();
                        tokio::spawn(read_frames_task(read_half, frame_sender));
                        (Box::new(write_half), Some(console))
                    }
                    Ok(Err(_)) | Err(_) => {
                        drop(guard);
                        let status = wait_briefly(&mut child).await;
                        return Err(RuntimeError::RuntimeUnavailable(format!(
                            "the {} worker did not connect back ({status}){}",
                            spec.runtime,
                            tail_text(&stderr_tail)
                        )));
                    }
                }
            }
        };

    let handshake = tokio::time::timeout(spec.startup_timeout, frames.recv()).await;
    let failure = match handshake {
        Ok(Some(Ok((
            WorkerMessage::Hello {
                protocol,
                language,
                runtime_version,
                token: offered,
            },
            _,
        )))) => {
            if spec.channel == ChannelKind::LoopbackTcp
                && offered.as_deref() != Some(token.as_str())
            {
                Some(format!(
                    "the {} worker's connection did not carry its token",
                    spec.runtime
                ))
            } else if protocol == PROTOCOL_VERSION {
                tracing::debug!(pid, %language, %runtime_version, "worker is ready");
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
            let status = wait_briefly(&mut child).await;
            Some(format!(
                "the {} worker exited during start-up ({status}){}",
                spec.runtime,
                tail_text(&stderr_tail)
            ))
        }
        Err(_) => Some(format!(
            "the {} worker did not become ready within {} s",
            spec.runtime,
            spec.startup_timeout.as_secs()
        )),
    };
    if let Some(reason) = failure {
        drop(guard);
        return Err(RuntimeError::RuntimeUnavailable(reason));
    }
    Ok(PendingWorker {
        pid,
        runtime: spec.runtime,
        workdir: workdir.to_path_buf(),
        actor: Actor {
            runtime: spec.runtime,
            child,
            writer,
            frames,
            stderr_tail,
            pipe_console,
            requests: 0,
            _guard: guard,
        },
    })
}

/// The console of a loopback-TCP worker: its stdout and stderr lines go to the sink of the
/// running request; end markers are counted per stream so that a request's console is known
/// to be complete.
#[derive(Default)]
struct PipeConsole {
    current: Mutex<Option<ConsoleSink>>,
    markers: [AtomicU64; 2],
    marker_seen: Notify,
}

impl PipeConsole {
    fn line(&self, stream: usize, line: &str) {
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
            sink.push_str(text);
            if !is_marker {
                sink.push('\n');
            }
        }
        drop(current);
        if is_marker {
            self.markers[stream].fetch_add(1, Ordering::SeqCst);
            self.marker_seen.notify_waiters();
        }
    }

    /// Waits (briefly) until both streams have shown `count` end markers.
    async fn wait_for_markers(&self, count: u64) {
        let complete = || {
            self.markers
                .iter()
                .all(|seen| seen.load(Ordering::SeqCst) >= count)
        };
        let waiting = async {
            loop {
                let seen = self.marker_seen.notified();
                tokio::pin!(seen);
                seen.as_mut().enable();
                if complete() {
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

async fn console_lines_task<R: AsyncRead + Unpin>(
    stream: R,
    console: Arc<PipeConsole>,
    index: usize,
) {
    let mut lines = BufReader::new(stream).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        console.line(index, &line);
    }
}

/// A started worker whose actor is not running yet.
struct PendingWorker {
    pid: i32,
    runtime: RuntimeType,
    workdir: PathBuf,
    actor: Actor,
}

impl PendingWorker {
    fn with_id(self, id: String) -> WorkerHandle {
        let (commands, receiver) = mpsc::channel(8);
        let (exit_sender, exit_reason) = watch::channel(None);
        tokio::spawn(self.actor.run(receiver, exit_sender, self.workdir.clone()));
        WorkerHandle {
            shared: Arc::new(Shared {
                id,
                pid: self.pid,
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
            .field("pid", &self.shared.pid)
            .finish()
    }
}

type Frame = Result<(WorkerMessage, Vec<u8>), FrameError>;

struct Actor {
    runtime: RuntimeType,
    child: Child,
    writer: Box<dyn AsyncWrite + Send + Unpin>,
    frames: mpsc::Receiver<Frame>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// Set for loopback-TCP workers, whose console is their stdout and stderr.
    pipe_console: Option<Arc<PipeConsole>>,
    /// Requests answered so far (each is followed by one end marker per stream).
    requests: u64,
    _guard: ProcessGroupGuard,
}

impl Actor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        exit_sender: watch::Sender<Option<String>>,
        workdir: PathBuf,
    ) {
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
                    Some(Err(_)) | None => break self.death_reason().await,
                },
            }
        };
        tracing::debug!(pid = self._guard.0, %reason, "worker ended");
        self.kill_now().await;
        let _ = exit_sender.send(Some(reason));
        let _ = tokio::fs::remove_dir_all(&workdir).await;
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
        if protocol::write_frame(&mut self.writer, &request, &blob)
            .await
            .is_err()
        {
            return Err(RuntimeError::WorkerDied(self.death_reason().await));
        }
        let mut deadline = time_limit.map(|limit| Instant::now() + limit);
        let mut interrupted = false;
        loop {
            let frame = match deadline {
                Some(at) => match tokio::time::timeout_at(at, self.frames.recv()).await {
                    Ok(frame) => frame,
                    Err(_) if !interrupted => {
                        // Over time: interrupt, and give the code a grace period to stop.
                        signal_group(self._guard.0, Signal::SIGINT);
                        interrupted = true;
                        deadline = Some(Instant::now() + GRACE_PERIOD);
                        continue;
                    }
                    Err(_) => {
                        self.kill_now().await;
                        return Err(RuntimeError::WorkerDied(format!(
                            "the execution exceeded its time limit of {} s and did not stop when \
                             interrupted, so the {} worker was killed",
                            time_limit.unwrap_or_default().as_secs(),
                            self.runtime
                        )));
                    }
                },
                None => self.frames.recv().await,
            };
            match frame {
                Some(Ok((WorkerMessage::Console { text }, _))) => {
                    if let Some(console) = &console {
                        console
                            .lock()
                            .expect("console lock poisoned. This is a bug.")
                            .push_str(&text);
                    }
                }
                Some(Ok((WorkerMessage::Result(mut message), blob))) => {
                    if interrupted {
                        message.success = Some(false);
                        message.error = Some(format!(
                            "the execution exceeded its time limit of {} s and was interrupted",
                            time_limit.unwrap_or_default().as_secs()
                        ));
                    }
                    return Ok(Reply { message, blob });
                }
                Some(Ok((WorkerMessage::Hello { .. }, _))) => {
                    self.kill_now().await;
                    return Err(RuntimeError::Protocol(
                        "a second handshake in mid-request".to_owned(),
                    ));
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
            let _ = tokio::time::timeout(GRACE_PERIOD, self.child.wait()).await;
        }
    }

    async fn kill_now(&mut self) {
        signal_group(self._guard.0, Signal::SIGKILL);
        let _ = self.child.wait().await;
    }

    async fn death_reason(&mut self) -> String {
        let status = wait_briefly(&mut self.child).await;
        format!(
            "the {} worker died ({status}){}",
            self.runtime,
            tail_text(&self.stderr_tail)
        )
    }
}

/// Waits up to a second for the child to exit and describes how it ended.
async fn wait_briefly(child: &mut Child) -> String {
    use std::os::unix::process::ExitStatusExt;
    match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(9)) => {
                "killed by SIGKILL: out of memory, or killed from outside".to_owned()
            }
            (None, Some(signal)) => format!("killed by signal {signal}"),
            (None, None) => "ended".to_owned(),
        },
        Ok(Err(err)) => format!("status unknown: {err}"),
        Err(_) => "still running but not answering".to_owned(),
    }
}

fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail
        .lock()
        .expect("stderr tail lock poisoned. This is a bug.");
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            "; its last output: {}",
            tail.iter().cloned().collect::<Vec<_>>().join("\n")
        )
    }
}

async fn collect_stderr(
    stderr: tokio::process::ChildStderr,
    tail: Arc<Mutex<VecDeque<String>>>,
    console: Option<Arc<PipeConsole>>,
    pid: i32,
) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(console) = &console {
            console.line(1, &line);
            if line.ends_with(END_MARKER) {
                continue;
            }
        } else {
            tracing::debug!(pid, "worker stderr: {line}");
        }
        let mut tail = tail
            .lock()
            .expect("stderr tail lock poisoned. This is a bug.");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

async fn read_frames_task<R: AsyncRead + Unpin>(channel: R, frames: mpsc::Sender<Frame>) {
    let mut reader = BufReader::with_capacity(64 * 1024, channel);
    loop {
        let frame = protocol::read_frame(&mut reader).await;
        let end = frame.is_err();
        if frames.send(frame).await.is_err() || end {
            return;
        }
    }
}
