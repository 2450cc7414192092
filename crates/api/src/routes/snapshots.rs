//! Snapshot APIs: save a session as a snapshot, load one into a session, list, download and
//! delete them.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use o16n_app::App;

use super::sessions::{SUCCESS, attachment_response};
use crate::ApiError;
use crate::dto::{CreateSnapshotRequest, CreateSnapshotResponse, Snapshot};
use crate::extract::{AuthUser, OptionalJsonBody, PathParams};

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/sessions/{id}/snapshot", post(create_snapshot))
        .route(
            "/sessions/{id}/loadsnapshot/{snapshot_id}",
            post(load_snapshot),
        )
        .route("/snapshots", get(list_snapshots))
        .route(
            "/snapshots/{id}",
            get(download_snapshot).delete(delete_snapshot),
        )
}

async fn create_snapshot(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
    OptionalJsonBody(request): OptionalJsonBody<CreateSnapshotRequest>,
) -> Result<(StatusCode, Json<CreateSnapshotResponse>), ApiError> {
    let snapshot_id = app.create_snapshot(&caller, &id, request.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateSnapshotResponse { snapshot_id }),
    ))
}

async fn load_snapshot(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((id, snapshot_id)): PathParams<(String, String)>,
) -> Result<Json<&'static str>, ApiError> {
    app.load_snapshot(&caller, &id, &snapshot_id).await?;
    Ok(SUCCESS)
}

async fn list_snapshots(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
) -> Result<Json<Vec<Snapshot>>, ApiError> {
    let snapshots = app.list_snapshots(&caller).await?;
    Ok(Json(snapshots.into_iter().map(Snapshot::from).collect()))
}

async fn download_snapshot(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Response, ApiError> {
    let (size, content) = app.snapshot_content(&caller, &id).await?;
    let mut response = attachment_response(&format!("{id}.zip"), Some(size), content);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/zip"),
    );
    Ok(response)
}

async fn delete_snapshot(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<&'static str>, ApiError> {
    app.delete_snapshot(&caller, &id).await?;
    Ok(SUCCESS)
}
