//! Centralized Configuration APIs: the registered compute nodes, as URIs and ranges. Changing
//! them is for Owners; `DELETE` carries a JSON body, as the reference's does.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use o16n_app::{App, EntriesChange};

use super::sessions::SUCCESS;
use crate::ApiError;
use crate::dto::{GetComputeNodesResponse, UpdateComputeNodesRequest};
use crate::extract::{AuthUser, JsonBody};

pub(super) fn router() -> Router<App> {
    Router::new().route("/computenodes", get(list).post(set).put(add).delete(remove))
}

async fn list(
    State(app): State<App>,
    AuthUser(_caller): AuthUser,
) -> Result<Json<GetComputeNodesResponse>, ApiError> {
    Ok(Json(GetComputeNodesResponse {
        compute_nodes: app.compute_node_entries().await?,
    }))
}

async fn change(
    app: &App,
    caller: &o16n_app::Principal,
    change: EntriesChange,
    request: UpdateComputeNodesRequest,
) -> Result<Json<&'static str>, ApiError> {
    app.change_compute_node_entries(caller, change, request.entries)
        .await?;
    Ok(SUCCESS)
}

async fn set(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    JsonBody(request): JsonBody<UpdateComputeNodesRequest>,
) -> Result<Json<&'static str>, ApiError> {
    change(&app, &caller, EntriesChange::Set, request).await
}

async fn add(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    JsonBody(request): JsonBody<UpdateComputeNodesRequest>,
) -> Result<Json<&'static str>, ApiError> {
    change(&app, &caller, EntriesChange::Add, request).await
}

async fn remove(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    JsonBody(request): JsonBody<UpdateComputeNodesRequest>,
) -> Result<Json<&'static str>, ApiError> {
    change(&app, &caller, EntriesChange::Remove, request).await
}
