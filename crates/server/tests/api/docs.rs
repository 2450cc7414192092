//! The core API description and the interactive page.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = spawn_app().await;
    let (status, document) = app.call(Method::GET, "/swagger.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(document["swagger"], "2.0");

    let mut checked = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let concrete = path.replace('{', "x").replace('}', "");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let (status, body) = app.call(method.clone(), &concrete, None, None).await;
            // Without credentials a routed operation answers 401 (or 400/415 for the login
            // operations, which need a body, and 200 for the liveness probe); an unrouted one
            // would be 404 or 405.
            let expected: &[u16] = if path == "/health" {
                &[200]
            } else {
                &[400, 401, 415]
            };
            assert!(
                expected.contains(&status.as_u16()),
                "{method} {path} answered {status}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} operations documented");
}

#[tokio::test]
async fn the_interactive_page_is_served_without_the_network() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/swagger-ui/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("swagger-ui") && page.contains("/swagger.json"),
        "{page}"
    );
    assert!(
        !page.contains("https://"),
        "the page must not load assets from the internet"
    );
}
