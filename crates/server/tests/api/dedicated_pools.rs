//! Dedicated pools (`/services/{name}/{version}/pool`) on the one-box server with real Python
//! workers: who may manage them, what `GET` reports, and that a pooled service runs only on its
//! own warm workers. Compute nodes joining later are tested in `tests/cluster.rs`.

use std::time::Duration;

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape, spawn_real_app};

/// Publishes `pooled/v1`: its initCode names the worker (process ids say nothing: every
/// sandbox has a PID namespace of its own), and every request answers with that name.
async fn publish_pooled(app: &TestApp, token: &str, marker: &str) {
    let definition = json!({
        "runtimeType": "Python",
        "initCode": "import uuid\nworker_name = uuid.uuid4().hex",
        "code": pooled_code(marker),
        "inputParameterDefinitions": [],
        "outputParameterDefinitions": [
            {"name": "worker", "type": "character"},
            {"name": "marker", "type": "character"}
        ]
    });
    let (status, body) = app
        .call(
            Method::POST,
            "/services/pooled/v1",
            Some(token),
            Some(definition),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

fn pooled_code(marker: &str) -> String {
    format!("worker = worker_name\nmarker = '{marker}'")
}

async fn pool_states(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, body) = app
        .call(Method::GET, "/services/pooled/v1/pool", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array().unwrap().clone()
}

/// Waits until the pool reports `wanted` on the node.
async fn wait_for_state(app: &TestApp, token: &str, wanted: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let states = pool_states(app, token).await;
        if states[0]["Status"] == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool never became {wanted}: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the service as an Owner asking for its stage timings; returns the outputs and whether
/// the request had to load the service into its worker.
async fn consume(app: &TestApp, owner: &str) -> (Value, bool) {
    let response = reqwest::Client::new()
        .post(app.url("/api/pooled/v1"))
        .bearer_auth(owner)
        .header("X-O16N-Timing", "1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let timing = response.headers()["server-timing"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["success"], true, "{body}");
    let stages: Vec<&str> = timing
        .split(", ")
        .map(|stage| stage.split(';').next().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["queue", "load", "execute", "hop", "total"],
        "{timing}"
    );
    let loaded = !timing.contains("load;dur=0.000");
    (body["outputParameters"].clone(), loaded)
}

/// The one-box node's status component, with a component per pool.
async fn node_status(app: &TestApp, token: &str) -> Value {
    let (status, body) = app.call(Method::GET, "/status", Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["components"]["runtimes"].clone()
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn only_the_publisher_or_an_owner_manages_a_pool_and_sizes_are_checked() {
    let app = spawn_real_app().await;
    let owner = app.admin_token().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    let john = app.user_token("john", Role::Contributor).await;
    let rita = app.user_token("rita", Role::Reader).await;
    publish_pooled(&app, &jane, "a").await;

    for token in [&john, &rita] {
        for method in [Method::POST, Method::DELETE] {
            let (status, body) = app
                .call(
                    method.clone(),
                    "/services/pooled/v1/pool",
                    Some(token),
                    Some(json!({"InitialPoolSize": 0, "MaxPoolSize": 1})),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {body}");
            assert_error_shape(&body);
        }
    }
    for bad in [
        json!({"InitialPoolSize": 3, "MaxPoolSize": 2}),
        json!({"InitialPoolSize": -1}),
        json!({"MaxPoolSize": 1_001}),
        json!({"InitialPoolSize": "two"}),
        json!({"InitialPoolSize": 1, "Surprise": 1}),
    ] {
        let (status, body) = app
            .call(
                Method::POST,
                "/services/pooled/v1/pool",
                Some(&jane),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} gave {body}");
        assert_error_shape(&body);
    }
    for method in [Method::POST, Method::DELETE, Method::GET] {
        let (status, body) = app
            .call(
                method.clone(),
                "/services/pooled/v9/pool",
                Some(&owner),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {body}");
        assert_error_shape(&body);
    }

    // Everyone may look; nothing is pooled yet.
    let states = pool_states(&app, &rita).await;
    assert_eq!(
        states,
        [json!({"ComputeNodeEndpoint": "local", "Status": "NotFound"})]
    );
    // An Owner manages anyone's pool; the camelCase spelling of the sizes is accepted too.
    let (status, body) = app
        .call(
            Method::POST,
            "/services/pooled/v1/pool",
            Some(&owner),
            Some(json!({"initialPoolSize": 0, "maxPoolSize": 1})),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!("Created.")));
    wait_for_state(&app, &rita, "Success").await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_pooled_service_runs_on_its_own_warm_workers_reloads_on_update_and_its_pool_goes_with_it()
{
    let app = spawn_real_app().await;
    let owner = app.admin_token().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    publish_pooled(&app, &jane, "first").await;

    let (status, body) = app
        .call(
            Method::POST,
            "/services/pooled/v1/pool",
            Some(&jane),
            Some(json!({"InitialPoolSize": 2, "MaxPoolSize": 2})),
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!("Created.")));
    wait_for_state(&app, &jane, "Success").await;
    let node = node_status(&app, &jane).await;
    let pool = &node["components"]["dedicatedPools"]["components"]["pooled/v1"]["details"];
    assert_eq!(
        (
            &pool["idle"],
            &pool["busy"],
            &pool["maxSize"],
            &pool["runtime"]
        ),
        (&json!(2), &json!(0), &json!(2), &json!("Python")),
        "{node}"
    );

    let mut workers = std::collections::BTreeSet::new();
    for _ in 0..6 {
        let (outputs, loaded) = consume(&app, &owner).await;
        assert!(
            !loaded,
            "a request loaded the service into a worker of a warm pool"
        );
        assert_eq!(outputs["marker"], "first");
        workers.insert(outputs["worker"].as_str().unwrap().to_owned());
    }
    assert!(
        workers.len() <= 2,
        "more workers than the pool holds: {workers:?}"
    );
    // The shared Python pool (initial size 0 in tests) never started a worker for the service.
    let node = node_status(&app, &jane).await;
    let shared = &node["components"]["python"]["details"];
    assert_eq!(
        (&shared["currentSize"], &shared["busy"]),
        (&json!(0), &json!(0)),
        "{node}"
    );

    // An update reloads the pool's workers with the new revision.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/services/pooled/v1",
            Some(&jane),
            Some(json!({"code": pooled_code("second")})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_state(&app, &jane, "Success").await;
    let (outputs, loaded) = consume(&app, &owner).await;
    assert_eq!(outputs["marker"], "second");
    assert!(!loaded, "the reloaded pool was not warm");
    assert!(
        !workers.contains(outputs["worker"].as_str().unwrap()),
        "the update did not reload the pool's workers"
    );

    // Without its pool the service runs on the shared workers.
    let (status, body) = app
        .call(
            Method::DELETE,
            "/services/pooled/v1/pool",
            Some(&jane),
            None,
        )
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!("Deleted.")));
    assert_eq!(pool_states(&app, &jane).await[0]["Status"], "NotFound");
    let (_, loaded) = consume(&app, &owner).await;
    assert!(loaded, "a shared worker had the service loaded already");
    let node = node_status(&app, &jane).await;
    assert_eq!(
        node["components"]["python"]["details"]["currentSize"], 1,
        "{node}"
    );
    assert!(node["components"].get("dedicatedPools").is_none(), "{node}");

    // Deleting a service deletes its pool.
    let (status, _) = app
        .call(
            Method::POST,
            "/services/pooled/v1/pool",
            Some(&jane),
            Some(json!({"InitialPoolSize": 1, "MaxPoolSize": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(Method::DELETE, "/services/pooled/v1", Some(&jane), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let node = node_status(&app, &jane).await;
    assert!(node["components"].get("dedicatedPools").is_none(), "{node}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_request_right_after_the_pool_is_made_is_served_while_it_warms() {
    let app = spawn_real_app().await;
    let token = app.admin_token().await;
    publish_pooled(&app, &token, "first").await;
    let (status, body) = app
        .call(
            Method::POST,
            "/services/pooled/v1/pool",
            Some(&token),
            Some(json!({"initialPoolSize": 1, "maxPoolSize": 2})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    // The pool is starting its first worker; the request may not start one at the same time,
    // and must start its own as soon as that start is over rather than wait out its limit.
    let started = std::time::Instant::now();
    let (outputs, _) = consume(&app, &token).await;
    assert_eq!(outputs["marker"], "first");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the request waited {:?}",
        started.elapsed()
    );
}
