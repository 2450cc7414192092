//! Black-box tests of a cluster: two web nodes and two compute nodes, each a separate `o16n`
//! process on loopback (127.0.0.2 and 127.0.0.3 stand for two compute machines, on one port),
//! sharing one throwaway PostgreSQL database. They show what a client of the cluster sees:
//! sessions and services reachable through either web node, work spread over the compute
//! nodes, failover without silent double execution, caches that follow changes at once, and
//! the cluster secret.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[path = "api/package_index.rs"]
mod package_index;

const BINARY: &str = env!("CARGO_BIN_EXE_o16n");
const SECRET: &str = "cluster-secret-for-tests";
const ADMIN_PASSWORD: &str = "Admin-Pass-1";

fn test_python() -> std::ffi::OsString {
    std::env::var_os("O16N_TEST_PYTHON").expect("O16N_TEST_PYTHON must be set; run scripts/test.sh")
}

/// A throwaway PostgreSQL database, dropped with the value.
struct Database {
    name: String,
    admin_url: String,
    url: String,
}

impl Database {
    async fn create() -> Database {
        let admin_url = std::env::var("O16N_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("o16n_cluster_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        // The name is a UUID made above, so formatting it into the statement is safe.
        admin
            .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
            .await
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        Database {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Dropped from async tests: the cleanup runs on a thread of its own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async move {
                    if let Ok(mut admin) = PgConnection::connect(&admin_url).await {
                        let _ = admin
                            .execute(AssertSqlSafe(format!(
                                r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#
                            )))
                            .await;
                    }
                });
        })
        .join()
        .unwrap();
    }
}

/// One `o16n serve` process.
struct Process {
    child: Child,
    url: String,
    role: &'static str,
    bind: String,
    port: u16,
    data_dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Process {
    async fn start(
        role: &'static str,
        bind: &str,
        port: u16,
        data_dir: tempfile::TempDir,
        env: Vec<(String, String)>,
    ) -> Process {
        let child = spawn(role, bind, port, data_dir.path(), &env);
        let (child, url) = listening(child).await;
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Process {
            child,
            url,
            role,
            bind: bind.to_owned(),
            port,
            data_dir,
            env,
        }
    }

    /// Kills the process with SIGKILL, as a crash would.
    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    /// Starts the process again on the same address, port and data directory.
    async fn restart(&mut self) {
        let child = spawn(
            self.role,
            &self.bind,
            self.port,
            self.data_dir.path(),
            &self.env,
        );
        let (child, url) = listening(child).await;
        self.child = child;
        self.url = url;
    }
}

fn spawn(role: &str, bind: &str, port: u16, data_dir: &Path, env: &[(String, String)]) -> Child {
    let mut command = Command::new(BINARY);
    command
        .args(["serve", "--role", role, "--bind", bind, "--port"])
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .env("O16N_CLUSTER__SECRET", SECRET)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    command.spawn().unwrap()
}

async fn listening(mut child: Child) -> (Child, String) {
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line))
        .await
        .expect("the node prints its listening line within a minute")
        .unwrap();
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_owned();
    // The rest of stdout is drained so that the node never blocks on a full pipe.
    tokio::spawn(async move {
        let mut sink = String::new();
        while stdout.read_line(&mut sink).await.is_ok_and(|read| read > 0) {
            sink.clear();
        }
    });
    (child, url)
}

/// Two web nodes and two compute nodes.
struct Cluster {
    web: Vec<Process>,
    compute: Vec<Process>,
    /// The entry that registers both compute nodes (a range of addresses on one port).
    range_entry: String,
    client: reqwest::Client,
    _database: Database,
}

/// An HTTP client; the servers' TLS library needs its cryptography chosen first.
fn http_client() -> reqwest::Client {
    o16n_cluster::install_crypto_provider();
    reqwest::Client::new()
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(Vec::new()).await
    }

    /// A cluster whose compute nodes also get `compute_settings` (as `O16N_...` variables).
    async fn start_with(compute_settings: Vec<(String, String)>) -> Cluster {
        let database = Database::create().await;
        let mut compute_env = vec![
            (
                "O16N_RUNTIME__PYTHON__EXECUTABLE".to_owned(),
                test_python().to_string_lossy().into_owned(),
            ),
            (
                "O16N_RUNTIME__PYTHON__INITIAL_SIZE".to_owned(),
                "1".to_owned(),
            ),
            ("O16N_RUNTIME__R__INITIAL_SIZE".to_owned(), "0".to_owned()),
        ];
        compute_env.extend(compute_settings);
        let first = Process::start(
            "compute",
            "127.0.0.2",
            0,
            tempfile::tempdir().unwrap(),
            compute_env.clone(),
        )
        .await;
        // The same port on another address: one range entry names both.
        let second = Process::start(
            "compute",
            "127.0.0.3",
            first.port,
            tempfile::tempdir().unwrap(),
            compute_env,
        )
        .await;
        let web_env = vec![
            ("O16N_DATABASE__URL".to_owned(), database.url.clone()),
            ("O16N_ADMIN_PASSWORD".to_owned(), ADMIN_PASSWORD.to_owned()),
            ("O16N_BATCH__LEASE_SECONDS".to_owned(), "2".to_owned()),
            ("O16N_BATCH__POLL_INTERVAL_MS".to_owned(), "200".to_owned()),
            (
                "O16N_CLUSTER__HEALTH_INTERVAL_MS".to_owned(),
                "200".to_owned(),
            ),
            (
                "O16N_CLUSTER__HEALTH_TIMEOUT_MS".to_owned(),
                "500".to_owned(),
            ),
            (
                "O16N_CLUSTER__POOL_SYNC_INTERVAL_MS".to_owned(),
                "200".to_owned(),
            ),
        ];
        let mut web = Vec::new();
        for _ in 0..2 {
            web.push(
                Process::start(
                    "web",
                    "127.0.0.1",
                    0,
                    tempfile::tempdir().unwrap(),
                    web_env.clone(),
                )
                .await,
            );
        }
        Cluster {
            range_entry: format!("http://127.0.0.2-3:{}", first.port),
            compute: vec![first, second],
            web,
            client: http_client(),
            _database: database,
        }
    }

    async fn call(
        &self,
        web: usize,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.web[web].url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn login(&self, web: usize) -> Value {
        let (status, body) = self
            .call(
                web,
                Method::POST,
                "/login",
                None,
                Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn token(&self, web: usize) -> String {
        self.login(web).await["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Registers both compute nodes through web node 0 and waits until web node `web` sees
    /// `healthy` of them answering.
    async fn register(&self, token: &str) {
        let (status, body) = self
            .call(
                0,
                Method::POST,
                "/computenodes",
                Some(token),
                Some(json!({"entries": [self.range_entry]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for web in 0..self.web.len() {
            self.wait_for_healthy(web, token, 2).await;
        }
    }

    /// The compute nodes web node `web` reports, by endpoint, with their health.
    async fn backends(&self, web: usize, token: &str) -> Value {
        let (status, body) = self
            .call(web, Method::GET, "/status", Some(token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["components"]["backends"].clone()
    }

    async fn wait_for_healthy(&self, web: usize, token: &str, wanted: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let backends = self.backends(web, token).await;
            let healthy = backends["components"]
                .as_object()
                .map(|nodes| {
                    nodes
                        .values()
                        .filter(|node| node["statusCode"] == "pass")
                        .count()
                })
                .unwrap_or(0);
            if healthy == wanted {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "web node {web} does not see {wanted} healthy compute nodes: {backends}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn endpoint(&self, compute: usize) -> String {
        self.compute[compute].url.clone()
    }
}

async fn publish_python(cluster: &Cluster, web: usize, token: &str, name: &str, code: &str) {
    let (status, body) = cluster
        .call(
            web,
            Method::POST,
            &format!("/services/{name}/v1"),
            Some(token),
            Some(json!({
                "code": code,
                "runtimeType": "Python",
                "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
                "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
            })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn sessions_services_and_tokens_work_through_either_web_node() {
    let cluster = Cluster::start().await;
    let token_a = cluster.token(0).await;
    let token_b = cluster.token(1).await;
    cluster.register(&token_a).await;

    // A session created through web node A is used, listed and closed through web node B.
    let (status, created) = cluster
        .call(
            0,
            Method::POST,
            "/sessions",
            Some(&token_a),
            Some(json!({"runtimeType": "Python"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let session = created["sessionId"].as_str().unwrap().to_owned();
    let (status, executed) = cluster
        .call(
            1,
            Method::POST,
            &format!("/sessions/{session}/execute"),
            Some(&token_b),
            Some(json!({"code": "x = 40 + 2", "outputParameters": ["x"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{executed}");
    assert_eq!(executed["outputParameters"][0]["value"], 42);
    let (_, listed) = cluster
        .call(1, Method::GET, "/sessions", Some(&token_b), None)
        .await;
    assert_eq!(listed[0]["id"], session, "{listed}");
    let (status, _) = cluster
        .call(
            1,
            Method::DELETE,
            &format!("/sessions/{session}"),
            Some(&token_b),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = cluster
        .call(0, Method::GET, "/sessions", Some(&token_a), None)
        .await;
    assert_eq!(listed, json!([]));

    // A service published through A is consumed through B, spread over both compute nodes.
    publish_python(
        &cluster,
        0,
        &token_a,
        "slow",
        "import time\ntime.sleep(0.3)\ny = x * 2",
    )
    .await;
    let requests = (0..12).map(|i| {
        let (cluster, token) = (&cluster, &token_b);
        async move {
            cluster
                .call(
                    1,
                    Method::POST,
                    "/api/slow/v1",
                    Some(token),
                    Some(json!({"x": i})),
                )
                .await
        }
    });
    for (i, (status, body)) in futures_util::future::join_all(requests)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["outputParameters"]["y"],
            json!(i as f64 * 2.0),
            "{body}"
        );
    }
    let backends = cluster.backends(1, &token_b).await;
    for compute in 0..2 {
        let python = &backends["components"][cluster.endpoint(compute)]["components"]["python"];
        assert!(
            python["details"]["busy"].as_u64().unwrap() >= 1,
            "compute node {compute} ran none of the service's requests: {backends}"
        );
    }

    // A refresh token revoked through A is refused through B at once.
    let tokens = cluster.login(0).await;
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let access = tokens["access_token"].as_str().unwrap();
    let (status, _) = cluster
        .call(1, Method::GET, "/sessions", Some(access), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = cluster
        .call(
            0,
            Method::DELETE,
            &format!("/login/refreshToken?refreshToken={refresh}"),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cluster = &cluster;
    other_node_follows("the revocation", || async move {
        let (status, _) = cluster
            .call(1, Method::GET, "/sessions", Some(access), None)
            .await;
        if status == StatusCode::UNAUTHORIZED {
            return true;
        }
        assert_eq!(status, StatusCode::OK);
        false
    })
    .await;

    // A service deleted through A is gone through B, and one updated answers the new way.
    publish_python(cluster, 0, &token_a, "double", "y = x * 2").await;
    let (_, before) = cluster
        .call(
            1,
            Method::POST,
            "/api/double/v1",
            Some(&token_b),
            Some(json!({"x": 1})),
        )
        .await;
    assert_eq!(before["outputParameters"]["y"], 2.0, "{before}");
    let (status, _) = cluster
        .call(
            0,
            Method::PATCH,
            "/services/double/v1",
            Some(&token_a),
            Some(json!({"code": "y = x * 3"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let token_b = &token_b;
    other_node_follows("the update", || async move {
        let (_, after) = cluster
            .call(
                1,
                Method::POST,
                "/api/double/v1",
                Some(token_b),
                Some(json!({"x": 1})),
            )
            .await;
        let answer = &after["outputParameters"]["y"];
        // A request that races the change may still see the old code, never anything else.
        assert!(*answer == 3.0 || *answer == 2.0, "{after}");
        *answer == 3.0
    })
    .await;
    let (status, _) = cluster
        .call(
            0,
            Method::DELETE,
            "/services/double/v1",
            Some(&token_a),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    other_node_follows("the delete", || async move {
        let (status, body) = cluster
            .call(
                1,
                Method::POST,
                "/api/double/v1",
                Some(token_b),
                Some(json!({"x": 1})),
            )
            .await;
        if status == StatusCode::NOT_FOUND {
            return true;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        false
    })
    .await;
}

/// Waits for web node B to follow a change made through A: `changed` says whether B answers
/// the new way yet (and asserts that it otherwise answers the old way). B hears of a change
/// within milliseconds, through a database notification; 5 s is the limit.
async fn other_node_follows<F, Fut>(change: &str, mut changed: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(5);
    while !changed().await {
        assert!(
            Instant::now() < deadline,
            "{change} did not reach web node B"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `o16n admin diagnostic run` against a web node as the admin.
fn diagnose(url: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(BINARY)
        .args(["admin", "diagnostic", "run", "--url", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{ADMIN_PASSWORD}").unwrap();
    child.wait_with_output().unwrap()
}

/// The dedicated pool states web node `web` reports for `pooled/v1`, by endpoint.
async fn pool_states(cluster: &Cluster, web: usize, token: &str) -> Vec<(String, String)> {
    let (status, body) = cluster
        .call(
            web,
            Method::GET,
            "/services/pooled/v1/pool",
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            (
                entry["ComputeNodeEndpoint"].as_str().unwrap().to_owned(),
                entry["Status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until web node `web` reports `wanted` for `pooled/v1`.
async fn wait_for_pools(cluster: &Cluster, web: usize, token: &str, wanted: &[(String, &str)]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let states = pool_states(cluster, web, token).await;
        let reached = states.len() == wanted.len()
            && states
                .iter()
                .zip(wanted)
                .all(|((endpoint, state), (want_endpoint, want_state))| {
                    endpoint == want_endpoint && state == want_state
                });
        if reached {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "pools stayed {states:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_dedicated_pool_reaches_compute_nodes_that_join_or_restart_later() {
    let mut cluster = Cluster::start().await;
    let token = cluster.token(0).await;
    let (first, second) = (cluster.endpoint(0), cluster.endpoint(1));
    let (status, _) = cluster
        .call(
            0,
            Method::POST,
            "/computenodes",
            Some(&token),
            Some(json!({"entries": [first]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    cluster.wait_for_healthy(0, &token, 1).await;
    publish_python(&cluster, 0, &token, "pooled", "y = x + 1").await;
    let (status, body) = cluster
        .call(
            0,
            Method::POST,
            "/services/pooled/v1/pool",
            Some(&token),
            Some(json!({"InitialPoolSize": 1, "MaxPoolSize": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for_pools(&cluster, 1, &token, &[(first.clone(), "Success")]).await;

    // The second node joins after the pool was made, then restarts: it gets the pool both
    // times without anyone asking again.
    cluster.register(&token).await;
    let both = [(first.clone(), "Success"), (second.clone(), "Success")];
    wait_for_pools(&cluster, 0, &token, &both).await;
    cluster.compute[1].kill().await;
    // While it is down, the diagnostic names it.
    let diagnosis = diagnose(&cluster.web[0].url);
    let report = String::from_utf8_lossy(&diagnosis.stdout);
    assert!(!diagnosis.status.success(), "{report}");
    assert!(
        report.contains(&format!("FAIL  compute node {second}")),
        "{report}"
    );
    assert!(
        report.contains(&format!("PASS  compute node {first}")),
        "{report}"
    );
    cluster.compute[1].restart().await;
    cluster.wait_for_healthy(0, &token, 2).await;
    wait_for_pools(&cluster, 0, &token, &both).await;
    for x in 0..4 {
        let (status, body) = cluster
            .call(
                x % 2,
                Method::POST,
                "/api/pooled/v1",
                Some(&token),
                Some(json!({"x": x})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outputParameters"]["y"], f64::from(x as u8) + 1.0);
    }

    let (status, _) = cluster
        .call(
            1,
            Method::DELETE,
            "/services/pooled/v1/pool",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let gone = [(first, "NotFound"), (second, "NotFound")];
    assert_eq!(
        pool_states(&cluster, 0, &token).await,
        gone.iter()
            .map(|(endpoint, state)| (endpoint.clone(), (*state).to_owned()))
            .collect::<Vec<_>>()
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn compute_node_entries_decide_where_work_goes_and_bad_ones_are_refused() {
    let cluster = Cluster::start().await;
    let token = cluster.token(0).await;

    let (_, status) = cluster
        .call(0, Method::GET, "/status", Some(&token), None)
        .await;
    assert_eq!(
        status["statusCode"], "fail",
        "no compute node yet: {status}"
    );
    for bad in [
        json!({"entries": ["ftp://127.0.0.2:1"]}),
        json!({"entries": ["http://127.1-255.1-255.1:1"]}),
        json!({"entries": ["http://127.0.0.1-255.1-255.1:1"]}),
        json!({"entries": ["http://127.0.0.2:99999"]}),
        json!({"entries": "not a list"}),
    ] {
        let (status, body) = cluster
            .call(
                0,
                Method::PUT,
                "/computenodes",
                Some(&token),
                Some(bad.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} gave {body}");
    }

    // One node, then both: sessions go where the entries say.
    let only_first = cluster.endpoint(0);
    let (status, _) = cluster
        .call(
            0,
            Method::POST,
            "/computenodes",
            Some(&token),
            Some(json!({"entries": [only_first]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = cluster
        .call(1, Method::GET, "/computenodes", Some(&token), None)
        .await;
    assert_eq!(listed, json!({"computeNodes": [only_first]}));
    cluster.wait_for_healthy(1, &token, 1).await;
    let (status, body) = cluster
        .call(
            1,
            Method::POST,
            "/sessions",
            Some(&token),
            Some(json!({"runtimeType": "Python"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let backends = cluster.backends(1, &token).await;
    assert_eq!(
        backends["components"][cluster.endpoint(0)]["details"]["sessions"],
        1,
        "{backends}"
    );

    let (status, _) = cluster
        .call(
            1,
            Method::PUT,
            "/computenodes",
            Some(&token),
            Some(json!({"entries": [cluster.range_entry]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    cluster.wait_for_healthy(0, &token, 2).await;
    let (status, _) = cluster
        .call(
            0,
            Method::DELETE,
            "/computenodes",
            Some(&token),
            Some(json!({"entries": [only_first]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, listed) = cluster
        .call(0, Method::GET, "/computenodes", Some(&token), None)
        .await;
    assert_eq!(listed, json!({"computeNodes": [cluster.range_entry]}));
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_compute_node_killed_mid_request_fails_that_request_only_and_rejoins() {
    let mut cluster = Cluster::start().await;
    let token = cluster.token(0).await;
    cluster.register(&token).await;
    publish_python(&cluster, 0, &token, "double", "y = x * 2").await;

    // The first session goes to one node, the second (least loaded) to the other.
    let create = async || {
        let (status, body) = cluster
            .call(
                0,
                Method::POST,
                "/sessions",
                Some(&token),
                Some(json!({"runtimeType": "Python"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["sessionId"].as_str().unwrap().to_owned()
    };
    let doomed = create().await;
    let backends = cluster.backends(0, &token).await;
    let holder = (0..2)
        .find(|&compute| {
            backends["components"][cluster.endpoint(compute)]["details"]["sessions"] == 1
        })
        .unwrap_or_else(|| panic!("no node holds the session: {backends}"));
    let survivor = create().await;
    let backends = cluster.backends(0, &token).await;
    assert_eq!(
        backends["components"][cluster.endpoint(1 - holder)]["details"]["sessions"],
        1,
        "the second session went to the same node: {backends}"
    );

    // A long execution runs on the doomed session's node when that node is killed.
    let long = {
        let (client, url, token, session) = (
            cluster.client.clone(),
            cluster.web[1].url.clone(),
            token.clone(),
            doomed.clone(),
        );
        tokio::spawn(async move {
            let response = client
                .post(format!("{url}/sessions/{session}/execute"))
                .bearer_auth(token)
                .json(&json!({"code": "import time\nprint('started', flush=True)\ntime.sleep(30)"}))
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        })
    };
    // The node is killed once the code is known to run: it has printed.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, console) = cluster
            .call(
                0,
                Method::GET,
                &format!("/sessions/{doomed}/console-output"),
                Some(&token),
                None,
            )
            .await;
        if console["consoleOutput"]
            .as_str()
            .is_some_and(|text| text.contains("started"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the execution does not start: {console}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.compute[holder].kill().await;

    let (status, text) = long.await.unwrap();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("not retried"), "{text}");
    let (status, body) = cluster
        .call(
            0,
            Method::POST,
            &format!("/sessions/{doomed}/execute"),
            Some(&token),
            Some(json!({"code": "x = 1"})),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("lost with its compute node"),
        "{body}"
    );
    let (_, listed) = cluster
        .call(1, Method::GET, "/sessions", Some(&token), None)
        .await;
    assert_eq!(
        listed,
        json!([{"id": survivor, "name": null, "owner": "admin", "runtimeType": "Python"}]),
        "a session of a node that does not answer is not listed"
    );
    for _ in 0..4 {
        let (status, body) = cluster
            .call(
                1,
                Method::POST,
                "/api/double/v1",
                Some(&token),
                Some(json!({"x": 2})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::OK,
            "services answer through the other node: {body}"
        );
    }
    let (_, status) = cluster
        .call(0, Method::GET, "/status", Some(&token), None)
        .await;
    assert_eq!(status["statusCode"], "warn", "{status}");

    cluster.compute[holder].restart().await;
    cluster.wait_for_healthy(0, &token, 2).await;
    let (_, status) = cluster
        .call(0, Method::GET, "/status", Some(&token), None)
        .await;
    assert_eq!(status["statusCode"], "pass", "{status}");
    // The restarted node does not hold the doomed session: it is reported lost and forgotten.
    let (status, body) = cluster
        .call(
            1,
            Method::POST,
            &format!("/sessions/{doomed}/execute"),
            Some(&token),
            Some(json!({"code": "x = 1"})),
        )
        .await;
    assert_eq!(status, StatusCode::GONE, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("restarted"),
        "{body}"
    );
    let (_, listed) = cluster
        .call(0, Method::GET, "/sessions", Some(&token), None)
        .await;
    assert_eq!(
        listed,
        json!([{"id": survivor, "name": null, "owner": "admin", "runtimeType": "Python"}])
    );
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_web_node_killed_mid_batch_leaves_it_to_another_with_each_result_once() {
    let mut cluster = Cluster::start().await;
    let token = cluster.token(0).await;
    cluster.register(&token).await;
    publish_python(
        &cluster,
        0,
        &token,
        "slow",
        "import time\ntime.sleep(0.05)\ny = x + 1",
    )
    .await;
    let records: Vec<Value> = (0..120).map(|i| json!({"x": i})).collect();

    let (status, started) = cluster
        .call(
            0,
            Method::POST,
            "/api/slow/v1/batch?parallelCount=2",
            Some(&token),
            Some(Value::Array(records)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let batch = started["batchExecutionId"].as_str().unwrap().to_owned();
    let path = format!("/api/slow/v1/batch/{batch}?showPartialResults=true");
    // Wait until it is under way on one of the web nodes, then kill web node A. If B claimed
    // it, killing A changes nothing; if A did, B takes it over when A's lease expires.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, progress) = cluster
            .call(1, Method::GET, &path, Some(&token), None)
            .await;
        if progress["completedItemCount"].as_u64().unwrap_or(0) >= 10 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the batch does not start: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.web[0].kill().await;

    let finished = loop {
        let (status, progress) = cluster
            .call(1, Method::GET, &path, Some(&token), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{progress}");
        if progress["state"] == "Complete" {
            break progress;
        }
        assert!(
            Instant::now() < deadline,
            "the batch does not finish through web node B: {progress}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(finished["completedItemCount"], 120, "{finished}");
    let results = finished["batchExecutionResults"].as_array().unwrap();
    assert_eq!(results.len(), 120);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result["outputParameters"]["y"],
            json!(i as f64 + 1.0),
            "{result}"
        );
    }
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn a_call_to_a_compute_node_without_the_cluster_secret_is_refused() {
    let cluster = Cluster::start().await;
    let client = http_client();
    let call_url = format!("{}/v1/call", cluster.endpoint(0));
    let status = json!({"op": "status"});

    let anonymous = client.post(&call_url).json(&status).send().await.unwrap();
    let wrong = client
        .post(&call_url)
        .json(&status)
        .bearer_auth("not-the-secret")
        .send()
        .await
        .unwrap();
    let right = client
        .post(&call_url)
        .json(&status)
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap();

    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(right.status(), StatusCode::OK);
    let sessions = client
        .post(&call_url)
        .json(&json!({"op": "create_session", "args": {"owner": "mallory", "name": null, "runtime": "Python"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sessions.status(), StatusCode::UNAUTHORIZED);
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn an_environment_resolved_on_one_compute_node_runs_the_same_on_the_other() {
    let index = package_index::PackageIndex::start().await;
    index.add_wheel("hello-o16n", "1.0");
    let cluster = Cluster::start_with(vec![(
        "O16N_ENVIRONMENTS__PYTHON_INDEX_URL".to_owned(),
        format!("{}/simple/", index.url),
    )])
    .await;
    let token = cluster.token(0).await;
    cluster.register(&token).await;

    let (status, body) = cluster
        .call(
            0,
            Method::POST,
            "/environments/greetings",
            Some(&token),
            Some(json!({"runtimeType": "Python", "requirements": "hello-o16n"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    let built = loop {
        let (_, body) = cluster
            .call(
                1,
                Method::GET,
                "/environments/greetings",
                Some(&token),
                None,
            )
            .await;
        if body["state"] == "Ready" || body["state"] == "Failed" {
            break body;
        }
        assert!(Instant::now() < deadline, "not built: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(built["state"], "Ready", "{built}");
    assert!(built["lock"].as_str().unwrap().contains("hello-o16n==1.0"));

    // The index moves on; both nodes still run the lock's 1.0. A web node places sessions on
    // the node with the fewest, so two open through it are one per node.
    index.add_wheel("hello-o16n", "2.0");
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (status, created) = cluster
            .call(
                0,
                Method::POST,
                "/sessions",
                Some(&token),
                Some(json!({"runtimeType": "Python", "environment": "greetings"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        sessions.push(created["sessionId"].as_str().unwrap().to_owned());
    }
    for session in &sessions {
        let (status, ran) = cluster
            .call(
                1,
                Method::POST,
                &format!("/sessions/{session}/execute"),
                Some(&token),
                Some(json!({"code": "import hello_o16n\nversion = hello_o16n.VERSION", "outputParameters": ["version"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{ran}");
        assert_eq!(ran["outputParameters"][0]["value"], "1.0", "{ran}");
    }
    let backends = cluster.backends(0, &token).await;
    for node in backends["components"].as_object().unwrap().values() {
        let pool = &node["components"]["environmentPools"]["components"]["greetings"]["details"];
        assert_eq!(
            pool["busy"], 1,
            "each node runs one session in the environment: {backends}"
        );
    }
}
