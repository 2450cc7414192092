//! Services Management APIs: publish, update, list, get and delete versioned web services.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use o16n_app::App;
use o16n_types::Code;

use super::sessions::SUCCESS;
use crate::ApiError;
use crate::dto::{PublishWebServiceRequest, WebService};
use crate::extract::{AuthUser, JsonBody, PathParams};

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/services", get(list_services))
        .route("/services/{name}", post(publish_service).get(list_versions))
        .route(
            "/services/{name}/{version}",
            post(publish_service_version)
                .patch(patch_service)
                .get(get_service)
                .delete(delete_service),
        )
}

/// The answer to a publish: 201, the consumption path as a JSON string and in `Location`.
fn published(name: &str, version: &str) -> Response {
    let location = format!("/api/{name}/{version}");
    let mut response = (StatusCode::CREATED, Json(location.clone())).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

async fn publish_service(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(name): PathParams<String>,
    JsonBody(request): JsonBody<PublishWebServiceRequest>,
) -> Result<Response, ApiError> {
    let definition = request
        .into_definition()
        .map_err(|err| ApiError::new(Code::BadRequest, err))?;
    let version = app
        .publish_service(&caller, &name, None, definition)
        .await?;
    Ok(published(&name, version.as_str()))
}

async fn publish_service_version(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    JsonBody(request): JsonBody<PublishWebServiceRequest>,
) -> Result<Response, ApiError> {
    let definition = request
        .into_definition()
        .map_err(|err| ApiError::new(Code::BadRequest, err))?;
    match app
        .publish_service(&caller, &name, Some(&version), definition)
        .await
    {
        Ok(_) => Ok(published(&name, &version)),
        // The reference documents an existing name and version as 403 on this route (and 409
        // on the unversioned one, where it cannot happen).
        Err(o16n_app::AppError::Conflict(message)) => Err(ApiError::new(Code::Forbidden, message)),
        Err(err) => Err(err.into()),
    }
}

async fn patch_service(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    JsonBody(request): JsonBody<PublishWebServiceRequest>,
) -> Result<Json<String>, ApiError> {
    let patch = request
        .into_patch()
        .map_err(|err| ApiError::new(Code::BadRequest, err))?;
    app.patch_service(&caller, &name, &version, patch).await?;
    Ok(Json(format!("/api/{name}/{version}")))
}

async fn list_services(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
) -> Result<Json<Vec<WebService>>, ApiError> {
    let services = app.list_services(&caller).await?;
    Ok(Json(services.into_iter().map(WebService::from).collect()))
}

async fn list_versions(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(name): PathParams<String>,
) -> Result<Json<Vec<WebService>>, ApiError> {
    let services = app.list_service_versions(&caller, &name).await?;
    Ok(Json(services.into_iter().map(WebService::from).collect()))
}

/// A one-element array, as the reference's schema says (the official client accepts both).
async fn get_service(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<Vec<WebService>>, ApiError> {
    let service = app.get_service(&caller, &name, &version).await?;
    Ok(Json(vec![service.into()]))
}

async fn delete_service(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<&'static str>, ApiError> {
    app.delete_service(&caller, &name, &version).await?;
    Ok(SUCCESS)
}
