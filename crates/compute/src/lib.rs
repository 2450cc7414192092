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

mod call;
pub mod entries;
mod error;
mod nodes;
#[cfg(feature = "testing")]
pub mod testing;
mod types;
mod wire;

use async_trait::async_trait;

pub use call::{ComputeCall, ComputeReply, FromReply};
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
///
/// Operations on small values are data ([`ComputeCall`] answered by [`ComputeReply`]); the
/// four that move files and archives stream their bytes and are methods of their own.
#[async_trait]
pub trait Compute: Send + Sync + 'static {
    /// Answers one operation.
    async fn call(&self, call: ComputeCall) -> Result<ComputeReply, ComputeError>;

    /// Writes a file into a session's working directory, replacing one of the same name.
    async fn upload_file(
        &self,
        session: &SessionRef,
        name: &str,
        content: ByteStream,
    ) -> Result<(), ComputeError>;

    /// Reads a file of a session's working directory.
    async fn download_file(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<Download, ComputeError>;

    /// The session's workspace and working directory as a snapshot archive (a zip).
    async fn export_snapshot(&self, session: &SessionRef) -> Result<Download, ComputeError>;

    /// Gives the node the bytes of a content it asked for; the digest is checked.
    async fn put_content(
        &self,
        content: &ContentRef,
        bytes: ByteStream,
    ) -> Result<(), ComputeError>;
}

impl dyn Compute {
    /// Sends `call` and expects an answer of type `T`: a node that answers another shape gets
    /// [`ComputeError::Internal`].
    pub async fn ask<T: FromReply>(&self, call: ComputeCall) -> Result<T, ComputeError> {
        let name = call.name();
        let reply = self.call(call).await?;
        T::from_reply(reply).map_err(|shape| call::unexpected_reply(name, shape))
    }
}
