//! Remote sessions: a dedicated worker per session, with its working directory, history and
//! console output.
//!
//! A session owns the lease of its worker; closing the session drops the lease, which discards
//! the worker. One execution runs at a time per session; console output of the running
//! execution can be read while it runs. When a session's worker dies, the session turns into a
//! tombstone that answers every call with the reason (410 Gone) until it is closed. Every
//! operation names the session's owner; another user's session is "not found". A session
//! unused for longer than the idle timeout (by the node's clock) is closed: the first call
//! that finds it so closes it, and a background task closes the ones nobody calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use o16n_compute::{ByteStream, Download, ExecuteOutcome, ExecuteRequest, SessionInfo, SessionRef};
use o16n_types::{Clock, FileName, ObjectName, RuntimeType};
use tokio::io::AsyncWriteExt;

use crate::pool::Lease;
use crate::protocol::{FailureKind, Request, WorkerMessage};
use crate::workdir::WorkDir;
use crate::worker::{ConsoleSink, Reply, WorkerHandle};
use crate::{RuntimeError, snapshot};

/// Runs working-directory I/O of a session's worker on a blocking thread (files can be large).
async fn with_workdir<T: Send + 'static>(
    worker: &WorkerHandle,
    work: impl FnOnce(&WorkDir) -> Result<T, RuntimeError> + Send + 'static,
) -> Result<T, RuntimeError> {
    let worker = worker.clone();
    tokio::task::spawn_blocking(move || work(worker.workdir()))
        .await
        .map_err(|err| RuntimeError::Io(std::io::Error::other(err)))?
}

/// A worker's answer that is not `failed`, with its blob; `failed` becomes the matching error.
pub(crate) fn accepted(reply: Reply) -> Result<(WorkerMessage, Vec<u8>), RuntimeError> {
    match reply.message {
        WorkerMessage::Failed { kind, error } => Err(match kind {
            FailureKind::NotFound => RuntimeError::NotFound(error),
            FailureKind::LoadFailed => RuntimeError::ServiceLoad(error),
            FailureKind::BadRequest | FailureKind::NotLoaded => RuntimeError::InvalidInput(error),
        }),
        message => Ok((message, reply.blob)),
    }
}

fn parse_file_name(name: &str) -> Result<FileName, RuntimeError> {
    FileName::parse(name).map_err(|err| RuntimeError::InvalidInput(err.to_string()))
}

fn parse_object_name(name: &str) -> Result<ObjectName, RuntimeError> {
    ObjectName::parse(name).map_err(|err| RuntimeError::InvalidInput(err.to_string()))
}

struct Session {
    info: SessionInfo,
    lease: Lease,
    history: Mutex<Vec<String>>,
    console: ConsoleSink,
    /// When the session was last used, in Unix milliseconds by the node's clock.
    last_used_ms: AtomicI64,
    /// One execution at a time per session.
    execution: tokio::sync::Mutex<()>,
}

impl Session {
    fn worker(&self) -> &WorkerHandle {
        self.lease.worker()
    }

    fn touch(&self, clock: &Clock) {
        self.last_used_ms.store(clock.now_ms(), Ordering::Relaxed);
    }

    /// Whether the session has been unused for `idle_timeout`; a running execution is use.
    fn is_idle(&self, clock: &Clock, idle_timeout: Duration) -> bool {
        let idle_ms = clock.now_ms() - self.last_used_ms.load(Ordering::Relaxed);
        let busy = self.execution.try_lock().is_err();
        !busy && idle_ms >= idle_timeout.as_millis() as i64
    }

    fn gone(&self, reason: String) -> RuntimeError {
        RuntimeError::SessionGone {
            id: self.info.id.clone(),
            reason,
        }
    }

    /// Sends a request, turning a dead worker into "session gone" and protocol-level failures
    /// into client errors.
    async fn call(
        &self,
        request: Request,
        blob: Vec<u8>,
    ) -> Result<(WorkerMessage, Vec<u8>), RuntimeError> {
        let reply = self
            .worker()
            .call(request, blob, None, None)
            .await
            .map_err(|err| match err {
                RuntimeError::WorkerDied(reason) => self.gone(reason),
                other => other,
            })?;
        accepted(reply)
    }
}

type SessionTable = HashMap<String, Arc<Session>>;

/// Closes the sessions of `table` that have been idle for `idle_timeout`.
fn close_idle(table: &mut SessionTable, clock: &Clock, idle_timeout: Duration) {
    table.retain(|id, session| {
        let idle = session.is_idle(clock, idle_timeout);
        if idle {
            tracing::info!(session = %id, owner = %session.info.owner, "closing idle session");
        }
        !idle
    });
}

/// The sessions of one compute node.
pub(crate) struct Sessions {
    by_id: Arc<Mutex<SessionTable>>,
    execution_timeout: Duration,
    idle_timeout: Duration,
    clock: Clock,
}

impl Sessions {
    pub(crate) fn new(
        execution_timeout: Duration,
        idle_timeout: Duration,
        clock: Clock,
    ) -> Sessions {
        Sessions {
            by_id: Arc::new(Mutex::new(HashMap::new())),
            execution_timeout,
            idle_timeout,
            clock,
        }
    }

    /// The table, without the sessions that have become idle.
    fn table(&self) -> std::sync::MutexGuard<'_, SessionTable> {
        let mut table = self
            .by_id
            .lock()
            .expect("session table lock poisoned. This is a bug.");
        close_idle(&mut table, &self.clock, self.idle_timeout);
        table
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
            last_used_ms: AtomicI64::new(self.clock.now_ms()),
            execution: tokio::sync::Mutex::new(()),
        });
        self.table().insert(info.id.clone(), session);
        info
    }

    /// Every live session, of every owner, ordered by id.
    pub(crate) fn all(&self) -> Vec<SessionInfo> {
        let mut sessions: Vec<SessionInfo> = self
            .table()
            .values()
            .filter(|session| session.worker().exit_reason().is_none())
            .map(|session| session.info.clone())
            .collect();
        sessions.sort_by(|a, b| a.id.cmp(&b.id));
        sessions
    }

    /// How many sessions are open.
    pub(crate) fn count(&self) -> usize {
        self.table().len()
    }

    /// The live session named by `session`. Another user's session is reported as not found,
    /// so that session ids cannot be probed.
    fn live(&self, session: &SessionRef) -> Result<Arc<Session>, RuntimeError> {
        let found = self
            .table()
            .get(&session.id)
            .filter(|found| found.info.owner == session.owner)
            .cloned()
            .ok_or_else(|| RuntimeError::SessionNotFound(session.id.clone()))?;
        if let Some(reason) = found.worker().exit_reason() {
            return Err(found.gone(reason));
        }
        found.touch(&self.clock);
        Ok(found)
    }

    /// Runs code in the session.
    pub(crate) async fn execute(
        &self,
        session: &SessionRef,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, RuntimeError> {
        let session = self.live(session)?;
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
        session.touch(&self.clock);
        let (message, _) = accepted(reply)?;
        let WorkerMessage::Executed {
            success,
            error,
            outputs,
        } = message
        else {
            unreachable!("the worker actor checks the kind of every answer");
        };
        let after = session.worker().workdir().fingerprints()?;
        let console_output = session
            .console
            .lock()
            .expect("console lock poisoned. This is a bug.")
            .output();
        Ok(ExecuteOutcome {
            success,
            error_message: error,
            console_output,
            outputs,
            changed_files: crate::workdir::changed_files(&before, &after),
        })
    }

    /// The console output of the running or last execution.
    pub(crate) fn console_output(&self, session: &SessionRef) -> Result<String, RuntimeError> {
        let session = self.live(session)?;
        let console = session
            .console
            .lock()
            .expect("console lock poisoned. This is a bug.");
        Ok(console.output())
    }

    /// The code executed so far, in order.
    pub(crate) fn history(&self, session: &SessionRef) -> Result<Vec<String>, RuntimeError> {
        let session = self.live(session)?;
        let history = session
            .history
            .lock()
            .expect("session lock poisoned. This is a bug.");
        Ok(history.clone())
    }

    /// Interrupts the running execution; the session stays usable.
    pub(crate) fn cancel(&self, session: &SessionRef) -> Result<(), RuntimeError> {
        self.live(session)?.worker().interrupt();
        Ok(())
    }

    /// Closes the session: gracefully (the running execution is interrupted and the worker
    /// discarded), or by killing its worker at once. A session whose worker died can still be
    /// closed.
    pub(crate) fn close(&self, session: &SessionRef, force: bool) -> Result<(), RuntimeError> {
        let mut table = self.table();
        let removed = match table.get(&session.id) {
            Some(found) if found.info.owner == session.owner => {
                table.remove(&session.id).expect("present")
            }
            _ => return Err(RuntimeError::SessionNotFound(session.id.clone())),
        };
        drop(table);
        if force {
            removed.worker().kill();
        } else {
            removed.worker().interrupt();
        }
        Ok(())
    }

    /// Files in the working directory.
    pub(crate) fn list_files(&self, session: &SessionRef) -> Result<Vec<String>, RuntimeError> {
        self.live(session)?.worker().workdir().list()
    }

    /// Writes a file into the working directory as it arrives, replacing one of the same name
    /// once it is complete (readers never see half a file).
    pub(crate) async fn upload_file(
        &self,
        session: &SessionRef,
        name: &str,
        mut content: ByteStream,
    ) -> Result<(), RuntimeError> {
        let name = parse_file_name(name)?;
        let worker = self.live(session)?.worker().clone();
        let (temporary, file) = with_workdir(&worker, WorkDir::create_temporary).await?;
        let mut file = tokio::fs::File::from_std(file);
        let written = async {
            while let Some(chunk) = content.next().await {
                file.write_all(&chunk?).await?;
            }
            file.flush().await
        }
        .await;
        drop(file);
        let temporary_name = temporary.clone();
        with_workdir(&worker, move |workdir| match written {
            Ok(()) => workdir.commit(&temporary_name, &name),
            Err(err) => {
                workdir.discard(&temporary_name);
                Err(err.into())
            }
        })
        .await
    }

    /// A working-directory file, for streaming it out.
    pub(crate) async fn download_file(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<Download, RuntimeError> {
        let name = parse_file_name(name)?;
        let worker = self.live(session)?.worker().clone();
        let file = with_workdir(&worker, move |workdir| workdir.open(&name)).await?;
        Ok(file_download(file))
    }

    /// Deletes a working-directory file.
    pub(crate) async fn delete_file(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<(), RuntimeError> {
        let name = parse_file_name(name)?;
        let worker = self.live(session)?.worker().clone();
        with_workdir(&worker, move |workdir| workdir.delete(&name)).await
    }

    /// Names of the workspace's objects.
    pub(crate) async fn list_objects(
        &self,
        session: &SessionRef,
    ) -> Result<Vec<String>, RuntimeError> {
        let session = self.live(session)?;
        match session.call(Request::ListObjects, Vec::new()).await? {
            (WorkerMessage::ObjectNames { names }, _) => Ok(names),
            _ => unreachable!("the worker actor checks the kind of every answer"),
        }
    }

    /// One object in the runtime's serialization (dill for Python, an .RData stream for R).
    pub(crate) async fn get_object(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<Vec<u8>, RuntimeError> {
        let name = parse_object_name(name)?;
        let session = self.live(session)?;
        let request = Request::GetObject {
            name: name.to_string(),
        };
        Ok(session.call(request, Vec::new()).await?.1)
    }

    /// Stores an object given in the runtime's serialization; unreadable bytes are refused and
    /// leave the session as it was.
    pub(crate) async fn put_object(
        &self,
        session: &SessionRef,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let name = parse_object_name(name)?;
        let session = self.live(session)?;
        let request = Request::PutObject {
            name: name.to_string(),
        };
        session.call(request, bytes).await?;
        Ok(())
    }

    /// Removes an object.
    pub(crate) async fn delete_object(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<(), RuntimeError> {
        let name = parse_object_name(name)?;
        let session = self.live(session)?;
        let request = Request::DeleteObject {
            name: name.to_string(),
        };
        session.call(request, Vec::new()).await?;
        Ok(())
    }

    /// The session's workspace and working directory as a snapshot archive.
    pub(crate) async fn export_snapshot(
        &self,
        session: &SessionRef,
    ) -> Result<Download, RuntimeError> {
        let session = self.live(session)?;
        let (_, workspace) = session.call(Request::SaveWorkspace, Vec::new()).await?;
        let runtime = session.info.runtime;
        let archive = with_workdir(session.worker(), move |workdir| {
            snapshot::pack(runtime, &workspace, workdir)
        })
        .await?;
        Ok(file_download(archive))
    }

    /// Merges a snapshot archive into the session: workspace objects are added or replaced,
    /// files overwritten.
    pub(crate) async fn import_snapshot(
        &self,
        session: &SessionRef,
        archive: PathBuf,
    ) -> Result<(), RuntimeError> {
        let session = self.live(session)?;
        let runtime = session.info.runtime;
        let workspace = with_workdir(session.worker(), move |workdir| {
            snapshot::unpack_into(runtime, &archive, workdir, Path::new(""))
        })
        .await?;
        if !workspace.is_empty() {
            session.call(Request::LoadWorkspace, workspace).await?;
        }
        Ok(())
    }

    /// The runtime of a live session.
    pub(crate) fn runtime(&self, session: &SessionRef) -> Result<RuntimeType, RuntimeError> {
        Ok(self.live(session)?.info.runtime)
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

    /// Closes idle sessions that nobody calls, checking now and then, until `stop` is
    /// cancelled.
    pub(crate) fn start_idle_reaper(
        &self,
        tasks: &tokio_util::task::TaskTracker,
        stop: tokio_util::sync::CancellationToken,
    ) {
        let table = Arc::downgrade(&self.by_id);
        let (clock, idle_timeout) = (self.clock.clone(), self.idle_timeout);
        let period = (idle_timeout / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(period) => {}
                }
                let Some(table) = table.upgrade() else { return };
                let mut table = table
                    .lock()
                    .expect("session table lock poisoned. This is a bug.");
                close_idle(&mut table, &clock, idle_timeout);
            }
        });
    }
}

/// A file streamed out, with its length.
fn file_download(file: std::fs::File) -> Download {
    let size = file.metadata().ok().map(|metadata| metadata.len());
    let file = tokio::fs::File::from_std(file);
    Download {
        size,
        content: Box::pin(tokio_util::io::ReaderStream::new(file)),
    }
}
