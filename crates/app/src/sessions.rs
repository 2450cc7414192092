//! Remote sessions: every operation is the caller's own; another user's session id is "not
//! found". The session machinery itself lives on the compute node.

use o16n_types::{FileName, ObjectName, RuntimeType};

use crate::{App, AppError, ExecuteOutcome, ExecuteRequest, Principal, SessionInfo};

impl App {
    /// Opens a session, loading a snapshot of the caller's into it when one is named.
    #[tracing::instrument(skip_all, fields(user = %caller.username, runtime = %runtime))]
    pub async fn create_session(
        &self,
        caller: &Principal,
        name: Option<String>,
        runtime: RuntimeType,
        snapshot_id: Option<&str>,
    ) -> Result<SessionInfo, AppError> {
        // Check the snapshot before taking a worker, so that a bad id costs nothing.
        let archive = match snapshot_id {
            Some(snapshot_id) => Some(
                self.own_snapshot_content(caller, snapshot_id, runtime)
                    .await?,
            ),
            None => None,
        };
        let owner = caller.username.as_str();
        let session = self.compute().create_session(owner, name, runtime).await?;
        if let Some(archive) = archive
            && let Err(err) = self
                .compute()
                .sessions()
                .import_snapshot(&session.id, owner, archive)
                .await
        {
            // A session that could not be prepared as asked is not handed out half-made.
            let _ = self.compute().sessions().force_close(&session.id, owner);
            return Err(err.into());
        }
        tracing::info!(session = %session.id, "session created");
        Ok(session)
    }

    /// The caller's sessions.
    pub fn list_sessions(&self, caller: &Principal) -> Vec<SessionInfo> {
        self.compute().list_sessions(caller.username.as_str())
    }

    /// Runs code in one of the caller's sessions.
    pub async fn execute(
        &self,
        caller: &Principal,
        session_id: &str,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, AppError> {
        Ok(self
            .compute()
            .sessions()
            .execute(session_id, caller.username.as_str(), request)
            .await?)
    }

    /// Closes a session gracefully.
    pub fn close_session(&self, caller: &Principal, session_id: &str) -> Result<(), AppError> {
        Ok(self
            .compute()
            .sessions()
            .close(session_id, caller.username.as_str())?)
    }

    /// Kills a session's worker.
    pub fn force_close_session(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<(), AppError> {
        Ok(self
            .compute()
            .sessions()
            .force_close(session_id, caller.username.as_str())?)
    }

    /// Interrupts a session's running execution.
    pub fn cancel_execution(&self, caller: &Principal, session_id: &str) -> Result<(), AppError> {
        Ok(self
            .compute()
            .sessions()
            .cancel(session_id, caller.username.as_str())?)
    }

    /// The console output of the running or last execution.
    pub fn console_output(&self, caller: &Principal, session_id: &str) -> Result<String, AppError> {
        Ok(self
            .compute()
            .sessions()
            .console_output(session_id, caller.username.as_str())?)
    }

    /// The code executed in a session, in order.
    pub fn history(&self, caller: &Principal, session_id: &str) -> Result<Vec<String>, AppError> {
        Ok(self
            .compute()
            .sessions()
            .history(session_id, caller.username.as_str())?)
    }

    /// Files in a session's working directory.
    pub fn list_files(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<Vec<String>, AppError> {
        Ok(self
            .compute()
            .sessions()
            .list_files(session_id, caller.username.as_str())?)
    }

    /// Writes a file into a session's working directory.
    pub async fn upload_file(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
        content: Vec<u8>,
    ) -> Result<(), AppError> {
        let name = parse_file_name(name)?;
        Ok(self
            .compute()
            .sessions()
            .upload_file(session_id, caller.username.as_str(), &name, content)
            .await?)
    }

    /// A session's file, opened for streaming it out.
    pub async fn session_file(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<std::fs::File, AppError> {
        let name = parse_file_name(name)?;
        Ok(self
            .compute()
            .sessions()
            .open_file(session_id, caller.username.as_str(), &name)
            .await?)
    }

    /// Deletes a session's file.
    pub async fn delete_file(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<(), AppError> {
        let name = parse_file_name(name)?;
        Ok(self
            .compute()
            .sessions()
            .delete_file(session_id, caller.username.as_str(), &name)
            .await?)
    }

    /// Names of a session's workspace objects.
    pub async fn list_objects(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<Vec<String>, AppError> {
        Ok(self
            .compute()
            .sessions()
            .list_objects(session_id, caller.username.as_str())
            .await?)
    }

    /// A workspace object in the runtime's serialization.
    pub async fn get_object(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<Vec<u8>, AppError> {
        let name = parse_object_name(name)?;
        Ok(self
            .compute()
            .sessions()
            .get_object(session_id, caller.username.as_str(), &name)
            .await?)
    }

    /// Stores a workspace object given in the runtime's serialization.
    pub async fn put_object(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
        bytes: Vec<u8>,
    ) -> Result<(), AppError> {
        let name = parse_object_name(name)?;
        Ok(self
            .compute()
            .sessions()
            .put_object(session_id, caller.username.as_str(), &name, bytes)
            .await?)
    }

    /// Removes a workspace object.
    pub async fn delete_object(
        &self,
        caller: &Principal,
        session_id: &str,
        name: &str,
    ) -> Result<(), AppError> {
        let name = parse_object_name(name)?;
        Ok(self
            .compute()
            .sessions()
            .delete_object(session_id, caller.username.as_str(), &name)
            .await?)
    }
}

fn parse_file_name(name: &str) -> Result<FileName, AppError> {
    FileName::parse(name).map_err(|err| AppError::InvalidInput(err.to_string()))
}

fn parse_object_name(name: &str) -> Result<ObjectName, AppError> {
    ObjectName::parse(name).map_err(|err| AppError::InvalidInput(err.to_string()))
}
