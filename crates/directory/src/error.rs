//! The one error type of the directory crate.

use o16n_auth::AuthError;
use o16n_types::{Code, ErrorCode};

/// Why signing in through a directory or an identity provider failed. Messages never contain
/// a password and are safe to show to the client.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Unknown user, several matching entries, wrong or empty password.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The user is who they say, but cannot be signed in (their entry lacks the unique id).
    #[error("{0}")]
    Rejected(String),
    /// An identity provider's token was refused.
    #[error(transparent)]
    Token(#[from] AuthError),
    /// The directory or the provider did not answer, answered too slowly, or refused the
    /// service account.
    #[error("{0}")]
    Unavailable(String),
    /// The settings cannot work (a bad URL, a missing certificate file, ...).
    #[error("{0}")]
    Misconfigured(String),
}

impl ErrorCode for DirectoryError {
    fn code(&self) -> Code {
        match self {
            DirectoryError::InvalidCredentials | DirectoryError::Rejected(_) => Code::Unauthorized,
            DirectoryError::Token(err) => err.code(),
            DirectoryError::Unavailable(_) => Code::Unavailable,
            DirectoryError::Misconfigured(_) => Code::Internal,
        }
    }
}
