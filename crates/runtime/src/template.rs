//! Worker templates: a warmed interpreter per launch spec that forks workers on request, so that
//! a new worker costs a `fork` instead of an interpreter start and its imports, and the
//! imported libraries' memory is shared copy-on-write by every worker (the way Android's
//! zygote and preforking servers work).
//!
//! A [`Template`] is a handle on an actor that owns the template process. The template is
//! started, sandboxed (see [`Sandbox::template_command`]), on the first request and again on
//! the first request after it died; until it says `ready` (its imports done) requests wait, up
//! to the launch's start-up time. The server talks to it over a Unix datagram socket (one
//! message per datagram, never lost between the two ends of a pair), its stdin: a
//! [`ForkRequest`] as JSON with the worker's pipes and lifeline attached (`SCM_RIGHTS`),
//! answered by a [`TemplateMessage`]. The template forks a *keeper*, the leader of the worker's
//! process group, which forks the worker into namespaces of its own; the worker builds its
//! sandbox before it runs anything (`workers/python/o16n_template.py`, and for R
//! `workers/r/o16n_fork.c`, the same steps).
//!
//! The actor relays how each keeper ended (the worker's exit code or signal) to the worker that
//! asked for it. Workers outlive their template: a template that dies takes no running worker
//! with it (its keepers go on; only their exit status is then unknown).

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};
use o16n_types::RuntimeType;
use tokio::io::Interest;
use tokio::net::UnixDatagram;
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::RuntimeError;
use crate::launch::{LaunchSpec, StderrTail, describe_exit, describe_signal};
use crate::sandbox::{ENVIRONMENT_RUNTIMES, ForkRequest, Sandbox};

/// The longest message a template sends.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What a template tells the server.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum TemplateMessage {
    /// The imports are done; requests are served from now on.
    Ready { pid: i32 },
    /// Request `id` was forked: `pid` is its keeper, the leader of the worker's group.
    Forked { id: Option<u64>, pid: i32 },
    /// Request `id` could not be forked.
    ForkFailed { id: Option<u64>, error: String },
    /// A keeper ended, with its worker's exit code or signal.
    Exited {
        pid: i32,
        #[serde(default)]
        code: Option<i32>,
        #[serde(default)]
        signal: Option<i32>,
    },
}

/// A forked worker, as the template reported it.
pub(crate) struct Forked {
    /// Its keeper: the leader of the worker's process group, signalled for interrupts and kills.
    pub(crate) keeper: i32,
    /// How it ended, once it has; closed without a value when the template died first.
    pub(crate) ended: watch::Receiver<Option<String>>,
}

/// The descriptors a worker gets: its stdin, stdout and stderr, the read end of its lifeline,
/// whose other end only the server holds, and when its network is on the network namespace it
/// joins.
pub(crate) type WorkerDescriptors = Vec<OwnedFd>;

struct ForkCall {
    request: ForkRequest,
    descriptors: WorkerDescriptors,
    reply: oneshot::Sender<Result<Forked, ForkFailure>>,
}

/// Why a worker was not forked.
#[derive(Debug)]
pub(crate) enum ForkFailure {
    /// The template ended before it answered: whether it forked is unknown, and a new
    /// template serves the next request.
    TemplateEnded(String),
    /// The worker cannot be forked.
    Refused(RuntimeError),
}

impl From<ForkFailure> for RuntimeError {
    fn from(failure: ForkFailure) -> RuntimeError {
        match failure {
            ForkFailure::TemplateEnded(reason) => RuntimeError::RuntimeUnavailable(reason),
            ForkFailure::Refused(err) => err,
        }
    }
}

/// What templates need from the compute node (`Launcher::new` makes each runtime's launcher).
#[derive(Clone)]
pub(crate) struct Templates {
    pub(crate) sandbox: Sandbox,
    pub(crate) work_root: PathBuf,
    /// The named environments' root: their finished builds are seen by templates, whose
    /// workers may run in them.
    pub(crate) environments: PathBuf,
    pub(crate) tasks: TaskTracker,
    pub(crate) stop: CancellationToken,
}

impl Templates {
    /// Why the workers of `spec` cannot be forked here, if they cannot.
    pub(crate) fn why_not_forked(&self, spec: &LaunchSpec) -> Option<String> {
        // The runtime's own directory is seen elsewhere, at the same place in every sandbox.
        self.sandbox.why_not_forked(&spec.read_only)
    }
}

/// A handle on a worker template; cheap to clone. The template stops when the last handle is
/// dropped or the compute node stops.
#[derive(Clone)]
pub(crate) struct Template {
    inner: Arc<TemplateInner>,
}

struct TemplateInner {
    runtime: RuntimeType,
    work_root: PathBuf,
    environments: PathBuf,
    calls: mpsc::Sender<ForkCall>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Template")
            .field("runtime", &self.inner.runtime)
            .finish()
    }
}

impl Template {
    /// A template of `spec` whose workers' directories are under `work_root`; its process
    /// starts with the first request.
    pub(crate) fn new(
        spec: LaunchSpec,
        sandbox: Sandbox,
        work_root: PathBuf,
        environments: PathBuf,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Template {
        let (calls, receiver) = mpsc::channel(16);
        let runtime = spec.runtime;
        tasks.spawn(
            Actor {
                spec,
                sandbox,
                work_root: work_root.clone(),
                environments: environments.clone(),
                running: None,
                next_id: 0,
            }
            .run(receiver, stop),
        );
        Template {
            inner: Arc::new(TemplateInner {
                runtime,
                work_root,
                environments,
                calls,
            }),
        }
    }

    /// Where the workers' directories must be: the template sees only this directory.
    pub(crate) fn work_root(&self) -> &Path {
        &self.inner.work_root
    }

    /// The named environments' root, whose finished builds the template sees.
    pub(crate) fn environments(&self) -> &Path {
        &self.inner.environments
    }

    /// Forks a worker (starting the template first if it is not running).
    pub(crate) async fn fork(
        &self,
        request: ForkRequest,
        descriptors: WorkerDescriptors,
    ) -> Result<Forked, ForkFailure> {
        let (reply, answer) = oneshot::channel();
        let stopped = || {
            RuntimeError::RuntimeUnavailable(format!(
                "the {} worker template has stopped",
                self.inner.runtime
            ))
        };
        self.inner
            .calls
            .send(ForkCall {
                request,
                descriptors,
                reply,
            })
            .await
            .map_err(|_| ForkFailure::Refused(stopped()))?;
        answer.await.map_err(|_| ForkFailure::Refused(stopped()))?
    }
}

struct Actor {
    spec: LaunchSpec,
    sandbox: Sandbox,
    work_root: PathBuf,
    environments: PathBuf,
    running: Option<Running>,
    next_id: u64,
}

impl Actor {
    async fn run(mut self, mut calls: mpsc::Receiver<ForkCall>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                call = calls.recv() => match call {
                    Some(call) => self.fork(call).await,
                    None => break,
                },
                event = next_event(&mut self.running) => self.handle(event),
            }
        }
        // Dropping the process kills the template; its workers live on until their own
        // handles go.
        self.running = None;
    }

    async fn fork(&mut self, call: ForkCall) {
        if self
            .running
            .as_ref()
            .is_some_and(|running| running.packages != packages(&self.spec))
        {
            tracing::info!(runtime = %self.spec.runtime, "packages changed: the worker template is replaced");
            self.retire(format!(
                "the {} worker template was replaced (its packages changed)",
                self.spec.runtime
            ));
        }
        if self.running.is_none() {
            match Running::start(
                &self.spec,
                &self.sandbox,
                &self.work_root,
                &self.environments,
            )
            .await
            {
                Ok(running) => self.running = Some(running),
                Err(err) => {
                    let _ = call.reply.send(Err(ForkFailure::Refused(err)));
                    return;
                }
            }
        }
        let running = self
            .running
            .as_mut()
            .expect("the template was just started");
        let id = self.next_id;
        self.next_id += 1;
        let mut message = serde_json::to_value(&call.request).expect("a request serializes");
        message["id"] = id.into();
        let bytes = serde_json::to_vec(&message).expect("JSON serializes");
        let fds: Vec<RawFd> = call.descriptors.iter().map(AsRawFd::as_raw_fd).collect();
        match running.send(&bytes, &fds).await {
            Ok(()) => {
                running.pending.insert(id, call.reply);
            }
            Err(err) => {
                // Nothing was sent: a new template may serve the request.
                let _ = call.reply.send(Err(ForkFailure::TemplateEnded(format!(
                    "the {} worker template cannot be reached: {err}",
                    self.spec.runtime
                ))));
            }
        }
        // The worker's ends of its pipes close here: the template holds its own copies now.
        drop(call.descriptors);
    }

    fn handle(&mut self, event: Event) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        match event {
            Event::Message(TemplateMessage::Forked { id, pid }) => {
                let (ended_sender, ended) = watch::channel(None);
                running.keepers.insert(pid, ended_sender);
                if let Some(reply) = id.and_then(|id| running.pending.remove(&id)) {
                    let _ = reply.send(Ok(Forked { keeper: pid, ended }));
                }
            }
            Event::Message(TemplateMessage::ForkFailed { id, error }) => {
                tracing::warn!(runtime = %self.spec.runtime, %error, "a worker could not be forked");
                if let Some(reply) = id.and_then(|id| running.pending.remove(&id)) {
                    let _ = reply.send(Err(ForkFailure::Refused(
                        RuntimeError::RuntimeUnavailable(format!(
                            "the {} worker template could not fork a worker: {error}",
                            self.spec.runtime
                        )),
                    )));
                }
            }
            Event::Message(TemplateMessage::Exited { pid, code, signal }) => {
                if let Some(ended) = running.keepers.remove(&pid) {
                    let description = match (code, signal) {
                        (_, Some(signal)) => describe_signal(signal),
                        (Some(code), None) => format!("exit code {code}"),
                        (None, None) => "ended".to_owned(),
                    };
                    let _ = ended.send(Some(description));
                }
            }
            Event::Message(TemplateMessage::Ready { .. }) => {}
            Event::Ended(reason) => {
                tracing::warn!(runtime = %self.spec.runtime, %reason, "a worker template ended; the next worker starts a new one");
                self.retire(format!(
                    "the {} worker template ended ({reason})",
                    self.spec.runtime
                ));
            }
        }
    }

    /// Stops the running template. Requests it has not answered are told so (a new template
    /// may serve them); its workers live on, their exit status unknown from now on.
    fn retire(&mut self, reason: String) {
        if let Some(mut running) = self.running.take() {
            for (_, reply) in running.pending.drain() {
                let _ = reply.send(Err(ForkFailure::TemplateEnded(reason.clone())));
            }
        }
    }
}

enum Event {
    Message(TemplateMessage),
    Ended(String),
}

/// The next event of the running template; never completes while none runs.
async fn next_event(running: &mut Option<Running>) -> Event {
    match running {
        Some(running) => running.next_event().await,
        None => std::future::pending().await,
    }
}

/// A started template process.
struct Running {
    child: Child,
    control: UnixDatagram,
    stderr_tail: StderrTail,
    /// Requests sent and not answered yet, by id.
    pending: HashMap<u64, oneshot::Sender<Result<Forked, ForkFailure>>>,
    /// Keepers alive, by pid: where their end is reported.
    keepers: HashMap<i32, watch::Sender<Option<String>>>,
    /// The state of the package directories when the template started.
    packages: Packages,
    /// The template's pid, once it said it is ready.
    pid: Option<i32>,
}

/// When each package directory last changed: installing, upgrading or removing a package
/// changes its directory.
type Packages = Vec<Option<std::time::SystemTime>>;

fn packages(spec: &LaunchSpec) -> Packages {
    spec.package_dirs
        .iter()
        .map(|dir| std::fs::metadata(dir).and_then(|meta| meta.modified()).ok())
        .collect()
}

impl Running {
    async fn start(
        spec: &LaunchSpec,
        sandbox: &Sandbox,
        work_root: &Path,
        environments: &Path,
    ) -> Result<Running, RuntimeError> {
        let unavailable = |why: String| {
            RuntimeError::RuntimeUnavailable(format!(
                "the {} worker template cannot start: {why}",
                spec.runtime
            ))
        };
        // The builds of later environments appear in these directories, which must exist now.
        for runtime in ENVIRONMENT_RUNTIMES {
            tokio::fs::create_dir_all(environments.join(runtime)).await?;
        }
        let mut command = sandbox
            .template_command(&spec.sandbox_launch(), work_root, environments)
            .ok_or_else(|| unavailable("this sandbox cannot fork workers".to_owned()))?;
        let (server_end, template_end) = std::os::unix::net::UnixDatagram::pair()
            .map_err(|err| unavailable(format!("no socket: {err}")))?;
        // Only the server's end waits in the event loop; the template blocks on its own.
        server_end.set_nonblocking(true)?;
        let control = UnixDatagram::from_std(server_end)?;
        command
            .stdin(Stdio::from(OwnedFd::from(template_end)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let spawned = command.spawn();
        drop(command);
        let mut child = spawned.map_err(|err| unavailable(err.to_string()))?;
        let packages = packages(spec);
        let stderr_tail = StderrTail::default();
        let stderr = child.stderr.take().expect("stderr is piped");
        tokio::spawn(stderr_tail.clone().collect(stderr, spec.runtime));
        let mut running = Running {
            child,
            control,
            stderr_tail,
            pending: HashMap::new(),
            keepers: HashMap::new(),
            packages,
            pid: None,
        };
        match tokio::time::timeout(spec.startup_timeout, running.next_event()).await {
            Ok(Event::Message(TemplateMessage::Ready { pid })) => {
                tracing::info!(runtime = %spec.runtime, pid, "worker template is ready");
                running.pid = Some(pid);
                Ok(running)
            }
            Ok(Event::Message(_)) => Err(unavailable("it did not start with `ready`".to_owned())),
            Ok(Event::Ended(reason)) => Err(unavailable(reason)),
            Err(_) => Err(unavailable(format!(
                "it was not ready within {} s",
                spec.startup_timeout.as_secs()
            ))),
        }
    }

    async fn next_event(&mut self) -> Event {
        let ended = tokio::select! {
            message = receive(&self.control) => match message {
                Ok(message) => return Event::Message(message),
                Err(err) => format!("its socket failed: {err}"),
            },
            status = describe_exit(&mut self.child, None) => status,
        };
        Event::Ended(format!("{ended}{}", self.stderr_tail.text()))
    }

    async fn send(&self, message: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
        self.control
            .async_io(Interest::WRITABLE, || {
                sendmsg::<UnixAddr>(
                    self.control.as_raw_fd(),
                    &[IoSlice::new(message)],
                    &[ControlMessage::ScmRights(fds)],
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map(|_| ())
                .map_err(std::io::Error::from)
            })
            .await
    }
}

impl Drop for Running {
    /// The template leads a session of its own (bubblewrap's `--new-session`), so killing
    /// bubblewrap alone might leave it: it is killed by the pid it reported, while it is
    /// known to be alive.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None))
            && let Some(pid) = self.pid
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// The next message on the control socket. Cancel-safe: a message is received whole or left
/// in the socket.
async fn receive(control: &UnixDatagram) -> std::io::Result<TemplateMessage> {
    let mut buffer = vec![0u8; MAX_MESSAGE_BYTES];
    let length = control.recv(&mut buffer).await?;
    serde_json::from_slice(&buffer[..length]).map_err(|err| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a message is not understood: {err}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    /// `workers/protocol/template.json`, shared with the templates' own tests.
    fn golden() -> Value {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workers/protocol/template.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    /// A JSON value without its null fields: to the template protocol, null and absent are one.
    fn without_nulls(value: Value) -> Value {
        match value {
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .filter(|(_, value)| !value.is_null())
                    .map(|(name, value)| (name, without_nulls(value)))
                    .collect(),
            ),
            other => other,
        }
    }

    #[test]
    fn the_golden_messages_of_the_templates_are_understood_as_they_are_written() {
        let golden = golden();
        let cases = golden["messages"].as_array().unwrap();
        assert!(cases.len() >= 6);
        for case in cases {
            let written = &case["message"];
            let parsed: TemplateMessage = serde_json::from_value(written.clone())
                .unwrap_or_else(|err| panic!("{}: {err}", case["name"]));
            assert_eq!(
                without_nulls(serde_json::to_value(&parsed).unwrap()),
                without_nulls(written.clone()),
                "{}",
                case["name"]
            );
        }
    }

    #[test]
    fn the_golden_fork_requests_are_what_the_server_sends() {
        let golden = golden();
        for case in golden["fork_requests"].as_array().unwrap() {
            let sent = &case["request"];
            let request: ForkRequest = serde_json::from_value(sent.clone())
                .unwrap_or_else(|err| panic!("{}: {err}", case["name"]));
            // As `Template::fork` sends it: the request, and the id of the call.
            let mut message = serde_json::to_value(&request).unwrap();
            message["id"] = sent["id"].clone();
            assert_eq!(message, *sent, "{}", case["name"]);
        }
    }
}
