//! Request and response bodies, named and spelled as the definitions of the reference swagger
//! (`mlserver-swagger-9.3.0.json`). These are the serialization boundary: domain types are
//! converted to and from them here and nowhere else.

use std::collections::BTreeMap;

use o16n_app::{
    ExecuteOutcome, Health, NamedValue, NodeReport, PoolHealth, PoolStatus, SessionInfo,
    SnapshotInfo, SystemStatus, TokenPair, UNISOLATED,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `LoginRequest`.
#[derive(Deserialize)]
pub(crate) struct LoginRequest {
    pub(crate) username: String,
    pub(crate) password: String,
}

/// `RenewTokenRequest`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RenewTokenRequest {
    pub(crate) refresh_token: String,
}

/// The query of `DELETE /login/refreshToken`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RevokeRefreshTokenQuery {
    pub(crate) refresh_token: String,
}

/// `AccessTokenResponse`, with `expires_in` (present in every reference example though absent
/// from the schema) and `expires_on` as a number of Unix seconds, as the examples show.
#[derive(Serialize)]
pub(crate) struct AccessTokenResponse {
    token_type: &'static str,
    access_token: String,
    expires_in: u64,
    expires_on: i64,
    refresh_token: String,
}

impl From<TokenPair> for AccessTokenResponse {
    fn from(pair: TokenPair) -> Self {
        AccessTokenResponse {
            token_type: "Bearer",
            access_token: pair.access_token,
            expires_in: pair.expires_in,
            expires_on: pair.expires_on,
            refresh_token: pair.refresh_token,
        }
    }
}

/// `StatusResponse`: recursive, with free-form details.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusResponse {
    status_code: &'static str,
    details: BTreeMap<&'static str, Value>,
    components: BTreeMap<String, StatusResponse>,
}

fn health_name(health: Health) -> &'static str {
    match health {
        Health::Pass => "pass",
        Health::Warn => "warn",
        Health::Fail => "fail",
    }
}

impl StatusResponse {
    fn leaf(status_code: &'static str, details: BTreeMap<&'static str, Value>) -> StatusResponse {
        StatusResponse {
            status_code,
            details,
            components: BTreeMap::new(),
        }
    }
}

/// One pool of a node, with its occupancy.
fn pool_component(pool: &PoolStatus, isolated: bool) -> StatusResponse {
    let (status_code, state, message) = match &pool.health {
        PoolHealth::Ready if !isolated => ("warn", "Ready", Some(UNISOLATED.to_owned())),
        PoolHealth::Ready => ("pass", "Ready", None),
        PoolHealth::Preparing(what) => ("warn", "Preparing", Some(what.clone())),
        PoolHealth::Unavailable(why) => ("fail", "Unavailable", Some(why.clone())),
    };
    let mut details = BTreeMap::from([
        ("state", json!(state)),
        ("initialSize", json!(pool.initial_size)),
        ("maxSize", json!(pool.max_size)),
        ("currentSize", json!(pool.size)),
        ("busy", json!(pool.busy)),
        ("idle", json!(pool.idle)),
        ("starting", json!(pool.starting)),
        ("waiting", json!(pool.waiting)),
    ]);
    if let Some(service) = &pool.service {
        details.insert("service", json!(service));
        details.insert("runtime", json!(pool.runtime.as_str()));
        details.insert("revision", json!(pool.revision));
    }
    if let Some(environment) = &pool.environment {
        details.insert("environment", json!(environment));
        details.insert("runtime", json!(pool.runtime.as_str()));
    }
    if let Some(message) = message {
        details.insert("message", json!(message));
    }
    StatusResponse::leaf(status_code, details)
}

fn runtime_key(runtime: o16n_types::RuntimeType) -> &'static str {
    match runtime {
        o16n_types::RuntimeType::Python => "python",
        o16n_types::RuntimeType::R => "r",
    }
}

/// A compute node: its pools as components, and the reference's figures (`rMaxPoolSize`,
/// `rCurrentPoolSize`, `rActiveShellCount`, `rCanOpenShell` and their Python equivalents).
fn node_component(node: &NodeReport) -> StatusResponse {
    let status_code = health_name(node.health);
    let Some(status) = &node.status else {
        let mut details = BTreeMap::from([("state", json!("Unavailable"))]);
        if let Some(problem) = &node.problem {
            details.insert("message", json!(problem));
        }
        return StatusResponse::leaf(status_code, details);
    };
    let isolated = status.isolation.is_some();
    let mut details = BTreeMap::from([
        ("apiVersion", json!("1.0")),
        ("sessions", json!(status.sessions)),
        ("sandboxed", json!(isolated)),
        (
            "isolation",
            json!(status.isolation.as_deref().unwrap_or(UNISOLATED)),
        ),
    ]);
    let mut components = BTreeMap::new();
    let mut dedicated = BTreeMap::new();
    let mut environments = BTreeMap::new();
    for pool in &status.pools {
        if let Some(service) = &pool.service {
            dedicated.insert(service.clone(), pool_component(pool, isolated));
            continue;
        }
        if let Some(environment) = &pool.environment {
            environments.insert(environment.clone(), pool_component(pool, isolated));
            continue;
        }
        let (max, current, active, can_open) = match pool.runtime {
            o16n_types::RuntimeType::Python => (
                "pythonMaxPoolSize",
                "pythonCurrentPoolSize",
                "pythonActiveShellCount",
                "pythonCanOpenShell",
            ),
            o16n_types::RuntimeType::R => (
                "rMaxPoolSize",
                "rCurrentPoolSize",
                "rActiveShellCount",
                "rCanOpenShell",
            ),
        };
        details.insert(max, json!(pool.max_size));
        details.insert(current, json!(pool.size));
        details.insert(active, json!(pool.busy));
        details.insert(
            can_open,
            json!(pool.health == PoolHealth::Ready && pool.busy < pool.max_size),
        );
        components.insert(
            runtime_key(pool.runtime).to_owned(),
            pool_component(pool, isolated),
        );
    }
    for (key, pools) in [
        ("environmentPools", environments),
        ("dedicatedPools", dedicated),
    ] {
        if pools.is_empty() {
            continue;
        }
        // A dedicated pool that cannot warm (its initCode fails) or an environment that cannot
        // be built here is the service's or environment's problem, not the node's: it shows
        // here without changing the node's health.
        components.insert(
            key.to_owned(),
            StatusResponse {
                status_code: "pass",
                details: BTreeMap::from([("count", json!(pools.len()))]),
                components: pools,
            },
        );
    }
    StatusResponse {
        status_code,
        details,
        components,
    }
}

impl From<SystemStatus> for StatusResponse {
    fn from(status: SystemStatus) -> Self {
        let database = &status.database;
        let mut database_details = BTreeMap::from([
            ("type", json!(database.backend)),
            ("name", json!("main")),
            (
                "state",
                json!(if database.health == Health::Pass {
                    "Open"
                } else {
                    "Unavailable"
                }),
            ),
        ]);
        if let Some(problem) = &database.problem {
            database_details.insert("error", json!(problem));
        }
        let auth = &status.authentication;
        let mut authentication_details = BTreeMap::from([
            ("method", json!(auth.method)),
            ("local", json!(auth.local)),
            ("ldap", json!(auth.ldap)),
            ("azureActiveDirectory", json!(auth.azure_active_directory)),
        ]);
        if let Some(problem) = &auth.problem {
            authentication_details.insert("error", json!(problem));
        }
        let authentication = StatusResponse::leaf(health_name(auth.health), authentication_details);
        let mut components = BTreeMap::from([
            (
                "database".to_owned(),
                StatusResponse::leaf(health_name(database.health), database_details),
            ),
            ("authentication".to_owned(), authentication),
        ]);
        if status.remote_nodes {
            // A web node: one child per registered compute node, under its endpoint.
            let mut details = BTreeMap::from([("computeNodes", json!(status.nodes.len()))]);
            if status.nodes.is_empty() {
                details.insert(
                    "message",
                    json!("no compute node is registered: add some with /computenodes or cluster.compute_nodes"),
                );
            }
            components.insert(
                "backends".to_owned(),
                StatusResponse {
                    status_code: health_name(status.compute_health),
                    details,
                    components: status
                        .nodes
                        .iter()
                        .map(|node| (node.endpoint.clone(), node_component(node)))
                        .collect(),
                },
            );
        } else if let Some(node) = status.nodes.first() {
            // The one-box server: its own node's pools are the runtimes.
            let mut runtimes = node_component(node);
            runtimes.status_code = health_name(status.compute_health);
            runtimes
                .details
                .retain(|key, _| matches!(*key, "sandboxed" | "isolation"));
            components.insert("runtimes".to_owned(), runtimes);
        }
        StatusResponse {
            status_code: health_name(status.health),
            details: BTreeMap::from([
                ("version", json!(status.version)),
                ("apiVersion", json!("9.3.0")),
            ]),
            components,
        }
    }
}

/// `CreateOrUpdateServicePoolRequest`: both sizes optional, spelled as the swagger spells them
/// (PascalCase) or as ASP.NET clients often send them (camelCase).
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateOrUpdateServicePoolRequest {
    #[serde(rename = "InitialPoolSize", alias = "initialPoolSize")]
    pub(crate) initial_pool_size: Option<i64>,
    #[serde(rename = "MaxPoolSize", alias = "maxPoolSize")]
    pub(crate) max_pool_size: Option<i64>,
}

/// `ServicePoolStatusResponse`, spelled as the swagger spells it.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ServicePoolStatusResponse {
    compute_node_endpoint: String,
    status: &'static str,
}

impl From<o16n_app::NodePoolState> for ServicePoolStatusResponse {
    fn from(state: o16n_app::NodePoolState) -> Self {
        ServicePoolStatusResponse {
            compute_node_endpoint: state.endpoint,
            status: state.state.as_str(),
        }
    }
}

/// `CreateSessionRequest`; every field is optional and `runtimeType` defaults to R.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateSessionRequest {
    pub(crate) name: Option<String>,
    pub(crate) snapshot_id: Option<String>,
    pub(crate) runtime_type: Option<String>,
    /// o16n: the named environment to run in.
    pub(crate) environment: Option<String>,
}

/// `CreateSessionResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateSessionResponse {
    pub(crate) session_id: String,
}

/// `Session`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Session {
    id: String,
    name: Option<String>,
    owner: String,
    runtime_type: &'static str,
}

impl From<SessionInfo> for Session {
    fn from(info: SessionInfo) -> Self {
        Session {
            id: info.id,
            name: info.name,
            owner: info.owner,
            runtime_type: info.runtime.as_str(),
        }
    }
}

/// `WorkspaceObject`: a named JSON value.
#[derive(Serialize, Deserialize)]
pub(crate) struct WorkspaceObject {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) value: Value,
}

/// `ExecuteRequest`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteRequest {
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) input_parameters: Option<Vec<WorkspaceObject>>,
    #[serde(default)]
    pub(crate) output_parameters: Option<Vec<String>>,
}

impl ExecuteRequest {
    /// Converts to the domain request; parameter names must be valid object names.
    pub(crate) fn into_domain(self) -> Result<o16n_app::ExecuteRequest, String> {
        let check = |name: &str| {
            o16n_types::ObjectName::parse(name)
                .map(|_| ())
                .map_err(|err| err.to_string())
        };
        let inputs = self
            .input_parameters
            .unwrap_or_default()
            .into_iter()
            .map(|object| {
                check(&object.name)?;
                Ok(NamedValue {
                    name: object.name,
                    value: object.value,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let outputs = self.output_parameters.unwrap_or_default();
        for name in &outputs {
            check(name)?;
        }
        Ok(o16n_app::ExecuteRequest {
            code: self.code,
            inputs,
            outputs,
        })
    }
}

/// `ExecuteResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ExecuteResponse {
    success: bool,
    error_message: String,
    output_parameters: Vec<WorkspaceObject>,
    console_output: String,
    changed_files: Vec<String>,
}

impl From<ExecuteOutcome> for ExecuteResponse {
    fn from(outcome: ExecuteOutcome) -> Self {
        ExecuteResponse {
            success: outcome.success,
            error_message: outcome.error_message,
            output_parameters: outcome
                .outputs
                .into_iter()
                .map(|value| WorkspaceObject {
                    name: value.name,
                    value: value.value,
                })
                .collect(),
            console_output: outcome.console_output,
            changed_files: outcome.changed_files,
        }
    }
}

/// `ConsoleOutputResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConsoleOutputResponse {
    pub(crate) console_output: String,
}

/// `CreateSnapshotRequest`.
#[derive(Deserialize, Default)]
pub(crate) struct CreateSnapshotRequest {
    pub(crate) name: Option<String>,
}

/// `CreateSnapshotResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateSnapshotResponse {
    pub(crate) snapshot_id: String,
}

/// `Snapshot`. `creationTime` is an ISO 8601 UTC timestamp.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Snapshot {
    id: String,
    name: Option<String>,
    owner: String,
    creation_time: String,
    content_size: i64,
    runtime_type: &'static str,
    /// o16n: the named environment of the session it was taken from; absent for the default.
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
}

impl From<SnapshotInfo> for Snapshot {
    fn from(info: SnapshotInfo) -> Self {
        Snapshot {
            id: info.id,
            name: info.name,
            owner: info.owner,
            creation_time: iso8601(info.created_at),
            content_size: info.content_size,
            runtime_type: info.runtime.as_str(),
            environment: info.environment,
        }
    }
}

/// Unix seconds as an ISO 8601 UTC timestamp.
pub(crate) fn iso8601(unix_seconds: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix_seconds)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `ParameterDefinition`.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct ParameterDefinitionDto {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: String,
}

/// `PublishWebServiceRequest`, also the body of PATCH, where every field is optional.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PublishWebServiceRequest {
    pub(crate) snapshot_id: Option<String>,
    pub(crate) code: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) operation_id: Option<String>,
    pub(crate) input_parameter_definitions: Option<Vec<ParameterDefinitionDto>>,
    pub(crate) output_parameter_definitions: Option<Vec<ParameterDefinitionDto>>,
    pub(crate) runtime_type: Option<String>,
    pub(crate) init_code: Option<String>,
    pub(crate) output_file_names: Option<Vec<String>>,
    /// o16n: the named environment the service runs in.
    pub(crate) environment: Option<String>,
}

fn parameters(
    definitions: Option<Vec<ParameterDefinitionDto>>,
) -> Result<Option<Vec<o16n_types::ParameterDefinition>>, String> {
    definitions
        .map(|definitions| {
            definitions
                .into_iter()
                .map(|definition| {
                    Ok(o16n_types::ParameterDefinition {
                        kind: definition
                            .kind
                            .parse()
                            .map_err(|err| format!("parameter `{}`: {err}", definition.name))?,
                        name: definition.name,
                    })
                })
                .collect()
        })
        .transpose()
}

fn runtime(runtime_type: Option<String>) -> Result<Option<o16n_types::RuntimeType>, String> {
    runtime_type
        .map(|text| {
            text.parse()
                .map_err(|err: o16n_types::ParseRuntimeTypeError| err.to_string())
        })
        .transpose()
}

impl PublishWebServiceRequest {
    /// The definition of a new service; `code` is required.
    pub(crate) fn into_definition(self) -> Result<o16n_app::ServiceDefinition, String> {
        Ok(o16n_app::ServiceDefinition {
            code: self.code.ok_or("`code` is required")?,
            inputs: parameters(self.input_parameter_definitions)?.unwrap_or_default(),
            outputs: parameters(self.output_parameter_definitions)?.unwrap_or_default(),
            runtime: runtime(self.runtime_type)?.unwrap_or_default(),
            snapshot_id: self.snapshot_id,
            description: self.description,
            operation_id: self.operation_id,
            init_code: self.init_code,
            output_file_names: self.output_file_names.unwrap_or_default(),
            environment: self.environment,
        })
    }

    /// A partial update; absent (or null) fields stay unchanged.
    pub(crate) fn into_patch(self) -> Result<o16n_app::ServicePatch, String> {
        Ok(o16n_app::ServicePatch {
            inputs: parameters(self.input_parameter_definitions)?,
            outputs: parameters(self.output_parameter_definitions)?,
            runtime: runtime(self.runtime_type)?,
            snapshot_id: self.snapshot_id,
            code: self.code,
            description: self.description,
            operation_id: self.operation_id,
            init_code: self.init_code,
            output_file_names: self.output_file_names,
            environment: self.environment,
        })
    }
}

/// `WebService`. `description` is always present (null when unset), the definition lists are
/// never null, and `code`/`initCode` are null for callers who may not see them.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebService {
    name: String,
    version: String,
    version_published_by: String,
    creation_time: String,
    snapshot_id: Option<String>,
    runtime_type: &'static str,
    init_code: Option<String>,
    code: Option<String>,
    description: Option<String>,
    operation_id: Option<String>,
    input_parameter_definitions: Vec<ParameterDefinitionDto>,
    output_parameter_definitions: Vec<ParameterDefinitionDto>,
    output_file_names: Vec<String>,
    my_permission_on_service: &'static str,
    /// o16n: the named environment it runs in; absent for the runtime's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<String>,
}

fn parameter_dtos(parameters: &[o16n_types::ParameterDefinition]) -> Vec<ParameterDefinitionDto> {
    parameters
        .iter()
        .map(|parameter| ParameterDefinitionDto {
            name: parameter.name.clone(),
            kind: parameter.kind.as_str().to_owned(),
        })
        .collect()
}

impl From<o16n_app::ServiceView> for WebService {
    fn from(view: o16n_app::ServiceView) -> Self {
        let record = view.record;
        WebService {
            name: record.name.to_string(),
            version: record.version.to_string(),
            version_published_by: record.owner.to_string(),
            creation_time: iso8601_micros(record.created_at_micros),
            snapshot_id: record.snapshot_id,
            runtime_type: record.runtime.as_str(),
            init_code: if view.code_visible {
                record.init_code
            } else {
                None
            },
            code: view.code_visible.then_some(record.code),
            description: record.description,
            operation_id: record.operation_id,
            input_parameter_definitions: parameter_dtos(&record.inputs),
            output_parameter_definitions: parameter_dtos(&record.outputs),
            output_file_names: record.output_file_names,
            my_permission_on_service: if view.can_write {
                "read/write"
            } else {
                "read only"
            },
            environment: record.environment,
        }
    }
}

/// `WebServiceResult` of the per-service swagger.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebServiceResult {
    success: bool,
    error_message: String,
    console_output: String,
    changed_files: Vec<String>,
    output_parameters: serde_json::Map<String, Value>,
    output_files: serde_json::Map<String, Value>,
}

impl From<o16n_app::ConsumeOutcome> for WebServiceResult {
    fn from(outcome: o16n_app::ConsumeOutcome) -> Self {
        let output_files = o16n_app::encoded_output_files(outcome.output_files);
        WebServiceResult {
            success: outcome.success,
            error_message: outcome.error_message,
            console_output: outcome.console_output,
            changed_files: outcome.changed_files,
            output_parameters: outcome.outputs,
            output_files,
        }
    }
}

/// `GetComputeNodesResponse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GetComputeNodesResponse {
    pub(crate) compute_nodes: Vec<String>,
}

/// `UpdateComputeNodesRequest`.
#[derive(Deserialize)]
pub(crate) struct UpdateComputeNodesRequest {
    pub(crate) entries: Vec<String>,
}

/// Unix microseconds as an ISO 8601 UTC timestamp with microseconds.
pub(crate) fn iso8601_micros(unix_micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_micros) * 1000)
        .ok()
        .and_then(|at| {
            at.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}
