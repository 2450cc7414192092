//! The compute interface's operations as data: every call whose arguments and answer are small
//! values is one variant of [`ComputeCall`], answered by one [`ComputeReply`].
//!
//! An implementation of [`crate::Compute`] answers them in one `match`, the cluster carries
//! them on one route, and a fake answers them in its own `match`; so adding an operation is a
//! variant here and an arm in each implementation, and nothing else is mirrored by hand.
//! Callers name the answer they expect by its type ([`crate::ComputeExt::ask`]).

use serde::{Deserialize, Serialize};

use crate::wire;
use crate::{
    ComputeError, ConsumeOutcome, ConsumeRequest, ContentRef, EnvironmentBuild,
    EnvironmentBuildReport, ExecuteOutcome, ExecuteRequest, NewSession, NodeStatus, ServiceSpec,
    SessionInfo, SessionRef,
};

/// One operation of the compute interface and its arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", content = "args", rename_all = "snake_case")]
pub enum ComputeCall {
    /// The node's pools, its isolation and how many sessions it holds ([`NodeStatus`]).
    Status,
    /// Opens a session on a warm worker of its own ([`SessionInfo`]).
    CreateSession(NewSession),
    /// Every session the node holds, of every owner (`Vec<SessionInfo>`).
    Sessions,
    /// Closes a session: gracefully (the running execution is interrupted), or at once.
    CloseSession { session: SessionRef, force: bool },
    /// Runs code in a session ([`ExecuteOutcome`]).
    Execute {
        session: SessionRef,
        request: ExecuteRequest,
    },
    /// Interrupts the running execution; the session stays usable.
    Cancel { session: SessionRef },
    /// The console output of the running or last execution (`String`).
    ConsoleOutput { session: SessionRef },
    /// The code executed so far, in order (`Vec<String>`).
    History { session: SessionRef },
    /// The files in the session's working directory (`Vec<String>`).
    ListFiles { session: SessionRef },
    /// Deletes a file of the working directory.
    DeleteFile { session: SessionRef, name: String },
    /// The names of the workspace's objects (`Vec<String>`).
    ListObjects { session: SessionRef },
    /// One object, in the runtime's serialization (`Vec<u8>`).
    GetObject { session: SessionRef, name: String },
    /// Stores an object given in the runtime's serialization.
    PutObject {
        session: SessionRef,
        name: String,
        #[serde(with = "wire::bytes")]
        content: Vec<u8>,
    },
    /// Removes an object.
    DeleteObject { session: SessionRef, name: String },
    /// Merges a snapshot archive the node holds by digest into the session.
    ImportSnapshot {
        session: SessionRef,
        content: ContentRef,
    },
    /// Runs one request of a web service ([`ConsumeOutcome`]).
    Consume(ConsumeRequest),
    /// Brings the node's dedicated pools in line with these services (each with its `pool`):
    /// pools missing are created, pools of an older revision reload, pools of other services
    /// go. Idempotent: web nodes send the whole desired state on every health check, so that
    /// a node that joins or restarts converges without anyone retrying.
    SetDedicatedPools(Vec<ServiceSpec>),
    /// Builds an environment: resolves its spec into a lock (the first build) or reproduces a
    /// lock, keeping the build for the workers that will run in it. A build that fails is a
    /// report with its log, not an error ([`EnvironmentBuildReport`]).
    BuildEnvironment(EnvironmentBuild),
}

impl ComputeCall {
    /// The operation's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            ComputeCall::Status => "status",
            ComputeCall::CreateSession(_) => "create_session",
            ComputeCall::Sessions => "sessions",
            ComputeCall::CloseSession { .. } => "close_session",
            ComputeCall::Execute { .. } => "execute",
            ComputeCall::Cancel { .. } => "cancel",
            ComputeCall::ConsoleOutput { .. } => "console_output",
            ComputeCall::History { .. } => "history",
            ComputeCall::ListFiles { .. } => "list_files",
            ComputeCall::DeleteFile { .. } => "delete_file",
            ComputeCall::ListObjects { .. } => "list_objects",
            ComputeCall::GetObject { .. } => "get_object",
            ComputeCall::PutObject { .. } => "put_object",
            ComputeCall::DeleteObject { .. } => "delete_object",
            ComputeCall::ImportSnapshot { .. } => "import_snapshot",
            ComputeCall::Consume(_) => "consume",
            ComputeCall::SetDedicatedPools(_) => "set_dedicated_pools",
            ComputeCall::BuildEnvironment(_) => "build_environment",
        }
    }
}

/// The answer to a [`ComputeCall`], by the shape of its value: a new operation that answers a
/// shape already here needs no new variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", content = "value", rename_all = "snake_case")]
pub enum ComputeReply {
    /// Done; nothing to answer.
    Done,
    /// A node's status.
    Status(NodeStatus),
    /// One session.
    Session(SessionInfo),
    /// Several sessions.
    Sessions(Vec<SessionInfo>),
    /// The outcome of an execution.
    Executed(ExecuteOutcome),
    /// A text (a console output).
    Text(String),
    /// A list of names or texts (files, objects, history).
    Names(Vec<String>),
    /// Bytes (an object).
    Bytes(#[serde(with = "wire::bytes")] Vec<u8>),
    /// The outcome of a service request.
    Consumed(ConsumeOutcome),
    /// The report of an environment build.
    Built(EnvironmentBuildReport),
}

impl ComputeReply {
    /// The shape of the value, as the wire names it.
    pub fn shape(&self) -> &'static str {
        match self {
            ComputeReply::Done => "done",
            ComputeReply::Status(_) => "status",
            ComputeReply::Session(_) => "session",
            ComputeReply::Sessions(_) => "sessions",
            ComputeReply::Executed(_) => "executed",
            ComputeReply::Text(_) => "text",
            ComputeReply::Names(_) => "names",
            ComputeReply::Bytes(_) => "bytes",
            ComputeReply::Consumed(_) => "consumed",
            ComputeReply::Built(_) => "built",
        }
    }
}

/// A value a [`ComputeReply`] can carry, so that a caller asks for the type it expects.
pub trait FromReply: Sized {
    /// The value, if the reply carries this type; else the shape the reply has.
    fn from_reply(reply: ComputeReply) -> Result<Self, &'static str>;
}

/// Implements the conversions between a reply variant and the type it carries.
macro_rules! reply_values {
    ($($variant:ident($value:ty)),* $(,)?) => {$(
        impl FromReply for $value {
            fn from_reply(reply: ComputeReply) -> Result<Self, &'static str> {
                match reply {
                    ComputeReply::$variant(value) => Ok(value),
                    other => Err(other.shape()),
                }
            }
        }

        impl From<$value> for ComputeReply {
            fn from(value: $value) -> Self {
                ComputeReply::$variant(value)
            }
        }
    )*};
}

reply_values! {
    Status(NodeStatus),
    Session(SessionInfo),
    Sessions(Vec<SessionInfo>),
    Executed(ExecuteOutcome),
    Text(String),
    Names(Vec<String>),
    Bytes(Vec<u8>),
    Consumed(ConsumeOutcome),
    Built(EnvironmentBuildReport),
}

impl FromReply for () {
    fn from_reply(reply: ComputeReply) -> Result<Self, &'static str> {
        match reply {
            ComputeReply::Done => Ok(()),
            other => Err(other.shape()),
        }
    }
}

impl From<()> for ComputeReply {
    fn from((): ()) -> Self {
        ComputeReply::Done
    }
}

/// The error of a node that answered a call with the wrong kind of value: a bug, or web and
/// compute nodes of different versions.
pub(crate) fn unexpected_reply(call: &'static str, shape: &'static str) -> ComputeError {
    ComputeError::Internal(format!(
        "the compute node answered `{call}` with `{shape}`; are the web and compute nodes of \
         the same version?"
    ))
}

#[cfg(test)]
mod tests {
    use o16n_types::RuntimeType;

    use super::*;

    #[test]
    fn calls_and_replies_round_trip_through_json() {
        let session = SessionRef {
            id: "s1".to_owned(),
            owner: "alice".to_owned(),
        };
        let calls = [
            ComputeCall::Status,
            ComputeCall::CloseSession {
                session: session.clone(),
                force: true,
            },
            ComputeCall::PutObject {
                session: session.clone(),
                name: "model".to_owned(),
                content: vec![0, 1, 255],
            },
            ComputeCall::CreateSession(NewSession {
                owner: "alice".to_owned(),
                name: None,
                runtime: RuntimeType::R,
                environment: None,
            }),
        ];
        for call in calls {
            let text = serde_json::to_string(&call).unwrap();
            assert_eq!(serde_json::from_str::<ComputeCall>(&text).unwrap(), call);
        }
        let text = serde_json::to_value(ComputeCall::Cancel { session }).unwrap();
        assert_eq!(text["op"], "cancel");
        assert_eq!(text["args"]["session"]["owner"], "alice");

        let replies = [
            ComputeReply::Done,
            ComputeReply::Bytes(vec![9, 8]),
            ComputeReply::Names(vec!["a".to_owned()]),
        ];
        for reply in replies {
            let text = serde_json::to_string(&reply).unwrap();
            assert_eq!(serde_json::from_str::<ComputeReply>(&text).unwrap(), reply);
        }
    }

    #[test]
    fn a_reply_gives_only_the_type_it_carries() {
        assert_eq!(
            Vec::<String>::from_reply(ComputeReply::Names(vec!["x".to_owned()])),
            Ok(vec!["x".to_owned()])
        );
        assert_eq!(String::from_reply(ComputeReply::Done), Err("done"));
        assert_eq!(<()>::from_reply(ComputeReply::Done), Ok(()));
        for reply in [ComputeReply::Done, ComputeReply::Bytes(vec![1])] {
            let tag = serde_json::to_value(&reply).unwrap()["reply"].clone();
            assert_eq!(tag, reply.shape(), "the shape is the wire's name");
        }
        let error = unexpected_reply("history", "done");
        assert!(
            error.to_string().contains("`history` with `done`"),
            "{error}"
        );
    }
}
