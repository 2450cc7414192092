//! How a worker is started, shared by the workers spawned on their own (`worker.rs`) and the
//! templates that fork them (`template.rs`): what to run ([`LaunchSpec`]), where its console
//! comes from, and how a process that ended is described (its exit and the last lines of its
//! stderr).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::Signal;
use o16n_types::RuntimeType;
use tokio::io::AsyncRead;
use tokio::process::Child;

use crate::bounded::BoundedLines;
use crate::sandbox::{Arg, Launch, WorkerLimits};

/// How many of the worker's last stderr lines are kept for error messages.
const STDERR_TAIL_LINES: usize = 20;
/// The longest line of a worker's stderr the server keeps; the rest of a longer one is skipped.
pub(crate) const MAX_STDERR_LINE_BYTES: usize = 64 * 1024;

/// How to start a worker.
#[derive(Debug, Clone)]
pub(crate) struct LaunchSpec {
    /// The runtime.
    pub(crate) runtime: RuntimeType,
    /// The runtime's directory: its worker script, and its managed environment if any.
    pub(crate) runtime_dir: PathBuf,
    /// The program: the interpreter, or a shell that prepares it.
    pub(crate) program: Arg,
    /// Its arguments (the worker script).
    pub(crate) args: Vec<Arg>,
    /// The runtime's environment variables (nothing else of the server's reaches the worker).
    pub(crate) env: Vec<(String, String)>,
    /// Directories the interpreter needs beyond the operating system and the runtime's
    /// directory (its installation), visible read-only in the sandbox.
    pub(crate) read_only: Vec<PathBuf>,
    /// The directories packages are installed into: when one changes, a worker template made
    /// before has stale imports and is replaced.
    pub(crate) package_dirs: Vec<PathBuf>,
    /// Memory and network.
    pub(crate) limits: WorkerLimits,
    /// How long start-up and warm-up may take.
    pub(crate) startup_timeout: Duration,
    /// Where the console comes from.
    pub(crate) console: ConsoleKind,
    /// The longest frame accepted from the worker.
    pub(crate) max_frame_bytes: usize,
    /// The most console output kept of one request.
    pub(crate) max_console_bytes: usize,
}

impl LaunchSpec {
    /// What the sandbox starts for a worker of this spec (spawned, or its template).
    pub(crate) fn sandbox_launch(&self) -> Launch<'_> {
        Launch {
            runtime_dir: &self.runtime_dir,
            program: &self.program,
            args: &self.args,
            env: &self.env,
            read_only: &self.read_only,
            limits: self.limits,
        }
    }
}

/// Where a worker's console output comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConsoleKind {
    /// `console` frames on the protocol; stderr is for the worker's own diagnostics (Python).
    Frames,
    /// The worker's stderr, each request's part closed by an [`END_MARKER`] line (R).
    Stderr,
}

/// Waits (up to `patience`, if given) for the child to exit and describes how it ended.
pub(crate) async fn describe_exit(child: &mut Child, patience: Option<Duration>) -> String {
    use std::os::unix::process::ExitStatusExt;
    let status = match patience {
        Some(patience) => tokio::time::timeout(patience, child.wait()).await,
        None => Ok(child.wait().await),
    };
    match status {
        Ok(Ok(status)) => match (status.code(), status.signal()) {
            (Some(code), _) => format!("exit code {code}"),
            (None, Some(signal)) => describe_signal(signal),
            (None, None) => "ended".to_owned(),
        },
        Ok(Err(err)) => format!("status unknown: {err}"),
        Err(_) => "still running but not answering".to_owned(),
    }
}

/// How a process killed by `signal` ended, in words.
pub(crate) fn describe_signal(signal: i32) -> String {
    if signal == Signal::SIGKILL as i32 {
        "killed by SIGKILL: out of memory, or killed from outside".to_owned()
    } else {
        format!("killed by signal {signal}")
    }
}

/// The last lines a process wrote to its stderr, for error messages. Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    pub(crate) fn push(&self, line: String) {
        let mut tail = self
            .0
            .lock()
            .expect("stderr tail lock poisoned. This is a bug.");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }

    /// `; its last output: ...`, or nothing when it wrote nothing.
    pub(crate) fn text(&self) -> String {
        let tail = self
            .0
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

    /// Keeps the last lines of `stderr` (and logs them) until it closes.
    pub(crate) async fn collect(self, stderr: impl AsyncRead + Unpin, runtime: RuntimeType) {
        let mut lines = BoundedLines::new(stderr, MAX_STDERR_LINE_BYTES, None);
        while let Some(line) = lines.next_line().await {
            tracing::debug!(%runtime, line = ?line, "worker template stderr");
            self.push(line);
        }
    }
}
