//! Login, renewal, revocation and the 401 cases, as the reference's Authentication APIs.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{ADMIN_PASSWORD, assert_error_shape, spawn_app, spawn_app_with};

#[tokio::test]
async fn login_returns_a_bearer_pair_with_the_reference_fields() {
    let app = spawn_app().await;

    let (status, body) = app.login("admin", ADMIN_PASSWORD).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert!(
        body["expires_on"].is_i64(),
        "expires_on must be a number: {body}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expires_on = body["expires_on"].as_i64().unwrap();
    assert!(
        (now + 3590..=now + 3610).contains(&expires_on),
        "{expires_on} vs {now}"
    );
    assert!(body["access_token"].as_str().unwrap().len() > 20);
    assert!(body["refresh_token"].as_str().unwrap().len() > 20);
}

#[tokio::test]
async fn wrong_credentials_get_401_in_the_error_shape() {
    let app = spawn_app().await;

    for (user, password) in [
        ("admin", "Wrong-Pass-1"),
        ("nobody", ADMIN_PASSWORD),
        ("../x", "x"),
        ("", ""),
    ] {
        let (status, body) = app.login(user, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user}");
        assert_eq!(assert_error_shape(&body), "invalid credentials");
    }
}

#[tokio::test]
async fn a_token_opens_the_protected_apis() {
    let app = spawn_app().await;
    let token = app.admin_token().await;

    let (status, _) = app.call(Method::GET, "/status", Some(&token), None).await;

    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn missing_malformed_and_forged_tokens_get_401_with_a_bearer_challenge() {
    let app = spawn_app().await;
    let forged = {
        let token = app.admin_token().await;
        let (head, _) = token.rsplit_once('.').unwrap();
        format!("{head}.c2lnbmF0dXJl")
    };
    let cases: [(&str, Option<String>); 5] = [
        ("missing", None),
        ("not bearer", Some("Basic YWRtaW46cGFzcw==".to_owned())),
        ("empty bearer", Some("Bearer ".to_owned())),
        ("garbage", Some("Bearer not-a-token".to_owned())),
        ("forged signature", Some(format!("Bearer {forged}"))),
    ];
    for (case, header) in cases {
        let mut request = app.client.get(app.url("/status"));
        if let Some(header) = header {
            request = request.header("Authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(challenge.starts_with("Bearer"), "{case}: {challenge}");
        assert_error_shape(&response.json().await.unwrap());
    }
}

#[tokio::test]
async fn refreshing_returns_a_new_pair_and_invalidates_the_old_one() {
    let app = spawn_app().await;
    let old = app.admin_tokens().await;

    let (status, new) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": old["refresh_token"]})),
        )
        .await;

    assert_eq!(status, StatusCode::OK, "{new}");
    assert_ne!(new["access_token"], old["access_token"]);
    assert_ne!(new["refresh_token"], old["refresh_token"]);
    let (status, _) = app
        .call(Method::GET, "/status", new["access_token"].as_str(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // The old pair is dead: its access token and its refresh token.
    let (status, _) = app
        .call(Method::GET, "/status", old["access_token"].as_str(), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": old["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_shape(&body);
}

#[tokio::test]
async fn revoking_a_refresh_token_also_invalidates_its_access_token() {
    let app = spawn_app().await;
    let tokens = app.admin_tokens().await;
    let other_login = app.admin_token().await;
    let refresh = tokens["refresh_token"].as_str().unwrap();

    let response = app
        .client
        .delete(app.url("/login/refreshToken"))
        .query(&[("refreshToken", refresh)])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK);
    let (status, _) = app
        .call(
            Method::GET,
            "/status",
            tokens["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": refresh})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Other login sessions of the same user are unaffected.
    let (status, _) = app
        .call(Method::GET, "/status", Some(&other_login), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Revoking again, or revoking nonsense, is a 401 as the reference documents.
    let response = app
        .client
        .delete(app.url("/login/refreshToken"))
        .query(&[("refreshToken", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .delete(app.url("/login/refreshToken"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_expired_access_token_gets_401() {
    let app = spawn_app_with(|config| config.auth.access_token_lifetime_seconds = 1).await;
    let token = app.admin_token().await;
    let (status, _) = app.call(Method::GET, "/status", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK);

    app.clock.advance(std::time::Duration::from_secs(2));

    let (status, body) = app.call(Method::GET, "/status", Some(&token), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_error_shape(&body);
}

#[tokio::test]
async fn an_idle_refresh_token_expires() {
    let app = spawn_app_with(|config| config.auth.refresh_token_idle_lifetime_seconds = 1).await;
    let tokens = app.admin_tokens().await;

    app.clock.advance(std::time::Duration::from_secs(2));

    let (status, _) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": tokens["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn renewal_stops_at_the_maximum_login_session_age() {
    let app = spawn_app_with(|config| config.auth.max_login_session_lifetime_seconds = 1).await;
    let mut tokens = app.admin_tokens().await;
    // A renewal right away works...
    let (status, renewed) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": tokens["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    tokens = renewed;

    app.clock.advance(std::time::Duration::from_secs(2));

    // ...but not past the session's maximum age, however recently it was renewed.
    let (status, _) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": tokens["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_restart_keeps_users_and_accepts_an_unexpired_token() {
    let app = spawn_app().await;
    let tokens = app.admin_tokens().await;

    let app = app.restart().await;

    let (status, _) = app
        .call(
            Method::GET,
            "/status",
            tokens["access_token"].as_str(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": tokens["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    app.assert_still_serving().await;
}
