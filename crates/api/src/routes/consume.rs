//! Service Consumption APIs: `POST /api/{name}/{version}` runs a service, and
//! `GET /api/{name}/{version}/swagger.json` describes it.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use o16n_app::App;
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

async fn consume(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    OptionalJsonBody(inputs): OptionalJsonBody<Map<String, Value>>,
) -> Result<Json<WebServiceResult>, ApiError> {
    let outcome = app.consume(&caller, &name, &version, inputs).await?;
    Ok(Json(outcome.into()))
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
