//! The one error type of the compute side.

use o16n_compute::ComputeError;
use o16n_types::{Code, ErrorCode};

/// What can go wrong on the compute side.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime cannot serve: not installed, being set up, or failing to start workers.
    #[error("{0}")]
    RuntimeUnavailable(String),
    /// Workers cannot be sandboxed on this machine and the sandbox was not turned off.
    #[error("{0}")]
    SandboxUnavailable(String),
    /// The runtime is not offered by this compute node at all.
    #[error("{0}")]
    RuntimeNotSupported(String),
    /// Every worker the pool may have is busy.
    #[error("all {max} {runtime} workers are busy; try again later or raise the pool's max_size")]
    PoolExhausted {
        /// The runtime.
        runtime: &'static str,
        /// The pool's maximum size.
        max: usize,
    },
    /// Every worker of a service's dedicated pool stayed busy for as long as a request may wait.
    #[error(
        "all {max} workers of the dedicated pool of service `{service}` stayed busy for {waited_secs} s; try again later or raise the pool's MaxPoolSize"
    )]
    DedicatedPoolBusy {
        /// The service, `name/version`.
        service: String,
        /// The pool's maximum size.
        max: usize,
        /// How long the request waited.
        waited_secs: u64,
    },
    /// No session with this id belongs to the caller.
    #[error("session `{0}` not found")]
    SessionNotFound(String),
    /// The session's worker died; the session is gone.
    #[error("session `{id}` is gone: {reason}")]
    SessionGone {
        /// The session.
        id: String,
        /// Why its worker died.
        reason: String,
    },
    /// The worker died while serving the request.
    #[error("{0}")]
    WorkerDied(String),
    /// A named file or object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is not acceptable (bad bytes, bad names, wrong runtime).
    #[error("{0}")]
    InvalidInput(String),
    /// A service could not be loaded into a worker: its workspace or its initCode failed.
    #[error("{0}")]
    ServiceLoad(String),
    /// The worker broke the protocol; a bug on one side or the other.
    #[error("worker protocol error: {0}")]
    Protocol(String),
    /// The node does not hold this content (by digest).
    #[error("the compute node does not hold content {0}")]
    ContentMissing(String),
    /// File-system failure in a working directory.
    #[error("working directory I/O failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ErrorCode for RuntimeError {
    fn code(&self) -> Code {
        match self {
            RuntimeError::RuntimeUnavailable(_)
            | RuntimeError::PoolExhausted { .. }
            | RuntimeError::DedicatedPoolBusy { .. }
            | RuntimeError::SandboxUnavailable(_) => Code::Unavailable,
            RuntimeError::RuntimeNotSupported(_) | RuntimeError::InvalidInput(_) => {
                Code::BadRequest
            }
            RuntimeError::SessionNotFound(_) | RuntimeError::NotFound(_) => Code::NotFound,
            RuntimeError::SessionGone { .. } | RuntimeError::WorkerDied(_) => Code::Gone,
            // Consumption turns this into an unsuccessful result; elsewhere it is bad input.
            RuntimeError::ServiceLoad(_) => Code::BadRequest,
            RuntimeError::Protocol(_) | RuntimeError::Io(_) | RuntimeError::ContentMissing(_) => {
                Code::Internal
            }
        }
    }
}

/// How a failure of this node crosses the compute interface. Internal failures keep their
/// detail for the log of whoever receives them; a web node does not show it to clients.
impl From<RuntimeError> for ComputeError {
    fn from(err: RuntimeError) -> Self {
        let message = err.to_string();
        match err {
            RuntimeError::RuntimeUnavailable(_)
            | RuntimeError::SandboxUnavailable(_)
            | RuntimeError::WorkerDied(_) => ComputeError::RuntimeUnavailable(message),
            RuntimeError::RuntimeNotSupported(_) => ComputeError::RuntimeNotSupported(message),
            RuntimeError::PoolExhausted { .. } | RuntimeError::DedicatedPoolBusy { .. } => {
                ComputeError::PoolExhausted(message)
            }
            RuntimeError::SessionNotFound(id) => ComputeError::SessionNotFound(id),
            RuntimeError::SessionGone { .. } => ComputeError::SessionGone(message),
            RuntimeError::NotFound(_) => ComputeError::NotFound(message),
            RuntimeError::InvalidInput(_) | RuntimeError::ServiceLoad(_) => {
                ComputeError::InvalidInput(message)
            }
            RuntimeError::ContentMissing(digest) => ComputeError::ContentMissing(digest),
            RuntimeError::Protocol(_) | RuntimeError::Io(_) => ComputeError::Internal(message),
        }
    }
}
