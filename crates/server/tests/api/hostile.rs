//! Hostile tenants against the server itself (issue 28): a Reader or Contributor whose code
//! builds directory chains deep enough to overflow a recursive removal, prints without end,
//! fills its in-memory directories, or who floods `POST /login`. Each attack must fail while
//! the server and everyone else's requests stay healthy. (`sandbox.rs` attacks the sandbox.)

use std::time::{Duration, Instant};

use o16n_types::Role;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::environments::{
    build_r_package_with_configure, put_environment, python_app_config, python_index, wait_built,
};
use crate::helpers::{TestApp, assert_error_shape, spawn_real_app_with};
use crate::package_index::PackageIndex;
use crate::r_runtime::create_r_session;
use crate::sessions::{create_session, execute};

async fn close_session(app: &TestApp, token: &str, session: &str) {
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/sessions/{session}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The working directory on the host that holds the start of the attack's chain.
fn workdir_with_chain(app: &TestApp) -> Option<std::path::PathBuf> {
    let work = app.data_dir.path().join("work");
    std::fs::read_dir(work)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.join("chain").symlink_metadata().is_ok())
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_reader_s_200000_level_directory_is_removed_and_the_server_lives() {
    let app = spawn_real_app_with(|config| config.runtime.python.initial_size = 1).await;
    let reader = app.user_token("mallory", Role::Reader).await;
    let session = create_session(&app, &reader).await;
    // Relative steps, so that no path is ever longer than the kernel allows.
    let built = execute(
        &app,
        &reader,
        &session,
        json!({"code": "import os\nos.mkdir('chain')\nos.chdir('chain')\n\
                       for _ in range(200000):\n    os.mkdir('d')\n    os.chdir('d')\n\
                       depth = 200000"}),
    )
    .await;
    assert_eq!(built["success"], true, "{built}");
    let workdir = workdir_with_chain(&app).expect("the chain is in the session's directory");

    close_session(&app, &reader, &session).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while workdir.symlink_metadata().is_ok() {
        assert!(Instant::now() < deadline, "the chain was not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The server lives, and serves a new session.
    app.assert_still_serving().await;
    let next = create_session(&app, &reader).await;
    let answer = execute(&app, &reader, &next, json!({"code": "x = 1"})).await;
    assert_eq!(answer["success"], true, "{answer}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn console_output_is_kept_up_to_its_limit_for_python_and_r() {
    let app = spawn_real_app_with(|config| {
        config.runtime.max_console_kb = 256;
        config.runtime.python.initial_size = 1;
        config.runtime.r.initial_size = 1;
    })
    .await;
    let token = app.user_token("mallory", Role::Contributor).await;
    let limit = 256 * 1024;

    let python = create_session(&app, &token).await;
    // 64 lines of 1 MiB each.
    let printed = execute(
        &app,
        &token,
        &python,
        json!({"code": "line = 'x' * (1024 * 1024)\nfor _ in range(64):\n    print(line)"}),
    )
    .await;
    let console = printed["consoleOutput"].as_str().unwrap();
    assert!(console.len() < limit + 200, "{} bytes kept", console.len());
    assert!(
        console.ends_with("more bytes of console output were dropped (runtime.max_console_kb)]\n"),
        "{}",
        &console[console.len() - 200..]
    );
    let (status, stored) = app
        .call(
            Method::GET,
            &format!("/sessions/{python}/console-output"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(stored.to_string().len() < limit + 400);

    let r = create_r_session(&app, &token).await;
    // R's console is its stderr pipe: 64 lines of 1 MiB each, then a normal line.
    let printed = execute(
        &app,
        &token,
        &r,
        json!({"code": "line <- strrep('y', 1024 * 1024)\nfor (i in 1:64) cat(line, '\\n')\ncat('done\\n')\nz <- 2"}),
    )
    .await;
    assert_eq!(printed["success"], true, "{printed}");
    let console = printed["consoleOutput"].as_str().unwrap();
    assert!(console.len() < limit + 200, "{} bytes kept", console.len());
    assert!(console.contains("were dropped"), "{}", &console[..200]);
    // The session answers the next request at once: the console's end of request was seen.
    let started = Instant::now();
    let next = execute(&app, &token, &r, json!({"code": "cat(z)"})).await;
    assert_eq!(next["consoleOutput"], "2");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_worker_s_tmp_and_dev_shm_are_small_and_bounded() {
    let app = spawn_real_app_with(|config| {
        config.runtime.sandbox.tmp_size_mb = 8;
        config.runtime.sandbox.shm_size_mb = 4;
        config.runtime.python.initial_size = 1;
    })
    .await;
    let token = app.user_token("mallory", Role::Contributor).await;
    let session = create_session(&app, &token).await;
    let code = r#"
import os
sizes = {}
for where in ("/tmp", "/dev/shm"):
    stats = os.statvfs(where)
    sizes[where] = stats.f_blocks * stats.f_frsize
outcome = {}
for where in ("/tmp", "/dev/shm"):
    try:
        with open(os.path.join(where, "fill"), "wb") as handle:
            for _ in range(64):
                handle.write(b"z" * (1024 * 1024))
        outcome[where] = "wrote 64 MiB"
    except OSError as problem:
        outcome[where] = "refused: %s" % problem.strerror
"#;
    let answer = execute(
        &app,
        &token,
        &session,
        json!({"code": code, "outputParameters": ["sizes", "outcome"]}),
    )
    .await;
    assert_eq!(answer["success"], true, "{answer}");
    let (sizes, outcome) = (
        &answer["outputParameters"][0]["value"],
        &answer["outputParameters"][1]["value"],
    );
    assert_eq!(sizes["/tmp"], 8 * 1024 * 1024, "{answer}");
    assert_eq!(sizes["/dev/shm"], 4 * 1024 * 1024, "{answer}");
    for place in ["/tmp", "/dev/shm"] {
        assert!(
            outcome[place]
                .as_str()
                .unwrap()
                .starts_with("refused: No space left on device"),
            "{answer}"
        );
    }
    app.assert_still_serving().await;
}

/// A field of `/proc/PID/status`, or `None` once the process is gone.
fn status_field(pid: &str, field: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .map(|value| value.trim().to_owned())
}

/// The host pids of the processes that have `uid` among their four user ids.
fn pids_of(uid: u64) -> Vec<String> {
    let uid = uid.to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            status_field(pid, "Uid:").is_some_and(|ids| ids.split_whitespace().any(|id| id == uid))
        })
        .collect()
}

/// How many processes on the host run as `uid`.
fn processes_of(uid: u64) -> usize {
    pids_of(uid).len()
}

/// A server running as root (whose workers have host user ids to look for), with one warm
/// Python and one warm R worker; `None`, and the test skipped, when the tests are not root.
async fn root_server_with_warm_workers() -> Option<TestApp> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: only a root server gives workers host user ids to look for");
        return None;
    }
    Some(
        spawn_real_app_with(|config| {
            config.runtime.python.initial_size = 1;
            config.runtime.r.initial_size = 1;
        })
        .await,
    )
}

/// Closes a session whose code left processes of `uid` behind, and waits for them to go.
async fn closed_session_leaves_no_process(app: &TestApp, token: &str, session: &str, uid: u64) {
    assert!(processes_of(uid) >= 3, "the escapers never started");
    close_session(app, token, session).await;
    let closed = Instant::now();
    while processes_of(uid) > 0 {
        assert!(
            closed.elapsed() < Duration::from_secs(2),
            "{} processes of user id {uid} outlived their session by 2 s",
            processes_of(uid)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn workers_that_leave_their_session_and_ignore_signals_are_gone_within_2_s_of_the_close() {
    let Some(app) = root_server_with_warm_workers().await else {
        return;
    };
    let reader = app.user_token("mallory", Role::Reader).await;

    let python = create_session(&app, &reader).await;
    let code = r#"
import os, signal, time
uid = os.getuid()
if os.fork() == 0:
    os.setsid()
    for number in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(number, signal.SIG_IGN)
    for _ in range(3):
        if os.fork() == 0:
            os.setsid()
            time.sleep(600)
            os._exit(0)
    time.sleep(600)
    os._exit(0)
time.sleep(0.5)
"#;
    let answer = execute(
        &app,
        &reader,
        &python,
        json!({"code": code, "outputParameters": ["uid"]}),
    )
    .await;
    assert_eq!(answer["success"], true, "{answer}");
    let uid = answer["outputParameters"][0]["value"].as_u64().unwrap();
    closed_session_leaves_no_process(&app, &reader, &python, uid).await;

    let r = create_r_session(&app, &reader).await;
    let code = r#"
system("sh -c 'trap \"\" HUP INT TERM QUIT; setsid sleep 600 & setsid sleep 600 & sleep 600'", wait = FALSE)
Sys.sleep(0.5)
uid <- as.integer(system("id -u", intern = TRUE))
"#;
    let answer = execute(
        &app,
        &reader,
        &r,
        json!({"code": code, "outputParameters": ["uid"]}),
    )
    .await;
    assert_eq!(answer["success"], true, "{answer}");
    let uid = answer["outputParameters"][0]["value"].as_u64().unwrap();
    closed_session_leaves_no_process(&app, &reader, &r, uid).await;
    app.assert_still_serving().await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_forked_worker_s_keeper_keeps_only_the_capability_to_signal_it() {
    let Some(app) = root_server_with_warm_workers().await else {
        return;
    };
    let reader = app.user_token("mallory", Role::Reader).await;
    let python = create_session(&app, &reader).await;
    let r = create_r_session(&app, &reader).await;
    for (session, code) in [
        (&python, "import os\nuid = os.getuid()"),
        (&r, "uid <- as.integer(system('id -u', intern = TRUE))"),
    ] {
        let answer = execute(
            &app,
            &reader,
            session,
            json!({"code": code, "outputParameters": ["uid"]}),
        )
        .await;
        let uid = answer["outputParameters"][0]["value"].as_u64().unwrap();
        // The worker is PID 1 of its namespace; its parent on the host is its keeper.
        let keepers: Vec<String> = pids_of(uid)
            .iter()
            .filter_map(|pid| status_field(pid, "PPid:"))
            .filter(|parent| status_field(parent, "Uid:").is_some_and(|ids| ids.starts_with('0')))
            .collect();
        assert_eq!(keepers.len(), 1, "{answer}");
        let keeper = &keepers[0];
        // CAP_KILL (bit 5) and nothing else, in every set that could give more back.
        for set in ["CapEff:", "CapPrm:", "CapBnd:"] {
            assert_eq!(
                status_field(keeper, set).as_deref(),
                Some("0000000000000020"),
                "{set} of keeper {keeper}"
            );
        }
        assert_eq!(status_field(keeper, "NoNewPrivs:").as_deref(), Some("1"));
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_user_past_the_session_limit_is_refused_until_one_closes() {
    let app = spawn_real_app_with(|config| config.runtime.max_sessions_per_user = 2).await;
    let reader = app.user_token("mallory", Role::Reader).await;
    let other = app.user_token("alice", Role::Reader).await;
    let first = create_session(&app, &reader).await;
    create_session(&app, &reader).await;
    let (status, body) = app
        .call(
            Method::POST,
            "/sessions",
            Some(&reader),
            Some(json!({"runtimeType": "Python"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_error_shape(&body);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("max_sessions_per_user"),
        "{body}"
    );
    // Others are not affected, and closing one makes room.
    create_session(&app, &other).await;
    close_session(&app, &reader, &first).await;
    create_session(&app, &reader).await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_flood_of_bad_logins_gets_429s_while_status_keeps_answering() {
    let app = spawn_real_app_with(|_| {}).await;
    let admin = app.admin_token().await;
    let flood: Vec<_> = (0..400)
        .map(|index| {
            let request = app
                .client
                .post(app.url("/login"))
                .json(&json!({"username": format!("nobody{index}"), "password": "Wrong-Pass-1"}));
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                let status = response.status();
                let retry_after = response.headers().get("retry-after").cloned();
                let body: serde_json::Value = response.json().await.unwrap();
                (status, retry_after, body)
            })
        })
        .collect();
    // An authenticated status check every 10 ms while the flood lasts.
    let mut latencies = Vec::new();
    while flood.iter().any(|request| !request.is_finished()) {
        let started = Instant::now();
        let (status, _) = app.call(Method::GET, "/status", Some(&admin), None).await;
        latencies.push(started.elapsed());
        assert_eq!(status, StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut refused = 0;
    for request in flood {
        let (status, retry_after, body) = request.await.unwrap();
        assert_error_shape(&body);
        match status {
            StatusCode::UNAUTHORIZED => {}
            StatusCode::TOO_MANY_REQUESTS => {
                refused += 1;
                let seconds: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
                assert!((1..=61).contains(&seconds), "{seconds}");
            }
            other => panic!("a bad login got {other}: {body}"),
        }
    }
    assert!(refused >= 300, "only {refused} of 400 were refused");
    // Its latency is a figure for `bash bench/run.sh hostile` (release build, nothing else
    // running); here, beside other tests, it must only keep answering.
    assert!(
        latencies
            .iter()
            .all(|latency| *latency < Duration::from_secs(1)),
        "{latencies:?}"
    );
    // Sign-ins from the flooding address wait until its block ends, whoever signs in.
    let (status, body) = app.login("admin", crate::helpers::ADMIN_PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_rebuild_by_an_environment_s_owner_does_not_change_another_user_s_service() {
    let index = python_index().await;
    let app = spawn_real_app_with(python_app_config(&index)).await;
    let owner = app.user_token("erin", Role::Contributor).await;
    let publisher = app.user_token("frank", Role::Contributor).await;
    let (status, body) = put_environment(
        &app,
        &owner,
        "shared",
        json!({"runtimeType": "Python", "requirements": "hello-o16n\n"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(wait_built(&app, &owner, "shared").await["state"], "Ready");
    let (status, body) = app
        .call(
            Method::POST,
            "/services/victim/1.0",
            Some(&publisher),
            Some(json!({
                "code": "import hello_o16n\nversion = hello_o16n.VERSION",
                "outputParameterDefinitions": [{"name": "version", "type": "character"}],
                "runtimeType": "Python",
                "environment": "shared",
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let version = || async {
        let (status, answer) = app
            .call(
                Method::POST,
                "/api/victim/1.0",
                Some(&publisher),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["outputParameters"]["version"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(version().await, "1.0");

    // The environment's owner rebuilds it with other packages: the service keeps its own.
    index.add_wheel("hello-o16n", "2.0");
    let (status, body) = put_environment(
        &app,
        &owner,
        "shared",
        json!({"runtimeType": "Python", "requirements": "hello-o16n>=2\n"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(wait_built(&app, &owner, "shared").await["state"], "Ready");
    assert_eq!(
        version().await,
        "1.0",
        "a rebuild changed another user's service"
    );

    // Its publisher's update takes the new build.
    let (status, body) = app
        .call(
            Method::PATCH,
            "/services/victim/1.0",
            Some(&publisher),
            Some(json!({"description": "takes the rebuilt environment"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(version().await, "2.0");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn what_a_package_s_build_code_plants_is_refused_and_never_followed() {
    let repository = PackageIndex::start().await;
    // A directory of the host that a planted link would name; the server must not touch it.
    let outside = tempfile::tempdir().unwrap();
    let outside_path = outside.path().to_string_lossy().into_owned();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    std::fs::set_permissions(outside.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let stranger = if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(outside.path(), Some(54_321), Some(54_321)).unwrap();
        54_321
    } else {
        nix::unistd::geteuid().as_raw()
    };
    // Plants a hard link and a FIFO into the library being built.
    build_r_package_with_configure(
        &repository,
        "o16nplanter",
        "1.0",
        "planted <- TRUE\n",
        Some(
            "#!/bin/sh\nln \"$HOME/lock\" \"$HOME/library/linked\"\nmkfifo \"$HOME/library/fifo\"\nexit 0\n",
        ),
    );
    // Leaves a process behind that swaps the library for a link to the host directory once
    // the build is done.
    build_r_package_with_configure(
        &repository,
        "o16nswapper",
        "1.0",
        "swapped <- TRUE\n",
        Some(&format!(
            "#!/bin/sh\n(trap '' HUP INT TERM; sleep 1; rm -rf \"$HOME/library\"; \
             ln -s '{outside_path}' \"$HOME/library\") </dev/null >/dev/null 2>&1 &\nexit 0\n"
        )),
    );
    let url = repository.url.clone();
    let app = spawn_real_app_with(move |config| {
        config.environments.r_repositories = vec![url];
        config.environments.allow_source_builds = true;
    })
    .await;
    let token = app.user_token("mallory", Role::Contributor).await;

    let (status, body) = put_environment(
        &app,
        &token,
        "planter",
        json!({"runtimeType": "R", "packages": ["o16nplanter"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let planted = wait_built(&app, &token, "planter").await;
    assert_eq!(planted["state"], "Failed", "{planted}");
    assert!(
        planted["log"]
            .as_str()
            .unwrap()
            .contains("the build was refused"),
        "{planted}"
    );

    let (status, body) = put_environment(
        &app,
        &token,
        "swapper",
        json!({"runtimeType": "R", "packages": ["o16nswapper"]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let swapped = wait_built(&app, &token, "swapper").await;
    // However the race went (the swap killed with the build, or seen and refused), the host
    // directory is as it was: nothing written into it, nobody's ownership or mode changed.
    assert!(
        swapped["state"] == "Ready" || swapped["state"] == "Failed",
        "{swapped}"
    );
    let metadata = std::fs::metadata(outside.path()).unwrap();
    assert_eq!(metadata.uid(), stranger);
    assert_eq!(metadata.permissions().mode() & 0o7777, 0o777);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // No finished build is a link.
    let finished = std::fs::read_dir(app.data_dir.path().join("environments/r"));
    for entry in finished.into_iter().flatten() {
        let entry = entry.unwrap();
        assert!(
            entry.file_type().unwrap().is_dir(),
            "{:?} is not a directory",
            entry.path()
        );
    }
    app.assert_still_serving().await;
}

/// A database stand-in on another loopback address: answers `pong` to each connection's first
/// four bytes.
async fn database_stand_in() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut ping = [0u8; 4];
                if connection.read_exact(&mut ping).await.is_ok() {
                    let _ = connection.write_all(b"pong").await;
                }
            });
        }
    });
    address
}

/// The host's own IPv4 addresses beyond loopback.
fn host_addresses() -> Vec<std::net::Ipv4Addr> {
    let mut found: Vec<_> = nix::ifaddrs::getifaddrs()
        .unwrap()
        .filter_map(|interface| interface.address)
        .filter_map(|address| address.as_sockaddr_in().map(|inet| inet.ip()))
        .filter(|address| !address.is_loopback())
        .collect();
    found.sort();
    found.dedup();
    found
}

/// A root server whose workers have the network on and may reach `allowed`.
async fn root_server_allowing(allowed: std::net::SocketAddr, fork: bool) -> Option<TestApp> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: outbound-only networking needs a root server");
        return None;
    }
    Some(
        spawn_real_app_with(|config| {
            config.runtime.sandbox.network = true;
            config.runtime.sandbox.network_allow = vec![allowed.to_string().parse().unwrap()];
            config.runtime.python.initial_size = 1;
            config.runtime.python.fork_workers = fork;
        })
        .await,
    )
}

/// What a Python worker with the network on reached: the outcome of each attempt, the answer
/// of the allowed destination, and the port it listens on (on all its addresses).
async fn probe_network_from_python(
    app: &TestApp,
    token: &str,
    session: &str,
    allowed: std::net::SocketAddr,
    host_service_port: u16,
) -> serde_json::Value {
    let server_port = app.address.rsplit(':').next().unwrap();
    let host_addresses: Vec<String> = host_addresses().iter().map(ToString::to_string).collect();
    let code = format!(
        r#"
import json, socket, threading
results = {{}}
def attempt(name, host, port):
    probe = socket.socket()
    probe.settimeout(3)
    try:
        probe.connect((host, port))
        results[name] = "connected"
    except OSError as problem:
        results[name] = "failed: %s" % problem
    finally:
        probe.close()
attempt("the server on loopback", "127.0.0.1", {server_port})
for address in {host_addresses:?}:
    attempt("a host service on " + address, address, {host_service_port})
attempt("cloud metadata", "169.254.169.254", 80)
attempt("a private network", "10.11.12.13", 5432)
allowed = socket.create_connection(("{allowed_ip}", {allowed_port}), timeout=5)
allowed.sendall(b"ping")
answer = allowed.recv(4).decode()
allowed.close()
listener = socket.socket()
listener.bind(("0.0.0.0", 0))
listener.listen()
def greet():
    while True:
        connection, _ = listener.accept()
        connection.sendall(b"{LISTENER_GREETING}")
        connection.close()
threading.Thread(target=greet, daemon=True).start()
bound = listener.getsockname()[1]
# The listener works inside the worker's own namespace.
with socket.create_connection(("127.0.0.1", bound), timeout=5) as itself:
    greeted = itself.recv(64).decode()
report = json.dumps({{"results": results, "answer": answer, "bound": bound, "greeted": greeted}})
"#,
        allowed_ip = allowed.ip(),
        allowed_port = allowed.port(),
    );
    run_for_report(app, token, session, &code).await
}

/// Runs `code` in a session and returns the JSON its `report` variable holds.
async fn run_for_report(
    app: &TestApp,
    token: &str,
    session: &str,
    code: &str,
) -> serde_json::Value {
    let outcome = execute(
        app,
        token,
        session,
        json!({"code": code, "outputParameters": ["report"]}),
    )
    .await;
    assert_eq!(outcome["success"], true, "{outcome}");
    serde_json::from_str(outcome["outputParameters"][0]["value"].as_str().unwrap()).unwrap()
}

/// A Python session of `reader` is held to the policy: it reaches nothing but the allowed
/// destination, and nothing on the host reaches the port it listens on.
async fn assert_python_worker_held_to_the_policy(
    app: &TestApp,
    reader: &str,
    allowed: std::net::SocketAddr,
) {
    // A service of the host's that listens on all its addresses, as a server would.
    let host_service = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let host_service_port = host_service.local_addr().unwrap().port();
    let session = create_session(app, reader).await;

    let report = probe_network_from_python(app, reader, &session, allowed, host_service_port).await;

    assert_nothing_reached(&report);
    assert_eq!(report["answer"], "pong", "{report}");
    assert_eq!(report["greeted"], LISTENER_GREETING, "{report}");
    assert_not_reachable_from_the_host(report["bound"].as_u64().unwrap() as u16);
}

/// Asserts that every attempt of a report failed.
fn assert_nothing_reached(report: &serde_json::Value) {
    let results = report["results"].as_object().unwrap();
    assert!(results.len() >= 3, "{report}");
    for (attempt, outcome) in results {
        assert!(
            outcome.as_str().unwrap().starts_with("failed"),
            "{attempt}: {outcome}"
        );
    }
}

/// What a worker's listener says to whoever connects, so that a host listener that happens to
/// have the same port (other tests' servers) is not mistaken for it.
const LISTENER_GREETING: &str = "o16n-worker-listener";

/// Asserts that nothing on the host reaches `port` that a worker listens on.
fn assert_not_reachable_from_the_host(port: u16) {
    use std::io::Read;
    let addresses = std::iter::once(std::net::Ipv4Addr::LOCALHOST).chain(host_addresses());
    for address in addresses {
        let target = std::net::SocketAddr::from((address, port));
        let Ok(mut connection) =
            std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2))
        else {
            continue;
        };
        connection
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut greeting = Vec::new();
        let _ = connection.read_to_end(&mut greeting);
        assert_ne!(
            greeting,
            LISTENER_GREETING.as_bytes(),
            "a worker's listener is reachable at {target}"
        );
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn with_the_network_on_a_worker_reaches_only_the_internet_and_allowed_destinations() {
    let allowed = database_stand_in().await;
    let Some(app) = root_server_allowing(allowed, true).await else {
        return;
    };
    let reader = app.user_token("mallory", Role::Reader).await;

    assert_python_worker_held_to_the_policy(&app, &reader, allowed).await;

    let r = create_r_session(&app, &reader).await;
    let server_port = app.address.rsplit(':').next().unwrap();
    let code = format!(
        r#"
results <- list()
attempt <- function(name, host, port) {{
  results[[name]] <<- tryCatch({{
    close(socketConnection(host, port, open = "r+b", blocking = TRUE, timeout = 3))
    "connected"
  }}, error = function(e) paste("failed:", conditionMessage(e)),
      warning = function(w) paste("failed:", conditionMessage(w)))
}}
attempt("the server on loopback", "127.0.0.1", {server_port})
attempt("cloud metadata", "169.254.169.254", 80)
attempt("a private network", "10.11.12.13", 5432)
allowed <- socketConnection("{allowed_ip}", {allowed_port}, open = "r+b", blocking = TRUE, timeout = 5)
writeBin(charToRaw("ping"), allowed)
answer <- rawToChar(readBin(allowed, "raw", 4))
close(allowed)
report <- jsonlite::toJSON(list(results = results, answer = answer), auto_unbox = TRUE)
"#,
        allowed_ip = allowed.ip(),
        allowed_port = allowed.port(),
    );
    let report = run_for_report(&app, &reader, &r, &code).await;
    assert_nothing_reached(&report);
    assert_eq!(report["answer"], "pong", "{report}");
    app.assert_still_serving().await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_spawned_worker_with_the_network_on_is_held_to_the_same_policy() {
    let allowed = database_stand_in().await;
    let Some(app) = root_server_allowing(allowed, false).await else {
        return;
    };
    let reader = app.user_token("mallory", Role::Reader).await;

    assert_python_worker_held_to_the_policy(&app, &reader, allowed).await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_network_namespace_goes_to_another_worker_only_with_nothing_of_the_last_one_left() {
    let allowed = database_stand_in().await;
    let Some(app) = root_server_allowing(allowed, true).await else {
        return;
    };
    let reader = app.user_token("mallory", Role::Reader).await;
    let first = create_session(&app, &reader).await;
    // The first worker leaves a listener and a process that ignores signals in its namespace.
    let plant = r#"
import os, signal, socket, time
namespace = os.readlink("/proc/self/ns/net")
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen()
port = listener.getsockname()[1]
if os.fork() == 0:
    os.setsid()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    kept = socket.socket()
    kept.bind(("127.0.0.1", port - 1))
    kept.listen()
    time.sleep(600)
"#;
    let planted = execute(
        &app,
        &reader,
        &first,
        json!({"code": plant, "outputParameters": ["namespace", "port"]}),
    )
    .await;
    assert_eq!(planted["success"], true, "{planted}");
    let namespace = planted["outputParameters"][0]["value"].clone();
    let port = planted["outputParameters"][1]["value"].as_u64().unwrap();
    close_session(&app, &reader, &first).await;

    // Later workers take namespaces from the stock, where that one goes back once swept.
    let probe = format!(
        r#"
import os, socket
namespace = os.readlink("/proc/self/ns/net")
left = []
for target in (("127.0.0.1", {port}), ("127.0.0.1", {port} - 1), ("169.254.169.254", 80)):
    probe = socket.socket()
    probe.settimeout(2)
    try:
        probe.connect(target)
        left.append("%s:%d" % target)
    except OSError:
        pass
    finally:
        probe.close()
"#
    );
    for _ in 0..8 {
        let session = create_session(&app, &reader).await;
        let seen = execute(
            &app,
            &reader,
            &session,
            json!({"code": probe, "outputParameters": ["namespace", "left"]}),
        )
        .await;
        assert_eq!(seen["success"], true, "{seen}");
        close_session(&app, &reader, &session).await;
        if seen["outputParameters"][0]["value"] == namespace {
            assert_eq!(
                seen["outputParameters"][1]["value"],
                json!([]),
                "a reused namespace still held something of its last worker: {seen}"
            );
            return;
        }
    }
    panic!("the first worker's namespace {namespace} was never reused");
}
