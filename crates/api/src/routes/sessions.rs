//! Session APIs: remote R and Python sessions with their console, history, working-directory
//! files and workspace objects.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use o16n_app::App;
use o16n_types::{Code, RuntimeType};

use super::BodyLimits;
use crate::ApiError;
use crate::dto::{
    ConsoleOutputResponse, CreateSessionRequest, CreateSessionResponse, ExecuteRequest,
    ExecuteResponse, Session,
};
use crate::extract::{AuthUser, JsonBody, OptionalJsonBody, PathParams, RawBody, StreamedForm};

pub(super) fn router(limits: BodyLimits) -> Router<App> {
    Router::new()
        .route("/sessions", post(create_session).get(list_sessions))
        .route("/sessions/{id}", delete(close_session))
        .route("/sessions/{id}/force", delete(force_close_session))
        .route("/sessions/{id}/execute", post(execute).layer(limits.data()))
        .route("/sessions/{id}/cancel", post(cancel))
        .route("/sessions/{id}/console-output", get(console_output))
        .route("/sessions/{id}/history", get(history))
        .route(
            "/sessions/{id}/files",
            post(upload_file).layer(limits.upload()).get(list_files),
        )
        .route(
            "/sessions/{id}/files/{file_name}",
            get(download_file).delete(delete_file),
        )
        .route("/sessions/{id}/workspace", get(list_objects))
        .route(
            "/sessions/{id}/workspace/{object_name}",
            post(put_object)
                .layer(limits.data())
                .get(get_object)
                .delete(delete_object),
        )
}

/// The body of operations whose reference response is an undocumented string.
pub(super) const SUCCESS: Json<&str> = Json("Success");

async fn create_session(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    OptionalJsonBody(request): OptionalJsonBody<CreateSessionRequest>,
) -> Result<(StatusCode, Json<CreateSessionResponse>), ApiError> {
    let runtime = match request.runtime_type.as_deref() {
        Some(text) => text
            .parse()
            .map_err(|err: o16n_types::ParseRuntimeTypeError| {
                ApiError::new(Code::BadRequest, err.to_string())
            })?,
        None => RuntimeType::default(),
    };
    let session = app
        .create_session(
            &caller,
            request.name,
            runtime,
            request.snapshot_id.as_deref(),
            request.environment.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreateSessionResponse {
            session_id: session.id,
        }),
    ))
}

async fn list_sessions(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
) -> Result<Json<Vec<Session>>, ApiError> {
    Ok(Json(
        app.list_sessions(&caller)
            .await?
            .into_iter()
            .map(|session| Session::from(session.info))
            .collect(),
    ))
}

async fn close_session(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<&'static str>, ApiError> {
    app.close_session(&caller, &id, false).await?;
    Ok(SUCCESS)
}

async fn force_close_session(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<&'static str>, ApiError> {
    app.close_session(&caller, &id, true).await?;
    Ok(SUCCESS)
}

async fn execute(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<ExecuteRequest>,
) -> Result<Json<ExecuteResponse>, ApiError> {
    let request = request
        .into_domain()
        .map_err(|err| ApiError::new(Code::BadRequest, err))?;
    let outcome = app.execute(&caller, &id, request).await?;
    Ok(Json(outcome.into()))
}

async fn cancel(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<&'static str>, ApiError> {
    app.cancel_execution(&caller, &id).await?;
    Ok(SUCCESS)
}

async fn console_output(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<ConsoleOutputResponse>, ApiError> {
    let console_output = app.console_output(&caller, &id).await?;
    Ok(Json(ConsoleOutputResponse { console_output }))
}

async fn history(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(app.history(&caller, &id).await?))
}

async fn upload_file(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
    form: StreamedForm,
) -> Result<(StatusCode, Json<&'static str>), ApiError> {
    let (app, caller, id) = (&app, &caller, &id);
    form.stream_file(|file_name, content| async move {
        Ok(app.upload_file(caller, id, &file_name, content).await?)
    })
    .await?;
    Ok((StatusCode::CREATED, Json("Created")))
}

async fn list_files(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(app.list_files(&caller, &id).await?))
}

async fn download_file(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((id, file_name)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let download = app.session_file(&caller, &id, &file_name).await?;
    Ok(attachment_response(
        &file_name,
        download.size,
        download.content,
    ))
}

async fn delete_file(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((id, file_name)): PathParams<(String, String)>,
) -> Result<Json<&'static str>, ApiError> {
    app.delete_file(&caller, &id, &file_name).await?;
    Ok(SUCCESS)
}

async fn list_objects(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(id): PathParams<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    Ok(Json(app.list_objects(&caller, &id).await?))
}

async fn put_object(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((id, object_name)): PathParams<(String, String)>,
    RawBody(bytes): RawBody,
) -> Result<Json<&'static str>, ApiError> {
    app.put_object(&caller, &id, &object_name, bytes.to_vec())
        .await?;
    Ok(SUCCESS)
}

async fn get_object(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((id, object_name)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let bytes = app.get_object(&caller, &id, &object_name).await?;
    let file_name = format!("{object_name}.dill");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(&file_name)),
        ],
        bytes,
    )
        .into_response())
}

async fn delete_object(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams((id, object_name)): PathParams<(String, String)>,
) -> Result<Json<&'static str>, ApiError> {
    app.delete_object(&caller, &id, &object_name).await?;
    Ok(SUCCESS)
}

/// A streamed attachment, with its length when known.
pub(crate) fn attachment_response(
    file_name: &str,
    size: Option<u64>,
    content: o16n_app::ByteStream,
) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, attachment(file_name)),
        ],
        Body::from_stream(content),
    )
        .into_response();
    if let Some(size) = size {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, size.into());
    }
    response
}

/// A `Content-Disposition` value; the name was validated, but quotes are still replaced so the
/// header cannot be broken.
pub(super) fn attachment(file_name: &str) -> String {
    format!(
        "attachment; filename=\"{}\"",
        file_name.replace(['"', '\\'], "_")
    )
}
