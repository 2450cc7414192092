//! Web services: publishing, managing and consuming versioned services, with the reference's
//! rules of who may do what.
//!
//! * Publishing needs the Contributor role or more. A name whose versions belong to someone
//!   else can only be published to by an Owner.
//! * Updating and deleting a version is for its publisher or an Owner.
//! * Anyone authenticated may list, read and consume; the code is shown only to the publisher
//!   or an Owner.
//!
//! Consumption validates inputs against the declared types, then hands the request to the
//! compute node with the service's current revision. Definitions are cached per node for
//! [`SERVICE_CACHE_TTL`]; this node's own changes apply at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use o16n_compute::{
    ComputeCall, ComputeError, ConsumeOutcome, ConsumeRequest, DedicatedPoolSpec, EnvironmentRef,
    Priority, ServiceSpec, TypedName, TypedValue,
};
use o16n_store::StoreError;
use o16n_types::{Content, Service};
use o16n_types::{
    ParameterDefinition, ParameterType, Role, RuntimeType, ServiceName, ServiceRuntime,
    ServiceVersion,
};
use serde_json::{Map, Value};

use crate::compute::content_ref;
use crate::metrics::{ServiceOutcome, ServiceStages};
use crate::{App, AppError, Principal};

/// How long a node trusts its cached definition of a service that another node may have
/// changed.
pub const SERVICE_CACHE_TTL: Duration = Duration::from_secs(1);

/// What a publisher sends (the reference's `PublishWebServiceRequest`).
#[derive(Debug, Clone, Default)]
pub struct ServiceDefinition {
    /// A snapshot of the publisher's whose content the service keeps a copy of.
    pub snapshot_id: Option<String>,
    /// Code run on every request.
    pub code: String,
    /// Free text.
    pub description: Option<String>,
    /// The consume operation's swagger operationId.
    pub operation_id: Option<String>,
    /// Declared inputs.
    pub inputs: Vec<ParameterDefinition>,
    /// Declared outputs.
    pub outputs: Vec<ParameterDefinition>,
    /// The runtime (R when omitted, as the reference).
    pub runtime: RuntimeType,
    /// Code run once per worker when the service is loaded.
    pub init_code: Option<String>,
    /// Files returned with every response.
    pub output_file_names: Vec<String>,
    /// The named environment it runs in; `None` for the runtime's default.
    pub environment: Option<String>,
}

/// A partial update: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ServicePatch {
    /// Replaces the snapshot copy.
    pub snapshot_id: Option<String>,
    /// Replaces the code.
    pub code: Option<String>,
    /// Replaces the description.
    pub description: Option<String>,
    /// Replaces the operationId.
    pub operation_id: Option<String>,
    /// Replaces the inputs.
    pub inputs: Option<Vec<ParameterDefinition>>,
    /// Replaces the outputs.
    pub outputs: Option<Vec<ParameterDefinition>>,
    /// Must match the service's runtime if given.
    pub runtime: Option<RuntimeType>,
    /// Replaces the initCode.
    pub init_code: Option<String>,
    /// Replaces the output files.
    pub output_file_names: Option<Vec<String>>,
    /// Moves the service to another environment (a default's name moves it back).
    pub environment: Option<String>,
}

/// A service as a caller may see it.
#[derive(Debug, Clone)]
pub struct ServiceView {
    /// The definition; `code` and `init_code` are emptied for callers who may not see them.
    pub record: Service,
    /// Whether the caller may update and delete it ("read/write") or only consume it.
    pub can_write: bool,
    /// Whether the caller may see the code.
    pub code_visible: bool,
}

impl App {
    /// Publishes a new service version; without a version, a GUID is assigned. Returns the
    /// version.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name))]
    pub async fn publish_service(
        &self,
        caller: &Principal,
        name: &str,
        version: Option<&str>,
        definition: ServiceDefinition,
    ) -> Result<ServiceVersion, AppError> {
        let (name, version) = parse_new_version(name, version)?;
        check_definition(
            &definition.code,
            &definition.inputs,
            &definition.outputs,
            &definition.output_file_names,
        )?;
        self.ensure_may_publish(caller, &name).await?;
        // The service keeps the environment's lock of now: a rebuild reaches it only through
        // an update by its owner.
        let (environment, environment_lock) = self
            .environment_for_use(definition.environment.as_deref(), definition.runtime)
            .await?
            .map(|environment| (environment.name, environment.lock))
            .unzip();
        // The service refers to the snapshot's content: deleting the snapshot keeps it.
        let content = match &definition.snapshot_id {
            Some(snapshot_id) => Some(
                self.snapshot_for_service(
                    caller,
                    snapshot_id,
                    definition.runtime,
                    environment.as_deref(),
                )
                .await?,
            ),
            None => None,
        };
        let record = Service {
            name: name.clone(),
            version: version.clone(),
            owner: caller.username.clone(),
            runtime: definition.runtime.into(),
            created_at_micros: now_micros(),
            revision: uuid::Uuid::new_v4().simple().to_string(),
            description: definition.description,
            operation_id: definition.operation_id,
            code: definition.code,
            init_code: definition.init_code,
            inputs: definition.inputs,
            outputs: definition.outputs,
            output_file_names: definition.output_file_names,
            snapshot_id: definition.snapshot_id,
            content,
            pool: None,
            environment,
            environment_lock,
        };
        self.insert_service(&record).await?;
        tracing::info!(version = %version, "service published");
        Ok(version)
    }

    /// Checks that the caller may publish a version of `name`: Contributors and Owners may,
    /// but only Owners to a name whose versions belong to someone else.
    pub(crate) async fn ensure_may_publish(
        &self,
        caller: &Principal,
        name: &ServiceName,
    ) -> Result<(), AppError> {
        if caller.role < Role::Contributor {
            return Err(AppError::Forbidden(
                "Readers cannot publish services".to_owned(),
            ));
        }
        let existing = self.store().list_service_versions(name).await?;
        if caller.role < Role::Owner
            && existing
                .iter()
                .any(|service| service.owner != caller.username)
        {
            return Err(AppError::Forbidden(format!(
                "another user owns the service `{name}` and you are not authorized to publish to it"
            )));
        }
        Ok(())
    }

    /// Stores a new service version (its content is stored already); an existing name and
    /// version is a conflict.
    pub(crate) async fn insert_service(&self, record: &Service) -> Result<(), AppError> {
        match self.store().insert_service(record).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                return Err(AppError::Conflict(format!(
                    "a web service `{}` with version `{}` already exists; use PATCH to update it",
                    record.name, record.version
                )));
            }
            Err(err) => return Err(err.into()),
        }
        self.service_changed(record.name.as_str(), record.version.as_str())
            .await;
        Ok(())
    }

    /// Forgets what this node caches of a service version and tells the other nodes.
    pub(crate) async fn service_changed(&self, name: &str, version: &str) {
        self.forget_service(name, version);
        self.announce(&crate::events::Event::Service {
            name: name.to_owned(),
            version: version.to_owned(),
        })
        .await;
    }

    /// Forgets what this node caches of a service version: its definition and its model.
    pub(crate) fn forget_service(&self, name: &str, version: &str) {
        self.service_cache()
            .forget(&(name.to_owned(), version.to_owned()));
        self.realtime_models().forget(name, version);
    }

    /// Updates a service version; absent fields stay as they are.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name, version))]
    pub async fn patch_service(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        patch: ServicePatch,
    ) -> Result<(), AppError> {
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        let mut record = self.own_service(caller, &name, &version, "update").await?;
        let ServiceRuntime::Interpreted(runtime) = record.runtime else {
            return Err(AppError::InvalidInput(format!(
                "`{name}` version `{version}` is a realtime service; update it as one, with its model"
            )));
        };
        if let Some(new_runtime) = patch.runtime
            && new_runtime != runtime
        {
            return Err(AppError::InvalidInput(format!(
                "the service runs on {runtime}; its runtime cannot change to {new_runtime}"
            )));
        }
        // An update takes the environment's lock of now (the same environment's newest build,
        // or the one the update moves the service to).
        let environment = patch
            .environment
            .as_deref()
            .or(record.environment.as_deref());
        (record.environment, record.environment_lock) = self
            .environment_for_use(environment, runtime)
            .await?
            .map(|environment| (environment.name, environment.lock))
            .unzip();
        if let Some(snapshot_id) = &patch.snapshot_id {
            record.content = Some(
                self.snapshot_for_service(
                    caller,
                    snapshot_id,
                    runtime,
                    record.environment.as_deref(),
                )
                .await?,
            );
        }
        record.code = patch.code.unwrap_or(record.code);
        record.description = patch.description.or(record.description);
        record.operation_id = patch.operation_id.or(record.operation_id);
        record.inputs = patch.inputs.unwrap_or(record.inputs);
        record.outputs = patch.outputs.unwrap_or(record.outputs);
        record.init_code = patch.init_code.or(record.init_code);
        record.output_file_names = patch.output_file_names.unwrap_or(record.output_file_names);
        record.snapshot_id = patch.snapshot_id.or(record.snapshot_id);
        check_definition(
            &record.code,
            &record.inputs,
            &record.outputs,
            &record.output_file_names,
        )?;
        record.revision = uuid::Uuid::new_v4().simple().to_string();
        if !self.store().update_service(&record).await? {
            return Err(service_not_found(&name, &version));
        }
        self.service_changed(name.as_str(), version.as_str()).await;
        if record.pool.is_some() {
            // The pool's workers reload the new revision now rather than on the next request.
            self.sync_dedicated_pools().await;
        }
        tracing::info!("service updated");
        Ok(())
    }

    /// Deletes a service version.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name, version))]
    pub async fn delete_service(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
    ) -> Result<(), AppError> {
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        let record = self.own_service(caller, &name, &version, "delete").await?;
        self.store().delete_service(&name, &version).await?;
        self.service_changed(name.as_str(), version.as_str()).await;
        if record.pool.is_some() {
            // Its pool goes with it.
            self.sync_dedicated_pools().await;
        }
        tracing::info!("service deleted");
        Ok(())
    }

    /// Every service version, as the caller may see them.
    pub async fn list_services(&self, caller: &Principal) -> Result<Vec<ServiceView>, AppError> {
        let records = self.store().list_services().await?;
        Ok(records
            .into_iter()
            .map(|record| view(caller, record))
            .collect())
    }

    /// The versions of one name, oldest first.
    pub async fn list_service_versions(
        &self,
        caller: &Principal,
        name: &str,
    ) -> Result<Vec<ServiceView>, AppError> {
        let records = self
            .store()
            .list_service_versions(&parse_name(name)?)
            .await?;
        Ok(records
            .into_iter()
            .map(|record| view(caller, record))
            .collect())
    }

    /// One service version.
    pub async fn get_service(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
    ) -> Result<ServiceView, AppError> {
        let record = self
            .current_service(&parse_name(name)?, &parse_version(version)?)
            .await?;
        Ok(view(caller, (*record).clone()))
    }

    /// Runs one request of a service with the given inputs (`{input name: value}`).
    pub async fn consume(
        &self,
        _caller: &Principal,
        name: &str,
        version: &str,
        inputs: Map<String, Value>,
    ) -> Result<(ConsumeOutcome, ServiceStages), AppError> {
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        let record = self.current_service(&name, &version).await?;
        let started = Instant::now();
        let outcome = self
            .run_service(&record, inputs, Priority::Interactive)
            .await;
        let stages = ServiceStages {
            node: outcome
                .as_ref()
                .map(|outcome| outcome.timings)
                .unwrap_or_default(),
            total: started.elapsed(),
        };
        self.count_service_request(&record, &outcome, &stages);
        Ok((outcome?, stages))
    }

    /// Counts a service request in the metrics, with its stages when it ran on a worker.
    pub(crate) fn count_service_request(
        &self,
        record: &Service,
        outcome: &Result<ConsumeOutcome, AppError>,
        stages: &ServiceStages,
    ) {
        let Some(metrics) = self.metrics() else {
            return;
        };
        let result = match outcome {
            Ok(outcome) if outcome.success => ServiceOutcome::Success,
            Ok(_) => ServiceOutcome::Failure,
            Err(_) => ServiceOutcome::Error,
        };
        let ran_on_worker =
            outcome.is_ok() && matches!(record.runtime, ServiceRuntime::Interpreted(_));
        metrics.service_request(
            record.name.as_str(),
            record.version.as_str(),
            result,
            ran_on_worker.then_some(stages),
        );
    }

    /// Runs one request of a service definition (the single request and every batch record).
    pub(crate) async fn run_service(
        &self,
        record: &Service,
        inputs: Map<String, Value>,
        priority: Priority,
    ) -> Result<ConsumeOutcome, AppError> {
        let runtime = match record.runtime {
            ServiceRuntime::Interpreted(runtime) => runtime,
            ServiceRuntime::Realtime => return self.score_realtime(record, inputs).await,
        };
        let request = ConsumeRequest {
            service: service_spec(record, runtime),
            inputs: typed_inputs(&record.inputs, inputs)?,
            priority,
        };
        // A node that cannot be reached was not sent the request (and is now out of the
        // healthy set), so the request goes to another; one that fails while running it is
        // not tried again, since user code may have had side effects.
        let mut attempts = 0;
        loop {
            let node = self.nodes().for_service(&record.revision, runtime)?;
            let outcome = self
                .with_content(&node, request.service.content.as_ref(), || {
                    node.compute.ask(ComputeCall::Consume(request.clone()))
                })
                .await;
            attempts += 1;
            match outcome {
                // The nodes are counted only here, off the path of a request that succeeds.
                Err(AppError::Compute(ComputeError::NodeUnreachable(message)))
                    if attempts < self.nodes().all().len() =>
                {
                    tracing::warn!(%message, "a compute node cannot be reached; trying another");
                }
                outcome => return outcome,
            }
        }
    }

    /// The current definition of a service version, from this node's cache when fresh.
    pub(crate) async fn current_service(
        &self,
        name: &ServiceName,
        version: &ServiceVersion,
    ) -> Result<Arc<Service>, AppError> {
        let key = (name.to_string(), version.to_string());
        if let Some(record) = self.service_cache().get(&key) {
            return Ok(record);
        }
        let record = Arc::new(
            self.store()
                .find_service(name, version)
                .await?
                .ok_or_else(|| service_not_found(name, version))?,
        );
        self.service_cache()
            .put_for(key, record.clone(), SERVICE_CACHE_TTL);
        Ok(record)
    }

    /// A service version the caller may change: theirs, or any if they are an Owner.
    pub(crate) async fn own_service(
        &self,
        caller: &Principal,
        name: &ServiceName,
        version: &ServiceVersion,
        action: &str,
    ) -> Result<Service, AppError> {
        let record = self
            .store()
            .find_service(name, version)
            .await?
            .ok_or_else(|| service_not_found(name, version))?;
        if !may_write(caller, &record) {
            return Err(AppError::Forbidden(format!(
                "the service `{name}` version `{version}` is owned by a different user; only its owner can {action} it"
            )));
        }
        Ok(record)
    }

    /// The content of one of the caller's snapshots, for a service to keep; a bad reference is
    /// a bad request.
    async fn snapshot_for_service(
        &self,
        caller: &Principal,
        snapshot_id: &str,
        runtime: RuntimeType,
        environment: Option<&str>,
    ) -> Result<Content, AppError> {
        let snapshot = self
            .own_snapshot_of(caller, snapshot_id, runtime)
            .await
            .map_err(|err| match err {
                AppError::NotFound(message) => AppError::InvalidInput(message),
                other => other,
            })?;
        crate::snapshots::same_environment(&snapshot, environment, "web service")?;
        Ok(Content {
            digest: snapshot.content_digest,
            size: snapshot.content_size.max(0) as u64,
        })
    }
}

/// What a compute node needs to run a service of `runtime`.
pub(crate) fn service_spec(record: &Service, runtime: RuntimeType) -> ServiceSpec {
    ServiceSpec {
        key: record.revision.clone(),
        owner: record.owner.to_string(),
        runtime,
        code: record.code.clone(),
        init_code: record.init_code.clone(),
        outputs: record
            .outputs
            .iter()
            .map(|output| TypedName {
                name: output.name.clone(),
                kind: output.kind,
            })
            .collect(),
        output_file_names: record.output_file_names.clone(),
        content: record.content.as_ref().map(content_ref),
        pool: record.pool.map(|size| DedicatedPoolSpec {
            service: format!("{}/{}", record.name, record.version),
            initial_size: size.initial(),
            max_size: size.max(),
        }),
        environment: record
            .environment
            .clone()
            .zip(record.environment_lock.clone())
            .map(|(name, lock)| EnvironmentRef {
                name,
                runtime,
                lock,
            }),
    }
}

pub(crate) fn may_write(caller: &Principal, record: &Service) -> bool {
    caller.role == Role::Owner
        || (caller.role >= Role::Contributor && record.owner == caller.username)
}

fn view(caller: &Principal, mut record: Service) -> ServiceView {
    let code_visible = caller.role == Role::Owner || record.owner == caller.username;
    if !code_visible {
        record.code = String::new();
        record.init_code = None;
    }
    ServiceView {
        can_write: may_write(caller, &record),
        code_visible,
        record,
    }
}

pub(crate) fn parse_name(name: &str) -> Result<ServiceName, AppError> {
    ServiceName::parse(name).map_err(|err| AppError::InvalidInput(err.to_string()))
}

pub(crate) fn parse_version(version: &str) -> Result<ServiceVersion, AppError> {
    ServiceVersion::parse(version).map_err(|err| AppError::InvalidInput(err.to_string()))
}

/// The name and version of a version to publish; without a version, a GUID.
pub(crate) fn parse_new_version(
    name: &str,
    version: Option<&str>,
) -> Result<(ServiceName, ServiceVersion), AppError> {
    let version = match version {
        Some(version) => parse_version(version)?,
        None => ServiceVersion::parse(&uuid::Uuid::new_v4().to_string())
            .expect("a GUID is a valid version"),
    };
    Ok((parse_name(name)?, version))
}

pub(crate) fn service_not_found(name: &ServiceName, version: &ServiceVersion) -> AppError {
    AppError::NotFound(format!(
        "web service `{name}` version `{version}` not found"
    ))
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_micros() as i64
}

/// Checks what a definition must satisfy: some code, unique valid parameter names, plain
/// output file names.
fn check_definition(
    code: &str,
    inputs: &[ParameterDefinition],
    outputs: &[ParameterDefinition],
    output_file_names: &[String],
) -> Result<(), AppError> {
    if code.trim().is_empty() {
        return Err(AppError::InvalidInput("`code` is required".to_owned()));
    }
    for (kind, parameters) in [("input", inputs), ("output", outputs)] {
        let mut seen = std::collections::HashSet::new();
        for parameter in parameters {
            o16n_types::ObjectName::parse(&parameter.name)
                .map_err(|err| AppError::InvalidInput(format!("{kind} parameter: {err}")))?;
            if !seen.insert(parameter.name.as_str()) {
                return Err(AppError::InvalidInput(format!(
                    "{kind} `{}` is declared twice",
                    parameter.name
                )));
            }
        }
    }
    for file_name in output_file_names {
        o16n_types::FileName::parse(file_name)
            .map_err(|err| AppError::InvalidInput(format!("outputFileNames: {err}")))?;
    }
    Ok(())
}

/// Checks inputs against the declared ones without taking them (for batches, whose records are
/// stored as given).
pub(crate) fn check_inputs(
    declared: &[ParameterDefinition],
    given: &Map<String, Value>,
) -> Result<(), AppError> {
    for parameter in declared {
        let value = given.get(&parameter.name).ok_or_else(|| {
            AppError::InvalidInput(format!("input `{}` is missing", parameter.name))
        })?;
        check_type(parameter.kind, value).map_err(|expected| {
            AppError::InvalidInput(format!(
                "input `{}` is declared {} and must be {expected}, not {}",
                parameter.name,
                parameter.kind,
                describe(value)
            ))
        })?;
    }
    Ok(())
}

/// Checks the request's inputs against the declared ones: every declared input must be given
/// (null is allowed, as the reference's clients send it for None) with a value of its type.
pub(crate) fn typed_inputs(
    declared: &[ParameterDefinition],
    mut given: Map<String, Value>,
) -> Result<Vec<TypedValue>, AppError> {
    declared
        .iter()
        .map(|parameter| {
            let value = given.remove(&parameter.name).ok_or_else(|| {
                AppError::InvalidInput(format!("input `{}` is missing", parameter.name))
            })?;
            if let Err(expected) = check_type(parameter.kind, &value) {
                return Err(AppError::InvalidInput(format!(
                    "input `{}` is declared {} and must be {expected}, not {}",
                    parameter.name,
                    parameter.kind,
                    describe(&value)
                )));
            }
            Ok(TypedValue {
                name: parameter.name.clone(),
                kind: parameter.kind,
                value,
            })
        })
        .collect()
}

/// `Err` says what the type needs.
fn check_type(kind: ParameterType, value: &Value) -> Result<(), &'static str> {
    let scalar = |value: &Value| !value.is_array() && !value.is_object();
    let fits = match kind {
        _ if value.is_null() => true,
        ParameterType::Integer => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|n| n.fract() == 0.0)
        }
        ParameterType::Numeric => value.is_number(),
        ParameterType::Logical => value.is_boolean(),
        ParameterType::Character => value.is_string(),
        ParameterType::Vector => value
            .as_array()
            .is_some_and(|items| items.iter().all(scalar)),
        ParameterType::Matrix => value.as_array().is_some_and(|rows| {
            let width = rows.first().and_then(Value::as_array).map_or(0, Vec::len);
            rows.iter().all(|row| {
                row.as_array()
                    .is_some_and(|cells| cells.len() == width && cells.iter().all(scalar))
            })
        }),
        ParameterType::DataFrame => match value {
            Value::Object(columns) => {
                let length = columns
                    .values()
                    .next()
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                columns.values().all(|column| {
                    column
                        .as_array()
                        .is_some_and(|cells| cells.len() == length && cells.iter().all(scalar))
                })
            }
            Value::Array(rows) => rows.iter().all(Value::is_object),
            _ => false,
        },
    };
    if fits {
        return Ok(());
    }
    Err(match kind {
        ParameterType::Integer => "a whole number",
        ParameterType::Numeric => "a number",
        ParameterType::Logical => "true or false",
        ParameterType::Character => "a string",
        ParameterType::Vector => "an array of scalars",
        ParameterType::Matrix => "an array of rows of equal length",
        ParameterType::DataFrame => "an object mapping column names to arrays of equal length",
    })
}

fn describe(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array of another shape",
        Value::Object(_) => "an object of another shape",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_checked_against_their_declared_types() {
        let cases = [
            (ParameterType::Integer, json!(7), true),
            (ParameterType::Integer, json!(7.0), true),
            (ParameterType::Integer, json!(7.5), false),
            (ParameterType::Numeric, json!(1), true),
            (ParameterType::Numeric, json!("1"), false),
            (ParameterType::Logical, json!(true), true),
            (ParameterType::Logical, json!(1), false),
            (ParameterType::Character, json!("a"), true),
            (ParameterType::Vector, json!([1, 2.5, null]), true),
            (ParameterType::Vector, json!([[1]]), false),
            (ParameterType::Matrix, json!([[1, 2], [3, 4]]), true),
            (ParameterType::Matrix, json!([[1, 2], [3]]), false),
            (
                ParameterType::DataFrame,
                json!({"a": [1, 2], "b": ["x", "y"]}),
                true,
            ),
            (
                ParameterType::DataFrame,
                json!({"a": [1, 2], "b": [1]}),
                false,
            ),
            (ParameterType::DataFrame, json!([{"a": 1}]), true),
            (ParameterType::DataFrame, json!(3), false),
            (ParameterType::Matrix, json!(null), true),
        ];
        for (kind, value, fits) in cases {
            assert_eq!(check_type(kind, &value).is_ok(), fits, "{kind} {value}");
        }
    }

    #[test]
    fn a_missing_or_mistyped_input_is_named() {
        let declared = vec![ParameterDefinition {
            name: "x".to_owned(),
            kind: ParameterType::Numeric,
        }];
        let missing = typed_inputs(&declared, Map::new()).unwrap_err().to_string();
        assert!(missing.contains("`x` is missing"), "{missing}");
        let mut given = Map::new();
        given.insert("x".to_owned(), json!("abc"));
        let mistyped = typed_inputs(&declared, given).unwrap_err().to_string();
        assert!(
            mistyped.contains("`x`") && mistyped.contains("numeric"),
            "{mistyped}"
        );
    }
}
