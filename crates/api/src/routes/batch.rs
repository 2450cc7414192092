//! Asynchronous batch consumption, as in each service's swagger: start, list, poll, cancel, and
//! the files of one record. Record indexes are 0-based, as positions in the batch.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use o16n_app::App;
use o16n_types::Code;
use serde::Deserialize;
use serde_json::{Value, json};

use super::BodyLimits;
use super::sessions::attachment;
use crate::ApiError;
use crate::extract::{AuthUser, JsonText, PathParams, QueryParams};

pub(super) fn router(limits: BodyLimits) -> Router<App> {
    Router::new()
        .route(
            "/api/{name}/{version}/batch",
            post(start_batch).layer(limits.data()).get(list_batches),
        )
        .route(
            "/api/{name}/{version}/batch/{id}",
            get(batch_status).delete(cancel_batch),
        )
        .route(
            "/api/{name}/{version}/batch/{id}/{index}/files",
            get(record_files),
        )
        .route(
            "/api/{name}/{version}/batch/{id}/{index}/files/{file_name}",
            get(record_file),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartQuery {
    parallel_count: Option<i64>,
}

/// The swagger spells it `showPartialResults`, the official client `showPartialResult`.
#[derive(Deserialize)]
struct StatusQuery {
    #[serde(rename = "showPartialResults", alias = "showPartialResult")]
    show_partial_results: Option<bool>,
}

async fn start_batch(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    QueryParams(query): QueryParams<StartQuery>,
    JsonText(records): JsonText,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = app
        .start_batch(&caller, &name, &version, records, query.parallel_count)
        .await?;
    // The swagger names the field `batchExecutionId`; the official client reads
    // `BatchExecutionId`. Both are sent.
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"batchExecutionId": id, "BatchExecutionId": id})),
    ))
}

async fn list_batches(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(app.list_batches(&caller, &name, &version).await?))
}

async fn batch_status(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version, id)): PathParams<(String, String, String)>,
    QueryParams(query): QueryParams<StatusQuery>,
) -> Result<Json<Value>, ApiError> {
    let with_results = query.show_partial_results.unwrap_or(true);
    let status = app
        .batch_status(&caller, &name, &version, &id, with_results)
        .await?;
    Ok(Json(json!({
        "state": status.state.as_str(),
        "completedItemCount": status.completed,
        "totalItemCount": status.total,
        "batchExecutionResults": status.results,
    })))
}

async fn cancel_batch(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version, id)): PathParams<(String, String, String)>,
) -> Result<Json<Vec<String>>, ApiError> {
    app.cancel_batch(&caller, &name, &version, &id).await?;
    Ok(Json(vec![id]))
}

async fn record_files(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version, id, index)): PathParams<(String, String, String, i64)>,
) -> Result<Json<Vec<String>>, ApiError> {
    let files = app
        .batch_record_files(&caller, &name, &version, &id, index)
        .await?;
    Ok(Json(files.keys().cloned().collect()))
}

async fn record_file(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version, id, index, file_name)): PathParams<(
        String,
        String,
        String,
        i64,
        String,
    )>,
) -> Result<Response, ApiError> {
    let files = app
        .batch_record_files(&caller, &name, &version, &id, index)
        .await?;
    let content = files
        .get(&file_name)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::new(
                Code::NotFound,
                format!("record {index} has no file `{file_name}`"),
            )
        })?;
    let bytes = STANDARD
        .decode(content)
        .map_err(|err| ApiError::internal(format!("a stored output file is not base64: {err}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&file_name)),
        ],
        bytes,
    )
        .into_response())
}
