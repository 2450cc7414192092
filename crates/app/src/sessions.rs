//! Remote sessions: every operation is the caller's own; another user's session id is "not
//! found". A session lives on a compute node, which the database records, so that every web
//! node serves every call on it and lists the same sessions.

use std::collections::{HashMap, HashSet};

use o16n_compute::{
    ByteStream, ComputeCall, Download, ExecuteOutcome, ExecuteRequest, NewSession, SessionInfo,
    SessionRef,
};
use o16n_store::SessionRecord;
use o16n_types::RuntimeType;

use crate::snapshots::{same_environment, snapshot_content};
use crate::{App, AppError, Principal};

/// What a compute node holds, as far as listing sessions is concerned.
enum Holding {
    /// The node is not registered (any more): its sessions are lost.
    NotRegistered,
    /// The node does not answer: its sessions are lost unless it comes back.
    NotAnswering,
    /// The ids of the sessions the node holds.
    Sessions(HashSet<String>),
}

/// An open session, as its owner lists it.
#[derive(Debug, Clone)]
pub struct OpenSession {
    /// What the reference's list shows.
    pub info: SessionInfo,
    /// When it was created, Unix seconds.
    pub created_at: i64,
    /// The named environment its worker runs in; `None` for the runtime's default.
    pub environment: Option<String>,
}

impl App {
    /// Opens a session on the least loaded node, in the named environment (the snapshot's when
    /// a snapshot is named without one, else the runtime's default), loading a snapshot of the
    /// caller's into it when one is named.
    #[tracing::instrument(skip_all, fields(user = %caller.username, runtime = %runtime))]
    pub async fn create_session(
        &self,
        caller: &Principal,
        name: Option<String>,
        runtime: RuntimeType,
        snapshot_id: Option<&str>,
        environment: Option<&str>,
    ) -> Result<SessionInfo, AppError> {
        // Check the snapshot before taking a worker, so that a bad id costs nothing.
        let snapshot = match snapshot_id {
            Some(snapshot_id) => Some(self.own_snapshot_of(caller, snapshot_id, runtime).await?),
            None => None,
        };
        let environment = match (&snapshot, environment) {
            (Some(snapshot), None) => snapshot.environment.clone(),
            (_, asked) => asked.map(str::to_owned),
        };
        let environment = self
            .environment_for_use(environment.as_deref(), runtime)
            .await?;
        let environment_name = environment
            .as_ref()
            .map(|environment| environment.name.clone());
        if let Some(snapshot) = &snapshot {
            same_environment(snapshot, environment_name.as_deref(), "session")?;
        }
        let owner = caller.username.as_str();
        let node = self.nodes().for_session(runtime)?;
        let session = node
            .compute
            .ask::<SessionInfo>(ComputeCall::CreateSession(NewSession {
                owner: owner.to_owned(),
                name: name.clone(),
                runtime,
                environment,
            }))
            .await?;
        let reference = SessionRef {
            id: session.id.clone(),
            owner: owner.to_owned(),
        };
        let prepared = async {
            let record = SessionRecord {
                id: session.id.clone(),
                owner: owner.to_owned(),
                name,
                runtime,
                node: node.endpoint.to_string(),
                created_at: self.now_unix(),
                environment: environment_name,
            };
            self.record_within_session_limit(caller, &record).await?;
            if let Some(snapshot) = &snapshot {
                let content = snapshot_content(snapshot);
                self.with_content(&node, Some(&content), || {
                    node.compute.ask::<()>(ComputeCall::ImportSnapshot {
                        session: reference.clone(),
                        content: content.clone(),
                    })
                })
                .await?;
            }
            Ok::<(), AppError>(())
        }
        .await;
        if let Err(err) = prepared {
            // A session that could not be prepared as asked is not handed out half-made.
            let _ = node
                .compute
                .ask::<()>(ComputeCall::CloseSession {
                    session: reference.clone(),
                    force: true,
                })
                .await;
            let _ = self.store().delete_session(&session.id).await;
            return Err(err);
        }
        tracing::info!(session = %session.id, node = %node.endpoint, "session created");
        Ok(session)
    }

    /// Records a new session unless its owner has `runtime.max_sessions_per_user` open
    /// already (counted by the database as it records, so that no web node lets a user past
    /// it; a refused session's worker is closed by the caller).
    async fn record_within_session_limit(
        &self,
        caller: &Principal,
        record: &SessionRecord,
    ) -> Result<(), AppError> {
        let limit = match self.inner.config.max_sessions_per_user {
            0 => None,
            limit => Some(limit as u64),
        };
        if self.store().insert_session(record, limit).await? {
            return Ok(());
        }
        // Records can outlive their sessions (closed as idle, or lost with a node) until the
        // sessions are listed; listing forgets those, so only open ones count against the user.
        self.list_sessions(caller).await?;
        if self.store().insert_session(record, limit).await? {
            return Ok(());
        }
        Err(AppError::TooManyRequests {
            message: format!(
                "you have {} sessions open, the most one user may have \
                 (runtime.max_sessions_per_user); close one first",
                self.inner.config.max_sessions_per_user
            ),
            retry_after_seconds: None,
        })
    }

    /// The caller's sessions, from every node. A session is listed when its node answers and
    /// holds it; one that its node no longer holds (closed as idle, or lost when the node
    /// restarted or was removed) is forgotten; one whose node does not answer is not listed
    /// but remembered, in case the node was only cut off for a moment.
    pub async fn list_sessions(&self, caller: &Principal) -> Result<Vec<OpenSession>, AppError> {
        let records = self.store().list_sessions(caller.username.as_str()).await?;
        let mut nodes: HashMap<String, Holding> = HashMap::new();
        let mut sessions = Vec::new();
        for record in records {
            if !nodes.contains_key(&record.node) {
                let holding = self.holding(&record.node).await;
                nodes.insert(record.node.clone(), holding);
            }
            match &nodes[&record.node] {
                Holding::Sessions(held) if held.contains(&record.id) => {
                    sessions.push(OpenSession {
                        info: SessionInfo {
                            id: record.id,
                            name: record.name,
                            owner: record.owner,
                            runtime: record.runtime,
                        },
                        created_at: record.created_at,
                        environment: record.environment,
                    });
                }
                Holding::NotAnswering => {}
                Holding::Sessions(_) | Holding::NotRegistered => {
                    self.forget_session(&record).await;
                }
            }
        }
        Ok(sessions)
    }

    /// What the node known by `endpoint` holds.
    async fn holding(&self, endpoint: &str) -> Holding {
        let Some(view) = self.nodes().get(endpoint) else {
            return Holding::NotRegistered;
        };
        if !view.healthy {
            return Holding::NotAnswering;
        }
        match view
            .node
            .compute
            .ask::<Vec<SessionInfo>>(ComputeCall::Sessions)
            .await
        {
            Ok(sessions) => {
                Holding::Sessions(sessions.into_iter().map(|session| session.id).collect())
            }
            Err(err) => {
                tracing::warn!(error = %err, node = %endpoint, "cannot list the sessions of a node");
                Holding::NotAnswering
            }
        }
    }

    /// Runs code in one of the caller's sessions.
    pub async fn execute(
        &self,
        caller: &Principal,
        session_id: &str,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute
                .ask(ComputeCall::Execute { session, request })
                .await
        })
        .await
    }

    /// Closes a session, gracefully or by killing its worker. A session that is lost or
    /// that its node no longer holds is simply forgotten.
    pub async fn close_session(
        &self,
        caller: &Principal,
        session_id: &str,
        force: bool,
    ) -> Result<(), AppError> {
        let record = self.own_session_record(caller, session_id).await?;
        let closed = self
            .on_session(caller, session_id, |node, session| async move {
                node.compute
                    .ask(ComputeCall::CloseSession { session, force })
                    .await
            })
            .await;
        match closed {
            Ok(()) | Err(AppError::Gone(_) | AppError::NotFound(_)) => {
                self.forget_session(&record).await;
                Ok(())
            }
            Err(err) => Err(err),
        }
    }

    /// Interrupts a session's running execution.
    pub async fn cancel_execution(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<(), AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute.ask(ComputeCall::Cancel { session }).await
        })
        .await
    }

    /// The console output of the running or last execution.
    pub async fn console_output(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<String, AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute
                .ask(ComputeCall::ConsoleOutput { session })
                .await
        })
        .await
    }

    /// The code executed in a session, in order.
    pub async fn history(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<Vec<String>, AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute.ask(ComputeCall::History { session }).await
        })
        .await
    }

    /// Files in a session's working directory.
    pub async fn list_files(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<Vec<String>, AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute.ask(ComputeCall::ListFiles { session }).await
        })
        .await
    }

    /// Writes a file into a session's working directory as it arrives.
    pub async fn upload_file(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
        content: ByteStream,
    ) -> Result<(), AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute.upload_file(&session, name, content).await
        })
        .await
    }

    /// A session's file, for streaming it out.
    pub async fn session_file(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<Download, AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute.download_file(&session, name).await
        })
        .await
    }

    /// Deletes a session's file.
    pub async fn delete_file(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<(), AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute
                .ask(ComputeCall::DeleteFile {
                    session,
                    name: name.to_owned(),
                })
                .await
        })
        .await
    }

    /// Names of a session's workspace objects.
    pub async fn list_objects(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<Vec<String>, AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute.ask(ComputeCall::ListObjects { session }).await
        })
        .await
    }

    /// A workspace object in the runtime's serialization.
    pub async fn get_object(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<Vec<u8>, AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute
                .ask(ComputeCall::GetObject {
                    session,
                    name: name.to_owned(),
                })
                .await
        })
        .await
    }

    /// Stores a workspace object given in the runtime's serialization.
    pub async fn put_object(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute
                .ask(ComputeCall::PutObject {
                    session,
                    name: name.to_owned(),
                    content: bytes,
                })
                .await
        })
        .await
    }

    /// Removes a workspace object.
    pub async fn delete_object(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<(), AppError> {
        self.on_session(caller, session_id, |node, session| async move {
            node.compute
                .ask(ComputeCall::DeleteObject {
                    session,
                    name: name.to_owned(),
                })
                .await
        })
        .await
    }

    /// Forgets the sessions recorded for this process's own node: it just started, so whatever
    /// a previous run of it held is gone (a one-box server restarting).
    pub async fn forget_sessions_of_restarted_node(&self, endpoint: &str) -> Result<(), AppError> {
        let forgotten = self.store().delete_sessions_on_node(endpoint).await?;
        if forgotten > 0 {
            tracing::info!(forgotten, "sessions of the previous run were forgotten");
        }
        Ok(())
    }
}
