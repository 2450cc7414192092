//! Session APIs against real Python workers.

use std::time::Duration;

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape, spawn_real_app_with, test_python};

/// A server with one warm Python worker.
pub(crate) async fn spawn_python_app() -> TestApp {
    spawn_real_app_with(|config| config.runtime.python.initial_size = 1).await
}

/// Creates a Python session and returns its id.
pub(crate) async fn create_session(app: &TestApp, token: &str) -> String {
    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(token),
            Some(json!({"runtimeType": "Python"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["sessionId"].as_str().unwrap().to_owned()
}

/// Runs code in a session and returns the `ExecuteResponse`.
pub(crate) async fn execute(app: &TestApp, token: &str, session: &str, body: Value) -> Value {
    let (status, response) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/execute"),
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response
}

/// Snapshots a session under an optional name and returns the snapshot id.
pub(crate) async fn take_snapshot(
    app: &TestApp,
    token: &str,
    session: &str,
    name: Option<&str>,
) -> String {
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/snapshot"),
            Some(token),
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["snapshotId"].as_str().unwrap().to_owned()
}

/// Starts an execution in the background; the handle yields its status and body.
pub(crate) fn execute_in_background(
    app: &TestApp,
    token: &str,
    session: &str,
    code: &str,
) -> tokio::task::JoinHandle<(StatusCode, Value)> {
    let request = app
        .client
        .post(app.url(&format!("/sessions/{session}/execute")))
        .bearer_auth(token)
        .json(&json!({"code": code}));
    tokio::spawn(async move {
        let response = request.send().await.unwrap();
        let status = response.status();
        (
            status,
            response.json::<Value>().await.unwrap_or(Value::Null),
        )
    })
}

/// Waits until the session's running execution has printed `marker`, so that what a test does
/// next acts on code known to be running rather than on a guess of how long it takes to start.
pub(crate) async fn wait_until_printed(app: &TestApp, token: &str, session: &str, marker: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, body) = app
            .call(
                Method::GET,
                &format!("/sessions/{session}/console-output"),
                Some(token),
                None,
            )
            .await;
        if body["consoleOutput"]
            .as_str()
            .is_some_and(|text| text.contains(marker))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the execution never printed {marker:?}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serializes a Python expression with dill in the test interpreter.
pub(crate) fn dill_bytes(expression: &str) -> Vec<u8> {
    let output = std::process::Command::new(test_python())
        .args([
            "-c",
            &format!("import dill, sys; sys.stdout.buffer.write(dill.dumps({expression}))"),
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Reads dill bytes back to their `repr` in the test interpreter.
fn dill_repr(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(test_python())
        .args([
            "-c",
            "import dill, sys; print(repr(dill.loads(sys.stdin.buffer.read())), end='')",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_session_is_created_listed_for_its_owner_only_and_closed() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let other = app.user_token("jane", Role::Contributor).await;

    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&token),
            Some(json!({"name": "work", "runtimeType": "Python"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["sessionId"].as_str().unwrap();

    let (_, listed) = app.call(Method::GET, "/sessions", Some(&token), None).await;
    assert_eq!(
        listed,
        json!([{"id": id, "name": "work", "owner": "admin", "runtimeType": "Python"}])
    );
    let (_, theirs) = app.call(Method::GET, "/sessions", Some(&other), None).await;
    assert_eq!(theirs, json!([]));

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = app.call(Method::GET, "/sessions", Some(&token), None).await;
    assert_eq!(listed, json!([]));
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{id}/execute"),
            Some(&token),
            Some(json!({"code": "1"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn execute_binds_inputs_reads_outputs_and_keeps_state_between_calls() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let first = execute(
        &app,
        &token,
        &session,
        json!({
            "code": "import numpy as np\nimport pandas as pd\nv = np.array(xs) * k\nm = np.matrix([[1, 2], [3, 4]])\ndf = pd.DataFrame({'a': [1, 2], 'b': [0.5, None]})\nprint('scaled', k)",
            "inputParameters": [{"name": "xs", "value": [1.5, 2.5]}, {"name": "k", "value": 2}],
            "outputParameters": ["v", "m", "df", "k", "missing"]
        }),
    )
    .await;
    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["errorMessage"], "");
    assert_eq!(first["consoleOutput"], "scaled 2\n");
    assert_eq!(
        first["outputParameters"],
        json!([
            {"name": "v", "value": [3.0, 5.0]},
            {"name": "m", "value": [[1, 2], [3, 4]]},
            {"name": "df", "value": {"a": [1, 2], "b": [0.5, null]}},
            {"name": "k", "value": 2},
            {"name": "missing", "value": null}
        ])
    );

    let second = execute(
        &app,
        &token,
        &session,
        json!({"code": "total = float(v.sum()) + k", "outputParameters": ["total"]}),
    )
    .await;
    assert_eq!(
        second["outputParameters"],
        json!([{"name": "total", "value": 10.0}])
    );

    let (_, history) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/history"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(history.as_array().unwrap().len(), 2);
    assert_eq!(history[1], "total = float(v.sum()) + k");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_exception_is_reported_with_its_traceback_and_the_session_lives_on() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;
    execute(&app, &token, &session, json!({"code": "kept = 41"})).await;

    let failed = execute(
        &app,
        &token,
        &session,
        json!({"code": "def f():\n    raise ValueError('bad value')\nf()"}),
    )
    .await;
    assert_eq!(failed["success"], false);
    let message = failed["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("Traceback") && message.contains("ValueError: bad value"),
        "{message}"
    );
    assert!(
        !message.contains("o16n_worker"),
        "worker frames leak into the traceback: {message}"
    );

    let syntax = execute(&app, &token, &session, json!({"code": "def ("})).await;
    assert_eq!(syntax["success"], false);
    assert!(
        syntax["errorMessage"]
            .as_str()
            .unwrap()
            .contains("SyntaxError")
    );

    let after = execute(
        &app,
        &token,
        &session,
        json!({"code": "kept += 1", "outputParameters": ["kept"]}),
    )
    .await;
    assert_eq!(after["outputParameters"][0]["value"], 42);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_output_without_a_json_form_is_an_error_naming_it() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let result = execute(
        &app,
        &token,
        &session,
        json!({"code": "import threading\nlock = threading.Lock()", "outputParameters": ["lock"]}),
    )
    .await;

    assert_eq!(result["success"], false);
    let message = result["errorMessage"].as_str().unwrap();
    assert!(
        message.contains("`lock`") && message.contains("no JSON form"),
        "{message}"
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn printing_to_stdout_stderr_and_from_subprocesses_never_corrupts_the_protocol() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let code = "import os, sys\nprint('x' * 100000)\nsys.stderr.write('to stderr\\n')\nos.write(1, b'raw fd 1\\n')\nos.write(2, b'raw fd 2\\n')\nos.system('echo from a subprocess')\nsys.__stdout__.write('dunder stdout\\n')\nanswer = 42";
    let result = execute(
        &app,
        &token,
        &session,
        json!({"code": code, "outputParameters": ["answer"]}),
    )
    .await;

    assert_eq!(result["success"], true, "{result}");
    assert_eq!(result["outputParameters"][0]["value"], 42);
    let console = result["consoleOutput"].as_str().unwrap();
    for expected in [
        "to stderr",
        "raw fd 1",
        "raw fd 2",
        "from a subprocess",
        "dunder stdout",
    ] {
        assert!(console.contains(expected), "missing {expected:?}");
    }
    assert!(console.len() > 100_000);
    let next = execute(
        &app,
        &token,
        &session,
        json!({"code": "print('still fine')"}),
    )
    .await;
    assert_eq!(next["consoleOutput"], "still fine\n");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn console_output_can_be_read_while_the_code_runs() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let running = execute_in_background(
        &app,
        &token,
        &session,
        "import time\nfor i in range(30):\n    print('tick', i, flush=True)\n    time.sleep(0.05)",
    );
    wait_until_printed(&app, &token, &session, "tick 0").await;
    let (status, partial) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/console-output"),
            Some(&token),
            None,
        )
        .await;
    let (_, finished) = running.await.unwrap();

    assert_eq!(status, StatusCode::OK);
    let partial = partial["consoleOutput"].as_str().unwrap();
    assert!(partial.contains("tick 0"), "{partial:?}");
    assert!(
        !partial.contains("tick 29"),
        "the execution had already ended: {partial:?}"
    );
    assert!(
        finished["consoleOutput"]
            .as_str()
            .unwrap()
            .contains("tick 29")
    );
    let (_, last) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/console-output"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(last["consoleOutput"], finished["consoleOutput"]);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn cancel_interrupts_a_busy_loop_and_the_session_stays_usable() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;
    execute(&app, &token, &session, json!({"code": "state = 'kept'"})).await;

    let running = execute_in_background(
        &app,
        &token,
        &session,
        "print('started', flush=True)\nwhile True: pass",
    );
    wait_until_printed(&app, &token, &session, "started").await;
    let (status, _) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/cancel"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, cancelled) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("cancel stops the loop")
        .unwrap();

    assert_eq!(cancelled["success"], false);
    assert!(
        cancelled["errorMessage"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{cancelled}"
    );
    let after = execute(
        &app,
        &token,
        &session,
        json!({"code": "", "outputParameters": ["state"]}),
    )
    .await;
    assert_eq!(after["outputParameters"][0]["value"], "kept");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn force_close_kills_a_running_session() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let running = execute_in_background(
        &app,
        &token,
        &session,
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nprint('started', flush=True)\nwhile True: pass",
    );
    wait_until_printed(&app, &token, &session, "started").await;
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{session}/force"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (running_status, _) = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("the kill ends the request")
        .unwrap();
    assert_eq!(running_status, StatusCode::GONE);
    let (_, listed) = app.call(Method::GET, "/sessions", Some(&token), None).await;
    assert_eq!(listed, json!([]));
    // The pool still serves.
    let again = create_session(&app, &token).await;
    assert_eq!(
        execute(
            &app,
            &token,
            &again,
            json!({"code": "x = 1", "outputParameters": ["x"]})
        )
        .await["outputParameters"][0]["value"],
        1
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_crashing_worker_is_reported_and_the_pool_heals() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/execute"),
            Some(&token),
            Some(json!({"code": "import os\nos._exit(1)"})),
        )
        .await;

    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(assert_error_shape(&body).contains("exit code 1"), "{body}");
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/history"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::GONE);
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{session}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let fresh = create_session(&app, &token).await;
    let result = execute(
        &app,
        &token,
        &fresh,
        json!({"code": "y = 2", "outputParameters": ["y"]}),
    )
    .await;
    assert_eq!(result["outputParameters"][0]["value"], 2);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn files_are_uploaded_listed_downloaded_overwritten_and_deleted() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;
    let upload = |name: &str, content: &'static str| {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(content.as_bytes()).file_name(name.to_owned()),
        );
        app.client
            .post(app.url(&format!("/sessions/{session}/files")))
            .bearer_auth(&token)
            .multipart(form)
            .send()
    };

    assert_eq!(
        upload("data.csv", "a,b\n1,2\n").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_eq!(
        upload("data.csv", "a,b\n3,4\n").await.unwrap().status(),
        StatusCode::CREATED
    );
    let read = execute(&app, &token, &session, json!({"code": "import pandas as pd\ntotal = int(pd.read_csv('data.csv').sum().sum())\nopen('made.txt', 'w').write('by code')", "outputParameters": ["total"]})).await;
    assert_eq!(
        read["outputParameters"][0]["value"], 7,
        "the second upload replaced the first"
    );
    assert_eq!(read["changedFiles"], json!(["made.txt"]));

    let (_, files) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/files"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(files, json!(["data.csv", "made.txt"]));
    let download = app
        .client
        .get(app.url(&format!("/sessions/{session}/files/made.txt")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.text().await.unwrap(), "by code");

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{session}/files/made.txt"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/files/made.txt"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn path_like_file_names_are_refused() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    for name in [
        "../escape.txt",
        "/etc/passwd",
        "a/b.txt",
        "..",
        "dir\\\\file",
    ] {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name(name.to_owned()),
        );
        let response = app
            .client
            .post(app.url(&format!("/sessions/{session}/files")))
            .bearer_auth(&token)
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{name}");
        assert_error_shape(&response.json().await.unwrap());
    }
    for encoded in ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", ".."] {
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/sessions/{session}/files/{encoded}"),
                Some(&token),
                None,
            )
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{encoded}: {status}"
        );
        let (status, _) = app
            .call(
                Method::DELETE,
                &format!("/sessions/{session}/files/{encoded}"),
                Some(&token),
                None,
            )
            .await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{encoded}: {status}"
        );
    }
    assert!(!app.data_dir.path().join("escape.txt").exists());
    let (_, files) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/files"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(files, json!([]));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn workspace_objects_travel_as_dill_and_bad_bytes_leave_the_session_unharmed() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;
    let put = |name: &str, bytes: Vec<u8>| {
        app.client
            .post(app.url(&format!("/sessions/{session}/workspace/{name}")))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
    };

    assert_eq!(
        put("model", dill_bytes("{'w': 2.0, 'b': 0.5}"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let used = execute(
        &app,
        &token,
        &session,
        json!({"code": "y = model['w'] * 3 + model['b']", "outputParameters": ["y"]}),
    )
    .await;
    assert_eq!(used["outputParameters"][0]["value"], 6.5);

    let bad = put("broken", b"this is not a pickle".to_vec())
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let message = bad.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("unpickled"), "{message}");
    let bad_name = put("__builtins__", dill_bytes("1")).await.unwrap();
    assert_eq!(bad_name.status(), StatusCode::BAD_REQUEST);

    let (_, names) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/workspace"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(names, json!(["model", "y"]));
    let download = app
        .client
        .get(app.url(&format!("/sessions/{session}/workspace/model")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        dill_repr(&download.bytes().await.unwrap()),
        "{'w': 2.0, 'b': 0.5}"
    );

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{session}/workspace/model"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/sessions/{session}/workspace/model"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn another_users_session_is_not_found_for_every_operation() {
    let app = spawn_python_app().await;
    let owner = app.admin_token().await;
    let intruder = app.user_token("mallory", Role::Owner).await;
    let session = create_session(&app, &owner).await;

    let attempts = [
        (
            Method::POST,
            format!("/sessions/{session}/execute"),
            Some(json!({"code": "1"})),
        ),
        (Method::POST, format!("/sessions/{session}/cancel"), None),
        (
            Method::GET,
            format!("/sessions/{session}/console-output"),
            None,
        ),
        (Method::GET, format!("/sessions/{session}/history"), None),
        (Method::GET, format!("/sessions/{session}/files"), None),
        (Method::GET, format!("/sessions/{session}/workspace"), None),
        (
            Method::POST,
            format!("/sessions/{session}/snapshot"),
            Some(json!({})),
        ),
        (Method::DELETE, format!("/sessions/{session}/force"), None),
        (Method::DELETE, format!("/sessions/{session}"), None),
    ];
    for (method, path, body) in attempts {
        let (status, response) = app.call(method.clone(), &path, Some(&intruder), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_error_shape(&response);
    }
    // The owner's session is untouched.
    assert_eq!(
        execute(
            &app,
            &owner,
            &session,
            json!({"code": "z = 3", "outputParameters": ["z"]})
        )
        .await["outputParameters"][0]["value"],
        3
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn without_r_installed_r_sessions_and_status_say_so_clearly() {
    let app =
        spawn_real_app_with(|config| config.runtime.r.rscript = "/nonexistent/Rscript".into())
            .await;
    let token = app.admin_token().await;

    // R is the default runtime, so an empty request asks for R.
    for body in [json!({"runtimeType": "R"}), json!({})] {
        let (status, response) = app
            .call(Method::POST, "/sessions", Some(&token), Some(body))
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            assert_error_shape(&response).contains("R is not installed"),
            "{response}"
        );
    }
    let (_, status) = app.call(Method::GET, "/status", Some(&token), None).await;
    let r = &status["components"]["runtimes"]["components"]["r"];
    assert_eq!(r["statusCode"], "fail");
    assert!(
        r["details"]["message"]
            .as_str()
            .unwrap()
            .contains("r-base-core"),
        "{r}"
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&token),
            Some(json!({"runtimeType": "Julia"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_long_execution_is_interrupted_at_the_time_limit_and_a_stubborn_one_killed() {
    let app = spawn_real_app_with(|config| {
        config.runtime.python.initial_size = 1;
        config.runtime.execution_timeout_seconds = 1;
    })
    .await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let interrupted = execute(
        &app,
        &token,
        &session,
        json!({"code": "import time\ntime.sleep(30)"}),
    )
    .await;
    assert_eq!(interrupted["success"], false);
    assert!(
        interrupted["errorMessage"]
            .as_str()
            .unwrap()
            .contains("time limit"),
        "{interrupted}"
    );
    let alive = execute(
        &app,
        &token,
        &session,
        json!({"code": "ok = True", "outputParameters": ["ok"]}),
    )
    .await;
    assert_eq!(alive["outputParameters"][0]["value"], true);

    let code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass";
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/execute"),
            Some(&token),
            Some(json!({"code": code})),
        )
        .await;
    assert_eq!(status, StatusCode::GONE);
    assert!(assert_error_shape(&body).contains("killed"), "{body}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn the_memory_limit_is_enforced_and_the_session_survives_it() {
    let app = spawn_real_app_with(|config| {
        config.runtime.python.initial_size = 1;
        config.runtime.python.memory_limit_mb = 1024;
    })
    .await;
    let token = app.admin_token().await;
    let session = create_session(&app, &token).await;

    let result = execute(
        &app,
        &token,
        &session,
        json!({"code": "big = bytearray(2 * 1024 ** 3)"}),
    )
    .await;

    assert_eq!(result["success"], false);
    assert!(
        result["errorMessage"]
            .as_str()
            .unwrap()
            .contains("MemoryError"),
        "{result}"
    );
    let after = execute(
        &app,
        &token,
        &session,
        json!({"code": "small = len(bytearray(10))", "outputParameters": ["small"]}),
    )
    .await;
    assert_eq!(after["outputParameters"][0]["value"], 10);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn idle_sessions_are_closed() {
    let app = spawn_real_app_with(|config| {
        config.runtime.python.initial_size = 1;
        config.runtime.session_idle_timeout_seconds = 60;
    })
    .await;
    let token = app.admin_token().await;
    let used = create_session(&app, &token).await;
    let unused = create_session(&app, &token).await;

    // Fifty seconds on, one session is used; another fifty, the other has been idle too long.
    app.clock.advance(Duration::from_secs(50));
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/sessions/{used}/history"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.clock.advance(Duration::from_secs(50));

    let (status, sessions) = app.call(Method::GET, "/sessions", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);
    let listed: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|session| session["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [used.as_str()], "{sessions}");
    let (status, body) = app
        .call(
            Method::GET,
            &format!("/sessions/{unused}/history"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/sessions/{used}/history"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn status_reports_the_python_pool() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let _session = create_session(&app, &token).await;

    // The leased worker is replaced in the background; wait (boundedly) for the replacement.
    let mut python = Value::Null;
    for _ in 0..150 {
        let (_, status) = app.call(Method::GET, "/status", Some(&token), None).await;
        python = status["components"]["runtimes"]["components"]["python"].clone();
        if python["details"]["idle"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(python["statusCode"], "pass");
    assert_eq!(python["details"]["busy"], 1);
    assert_eq!(python["details"]["currentSize"], 2);
    assert_eq!(python["details"]["maxSize"], 8);
}
