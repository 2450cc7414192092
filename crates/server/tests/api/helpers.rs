//! `spawn_app` and a small typed client for the black-box tests.
//!
//! Two kinds of server: [`spawn_app`] sends work to an in-memory compute node
//! ([`FakeCompute`]), so that tests of sign-in, errors, routing and the rules of services need
//! no Python, R or sandbox; [`spawn_real_app`] starts real workers, for the tests of what code
//! does. Tests that need real workers, PostgreSQL or slapd are marked
//! `#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]`: the build script turns
//! `full_suite` on when `O16N_FULL_SUITE` is set (as `scripts/test.sh` does, after installing
//! them), so that elsewhere they are reported as ignored, with the reason, instead of failing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use o16n_compute::testing::FakeCompute;

use o16n_server::config::Config;
use o16n_server::startup::{Application, Bootstrap};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) const ADMIN_PASSWORD: &str = "Admin-Pass-1";

/// A running server and a client for it.
pub(crate) struct TestApp {
    pub(crate) app: o16n_app::App,
    pub(crate) address: String,
    pub(crate) client: reqwest::Client,
    pub(crate) data_dir: tempfile::TempDir,
    /// The server's clock, to move forward instead of waiting for an expiry.
    pub(crate) clock: o16n_types::Clock,
    /// The in-memory compute node of a server from [`spawn_app`]; `None` for real workers.
    pub(crate) fake: Option<Arc<FakeCompute>>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// The interpreter of the Python runtime for tests: `scripts/test.sh` creates it with
/// `o16n runtime setup python` and exports its path.
pub(crate) fn test_python() -> PathBuf {
    let path = std::env::var_os("O16N_TEST_PYTHON").expect(
        "O16N_TEST_PYTHON must name a Python with the pinned packages; run scripts/test.sh, \
         or `o16n runtime setup python --data-dir DIR` and export the path it prints",
    );
    PathBuf::from(path)
}

/// The configuration of a test server: a fresh data directory, port 0, the test Python runtime
/// and no warm workers of either runtime (tests that use sessions ask for them).
pub(crate) fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.http.port = 0;
    config.runtime.python.executable = Some(test_python());
    config.runtime.python.initial_size = 0;
    config.runtime.r.initial_size = 0;
    config
}

/// Where a test server's work runs.
#[derive(Clone, Copy)]
enum Workers {
    /// An in-memory compute node.
    Fake,
    /// Real R and Python workers, sandboxed as in production.
    Real,
}

/// Starts a server on an in-memory compute node.
pub(crate) async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts a server on an in-memory compute node, with the configuration `adjust` changed.
pub(crate) async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    start_in(data_dir, Workers::Fake, adjust).await
}

/// Starts a server with real workers.
pub(crate) async fn spawn_real_app() -> TestApp {
    spawn_real_app_with(|_| {}).await
}

/// Starts a server with real workers, with the configuration `adjust` changed.
pub(crate) async fn spawn_real_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    start_in(data_dir, Workers::Real, adjust).await
}

/// Logs go to stderr when `TEST_LOG` is set (`TEST_LOG=1 cargo test ...`); tests are quiet
/// otherwise.
fn init_test_log() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if std::env::var_os("TEST_LOG").is_some() {
        ONCE.call_once(|| o16n_server::telemetry::init("info"));
    }
}

async fn start_in(
    data_dir: tempfile::TempDir,
    workers: Workers,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    init_test_log();
    let mut config = match workers {
        Workers::Real => test_config(data_dir.path()),
        Workers::Fake => {
            let mut config = Config {
                data_dir: data_dir.path().to_path_buf(),
                ..Config::default()
            };
            config.http.port = 0;
            config
        }
    };
    adjust(&mut config);
    // A restarted server's compute node is new, as a real one would be: it holds nothing.
    let fake = matches!(workers, Workers::Fake).then(|| Arc::new(FakeCompute::new()));
    let bootstrap = Bootstrap {
        admin_password: Some(SecretString::from(ADMIN_PASSWORD)),
        compute: fake
            .clone()
            .map(|fake| fake as Arc<dyn o16n_compute::Compute>),
    };
    let application = Application::build(&config, bootstrap).await.unwrap();
    let app = application
        .app()
        .expect("a one-box server has the use cases");
    let address = format!("http://{}", application.local_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        app,
        address,
        client: reqwest::Client::new(),
        data_dir,
        clock: config.clock.clone(),
        fake,
        stop: Some(stop),
        server: Some(server),
    }
}

impl TestApp {
    /// Stops the server gracefully and starts a new one on the same data directory.
    pub(crate) async fn restart(self) -> TestApp {
        self.restart_with(|_| {}).await
    }

    /// Stops the server gracefully and starts a new one on the same data directory, with the
    /// configuration changed by `adjust`.
    pub(crate) async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        self.stop.take().unwrap().send(()).unwrap();
        self.server.take().unwrap().await.unwrap().unwrap();
        let data_dir = std::mem::replace(&mut self.data_dir, tempfile::tempdir().unwrap());
        let workers = if self.fake.is_some() {
            Workers::Fake
        } else {
            Workers::Real
        };
        start_in(data_dir, workers, adjust).await
    }

    /// Adds a local user and returns a token of theirs.
    pub(crate) async fn user_token(&self, name: &str, role: o16n_types::Role) -> String {
        let password = "User-Pass-1";
        self.app.add_user(name, role, password).await.unwrap();
        let (status, body) = self.login(name, password).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and body.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, body)
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await
    }

    /// Logs in as admin and returns the whole token response.
    pub(crate) async fn admin_tokens(&self) -> Value {
        let (status, body) = self.login("admin", ADMIN_PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub(crate) async fn admin_token(&self) -> String {
        self.admin_tokens().await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The server still answers: a fresh login works.
    pub(crate) async fn assert_still_serving(&self) {
        self.admin_token().await;
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Asserts the reference `Error` shape and returns its message.
pub(crate) fn assert_error_shape(body: &Value) -> &str {
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert!(object["link"].is_string(), "{body}");
    assert!(object["exceptionType"].is_string(), "{body}");
    object["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body}"))
}
