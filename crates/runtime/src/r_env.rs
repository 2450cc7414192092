//! The R runtime: Debian's R (`r-base-core`) with `jsonlite` (`r-cran-jsonlite`), and the worker
//! script beside the data directory's other runtimes. R packages come from the operating
//! system, not from CRAN; this module only checks that what the worker needs is there.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use o16n_types::RuntimeType;

use crate::RuntimeError;
use crate::worker::{ChannelKind, LaunchSpec};

/// The worker script, embedded so that the binary is self-contained.
const WORKER_SCRIPT: &str = include_str!("../../../workers/r/o16n_worker.R");

/// Settings of the R runtime.
#[derive(Debug, Clone)]
pub struct RConfig {
    /// The `Rscript` to run.
    pub rscript: PathBuf,
    /// Where the worker script is written.
    pub env_dir: PathBuf,
    /// Address-space limit of each worker in MiB; 0 means none.
    pub memory_limit_mb: u64,
    /// How long a worker may take to start.
    pub startup_timeout: Duration,
}

/// Checks that R and jsonlite are installed, writes the worker script and describes how to
/// start a worker.
pub(crate) async fn launch_spec(config: &RConfig) -> Result<LaunchSpec, RuntimeError> {
    let check = tokio::process::Command::new(&config.rscript)
        .args([
            "--vanilla",
            "-e",
            "suppressPackageStartupMessages(library(jsonlite))",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await;
    match check {
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
        Ok(_) => {}
    }
    tokio::fs::create_dir_all(&config.env_dir).await?;
    let script = config.env_dir.join("o16n_worker.R");
    if tokio::fs::read_to_string(&script).await.unwrap_or_default() != WORKER_SCRIPT {
        tokio::fs::write(&script, WORKER_SCRIPT).await?;
    }
    // Line-buffered stdout and stderr, so that console output reaches readers while code runs;
    // prlimit sets the address-space limit that R itself cannot.
    let mut args: Vec<std::ffi::OsString> = Vec::new();
    if config.memory_limit_mb > 0 {
        args.push(format!("--as={}", config.memory_limit_mb * 1024 * 1024).into());
        args.push("--".into());
        args.push("stdbuf".into());
    }
    args.extend([
        "-oL".into(),
        "-eL".into(),
        config.rscript.clone().into_os_string(),
    ]);
    args.extend(["--vanilla".into(), script.into_os_string()]);
    Ok(LaunchSpec {
        runtime: RuntimeType::R,
        program: if config.memory_limit_mb > 0 {
            "prlimit".into()
        } else {
            "stdbuf".into()
        },
        args,
        env: vec![
            ("OPENBLAS_NUM_THREADS".to_owned(), "1".to_owned()),
            ("OMP_NUM_THREADS".to_owned(), "1".to_owned()),
        ],
        startup_timeout: config.startup_timeout,
        channel: ChannelKind::LoopbackTcp,
    })
}
