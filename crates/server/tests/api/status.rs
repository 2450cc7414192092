//! `GET /status`.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

#[tokio::test]
async fn status_reports_the_database_and_authentication_components() {
    let app = spawn_app().await;
    let token = app.admin_token().await;

    // Right after start the runtimes are still being checked ("warn"); that takes moments.
    let mut answer = app.call(Method::GET, "/status", Some(&token), None).await;
    for _ in 0..100 {
        if answer.1["statusCode"] == "pass" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        answer = app.call(Method::GET, "/status", Some(&token), None).await;
    }
    let (status, body) = answer;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["statusCode"], "pass", "{body}");
    assert!(body["details"].is_object());
    let database = &body["components"]["database"];
    assert_eq!(database["statusCode"], "pass");
    assert_eq!(database["details"]["type"], "sqlite");
    assert_eq!(database["details"]["state"], "Open");
    let authentication = &body["components"]["authentication"];
    assert_eq!(authentication["statusCode"], "pass");
    assert_eq!(authentication["details"]["local"], true);
    assert_eq!(authentication["details"]["ldap"], false);
    for runtime in ["python", "r"] {
        assert_eq!(
            body["components"]["runtimes"]["components"][runtime]["details"]["state"], "Ready",
            "{runtime}"
        );
    }
}
