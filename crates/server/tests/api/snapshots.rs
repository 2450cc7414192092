//! Snapshot APIs against real Python workers.

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::assert_error_shape;
use crate::sessions::{create_session, dill_bytes, execute, spawn_python_app, take_snapshot};

/// Fills a session with objects (data, a function defined in the session, numpy and pandas
/// values) and files (one nested), and snapshots it.
async fn snapshot_of_a_busy_session(app: &crate::helpers::TestApp, token: &str) -> String {
    let session = create_session(app, token).await;
    let setup = "import numpy as np\nimport pandas as pd, os\ndef double(v):\n    return v * 2\narr = np.arange(3)\nframe = pd.DataFrame({'a': [1, 2]})\nos.makedirs('sub', exist_ok=True)\nopen('notes.txt', 'w').write('top')\nopen('sub/inner.txt', 'w').write('nested')";
    let result = execute(app, token, &session, json!({"code": setup})).await;
    assert_eq!(result["success"], true, "{result}");
    let upload = app
        .client
        .post(app.url(&format!("/sessions/{session}/workspace/uploaded")))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(dill_bytes("[1, 2, 3]"))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::OK);
    take_snapshot(app, token, &session, Some("busy")).await
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_snapshot_taken_before_a_restart_is_loaded_into_a_new_session_after_it() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let snapshot = snapshot_of_a_busy_session(&app, &token).await;

    let app = app
        .restart_with(|config| config.runtime.python.initial_size = 1)
        .await;
    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&token),
            Some(json!({"runtimeType": "Python", "snapshotId": snapshot})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let session = body["sessionId"].as_str().unwrap();

    let check = "doubled = double(arr).tolist()\nrows = len(frame)\ntexts = [open('notes.txt').read(), open('sub/inner.txt').read()]";
    let result = execute(
        &app,
        &token,
        session,
        json!({"code": check, "outputParameters": ["doubled", "rows", "texts", "uploaded"]}),
    )
    .await;
    assert_eq!(result["success"], true, "{result}");
    assert_eq!(
        result["outputParameters"],
        json!([
            {"name": "doubled", "value": [0, 2, 4]},
            {"name": "rows", "value": 2},
            {"name": "texts", "value": ["top", "nested"]},
            {"name": "uploaded", "value": [1, 2, 3]}
        ])
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn loading_a_snapshot_merges_the_workspace_and_overwrites_files() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let snapshot = snapshot_of_a_busy_session(&app, &token).await;
    let session = create_session(&app, &token).await;
    execute(
        &app,
        &token,
        &session,
        json!({"code": "own = 'mine'\narr = 'replaced'\nopen('notes.txt', 'w').write('old')"}),
    )
    .await;

    let (status, _) = app
        .call(
            Method::POST,
            &format!("/sessions/{session}/loadsnapshot/{snapshot}"),
            Some(&token),
            None,
        )
        .await;

    assert_eq!(status, StatusCode::OK);
    let result = execute(&app, &token, &session, json!({"code": "kind = type(arr).__name__\nnote = open('notes.txt').read()", "outputParameters": ["own", "kind", "note"]})).await;
    assert_eq!(
        result["outputParameters"],
        json!([{"name": "own", "value": "mine"}, {"name": "kind", "value": "ndarray"}, {"name": "note", "value": "top"}])
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn snapshots_are_listed_downloaded_and_deleted_by_their_owner_only() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let other = app.user_token("jane", Role::Owner).await;
    let snapshot = snapshot_of_a_busy_session(&app, &token).await;

    let (_, listed) = app
        .call(Method::GET, "/snapshots", Some(&token), None)
        .await;
    let entry = &listed[0];
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(entry["id"], snapshot.as_str());
    assert_eq!(entry["name"], "busy");
    assert_eq!(entry["owner"], "admin");
    assert!(entry["contentSize"].as_i64().unwrap() > 100);
    assert!(
        entry["creationTime"].as_str().unwrap().ends_with('Z'),
        "{entry}"
    );

    let (_, theirs) = app
        .call(Method::GET, "/snapshots", Some(&other), None)
        .await;
    assert_eq!(theirs, json!([]));
    for (method, path) in [
        (Method::GET, format!("/snapshots/{snapshot}")),
        (Method::DELETE, format!("/snapshots/{snapshot}")),
    ] {
        let (status, body) = app.call(method, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error_shape(&body);
    }
    let (status, _) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&other),
            Some(json!({"runtimeType": "Python", "snapshotId": snapshot})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let download = app
        .client
        .get(app.url(&format!("/snapshots/{snapshot}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["content-type"], "application/zip");
    let zip = download.bytes().await.unwrap();
    assert_eq!(&zip[..2], b"PK");
    assert_eq!(zip.len() as i64, entry["contentSize"].as_i64().unwrap());

    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/snapshots/{snapshot}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/snapshots/{snapshot}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_unknown_snapshot_is_not_found_and_costs_no_session() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;

    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&token),
            Some(json!({"runtimeType": "Python", "snapshotId": "no-such-snapshot"})),
        )
        .await;

    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);
    let (_, listed) = app.call(Method::GET, "/sessions", Some(&token), None).await;
    assert_eq!(listed, json!([]));
}
