//! A compute node in memory, for tests of everything above the compute interface (the use
//! cases, the REST API, the cluster's transport) without Python, R or a sandbox.
//!
//! [`FakeCompute`] keeps sessions with their files, objects and history, and contents by
//! digest, and answers every [`ComputeCall`] as a real node would in shape: unknown or foreign
//! sessions are not found, content it lacks is asked for, names it lacks are not found. What
//! code "does" is scripted: by default an execution or a service request succeeds and binds
//! each requested output to the input of the same name; a test may script its own outcomes
//! and make the next calls fail (an unreachable node, a node that broke mid-request).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use o16n_types::RuntimeType;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    ByteStream, Compute, ComputeCall, ComputeError, ComputeReply, ConsumeOutcome, ConsumeRequest,
    ContentRef, Download, EnvironmentBuild, EnvironmentBuildReport, EnvironmentSpec,
    ExecuteOutcome, ExecuteRequest, NamedValue, NodeStatus, PoolHealth, PoolStatus, ServiceSpec,
    SessionInfo, SessionRef, StageTimings,
};

/// How a scripted service request is answered.
type ConsumeScript =
    Arc<dyn Fn(&ConsumeRequest) -> Result<ConsumeOutcome, ComputeError> + Send + Sync>;
/// How a scripted execution is answered.
type ExecuteScript = Arc<dyn Fn(&ExecuteRequest) -> ExecuteOutcome + Send + Sync>;

/// A compute node in memory.
#[derive(Default)]
pub struct FakeCompute {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_session: u64,
    sessions: BTreeMap<String, FakeSession>,
    contents: HashMap<String, Vec<u8>>,
    dedicated_pools: Vec<ServiceSpec>,
    failures: VecDeque<ComputeError>,
    calls: Vec<&'static str>,
    on_consume: Option<ConsumeScript>,
    on_execute: Option<ExecuteScript>,
}

/// A session's state, which is also what its snapshot archive holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Workspace {
    files: BTreeMap<String, Vec<u8>>,
    objects: BTreeMap<String, Vec<u8>>,
}

struct FakeSession {
    info: SessionInfo,
    workspace: Workspace,
    history: Vec<String>,
    console: String,
}

impl FakeCompute {
    /// An empty node.
    pub fn new() -> FakeCompute {
        FakeCompute::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock must not hide its own failure behind a
        // poisoned lock in the next call.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers service requests with `script` from now on.
    pub fn on_consume(
        &self,
        script: impl Fn(&ConsumeRequest) -> Result<ConsumeOutcome, ComputeError> + Send + Sync + 'static,
    ) {
        self.state().on_consume = Some(Arc::new(script));
    }

    /// Answers executions with `script` from now on.
    pub fn on_execute(
        &self,
        script: impl Fn(&ExecuteRequest) -> ExecuteOutcome + Send + Sync + 'static,
    ) {
        self.state().on_execute = Some(Arc::new(script));
    }

    /// Fails the next call, whatever it is, with `error` (queued after earlier ones).
    pub fn fail_next(&self, error: ComputeError) {
        self.state().failures.push_back(error);
    }

    /// The operations answered so far, in order (failed ones included).
    pub fn calls(&self) -> Vec<&'static str> {
        self.state().calls.clone()
    }

    /// The dedicated pools last asked for.
    pub fn dedicated_pools(&self) -> Vec<ServiceSpec> {
        self.state().dedicated_pools.clone()
    }

    /// Whether the node holds the content of `digest`.
    pub fn holds_content(&self, digest: &str) -> bool {
        self.state().contents.contains_key(digest)
    }

    /// Counts a call and takes a queued failure, if any.
    fn begin(&self, name: &'static str) -> Result<(), ComputeError> {
        let mut state = self.state();
        state.calls.push(name);
        state.failures.pop_front().map_or(Ok(()), Err)
    }
}

impl State {
    fn session(&mut self, session: &SessionRef) -> Result<&mut FakeSession, ComputeError> {
        self.sessions
            .get_mut(&session.id)
            .filter(|held| held.info.owner == session.owner)
            .ok_or_else(|| ComputeError::SessionNotFound(session.id.clone()))
    }

    fn answer(&mut self, call: ComputeCall) -> Result<ComputeReply, ComputeError> {
        Ok(match call {
            ComputeCall::Status => ComputeReply::Status(NodeStatus {
                pools: [RuntimeType::Python, RuntimeType::R]
                    .into_iter()
                    .map(ready_pool)
                    .collect(),
                // Nothing runs, so there is nothing to isolate; `None` would read as a node
                // running user code unisolated.
                isolation: Some("in memory (a fake compute node for tests)".to_owned()),
                sessions: self.sessions.len(),
                started_at: 0,
            }),
            ComputeCall::CreateSession(request) => {
                if let Some(environment) = &request.environment
                    && environment.runtime != request.runtime
                {
                    return Err(ComputeError::InvalidInput(format!(
                        "environment `{}` is for {}, not {}",
                        environment.name, environment.runtime, request.runtime
                    )));
                }
                self.next_session += 1;
                let info = SessionInfo {
                    id: format!("00000000-0000-4000-8000-{:012x}", self.next_session),
                    name: request.name,
                    owner: request.owner,
                    runtime: request.runtime,
                };
                self.sessions.insert(
                    info.id.clone(),
                    FakeSession {
                        info: info.clone(),
                        workspace: Workspace::default(),
                        history: Vec::new(),
                        console: String::new(),
                    },
                );
                ComputeReply::Session(info)
            }
            ComputeCall::Sessions => ComputeReply::Sessions(
                self.sessions
                    .values()
                    .map(|session| session.info.clone())
                    .collect(),
            ),
            ComputeCall::CloseSession { session, .. } => {
                self.session(&session)?;
                self.sessions.remove(&session.id);
                ComputeReply::Done
            }
            ComputeCall::Execute { session, request } => {
                let script = self.on_execute.clone();
                let held = self.session(&session)?;
                held.history.push(request.code.clone());
                let outcome = match script {
                    Some(script) => script(&request),
                    None => echo_execution(&request),
                };
                held.console.clone_from(&outcome.console_output);
                ComputeReply::Executed(outcome)
            }
            ComputeCall::Cancel { session } => {
                self.session(&session)?;
                ComputeReply::Done
            }
            ComputeCall::ConsoleOutput { session } => {
                ComputeReply::Text(self.session(&session)?.console.clone())
            }
            ComputeCall::History { session } => {
                ComputeReply::Names(self.session(&session)?.history.clone())
            }
            ComputeCall::ListFiles { session } => ComputeReply::Names(
                self.session(&session)?
                    .workspace
                    .files
                    .keys()
                    .cloned()
                    .collect(),
            ),
            ComputeCall::DeleteFile { session, name } => {
                let files = &mut self.session(&session)?.workspace.files;
                files
                    .remove(&name)
                    .ok_or_else(|| not_found("file", &name))?;
                ComputeReply::Done
            }
            ComputeCall::ListObjects { session } => ComputeReply::Names(
                self.session(&session)?
                    .workspace
                    .objects
                    .keys()
                    .cloned()
                    .collect(),
            ),
            ComputeCall::GetObject { session, name } => {
                let objects = &self.session(&session)?.workspace.objects;
                ComputeReply::Bytes(
                    objects
                        .get(&name)
                        .cloned()
                        .ok_or_else(|| not_found("object", &name))?,
                )
            }
            ComputeCall::PutObject {
                session,
                name,
                content,
            } => {
                self.session(&session)?
                    .workspace
                    .objects
                    .insert(name, content);
                ComputeReply::Done
            }
            ComputeCall::DeleteObject { session, name } => {
                let objects = &mut self.session(&session)?.workspace.objects;
                objects
                    .remove(&name)
                    .ok_or_else(|| not_found("object", &name))?;
                ComputeReply::Done
            }
            ComputeCall::ImportSnapshot { session, content } => {
                self.session(&session)?;
                let archive = self
                    .contents
                    .get(&content.digest)
                    .ok_or_else(|| ComputeError::ContentMissing(content.digest.clone()))?;
                let imported: Workspace = serde_json::from_slice(archive).map_err(|err| {
                    ComputeError::InvalidInput(format!("not a snapshot of this node: {err}"))
                })?;
                let workspace = &mut self.session(&session)?.workspace;
                workspace.files.extend(imported.files);
                workspace.objects.extend(imported.objects);
                ComputeReply::Done
            }
            ComputeCall::Consume(request) => {
                if let Some(content) = &request.service.content
                    && !self.contents.contains_key(&content.digest)
                {
                    return Err(ComputeError::ContentMissing(content.digest.clone()));
                }
                ComputeReply::Consumed(match self.on_consume.clone() {
                    Some(script) => script(&request)?,
                    None => echo_request(&request),
                })
            }
            ComputeCall::SetDedicatedPools(services) => {
                self.dedicated_pools = services;
                ComputeReply::Done
            }
            ComputeCall::BuildEnvironment(build) => ComputeReply::Built(built(&build)),
        })
    }
}

fn ready_pool(runtime: RuntimeType) -> PoolStatus {
    PoolStatus {
        runtime,
        service: None,
        revision: None,
        environment: None,
        health: PoolHealth::Ready,
        initial_size: 0,
        max_size: 0,
        size: 0,
        busy: 0,
        idle: 0,
        starting: 0,
        waiting: 0,
        workers_started: 0,
        worker_start_failures: 0,
        workers_retired: 0,
        workers_died: 0,
    }
}

fn not_found(what: &str, name: &str) -> ComputeError {
    ComputeError::NotFound(format!("{what} `{name}` not found"))
}

/// Binds each requested output to the input of the same name (`null` when there is none).
fn echo_execution(request: &ExecuteRequest) -> ExecuteOutcome {
    let outputs = request
        .outputs
        .iter()
        .map(|name| NamedValue {
            name: name.clone(),
            value: request
                .inputs
                .iter()
                .find(|input| input.name == *name)
                .map_or(Value::Null, |input| input.value.clone()),
        })
        .collect();
    ExecuteOutcome {
        success: true,
        error_message: String::new(),
        console_output: String::new(),
        outputs,
        changed_files: Vec::new(),
    }
}

/// Binds each declared output to the input of the same name (`null` when there is none).
fn echo_request(request: &ConsumeRequest) -> ConsumeOutcome {
    let outputs: Map<String, Value> = request
        .service
        .outputs
        .iter()
        .map(|output| {
            let value = request
                .inputs
                .iter()
                .find(|input| input.name == output.name)
                .map_or(Value::Null, |input| input.value.clone());
            (output.name.clone(), value)
        })
        .collect();
    ConsumeOutcome {
        success: true,
        error_message: String::new(),
        console_output: String::new(),
        changed_files: Vec::new(),
        outputs,
        output_files: Vec::new(),
        timings: StageTimings::default(),
    }
}

/// A build that succeeds, locking what the spec asks for as it is written.
fn built(build: &EnvironmentBuild) -> EnvironmentBuildReport {
    let lock = build.lock.clone().unwrap_or_else(|| match &build.spec {
        EnvironmentSpec::Python { requirements } => requirements.clone(),
        EnvironmentSpec::R { packages, .. } => {
            let entries: Vec<Value> = packages
                .iter()
                .map(|name| serde_json::json!({"name": name, "version": "1.0"}))
                .collect();
            Value::Array(entries).to_string()
        }
    });
    EnvironmentBuildReport {
        success: true,
        packages: crate::lock_packages(build.spec.runtime(), &lock),
        lock: Some(lock),
        log: format!("built `{}` in memory\n", build.name),
        duration_ms: 0,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn collect(mut stream: ByteStream) -> Result<Vec<u8>, ComputeError> {
    let mut bytes = Vec::new();
    while let Some(chunk) = stream
        .try_next()
        .await
        .map_err(|err| ComputeError::InvalidInput(format!("the upload broke: {err}")))?
    {
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn download(bytes: Vec<u8>) -> Download {
    Download {
        size: Some(bytes.len() as u64),
        content: futures_util::stream::once(async move { Ok(Bytes::from(bytes)) }).boxed(),
    }
}

#[async_trait]
impl Compute for FakeCompute {
    async fn call(&self, call: ComputeCall) -> Result<ComputeReply, ComputeError> {
        self.begin(call.name())?;
        self.state().answer(call)
    }

    async fn upload_file(
        &self,
        session: &SessionRef,
        name: &str,
        content: ByteStream,
    ) -> Result<(), ComputeError> {
        self.begin("upload_file")?;
        self.state().session(session)?;
        let bytes = collect(content).await?;
        let mut state = self.state();
        state
            .session(session)?
            .workspace
            .files
            .insert(name.to_owned(), bytes);
        Ok(())
    }

    async fn download_file(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<Download, ComputeError> {
        self.begin("download_file")?;
        let mut state = self.state();
        let files = &state.session(session)?.workspace.files;
        let bytes = files
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("file", name))?;
        Ok(download(bytes))
    }

    async fn export_snapshot(&self, session: &SessionRef) -> Result<Download, ComputeError> {
        self.begin("export_snapshot")?;
        let mut state = self.state();
        let archive = serde_json::to_vec(&state.session(session)?.workspace)
            .map_err(|err| ComputeError::Internal(err.to_string()))?;
        Ok(download(archive))
    }

    async fn put_content(
        &self,
        content: &ContentRef,
        bytes: ByteStream,
    ) -> Result<(), ComputeError> {
        self.begin("put_content")?;
        let bytes = collect(bytes).await?;
        let digest = hex(&Sha256::digest(&bytes));
        if bytes.len() as u64 != content.size || digest != content.digest {
            return Err(ComputeError::InvalidInput(format!(
                "content {} arrived as {} bytes of digest {digest}",
                content.digest,
                bytes.len(),
            )));
        }
        self.state().contents.insert(content.digest.clone(), bytes);
        Ok(())
    }
}
