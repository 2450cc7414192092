//! The one error type of the use cases.

use o16n_auth::AuthError;
use o16n_compute::ComputeError;
use o16n_directory::DirectoryError;
use o16n_realtime::RealtimeError;
use o16n_store::StoreError;
use o16n_types::{Code, ErrorCode};

/// Why a use case failed. The message of every variant except the internal ones is safe to
/// show to the client.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Wrong user name or password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The refresh token is unknown, already used, revoked or expired.
    #[error("invalid or expired refresh token")]
    InvalidRefreshToken,
    /// The access token is missing, malformed, expired or revoked.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The addressed resource does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The resource already exists.
    #[error("{0}")]
    Conflict(String),
    /// The resource existed and is gone for good (a session lost with its compute node).
    #[error("{0}")]
    Gone(String),
    /// A value in the request is invalid.
    #[error("{0}")]
    InvalidInput(String),
    /// The caller made too many attempts (failed sign-ins), or holds the most of something a
    /// user may hold (open sessions).
    #[error("{message}")]
    TooManyRequests {
        /// Why, for the caller.
        message: String,
        /// When it may try again, when waiting is what helps.
        retry_after_seconds: Option<u64>,
    },
    /// From the auth primitives.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// From the directory or the identity provider.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// From the database.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// From a compute node.
    #[error(transparent)]
    Compute(#[from] ComputeError),
    /// From native scoring.
    #[error(transparent)]
    Realtime(#[from] RealtimeError),
    /// A bug or an unexpected failure.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ErrorCode for AppError {
    fn code(&self) -> Code {
        match self {
            AppError::InvalidCredentials
            | AppError::InvalidRefreshToken
            | AppError::Unauthenticated(_) => Code::Unauthorized,
            AppError::Forbidden(_) => Code::Forbidden,
            AppError::NotFound(_) => Code::NotFound,
            AppError::Conflict(_) => Code::Conflict,
            AppError::Gone(_) => Code::Gone,
            AppError::InvalidInput(_) => Code::BadRequest,
            AppError::TooManyRequests { .. } => Code::TooManyRequests,
            AppError::Auth(err) => err.code(),
            AppError::Directory(err) => err.code(),
            AppError::Store(err) => err.code(),
            AppError::Compute(err) => err.code(),
            AppError::Realtime(err) => err.code(),
            AppError::Internal(_) => Code::Internal,
        }
    }

    fn retry_after_seconds(&self) -> Option<u64> {
        match self {
            AppError::TooManyRequests {
                retry_after_seconds,
                ..
            } => *retry_after_seconds,
            _ => None,
        }
    }
}
