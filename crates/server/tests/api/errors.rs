//! Bad input of every kind gets the reference `Error` shape and the right status, and the
//! server keeps serving.

use reqwest::{Method, StatusCode};

use crate::helpers::{assert_error_shape, spawn_app, spawn_app_with};

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    for body in [
        "{",
        "not json",
        "[1,2",
        "{\"username\": \"admin\", \"password\": }",
    ] {
        let response = app
            .client
            .post(app.url("/login"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        assert_error_shape(&response.json().await.unwrap());
    }
    app.assert_still_serving().await;
}

#[tokio::test]
async fn wrong_or_missing_fields_are_a_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            serde_json::json!({"username": 7, "password": "x"}),
            "username",
        ),
        (serde_json::json!({"username": "admin"}), "password"),
        (serde_json::json!([]), ""),
    ];
    for (body, field) in cases {
        let (status, response) = app
            .call(Method::POST, "/login", None, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(assert_error_shape(&response).contains(field), "{response}");
    }
    app.assert_still_serving().await;
}

#[tokio::test]
async fn a_wrong_content_type_is_a_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/login"))
        .header("content-type", "text/plain")
        .body(r#"{"username":"admin","password":"x"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_error_shape(&response.json().await.unwrap());
}

#[tokio::test]
async fn an_unknown_route_is_a_404_and_a_wrong_method_a_405() {
    let app = spawn_app().await;
    let token = app.admin_token().await;

    let (status, body) = app
        .call(Method::GET, "/no/such/thing", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_shape(&body);

    let (status, body) = app.call(Method::PUT, "/login", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error_shape(&body);
    let (status, body) = app.call(Method::POST, "/status", Some(&token), None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_error_shape(&body);
}

#[tokio::test]
async fn an_oversize_body_is_a_413() {
    let app = spawn_app_with(|config| config.http.max_body_bytes = 1024).await;
    let token = app.admin_token().await;
    let huge = format!(r#"{{"x":"{}"}}"#, "x".repeat(10_000));

    let response = app
        .client
        .post(app.url("/api/any/v1"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error_shape(&response.json().await.unwrap());
    app.assert_still_serving().await;
}

#[tokio::test]
async fn a_bodiless_get_with_a_json_content_type_is_accepted() {
    // The official Python client sends `Content-Type: application/json` on every request.
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let response = app
        .client
        .get(app.url("/status"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_response_carries_a_correlation_id() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/nowhere")).send().await.unwrap();
    let id = response.headers()["x-correlation-id"].to_str().unwrap();
    assert_eq!(id.len(), 36);
}
