//! A package index and an R repository on a loopback port, as an organisation's mirror would
//! serve them: a directory served over HTTP, directories as pages of links (PEP 503's "simple"
//! layout is exactly that), files as they are. Dropping it takes the mirror down.

use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

/// A directory served on 127.0.0.1.
pub(crate) struct PackageIndex {
    pub(crate) root: tempfile::TempDir,
    pub(crate) url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for PackageIndex {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl PackageIndex {
    pub(crate) async fn start() -> PackageIndex {
        let root = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(serve)
            .with_state(root.path().to_path_buf());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        PackageIndex { root, url, server }
    }

    pub(crate) fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    /// Adds to the index a pure-Python wheel of `name` `version` that the fixture script
    /// makes (a module with `VERSION` and `greet()`).
    pub(crate) fn add_wheel(&self, name: &str, version: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/environments/make_wheel.py");
        let status = std::process::Command::new("python3")
            .arg(script)
            .args([name, version])
            .arg(self.path(&format!("simple/{name}")))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

async fn serve(State(root): State<PathBuf>, request: Request) -> Response {
    let relative = request.uri().path().trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let path = root.join(relative);
    if path.is_dir() {
        return Html(listing(&path)).into_response();
    }
    match tokio::fs::read(&path).await {
        Ok(bytes) => bytes.into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

fn listing(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() {
                format!("{name}/")
            } else {
                name
            }
        })
        .collect();
    names.sort();
    let links: String = names
        .iter()
        .map(|name| format!("<a href=\"{name}\">{name}</a>\n"))
        .collect();
    format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n")
}
