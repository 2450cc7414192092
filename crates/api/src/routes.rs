//! The routes, one module per tag of the reference API.

mod batch;
mod consume;
mod login;
mod services;
mod sessions;
mod snapshots;
mod status;

use axum::Router;
use o16n_app::App;

pub(crate) fn router() -> Router<App> {
    Router::new()
        .merge(login::router())
        .merge(services::router())
        .merge(consume::router())
        .merge(batch::router())
        .merge(sessions::router())
        .merge(snapshots::router())
        .merge(status::router())
}
