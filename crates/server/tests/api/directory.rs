//! Signing in with a real LDAP directory (`slapd`, see `slapd.rs`): plain LDAP, LDAP-S and
//! StartTLS; roles from groups enforced on publish, update, delete and consume; hostile user
//! names; and a directory that stops or hangs.

use std::time::{Duration, Instant};

use o16n_server::config::{Config, LdapSection, RolesSection};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_PASSWORD, TestApp, assert_error_shape, spawn_app_with, spawn_real_app_with,
};
use crate::slapd::Slapd;

/// Signs in with the fixture's directory at `url`, with the fixture's groups as roles.
pub(crate) fn use_directory(config: &mut Config, slapd: &Slapd, url: String) {
    config.auth.ldap = LdapSection {
        enabled: true,
        url,
        ca_certificate: Some(slapd.ca_certificate()),
        query_user_dn: "cn=query,dc=example,dc=org".to_owned(),
        query_user_password: Some(SecretString::from("Query-Pass-1")),
        search_base: "dc=example,dc=org".to_owned(),
        search_filter: "(uid={0})".to_owned(),
        timeout_seconds: 1,
        ..LdapSection::default()
    };
    config.auth.roles = RolesSection {
        owner: vec!["Administrators".to_owned()],
        contributor: vec!["Developers".to_owned(), "Quality".to_owned()],
        reader: vec!["App developers".to_owned()],
        ..RolesSection::default()
    };
}

fn password_of(user: &str) -> String {
    let mut password = user[..1].to_uppercase();
    password.push_str(&user[1..]);
    password + "-Pass-1"
}

async fn sign_in(app: &TestApp, user: &str) -> Value {
    let (status, body) = app.login(user, &password_of(user)).await;
    assert_eq!(status, StatusCode::OK, "{user}: {body}");
    body
}

async fn token_of(app: &TestApp, user: &str) -> String {
    sign_in(app, user).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn service(code: &str) -> Value {
    json!({
        "code": code,
        "runtimeType": "Python",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}]
    })
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn directory_users_sign_in_over_ldap_ldaps_and_starttls() {
    let slapd = Slapd::start().await;
    for (url, start_tls) in [
        (slapd.ldap_url(), false),
        (slapd.ldaps_url(), false),
        (slapd.ldap_url(), true),
    ] {
        let app = spawn_app_with(|config| {
            use_directory(config, &slapd, url.clone());
            config.auth.ldap.start_tls = start_tls;
        })
        .await;
        let tokens = sign_in(&app, "alice").await;
        assert_eq!(tokens["token_type"], "Bearer");
        let token = tokens["access_token"].as_str().unwrap();
        let (status, body) = app.call(Method::GET, "/services", Some(token), None).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{url} start_tls={start_tls}: {body}"
        );

        // The user is known by the unique id attribute, as a directory user.
        let users = app.app.list_users().await.unwrap();
        assert!(
            users
                .iter()
                .any(|(name, role, source)| name.as_str() == "alice"
                    && *role == o16n_types::Role::Owner
                    && *source == "ldap"),
            "{users:?}"
        );

        let (_, status) = app.call(Method::GET, "/status", Some(token), None).await;
        let authentication = &status["components"]["authentication"];
        assert_eq!(authentication["statusCode"], "pass", "{status}");
        assert_eq!(authentication["details"]["method"], "ldap");
        assert_eq!(authentication["details"]["ldap"], true);
        assert_eq!(authentication["details"]["local"], false);
    }

    // Without the test's certificate authority, LDAP-S does not trust the directory.
    let app = spawn_app_with(|config| {
        use_directory(config, &slapd, slapd.ldaps_url());
        config.auth.ldap.ca_certificate = None;
    })
    .await;
    let (status, body) = app.login("alice", "Alice-Pass-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(assert_error_shape(&body).contains("directory"), "{body}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn directory_groups_give_the_roles_that_publish_update_delete_and_consume_obey() {
    let slapd = Slapd::start().await;
    let app = spawn_real_app_with(|config| use_directory(config, &slapd, slapd.ldap_url())).await;
    let alice = token_of(&app, "alice").await; // Administrators: Owner
    let bob = token_of(&app, "bob").await; // Developers: Contributor
    let carol = token_of(&app, "carol").await; // App developers: Reader
    let erin = token_of(&app, "erin").await; // Quality, a group of unique names: Contributor

    // Reader is configured, so a user in none of the groups has no access at all.
    let (status, body) = app.login("dave", "Dave-Pass-1").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(assert_error_shape(&body).contains("no role"), "{body}");

    let call = |token: &str, method: Method, path: &str, body: Option<Value>| {
        let token = token.to_owned();
        let path = path.to_owned();
        let app = &app;
        async move { app.call(method, &path, Some(&token), body).await.0 }
    };
    assert_eq!(
        call(
            &bob,
            Method::POST,
            "/services/double/v1",
            Some(service("y = x * 2"))
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        call(
            &carol,
            Method::POST,
            "/services/mine/v1",
            Some(service("y = x"))
        )
        .await,
        StatusCode::FORBIDDEN,
        "Readers cannot publish"
    );
    let (status, result) = app
        .call(
            Method::POST,
            "/api/double/v1",
            Some(&carol),
            Some(json!({"x": 21})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "Readers consume: {result}");
    assert_eq!(result["outputParameters"]["y"].as_f64(), Some(42.0));

    let patch = Some(json!({"description": "changed"}));
    assert_eq!(
        call(&carol, Method::PATCH, "/services/double/v1", patch.clone()).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&erin, Method::PATCH, "/services/double/v1", patch.clone()).await,
        StatusCode::FORBIDDEN,
        "a Contributor updates only their own services"
    );
    assert_eq!(
        call(&alice, Method::PATCH, "/services/double/v1", patch).await,
        StatusCode::OK,
        "an Owner updates anyone's"
    );
    assert_eq!(
        call(
            &erin,
            Method::POST,
            "/services/erins/v1",
            Some(service("y = x"))
        )
        .await,
        StatusCode::CREATED
    );
    assert_eq!(
        call(&bob, Method::DELETE, "/services/erins/v1", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&carol, Method::DELETE, "/services/double/v1", None).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        call(&alice, Method::DELETE, "/services/erins/v1", None).await,
        StatusCode::OK
    );
    assert_eq!(
        call(&bob, Method::DELETE, "/services/double/v1", None).await,
        StatusCode::OK
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn hostile_names_empty_passwords_and_ambiguous_entries_are_refused() {
    let slapd = Slapd::start().await;
    let app = spawn_app_with(|config| use_directory(config, &slapd, slapd.ldap_url())).await;
    let refused = [
        // Filter injection: each would match alice (or everyone) if the name were not escaped.
        ("*", "Alice-Pass-1"),
        ("ali*", "Alice-Pass-1"),
        ("alice)(uid=*", "Alice-Pass-1"),
        ("*)(|(uid=*", "Alice-Pass-1"),
        ("alice\\", "Alice-Pass-1"),
        // An empty password would be an anonymous bind on a lenient server.
        ("alice", ""),
        ("alice", "wrong"),
        ("nobody", "Nobody-Pass-1"),
        // Two entries have this uid.
        ("twin", "Twin-Pass-1"),
        // With the directory on, the local admin is off unless the operator keeps it.
        ("admin", ADMIN_PASSWORD),
    ];
    for (user, password) in refused {
        let (status, body) = app.login(user, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user:?}: {body}");
        assert_error_shape(&body);
    }
    let huge = "a".repeat(100_000);
    let (status, _) = app.login(&huge, "Alice-Pass-1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A local account's name is never taken over by the directory user of that name.
    app.app
        .add_user("bob", o16n_types::Role::Reader, "Local-Pass-1")
        .await
        .unwrap();
    let (status, body) = app.login("bob", "Bob-Pass-1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        assert_error_shape(&body).contains("local account"),
        "{body}"
    );
    let (status, _) = app.login("bob", "Local-Pass-1").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "local accounts are off");

    let app = app
        .restart_with(|config| {
            use_directory(config, &slapd, slapd.ldap_url());
            config.auth.local.admin_enabled = true;
        })
        .await;
    app.assert_still_serving().await;
    sign_in(&app, "alice").await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_directory_that_stops_or_hangs_gets_clear_errors_and_recovers() {
    let mut slapd = Slapd::start().await;
    let app = spawn_app_with(|config| {
        use_directory(config, &slapd, slapd.ldap_url());
        config.auth.local.admin_enabled = true;
    })
    .await;
    let alice = sign_in(&app, "alice").await;
    let alice_token = alice["access_token"].as_str().unwrap();

    slapd.stop().await;
    let (status, body) = app.login("alice", "Alice-Pass-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        assert_error_shape(&body).contains("cannot reach the directory"),
        "{body}"
    );
    // Tokens already issued, renewals within the group cache lifetime, and the local admin
    // keep working: the directory is asked at sign-in only.
    let (status, _) = app
        .call(Method::GET, "/services", Some(alice_token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::POST,
            "/login/refreshToken",
            None,
            Some(json!({"refreshToken": alice["refresh_token"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let admin = app.admin_token().await;
    let (_, status) = app.call(Method::GET, "/status", Some(&admin), None).await;
    let authentication = &status["components"]["authentication"];
    assert_eq!(authentication["statusCode"], "warn", "{status}");
    assert!(authentication["details"]["error"].is_string(), "{status}");

    slapd.resume().await;
    sign_in(&app, "alice").await;

    // A directory that accepts connections and never answers costs the sign-in its timeout.
    slapd.freeze(true);
    let started = Instant::now();
    let (status, body) = app.login("alice", "Alice-Pass-1").await;
    let waited = started.elapsed();
    slapd.freeze(false);
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        assert_error_shape(&body).contains("did not answer"),
        "{body}"
    );
    assert!(waited < Duration::from_secs(5), "waited {waited:?}");
    sign_in(&app, "alice").await;
    app.assert_still_serving().await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_renewal_reads_the_groups_again_once_they_are_older_than_the_cache_lifetime() {
    let slapd = Slapd::start().await;
    let app = spawn_app_with(|config| {
        use_directory(config, &slapd, slapd.ldap_url());
        config.auth.roles.cache_lifetime_minutes = 0;
    })
    .await;
    let bob = sign_in(&app, "bob").await;
    slapd
        .modify(
            "dn: cn=Developers,ou=groups,dc=example,dc=org\nchangetype: modify\nreplace: member\nmember: uid=alice,ou=people,dc=example,dc=org\n\n\
             dn: cn=App developers,ou=groups,dc=example,dc=org\nchangetype: modify\nadd: member\nmember: uid=bob,ou=people,dc=example,dc=org\n",
        )
        .await;
    let renew = |refresh: Value| {
        let app = &app;
        async move {
            app.call(
                Method::POST,
                "/login/refreshToken",
                None,
                Some(json!({"refreshToken": refresh})),
            )
            .await
        }
    };
    let (status, renewed) = renew(bob["refresh_token"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    let token = renewed["access_token"].as_str().unwrap();
    let (status, _) = app
        .call(
            Method::POST,
            "/services/bobs/v1",
            Some(token),
            Some(service("y = x")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "bob is a Reader now");

    slapd
        .modify("dn: uid=bob,ou=people,dc=example,dc=org\nchangetype: delete\n")
        .await;
    let (status, body) = renew(renewed["refresh_token"].clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}
