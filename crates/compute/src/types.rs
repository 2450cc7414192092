//! The plain data of the compute interface.

use std::pin::Pin;

use bytes::Bytes;
use futures_util::Stream;
use o16n_types::{ParameterType, RuntimeType};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::wire;

/// A stream of bytes (a file, an archive), read chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// A stream of bytes with its length when known.
pub struct Download {
    /// The length in bytes, when the sender knows it.
    pub size: Option<u64>,
    /// The bytes.
    pub content: ByteStream,
}

/// A session and the user it belongs to; every session operation names both.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRef {
    /// The session id (a GUID).
    pub id: String,
    /// Its owner.
    pub owner: String,
}

/// What opens a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSession {
    /// Who opens it.
    pub owner: String,
    /// The optional name given by the client.
    pub name: Option<String>,
    /// Its runtime.
    #[serde(with = "wire::runtime")]
    pub runtime: RuntimeType,
    /// The environment its worker runs in; `None` for the runtime's default.
    #[serde(default)]
    pub environment: Option<EnvironmentRef>,
}

/// A built environment as a compute node is asked to run workers in it: the node builds it
/// from the lock when it has no build of that lock yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentRef {
    /// The environment's name (for messages and the pools' status).
    pub name: String,
    /// Its runtime.
    #[serde(with = "wire::runtime")]
    pub runtime: RuntimeType,
    /// The exact packages, as the first build resolved them.
    pub lock: String,
}

/// What an environment asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "runtime")]
pub enum EnvironmentSpec {
    /// A Python requirements text (PEP 508 lines), resolved against the configured index.
    Python {
        /// The requirement lines.
        requirements: String,
    },
    /// R packages from the configured repositories.
    R {
        /// Package names.
        packages: Vec<String>,
        /// Repository URLs, each one of those the node is configured with; empty for all of
        /// them.
        repositories: Vec<String>,
    },
}

impl EnvironmentSpec {
    /// The runtime the environment is for.
    pub fn runtime(&self) -> RuntimeType {
        match self {
            EnvironmentSpec::Python { .. } => RuntimeType::Python,
            EnvironmentSpec::R { .. } => RuntimeType::R,
        }
    }
}

/// What a build of an environment is asked to do: resolve the spec (the first build), or
/// reproduce a lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentBuild {
    /// The environment's name.
    pub name: String,
    /// What it asks for.
    pub spec: EnvironmentSpec,
    /// The lock to reproduce; `None` to resolve the spec and record a new lock.
    pub lock: Option<String>,
}

/// How a build went: the lock and the packages it installed, or why it failed; its log either
/// way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentBuildReport {
    /// Whether the environment is built.
    pub success: bool,
    /// The exact packages (the lock), when it succeeded.
    pub lock: Option<String>,
    /// The packages installed and their versions, when it succeeded.
    pub packages: Vec<ResolvedPackage>,
    /// What the resolver and installer said, and why a failure failed.
    pub log: String,
    /// How long the build took, in milliseconds.
    pub duration_ms: u64,
}

/// A package of a built environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResolvedPackage {
    /// Its name.
    pub name: String,
    /// Its exact version.
    pub version: String,
}

/// A session as its owner sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session id (a GUID).
    pub id: String,
    /// The optional name given at creation.
    pub name: Option<String>,
    /// Who created it.
    pub owner: String,
    /// Its runtime.
    #[serde(with = "wire::runtime")]
    pub runtime: RuntimeType,
}

/// A named value, as the reference's `WorkspaceObject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedValue {
    /// The variable name.
    pub name: String,
    /// The value as JSON.
    pub value: Value,
}

/// An execution request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteRequest {
    /// The code.
    pub code: String,
    /// Bound as globals before the code runs.
    pub inputs: Vec<NamedValue>,
    /// Read back after it ran.
    pub outputs: Vec<String>,
}

/// The outcome of an execution, as the reference's `ExecuteResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteOutcome {
    /// Whether the code ran without an error.
    pub success: bool,
    /// The error (a traceback) when it did not.
    pub error_message: String,
    /// What it printed.
    pub console_output: String,
    /// The requested outputs.
    pub outputs: Vec<NamedValue>,
    /// Working-directory files it created or modified.
    pub changed_files: Vec<String>,
}

/// Content the database holds, named by the SHA-256 of its bytes (lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ContentRef {
    /// The SHA-256 digest, hex.
    pub digest: String,
    /// The length in bytes.
    pub size: u64,
}

/// A value with its declared service parameter type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypedValue {
    /// The variable name.
    pub name: String,
    /// The declared type.
    #[serde(rename = "type", with = "wire::parameter_type")]
    pub kind: ParameterType,
    /// The value as JSON.
    pub value: Value,
}

/// A declared output of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedName {
    /// The variable name.
    pub name: String,
    /// The declared type.
    #[serde(rename = "type", with = "wire::parameter_type")]
    pub kind: ParameterType,
}

/// What a worker needs to run a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Identifies the service revision; a new one on every update.
    pub key: String,
    /// The user who published it; a worker runs the services of one owner only.
    pub owner: String,
    /// The runtime that runs it.
    #[serde(with = "wire::runtime")]
    pub runtime: RuntimeType,
    /// Run on every request.
    pub code: String,
    /// Run once when a worker loads the service.
    pub init_code: Option<String>,
    /// Declared outputs.
    pub outputs: Vec<TypedName>,
    /// Files returned with every response.
    pub output_file_names: Vec<String>,
    /// The snapshot copy the service was published with.
    pub content: Option<ContentRef>,
    /// The service's dedicated pool, when it has one: its requests then run only on workers
    /// of that pool.
    #[serde(default)]
    pub pool: Option<DedicatedPoolSpec>,
    /// The environment its workers run in; `None` for the runtime's default.
    #[serde(default)]
    pub environment: Option<EnvironmentRef>,
}

/// A service's dedicated pool, as a compute node is asked to hold it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedicatedPoolSpec {
    /// The pool's name: the service's `name/version`, which stays while revisions change.
    pub service: String,
    /// Workers kept warm with the service loaded.
    pub initial_size: u32,
    /// The most workers, or 0 for the node's limit of service workers of the runtime.
    pub max_size: u32,
}

/// Who is waiting for a worker: interactive requests go before batch records, so that a
/// running batch never delays other consumers by more than the record in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Priority {
    /// A request someone is waiting on.
    Interactive,
    /// A record of an asynchronous batch.
    Batch,
}

/// One request of a web service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumeRequest {
    /// The service.
    pub service: ServiceSpec,
    /// Its inputs, checked against the declared types.
    pub inputs: Vec<TypedValue>,
    /// Whose turn comes first.
    pub priority: Priority,
}

/// A declared output file of one request: its bytes, or `None` when the code did not write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The file name.
    pub name: String,
    /// Its content.
    #[serde(with = "wire::optional_bytes")]
    pub content: Option<Vec<u8>>,
}

/// The result of one request, as the reference's `WebServiceResult`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsumeOutcome {
    /// Whether the code ran without an error.
    pub success: bool,
    /// The error when it did not.
    pub error_message: String,
    /// What it printed.
    pub console_output: String,
    /// Files it created or modified.
    pub changed_files: Vec<String>,
    /// Declared outputs by name.
    pub outputs: Map<String, Value>,
    /// Declared output files, in declaration order.
    pub output_files: Vec<OutputFile>,
    /// Where the compute node spent the time.
    #[serde(default)]
    pub timings: StageTimings,
}

/// Where a service request spent its time on the compute node, in microseconds: the stages of
/// the reference's capacity tool, measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageTimings {
    /// Waiting for a worker (including starting one: the reference's "Create Shell").
    pub queue_micros: u64,
    /// Loading the service into the worker (its snapshot and initCode: "Initialize Shell"),
    /// 0 when the worker had it loaded.
    pub load_micros: u64,
    /// Running the code and gathering the outputs ("Compute Node Request").
    pub execute_micros: u64,
}

/// How a pool of one runtime stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PoolHealth {
    /// The runtime is being prepared (e.g. its environment installed).
    Preparing(String),
    /// Workers start and serve.
    Ready,
    /// The runtime cannot be used; the text says why and what to do.
    Unavailable(String),
}

/// A pool's state, for `/status`: the shared pool of a runtime, or a service's dedicated pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// The runtime.
    #[serde(with = "wire::runtime")]
    pub runtime: RuntimeType,
    /// The service (`name/version`) whose dedicated pool this is; `None` for the shared pool.
    #[serde(default)]
    pub service: Option<String>,
    /// The service revision a dedicated pool's workers have loaded.
    #[serde(default)]
    pub revision: Option<String>,
    /// The environment of the pool's workers; `None` for the runtime's default.
    #[serde(default)]
    pub environment: Option<String>,
    /// Health.
    pub health: PoolHealth,
    /// Configured warm size.
    pub initial_size: usize,
    /// Configured maximum.
    pub max_size: usize,
    /// Workers alive: idle + busy + starting.
    pub size: usize,
    /// Workers leased to sessions or requests.
    pub busy: usize,
    /// Warm workers waiting.
    pub idle: usize,
    /// Workers starting up.
    pub starting: usize,
    /// Requests waiting for a worker.
    #[serde(default)]
    pub waiting: usize,
    /// Workers started since the pool began.
    #[serde(default)]
    pub workers_started: u64,
    /// Workers that failed to start.
    #[serde(default)]
    pub worker_start_failures: u64,
    /// Workers the server stopped (discarded after a session, replaced, shut down).
    #[serde(default)]
    pub workers_retired: u64,
    /// Workers that died: crashed, were killed for a limit, or broke the protocol.
    #[serde(default)]
    pub workers_died: u64,
}

/// A compute node's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// The shared pool of each runtime, then the dedicated pools by service.
    pub pools: Vec<PoolStatus>,
    /// How user code is isolated, or `None` when it is not.
    pub isolation: Option<String>,
    /// Sessions open.
    pub sessions: usize,
    /// When the node started, in Unix seconds: sessions opened on it before then are gone.
    pub started_at: i64,
}

/// The packages of a lock and their versions: the `name==version` lines of a Python lock
/// (hashes, markers and comments aside), or the entries of an R lock (JSON).
pub fn lock_packages(runtime: RuntimeType, lock: &str) -> Vec<ResolvedPackage> {
    match runtime {
        RuntimeType::Python => lock
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#') && !line.starts_with('-'))
            .filter_map(|line| {
                let (name, rest) = line.split_once("==")?;
                let version = rest.split([' ', ';', '\\']).next()?.trim();
                Some(ResolvedPackage {
                    name: name.trim().to_owned(),
                    version: version.to_owned(),
                })
            })
            .collect(),
        RuntimeType::R => serde_json::from_str::<Vec<Value>>(lock)
            .unwrap_or_default()
            .iter()
            .filter_map(|entry| {
                Some(ResolvedPackage {
                    name: entry.get("name")?.as_str()?.to_owned(),
                    version: entry.get("version")?.as_str()?.to_owned(),
                })
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_lock_lists_its_pinned_packages() {
        let lock = "# pinned\ntabulate==0.9.0 \\\n    --hash=sha256:abc\nhello-o16n==1.0 ; python_version >= '3'\n";
        assert_eq!(
            lock_packages(RuntimeType::Python, lock),
            vec![
                ResolvedPackage {
                    name: "tabulate".into(),
                    version: "0.9.0".into()
                },
                ResolvedPackage {
                    name: "hello-o16n".into(),
                    version: "1.0".into()
                },
            ]
        );
    }

    #[test]
    fn an_r_lock_lists_its_packages() {
        let lock =
            r#"[{"name":"hello","version":"1.0","repository":"http://x/src/contrib","md5":"00"}]"#;
        assert_eq!(
            lock_packages(RuntimeType::R, lock),
            vec![ResolvedPackage {
                name: "hello".into(),
                version: "1.0".into()
            }]
        );
    }
}
