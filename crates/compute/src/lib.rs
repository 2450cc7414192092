//! The compute interface: everything a web node asks of a compute node, as one typed, async
//! trait, [`Compute`], and the plain data that crosses it.
//!
//! Two implementations stand behind it and the application layer cannot tell which it holds:
//! the compute node in the same process (`o16n-runtime`, the one-box server) and a remote one
//! reached over the cluster's internal API (`o16n-cluster`). So nothing here is a closure, a
//! borrowed internal or a local path: values, ids, names and byte streams only, and every type
//! is serializable both ways, so that either side can be replaced by a fake in tests.
//!
//! Large payloads (files, snapshots) are [`ByteStream`]s, never whole buffers. Content the
//! database holds (snapshots, the snapshot copy of a service) travels by digest: a compute
//! node keeps what it has by digest and answers [`ComputeError::ContentMissing`] when it lacks
//! it; the caller then sends the bytes once with [`Compute::put_content`] and asks again.
//!
//! Every session operation names the session's owner: the compute node checks it too, so that
//! a session id alone never grants anything.

pub mod entries;
mod error;
mod nodes;
mod types;
mod wire;

use async_trait::async_trait;

pub use error::ComputeError;
pub use nodes::{NoNodes, Node, NodeView, Nodes, SingleNode};
pub use types::{
    ByteStream, ConsumeOutcome, ConsumeRequest, ContentRef, DedicatedPoolSpec, Download,
    EnvironmentBuild, EnvironmentBuildReport, EnvironmentRef, EnvironmentSpec, ExecuteOutcome,
    ExecuteRequest, NamedValue, NewSession, NodeStatus, OutputFile, PoolHealth, PoolStatus,
    Priority, ResolvedPackage, ServiceSpec, SessionInfo, SessionRef, StageTimings, TypedName,
    TypedValue, lock_packages,
};

/// One compute node, local or remote.
#[async_trait]
pub trait Compute: Send + Sync + 'static {
    /// The node's pools, its isolation and how many sessions it holds.
    async fn status(&self) -> Result<NodeStatus, ComputeError>;

    /// Opens a session on a warm worker of its own.
    async fn create_session(&self, request: NewSession) -> Result<SessionInfo, ComputeError>;

    /// Every session the node holds, of every owner.
    async fn sessions(&self) -> Result<Vec<SessionInfo>, ComputeError>;

    /// Closes a session: gracefully (the running execution is interrupted), or at once.
    async fn close_session(&self, session: &SessionRef, force: bool) -> Result<(), ComputeError>;

    /// Runs code in a session.
    async fn execute(
        &self,
        session: &SessionRef,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, ComputeError>;

    /// Interrupts the running execution; the session stays usable.
    async fn cancel(&self, session: &SessionRef) -> Result<(), ComputeError>;

    /// The console output of the running or last execution.
    async fn console_output(&self, session: &SessionRef) -> Result<String, ComputeError>;

    /// The code executed so far, in order.
    async fn history(&self, session: &SessionRef) -> Result<Vec<String>, ComputeError>;

    /// The files in the session's working directory.
    async fn list_files(&self, session: &SessionRef) -> Result<Vec<String>, ComputeError>;

    /// Writes a file into the working directory, replacing one of the same name.
    async fn upload_file(
        &self,
        session: &SessionRef,
        name: &str,
        content: ByteStream,
    ) -> Result<(), ComputeError>;

    /// Reads a file of the working directory.
    async fn download_file(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<Download, ComputeError>;

    /// Deletes a file of the working directory.
    async fn delete_file(&self, session: &SessionRef, name: &str) -> Result<(), ComputeError>;

    /// The names of the workspace's objects.
    async fn list_objects(&self, session: &SessionRef) -> Result<Vec<String>, ComputeError>;

    /// One object, in the runtime's serialization.
    async fn get_object(&self, session: &SessionRef, name: &str) -> Result<Vec<u8>, ComputeError>;

    /// Stores an object given in the runtime's serialization.
    async fn put_object(
        &self,
        session: &SessionRef,
        name: &str,
        content: Vec<u8>,
    ) -> Result<(), ComputeError>;

    /// Removes an object.
    async fn delete_object(&self, session: &SessionRef, name: &str) -> Result<(), ComputeError>;

    /// The session's workspace and working directory as a snapshot archive (a zip).
    async fn export_snapshot(&self, session: &SessionRef) -> Result<Download, ComputeError>;

    /// Merges a snapshot archive the node holds by digest into the session.
    async fn import_snapshot(
        &self,
        session: &SessionRef,
        content: &ContentRef,
    ) -> Result<(), ComputeError>;

    /// Gives the node the bytes of a content it asked for; the digest is checked.
    async fn put_content(
        &self,
        content: &ContentRef,
        bytes: ByteStream,
    ) -> Result<(), ComputeError>;

    /// Runs one request of a web service.
    async fn consume(&self, request: ConsumeRequest) -> Result<ConsumeOutcome, ComputeError>;

    /// Brings the node's dedicated pools in line with `services` (each with its `pool`): pools
    /// missing are created, pools of an older revision reload, pools of other services go.
    /// Idempotent: web nodes send the whole desired state on every health check, so that a
    /// node that joins or restarts converges without anyone retrying.
    async fn set_dedicated_pools(&self, services: Vec<ServiceSpec>) -> Result<(), ComputeError>;

    /// Builds an environment: resolves its spec into a lock (the first build) or reproduces a
    /// lock, keeping the build for the workers that will run in it. A build that fails is a
    /// report with its log, not an error.
    async fn build_environment(
        &self,
        build: EnvironmentBuild,
    ) -> Result<EnvironmentBuildReport, ComputeError>;
}
