//! The R runtime: Debian's R (`r-base-core`) with `jsonlite` (`r-cran-jsonlite`), and the worker
//! script beside the data directory's other runtimes. R packages come from the operating
//! system, not from CRAN; this module only checks that what the worker needs is there.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use o16n_types::RuntimeType;

use crate::RuntimeError;
use crate::launch::{ConsoleKind, LaunchSpec};
use crate::sandbox::{Arg, WorkerLimits};

/// The worker script, embedded so that the binary is self-contained.
const WORKER_SCRIPT: &str = include_str!("../../../workers/r/o16n_worker.R");
/// The system calls of an R worker template, compiled beside the script when templates are on.
const FORK_HELPER_SOURCE: &str = include_str!("../../../workers/r/o16n_fork.c");

/// Settings of the R runtime.
#[derive(Debug, Clone)]
pub struct RConfig {
    /// The `Rscript` to run.
    pub rscript: PathBuf,
    /// Where the worker script is written.
    pub env_dir: PathBuf,
    /// Address-space limit of each worker in MiB; 0 means none.
    pub memory_limit_mb: u64,
    /// Whether workers may use the network (off: loopback only, inside their sandbox).
    pub network: bool,
    /// How long a worker may take to start.
    pub startup_timeout: Duration,
    /// The longest message accepted from a worker, in bytes.
    pub max_frame_bytes: usize,
    /// The most console output the server keeps of one execution, in bytes.
    pub max_console_bytes: usize,
    /// Whether workers are forked from a warmed template where the sandbox allows it.
    pub fork_workers: bool,
}

/// How the worker starts: R cannot move file descriptors, so a shell gives it the protocol
/// pipes (the server's end of stdin and stdout) as descriptors 3 and 4 and points its stdout
/// and stderr at the console pipe. Writes past the file-size limit must fail with an error in
/// R rather than kill the worker with SIGXFSZ, and an ignored signal stays ignored through
/// `exec`.
const LAUNCHER: &str = r#"trap '' XFSZ; exec 3<&0 4>&1 0</dev/null 1>&2 "$@""#;

/// Checks that R and jsonlite are installed, writes the worker script and describes how to
/// start a worker.
pub(crate) async fn launch_spec(config: &RConfig) -> Result<LaunchSpec, RuntimeError> {
    // R reports where it lives, so that a sandboxed worker can see its installation and
    // libraries (Debian's are under /usr; an R built elsewhere is not).
    let check = tokio::process::Command::new(&config.rscript)
        .args([
            "--vanilla",
            "-e",
            "suppressPackageStartupMessages(library(jsonlite)); cat(R.home(), .libPaths(), sep = '\\n')",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await;
    let output = match check {
        Err(err) => {
            return Err(RuntimeError::RuntimeUnavailable(format!(
                "R is not installed ({} cannot run: {err}); install Debian's r-base-core and r-cran-jsonlite",
                config.rscript.display()
            )));
        }
        Ok(output) if !output.status.success() => {
            return Err(RuntimeError::RuntimeUnavailable(format!(
                "R cannot load jsonlite; install Debian's r-cran-jsonlite ({})",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(output) => output,
    };
    let mut read_only: Vec<PathBuf> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .collect();
    tokio::fs::create_dir_all(&config.env_dir).await?;
    let script = config.env_dir.join("o16n_worker.R");
    if tokio::fs::read_to_string(&script).await.unwrap_or_default() != WORKER_SCRIPT {
        tokio::fs::write(&script, WORKER_SCRIPT).await?;
    }
    // `.libPaths()` are R's package libraries; R.home() is not one.
    let package_dirs = read_only.iter().skip(1).cloned().collect();
    if let Some(bin) = config.rscript.parent().filter(|dir| dir.is_absolute()) {
        read_only.push(bin.to_path_buf());
    }
    // Line-buffered stdout, so that console output reaches readers while code runs.
    let args = vec![
        Arg::plain("-c"),
        Arg::plain(LAUNCHER),
        Arg::plain("o16n-r-worker"),
        Arg::plain("stdbuf"),
        Arg::plain("-oL"),
        Arg::plain("-eL"),
        Arg::plain(config.rscript.clone()),
        Arg::plain("--vanilla"),
        Arg::InRuntime("o16n_worker.R".into()),
    ];
    Ok(LaunchSpec {
        runtime: RuntimeType::R,
        runtime_dir: config.env_dir.clone(),
        program: Arg::plain("/bin/sh"),
        args,
        env: vec![
            ("OPENBLAS_NUM_THREADS".to_owned(), "1".to_owned()),
            ("OMP_NUM_THREADS".to_owned(), "1".to_owned()),
        ],
        read_only,
        package_dirs,
        limits: WorkerLimits {
            memory_mb: config.memory_limit_mb,
            network: config.network,
        },
        startup_timeout: config.startup_timeout,
        console: ConsoleKind::Stderr,
        max_frame_bytes: config.max_frame_bytes,
        max_console_bytes: config.max_console_bytes,
    })
}

/// Compiles the R template's helper library (`o16n_fork.so`, beside the worker script) unless
/// the one there was built from this source. Needs a C compiler (`cc`).
pub(crate) async fn build_fork_helper(config: &RConfig) -> Result<(), RuntimeError> {
    let source = config.env_dir.join("o16n_fork.c");
    let library = config.env_dir.join("o16n_fork.so");
    let current = tokio::fs::read_to_string(&source).await.unwrap_or_default();
    if current == FORK_HELPER_SOURCE && library.exists() {
        return Ok(());
    }
    tokio::fs::create_dir_all(&config.env_dir).await?;
    tokio::fs::write(&source, FORK_HELPER_SOURCE).await?;
    let _ = tokio::fs::remove_file(&library).await;
    let output = tokio::process::Command::new("cc")
        .args(["-O2", "-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|err| {
            RuntimeError::RuntimeUnavailable(format!("no C compiler (cc) can run: {err}"))
        })?;
    if !output.status.success() {
        let _ = tokio::fs::remove_file(&library).await;
        return Err(RuntimeError::RuntimeUnavailable(format!(
            "cc cannot build the R template's helper: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}
