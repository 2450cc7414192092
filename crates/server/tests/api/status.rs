//! `GET /status`.

use reqwest::{Method, StatusCode};

use crate::helpers::spawn_app;

#[tokio::test]
async fn status_reports_the_database_and_authentication_components() {
    let app = spawn_app().await;
    let token = app.admin_token().await;

    let (status, body) = app.call(Method::GET, "/status", Some(&token), None).await;

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
}
