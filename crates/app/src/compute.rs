//! How the use cases reach compute nodes: the node that holds a session (recorded in the
//! database, so that every web node finds it), and content sent by digest when a node lacks it.

use std::future::Future;

use futures_util::TryStreamExt;
use o16n_compute::{ByteStream, ComputeError, ContentRef, Node, NodeView, SessionRef};
use o16n_store::SessionRecord;
use o16n_types::Content;

use crate::{App, AppError, Principal};

impl App {
    /// One of the caller's sessions, with the node that holds it. Another user's session is
    /// "not found"; a session whose node is no longer registered is lost, and forgotten; one
    /// whose node does not answer is lost (it is remembered, in case the node was only cut
    /// off for a moment).
    pub(crate) async fn session_on_node(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<(SessionRecord, NodeView, SessionRef), AppError> {
        let record = self.own_session_record(caller, session_id).await?;
        let Some(view) = self.nodes().get(&record.node) else {
            self.forget_session(&record).await;
            return Err(session_lost(&record, "which is no longer registered"));
        };
        if !view.healthy {
            return Err(session_lost(&record, "which does not answer"));
        }
        let session = SessionRef {
            id: record.id.clone(),
            owner: record.owner.clone(),
        };
        Ok((record, view, session))
    }

    /// The record of one of the caller's sessions; another user's is "not found", so that
    /// ids cannot be probed.
    pub(crate) async fn own_session_record(
        &self,
        caller: &Principal,
        session_id: &str,
    ) -> Result<SessionRecord, AppError> {
        Ok(self
            .store()
            .find_session(session_id)
            .await?
            .filter(|record| record.owner == caller.username.as_str())
            .ok_or_else(|| ComputeError::SessionNotFound(session_id.to_owned()))?)
    }

    /// Runs an operation on one of the caller's sessions. When the node answers that it does
    /// not hold the session, the session is forgotten: it was lost if the node restarted since
    /// the session opened, else closed for being idle.
    pub(crate) async fn on_session<T, F>(
        &self,
        caller: &Principal,
        session_id: &str,
        operation: impl FnOnce(Node, SessionRef) -> F,
    ) -> Result<T, AppError>
    where
        F: Future<Output = Result<T, ComputeError>>,
    {
        let (record, view, session) = self.session_on_node(caller, session_id).await?;
        let outcome = operation(view.node.clone(), session).await;
        self.session_outcome(&record, &view, outcome.map_err(AppError::from))
            .await
    }

    /// The outcome of a call on a session, with what a failure says about the session: a node
    /// that does not hold it forgets it; a node that cannot be reached lost it.
    pub(crate) async fn session_outcome<T>(
        &self,
        record: &SessionRecord,
        view: &NodeView,
        outcome: Result<T, AppError>,
    ) -> Result<T, AppError> {
        match outcome {
            Err(AppError::Compute(ComputeError::SessionNotFound(_))) => {
                self.forget_session(record).await;
                Err(session_not_held(record, view))
            }
            Err(AppError::Compute(ComputeError::NodeUnreachable(_))) => {
                Err(session_lost(record, "which does not answer"))
            }
            other => other,
        }
    }

    /// Deletes a session's record; a failure is logged (the next call tries again).
    pub(crate) async fn forget_session(&self, record: &SessionRecord) {
        if let Err(err) = self.store().delete_session(&record.id).await {
            tracing::warn!(error = %err, session = %record.id, "cannot forget a closed session");
        }
    }

    /// Runs `operation` on `node`, which may need `content`: when the node lacks it, it is
    /// sent from the database once and the operation runs again.
    pub(crate) async fn with_content<T, F>(
        &self,
        node: &Node,
        content: Option<&ContentRef>,
        mut operation: impl FnMut() -> F,
    ) -> Result<T, AppError>
    where
        F: Future<Output = Result<T, ComputeError>>,
    {
        match (operation().await, content) {
            (Err(ComputeError::ContentMissing(_)), Some(content)) => {
                self.send_content(node, content).await?;
                Ok(operation().await?)
            }
            (outcome, _) => Ok(outcome?),
        }
    }

    /// Sends `content` from the database to a node that lacks it.
    pub(crate) async fn send_content(
        &self,
        node: &Node,
        content: &ContentRef,
    ) -> Result<(), AppError> {
        let bytes: ByteStream = Box::pin(
            self.store()
                .read_content(&content.digest)
                .map_err(std::io::Error::other),
        );
        Ok(node.compute.put_content(content, bytes).await?)
    }
}

/// Why a session that its node does not hold is gone: the node restarted since the session
/// opened, or the session was closed for being idle.
fn session_not_held(record: &SessionRecord, view: &NodeView) -> AppError {
    if view
        .started_at
        .is_some_and(|started_at| started_at >= record.created_at)
    {
        session_lost(record, "which restarted")
    } else {
        AppError::NotFound(format!(
            "session `{}` is closed: it was unused for longer than the idle timeout",
            record.id
        ))
    }
}

/// A session lost with its compute node (410, as the reference answers for a session that
/// is gone).
fn session_lost(record: &SessionRecord, why: &str) -> AppError {
    AppError::Gone(format!(
        "session `{}` was lost with its compute node {}, {why}; start a new session",
        record.id, record.node
    ))
}

/// The compute interface's name for stored content.
pub(crate) fn content_ref(record: &Content) -> ContentRef {
    ContentRef {
        digest: record.digest.clone(),
        size: record.size,
    }
}
