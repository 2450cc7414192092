//! The one error type of the auth crate.

use o16n_types::{Code, ErrorCode};

/// What can go wrong while checking passwords or tokens.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A chosen password does not satisfy the reference's password rule.
    #[error("{0}")]
    WeakPassword(&'static str),
    /// An access token is missing its parts, has a bad signature, or has expired.
    #[error("invalid or expired access token")]
    InvalidToken,
    /// An identity provider's bearer token is malformed, foreign, expired or badly signed.
    #[error("{0}")]
    InvalidExternalToken(&'static str),
    /// An identity provider's bearer token names a signing key the provider does not publish.
    #[error("the token is signed with a key the identity provider does not publish")]
    UnknownSigningKey,
    /// Hashing failed; this only happens on resource exhaustion or a bug.
    #[error("password hashing failed: {0}")]
    Hashing(String),
    /// Signing a token failed; this only happens with a broken key, i.e. a bug.
    #[error("token signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

impl ErrorCode for AuthError {
    fn code(&self) -> Code {
        match self {
            AuthError::WeakPassword(_) => Code::BadRequest,
            AuthError::InvalidToken
            | AuthError::InvalidExternalToken(_)
            | AuthError::UnknownSigningKey => Code::Unauthorized,
            AuthError::Hashing(_) | AuthError::Signing(_) => Code::Internal,
        }
    }
}
