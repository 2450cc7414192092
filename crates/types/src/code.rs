//! The client-visible error codes: one row per kind of failure, with its HTTP status and the
//! `exceptionType` string that the reference `Error` shape carries.
//!
//! Every crate's error enum maps onto a [`Code`] through [`ErrorCode`]; the HTTP layer turns the
//! code into a status in exactly one place, so the mapping cannot drift between handlers.

/// A stable, client-visible classification of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The request is malformed or a value in it is invalid.
    BadRequest,
    /// No credentials, or credentials that are wrong, expired or revoked.
    Unauthorized,
    /// The caller is known but may not do this.
    Forbidden,
    /// The addressed resource does not exist (or belongs to someone else).
    NotFound,
    /// The route exists but not for this HTTP method.
    MethodNotAllowed,
    /// The resource already exists or changed concurrently.
    Conflict,
    /// The resource existed once and is gone for good.
    Gone,
    /// The request body exceeds the configured limit.
    PayloadTooLarge,
    /// The request body has a content type this route does not accept.
    UnsupportedMediaType,
    /// The caller sent too many requests of a kind (failed sign-ins); it may try again later.
    TooManyRequests,
    /// A dependency (database, runtime) cannot serve the request right now.
    Unavailable,
    /// A bug or an unexpected failure; details are logged, never returned.
    Internal,
}

impl Code {
    /// The HTTP status code for this error.
    pub fn http_status(self) -> u16 {
        match self {
            Code::BadRequest => 400,
            Code::Unauthorized => 401,
            Code::Forbidden => 403,
            Code::NotFound => 404,
            Code::MethodNotAllowed => 405,
            Code::Conflict => 409,
            Code::Gone => 410,
            Code::PayloadTooLarge => 413,
            Code::UnsupportedMediaType => 415,
            Code::TooManyRequests => 429,
            Code::Unavailable => 503,
            Code::Internal => 500,
        }
    }

    /// The value of the reference `Error.exceptionType` field for this code.
    pub fn exception_type(self) -> &'static str {
        match self {
            Code::BadRequest => "BadRequest",
            Code::Unauthorized => "Unauthorized",
            Code::Forbidden => "Forbidden",
            Code::NotFound => "NotFound",
            Code::MethodNotAllowed => "MethodNotAllowed",
            Code::Conflict => "Conflict",
            Code::Gone => "Gone",
            Code::PayloadTooLarge => "PayloadTooLarge",
            Code::UnsupportedMediaType => "UnsupportedMediaType",
            Code::TooManyRequests => "TooManyRequests",
            Code::Unavailable => "ServiceUnavailable",
            Code::Internal => "InternalServerError",
        }
    }
}

/// Implemented by every crate's error enum so that the HTTP layer can classify it.
pub trait ErrorCode {
    /// The client-visible classification of this error.
    fn code(&self) -> Code;

    /// For an error the caller may retry, the seconds after which it may (`Retry-After`).
    fn retry_after_seconds(&self) -> Option<u64> {
        None
    }
}

/// An error and its sources, joined by `: `, for logs (never for clients).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
