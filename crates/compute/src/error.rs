//! The one error type of the compute interface, serializable so that a compute node's failure
//! reaches the web node as the same variant.

use o16n_types::{Code, ErrorCode};
use serde::{Deserialize, Serialize};

/// What can go wrong on a compute node, or on the way to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "message")]
pub enum ComputeError {
    /// The runtime cannot serve: not installed, being set up, or failing to start workers.
    #[error("{0}")]
    RuntimeUnavailable(String),
    /// The runtime is not offered by this compute node at all.
    #[error("{0}")]
    RuntimeNotSupported(String),
    /// Every worker the pool may have is busy.
    #[error("{0}")]
    PoolExhausted(String),
    /// No session with this id belongs to the caller.
    #[error("session `{0}` not found")]
    SessionNotFound(String),
    /// The session's worker died; the session is gone. The message says why.
    #[error("{0}")]
    SessionGone(String),
    /// A named file or object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is not acceptable (bad bytes, bad names, wrong runtime).
    #[error("{0}")]
    InvalidInput(String),
    /// The node does not hold this content (by digest); send it with `put_content`.
    #[error("the compute node does not hold content {0}")]
    ContentMissing(String),
    /// No compute node can take the request, or the node failed while the request was sent
    /// or ran (it is not retried: user code may have had side effects).
    #[error("{0}")]
    NodeUnavailable(String),
    /// The compute node could not be reached: the request was not sent, so it may go
    /// elsewhere.
    #[error("{0}")]
    NodeUnreachable(String),
    /// A bug or an unexpected failure on the node; details are in its log.
    #[error("{0}")]
    Internal(String),
}

impl ErrorCode for ComputeError {
    fn code(&self) -> Code {
        match self {
            ComputeError::RuntimeUnavailable(_)
            | ComputeError::PoolExhausted(_)
            | ComputeError::NodeUnavailable(_)
            | ComputeError::NodeUnreachable(_) => Code::Unavailable,
            ComputeError::RuntimeNotSupported(_) | ComputeError::InvalidInput(_) => {
                Code::BadRequest
            }
            ComputeError::SessionNotFound(_) | ComputeError::NotFound(_) => Code::NotFound,
            ComputeError::SessionGone(_) => Code::Gone,
            ComputeError::ContentMissing(_) | ComputeError::Internal(_) => Code::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_crosses_the_wire_as_the_same_variant() {
        let error = ComputeError::SessionGone("session `s` is gone: killed".to_owned());
        let text = serde_json::to_string(&error).unwrap();
        assert_eq!(
            text,
            r#"{"kind":"SessionGone","message":"session `s` is gone: killed"}"#
        );
        assert_eq!(serde_json::from_str::<ComputeError>(&text).unwrap(), error);
    }
}
