//! Status API: `GET /status`, the health of the system and its components, and `GET /health`,
//! a liveness probe for load balancers and orchestrators that needs no token and touches
//! nothing but the HTTP stack.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use o16n_app::App;

use crate::dto::StatusResponse;
use crate::extract::AuthUser;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/status", get(status))
        .route("/health", get(health))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn status(State(app): State<App>, AuthUser(caller): AuthUser) -> Json<StatusResponse> {
    tracing::debug!(user = %caller.username, "status requested");
    Json(app.status().await.into())
}
