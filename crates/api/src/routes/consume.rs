//! Service Consumption APIs: `POST /api/{name}/{version}` runs a service, and
//! `GET /api/{name}/{version}/swagger.json` describes it.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use o16n_app::{App, ServiceStages};
use o16n_types::Role;
use serde_json::{Map, Value};

use super::BodyLimits;
use crate::ApiError;
use crate::dto::WebServiceResult;
use crate::extract::{AuthUser, OptionalJsonBody, PathParams};
use crate::swagger;

pub(super) fn router(limits: BodyLimits) -> Router<App> {
    Router::new()
        .route("/api/{name}/{version}", post(consume).layer(limits.data()))
        .route("/api/{name}/{version}/swagger.json", get(service_swagger))
}

/// The request header with which an Owner asks for the stage timings of a request.
const TIMING_REQUEST_HEADER: &str = "x-o16n-timing";

async fn consume(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    headers: HeaderMap,
    OptionalJsonBody(inputs): OptionalJsonBody<Map<String, Value>>,
) -> Result<Response, ApiError> {
    let (outcome, stages) = app.consume(&caller, &name, &version, inputs).await?;
    let mut response = Json(WebServiceResult::from(outcome)).into_response();
    if caller.role == Role::Owner
        && headers.contains_key(TIMING_REQUEST_HEADER)
        && let Ok(value) = HeaderValue::from_str(&server_timing(&stages))
    {
        response.headers_mut().insert("server-timing", value);
    }
    Ok(response)
}

/// The stages as a `Server-Timing` header value, in milliseconds.
fn server_timing(stages: &ServiceStages) -> String {
    stages
        .named()
        .iter()
        .map(|(stage, duration)| format!("{stage};dur={:.3}", duration.as_secs_f64() * 1000.0))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn service_swagger(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let service = app.get_service(&caller, &name, &version).await?;
    let signature = app.realtime_signature(&service.record).await?;
    Ok(Json(swagger::service_document(
        &service.record,
        signature.as_ref(),
    )))
}
