//! Hostile code against the worker sandbox: a Contributor's Python and R sessions and a
//! published service try to reach the server's secrets, another user's session, the server's
//! process, the machine's resources and the network. Every attempt must fail inside the
//! sandbox while the server and the other user's session stay healthy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape, spawn_real_app_with};
use crate::sessions::{create_session, execute};

/// The secret a second user keeps in their session's working directory.
const SECRET: &str = "the secret of bob";

/// A server whose workers have the network cut off and small limits, so that the limits are
/// quick to hit.
async fn spawn_locked_down_app() -> TestApp {
    spawn_real_app_with(|config| {
        config.runtime.sandbox.network = false;
        config.runtime.sandbox.max_processes = 64;
        config.runtime.sandbox.max_file_size_mb = 1;
    })
    .await
}

/// What the attacks aim at, as the attacker might learn it.
struct Targets {
    data_dir: PathBuf,
    /// The file in the other user's working directory (found on the host by the test).
    other_secret: PathBuf,
    server_pid: u32,
    /// A TCP port that accepts connections on the host's loopback.
    port: u16,
}

impl Targets {
    fn inputs(&self) -> Value {
        json!([
            {"name": "data_dir", "value": self.data_dir.to_string_lossy()},
            {"name": "other_secret", "value": self.other_secret.to_string_lossy()},
            {"name": "server_pid", "value": self.server_pid},
            {"name": "port", "value": self.port},
        ])
    }
}

/// Python code that tries every attack and leaves `results`: attack name to outcome.
const PYTHON_ATTACKS: &str = r#"
import json, os, signal, socket
results = {}
def attempt(name, action):
    try:
        action()
        results[name] = "succeeded"
    except BaseException as problem:
        results[name] = "failed: %s: %s" % (type(problem).__name__, problem)
def read(path):
    with open(path, "rb") as handle:
        handle.read(16)
def refuse_if(condition, what):
    if condition:
        raise PermissionError(what)
attempt("read the database", lambda: read(os.path.join(data_dir, "o16n.db")))
attempt("read the admin password", lambda: read(os.path.join(data_dir, "admin-password")))
attempt("read the configuration", lambda: read(os.path.join(data_dir, "o16n.toml")))
attempt("list the data directory", lambda: os.listdir(data_dir))
attempt("read another user's file", lambda: read(other_secret))
def overwrite_other():
    with open(other_secret, "w") as handle:
        handle.write("mallory was here")
attempt("write another user's file", overwrite_other)
attempt("read the server's environ", lambda: read("/proc/%d/environ" % server_pid))
attempt("read the server's command line", lambda: read("/proc/%d/cmdline" % server_pid))
own = ("O16N_PRELOAD", "O16N_MAX_CONSOLE_BYTES")
leaked = sorted(name for name in os.environ if name.startswith("O16N_") and name not in own)
attempt("see the server's environment", lambda: refuse_if(not leaked, "only the worker's own variables"))
attempt("signal the server", lambda: os.kill(server_pid, signal.SIGTERM))
def signal_others():
    # Its own threads' ids would signal the worker itself.
    mine = {int(task) for task in os.listdir("/proc/self/task")}
    for pid in range(1, 65536):
        if pid in mine:
            continue
        try:
            os.kill(pid, 0)
        except (ProcessLookupError, PermissionError, OverflowError):
            continue
        os.kill(pid, signal.SIGKILL)
        return
    raise ProcessLookupError("no other process can be signalled")
attempt("signal another process", signal_others)
def write_big_file():
    with open("big.bin", "wb") as handle:
        handle.write(b"x" * (2 * 1024 * 1024))
attempt("write past the file-size limit", write_big_file)
attempt("connect over TCP", lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close())
attempt("run as root", lambda: refuse_if(os.getuid() != 0, "uid %d" % os.getuid()))
import ctypes, platform
libc = ctypes.CDLL(None, use_errno=True)
def keyring():
    number = {"x86_64": 250, "aarch64": 219}[platform.machine()]
    if libc.syscall(number, 1, None) < 0:  # KEYCTL_JOIN_SESSION_KEYRING
        raise OSError(ctypes.get_errno(), "keyctl")
attempt("use the kernel keyring", keyring)
def user_namespace():
    # From a child of one thread: a process with threads may not change user namespace.
    child = os.fork()
    if child == 0:
        os._exit(0 if libc.unshare(0x10000000) == 0 else 1)  # CLONE_NEWUSER
    if os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) != 0:
        raise PermissionError("unshare refused")
attempt("make a user namespace", user_namespace)
report = json.dumps(results)
"#;

/// The same attacks in R; `results` holds the outcomes.
const R_ATTACKS: &str = r#"
results <- list()
attempt <- function(name, action) {
  outcome <- tryCatch({ action(); "succeeded" },
    error = function(e) paste("failed:", conditionMessage(e)),
    warning = function(w) paste("failed:", conditionMessage(w)))
  results[[name]] <<- outcome
}
read <- function(path) { connection <- file(path, "rb"); on.exit(close(connection)); readBin(connection, "raw", 16) }
attempt("read the database", function() read(file.path(data_dir, "o16n.db")))
attempt("read the admin password", function() read(file.path(data_dir, "admin-password")))
attempt("read the configuration", function() read(file.path(data_dir, "o16n.toml")))
attempt("list the data directory", function() if (!dir.exists(data_dir)) stop("no such directory") else list.files(data_dir))
attempt("read another user's file", function() read(other_secret))
attempt("write another user's file", function() writeLines("mallory was here", other_secret))
attempt("read the server's environ", function() read(sprintf("/proc/%d/environ", server_pid)))
attempt("signal the server", function() if (!tools::pskill(server_pid, tools::SIGTERM)) stop("refused"))
leaked <- setdiff(grep("^O16N_", names(Sys.getenv()), value = TRUE), "O16N_PRELOAD")
attempt("see the server's environment", function() if (length(leaked) == 0) stop("only the worker's own variables"))
# Before the fork bomb below, whose children hold the process limit.
attempt("use the kernel keyring from a child process", function() {
  probe <- paste0("import ctypes, platform, sys; number = {'x86_64': 250, 'aarch64': 219}",
                  "[platform.machine()]; sys.exit(0 if ctypes.CDLL(None).syscall(number, 1, None) >= 0 else 1)")
  status <- system2("/usr/bin/python3", c("-c", shQuote(probe)), stdout = TRUE, stderr = TRUE)
  if (!is.null(attr(status, "status"))) stop(paste("refused:", paste(status, collapse = " ")))
})
attempt("fork without limit", function() {
  children <- list()
  for (i in 1:1000) children[[i]] <- parallel::mcparallel(Sys.sleep(60))
})
attempt("write past the file-size limit", function() {
  writeBin(raw(2 * 1024 * 1024), "big.bin")
  if (file.size("big.bin") < 2 * 1024 * 1024) stop("the file was cut at the limit")
})
attempt("connect over TCP", function() close(socketConnection("127.0.0.1", port, open = "r+b", timeout = 5)))
attempt("run as root", function() if (Sys.info()[["effective_user"]] != "root") stop("not root"))
report <- jsonlite::toJSON(results, auto_unbox = TRUE)
"#;

/// Listens on the host's loopback, as a database a service might call would.
fn listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Finds, from the host, the working directory that holds `file_name`.
fn find_in_work_dirs(data_dir: &Path, file_name: &str) -> PathBuf {
    std::fs::read_dir(data_dir.join("work"))
        .unwrap()
        .map(|entry| entry.unwrap().path().join(file_name))
        .find(|path| path.exists())
        .unwrap_or_else(|| panic!("no working directory holds {file_name}"))
}

/// Bob, a second user, keeps a secret in a session of his own; returns his token, the session
/// and the secret's path on the host.
async fn bobs_session(app: &TestApp, runtime: &str) -> (String, String, PathBuf) {
    let bob = app.user_token("bob", Role::Contributor).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&bob),
            Some(json!({"runtimeType": runtime})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = body["sessionId"].as_str().unwrap().to_owned();
    let code = match runtime {
        "R" => format!("writeLines('{SECRET}', 'secret.txt')"),
        _ => format!("open('secret.txt', 'w').write('{SECRET}')"),
    };
    let written = execute(app, &bob, &session, json!({"code": code})).await;
    assert_eq!(written["success"], true, "{written}");
    let path = find_in_work_dirs(app.data_dir.path(), "secret.txt");
    (bob, session, path)
}

fn targets(app: &TestApp, other_secret: PathBuf, port: u16) -> Targets {
    std::fs::write(app.data_dir.path().join("o16n.toml"), "[http]\nport = 0\n").unwrap();
    std::fs::write(app.data_dir.path().join("admin-password"), "Admin-Pass-1\n").unwrap();
    Targets {
        data_dir: app.data_dir.path().to_path_buf(),
        other_secret,
        server_pid: std::process::id(),
        port,
    }
}

/// Runs the attacks in a session and returns their outcomes.
async fn attack_in_session(
    app: &TestApp,
    token: &str,
    session: &str,
    code: &str,
    targets: &Targets,
) -> BTreeMap<String, String> {
    let outcome = execute(
        app,
        token,
        session,
        json!({"code": code, "inputParameters": targets.inputs(), "outputParameters": ["report"]}),
    )
    .await;
    assert_eq!(outcome["success"], true, "{outcome}");
    let report = outcome["outputParameters"][0]["value"].as_str().unwrap();
    serde_json::from_str(report).unwrap()
}

fn assert_all_failed(results: &BTreeMap<String, String>, expected_attacks: usize) {
    assert_eq!(results.len(), expected_attacks, "{results:#?}");
    let succeeded: Vec<_> = results
        .iter()
        .filter(|(_, outcome)| !outcome.starts_with("failed"))
        .collect();
    assert!(
        succeeded.is_empty(),
        "attacks that succeeded: {succeeded:#?}"
    );
}

/// The server and the other user's session are as they were.
async fn assert_unharmed(app: &TestApp, bob: &str, session: &str, secret: &Path, code: &str) {
    app.assert_still_serving().await;
    assert_eq!(std::fs::read_to_string(secret).unwrap().trim(), SECRET);
    let alive = execute(app, bob, session, json!({"code": code})).await;
    assert_eq!(alive["success"], true, "{alive}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn hostile_python_in_a_session_fails_inside_its_sandbox() {
    let app = spawn_locked_down_app().await;
    let (bob, bobs, secret) = bobs_session(&app, "Python").await;
    let (_listener, port) = listener();
    let targets = targets(&app, secret.clone(), port);
    let mallory = app.user_token("mallory", Role::Contributor).await;
    let session = create_session(&app, &mallory).await;

    let results = attack_in_session(&app, &mallory, &session, PYTHON_ATTACKS, &targets).await;

    assert_all_failed(&results, 16);
    assert!(
        results["write past the file-size limit"].contains("File too large"),
        "{results:#?}"
    );
    assert_unharmed(&app, &bob, &bobs, &secret, "x = 1").await;
    // The attacker's own session lives on too.
    let after = execute(&app, &mallory, &session, json!({"code": "y = 2"})).await;
    assert_eq!(after["success"], true, "{after}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_python_fork_bomb_stops_at_the_process_limit_of_its_sandbox() {
    let app = spawn_locked_down_app().await;
    let (bob, bobs, secret) = bobs_session(&app, "Python").await;
    let mallory = app.user_token("mallory", Role::Contributor).await;
    let session = create_session(&app, &mallory).await;

    let bomb = execute(
        &app,
        &mallory,
        &session,
        json!({"code": "import os, time\nforked = 0\ntry:\n    for _ in range(100000):\n        if os.fork() == 0:\n            time.sleep(120)\n            os._exit(0)\n        forked += 1\nfinally:\n    print('forked', forked)",
               "outputParameters": ["forked"]}),
    )
    .await;

    assert_eq!(bomb["success"], false, "{bomb}");
    assert!(
        bomb["errorMessage"]
            .as_str()
            .unwrap()
            .contains("Resource temporarily unavailable"),
        "{bomb}"
    );
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{session}/force"),
            Some(&mallory),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_unharmed(&app, &bob, &bobs, &secret, "x = 1").await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn hostile_r_in_a_session_fails_inside_its_sandbox() {
    let app = spawn_locked_down_app().await;
    let (bob, bobs, secret) = bobs_session(&app, "R").await;
    let (_listener, port) = listener();
    let targets = targets(&app, secret.clone(), port);
    let mallory = app.user_token("mallory", Role::Contributor).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&mallory),
            Some(json!({"runtimeType": "R"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = body["sessionId"].as_str().unwrap().to_owned();

    let results = attack_in_session(&app, &mallory, &session, R_ATTACKS, &targets).await;

    assert_all_failed(&results, 14);
    assert_unharmed(&app, &bob, &bobs, &secret, "x <- 1").await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_hostile_published_service_fails_inside_its_sandbox() {
    let app = spawn_locked_down_app().await;
    let (bob, bobs, secret) = bobs_session(&app, "Python").await;
    let (_listener, port) = listener();
    let targets = targets(&app, secret.clone(), port);
    let mallory = app.user_token("mallory", Role::Contributor).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/services/snoop/v1",
            Some(&mallory),
            Some(json!({
                "code": PYTHON_ATTACKS,
                "runtimeType": "Python",
                "inputParameterDefinitions": [
                    {"name": "data_dir", "type": "character"},
                    {"name": "other_secret", "type": "character"},
                    {"name": "server_pid", "type": "integer"},
                    {"name": "port", "type": "integer"},
                ],
                "outputParameterDefinitions": [{"name": "report", "type": "character"}],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let inputs: serde_json::Map<String, Value> = targets
        .inputs()
        .as_array()
        .unwrap()
        .iter()
        .map(|input| {
            (
                input["name"].as_str().unwrap().to_owned(),
                input["value"].clone(),
            )
        })
        .collect();

    let (status, outcome) = app
        .call(
            Method::POST,
            "/api/snoop/v1",
            Some(&mallory),
            Some(Value::Object(inputs)),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["success"], true, "{outcome}");
    let report = outcome["outputParameters"]["report"]
        .as_str()
        .unwrap_or_else(|| panic!("{outcome}"));
    let results: BTreeMap<String, String> = serde_json::from_str(report).unwrap();
    assert_all_failed(&results, 16);
    assert_unharmed(&app, &bob, &bobs, &secret, "x = 1").await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn workers_have_user_ids_of_their_own_and_only_their_own_variables() {
    let app = spawn_real_app_with(|_| {}).await;
    let token = app.admin_token().await;
    let first = create_session(&app, &token).await;
    let second = create_session(&app, &token).await;
    let code = "import os\nuid = os.getuid()\nvariables = sorted(os.environ)\nhome = os.getcwd()";
    let describe = |session: String| {
        let (app, token) = (&app, &token);
        async move {
            let outcome = execute(
                app,
                token,
                &session,
                json!({"code": code, "outputParameters": ["uid", "variables", "home"]}),
            )
            .await;
            assert_eq!(outcome["success"], true, "{outcome}");
            outcome["outputParameters"].clone()
        }
    };
    let (first, second) = (describe(first).await, describe(second).await);

    let (first_uid, second_uid) = (
        first[0]["value"].as_u64().unwrap(),
        second[0]["value"].as_u64().unwrap(),
    );
    assert_ne!(first_uid, 0);
    assert_ne!(first_uid, second_uid);
    let variables: Vec<&str> = first[1]["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap())
        .collect();
    for variable in &variables {
        assert!(
            [
                "HOME",
                "LANG",
                "LOGNAME",
                "PATH",
                "PWD",
                "TMPDIR",
                "USER",
                "O16N_PRELOAD",
                "O16N_MAX_CONSOLE_BYTES",
                "PYTHONDONTWRITEBYTECODE",
                "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS",
                "MKL_NUM_THREADS",
                // Set by the scientific libraries as they load, not by the server.
                "KMP_DUPLICATE_LIB_OK",
                "KMP_INIT_AT_FORK",
            ]
            .contains(variable),
            "unexpected variable {variable} in {variables:?}"
        );
    }
    assert_eq!(first[2]["value"], "/home/o16n");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_worker_that_announces_a_huge_message_is_stopped_with_a_clear_error() {
    let app = spawn_real_app_with(|config| config.runtime.max_frame_mb = 1).await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;
    // User code finds the worker's protocol channel and announces a 2 GiB frame on it.
    let forge = "import gc, os\nchannel = next(o for o in gc.get_objects() if type(o).__name__ == 'Channel')\nos.write(channel._write_fd, b'\\x7f\\xff\\xff\\xff')\nimport time\ntime.sleep(5)";

    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/execute"),
            Some(&token),
            Some(json!({"code": forge})),
        )
        .await;

    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(
        assert_error_shape(&body).contains("larger than 1 MiB"),
        "{body}"
    );
    app.assert_still_serving().await;
    let fresh = create_session(&app, &token).await;
    let works = execute(&app, &token, &fresh, json!({"code": "x = 1"})).await;
    assert_eq!(works["success"], true, "{works}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn without_the_sandbox_status_warns_that_user_code_is_not_isolated() {
    let app = spawn_real_app_with(|config| config.runtime.sandbox.enabled = false).await;
    let token = app.admin_token().await;

    let (status, body) = app.call(Method::GET, "/status", Some(&token), None).await;

    assert_eq!(status, StatusCode::OK, "{body}");
    let runtimes = &body["components"]["runtimes"];
    assert_eq!(runtimes["statusCode"], "warn", "{body}");
    assert_eq!(runtimes["details"]["sandboxed"], false, "{body}");
    assert!(
        runtimes["details"]["isolation"]
            .as_str()
            .unwrap()
            .contains("not isolated"),
        "{body}"
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_control_request_over_one_mebibyte_is_refused_before_it_is_parsed() {
    let app = spawn_real_app_with(|_| {}).await;
    let huge = format!(
        "{{\"username\": \"admin\", \"password\": \"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );

    let response = app
        .client
        .post(app.url("/login"))
        .header("Content-Type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_error_shape(&body);
    app.assert_still_serving().await;
}
