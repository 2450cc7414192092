//! Services Management and consumption with plain HTTP, against real Python workers.

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape};
use crate::sessions::spawn_python_app;

fn definition(code: &str) -> Value {
    json!({
        "code": code,
        "runtimeType": "Python",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}]
    })
}

async fn publish(app: &TestApp, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, path, Some(token), Some(body)).await
}

async fn consume(app: &TestApp, token: &str, path: &str, body: Value) -> Value {
    let (status, result) = app.call(Method::POST, path, Some(token), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{result}");
    result
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn publishing_follows_the_reference_rules_of_conflict_and_ownership() {
    let app = spawn_python_app().await;
    let admin = app.admin_token().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    let reader = app.user_token("rita", Role::Reader).await;

    let (status, body) = publish(&app, &jane, "/services/calc/v1", definition("y = x + 1")).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, "/api/calc/v1");

    let (status, body) = publish(&app, &jane, "/services/calc/v1", definition("y = x")).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "an existing name and version is 403 on this route"
    );
    assert!(assert_error_shape(&body).contains("PATCH"));

    let bob = app.user_token("bob", Role::Contributor).await;
    let (status, _) = publish(&app, &bob, "/services/calc/v2", definition("y = x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "another user owns the name");
    let (status, _) = publish(&app, &reader, "/services/mine/v1", definition("y = x")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Readers cannot publish");
    let (status, _) = publish(&app, &admin, "/services/calc/v2", definition("y = x + 2")).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "an Owner may publish to any name"
    );

    for (path, body) in [
        ("/services/bad%20name/v1", definition("y = x")),
        ("/services/calc/v..1%2F", definition("y = x")),
        ("/services/ok/v1", json!({"runtimeType": "Python"})),
        (
            "/services/ok/v1",
            json!({"code": "y = x", "inputParameterDefinitions": [{"name": "x", "type": "float"}]}),
        ),
        (
            "/services/ok/v1",
            json!({"code": "y = x", "outputFileNames": ["../etc/passwd"]}),
        ),
    ] {
        let (status, response) = publish(&app, &jane, path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {response}");
        assert_error_shape(&response);
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn listings_show_permissions_hide_code_and_order_versions_oldest_first() {
    let app = spawn_python_app().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    let bob = app.user_token("bob", Role::Contributor).await;
    for version in ["v2", "v1", "v3"] {
        publish(
            &app,
            &jane,
            &format!("/services/calc/{version}"),
            definition("y = x"),
        )
        .await;
    }

    let (_, versions) = app
        .call(Method::GET, "/services/calc", Some(&jane), None)
        .await;
    let order: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["version"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["v2", "v1", "v3"], "oldest first");

    let (status, mine) = app
        .call(Method::GET, "/services/calc/v1", Some(&jane), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mine = &mine[0];
    assert_eq!(mine["myPermissionOnService"], "read/write");
    assert_eq!(mine["code"], "y = x");
    assert_eq!(mine["versionPublishedBy"], "jane");
    assert_eq!(mine["runtimeType"], "Python");
    assert!(mine.as_object().unwrap().contains_key("description"));
    assert_eq!(mine["outputFileNames"], json!([]));

    let (_, theirs) = app
        .call(Method::GET, "/services/calc/v1", Some(&bob), None)
        .await;
    assert_eq!(theirs[0]["myPermissionOnService"], "read only");
    assert_eq!(theirs[0]["code"], Value::Null);
    let (_, all) = app.call(Method::GET, "/services", Some(&bob), None).await;
    assert_eq!(all.as_array().unwrap().len(), 3);
    let (status, _) = app
        .call(Method::GET, "/services/calc/v9", Some(&bob), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, empty) = app
        .call(Method::GET, "/services/nothing", Some(&bob), None)
        .await;
    assert_eq!((status, empty), (StatusCode::OK, json!([])));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn patch_changes_only_what_it_names_and_takes_effect_at_the_next_request() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let mut body = definition("y = x * factor");
    body["initCode"] = json!("factor = 2");
    body["description"] = json!("doubles");
    publish(&app, &token, "/services/calc/v1", body).await;
    assert_eq!(
        consume(&app, &token, "/api/calc/v1", json!({"x": 4})).await["outputParameters"]["y"],
        8.0
    );

    let (status, _) = app
        .call(
            Method::PATCH,
            "/services/calc/v1",
            Some(&token),
            Some(json!({"initCode": "factor = 3"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    assert_eq!(
        consume(&app, &token, "/api/calc/v1", json!({"x": 4})).await["outputParameters"]["y"],
        12.0
    );
    let (_, service) = app
        .call(Method::GET, "/services/calc/v1", Some(&token), None)
        .await;
    assert_eq!(service[0]["description"], "doubles");
    assert_eq!(service[0]["code"], "y = x * factor");
    assert_eq!(
        service[0]["inputParameterDefinitions"],
        json!([{"name": "x", "type": "numeric"}])
    );

    let (status, _) = app
        .call(Method::DELETE, "/services/calc/v1", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::POST,
            "/api/calc/v1",
            Some(&token),
            Some(json!({"x": 4})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn init_code_runs_once_per_worker_and_requests_do_not_leak_globals() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let body = json!({
        "code": "calls += 1\nseen = [calls, 'leak' in dir()]\nleak = 'set by a request'\nload_id = loaded\nopen('scratch.txt', 'w').write('x')",
        "initCode": "import uuid\nloaded = str(uuid.uuid4())\ncalls = 0",
        "runtimeType": "Python",
        "outputParameterDefinitions": [{"name": "seen", "type": "vector"}, {"name": "load_id", "type": "character"}],
        "outputFileNames": ["scratch.txt", "never.txt"]
    });
    publish(&app, &token, "/services/counter/v1", body).await;

    let first = consume(&app, &token, "/api/counter/v1", json!({})).await;
    let second = consume(&app, &token, "/api/counter/v1", json!({})).await;

    assert_eq!(first["success"], true, "{first}");
    assert_eq!(first["outputParameters"]["seen"], json!([1, false]));
    assert_eq!(
        second["outputParameters"]["seen"],
        json!([1, false]),
        "the first request's globals leaked"
    );
    assert_eq!(
        first["outputParameters"]["load_id"], second["outputParameters"]["load_id"],
        "initCode ran twice"
    );
    assert_eq!(first["outputFiles"]["scratch.txt"], "eA==");
    assert_eq!(first["outputFiles"]["never.txt"], Value::Null);
    assert_eq!(first["changedFiles"], json!(["scratch.txt"]));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_published_service_keeps_its_snapshot_and_survives_a_restart() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let session = crate::sessions::create_session(&app, &token).await;
    crate::sessions::execute(
        &app,
        &token,
        &session,
        json!({"code": "offset = 40\nopen('table.csv', 'w').write('2')"}),
    )
    .await;
    let snapshot = crate::sessions::take_snapshot(&app, &token, &session, None).await;
    let mut body = definition("y = x + offset + float(open('table.csv').read())");
    body["snapshotId"] = json!(snapshot);
    publish(&app, &token, "/services/snap/v1", body).await;
    // As the official client does: the snapshot goes right after publishing.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/snapshots/{snapshot}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        consume(&app, &token, "/api/snap/v1", json!({"x": 0})).await["outputParameters"]["y"],
        42.0
    );

    let app = app
        .restart_with(|config| config.runtime.python.initial_size = 1)
        .await;

    let result = consume(&app, &token, "/api/snap/v1", json!({"x": 1})).await;
    assert_eq!(result["outputParameters"]["y"], 43.0, "{result}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_failing_init_code_is_reported_as_an_unsuccessful_result() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let mut body = definition("y = x");
    body["initCode"] = json!("raise RuntimeError('init broke')");
    publish(&app, &token, "/services/broken/v1", body).await;

    let result = consume(&app, &token, "/api/broken/v1", json!({"x": 1})).await;

    assert_eq!(result["success"], false);
    assert!(
        result["errorMessage"]
            .as_str()
            .unwrap()
            .contains("init broke"),
        "{result}"
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn requests_abandoned_mid_run_do_not_leak_workers() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    publish(
        &app,
        &token,
        "/services/slow/v1",
        definition("import time\ntime.sleep(0.3)\ny = x"),
    )
    .await;
    consume(&app, &token, "/api/slow/v1", json!({"x": 1})).await;
    let principal = app.app.authenticate(&token).await.unwrap();
    let inputs = |x: f64| json!({"x": x}).as_object().unwrap().clone();

    // More requests than service workers are dropped while they run, as a server drops the
    // handler of a request whose connection went away.
    for _ in 0..6 {
        let abandoned = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            app.app.consume(&principal, "slow", "v1", inputs(2.0)),
        )
        .await;
        assert!(
            abandoned.is_err(),
            "the request should still have been running"
        );
    }

    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        app.app.consume(&principal, "slow", "v1", inputs(3.0)),
    )
    .await
    .expect("the service answers again once the abandoned requests are done")
    .unwrap()
    .0;
    assert_eq!(answered.outputs["y"], 3.0);
}
