//! The sessions and snapshots pages: a user's open sessions (runtime, environment, age), each
//! with its console output, history, files and workspace objects, code to run, snapshots to
//! take, close and force close; and the user's snapshots, to download, delete or start a
//! session from.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use o16n_app::{App, ExecuteRequest};
use o16n_types::{Code, RuntimeType};
use serde::Deserialize;

use super::pages::{age, environment_name, now, size};
use super::{FormBody, Nav, PageError, ROOT, Viewer, back_to, render, urlencoding_component};
use crate::extract::StreamedForm;
use crate::routes::{BodyLimits, attachment_response};

pub(super) fn router(limits: BodyLimits) -> Router<App> {
    Router::new()
        .route("/sessions", get(list).post(create))
        .route("/sessions/{id}", get(show))
        .route("/sessions/{id}/execute", post(execute).layer(limits.data()))
        .route("/sessions/{id}/files", post(upload).layer(limits.upload()))
        .route("/sessions/{id}/files/{file}", get(download))
        .route("/sessions/{id}/files/{file}/delete", post(delete_file))
        .route(
            "/sessions/{id}/objects/{object}/delete",
            post(delete_object),
        )
        .route("/sessions/{id}/snapshot", post(snapshot))
        .route("/sessions/{id}/close", post(close))
        .route("/snapshots", get(snapshots))
        .route("/snapshots/{id}/download", get(download_snapshot))
        .route("/snapshots/{id}/delete", post(delete_snapshot))
        .route("/snapshots/{id}/session", post(session_from_snapshot))
}

struct SessionRow {
    id: String,
    name: String,
    runtime: &'static str,
    environment: String,
    age: String,
}

#[derive(Template)]
#[template(path = "console/sessions.html")]
struct ListPage {
    nav: Nav,
    sessions: Vec<SessionRow>,
}

async fn list(State(app): State<App>, viewer: Viewer) -> Result<Response, PageError> {
    let now = now();
    let sessions = app
        .list_sessions(viewer.principal())
        .await?
        .into_iter()
        .map(|session| SessionRow {
            id: session.info.id,
            name: session.info.name.unwrap_or_default(),
            runtime: session.info.runtime.as_str(),
            environment: environment_name(session.environment.as_deref()),
            age: age(session.created_at, now),
        })
        .collect();
    Ok(render(&ListPage {
        nav: viewer.nav("sessions"),
        sessions,
    }))
}

#[derive(Deserialize)]
struct CreateForm {
    runtime: String,
    #[serde(default)]
    name: String,
}

async fn create(
    State(app): State<App>,
    viewer: Viewer,
    FormBody(form): FormBody<CreateForm>,
) -> Result<Response, PageError> {
    let runtime: RuntimeType = form
        .runtime
        .parse()
        .map_err(|_| PageError::new(Code::BadRequest, "choose R or Python"))?;
    let name = Some(form.name.trim().to_owned()).filter(|name| !name.is_empty());
    let session = app
        .create_session(viewer.principal(), name, runtime, None, None)
        .await?;
    Ok(back_to(&format!("{ROOT}/sessions/{}", session.id)))
}

/// The outcome of code run from the session page.
struct Ran {
    success: bool,
    error_message: String,
    console_output: String,
}

#[derive(Template)]
#[template(path = "console/session.html")]
struct SessionPage {
    nav: Nav,
    id: String,
    name: String,
    runtime: &'static str,
    environment: String,
    age: String,
    console_output: String,
    history: Vec<String>,
    files: Vec<(String, String)>,
    objects: Vec<(String, String)>,
    code: String,
    ran: Option<Ran>,
}

async fn session_page(app: &App, viewer: &Viewer, id: &str) -> Result<SessionPage, PageError> {
    let caller = viewer.principal();
    // Listing first: another user's session, or one that is gone, is a 404 page.
    let session = app
        .list_sessions(caller)
        .await?
        .into_iter()
        .find(|session| session.info.id == id)
        .ok_or_else(|| PageError::new(Code::NotFound, format!("there is no session {id}")))?;
    // Names with the path segment that addresses them.
    let linked = |names: Vec<String>| {
        names
            .into_iter()
            .map(|name| {
                let segment = urlencoding_component(&name);
                (name, segment)
            })
            .collect::<Vec<_>>()
    };
    let files = linked(app.list_files(caller, id).await?);
    Ok(SessionPage {
        nav: viewer.nav("sessions"),
        id: session.info.id,
        name: session.info.name.unwrap_or_default(),
        runtime: session.info.runtime.as_str(),
        environment: environment_name(session.environment.as_deref()),
        age: age(session.created_at, now()),
        console_output: app.console_output(caller, id).await?,
        history: app.history(caller, id).await?,
        files,
        objects: linked(app.list_objects(caller, id).await?),
        code: String::new(),
        ran: None,
    })
}

async fn show(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    Ok(render(&session_page(&app, &viewer, &id).await?))
}

#[derive(Deserialize)]
struct ExecuteForm {
    code: String,
}

async fn execute(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
    FormBody(form): FormBody<ExecuteForm>,
) -> Result<Response, PageError> {
    let request = ExecuteRequest {
        code: form.code.clone(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let outcome = app.execute(viewer.principal(), &id, request).await?;
    let mut page = session_page(&app, &viewer, &id).await?;
    page.code = form.code;
    page.ran = Some(Ran {
        success: outcome.success,
        error_message: outcome.error_message,
        console_output: outcome.console_output,
    });
    Ok(render(&page))
}

async fn upload(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
    form: StreamedForm,
) -> Result<Response, PageError> {
    let (app, caller, session) = (&app, viewer.principal(), &id);
    form.stream_file(|file_name, content| async move {
        Ok(app
            .upload_file(caller, session, &file_name, content)
            .await?)
    })
    .await?;
    Ok(back_to(&format!("{ROOT}/sessions/{id}#files")))
}

async fn download(
    State(app): State<App>,
    viewer: Viewer,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, PageError> {
    let download = app.session_file(viewer.principal(), &id, &file).await?;
    Ok(attachment_response(&file, download.size, download.content))
}

async fn delete_file(
    State(app): State<App>,
    viewer: Viewer,
    Path((id, file)): Path<(String, String)>,
) -> Result<Response, PageError> {
    app.delete_file(viewer.principal(), &id, &file).await?;
    Ok(back_to(&format!("{ROOT}/sessions/{id}#files")))
}

async fn delete_object(
    State(app): State<App>,
    viewer: Viewer,
    Path((id, object)): Path<(String, String)>,
) -> Result<Response, PageError> {
    app.delete_object(viewer.principal(), &id, &object).await?;
    Ok(back_to(&format!("{ROOT}/sessions/{id}#objects")))
}

#[derive(Deserialize)]
struct SnapshotForm {
    #[serde(default)]
    name: String,
}

async fn snapshot(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
    FormBody(form): FormBody<SnapshotForm>,
) -> Result<Response, PageError> {
    let name = Some(form.name.trim().to_owned()).filter(|name| !name.is_empty());
    app.create_snapshot(viewer.principal(), &id, name).await?;
    Ok(back_to(&format!("{ROOT}/snapshots")))
}

#[derive(Deserialize)]
struct CloseForm {
    #[serde(default)]
    force: Option<String>,
}

async fn close(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
    FormBody(form): FormBody<CloseForm>,
) -> Result<Response, PageError> {
    app.close_session(viewer.principal(), &id, form.force.is_some())
        .await?;
    Ok(back_to(&format!("{ROOT}/sessions")))
}

struct SnapshotRow {
    id: String,
    name: String,
    runtime: &'static str,
    environment: String,
    size: String,
    age: String,
}

#[derive(Template)]
#[template(path = "console/snapshots.html")]
struct SnapshotsPage {
    nav: Nav,
    snapshots: Vec<SnapshotRow>,
}

async fn snapshots(State(app): State<App>, viewer: Viewer) -> Result<Response, PageError> {
    let now = now();
    let snapshots = app
        .list_snapshots(viewer.principal())
        .await?
        .into_iter()
        .map(|snapshot| SnapshotRow {
            id: snapshot.id,
            name: snapshot.name.unwrap_or_default(),
            runtime: snapshot.runtime.as_str(),
            environment: environment_name(snapshot.environment.as_deref()),
            size: size(snapshot.content_size),
            age: age(snapshot.created_at, now),
        })
        .collect();
    Ok(render(&SnapshotsPage {
        nav: viewer.nav("snapshots"),
        snapshots,
    }))
}

async fn download_snapshot(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let (size, content) = app.snapshot_content(viewer.principal(), &id).await?;
    Ok(attachment_response(
        &format!("{id}.zip"),
        Some(size),
        content,
    ))
}

async fn delete_snapshot(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    app.delete_snapshot(viewer.principal(), &id).await?;
    Ok(back_to(&format!("{ROOT}/snapshots")))
}

/// A new session of the snapshot's runtime with the snapshot loaded.
async fn session_from_snapshot(
    State(app): State<App>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let caller = viewer.principal();
    let snapshot = app
        .list_snapshots(caller)
        .await?
        .into_iter()
        .find(|snapshot| snapshot.id == id)
        .ok_or_else(|| PageError::new(Code::NotFound, format!("there is no snapshot {id}")))?;
    let session = app
        .create_session(caller, None, snapshot.runtime, Some(&id), None)
        .await?;
    Ok(back_to(&format!("{ROOT}/sessions/{}", session.id)))
}
