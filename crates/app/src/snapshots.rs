//! Snapshots: images of a session (workspace and working-directory files) kept in the store,
//! private to the user who took them.

use o16n_store::SnapshotRecord;
use o16n_types::RuntimeType;

use crate::{App, AppError, Principal, now_unix};

/// A snapshot as its owner sees it.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    /// The snapshot id (a GUID).
    pub id: String,
    /// The optional name.
    pub name: Option<String>,
    /// Who took it.
    pub owner: String,
    /// The runtime it can be loaded into.
    pub runtime: RuntimeType,
    /// When it was taken, Unix seconds.
    pub created_at: i64,
    /// Size of its zip, in bytes.
    pub content_size: i64,
}

impl From<SnapshotRecord> for SnapshotInfo {
    fn from(record: SnapshotRecord) -> Self {
        SnapshotInfo {
            id: record.id,
            name: record.name,
            owner: record.owner,
            runtime: record.runtime,
            created_at: record.created_at,
            content_size: record.content_size,
        }
    }
}

impl App {
    /// Saves a session's workspace and files as a new snapshot.
    #[tracing::instrument(skip_all, fields(user = %caller.username, session = session_id))]
    pub async fn create_snapshot(
        &self,
        caller: &Principal,
        session_id: &str,
        name: Option<String>,
    ) -> Result<String, AppError> {
        let owner = caller.username.as_str();
        let (runtime, archive) = self
            .compute()
            .sessions()
            .export_snapshot(session_id, owner)
            .await?;
        let record = SnapshotRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            owner: owner.to_owned(),
            runtime,
            created_at: now_unix(),
            content_size: archive.len() as i64,
        };
        self.store().insert_snapshot(&record, &archive).await?;
        tracing::info!(snapshot = %record.id, bytes = archive.len(), "snapshot created");
        Ok(record.id)
    }

    /// Merges one of the caller's snapshots into one of their sessions of the same runtime.
    pub async fn load_snapshot(
        &self,
        caller: &Principal,
        session_id: &str,
        snapshot_id: &str,
    ) -> Result<(), AppError> {
        let owner = caller.username.as_str();
        let session = self.compute().sessions().info(session_id, owner)?;
        let archive = self
            .own_snapshot_content(caller, snapshot_id, session.runtime)
            .await?;
        Ok(self
            .compute()
            .sessions()
            .import_snapshot(session_id, owner, archive)
            .await?)
    }

    /// The caller's snapshots, oldest first.
    pub async fn list_snapshots(&self, caller: &Principal) -> Result<Vec<SnapshotInfo>, AppError> {
        let records = self
            .store()
            .list_snapshots(caller.username.as_str())
            .await?;
        Ok(records.into_iter().map(SnapshotInfo::from).collect())
    }

    /// The zip of one of the caller's snapshots.
    pub async fn snapshot_content(
        &self,
        caller: &Principal,
        snapshot_id: &str,
    ) -> Result<Vec<u8>, AppError> {
        self.own_snapshot(caller, snapshot_id).await?;
        self.store()
            .snapshot_content(snapshot_id)
            .await?
            .ok_or_else(|| snapshot_not_found(snapshot_id))
    }

    /// Deletes one of the caller's snapshots.
    pub async fn delete_snapshot(
        &self,
        caller: &Principal,
        snapshot_id: &str,
    ) -> Result<(), AppError> {
        self.own_snapshot(caller, snapshot_id).await?;
        self.store().delete_snapshot(snapshot_id).await?;
        Ok(())
    }

    /// One of the caller's snapshots; another user's is "not found", as snapshots are private.
    async fn own_snapshot(
        &self,
        caller: &Principal,
        snapshot_id: &str,
    ) -> Result<SnapshotRecord, AppError> {
        self.store()
            .find_snapshot(snapshot_id)
            .await?
            .filter(|snapshot| snapshot.owner == caller.username.as_str())
            .ok_or_else(|| snapshot_not_found(snapshot_id))
    }

    /// The content of one of the caller's snapshots, checked to be of `runtime`.
    pub(crate) async fn own_snapshot_content(
        &self,
        caller: &Principal,
        snapshot_id: &str,
        runtime: RuntimeType,
    ) -> Result<Vec<u8>, AppError> {
        let snapshot = self.own_snapshot(caller, snapshot_id).await?;
        if snapshot.runtime != runtime {
            return Err(AppError::InvalidInput(format!(
                "snapshot `{snapshot_id}` was taken from an {} session and cannot be loaded into an {runtime} session",
                snapshot.runtime
            )));
        }
        self.store()
            .snapshot_content(snapshot_id)
            .await?
            .ok_or_else(|| snapshot_not_found(snapshot_id))
    }
}

fn snapshot_not_found(snapshot_id: &str) -> AppError {
    AppError::NotFound(format!("snapshot `{snapshot_id}` not found"))
}
