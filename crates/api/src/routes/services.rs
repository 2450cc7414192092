//! Services Management APIs: publish, update, list, get and delete versioned web services.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use o16n_app::{App, RealtimeDefinition, RealtimePatch};
use o16n_types::Code;

use super::BodyLimits;
use super::sessions::SUCCESS;
use crate::ApiError;
use crate::dto::{
    CreateOrUpdateServicePoolRequest, PublishWebServiceRequest, ServicePoolStatusResponse,
    WebService,
};
use crate::extract::{AuthUser, JsonBody, MultipartForm, PathParams};

pub(super) fn router(limits: BodyLimits) -> Router<App> {
    Router::new()
        .route("/services", get(list_services))
        .route(
            "/services/{name}",
            post(publish_service)
                .layer(limits.data())
                .get(list_versions),
        )
        .route(
            "/services/{name}/{version}",
            post(publish_service_version)
                .patch(patch_service)
                .layer(limits.data())
                .get(get_service)
                .delete(delete_service),
        )
        .route(
            "/services/{name}/{version}/pool",
            post(set_service_pool)
                .delete(delete_service_pool)
                .get(service_pool_status),
        )
        .route(
            "/realtime-services/{name}",
            post(publish_realtime_service).layer(limits.upload()),
        )
        .route(
            "/realtime-services/{name}/{version}",
            post(publish_realtime_service_version)
                .patch(patch_realtime_service)
                .layer(limits.upload()),
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

async fn set_service_pool(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    JsonBody(request): JsonBody<CreateOrUpdateServicePoolRequest>,
) -> Result<Json<&'static str>, ApiError> {
    app.set_service_pool(
        &caller,
        &name,
        &version,
        request.initial_pool_size,
        request.max_pool_size,
    )
    .await?;
    Ok(Json("Created."))
}

async fn delete_service_pool(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<&'static str>, ApiError> {
    app.delete_service_pool(&caller, &name, &version).await?;
    Ok(Json("Deleted."))
}

async fn service_pool_status(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
) -> Result<Json<Vec<ServicePoolStatusResponse>>, ApiError> {
    let states = app.service_pool_status(&caller, &name, &version).await?;
    Ok(Json(states.into_iter().map(Into::into).collect()))
}

/// The fields of a realtime publish or update: `description`, `operationId` and the `model`
/// file.
fn realtime_fields(mut form: MultipartForm) -> Result<RealtimePatch, ApiError> {
    let description = form.take_text("description")?;
    let operation_id = form.take_text("operationId")?;
    let model = form.take("model").map(|bytes| bytes.as_ref().into());
    form.finish()?;
    Ok(RealtimePatch {
        description,
        operation_id,
        model,
    })
}

fn realtime_definition(form: MultipartForm) -> Result<RealtimeDefinition, ApiError> {
    let fields = realtime_fields(form)?;
    let model = fields.model.ok_or_else(|| {
        ApiError::new(
            Code::BadRequest,
            "the form field `model` (the ONNX model file) is required",
        )
    })?;
    Ok(RealtimeDefinition {
        description: fields.description,
        operation_id: fields.operation_id,
        model,
    })
}

async fn publish_realtime_service(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(name): PathParams<String>,
    form: MultipartForm,
) -> Result<Response, ApiError> {
    let definition = realtime_definition(form)?;
    let version = app
        .publish_realtime_service(&caller, &name, None, definition)
        .await?;
    Ok(published(&name, version.as_str()))
}

async fn publish_realtime_service_version(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    form: MultipartForm,
) -> Result<Response, ApiError> {
    let definition = realtime_definition(form)?;
    app.publish_realtime_service(&caller, &name, Some(&version), definition)
        .await?;
    Ok(published(&name, &version))
}

async fn patch_realtime_service(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((name, version)): PathParams<(String, String)>,
    form: MultipartForm,
) -> Result<Json<String>, ApiError> {
    let patch = realtime_fields(form)?;
    app.patch_realtime_service(&caller, &name, &version, patch)
        .await?;
    Ok(Json(format!("/api/{name}/{version}")))
}
