//! The routes, one module per tag of the reference API.

mod batch;
mod compute_nodes;
mod consume;
mod environments;
mod login;
mod services;
mod sessions;
mod snapshots;
mod status;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use o16n_app::App;

use crate::ApiConfig;

pub(crate) use sessions::attachment_response;

/// The largest body of a small control request (login, token renewal, session creation, ...):
/// every route gets this unless it carries data, so that no caller, authenticated or not, can
/// make the server buffer more.
pub(crate) const CONTROL_BODY_BYTES: usize = 1024 * 1024;

/// The body limits of the routes that carry more than control data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimits {
    data: usize,
    upload: usize,
}

impl BodyLimits {
    pub(crate) fn of(config: &ApiConfig) -> BodyLimits {
        BodyLimits {
            data: config.max_body_bytes,
            upload: config.max_upload_bytes,
        }
    }

    /// Requests that carry inputs, code or objects: consume, batch, execute, publish.
    pub(crate) fn data(self) -> DefaultBodyLimit {
        DefaultBodyLimit::max(self.data)
    }

    /// Uploaded files and models.
    pub(crate) fn upload(self) -> DefaultBodyLimit {
        DefaultBodyLimit::max(self.upload)
    }
}

pub(crate) fn router(config: &ApiConfig) -> Router<App> {
    let limits = BodyLimits::of(config);
    Router::new()
        .merge(login::router())
        .merge(services::router(limits))
        .merge(consume::router(limits))
        .merge(batch::router(limits))
        .merge(sessions::router(limits))
        .merge(snapshots::router())
        .merge(status::router())
        .merge(compute_nodes::router())
        .merge(environments::router())
}
