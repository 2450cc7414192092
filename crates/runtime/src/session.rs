//! Remote sessions: a dedicated worker per session, with its working directory, history and
//! console output.
//!
//! A session owns the lease of its worker; closing the session drops the lease, which discards
//! the worker. One execution runs at a time per session; console output of the running
//! execution can be read while it runs. When a session's worker dies, the session turns into a
//! tombstone that answers every call with the reason (410 Gone) until it is closed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use o16n_types::{FileName, ObjectName, RuntimeType};

use crate::pool::Lease;
use crate::protocol::{FailureKind, NamedValue, Request};
use crate::worker::{ConsoleSink, Reply, WorkerHandle};
use crate::{RuntimeError, snapshot, workdir};

/// Runs working-directory I/O of a session's worker on a blocking thread (files can be large).
async fn with_workdir<T: Send + 'static>(
    worker: &WorkerHandle,
    work: impl FnOnce(&workdir::WorkDir) -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    let worker = worker.clone();
    tokio::task::spawn_blocking(move || work(worker.workdir()))
        .await
        .map_err(|err| RuntimeError::Io(std::io::Error::other(err)))?
}

/// What describes a session to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session id (a GUID).
    pub id: String,
    /// The optional name given at creation.
    pub name: Option<String>,
    /// Who created it.
    pub owner: String,
    /// Its runtime.
    pub runtime: RuntimeType,
}

/// An execution request.
#[derive(Debug, Clone)]
pub struct ExecuteRequest {
    /// The code.
    pub code: String,
    /// Bound as globals before the code runs.
    pub inputs: Vec<NamedValue>,
    /// Read back after it ran.
    pub outputs: Vec<String>,
}

/// The outcome of an execution, as the reference's `ExecuteResponse`.
#[derive(Debug, Clone)]
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

struct Session {
    info: SessionInfo,
    lease: Lease,
    history: Mutex<Vec<String>>,
    console: ConsoleSink,
    last_used: Mutex<Instant>,
    /// One execution at a time per session.
    execution: tokio::sync::Mutex<()>,
}

impl Session {
    fn worker(&self) -> &WorkerHandle {
        self.lease.worker()
    }

    fn touch(&self) {
        *self
            .last_used
            .lock()
            .expect("session lock poisoned. This is a bug.") = Instant::now();
    }

    fn gone(&self, reason: String) -> RuntimeError {
        RuntimeError::SessionGone {
            id: self.info.id.clone(),
            reason,
        }
    }

    /// Sends a request, turning a dead worker into "session gone" and protocol-level failures
    /// into client errors.
    async fn call(&self, request: Request, blob: Vec<u8>) -> Result<Reply, RuntimeError> {
        let reply = self
            .worker()
            .call(request, blob, None, None)
            .await
            .map_err(|err| match err {
                RuntimeError::WorkerDied(reason) => self.gone(reason),
                other => other,
            })?;
        if reply.message.ok {
            return Ok(reply);
        }
        let error = reply
            .message
            .error
            .unwrap_or_else(|| "the worker refused the request".to_owned());
        Err(match reply.message.kind {
            Some(FailureKind::NotFound) => RuntimeError::NotFound(error),
            _ => RuntimeError::InvalidInput(error),
        })
    }
}

/// The sessions of one compute node.
pub struct Sessions {
    by_id: Arc<Mutex<HashMap<String, Arc<Session>>>>,
    execution_timeout: Duration,
}

impl Sessions {
    pub(crate) fn new(execution_timeout: Duration) -> Sessions {
        Sessions {
            by_id: Arc::new(Mutex::new(HashMap::new())),
            execution_timeout,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.by_id
            .lock()
            .expect("session table lock poisoned. This is a bug.")
    }

    pub(crate) fn open(
        &self,
        owner: &str,
        name: Option<String>,
        runtime: RuntimeType,
        lease: Lease,
    ) -> SessionInfo {
        let info = SessionInfo {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            owner: owner.to_owned(),
            runtime,
        };
        let session = Arc::new(Session {
            info: info.clone(),
            lease,
            history: Mutex::new(Vec::new()),
            console: ConsoleSink::default(),
            last_used: Mutex::new(Instant::now()),
            execution: tokio::sync::Mutex::new(()),
        });
        self.table().insert(info.id.clone(), session);
        info
    }

    pub(crate) fn list(&self, owner: &str) -> Vec<SessionInfo> {
        let mut sessions: Vec<SessionInfo> = self
            .table()
            .values()
            .filter(|session| {
                session.info.owner == owner && session.worker().exit_reason().is_none()
            })
            .map(|session| session.info.clone())
            .collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        sessions
    }

    /// The live session `id` of `owner`. Another user's session is reported as not found, so
    /// that session ids cannot be probed.
    fn live(&self, id: &str, owner: &str) -> Result<Arc<Session>, RuntimeError> {
        let session = self
            .table()
            .get(id)
            .filter(|session| session.info.owner == owner)
            .cloned()
            .ok_or_else(|| RuntimeError::SessionNotFound(id.to_owned()))?;
        if let Some(reason) = session.worker().exit_reason() {
            return Err(session.gone(reason));
        }
        session.touch();
        Ok(session)
    }

    /// The session's description.
    pub fn info(&self, id: &str, owner: &str) -> Result<SessionInfo, RuntimeError> {
        Ok(self.live(id, owner)?.info.clone())
    }

    /// Runs code in the session.
    pub async fn execute(
        &self,
        id: &str,
        owner: &str,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, RuntimeError> {
        let session = self.live(id, owner)?;
        let _one_at_a_time = session.execution.lock().await;
        session
            .history
            .lock()
            .expect("session lock poisoned. This is a bug.")
            .push(request.code.clone());
        session
            .console
            .lock()
            .expect("console lock poisoned. This is a bug.")
            .clear();
        let before = session.worker().workdir().fingerprints()?;
        let reply = session
            .worker()
            .call(
                Request::Execute {
                    code: request.code,
                    inputs: request.inputs,
                    outputs: request.outputs,
                },
                Vec::new(),
                Some(session.console.clone()),
                Some(self.execution_timeout),
            )
            .await
            .map_err(|err| match err {
                RuntimeError::WorkerDied(reason) => session.gone(reason),
                other => other,
            })?;
        session.touch();
        let message = reply.message;
        if !message.ok {
            return Err(RuntimeError::InvalidInput(
                message.error.unwrap_or_default(),
            ));
        }
        let after = session.worker().workdir().fingerprints()?;
        let console_output = session
            .console
            .lock()
            .expect("console lock poisoned. This is a bug.")
            .clone();
        Ok(ExecuteOutcome {
            success: message.success.unwrap_or(false),
            error_message: message.error.unwrap_or_default(),
            console_output,
            outputs: message.outputs,
            changed_files: workdir::changed_files(&before, &after),
        })
    }

    /// The console output of the running or last execution.
    pub fn console_output(&self, id: &str, owner: &str) -> Result<String, RuntimeError> {
        let session = self.live(id, owner)?;
        let console = session
            .console
            .lock()
            .expect("console lock poisoned. This is a bug.");
        Ok(console.clone())
    }

    /// The code executed so far, in order.
    pub fn history(&self, id: &str, owner: &str) -> Result<Vec<String>, RuntimeError> {
        let session = self.live(id, owner)?;
        let history = session
            .history
            .lock()
            .expect("session lock poisoned. This is a bug.");
        Ok(history.clone())
    }

    /// Interrupts the running execution; the session stays usable.
    pub fn cancel(&self, id: &str, owner: &str) -> Result<(), RuntimeError> {
        self.live(id, owner)?.worker().interrupt();
        Ok(())
    }

    /// Closes the session: the running execution is interrupted and the worker discarded.
    /// A session whose worker died can still be closed.
    pub fn close(&self, id: &str, owner: &str) -> Result<(), RuntimeError> {
        let session = self.remove(id, owner)?;
        session.worker().interrupt();
        Ok(())
    }

    /// Kills the session's worker at once and forgets the session.
    pub fn force_close(&self, id: &str, owner: &str) -> Result<(), RuntimeError> {
        let session = self.remove(id, owner)?;
        session.worker().kill();
        Ok(())
    }

    fn remove(&self, id: &str, owner: &str) -> Result<Arc<Session>, RuntimeError> {
        let mut table = self.table();
        match table.get(id) {
            Some(session) if session.info.owner == owner => Ok(table.remove(id).expect("present")),
            _ => Err(RuntimeError::SessionNotFound(id.to_owned())),
        }
    }

    /// Files in the working directory.
    pub fn list_files(&self, id: &str, owner: &str) -> Result<Vec<String>, RuntimeError> {
        self.live(id, owner)?.worker().workdir().list()
    }

    /// Writes a file into the working directory, replacing one of the same name.
    pub async fn upload_file(
        &self,
        id: &str,
        owner: &str,
        name: &FileName,
        content: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let session = self.live(id, owner)?;
        let name = name.clone();
        with_workdir(session.worker(), move |workdir| {
            workdir.write(&name, &content)
        })
        .await
    }

    /// A working-directory file opened for reading, for streaming it.
    pub async fn open_file(
        &self,
        id: &str,
        owner: &str,
        name: &FileName,
    ) -> Result<std::fs::File, RuntimeError> {
        let session = self.live(id, owner)?;
        let name = name.clone();
        with_workdir(session.worker(), move |workdir| workdir.open(&name)).await
    }

    /// Deletes a working-directory file.
    pub async fn delete_file(
        &self,
        id: &str,
        owner: &str,
        name: &FileName,
    ) -> Result<(), RuntimeError> {
        let session = self.live(id, owner)?;
        let name = name.clone();
        with_workdir(session.worker(), move |workdir| workdir.delete(&name)).await
    }

    /// Names of the workspace's objects.
    pub async fn list_objects(&self, id: &str, owner: &str) -> Result<Vec<String>, RuntimeError> {
        let session = self.live(id, owner)?;
        Ok(session
            .call(Request::ListObjects, Vec::new())
            .await?
            .message
            .names)
    }

    /// One object in the runtime's serialization (dill for Python).
    pub async fn get_object(
        &self,
        id: &str,
        owner: &str,
        name: &ObjectName,
    ) -> Result<Vec<u8>, RuntimeError> {
        let session = self.live(id, owner)?;
        let request = Request::GetObject {
            name: name.to_string(),
        };
        Ok(session.call(request, Vec::new()).await?.blob)
    }

    /// Stores an object given in the runtime's serialization; unreadable bytes are refused and
    /// leave the session as it was.
    pub async fn put_object(
        &self,
        id: &str,
        owner: &str,
        name: &ObjectName,
        bytes: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let session = self.live(id, owner)?;
        session
            .call(
                Request::PutObject {
                    name: name.to_string(),
                },
                bytes,
            )
            .await?;
        Ok(())
    }

    /// Removes an object.
    pub async fn delete_object(
        &self,
        id: &str,
        owner: &str,
        name: &ObjectName,
    ) -> Result<(), RuntimeError> {
        let session = self.live(id, owner)?;
        session
            .call(
                Request::DeleteObject {
                    name: name.to_string(),
                },
                Vec::new(),
            )
            .await?;
        Ok(())
    }

    /// The session's workspace and working directory as a snapshot archive.
    pub async fn export_snapshot(
        &self,
        id: &str,
        owner: &str,
    ) -> Result<(RuntimeType, Vec<u8>), RuntimeError> {
        let session = self.live(id, owner)?;
        let workspace = session.call(Request::SaveWorkspace, Vec::new()).await?.blob;
        let runtime = session.info.runtime;
        let archive = with_workdir(session.worker(), move |workdir| {
            snapshot::pack(runtime, &workspace, workdir)
        })
        .await?;
        Ok((runtime, archive))
    }

    /// Merges a snapshot archive into the session: workspace objects are added or replaced,
    /// files overwritten.
    pub async fn import_snapshot(
        &self,
        id: &str,
        owner: &str,
        archive: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let session = self.live(id, owner)?;
        let unpacked = snapshot::unpack_off_thread(session.info.runtime, archive).await?;
        if !unpacked.workspace.is_empty() {
            session
                .call(Request::LoadWorkspace, unpacked.workspace)
                .await?;
        }
        let files = unpacked.files;
        with_workdir(session.worker(), move |workdir| {
            workdir.write_tree(std::path::Path::new(""), files)
        })
        .await
    }

    /// Forgets every session and returns their workers, for shutdown.
    pub(crate) fn close_all(&self) -> Vec<WorkerHandle> {
        let sessions: Vec<Arc<Session>> =
            self.table().drain().map(|(_, session)| session).collect();
        sessions
            .iter()
            .map(|session| {
                session.worker().interrupt();
                session.worker().clone()
            })
            .collect()
    }

    /// Closes sessions unused for longer than `idle_timeout`, checking now and then.
    pub(crate) fn start_idle_reaper(&self, idle_timeout: Duration) {
        let table = Arc::downgrade(&self.by_id);
        let period = (idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(table) = table.upgrade() else { return };
                let mut table = table
                    .lock()
                    .expect("session table lock poisoned. This is a bug.");
                table.retain(|id, session| {
                    let idle_for = session.last_used.lock().expect("session lock poisoned. This is a bug.").elapsed();
                    let busy = session.execution.try_lock().is_err();
                    let keep = busy || idle_for < idle_timeout;
                    if !keep {
                        tracing::info!(session = %id, owner = %session.info.owner, "closing idle session");
                    }
                    keep
                });
            }
        });
    }
}
