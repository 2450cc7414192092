//! Status API: `GET /status`, the health of the system and its components.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use o16n_app::App;

use crate::dto::StatusResponse;
use crate::extract::AuthUser;

pub(super) fn router() -> Router<App> {
    Router::new().route("/status", get(status))
}

async fn status(State(app): State<App>, AuthUser(caller): AuthUser) -> Json<StatusResponse> {
    tracing::debug!(user = %caller.username, "status requested");
    Json(app.status().await.into())
}
