//! Python workers forked from a warmed template (the default on a root server): forked
//! workers are as isolated from each other as spawned ones, a worker's death touches neither
//! the template nor its siblings, a template that dies is replaced and the pool refills, and a
//! change of the installed packages brings a new template whose workers see them.
//!
//! The template of a test's server is found on the host as the child of the bubblewrap that
//! binds that server's working directories.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::environments::{
    put_environment, python_app_config, python_index, session_in, wait_built,
};
use crate::helpers::{TestApp, assert_error_shape, spawn_real_app_with, test_python};
use crate::sessions::{create_session, execute};

/// The pid of the running template of `app`'s Python workers, if one runs.
fn template_pid(app: &TestApp) -> Option<i32> {
    runtime_template_pid(app, "o16n_worker.py")
}

/// The pid of the running template of `app` that runs the worker script `script`.
fn runtime_template_pid(app: &TestApp, script: &str) -> Option<i32> {
    let work_root = app.data_dir.path().join("work");
    let bind = format!("{}\0/run/o16n/work\0", work_root.display());
    // A replaced template's bubblewrap may linger a moment after its template ended: the
    // running template is the child of the one that still has a child.
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                let text = String::from_utf8_lossy(&cmdline);
                text.contains(&bind) && text.contains(script) && text.contains("\0--template\0")
            })
        })
        .find_map(|bubblewrap| children(bubblewrap).into_iter().next())
}

fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Runs `code` in `session` and returns what it printed.
async fn printed(app: &TestApp, token: &str, session: &str, code: &str) -> String {
    let response = execute(app, token, session, json!({ "code": code })).await;
    assert_eq!(response["success"], true, "{response}");
    response["consoleOutput"].as_str().unwrap().to_owned()
}

/// Waits until `condition` holds, polling (the pool refills in the background).
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..300 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

const IDENTITY: &str = r#"
import os
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
print(os.getuid(), os.getpid(), sorted(os.listdir("/proc")).count("1"),
      status["CapEff"].strip(), status["CapBnd"].strip(), status["CapInh"].strip(),
      status["CapAmb"].strip(), status["NoNewPrivs"].strip(), os.listdir("/run/o16n/work"),
      sorted(os.listdir(os.environ["HOME"])), os.getcwd())
"#;

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn two_forked_workers_share_neither_globals_nor_files_nor_an_identity() {
    let app = spawn_real_app_with(|config| config.runtime.python.initial_size = 2).await;
    let token = app.admin_token().await;
    let first = create_session(&app, &token).await;
    let second = create_session(&app, &token).await;
    let template = template_pid(&app).expect("the workers come from a template");
    assert!(
        children(template).len() >= 2,
        "both workers are the template's"
    );
    let status = std::fs::read_to_string(format!("/proc/{template}/status")).unwrap();
    assert!(
        status.lines().any(|line| line == "Threads:\t1"),
        "a template forks with one thread: {status}"
    );

    printed(
        &app,
        &token,
        &first,
        "secret = 'first'\nopen('mine.txt', 'w').write('first')",
    )
    .await;
    let seen = printed(
        &app,
        &token,
        &second,
        "import os\nprint('secret' in globals(), os.listdir('.'))",
    )
    .await;
    assert_eq!(seen.trim(), "False []", "{seen}");

    let first_identity = printed(&app, &token, &first, IDENTITY).await;
    let second_identity = printed(&app, &token, &second, IDENTITY).await;
    let zero = "0000000000000000";
    for (identity, files) in [(&first_identity, "['mine.txt']"), (&second_identity, "[]")] {
        let expected = format!("1 1 {zero} {zero} {zero} {zero} 1 [] {files} /home/o16n");
        let (uid, rest) = identity.trim().split_once(' ').unwrap();
        assert_ne!(uid, "0", "{identity}");
        assert_eq!(
            rest, expected,
            "PID 1 of its own namespace, no capabilities: {identity}"
        );
    }
    assert_ne!(
        first_identity.split_once(' ').unwrap().0,
        second_identity.split_once(' ').unwrap().0,
        "each worker has a user id of its own"
    );
    let random = "import numpy\nprint(numpy.random.randint(1 << 30))";
    assert_ne!(
        printed(&app, &token, &first, random).await,
        printed(&app, &token, &second, random).await,
        "forked workers do not repeat each other's random numbers"
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_worker_that_dies_leaves_its_template_and_siblings_running() {
    let app = spawn_real_app_with(|config| config.runtime.python.initial_size = 2).await;
    let token = app.admin_token().await;
    let doomed = create_session(&app, &token).await;
    let sibling = create_session(&app, &token).await;
    printed(&app, &token, &sibling, "kept = 41").await;
    let template = template_pid(&app).expect("the workers come from a template");

    let (status, body) = app
        .call(
            Method::POST,
            &format!("/sessions/{doomed}/execute"),
            Some(&token),
            Some(json!({"code": "import os\nos._exit(3)"})),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(assert_error_shape(&body).contains("exit code 3"), "{body}");

    assert!(alive(template), "the template lives on");
    assert_eq!(template_pid(&app), Some(template));
    assert_eq!(
        printed(&app, &token, &sibling, "print(kept + 1)")
            .await
            .trim(),
        "42"
    );
    let fresh = create_session(&app, &token).await;
    assert_eq!(
        printed(&app, &token, &fresh, "print('new')").await.trim(),
        "new"
    );
    assert_eq!(template_pid(&app), Some(template), "from the same template");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_killed_template_is_replaced_and_the_pool_refills() {
    let app = spawn_real_app_with(|config| config.runtime.python.initial_size = 2).await;
    let token = app.admin_token().await;
    let running = create_session(&app, &token).await;
    printed(&app, &token, &running, "kept = 'still here'").await;
    let template = template_pid(&app).expect("the workers come from a template");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(template),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    eventually("the template's end", || !alive(template)).await;

    // The session's worker outlives its template.
    assert_eq!(
        printed(&app, &token, &running, "print(kept)").await.trim(),
        "still here"
    );
    // Leasing the warm worker makes the pool start another, from a new template.
    let session = create_session(&app, &token).await;
    assert_eq!(
        printed(&app, &token, &session, "print(6 * 7)").await.trim(),
        "42"
    );
    eventually("a new template", || {
        template_pid(&app).is_some_and(|pid| pid != template)
    })
    .await;
    let replacement = template_pid(&app).unwrap();
    eventually("the pool refilled from the new template", || {
        !children(replacement).is_empty()
    })
    .await;
}

/// A bare virtual environment made from the test Python's interpreter: its interpreter and
/// site-packages.
fn bare_environment(root: &Path) -> (PathBuf, PathBuf) {
    let created = std::process::Command::new(test_python())
        .args(["-m", "venv", "--without-pip"])
        .arg(root)
        .status()
        .unwrap();
    assert!(created.success());
    let python = root.join("bin").join("python");
    let output = std::process::Command::new(&python)
        .args(["-c", "import site; print(site.getsitepackages()[0])"])
        .output()
        .unwrap();
    let site_packages = PathBuf::from(String::from_utf8(output.stdout).unwrap().trim());
    (python, site_packages)
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn workers_after_a_change_of_packages_come_from_a_new_template_and_see_it() {
    // Not under /tmp, where every worker has a private directory of its own.
    let environment = tempfile::tempdir_in("/var/tmp").unwrap();
    let (python, site_packages) = bare_environment(environment.path());
    // `probe` stands in for a package the operator installed.
    std::fs::write(site_packages.join("probe.py"), "version = 'first'\n").unwrap();
    let app = spawn_real_app_with(|config| {
        config.runtime.python.executable = Some(python);
        config.runtime.python.initial_size = 1;
    })
    .await;
    let token = app.admin_token().await;
    let before = create_session(&app, &token).await;
    let check = "import probe\nprint(probe.version)";
    assert_eq!(printed(&app, &token, &before, check).await.trim(), "first");
    let template = template_pid(&app).expect("the workers come from a template");

    // The operator upgrades the package: a module becomes a package of a new version.
    std::fs::remove_file(site_packages.join("probe.py")).unwrap();
    std::fs::create_dir(site_packages.join("probe")).unwrap();
    std::fs::write(
        site_packages.join("probe").join("__init__.py"),
        "version = 'second'\n",
    )
    .unwrap();
    let after = create_session(&app, &token).await;
    assert_eq!(printed(&app, &token, &after, check).await.trim(), "second");
    // The first worker after the change may be spawned while the new template warms up.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match template_pid(&app) {
            Some(pid) if pid != template => break,
            _ => {
                assert!(std::time::Instant::now() < deadline, "no new template runs");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert_eq!(
        printed(&app, &token, &before, "print(probe.version)")
            .await
            .trim(),
        "first",
        "a running worker keeps what it imported"
    );
}

const R_IDENTITY: &str = r#"
status <- readLines("/proc/self/status")
field <- function(name) trimws(sub("^[^:]*:", "", grep(paste0("^", name, ":"), status, value = TRUE)))
cat(strsplit(field("Uid"), "\\s+")[[1]][1], Sys.getpid(), field("CapEff"), field("CapBnd"),
    field("NoNewPrivs"), length(list.files("/run/o16n/work")),
    paste(list.files(Sys.getenv("HOME")), collapse = ","), getwd(),
    dir.exists(tempdir()), "\n")
"#;

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn forked_r_workers_share_neither_globals_nor_files_nor_an_identity() {
    let app = spawn_real_app_with(|config| config.runtime.r.initial_size = 2).await;
    let token = app.admin_token().await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (status, body) = app
            .call(
                Method::POST,
                "/sessions",
                Some(&token),
                Some(json!({"runtimeType": "R"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        sessions.push(body["sessionId"].as_str().unwrap().to_owned());
    }
    let template = runtime_template_pid(&app, "o16n_worker.R").expect("R workers are forked");
    assert!(
        children(template).len() >= 2,
        "both workers are the template's"
    );

    printed(
        &app,
        &token,
        &sessions[0],
        "secret <- 'first'; writeLines('first', 'mine.txt')",
    )
    .await;
    let seen = printed(
        &app,
        &token,
        &sessions[1],
        "cat(exists('secret'), length(list.files('.')), '\\n')",
    )
    .await;
    assert_eq!(seen.trim(), "FALSE 0", "{seen}");
    let zero = "0000000000000000";
    let mut uids = Vec::new();
    for (session, files) in [(&sessions[0], "mine.txt"), (&sessions[1], "")] {
        let identity = printed(&app, &token, session, R_IDENTITY).await;
        let fields: Vec<&str> = identity.split_whitespace().collect();
        assert_ne!(fields[0], "0", "{identity}");
        let expected: Vec<&str> = ["1", zero, zero, "1", "0"]
            .into_iter()
            .chain((!files.is_empty()).then_some(files))
            .chain(["/home/o16n", "TRUE"])
            .collect();
        assert_eq!(
            fields[1..],
            expected[..],
            "PID 1, no capabilities, its own files: {identity}"
        );
        uids.push(fields[0].to_owned());
    }
    assert_ne!(uids[0], uids[1], "each worker has a user id of its own");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn environment_workers_come_from_the_default_template_with_their_packages_first() {
    let index = python_index().await;
    let configure = python_app_config(&index);
    let app = spawn_real_app_with(|config| {
        configure(config);
        config.runtime.python.initial_size = 1;
    })
    .await;
    let token = app.admin_token().await;
    let (status, body) = put_environment(
        &app,
        &token,
        "tables",
        json!({"runtimeType": "Python", "requirements": "tabulate==0.9.0\n"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let built = wait_built(&app, &token, "tables").await;
    assert_eq!(built["state"], "Ready", "{built}");

    let default = session_in(&app, &token, "Python", None).await;
    let template = template_pid(&app).expect("the default workers come from a template");
    eventually("the default pool refilled", || {
        children(template).len() >= 2
    })
    .await;
    let before = children(template).len();
    let session = session_in(&app, &token, "Python", Some("tables")).await;
    assert!(
        children(template).len() > before,
        "the environment's worker is the default template's"
    );
    let check = "import sys, numpy, tabulate\n\
                 print(sys.prefix.startswith('/opt/o16n/environments/python/'), \
                 tabulate.__file__.startswith(sys.prefix), numpy.__file__.startswith(sys.prefix))";
    assert_eq!(
        printed(&app, &token, &session, check).await.trim(),
        "True True False",
        "its own packages from the environment, numpy shared from the template"
    );
    let response = execute(&app, &token, &default, json!({"code": "import tabulate"})).await;
    assert_eq!(
        response["success"], false,
        "the default workers do not see it: {response}"
    );
}
