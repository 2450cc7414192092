//! What both ends of the internal API agree on: header names, and how a compute node's
//! failure becomes a response and back.

use axum::http::StatusCode;
use o16n_compute::ComputeError;
use o16n_types::ErrorCode;

/// The header that names a session's owner on every session call.
pub(crate) const OWNER_HEADER: &str = "x-o16n-owner";

/// The status a compute node answers a failure with; the body is the error itself, as JSON.
pub(crate) fn status_of(error: &ComputeError) -> StatusCode {
    StatusCode::from_u16(error.code().http_status())
        .expect("every Code has a valid status. This is a bug.")
}
