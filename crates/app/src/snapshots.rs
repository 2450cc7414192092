//! Snapshots: images of a session (workspace and working-directory files) kept in the store as
//! content by digest, private to the user who took them.

use futures_util::TryStreamExt;
use o16n_compute::{ByteStream, ComputeCall, ContentRef};
use o16n_store::SnapshotRecord;
use o16n_types::RuntimeType;

use crate::{App, AppError, Principal};

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
    /// The named environment of its session; `None` for the runtime's default.
    pub environment: Option<String>,
}

impl From<SnapshotRecord> for SnapshotInfo {
    fn from(record: SnapshotRecord) -> Self {
        SnapshotInfo {
            id: record.id,
            name: record.name,
            owner: record.owner,
            environment: record.environment,
            runtime: record.runtime,
            created_at: record.created_at,
            content_size: record.content_size,
        }
    }
}

/// A snapshot's archive, as compute nodes know content.
pub(crate) fn snapshot_content(snapshot: &SnapshotRecord) -> ContentRef {
    ContentRef {
        digest: snapshot.content_digest.clone(),
        size: snapshot.content_size.max(0) as u64,
    }
}

impl App {
    /// Saves a session's workspace and files as a new snapshot; the archive streams from the
    /// compute node into the store.
    #[tracing::instrument(skip_all, fields(user = %caller.username, session = session_id))]
    pub async fn create_snapshot(
        &self,
        caller: &Principal,
        session_id: &str,
        name: Option<String>,
    ) -> Result<String, AppError> {
        let (session_record, view, session) = self.session_on_node(caller, session_id).await?;
        let exported = view.node.compute.export_snapshot(&session).await;
        let archive = self
            .session_outcome(&session_record, &view, exported.map_err(AppError::from))
            .await?;
        let content = self.store().put_content(archive.content).await?;
        let record = SnapshotRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name,
            owner: caller.username.to_string(),
            runtime: session_record.runtime,
            created_at: self.now_unix(),
            content_size: content.size as i64,
            content_digest: content.digest,
            environment: session_record.environment.clone(),
        };
        self.store().insert_snapshot(&record).await?;
        tracing::info!(snapshot = %record.id, bytes = record.content_size, "snapshot created");
        Ok(record.id)
    }

    /// Merges one of the caller's snapshots into one of their sessions of the same runtime.
    pub async fn load_snapshot(
        &self,
        caller: &Principal,
        session_id: &str,
        snapshot_id: &str,
    ) -> Result<(), AppError> {
        let (record, view, session) = self.session_on_node(caller, session_id).await?;
        let snapshot = self
            .own_snapshot_of(caller, snapshot_id, record.runtime)
            .await?;
        same_environment(&snapshot, record.environment.as_deref(), "session")?;
        let content = snapshot_content(&snapshot);
        let node = &view.node;
        let imported = self
            .with_content(node, Some(&content), || {
                node.compute.ask::<()>(ComputeCall::ImportSnapshot {
                    session: session.clone(),
                    content: content.clone(),
                })
            })
            .await;
        self.session_outcome(&record, &view, imported).await
    }

    /// The caller's snapshots, oldest first.
    pub async fn list_snapshots(&self, caller: &Principal) -> Result<Vec<SnapshotInfo>, AppError> {
        let records = self
            .store()
            .list_snapshots(caller.username.as_str())
            .await?;
        Ok(records.into_iter().map(SnapshotInfo::from).collect())
    }

    /// The zip of one of the caller's snapshots, streamed from the store, with its size.
    pub async fn snapshot_content(
        &self,
        caller: &Principal,
        snapshot_id: &str,
    ) -> Result<(u64, ByteStream), AppError> {
        let snapshot = self.own_snapshot(caller, snapshot_id).await?;
        let bytes: ByteStream = Box::pin(
            self.store()
                .read_content(&snapshot.content_digest)
                .map_err(std::io::Error::other),
        );
        Ok((snapshot.content_size.max(0) as u64, bytes))
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

    /// One of the caller's snapshots, checked to be of `runtime`.
    pub(crate) async fn own_snapshot_of(
        &self,
        caller: &Principal,
        snapshot_id: &str,
        runtime: RuntimeType,
    ) -> Result<SnapshotRecord, AppError> {
        let snapshot = self.own_snapshot(caller, snapshot_id).await?;
        if snapshot.runtime != runtime {
            return Err(AppError::InvalidInput(format!(
                "snapshot `{snapshot_id}` was taken from a {} session and cannot be loaded into a {runtime} session",
                snapshot.runtime
            )));
        }
        Ok(snapshot)
    }
}

fn snapshot_not_found(snapshot_id: &str) -> AppError {
    AppError::NotFound(format!("snapshot `{snapshot_id}` not found"))
}

/// Refuses to load a snapshot into a session or service of another environment than the one
/// it was taken in: its objects may need that environment's packages.
pub(crate) fn same_environment(
    snapshot: &SnapshotRecord,
    environment: Option<&str>,
    into: &str,
) -> Result<(), AppError> {
    if snapshot.environment.as_deref() == environment {
        return Ok(());
    }
    let name = |environment: Option<&str>| match environment {
        Some(name) => format!("environment `{name}`"),
        None => "the runtime's default environment".to_owned(),
    };
    Err(AppError::Conflict(format!(
        "snapshot `{}` was taken in {} and cannot be loaded into a {into} of {}",
        snapshot.id,
        name(snapshot.environment.as_deref()),
        name(environment)
    )))
}
