//! Named environments against real builds: `uv` from a package index the test serves (a
//! wheel it makes and a real package from `O16N_TEST_WHEELS`, which `scripts/test.sh` fills
//! once, as an organisation's mirror would hold it), and R's own tools from an R repository the
//! test builds; real workers import what was built.

use std::time::{Duration, Instant};

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, assert_error_shape, spawn_real_app_with};
use crate::package_index::PackageIndex;
use crate::sessions::{execute, take_snapshot};

/// The real package the mirror holds besides the test's own (`tabulate`, pure Python).
const REAL_PACKAGE: &str = "tabulate";

/// A Python package index with `hello-o16n` 1.0 and the real package.
pub(crate) async fn python_index() -> PackageIndex {
    let index = PackageIndex::start().await;
    index.add_wheel("hello-o16n", "1.0");
    let wheels = std::env::var_os("O16N_TEST_WHEELS").expect(
        "O16N_TEST_WHEELS must name a directory with the tabulate wheel; scripts/test.sh fills it",
    );
    let real = std::fs::read_dir(&wheels)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| {
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(REAL_PACKAGE)
        })
        .expect("the tabulate wheel is in O16N_TEST_WHEELS");
    let dir = index.path(&format!("simple/{REAL_PACKAGE}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&real, dir.join(real.file_name().unwrap())).unwrap();
    index
}

pub(crate) async fn put_environment(
    app: &TestApp,
    token: &str,
    name: &str,
    body: Value,
) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/environments/{name}"),
        Some(token),
        Some(body),
    )
    .await
}

/// Waits for a build to end (it runs on real processes) and returns the environment.
pub(crate) async fn wait_built(app: &TestApp, token: &str, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (status, body) = app
            .call(
                Method::GET,
                &format!("/environments/{name}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["state"] == "Ready" || body["state"] == "Failed" {
            return body;
        }
        assert!(Instant::now() < deadline, "the build did not end: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create_session_in(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.call(Method::POST, "/sessions", Some(token), Some(body))
        .await
}

pub(crate) async fn session_in(
    app: &TestApp,
    token: &str,
    runtime: &str,
    environment: Option<&str>,
) -> String {
    let (status, body) = create_session_in(
        app,
        token,
        json!({"runtimeType": runtime, "environment": environment}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["sessionId"].as_str().unwrap().to_owned()
}

pub(crate) fn python_app_config(
    index: &PackageIndex,
) -> impl FnOnce(&mut o16n_server::config::Config) {
    let url = format!("{}/simple/", index.url);
    move |config| {
        config.environments.python_index_url = url;
        config.environments.pool_size = 1;
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_python_environment_is_built_from_the_index_and_reproduced_from_its_lock() {
    let index = python_index().await;
    let database = tempfile::tempdir().unwrap();
    let database_url = o16n_store::Store::sqlite_url(&database.path().join("shared.db"));
    let shared_database = |config: &mut o16n_server::config::Config| {
        config.database.url = Some(secrecy::SecretString::from(database_url.clone()));
    };
    let configure = python_app_config(&index);
    let app = spawn_real_app_with(|config| {
        configure(config);
        shared_database(config);
    })
    .await;
    let token = app.admin_token().await;

    let (status, created) = put_environment(
        &app,
        &token,
        "greetings",
        json!({"runtimeType": "Python", "requirements": "hello-o16n\ntabulate==0.9.0\n"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(
        ["Pending", "Building"].contains(&created["state"].as_str().unwrap()),
        "{created}"
    );
    let built = wait_built(&app, &token, "greetings").await;
    assert_eq!(built["state"], "Ready", "{built}");
    let lock = built["lock"].as_str().unwrap();
    assert!(
        lock.contains("hello-o16n==1.0") && lock.contains("tabulate==0.9.0"),
        "{lock}"
    );
    assert!(
        built["log"].as_str().unwrap().contains("built in"),
        "{built}"
    );
    assert!(
        lock.contains("--hash=sha256:"),
        "the lock pins every file: {lock}"
    );
    let resolved = &built["resolvedPackages"];
    assert_eq!(
        resolved[0],
        json!({"name": "hello-o16n", "version": "1.0"}),
        "{built}"
    );
    assert_eq!(
        resolved[1],
        json!({"name": "tabulate", "version": "0.9.0"}),
        "{built}"
    );

    // Listed beside the runtimes' defaults.
    let (_, list) = app
        .call(Method::GET, "/environments", Some(&token), None)
        .await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["python-default", "r-default", "greetings"]);
    assert!(
        list[0]["resolvedPackages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "numpy")
    );

    // A session in it imports the new packages, and the default environment's as well.
    let session = session_in(&app, &token, "Python", Some("greetings")).await;
    let ran = execute(&app, &token, &session, json!({
        "code": "import hello_o16n, tabulate, numpy\ngreeting = hello_o16n.greet('alice')\ntable = tabulate.tabulate([[1, 2]])\nprint(numpy.arange(3).sum())",
        "outputParameters": ["greeting", "table"],
    }))
    .await;
    assert_eq!(ran["success"], true, "{ran}");
    assert_eq!(
        ran["outputParameters"][0]["value"], "hello alice from hello-o16n 1.0",
        "{ran}"
    );
    assert_eq!(ran["consoleOutput"], "3\n", "{ran}");

    // The default environment still lacks them.
    let plain = session_in(&app, &token, "Python", None).await;
    let missing = execute(&app, &token, &plain, json!({"code": "import hello_o16n"})).await;
    assert_eq!(missing["success"], false, "{missing}");
    assert!(
        missing["errorMessage"]
            .as_str()
            .unwrap()
            .contains("No module named 'hello_o16n'"),
        "{missing}"
    );

    // A snapshot remembers its environment: a session from it runs there, and one of another
    // environment is refused.
    let snapshot = take_snapshot(&app, &token, &session, None).await;
    let (status, body) = create_session_in(
        &app,
        &token,
        json!({"runtimeType": "Python", "snapshotId": snapshot, "environment": "python-default"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        assert_error_shape(&body).contains("environment `greetings`"),
        "{body}"
    );
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{plain}/loadsnapshot/{snapshot}"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, restored) = create_session_in(
        &app,
        &token,
        json!({"runtimeType": "Python", "snapshotId": snapshot}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{restored}");
    let again = execute(
        &app,
        &token,
        restored["sessionId"].as_str().unwrap(),
        json!({
            "code": "import hello_o16n\nsame = greeting == hello_o16n.greet('alice')",
            "outputParameters": ["same"],
        }),
    )
    .await;
    assert_eq!(again["outputParameters"][0]["value"], true, "{again}");

    // A service published in it answers; its swagger and consumption are as any service's.
    let (status, body) = app
        .call(
            Method::POST,
            "/services/greeter/1.0",
            Some(&token),
            Some(json!({
                "code": "import hello_o16n\nanswer = hello_o16n.greet(who)",
                "inputParameterDefinitions": [{"name": "who", "type": "character"}],
                "outputParameterDefinitions": [{"name": "answer", "type": "character"}],
                "runtimeType": "Python",
                "environment": "greetings",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let consume = |who: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            app.call(
                Method::POST,
                "/api/greeter/1.0",
                Some(&token),
                Some(json!({"who": who})),
            )
            .await
        }
    };
    let (status, answer) = consume("bob").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["outputParameters"]["answer"], "hello bob from hello-o16n 1.0",
        "{answer}"
    );
    // A dedicated pool of the service runs its workers in the environment too.
    let (status, body) = app
        .call(
            Method::POST,
            "/services/greeter/1.0/pool",
            Some(&token),
            Some(json!({"InitialPoolSize": 1, "MaxPoolSize": 1})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let (status, answer) = consume("erin").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["outputParameters"]["answer"],
        "hello erin from hello-o16n 1.0"
    );
    let (_, status_report) = app.call(Method::GET, "/status", Some(&token), None).await;
    let runtimes = &status_report["components"]["runtimes"]["components"];
    assert_eq!(
        runtimes["dedicatedPools"]["components"]["greeter/1.0"]["details"]["busy"]
            .as_u64()
            .unwrap()
            + runtimes["dedicatedPools"]["components"]["greeter/1.0"]["details"]["idle"]
                .as_u64()
                .unwrap(),
        1,
        "{status_report}"
    );
    assert!(
        runtimes["environmentPools"]["components"]["greetings"].is_object(),
        "{status_report}"
    );
    let (_, service) = app
        .call(Method::GET, "/services/greeter/1.0", Some(&token), None)
        .await;
    assert_eq!(service[0]["environment"], "greetings", "{service}");

    // In use: not deleted. A rebuild that fails keeps the lock the service runs on.
    let (status, body) = app
        .call(
            Method::DELETE,
            "/environments/greetings",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(assert_error_shape(&body).contains("greeter/1.0"), "{body}");
    let (status, body) = put_environment(
        &app,
        &token,
        "greetings",
        json!({"runtimeType": "Python", "requirements": "hello-o16n\nno-such-package-o16n\n"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let failed = wait_built(&app, &token, "greetings").await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    assert!(
        failed["log"]
            .as_str()
            .unwrap()
            .contains("no-such-package-o16n"),
        "{failed}"
    );
    assert_eq!(failed["lock"], built["lock"], "the last good lock stays");
    let (status, answer) = consume("carol").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["outputParameters"]["answer"],
        "hello carol from hello-o16n 1.0"
    );

    // A second node with the same database and nothing built: the index has a newer
    // hello-o16n now, but the node builds the lock, so it runs 1.0 as the first did.
    index.add_wheel("hello-o16n", "2.0");
    drop(app);
    let configure = python_app_config(&index);
    let second = spawn_real_app_with(|config| {
        configure(config);
        shared_database(config);
    })
    .await;
    assert!(!second.data_dir.path().join("environments/python").exists());
    let token = second.admin_token().await;
    let session = session_in(&second, &token, "Python", Some("greetings")).await;
    let ran = execute(
        &second,
        &token,
        &session,
        json!({
            "code": "import hello_o16n\nversion = hello_o16n.VERSION",
            "outputParameters": ["version"],
        }),
    )
    .await;
    assert_eq!(ran["outputParameters"][0]["value"], "1.0", "{ran}");
    let (status, answer) = second
        .call(
            Method::POST,
            "/api/greeter/1.0",
            Some(&token),
            Some(json!({"who": "dave"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["outputParameters"]["answer"],
        "hello dave from hello-o16n 1.0"
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn bad_requirements_sources_and_environments_get_clear_answers() {
    let index = python_index().await;
    let app = spawn_real_app_with(python_app_config(&index)).await;
    let admin = app.admin_token().await;
    let reader = app.user_token("rita", Role::Reader).await;
    let contributor = app.user_token("carl", Role::Contributor).await;

    for requirements in [
        "--index-url https://elsewhere.example/simple\nhello-o16n",
        "-e git+https://example.com/x.git#egg=x",
        "x @ https://elsewhere.example/x-1.0-py3-none-any.whl",
        "/tmp/x-1.0-py3-none-any.whl",
    ] {
        let (status, body) = put_environment(
            &app,
            &admin,
            "elsewhere",
            json!({"runtimeType": "Python", "requirements": requirements}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{requirements}: {body}");
        assert!(
            assert_error_shape(&body).contains("points elsewhere"),
            "{body}"
        );
    }
    for (name, body) in [
        ("ok", json!({"runtimeType": "Python"})),
        ("ok", json!({"runtimeType": "Python", "requirements": ""})),
        ("ok", json!({"runtimeType": "Julia", "requirements": "x"})),
        (
            "ok",
            json!({"runtimeType": "R", "packages": ["x; system('id')"]}),
        ),
        (
            "ok",
            json!({"runtimeType": "R", "packages": ["x"], "repositories": ["https://elsewhere.example"]}),
        ),
        (
            "a%20b",
            json!({"runtimeType": "Python", "requirements": "x"}),
        ),
        (
            "python-default",
            json!({"runtimeType": "Python", "requirements": "x"}),
        ),
    ] {
        let (status, answer) = put_environment(&app, &admin, name, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
        assert_error_shape(&answer);
    }
    let (status, body) = put_environment(
        &app,
        &reader,
        "mine",
        json!({"runtimeType": "Python", "requirements": "hello-o16n"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");

    // A requirement that does not resolve ends Failed with the reason in the log.
    let (status, _) = put_environment(
        &app,
        &contributor,
        "unresolvable",
        json!({"runtimeType": "Python", "requirements": "hello-o16n>=5"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let failed = wait_built(&app, &contributor, "unresolvable").await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    assert!(
        failed["log"].as_str().unwrap().contains("hello-o16n"),
        "{failed}"
    );
    assert_eq!(failed["lock"], Value::Null);

    // Not built: sessions and services are refused with a conflict that says so.
    let (status, body) = create_session_in(
        &app,
        &contributor,
        json!({"runtimeType": "Python", "environment": "unresolvable"}),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(assert_error_shape(&body).contains("not ready"), "{body}");
    // Unknown, or of another runtime: a bad request.
    let (status, body) = create_session_in(
        &app,
        &contributor,
        json!({"runtimeType": "Python", "environment": "nowhere"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        assert_error_shape(&body).contains("no environment `nowhere`"),
        "{body}"
    );
    let (status, body) = create_session_in(
        &app,
        &contributor,
        json!({"runtimeType": "Python", "environment": "r-default"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = app
        .call(
            Method::POST,
            "/services/x/1",
            Some(&contributor),
            Some(json!({"code": "y = 1", "runtimeType": "Python", "environment": "nowhere"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Another user's environment: readable, not theirs to change or delete.
    let other = app.user_token("olga", Role::Contributor).await;
    let (status, _) = app
        .call(
            Method::GET,
            "/environments/unresolvable",
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = put_environment(
        &app,
        &other,
        "unresolvable",
        json!({"runtimeType": "Python", "requirements": "hello-o16n"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = app
        .call(
            Method::DELETE,
            "/environments/unresolvable",
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call(
            Method::DELETE,
            "/environments/python-default",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .call(
            Method::DELETE,
            "/environments/unresolvable",
            Some(&contributor),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .call(
            Method::GET,
            "/environments/unresolvable",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // A mirror that is down: Failed, saying it could not be reached; nothing else changes.
    drop(index);
    let (status, _) = put_environment(
        &app,
        &admin,
        "offline",
        json!({"runtimeType": "Python", "requirements": "hello-o16n"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let failed = wait_built(&app, &admin, "offline").await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    app.assert_still_serving().await;
}

/// Builds the source package `o16nhello` in a CRAN-like repository the test serves.
fn build_r_package(index: &PackageIndex, version: &str) {
    build_r_package_source(
        index,
        "o16nhello",
        version,
        &format!("hello <- function(who) paste('hello', who, 'from o16nhello {version}')\n"),
    );
}

/// Builds a source package `name` whose one R file is `code` and indexes the repository.
fn build_r_package_source(index: &PackageIndex, name: &str, version: &str, code: &str) {
    build_r_package_with_configure(index, name, version, code, None);
}

/// Builds a source package as [`build_r_package_source`], with a `configure` script (run by
/// R's installer inside the build, as the package's own code).
pub(crate) fn build_r_package_with_configure(
    index: &PackageIndex,
    name: &str,
    version: &str,
    code: &str,
    configure: Option<&str>,
) {
    let source = tempfile::tempdir().unwrap();
    let package = source.path().join(name);
    std::fs::create_dir_all(package.join("R")).unwrap();
    if let Some(script) = configure {
        use std::os::unix::fs::PermissionsExt;
        let path = package.join("configure");
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::write(
        package.join("DESCRIPTION"),
        format!(
            "Package: {name}\nVersion: {version}\nTitle: An o16n Test Package\n\
             Description: Says hello.\nLicense: MIT\nAuthor: o16n\nMaintainer: o16n <o16n@example.org>\n"
        ),
    )
    .unwrap();
    std::fs::write(package.join("NAMESPACE"), "exportPattern('.')\n").unwrap();
    std::fs::write(package.join("R/code.R"), code).unwrap();
    let contrib = index.path("src/contrib");
    std::fs::create_dir_all(&contrib).unwrap();
    let built = std::process::Command::new("R")
        .args(["CMD", "build", "--no-build-vignettes", "--no-manual"])
        .arg(&package)
        .current_dir(&contrib)
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let indexed = std::process::Command::new("Rscript")
        .args([
            "--vanilla",
            "-e",
            "tools::write_PACKAGES('.', type = 'source')",
        ])
        .current_dir(&contrib)
        .output()
        .unwrap();
    assert!(
        indexed.status.success(),
        "{}",
        String::from_utf8_lossy(&indexed.stderr)
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_r_environment_installs_a_package_from_the_configured_repository() {
    let repository = PackageIndex::start().await;
    build_r_package(&repository, "1.0");
    let url = repository.url.clone();
    let app = spawn_real_app_with(move |config| {
        config.environments.r_repositories = vec![url];
        config.environments.allow_source_builds = true;
    })
    .await;
    let token = app.admin_token().await;
    let (status, body) = put_environment(
        &app,
        &token,
        "hello-r",
        json!({"runtimeType": "R", "packages": ["o16nhello"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let built = wait_built(&app, &token, "hello-r").await;
    assert_eq!(built["state"], "Ready", "{built}");
    assert_eq!(
        built["resolvedPackages"],
        json!([{"name": "o16nhello", "version": "1.0"}]),
        "{built}"
    );
    assert!(
        built["lock"].as_str().unwrap().contains("\"md5\""),
        "{built}"
    );

    let session = session_in(&app, &token, "R", Some("hello-r")).await;
    let ran = execute(
        &app,
        &token,
        &session,
        json!({
            "code": "library(o16nhello)\ngreeting <- hello('alice')",
            "outputParameters": ["greeting"],
        }),
    )
    .await;
    assert_eq!(ran["success"], true, "{ran}");
    assert_eq!(
        ran["outputParameters"][0]["value"], "hello alice from o16nhello 1.0",
        "{ran}"
    );

    let plain = session_in(&app, &token, "R", None).await;
    let missing = execute(
        &app,
        &token,
        &plain,
        json!({
            "code": "found <- requireNamespace('o16nhello', quietly = TRUE)",
            "outputParameters": ["found"],
        }),
    )
    .await;
    assert_eq!(missing["outputParameters"][0]["value"], false, "{missing}");

    let (status, body) = app
        .call(
            Method::POST,
            "/services/rhello/1.0",
            Some(&token),
            Some(json!({
                "code": "library(o16nhello)\nanswer <- hello(who)",
                "inputParameterDefinitions": [{"name": "who", "type": "character"}],
                "outputParameterDefinitions": [{"name": "answer", "type": "character"}],
                "environment": "hello-r",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, answer) = app
        .call(
            Method::POST,
            "/api/rhello/1.0",
            Some(&token),
            Some(json!({"who": "bob"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(
        answer["outputParameters"]["answer"], "hello bob from o16nhello 1.0",
        "{answer}"
    );

    // A package that does not build: Failed, with R's complaint in the log.
    build_r_package_source(&repository, "o16nbroken", "1.0", "broken <- function( {\n");
    let (status, _) = put_environment(
        &app,
        &token,
        "broken-r",
        json!({"runtimeType": "R", "packages": ["o16nbroken"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let failed = wait_built(&app, &token, "broken-r").await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    assert!(
        failed["log"]
            .as_str()
            .unwrap()
            .contains("o16nbroken 1.0 did not install"),
        "{failed}"
    );

    // A package the repository does not have: Failed, naming it.
    let (status, _) = put_environment(
        &app,
        &token,
        "missing-r",
        json!({"runtimeType": "R", "packages": ["notapackage"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let failed = wait_built(&app, &token, "missing-r").await;
    assert_eq!(failed["state"], "Failed", "{failed}");
    assert!(
        failed["log"].as_str().unwrap().contains("notapackage"),
        "{failed}"
    );
}
