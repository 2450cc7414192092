//! Asynchronous batch consumption against real Python workers.

use std::time::Duration;

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape};
use crate::sessions::spawn_python_app;

pub(crate) async fn publish_doubler(app: &TestApp, token: &str, seconds_per_record: f64) {
    let definition = json!({
        "runtimeType": "Python",
        "code": format!("import time\ntime.sleep({seconds_per_record})\nif x < 0: raise ValueError('negative')\ny = x * 2\nopen('out.txt', 'w').write(str(y))"),
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
        "outputFileNames": ["out.txt"]
    });
    let (status, body) = app
        .call(
            Method::POST,
            "/services/doubler/v1",
            Some(token),
            Some(definition),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

pub(crate) async fn start(app: &TestApp, token: &str, records: Value, parallel: u32) -> String {
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/doubler/v1/batch?parallelCount={parallel}"),
            Some(token),
            Some(records),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["batchExecutionId"], body["BatchExecutionId"]);
    body["BatchExecutionId"].as_str().unwrap().to_owned()
}

/// Polls until at least `count` records are done (bounded) and returns the status.
async fn wait_done(app: &TestApp, token: &str, id: &str, count: i64) -> Value {
    for _ in 0..600 {
        let (_, body) = app
            .call(
                Method::GET,
                &format!("/api/doubler/v1/batch/{id}?showPartialResults=false"),
                Some(token),
                None,
            )
            .await;
        if body["completedItemCount"].as_i64().unwrap_or(0) >= count {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the batch made no progress");
}

/// Polls until the batch is complete (bounded) and returns the last status.
pub(crate) async fn wait_complete(app: &TestApp, token: &str, id: &str) -> Value {
    for _ in 0..600 {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/api/doubler/v1/batch/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["state"] == "Complete" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the batch did not complete");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_batch_completes_with_results_in_record_order_and_files_per_record() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    publish_doubler(&app, &token, 0.0).await;
    let records: Vec<Value> = (0..20)
        .map(|i| json!({"x": if i == 7 { -1.0 } else { f64::from(i) }}))
        .collect();

    let id = start(&app, &token, json!(records), 3).await;
    let done = wait_complete(&app, &token, &id).await;

    assert_eq!(done["totalItemCount"], 20);
    assert_eq!(done["completedItemCount"], 20);
    let results = done["batchExecutionResults"].as_array().unwrap();
    assert_eq!(results.len(), 20);
    for (index, result) in results.iter().enumerate() {
        if index == 7 {
            assert_eq!(result["success"], false);
            assert!(
                result["errorMessage"]
                    .as_str()
                    .unwrap()
                    .contains("negative")
            );
        } else {
            assert_eq!(
                result["outputParameters"]["y"],
                json!(index as f64 * 2.0),
                "record {index}"
            );
        }
    }
    let (_, files) = app
        .call(
            Method::GET,
            &format!("/api/doubler/v1/batch/{id}/3/files"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(files, json!(["out.txt"]));
    let file = app
        .client
        .get(app.url(&format!("/api/doubler/v1/batch/{id}/3/files/out.txt")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(file.text().await.unwrap(), "6.0");
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/doubler/v1/batch/{id}/3/files/nope.txt"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/doubler/v1/batch/{id}/99/files"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = app
        .call(Method::GET, "/api/doubler/v1/batch", Some(&token), None)
        .await;
    assert_eq!(listed, json!([id]));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn partial_results_follow_either_spelling_and_a_cancel_stops_and_deletes() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    publish_doubler(&app, &token, 0.2).await;
    let records: Vec<Value> = (0..40).map(|i| json!({"x": i})).collect();
    let id = start(&app, &token, json!(records), 1).await;
    wait_done(&app, &token, &id, 2).await;

    let (_, without) = app
        .call(
            Method::GET,
            &format!("/api/doubler/v1/batch/{id}?showPartialResults=false"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(without["state"], "InProgress");
    assert_eq!(without["batchExecutionResults"], json!([]));
    let (_, with) = app
        .call(
            Method::GET,
            &format!("/api/doubler/v1/batch/{id}?showPartialResult=true"),
            Some(&token),
            None,
        )
        .await;
    let partial = with["batchExecutionResults"].as_array().unwrap().len();
    assert!((1..40).contains(&partial), "{with}");

    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/api/doubler/v1/batch/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!([id]));
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/doubler/v1/batch/{id}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, listed) = app
        .call(Method::GET, "/api/doubler/v1/batch", Some(&token), None)
        .await;
    assert_eq!(listed, json!([]));
    // The service itself answers at once: the cancelled batch no longer holds its workers.
    let (status, result) = app
        .call(
            Method::POST,
            "/api/doubler/v1",
            Some(&token),
            Some(json!({"x": 1})),
        )
        .await;
    assert_eq!(
        (status, result["outputParameters"]["y"].clone()),
        (StatusCode::OK, json!(2.0))
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn only_the_creator_or_an_owner_sees_a_batch_and_bad_batches_are_refused() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    publish_doubler(&app, &token, 0.0).await;
    let id = start(&app, &jane, json!([{"x": 1}]), 1).await;

    wait_complete(&app, &jane, &id).await;
    let bob = app.user_token("bob", Role::Contributor).await;
    for (method, path) in [
        (Method::GET, format!("/api/doubler/v1/batch/{id}")),
        (Method::DELETE, format!("/api/doubler/v1/batch/{id}")),
    ] {
        let (status, body) = app.call(method, &path, Some(&bob), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error_shape(&body);
    }
    let (_, bobs) = app
        .call(Method::GET, "/api/doubler/v1/batch", Some(&bob), None)
        .await;
    assert_eq!(bobs, json!([]));
    let (_, owners) = app
        .call(Method::GET, "/api/doubler/v1/batch", Some(&token), None)
        .await;
    assert_eq!(owners, json!([id]));

    for (path, body) in [
        ("/api/doubler/v1/batch", json!({"x": 1})),
        ("/api/doubler/v1/batch", json!([])),
        ("/api/doubler/v1/batch", json!([{"x": 1}, {"x": "two"}])),
        ("/api/doubler/v1/batch", json!([{"y": 1}])),
        ("/api/doubler/v1/batch?parallelCount=0", json!([{"x": 1}])),
        (
            "/api/doubler/v1/batch?parallelCount=many",
            json!([{"x": 1}]),
        ),
    ] {
        let (status, response) = app
            .call(Method::POST, path, Some(&token), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {response}");
        assert_error_shape(&response);
    }
    let (status, response) = app
        .call(
            Method::POST,
            "/api/doubler/v1/batch",
            Some(&token),
            Some(json!([{"x": 1}, {"x": "two"}])),
        )
        .await;
    assert!(
        assert_error_shape(&response).contains("record 1"),
        "{status} {response}"
    );
    let (status, _) = app
        .call(
            Method::POST,
            "/api/nothing/v1/batch",
            Some(&token),
            Some(json!([{"x": 1}])),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_restart_in_the_middle_of_a_batch_loses_and_repeats_nothing() {
    let app = spawn_python_app().await;
    let token = app.admin_token().await;
    publish_doubler(&app, &token, 0.2).await;
    let records: Vec<Value> = (0..30).map(|i| json!({"x": i})).collect();
    let id = start(&app, &token, json!(records), 2).await;
    let before = wait_done(&app, &token, &id, 3).await;
    let done_before = before["completedItemCount"].as_i64().unwrap();
    assert!((1..30).contains(&done_before), "{before}");

    let app = app
        .restart_with(|config| config.runtime.python.initial_size = 1)
        .await;

    let done = wait_complete(&app, &token, &id).await;
    assert_eq!(
        done["completedItemCount"], 30,
        "every record counted exactly once: {done}"
    );
    let results = done["batchExecutionResults"].as_array().unwrap();
    assert_eq!(results.len(), 30);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(
            result["outputParameters"]["y"],
            json!(index as f64 * 2.0),
            "record {index}"
        );
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn interactive_requests_go_before_queued_batch_records() {
    let app = crate::helpers::spawn_real_app_with(|config| {
        config.runtime.python.initial_size = 1;
        config.runtime.python.max_service_workers = 1;
    })
    .await;
    let token = app.admin_token().await;
    publish_doubler(&app, &token, 0.3).await;
    let light = json!({
        "runtimeType": "Python", "code": "z = 1",
        "outputParameterDefinitions": [{"name": "z", "type": "integer"}]
    });
    let (status, _) = app
        .call(
            Method::POST,
            "/services/light/v1",
            Some(&token),
            Some(light),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let records: Vec<Value> = (0..20).map(|i| json!({"x": i})).collect();
    let id = start(&app, &token, json!(records), 5).await;
    let before = wait_done(&app, &token, &id, 1).await["completedItemCount"]
        .as_i64()
        .unwrap();

    // One worker, five batch records queued for it: the interactive request must not wait for
    // them, only for the record in progress.
    let (status, result) = app
        .call(Method::POST, "/api/light/v1", Some(&token), Some(json!({})))
        .await;
    let (_, after) = app
        .call(
            Method::GET,
            &format!("/api/doubler/v1/batch/{id}?showPartialResults=false"),
            Some(&token),
            None,
        )
        .await;

    assert_eq!(
        (status, result["outputParameters"]["z"].clone()),
        (StatusCode::OK, json!(1))
    );
    let records_in_between = after["completedItemCount"].as_i64().unwrap() - before;
    assert!(
        records_in_between <= 2,
        "the request waited for {records_in_between} batch records"
    );
}
