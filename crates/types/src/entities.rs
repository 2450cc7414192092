//! The entities the server keeps: a published service version, stored content, and the state
//! of a batch. The store maps its rows to and from them; the use cases and the REST API speak
//! them, so that no layer above the store sees a row.

use std::str::FromStr;

use crate::{
    DedicatedPoolSize, ParameterDefinition, ServiceName, ServiceRuntime, ServiceVersion, Username,
};

/// Content the database holds (a snapshot, a service's snapshot copy, a model), named by the
/// SHA-256 of its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Content {
    /// The SHA-256 of the bytes, lower-case hex.
    pub digest: String,
    /// The length in bytes.
    pub size: u64,
}

/// A published version of a web service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service's name.
    pub name: ServiceName,
    /// Its version.
    pub version: ServiceVersion,
    /// The user who published this version.
    pub owner: Username,
    /// What runs it: R or Python workers, or native scoring (realtime services).
    pub runtime: ServiceRuntime,
    /// Publication time, Unix microseconds; orders the versions of a name.
    pub created_at_micros: i64,
    /// Changes on every update.
    pub revision: String,
    /// Free text.
    pub description: Option<String>,
    /// The swagger operationId of the consume operation.
    pub operation_id: Option<String>,
    /// The code run on every request.
    pub code: String,
    /// The code run once when a worker loads the service.
    pub init_code: Option<String>,
    /// Declared inputs, in order.
    pub inputs: Vec<ParameterDefinition>,
    /// Declared outputs, in order.
    pub outputs: Vec<ParameterDefinition>,
    /// Files returned base64-encoded with every response.
    pub output_file_names: Vec<String>,
    /// The snapshot the publisher named (its content is copied into the service).
    pub snapshot_id: Option<String>,
    /// The service's content: the snapshot copy of an R or Python service, the model of a
    /// realtime service.
    pub content: Option<Content>,
    /// Its dedicated pool, when it has one; set apart from publication and updates, which keep
    /// it.
    pub pool: Option<DedicatedPoolSize>,
    /// The named environment it runs in; `None` for the runtime's default.
    pub environment: Option<String>,
    /// The lock it runs with: its environment's lock when it was published or last updated
    /// (a rebuild of the environment reaches it only through an update by its owner).
    pub environment_lock: Option<String>,
}

/// Where a batch execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchState {
    /// Stored, not started.
    Pending,
    /// Running.
    InProgress,
    /// Every record has a result.
    Complete,
    /// The batch itself could not go on (its service was deleted).
    Failed,
}

impl BatchState {
    /// The reference's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BatchState::Pending => "Pending",
            BatchState::InProgress => "InProgress",
            BatchState::Complete => "Complete",
            BatchState::Failed => "Failed",
        }
    }

    /// Whether the batch may still produce results.
    pub fn is_running(self) -> bool {
        matches!(self, BatchState::Pending | BatchState::InProgress)
    }
}

/// A text that names no batch state.
#[derive(Debug, thiserror::Error)]
#[error("unknown batch state `{0}`")]
pub struct ParseBatchStateError(String);

impl FromStr for BatchState {
    type Err = ParseBatchStateError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "Pending" => Ok(BatchState::Pending),
            "InProgress" => Ok(BatchState::InProgress),
            "Complete" => Ok(BatchState::Complete),
            "Failed" => Ok(BatchState::Failed),
            other => Err(ParseBatchStateError(other.chars().take(40).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_states_round_trip_in_the_reference_spelling() {
        for state in [
            BatchState::Pending,
            BatchState::InProgress,
            BatchState::Complete,
            BatchState::Failed,
        ] {
            assert_eq!(state.as_str().parse::<BatchState>().unwrap(), state);
        }
        assert!("Done".parse::<BatchState>().is_err());
        assert!(BatchState::InProgress.is_running() && !BatchState::Failed.is_running());
    }
}
