//! The batches pages: the user's newest batches of every service (everyone's for an Owner), and
//! a page per batch with its progress (refreshing while it runs), its results so far, each
//! record's files, and a cancel button (which, as the reference's cancel, also deletes it).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, post};
use o16n_app::App;
use serde_json::Value;

use super::pages::{age, data_links, now};
use super::{Nav, PageError, ROOT, Viewer, back_to, render};

/// How many batches the list shows.
const LISTED_BATCHES: i64 = 200;
/// How many results a batch page shows; the rest are in the API's results.
const SHOWN_RESULTS: usize = 100;

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/batches", get(list))
        .route("/batches/{name}/{version}/{id}", get(show))
        .route("/batches/{name}/{version}/{id}/cancel", post(cancel))
        .route(
            "/batches/{name}/{version}/{id}/records/{index}",
            get(record),
        )
}

struct BatchRow {
    id: String,
    service: String,
    version: String,
    owner: String,
    state: &'static str,
    completed: i64,
    total: i64,
    age: String,
}

#[derive(Template)]
#[template(path = "console/batches.html")]
struct ListPage {
    nav: Nav,
    batches: Vec<BatchRow>,
}

async fn list(State(app): State<App>, viewer: Viewer) -> Result<Response, PageError> {
    let now = now();
    let batches = app
        .recent_batches(viewer.principal(), LISTED_BATCHES)
        .await?
        .into_iter()
        .map(|batch| BatchRow {
            id: batch.id,
            service: batch.service_name,
            version: batch.service_version,
            owner: batch.owner,
            state: batch.state.as_str(),
            completed: batch.completed_count,
            total: batch.total_count,
            age: age(batch.created_at, now),
        })
        .collect();
    Ok(render(&ListPage {
        nav: viewer.nav("batches"),
        batches,
    }))
}

/// One record's result, as the page lists it.
struct ResultRow {
    index: usize,
    success: bool,
    summary: String,
    has_files: bool,
}

#[derive(Template)]
#[template(path = "console/batch.html")]
struct BatchPage {
    nav: Nav,
    name: String,
    version: String,
    id: String,
    state: &'static str,
    running: bool,
    completed: i64,
    total: i64,
    results: Vec<ResultRow>,
    more_results: usize,
}

async fn show(
    State(app): State<App>,
    viewer: Viewer,
    Path((name, version, id)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let status = app
        .batch_status(viewer.principal(), &name, &version, &id, true)
        .await?;
    let shown = status.results.len().min(SHOWN_RESULTS);
    let results = status
        .results
        .iter()
        .take(shown)
        .enumerate()
        .map(|(index, result)| ResultRow {
            index,
            success: result.get("success").and_then(Value::as_bool) == Some(true),
            summary: result
                .get("outputParameters")
                .map(Value::to_string)
                .unwrap_or_else(|| result.to_string()),
            has_files: result
                .get("outputFiles")
                .and_then(Value::as_object)
                .is_some_and(|files| !files.is_empty()),
        })
        .collect();
    Ok(render(&BatchPage {
        nav: viewer.nav("batches"),
        name,
        version,
        id,
        state: status.state.as_str(),
        running: status.state.is_running(),
        completed: status.completed,
        total: status.total,
        more_results: status.results.len() - shown,
        results,
    }))
}

async fn cancel(
    State(app): State<App>,
    viewer: Viewer,
    Path((name, version, id)): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    app.cancel_batch(viewer.principal(), &name, &version, &id)
        .await?;
    Ok(back_to(&format!("{ROOT}/batches")))
}

#[derive(Template)]
#[template(path = "console/batch_record.html")]
struct RecordPage {
    nav: Nav,
    name: String,
    version: String,
    id: String,
    index: i64,
    images: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

/// The files one record's run produced: images shown, other files to download.
async fn record(
    State(app): State<App>,
    viewer: Viewer,
    Path((name, version, id, index)): Path<(String, String, String, i64)>,
) -> Result<Response, PageError> {
    let files = app
        .batch_record_files(viewer.principal(), &name, &version, &id, index)
        .await?;
    let (images, others) = data_links(files);
    Ok(render(&RecordPage {
        nav: viewer.nav("batches"),
        name,
        version,
        id,
        index,
        images,
        files: others,
    }))
}
