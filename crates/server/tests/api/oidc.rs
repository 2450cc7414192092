//! Bearer tokens of an OpenID Connect provider (Azure AD's path in the reference), with the
//! test as the provider (`idp.rs`): good tokens work on every API with roles from their
//! groups; foreign, expired and unknown-key tokens are refused; key rotation is followed at a
//! bounded rate; a provider that is down gets a 503 and is used again when it is back.

use std::time::Duration;

use o16n_server::config::{Config, OidcSection, RolesSection};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape, spawn_app_with, spawn_real_app_with};
use crate::idp::{AUDIENCE, TestIdp};

pub(crate) fn use_provider(config: &mut Config, idp: &TestIdp) {
    config.auth.oidc = OidcSection {
        enabled: true,
        authority: idp.issuer.clone(),
        audience: AUDIENCE.to_owned(),
        ..OidcSection::default()
    };
    config.auth.roles = RolesSection {
        owner: vec!["Administrators".to_owned()],
        contributor: vec!["Developers".to_owned()],
        reader: vec!["App developers".to_owned()],
        ..RolesSection::default()
    };
}

async fn status_of(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    app.call(method, path, Some(token), body).await
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn provider_tokens_work_on_every_api_with_roles_from_their_groups() {
    let idp = TestIdp::start().await;
    let app = spawn_real_app_with(|config| use_provider(config, &idp)).await;
    let jane = idp.token("jane@corp.example", &["Developers"]);
    let rita = idp.token("rita@corp.example", &["App developers"]);
    let owen = idp.token("owen@corp.example", &["Administrators", "App developers"]);

    let service = json!({
        "code": "y = x + 1",
        "runtimeType": "Python",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}]
    });
    let (status, body) = status_of(
        &app,
        &jane,
        Method::POST,
        "/services/inc/v1",
        Some(service.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = status_of(
        &app,
        &rita,
        Method::POST,
        "/api/inc/v1",
        Some(json!({"x": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["outputParameters"]["y"].as_f64(), Some(2.0));
    let (status, _) = status_of(
        &app,
        &rita,
        Method::POST,
        "/services/ritas/v1",
        Some(service),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "Readers cannot publish");
    let (status, body) = status_of(&app, &jane, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["versionPublishedBy"], "jane@corp.example", "{body}");

    // Sessions, snapshots and status take the same token.
    let (status, session) = status_of(
        &app,
        &jane,
        Method::POST,
        "/sessions",
        Some(json!({"runtimeType": "Python"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    let id = session["sessionId"].as_str().unwrap();
    let (status, body) = status_of(
        &app,
        &jane,
        Method::POST,
        &format!("/sessions/{id}/execute"),
        Some(json!({"code": "z = 6 * 7"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = status_of(
        &app,
        &rita,
        Method::DELETE,
        &format!("/sessions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another user's session");
    let (status, _) = status_of(
        &app,
        &jane,
        Method::DELETE,
        &format!("/sessions/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = status_of(&app, &rita, Method::GET, "/snapshots", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = status_of(&app, &owen, Method::DELETE, "/services/inc/v1", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an Owner deletes anyone's service: {body}"
    );

    let (_, status) = status_of(&app, &owen, Method::GET, "/status", None).await;
    let authentication = &status["components"]["authentication"];
    assert_eq!(authentication["statusCode"], "pass", "{status}");
    assert_eq!(authentication["details"]["method"], "oidc");
    assert_eq!(authentication["details"]["azureActiveDirectory"], true);

    // Reader is configured: a user in none of the groups has no access at all.
    let nobody = idp.token("nobody@corp.example", &["Elsewhere"]);
    let (status, body) = status_of(&app, &nobody, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(assert_error_shape(&body).contains("no role"));

    // The local admin is off while the provider signs users in.
    let (status, _) = app.login("admin", crate::helpers::ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The provider's user named like the local admin is not the local admin.
    let admin_named = idp.token("admin", &["Administrators"]);
    let (status, _) = status_of(&app, &admin_named, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn foreign_expired_and_unknown_key_tokens_are_refused_and_rotation_is_followed() {
    let idp = TestIdp::start().await;
    let app = spawn_app_with(|config| {
        use_provider(config, &idp);
        config.auth.local.admin_enabled = true;
    })
    .await;
    let good = idp.token("jane@corp.example", &["Developers"]);
    let (status, _) = status_of(&app, &good, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK);
    // o16n's own tokens keep working beside the provider's.
    let admin = app.admin_token().await;
    let (status, _) = status_of(&app, &admin, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK);

    let with = |field: &str, value: Value| {
        let mut claims = idp.claims("jane@corp.example", &["Developers"]);
        claims[field] = value;
        idp.sign("k1", &claims)
    };
    let now = o16n_types::Clock::default().now_ms() / 1000;
    idp.add_key("stranger", false);
    let refused = [
        (
            with("iss", json!("https://login.evil.example/")),
            "another issuer",
        ),
        (with("aud", json!("someone-else")), "another audience"),
        (with("exp", json!(now - 3600)), "expired"),
        (with("nbf", json!(now + 3600)), "not valid yet"),
        (
            idp.sign(
                "stranger",
                &idp.claims("jane@corp.example", &["Developers"]),
            ),
            "does not publish",
        ),
        ("not.a.token".to_owned(), "not a JWT"),
    ];
    for (token, reason) in refused {
        let (status, body) = status_of(&app, &token, Method::GET, "/services", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}: {body}");
        let message = assert_error_shape(&body);
        assert!(message.contains(reason), "{reason}: {message}");
    }

    // Tokens with unknown key ids do not make o16n hammer the provider.
    let fetches = idp.key_set_fetches();
    for _ in 0..5 {
        let token = idp.sign("stranger", &idp.claims("jane@corp.example", &[]));
        status_of(&app, &token, Method::GET, "/services", None).await;
    }
    assert!(idp.key_set_fetches() <= fetches + 1);

    // The provider rotates to a new key: once the refetch interval has passed, tokens signed
    // with it are accepted, and the old key's tokens still are while it is published.
    idp.add_key("k2", true);
    app.clock.advance(Duration::from_secs(61));
    let rotated = idp.sign("k2", &idp.claims("jane@corp.example", &["Developers"]));
    let (status, body) = status_of(&app, &rotated, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = status_of(&app, &good, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_provider_that_is_down_gets_a_clear_503_and_is_used_again_when_back() {
    let idp = TestIdp::start().await;
    idp.set_down(true);
    let app = spawn_app_with(|config| {
        use_provider(config, &idp);
        config.auth.local.admin_enabled = true;
    })
    .await;
    let token = idp.token("jane@corp.example", &["Developers"]);
    let (status, body) = status_of(&app, &token, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        assert_error_shape(&body).contains("identity provider"),
        "{body}"
    );
    // Local sign-in still serves.
    app.assert_still_serving().await;

    idp.set_down(false);
    let (status, body) = status_of(&app, &token, Method::GET, "/services", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
