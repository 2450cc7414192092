//! The one place where errors become HTTP responses.
//!
//! Every error leaves as the reference `Error` shape, `{message, link, exceptionType}`, with the
//! status of its [`Code`]. Internal errors are logged with their cause chain and answered with
//! a generic message: details of the server never reach the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use o16n_types::{Code, ErrorCode};
use serde::Serialize;

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    code: Code,
    message: String,
    /// What went wrong inside, for the log only.
    internal_detail: Option<String>,
    /// Whether the request carried a bearer token (shapes `WWW-Authenticate`).
    bad_token: bool,
    /// Seconds after which the caller may retry (`Retry-After`).
    retry_after_seconds: Option<u64>,
}

impl ApiError {
    /// An error with a message that is safe to show.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            internal_detail: None,
            bad_token: false,
            retry_after_seconds: None,
        }
    }

    /// An internal error: the detail is logged, the client sees a generic message.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError {
            code: Code::Internal,
            message: String::new(),
            internal_detail: Some(detail.into()),
            bad_token: false,
            retry_after_seconds: None,
        }
    }

    /// The kind of failure.
    pub(crate) fn code(&self) -> Code {
        self.code
    }

    /// What the client may read: the message, or for an internal error a generic one (the
    /// detail is logged here, once).
    pub(crate) fn public_message(&self) -> &str {
        match &self.internal_detail {
            Some(detail) => {
                tracing::error!(error = %detail, "request failed with an internal error");
                "an internal error occurred; the server log has the details under this request's correlation id"
            }
            None => self.message.as_str(),
        }
    }

    /// Marks a 401 as caused by a token that was presented but refused.
    pub(crate) fn with_bad_token(mut self) -> Self {
        self.bad_token = true;
        self
    }
}

impl<E> From<E> for ApiError
where
    E: ErrorCode + std::error::Error,
{
    fn from(err: E) -> Self {
        let code = err.code();
        if code == Code::Internal {
            ApiError::internal(o16n_types::error_chain(&err))
        } else {
            ApiError {
                retry_after_seconds: err.retry_after_seconds(),
                ..ApiError::new(code, err.to_string())
            }
        }
    }
}

/// The reference `Error` definition (core swagger 9.1+).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    message: &'a str,
    link: &'a str,
    exception_type: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .expect("every Code has a valid status. This is a bug.");
        let body = ErrorBody {
            message: self.public_message(),
            link: "",
            exception_type: self.code.exception_type(),
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_seconds {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.code == Code::Unauthorized {
            let challenge = if self.bad_token {
                r#"Bearer error="invalid_token""#
            } else {
                "Bearer"
            };
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        response
    }
}
