//! The web console over plain HTTP, as a browser uses it: cookies from signing in, forms sent
//! from the console's own origin, redirects looked at rather than followed. Every page and
//! action is here, with another user's resources (404 or 403 pages, never their data) and a
//! Reader who sees no publish or delete controls.

use o16n_types::Role;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::batch::{publish_doubler, start, wait_complete};
use crate::directory::use_directory;
use crate::helpers::{ADMIN_PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::idp::TestIdp;
use crate::oidc::use_provider;
use crate::realtime::linear_model;
use crate::sessions::spawn_python_app;
use crate::slapd::Slapd;

/// What came back for one request.
struct Page {
    status: StatusCode,
    body: String,
    headers: HeaderMap,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    fn assert_ok(&self) -> &str {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        &self.body
    }

    /// A form that redirected back into the console (`303 See Other`) and where to.
    fn assert_redirect(&self) -> &str {
        assert_eq!(self.status, StatusCode::SEE_OTHER, "{}", self.body);
        self.location()
    }
}

/// A browser with one user's cookies.
struct Browser {
    client: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

impl Browser {
    fn new(app: &TestApp) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.url(""),
            cookies: Vec::new(),
        }
    }

    /// Signs in with the console's form and keeps the cookies it sets.
    async fn signed_in(app: &TestApp, user: &str, password: &str) -> Browser {
        let mut browser = Browser::new(app);
        let page = browser
            .post(
                "/console/login",
                &[("username", user), ("password", password)],
            )
            .await;
        assert_eq!(page.assert_redirect(), "/console/services");
        browser
    }

    async fn signed_in_as(app: &TestApp, user: &str, role: Role) -> Browser {
        app.app.add_user(user, role, "User-Pass-1").await.unwrap();
        Browser::signed_in(app, user, "User-Pass-1").await
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        for value in headers.get_all(SET_COOKIE) {
            let text = value.to_str().unwrap();
            let (pair, _) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(known, _)| known != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        let body = response.text().await.unwrap();
        Page {
            status,
            body,
            headers,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.send(request).await
    }

    /// A form sent from a console page, as a browser sends it.
    fn form_request(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .header("sec-fetch-site", "same-origin")
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.form_request(path).form(form);
        self.send(request).await
    }

    async fn post_multipart(&mut self, path: &str, form: Form) -> Page {
        let request = self.form_request(path).multipart(form);
        self.send(request).await
    }
}

#[tokio::test]
async fn signing_in_sets_strict_http_only_cookies_and_signing_out_ends_the_login() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);

    let page = browser.get("/").await;
    assert_eq!(page.assert_redirect(), "/console/");
    let page = browser.get("/console/").await;
    assert_eq!(page.assert_redirect(), "/console/services");
    let page = browser.get("/console/sessions?x=1").await;
    assert_eq!(
        page.assert_redirect(),
        "/console/login?next=%2Fconsole%2Fsessions%3Fx%3D1"
    );
    let login = browser.get("/console/login?next=/console/sessions").await;
    assert!(login.assert_ok().contains(r#"name="password""#));
    assert!(login.body.contains(r#"value="/console/sessions""#));

    let refused = browser
        .post(
            "/console/login",
            &[("username", "admin"), ("password", "wrong")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(
        refused.body.contains("was not accepted"),
        "{}",
        refused.body
    );
    assert!(browser.cookies.is_empty());

    let signed_in = browser
        .post(
            "/console/login",
            &[
                ("username", "admin"),
                ("password", ADMIN_PASSWORD),
                ("next", "https://evil.example/"),
            ],
        )
        .await;
    assert_eq!(signed_in.assert_redirect(), "/console/services");
    let cookies: Vec<&str> = signed_in
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    for cookie in cookies {
        assert!(
            cookie.contains("HttpOnly")
                && cookie.contains("SameSite=Strict")
                && cookie.contains("Path=/console"),
            "{cookie}"
        );
    }
    let services = browser.get("/console/services").await;
    assert!(services.assert_ok().contains("admin"));
    assert!(
        services
            .body
            .contains(r#"<span class="badge">Owner</span>"#)
    );

    let access = browser.cookies.clone();
    let page = browser.post("/console/logout", &[]).await;
    assert_eq!(page.assert_redirect(), "/console/login");
    assert!(browser.cookies.is_empty());
    // The access token of the ended login works nowhere, not even if the cookie were kept.
    browser.cookies = access;
    let page = browser.get("/console/services").await;
    assert!(page.assert_redirect().starts_with("/console/login"));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_directory_user_signs_in_with_the_role_of_their_groups() {
    let slapd = Slapd::start().await;
    let app = spawn_app_with(|config| use_directory(config, &slapd, slapd.ldap_url())).await;
    let mut bob = Browser::signed_in(&app, "bob", "Bob-Pass-1").await;
    let services = bob.get("/console/services").await;
    let body = services.assert_ok();
    assert!(body.contains(">Contributor<"), "{body}");
    assert!(body.contains("Publish a realtime service"));
    let mut carol = Browser::signed_in(&app, "carol", "Carol-Pass-1").await;
    let services = carol.get("/console/services").await;
    assert!(
        services.assert_ok().contains(">Reader<"),
        "{}",
        services.body
    );
    assert!(!services.body.contains("Publish a realtime service"));
    let mut stranger = Browser::new(&app);
    let refused = stranger
        .post(
            "/console/login",
            &[("username", "alice"), ("password", "Wrong-Pass-1")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_provider_token_signs_in_with_the_role_of_its_groups() {
    let idp = TestIdp::start().await;
    let app = spawn_app_with(|config| use_provider(config, &idp)).await;
    let mut browser = Browser::new(&app);
    let login = browser.get("/console/login").await;
    assert!(
        login.assert_ok().contains("identity provider"),
        "{}",
        login.body
    );

    let rita = idp.token("rita@corp.example", &["App developers"]);
    let page = browser.post("/console/login", &[("token", &rita)]).await;
    assert_eq!(page.assert_redirect(), "/console/services");
    let services = browser.get("/console/services").await;
    let body = services.assert_ok();
    assert!(
        body.contains("rita@corp.example") && body.contains(">Reader<"),
        "{body}"
    );
    assert!(!body.contains("Publish a realtime service"));

    let mut stranger = Browser::new(&app);
    let forged = stranger
        .post("/console/login", &[("token", "eyJhbGciOiJub25lIn0.e30.")])
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED);
    assert!(stranger.cookies.is_empty());
}

#[tokio::test]
async fn forms_from_another_site_are_refused() {
    let app = spawn_app().await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let request = browser
        .client
        .post(app.url("/console/sessions"))
        .header("origin", "https://evil.example")
        .form(&[("runtime", "Python")]);
    let page = browser.send(request).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.body.contains("another site"), "{}", page.body);
    let request = browser
        .client
        .post(app.url("/console/logout"))
        .header("sec-fetch-site", "cross-site");
    assert_eq!(browser.send(request).await.status, StatusCode::FORBIDDEN);

    // Malformed and oversize forms are pages with the matching status.
    let missing = browser.post("/console/sessions", &[("name", "x")]).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.body.contains("<html") && missing.body.contains("runtime"),
        "{}",
        missing.body
    );
    let wrong = browser
        .post("/console/sessions", &[("runtime", "Cobol")])
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.body.contains("choose R or Python"), "{}", wrong.body);
    let huge = "x".repeat(2 * 1024 * 1024);
    let oversize = browser
        .post(
            "/console/login",
            &[("username", "admin"), ("password", &huge)],
        )
        .await;
    assert_eq!(oversize.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(oversize.body.contains("<html"), "{}", oversize.body);
}

#[tokio::test]
async fn services_can_be_found_published_tried_and_deleted_by_role() {
    let app = spawn_app().await;
    let mut carol = Browser::signed_in_as(&app, "carol", Role::Contributor).await;
    let mut rita = Browser::signed_in_as(&app, "rita", Role::Reader).await;
    let mut dan = Browser::signed_in_as(&app, "dan", Role::Contributor).await;

    // Carol publishes a realtime model from the list page.
    let form = Form::new()
        .text("name", "linear")
        .text("version", "v1")
        .text("description", "twice a minus b")
        .part(
            "model",
            Part::bytes(linear_model()).file_name("linear.onnx"),
        );
    let page = carol.post_multipart("/console/services", form).await;
    assert_eq!(
        page.assert_redirect(),
        "/console/services/linear/v1?published=1"
    );
    let service = carol.get("/console/services/linear/v1?published=1").await;
    let body = service.assert_ok();
    assert!(body.contains("Published."), "{body}");
    assert!(body.contains("twice a minus b") && body.contains("Realtime"));
    assert!(
        body.contains("Delete this version"),
        "the publisher may delete"
    );
    assert!(
        body.contains(r#"name="inputData""#),
        "the try-it form takes the data frame"
    );

    // Trying it scores the model.
    let tried = carol
        .post(
            "/console/services/linear/v1/try",
            &[("inputData", r#"{"a": [1.0, 3.0], "b": [2.0, 1.0]}"#)],
        )
        .await;
    let body = tried.assert_ok();
    assert!(body.contains("Succeeded."), "{body}");
    assert!(body.contains("0.5") && body.contains("5.5"), "{body}");
    let bad = carol
        .post(
            "/console/services/linear/v1/try",
            &[("inputData", "{not json")],
        )
        .await;
    assert!(
        bad.assert_ok().contains("is not valid JSON"),
        "{}",
        bad.body
    );

    // The swagger document, through the console's cookie.
    let swagger = carol.get("/console/services/linear/v1/swagger.json").await;
    let document: serde_json::Value = serde_json::from_str(swagger.assert_ok()).unwrap();
    assert_eq!(document["swagger"], "2.0");

    // Search.
    let found = rita.get("/console/services?q=twice").await;
    assert!(found.assert_ok().contains("/console/services/linear/v1"));
    let none = rita.get("/console/services?q=nothing-like-it").await;
    assert!(!none.assert_ok().contains("/console/services/linear/v1"));
    assert!(none.body.contains("0 of 1 services"), "{}", none.body);

    // A Reader sees no publish form and no delete button, and may not delete.
    let list = rita.get("/console/services").await;
    assert!(!list.assert_ok().contains("Publish a realtime service"));
    let page = rita.get("/console/services/linear/v1").await;
    assert!(!page.assert_ok().contains("Delete this version"));
    let denied = rita.post("/console/services/linear/v1/delete", &[]).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.body);
    let refused = rita
        .post_multipart(
            "/console/services",
            Form::new()
                .text("name", "mine")
                .part("model", Part::bytes(linear_model()).file_name("m.onnx")),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    // Another Contributor does not see the delete button either.
    let page = dan.get("/console/services/linear/v1").await;
    assert!(!page.assert_ok().contains("Delete this version"));
    assert_eq!(
        dan.post("/console/services/linear/v1/delete", &[])
            .await
            .status,
        StatusCode::FORBIDDEN
    );

    // Bad input is a page with the API's status and message.
    let missing = carol.get("/console/services/nope/v1").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("404 Not Found"), "{}", missing.body);
    let no_model = carol
        .post_multipart("/console/services", Form::new().text("name", "x"))
        .await;
    assert_eq!(no_model.status, StatusCode::BAD_REQUEST);
    assert!(no_model.body.contains("ONNX model"), "{}", no_model.body);
    let hostile = carol
        .post_multipart(
            "/console/services",
            Form::new()
                .text("name", "<script>alert(1)</script>")
                .part("model", Part::bytes(linear_model()).file_name("m.onnx")),
        )
        .await;
    assert_eq!(hostile.status, StatusCode::BAD_REQUEST);
    assert!(
        !hostile.body.contains("<script>alert(1)"),
        "{}",
        hostile.body
    );

    // The publisher deletes it.
    let deleted = carol.post("/console/services/linear/v1/delete", &[]).await;
    assert_eq!(deleted.assert_redirect(), "/console/services");
    assert_eq!(
        carol.get("/console/services/linear/v1").await.status,
        StatusCode::NOT_FOUND
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn code_is_shown_to_its_publisher_and_owners_only_and_the_form_follows_the_inputs() {
    let app = spawn_python_app().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    let definition = json!({
        "runtimeType": "Python",
        "code": "y = x * 2\nlabel = name.upper()",
        "initCode": "SECRET_SETUP = 1",
        "inputParameterDefinitions": [
            {"name": "x", "type": "numeric"},
            {"name": "name", "type": "character"},
            {"name": "frame", "type": "data.frame"}
        ],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}, {"name": "label", "type": "character"}]
    });
    let (status, body) = app
        .call(
            Method::POST,
            "/services/calc/v1",
            Some(&jane),
            Some(definition),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = app
        .call(
            Method::POST,
            "/services/calc/v1/pool",
            Some(&jane),
            Some(json!({"initialPoolSize": 1, "maxPoolSize": 2})),
        )
        .await;
    assert!(status.is_success(), "{body}");

    let mut jane = Browser::signed_in(&app, "jane", "User-Pass-1").await;
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    // The list says where the dedicated pool stands on the node.
    let list = jane.get("/console/services").await;
    let body = list.assert_ok();
    assert!(
        body.contains("dedicated, 1 to 2: ready on the node")
            || body.contains("dedicated, 1 to 2: pending on the node"),
        "{body}"
    );
    let mut bob = Browser::signed_in_as(&app, "bob", Role::Contributor).await;
    for (browser, sees_code) in [(&mut jane, true), (&mut admin, true), (&mut bob, false)] {
        let page = browser.get("/console/services/calc/v1").await;
        let body = page.assert_ok();
        assert_eq!(body.contains("y = x * 2"), sees_code, "{body}");
        assert_eq!(body.contains("SECRET_SETUP"), sees_code, "{body}");
        assert!(body.contains(r#"id="input-x""#) && body.contains(r#"id="input-frame""#));
        assert!(body.contains("data.frame, as JSON"), "{body}");
    }

    let tried = bob
        .post(
            "/console/services/calc/v1/try",
            &[("x", "21"), ("name", "ada"), ("frame", r#"{"a": [1]}"#)],
        )
        .await;
    let body = tried.assert_ok();
    assert!(body.contains("42") && body.contains("ADA"), "{body}");
    let wrong = bob
        .post(
            "/console/services/calc/v1/try",
            &[("x", "many"), ("name", "ada"), ("frame", "{}")],
        )
        .await;
    assert!(
        wrong.assert_ok().contains("`x` is not valid JSON"),
        "{}",
        wrong.body
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn sessions_files_objects_and_snapshots_belong_to_their_owner() {
    let app = spawn_python_app().await;
    let mut alice = Browser::signed_in_as(&app, "alice", Role::Contributor).await;
    let mut bob = Browser::signed_in_as(&app, "bob", Role::Contributor).await;

    let created = alice
        .post(
            "/console/sessions",
            &[("runtime", "Python"), ("name", "explore")],
        )
        .await;
    let session_path = created.assert_redirect().to_owned();
    let id = session_path.rsplit('/').next().unwrap().to_owned();

    let list = alice.get("/console/sessions").await;
    let body = list.assert_ok();
    assert!(body.contains(&id) && body.contains("explore") && body.contains("Python"));
    assert!(body.contains(" s</td>"), "the age is shown: {body}");

    let ran = alice
        .post(
            &format!("{session_path}/execute"),
            &[("code", "answer = 6 * 7\nprint('the answer is', answer)")],
        )
        .await;
    let body = ran.assert_ok();
    assert!(body.contains("the answer is 42"), "{body}");
    assert!(
        body.contains("answer = 6 * 7"),
        "the history lists the code: {body}"
    );

    let uploaded = alice
        .post_multipart(
            &format!("{session_path}/files"),
            Form::new().part(
                "file",
                Part::bytes(b"a,b\n1,2\n".to_vec()).file_name("data file.csv"),
            ),
        )
        .await;
    assert_eq!(uploaded.assert_redirect(), format!("{session_path}#files"));
    let page = alice.get(&session_path).await;
    let body = page.assert_ok();
    assert!(
        body.contains("data%20file.csv") && body.contains("<code>answer</code>"),
        "{body}"
    );
    let download = alice
        .get(&format!("{session_path}/files/data%20file.csv"))
        .await;
    assert_eq!(download.assert_ok(), "a,b\n1,2\n");

    // Bob sees none of it: not in his list, and every page or action of it is a 404 page.
    let his = bob.get("/console/sessions").await;
    assert!(!his.assert_ok().contains(&id));
    for page in [
        bob.get(&session_path).await,
        bob.get(&format!("{session_path}/files/data%20file.csv"))
            .await,
        bob.post(
            &format!("{session_path}/execute"),
            &[("code", "print(answer)")],
        )
        .await,
        bob.post(&format!("{session_path}/close"), &[]).await,
    ] {
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
        assert!(!page.body.contains("the answer is"), "{}", page.body);
    }

    let deleted = alice
        .post(&format!("{session_path}/objects/answer/delete"), &[])
        .await;
    assert_eq!(deleted.assert_redirect(), format!("{session_path}#objects"));
    let gone = alice
        .post(&format!("{session_path}/files/data%20file.csv/delete"), &[])
        .await;
    assert_eq!(gone.assert_redirect(), format!("{session_path}#files"));
    let body = alice.get(&session_path).await.body;
    assert!(!body.contains("data%20file.csv") && !body.contains("<code>answer</code>"));

    // A snapshot: listed, downloadable, a session starts from it, Bob cannot touch it.
    alice
        .post(
            &format!("{session_path}/execute"),
            &[("code", "kept = 'yes'")],
        )
        .await
        .assert_ok();
    let snapshotted = alice
        .post(
            &format!("{session_path}/snapshot"),
            &[("name", "checkpoint")],
        )
        .await;
    assert_eq!(snapshotted.assert_redirect(), "/console/snapshots");
    let snapshots = alice.get("/console/snapshots").await;
    let body = snapshots.assert_ok().to_owned();
    assert!(body.contains("checkpoint"), "{body}");
    let snapshot = body
        .split("/console/snapshots/")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let zip = alice
        .get(&format!("/console/snapshots/{snapshot}/download"))
        .await;
    assert_eq!(zip.status, StatusCode::OK);
    assert!(zip.body.starts_with("PK"), "a zip archive");
    assert!(!bob.get("/console/snapshots").await.body.contains(&snapshot));
    assert_eq!(
        bob.get(&format!("/console/snapshots/{snapshot}/download"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        bob.post(&format!("/console/snapshots/{snapshot}/delete"), &[])
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let resumed = alice
        .post(&format!("/console/snapshots/{snapshot}/session"), &[])
        .await;
    let resumed_path = resumed.assert_redirect().to_owned();
    let ran = alice
        .post(
            &format!("{resumed_path}/execute"),
            &[("code", "print('kept', kept)")],
        )
        .await;
    assert!(ran.assert_ok().contains("kept yes"), "{}", ran.body);

    // Close, force close, and delete the snapshot.
    assert_eq!(
        alice
            .post(&format!("{session_path}/close"), &[])
            .await
            .assert_redirect(),
        "/console/sessions"
    );
    assert_eq!(
        alice
            .post(&format!("{resumed_path}/close"), &[("force", "1")])
            .await
            .assert_redirect(),
        "/console/sessions"
    );
    assert_eq!(alice.get(&session_path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        alice
            .post(&format!("/console/snapshots/{snapshot}/delete"), &[])
            .await
            .assert_redirect(),
        "/console/snapshots"
    );
    assert!(
        !alice
            .get("/console/snapshots")
            .await
            .body
            .contains(&snapshot)
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn batches_show_progress_results_and_files_to_their_owner() {
    let app = spawn_python_app().await;
    let jane = app.user_token("jane", Role::Contributor).await;
    publish_doubler(&app, &jane, 0.0).await;
    let records: Vec<serde_json::Value> = (0..5).map(|i| json!({"x": f64::from(i)})).collect();
    let id = start(&app, &jane, json!(records), 2).await;
    wait_complete(&app, &jane, &id).await;

    let mut browser = Browser::signed_in(&app, "jane", "User-Pass-1").await;
    let list = browser.get("/console/batches").await;
    let body = list.assert_ok();
    assert!(body.contains(&id) && body.contains("doubler v1") && body.contains("5 / 5"));
    let path = format!("/console/batches/doubler/v1/{id}");
    let page = browser.get(&path).await;
    let body = page.assert_ok();
    assert!(
        body.contains("Complete") && body.contains("5 of 5 records done"),
        "{body}"
    );
    assert!(
        !body.contains("every 1s"),
        "a finished batch does not refresh"
    );
    assert!(body.contains("y&#34;:8.0"), "record 4's output: {body}");
    let files = browser.get(&format!("{path}/records/3")).await;
    let body = files.assert_ok();
    assert!(
        body.contains("out.txt") && body.contains("data:application/octet-stream;base64,Ni4w"),
        "{body}"
    );

    let mut bob = Browser::signed_in_as(&app, "bob", Role::Contributor).await;
    assert!(!bob.get("/console/batches").await.body.contains(&id));
    for page in [
        bob.get(&path).await,
        bob.get(&format!("{path}/records/3")).await,
        bob.post(&format!("{path}/cancel"), &[]).await,
    ] {
        assert!(
            matches!(page.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
            "{} {}",
            page.status,
            page.body
        );
        assert!(!page.body.contains("Ni4w"));
    }
    // An Owner sees everyone's batches.
    let mut admin = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let everyone = admin.get("/console/batches").await;
    assert!(everyone.assert_ok().contains(&id), "{}", everyone.body);

    // Cancelling deletes the batch, as the reference's cancel does.
    let cancelled = browser.post(&format!("{path}/cancel"), &[]).await;
    assert_eq!(cancelled.assert_redirect(), "/console/batches");
    assert_eq!(browser.get(&path).await.status, StatusCode::NOT_FOUND);
    assert!(!browser.get("/console/batches").await.body.contains(&id));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn the_cluster_page_shows_the_components_nodes_and_pools() {
    let app = spawn_python_app().await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    let page = browser.get("/console/cluster").await;
    let body = page.assert_ok();
    for expected in [
        "Database",
        "Authentication",
        "Compute",
        "local",
        "Python · shared",
        r#"hx-trigger="every 2s""#,
        r#"<td class="idle">"#,
    ] {
        assert!(body.contains(expected), "{expected}: {body}");
    }
}

#[tokio::test]
async fn unknown_pages_and_assets_are_404_pages_and_the_assets_are_served() {
    let app = spawn_app().await;
    let mut browser = Browser::signed_in(&app, "admin", ADMIN_PASSWORD).await;
    for path in ["/console/nowhere", "/console/assets/secret.txt"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert!(page.body.contains("<html"), "{path}: an HTML page");
    }
    let css = browser.get("/console/assets/console.css").await;
    assert!(css.assert_ok().contains("--accent"));
    let htmx = browser.get("/console/assets/htmx.min.js").await;
    assert!(htmx.assert_ok().contains("htmx"));
    assert_eq!(
        htmx.headers["content-type"],
        "text/javascript; charset=utf-8"
    );
}

#[tokio::test]
async fn the_swagger_ui_page_links_assets_that_exist() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    for path in [
        "/swagger-ui",
        "/swagger-ui/",
        "/swagger-ui/?q=%22%3E%3Cscript%3E",
    ] {
        let page = browser.get(path).await;
        let body = page.assert_ok();
        assert!(
            body.contains(r#"href="/swagger-ui/swagger-ui.css""#),
            "{path}: {body}"
        );
        assert!(
            !body.contains("<script>\""),
            "{path}: the query is not copied into the page"
        );
    }
    for asset in [
        "/swagger-ui/swagger-ui.css",
        "/swagger-ui/swagger-ui-bundle.js",
        "/swagger.json",
    ] {
        assert_eq!(browser.get(asset).await.status, StatusCode::OK, "{asset}");
    }
}

#[tokio::test]
async fn console_pages_forbid_framing_foreign_scripts_and_type_sniffing() {
    let app = spawn_app().await;
    for path in [
        "/console/login",
        "/console/services",
        "/console/no-such-page",
    ] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        let headers = response.headers();
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.contains("default-src 'self'"), "{path}: {policy}");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy}"
        );
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
}
