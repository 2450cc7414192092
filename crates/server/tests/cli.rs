//! Tests that run the compiled `o16n` binary: the `listening on` line, signals, the admin
//! password bootstrap, configuration layering and the `admin` commands.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command as AsyncCommand};

const BINARY: &str = env!("CARGO_BIN_EXE_o16n");

/// The test Python runtime (see `tests/api/helpers.rs`). The tests about the binary itself run
/// without it: they name an interpreter that does not exist, so that the server reports Python
/// unavailable instead of setting up a runtime from the package index.
fn test_python() -> std::ffi::OsString {
    std::env::var_os("O16N_TEST_PYTHON").unwrap_or_else(|| "/nonexistent/python".into())
}

/// A running `o16n serve` and the address from its `listening on` line.
struct Server {
    child: Child,
    address: String,
    stdout: BufReader<tokio::process::ChildStdout>,
}

/// Starts `o16n serve` with extra arguments and environment and waits for its first line.
async fn serve(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut command = AsyncCommand::new(BINARY);
    command
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env_remove("O16N_ADMIN_PASSWORD")
        .env("RUST_LOG", "warn")
        // No warm workers: these tests are about the binary itself.
        .env("O16N_RUNTIME__PYTHON__INITIAL_SIZE", "0")
        .env("O16N_RUNTIME__R__INITIAL_SIZE", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command.env("O16N_RUNTIME__PYTHON__EXECUTABLE", test_python());
    // Given after the defaults above, so a test's own values win.
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(60), stdout.read_line(&mut line))
        .await
        .expect("the server prints its listening line within a minute")
        .unwrap();
    let address = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .trim()
        .to_owned();
    Server {
        child,
        address,
        stdout,
    }
}

impl Server {
    /// Sends SIGTERM and returns the exit status, the rest of stdout, and stderr.
    async fn terminate(mut self) -> (std::process::ExitStatus, String, String) {
        let pid = self.child.id().unwrap().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server stops within 30 s of SIGTERM")
            .unwrap();
        let mut rest = String::new();
        self.stdout.read_to_string(&mut rest).await.unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .await
            .unwrap();
        (status, rest, stderr)
    }
}

async fn login(address: &str, user: &str, password: &str) -> reqwest::StatusCode {
    // The TLS library that o16n's HTTP client shares needs its cryptography chosen first.
    o16n_cluster::install_crypto_provider();
    reqwest::Client::new()
        .post(format!("{address}/login"))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

/// Runs an `o16n` command with `stdin` as standard input.
fn run(args: &[&str], data_dir: &Path, stdin: &str) -> Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("O16N_ADMIN_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test]
async fn serve_prints_exactly_one_listening_line_and_stops_on_sigterm() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = serve(
        data_dir.path(),
        &[],
        &[("O16N_ADMIN_PASSWORD", "Admin-Pass-1")],
    )
    .await;
    assert!(
        server.address.starts_with("http://127.0.0.1:"),
        "{}",
        server.address
    );
    assert_eq!(login(&server.address, "admin", "Admin-Pass-1").await, 200);

    let (status, rest_of_stdout, _) = server.terminate().await;

    assert!(status.success(), "{status}");
    assert_eq!(
        rest_of_stdout, "",
        "stdout must hold only the listening line"
    );
}

#[tokio::test]
async fn first_start_generates_an_admin_password_kept_in_a_private_file_and_never_printed() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = serve(data_dir.path(), &[], &[]).await;
    let file = data_dir.path().join("admin-password");
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(login(&server.address, "admin", &password).await, 200);
    let (_, _, stderr) = server.terminate().await;
    assert!(!stderr.contains(&password), "{stderr}");
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");

    // A second start reuses the account and prints no password.
    let server = serve(data_dir.path(), &[], &[]).await;
    assert_eq!(login(&server.address, "admin", &password).await, 200);
    let (_, _, stderr) = server.terminate().await;
    assert!(!stderr.contains(&password), "{stderr}");
}

#[tokio::test]
async fn a_weak_admin_password_from_the_environment_is_refused_clearly() {
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(BINARY)
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(data_dir.path())
        .env("O16N_RUNTIME__PYTHON__EXECUTABLE", test_python())
        .env("O16N_ADMIN_PASSWORD", "password")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("O16N_ADMIN_PASSWORD") && stderr.contains("upper-case"),
        "{stderr}"
    );
}

#[tokio::test]
async fn configuration_layers_defaults_file_environment_and_flags_in_that_order() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("o16n.toml");
    // The file asks for a port that cannot be bound; the environment overrides it with 0.
    // The environment asks for an address that cannot be bound; the flag overrides it.
    std::fs::write(&config_file, "[http]\nport = 1\nbind = \"127.0.0.1\"\n").unwrap();
    let data_dir = dir.path().join("data");
    let server = serve(
        &data_dir,
        &[
            "--config",
            config_file.to_str().unwrap(),
            "--bind",
            "127.0.0.1",
        ],
        &[
            ("O16N_HTTP__PORT", "0"),
            ("O16N_HTTP__BIND", "203.0.113.1"),
            ("O16N_ADMIN_PASSWORD", "Admin-Pass-1"),
        ],
    )
    .await;
    assert!(!server.address.ends_with(":1"), "{}", server.address);
    assert!(
        server.address.starts_with("http://127.0.0.1:"),
        "{}",
        server.address
    );
    server.terminate().await;
}

#[tokio::test]
async fn an_unknown_configuration_key_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("o16n.toml");
    std::fs::write(&config_file, "[http]\nprot = 80\n").unwrap();
    let output = run(
        &[
            "admin",
            "user",
            "list",
            "--config",
            config_file.to_str().unwrap(),
        ],
        dir.path(),
        "",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("prot"));
}

#[tokio::test]
async fn admin_commands_manage_users_and_the_admin_password() {
    let data_dir = tempfile::tempdir().unwrap();
    // The first `serve` creates admin; the admin commands then work on the same data directory.
    let server = serve(
        data_dir.path(),
        &[],
        &[("O16N_ADMIN_PASSWORD", "Admin-Pass-1")],
    )
    .await;

    let added = run(
        &["admin", "user", "add", "jane", "--role", "reader"],
        data_dir.path(),
        "Jane-Pass-1\n",
    );
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let weak = run(&["admin", "user", "add", "bob"], data_dir.path(), "weak\n");
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("8 to 16"));
    let duplicate = run(
        &["admin", "user", "add", "jane"],
        data_dir.path(),
        "Jane-Pass-2\n",
    );
    assert!(!duplicate.status.success());

    let listed = run(&["admin", "user", "list"], data_dir.path(), "");
    assert_eq!(
        String::from_utf8_lossy(&listed.stdout),
        "admin\tOwner\tlocal\njane\tReader\tlocal\n"
    );
    assert_eq!(login(&server.address, "jane", "Jane-Pass-1").await, 200);

    let changed = run(&["admin", "password"], data_dir.path(), "New-Admin-2\n");
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );
    assert_eq!(login(&server.address, "admin", "Admin-Pass-1").await, 401);
    assert_eq!(login(&server.address, "admin", "New-Admin-2").await, 200);

    let removed = run(&["admin", "user", "remove", "jane"], data_dir.path(), "");
    assert!(removed.status.success());
    assert_eq!(login(&server.address, "jane", "Jane-Pass-1").await, 401);
    let admin_removal = run(&["admin", "user", "remove", "admin"], data_dir.path(), "");
    assert!(!admin_removal.status.success());
    server.terminate().await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn serve_runs_on_postgresql_with_a_database_url() {
    use sqlx::{AssertSqlSafe, Connection, Executor};
    let admin_url = std::env::var("O16N_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let database = format!("o16n_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url).await.unwrap();
    // The name is a UUID made above, so formatting it into the statement is safe.
    admin
        .execute(AssertSqlSafe(format!(r#"CREATE DATABASE "{database}""#)))
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{database}");
    let data_dir = tempfile::tempdir().unwrap();

    let server = serve(
        data_dir.path(),
        &["--database-url", &url],
        &[("O16N_ADMIN_PASSWORD", "Admin-Pass-1")],
    )
    .await;
    let login_status = login(&server.address, "admin", "Admin-Pass-1").await;
    server.terminate().await;
    // Nothing went into the data directory's SQLite file: the accounts are in PostgreSQL.
    let sqlite_file_exists = data_dir.path().join("o16n.db").exists();
    admin
        .execute(AssertSqlSafe(format!(
            r#"DROP DATABASE "{database}" WITH (FORCE)"#
        )))
        .await
        .unwrap();

    assert_eq!(login_status, 200);
    assert!(!sqlite_file_exists);
}

/// CPU time (user + system) a process has used, in clock ticks.
/// Starts a one-box server with a known admin password and warm Python workers.
async fn serve_for_admin_tools(data_dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut all = vec![
        ("O16N_ADMIN_PASSWORD", ADMIN_TOOLS_PASSWORD),
        ("O16N_RUNTIME__PYTHON__INITIAL_SIZE", "1"),
    ];
    all.extend_from_slice(env);
    serve(data_dir, &[], &all).await
}

const ADMIN_TOOLS_PASSWORD: &str = "Tools-Pass-12";

/// Runs `o16n admin TOOL... --url` against `server` as the admin, the password on standard
/// input.
fn run_admin_tool(server: &Server, tool: &[&str], data_dir: &Path) -> Output {
    let mut args = vec!["admin"];
    args.extend_from_slice(tool);
    args.extend_from_slice(&["--url", &server.address]);
    run(&args, data_dir, &format!("{ADMIN_TOOLS_PASSWORD}\n"))
}

/// The standard output of a command that must have succeeded.
fn succeeded(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// How many pixels of the screenshot have exactly this colour.
fn pixels_of(image: &[u8], channels: usize, colour: [u8; 3]) -> usize {
    image
        .chunks_exact(channels)
        .filter(|pixel| pixel[..3] == colour)
        .count()
}

fn colour(hex: &str) -> [u8; 3] {
    let byte = |at: usize| u8::from_str_radix(&hex[at..at + 2], 16).unwrap();
    [byte(1), byte(3), byte(5)]
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn capacity_run_reports_a_table_json_and_an_html_report_that_a_browser_draws() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = serve_for_admin_tools(data_dir.path(), &[]).await;
    let out = tempfile::tempdir().unwrap();
    let (report, json) = (
        out.path().join("report.html"),
        out.path().join("figures.json"),
    );
    let output = run_admin_tool(
        &server,
        &[
            "capacity",
            "run",
            "--min-thread",
            "1",
            "--increment",
            "2",
            "--max-thread",
            "3",
            "--duration",
            "1",
            "--report",
            report.to_str().unwrap(),
            "--json",
            json.to_str().unwrap(),
        ],
        data_dir.path(),
    );
    let stdout = succeeded(&output);
    assert!(
        stdout.contains("callers") && stdout.contains("p99 ms"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Network overhead is"), "{stderr}");

    let figures: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let steps = figures["steps"].as_array().unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|step| step["callers"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 3]
    );
    for step in steps {
        assert!(step["requests"].as_u64().unwrap() > 0, "{step}");
        assert_eq!(step["errors"], 0, "{step}");
        assert!(step["p50_ms"].as_f64().unwrap() <= step["p99_ms"].as_f64().unwrap());
        let stages: Vec<&str> = step["stage_means_ms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|stage| stage[0].as_str().unwrap())
            .collect();
        assert_eq!(stages, ["queue", "load", "execute", "hop", "total"]);
    }
    assert!(figures["network_overhead_ms"].as_f64().unwrap() > 0.0);

    // The report drawn by a real browser: every chart's series shows in the screenshot.
    let screenshot = out.path().join("report.png");
    let chromium = std::env::var("O16N_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let drawn = Command::new(&chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg("--window-size=900,1500")
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg(format!("file://{}", report.display()))
        .output()
        .unwrap_or_else(|err| panic!("cannot run {chromium} (install chromium): {err}"));
    assert!(
        drawn.status.success(),
        "{}",
        String::from_utf8_lossy(&drawn.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&screenshot).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut image = vec![0; reader.output_buffer_size().unwrap()];
    let frame = reader.next_frame(&mut image).unwrap();
    let channels = frame.color_type.samples();
    for (series, hex) in [
        ("p50", "#1f77b4"),
        ("p95", "#ff7f0e"),
        ("p99", "#d62728"),
        ("throughput", "#9467bd"),
        ("execute stage", "#2ca02c"),
    ] {
        let count = pixels_of(&image[..frame.buffer_size()], channels, colour(hex));
        assert!(
            count > 100,
            "the {series} series is not drawn ({count} pixels of {hex})"
        );
    }
    server.terminate().await;
}

#[cfg_attr(not(full_suite), ignore = "needs O16N_FULL_SUITE=1")]
#[tokio::test]
async fn diagnostic_run_passes_on_a_healthy_server_and_names_the_step_that_fails() {
    let data_dir = tempfile::tempdir().unwrap();
    let server = serve_for_admin_tools(data_dir.path(), &[]).await;
    let output = run_admin_tool(&server, &["diagnostic", "run"], data_dir.path());
    let stdout = succeeded(&output);
    for step in [
        "PASS  configuration",
        "PASS  authentication",
        "PASS  database",
        "PASS  compute node local",
        "PASS  Python runtime on local",
        "PASS  R runtime on local",
        "PASS  R service",
        "PASS  Python service",
    ] {
        assert!(stdout.contains(step), "{step} missing from\n{stdout}");
    }
    server.terminate().await;

    // Without R, the R steps fail by name and the command exits non-zero.
    let data_dir = tempfile::tempdir().unwrap();
    let server = serve_for_admin_tools(
        data_dir.path(),
        &[("O16N_RUNTIME__R__RSCRIPT", "/nonexistent/Rscript")],
    )
    .await;
    let output = run_admin_tool(&server, &["diagnostic", "run"], data_dir.path());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}");
    assert!(stdout.contains("FAIL  R runtime on local"), "{stdout}");
    assert!(stdout.contains("FAIL  R service"), "{stdout}");
    assert!(stdout.contains("PASS  Python service"), "{stdout}");
    assert!(stderr.contains("R runtime on local"), "{stderr}");
    server.terminate().await;

    // A server that cannot be reached fails at authentication.
    let output = run(
        &["admin", "diagnostic", "run", "--url", "http://127.0.0.1:9"],
        data_dir.path(),
        "whatever\n",
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("FAIL  authentication"));
}
