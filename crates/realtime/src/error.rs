//! The one error type of native scoring.

use o16n_types::{Code, ErrorCode};

/// What can go wrong when loading or scoring a realtime model.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    /// The bytes are not an ONNX model at all.
    #[error("{0}")]
    NotOnnx(String),
    /// An ONNX model this engine cannot run: an unknown operator or an unsupported option.
    #[error("{0}")]
    UnsupportedModel(String),
    /// An ONNX model that is inconsistent (bad attributes, broken trees, bad shapes).
    #[error("the model is not valid: {0}")]
    InvalidModel(String),
    /// The request's `inputData` does not fit the model.
    #[error("{0}")]
    InvalidInput(String),
    /// Scoring failed although model and input were accepted; a bug or a model that fails
    /// on particular values.
    #[error("scoring failed: {0}")]
    Scoring(String),
}

impl ErrorCode for RealtimeError {
    fn code(&self) -> Code {
        match self {
            RealtimeError::NotOnnx(_)
            | RealtimeError::UnsupportedModel(_)
            | RealtimeError::InvalidModel(_)
            | RealtimeError::InvalidInput(_) => Code::BadRequest,
            RealtimeError::Scoring(_) => Code::Internal,
        }
    }
}
