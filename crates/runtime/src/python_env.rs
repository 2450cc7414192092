//! The managed Python environment: a virtual environment under the data directory with the
//! pinned packages of `workers/python/requirements.txt`, and the worker script beside it.
//!
//! `o16n runtime setup python` creates it with pip's progress visible; `serve` creates it in the
//! background when it is missing, so the first start of a fresh machine needs no extra step.
//! An operator may instead point `runtime.python.executable` at an existing interpreter, which
//! is then only checked, never modified.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use o16n_types::RuntimeType;

use crate::RuntimeError;
use crate::launch::{ConsoleKind, LaunchSpec};
use crate::sandbox::{Arg, WorkerLimits};

/// The worker script, embedded so that the binary is self-contained.
const WORKER_SCRIPT: &str = include_str!("../../../workers/python/o16n_worker.py");
/// What a worker template runs (the worker script imports it with `--template`).
const TEMPLATE_SCRIPT: &str = include_str!("../../../workers/python/o16n_template.py");
/// The pinned packages of the managed environment.
const REQUIREMENTS: &str = include_str!("../../../workers/python/requirements.txt");
/// Modules every worker imports before it joins the pool.
const PRELOAD: &str = "numpy,pandas,sklearn,dill";

/// Settings of the Python runtime.
#[derive(Debug, Clone)]
pub struct PythonConfig {
    /// An existing interpreter to use instead of the managed environment.
    pub executable: Option<PathBuf>,
    /// The interpreter that creates the managed environment.
    pub base_interpreter: PathBuf,
    /// Where the managed environment and the worker script live.
    pub env_dir: PathBuf,
    /// Address-space limit of each worker in MiB; 0 means none.
    pub memory_limit_mb: u64,
    /// Whether workers may use the network (off: loopback only, inside their sandbox).
    pub network: bool,
    /// How long a worker may take to start and warm up.
    pub startup_timeout: Duration,
    /// The longest message accepted from a worker, in bytes.
    pub max_frame_bytes: usize,
    /// The most console output the server keeps of one execution, in bytes.
    pub max_console_bytes: usize,
    /// Whether workers are forked from a warmed template where the sandbox allows it.
    pub fork_workers: bool,
}

impl PythonConfig {
    fn venv_dir(&self) -> PathBuf {
        self.env_dir.join("venv")
    }

    fn managed_interpreter(&self) -> PathBuf {
        self.venv_dir().join("bin").join("python")
    }

    fn marker(&self) -> PathBuf {
        self.venv_dir().join("o16n-requirements.txt")
    }

    /// Whether the managed environment exists with exactly the pinned packages.
    fn managed_env_is_current(&self) -> bool {
        self.managed_interpreter().exists()
            && std::fs::read_to_string(self.marker()).is_ok_and(|text| text == REQUIREMENTS)
    }

    /// Whether serving needs to create the environment first.
    pub fn needs_setup(&self) -> bool {
        self.executable.is_none() && !self.managed_env_is_current()
    }
}

/// Creates the managed environment if it is missing or stale, printing pip's progress on
/// stderr. Does nothing when an external interpreter is configured.
pub async fn setup(config: &PythonConfig) -> Result<PathBuf, RuntimeError> {
    if let Some(executable) = &config.executable {
        return Ok(executable.clone());
    }
    if config.managed_env_is_current() {
        eprintln!(
            "the Python environment in {} is up to date",
            config.venv_dir().display()
        );
        return Ok(config.managed_interpreter());
    }
    let venv = config.venv_dir();
    if venv.exists() {
        tokio::fs::remove_dir_all(&venv).await?;
    }
    tokio::fs::create_dir_all(&config.env_dir).await?;
    eprintln!("creating the Python environment in {}", venv.display());
    run_visible(
        Path::new(&config.base_interpreter),
        &["-m".as_ref(), "venv".as_ref(), venv.as_os_str()],
        "create the virtual environment (on Debian this needs the python3-venv package)",
    )
    .await?;
    let requirements = config.env_dir.join("requirements.txt");
    tokio::fs::write(&requirements, REQUIREMENTS).await?;
    eprintln!("installing numpy, pandas, scikit-learn, dill and uv (pinned) with pip");
    run_visible(
        &config.managed_interpreter(),
        &[
            "-m".as_ref(),
            "pip".as_ref(),
            "install".as_ref(),
            "--disable-pip-version-check".as_ref(),
            "--no-input".as_ref(),
            "-r".as_ref(),
            requirements.as_os_str(),
        ],
        "install the pinned packages",
    )
    .await?;
    tokio::fs::write(config.marker(), REQUIREMENTS).await?;
    eprintln!("the Python environment is ready");
    Ok(config.managed_interpreter())
}

/// Runs a set-up step with its output on our stderr, so that the operator sees progress.
async fn run_visible(
    program: &Path,
    args: &[&std::ffi::OsStr],
    what: &str,
) -> Result<(), RuntimeError> {
    let status = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr().as_fd().try_clone_to_owned()?))
        .stderr(Stdio::inherit())
        .status()
        .await
        .map_err(|err| {
            RuntimeError::RuntimeUnavailable(format!(
                "cannot run {} to {what}: {err}",
                program.display()
            ))
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(RuntimeError::RuntimeUnavailable(format!(
            "{} failed to {what} ({status}); see the output above",
            program.display()
        )))
    }
}

/// Writes the worker script (if it changed) and describes how to start a worker.
pub(crate) async fn launch_spec(
    config: &PythonConfig,
    interpreter: PathBuf,
) -> Result<LaunchSpec, RuntimeError> {
    tokio::fs::create_dir_all(&config.env_dir).await?;
    for (name, text) in [
        ("o16n_worker.py", WORKER_SCRIPT),
        ("o16n_template.py", TEMPLATE_SCRIPT),
    ] {
        let script = config.env_dir.join(name);
        if tokio::fs::read_to_string(&script).await.unwrap_or_default() != text {
            tokio::fs::write(&script, text).await?;
        }
    }
    let installation = installation(&interpreter).await?;
    // The managed environment lives in the runtime's directory, which a sandbox shows
    // elsewhere; a virtual environment finds itself from where its interpreter is run.
    let program = match interpreter.strip_prefix(&config.env_dir) {
        Ok(relative) => Arg::InRuntime(relative.to_path_buf()),
        Err(_) => Arg::plain(interpreter),
    };
    let mut env = vec![
        ("O16N_PRELOAD".to_owned(), PRELOAD.to_owned()),
        ("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()),
        // The worker sends at most this much console text per execution and only counts the
        // rest, so that what user code prints never crosses to the server in bulk.
        (
            "O16N_MAX_CONSOLE_BYTES".to_owned(),
            config.max_console_bytes.to_string(),
        ),
    ];
    // One BLAS thread per worker: the pool is the unit of parallelism, and per-worker thread
    // pools would oversubscribe the cores and inflate every worker's address space.
    for variable in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] {
        env.push((variable.to_owned(), "1".to_owned()));
    }
    Ok(LaunchSpec {
        runtime: RuntimeType::Python,
        runtime_dir: config.env_dir.clone(),
        program,
        args: vec![Arg::InRuntime("o16n_worker.py".into())],
        env,
        read_only: installation.dirs,
        package_dirs: installation.package_dirs,
        limits: WorkerLimits {
            memory_mb: config.memory_limit_mb,
            network: config.network,
        },
        startup_timeout: config.startup_timeout,
        console: ConsoleKind::Frames,
        max_frame_bytes: config.max_frame_bytes,
        max_console_bytes: config.max_console_bytes,
    })
}

/// Where an interpreter's installation lives and where its packages are.
struct Installation {
    /// The directories of the installation (a virtual environment and the Python it was made
    /// from), which a sandboxed worker must see read-only.
    dirs: Vec<PathBuf>,
    /// Its site-packages directories: installing, upgrading or removing a package changes them.
    package_dirs: Vec<PathBuf>,
}

/// Asks the interpreter where its installation and packages are: it may be a virtual
/// environment whose `python` links to an interpreter elsewhere.
async fn installation(interpreter: &Path) -> Result<Installation, RuntimeError> {
    let output = tokio::process::Command::new(interpreter)
        .args([
            "-I",
            "-c",
            "import os, site, sys; print(sys.prefix); print(sys.base_prefix); \
             print(os.path.dirname(os.path.dirname(os.path.realpath(sys.executable)))); \
             print(''); print(*site.getsitepackages(), sep='\\n')",
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|err| {
            RuntimeError::RuntimeUnavailable(format!(
                "cannot run the Python interpreter {}: {err}",
                interpreter.display()
            ))
        })?;
    if !output.status.success() {
        return Err(RuntimeError::RuntimeUnavailable(format!(
            "the Python interpreter {} does not run: {}",
            interpreter.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let (dirs, package_dirs) = text.split_once("\n\n").unwrap_or((&text, ""));
    let absolute = |lines: &str| -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = lines
            .lines()
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    };
    Ok(Installation {
        dirs: absolute(dirs),
        package_dirs: absolute(package_dirs),
    })
}
