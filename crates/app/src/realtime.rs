//! Realtime web services: an ONNX model published as a service and scored natively in this
//! process, without an interpreter.
//!
//! A model is loaded and checked once when it is published (a model the engine cannot run is
//! refused then), stored as the service's content, and kept loaded in [`RealtimeModels`],
//! keyed by service and revision. A node that does not have the current revision loaded (after
//! a restart, or when another node published it) loads it from the store on first use;
//! [`App::load_realtime_models`] loads them all at start-up.
//!
//! Loading and scoring are CPU-bound. Loading, and every request whose scoring is estimated
//! (from the model's cost per row, measured at load) to take more than
//! [`INLINE_SCORING_BUDGET`], run on blocking threads, so a slow or large request never holds an
//! async thread and delays no other; requests cheaper than the hand-off to a blocking thread
//! are scored in place.

use std::sync::Arc;
use std::time::Duration;

use o16n_compute::{ConsumeOutcome, StageTimings};
use o16n_realtime::{RealtimeModel, Signature};
use o16n_types::Service;
use o16n_types::{ParameterDefinition, ParameterType, ServiceRuntime, ServiceVersion};
use serde_json::{Map, Value};

use crate::services::{
    now_micros, parse_name, parse_new_version, parse_version, service_not_found,
};
use crate::{App, AppError, Principal, run_blocking};

/// The one input of every realtime service, as the reference names it.
pub(crate) const INPUT_NAME: &str = "inputData";
/// The one output of every realtime service.
pub(crate) const OUTPUT_NAME: &str = "outputData";

/// The longest scoring that may run on an async thread, well within the 10 to 100 microseconds
/// that tokio allows between two awaits.
const INLINE_SCORING_BUDGET: Duration = Duration::from_micros(50);

/// What a publisher of a realtime service sends.
#[derive(Debug, Clone, Default)]
pub struct RealtimeDefinition {
    /// Free text.
    pub description: Option<String>,
    /// The consume operation's swagger operationId.
    pub operation_id: Option<String>,
    /// The ONNX model.
    pub model: Arc<[u8]>,
}

/// An update of a realtime service: `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RealtimePatch {
    /// Replaces the description.
    pub description: Option<String>,
    /// Replaces the operationId.
    pub operation_id: Option<String>,
    /// Replaces the model.
    pub model: Option<Arc<[u8]>>,
}

/// The models of realtime services loaded on this node, by service name and version, each with
/// the revision it was loaded from (a newer revision is loaded again).
pub(crate) struct RealtimeModels {
    /// The revision is shared, not owned, so that a lookup (on every request) copies no text.
    loaded: moka::sync::Cache<(String, String), (Arc<str>, Arc<RealtimeModel>)>,
}

impl Default for RealtimeModels {
    fn default() -> Self {
        // Unbounded in count, as the services are: a model of a deleted service is forgotten
        // with it.
        RealtimeModels {
            loaded: moka::sync::Cache::builder().build(),
        }
    }
}

impl RealtimeModels {
    fn get(&self, record: &Service) -> Option<Arc<RealtimeModel>> {
        let key = (record.name.to_string(), record.version.to_string());
        self.loaded
            .get(&key)
            .filter(|(revision, _)| **revision == *record.revision)
            .map(|(_, model)| model)
    }

    fn put(&self, record: &Service, model: Arc<RealtimeModel>) {
        self.loaded.insert(
            (record.name.to_string(), record.version.to_string()),
            (Arc::from(record.revision.as_str()), model),
        );
    }

    pub(crate) fn forget(&self, name: &str, version: &str) {
        self.loaded
            .invalidate(&(name.to_owned(), version.to_owned()));
    }

    /// Forgets every loaded model.
    pub(crate) fn clear(&self) {
        self.loaded.invalidate_all();
    }
}

async fn load_model(bytes: Arc<[u8]>) -> Result<Arc<RealtimeModel>, AppError> {
    let model = run_blocking(move || RealtimeModel::load(&bytes)).await??;
    Ok(Arc::new(model))
}

fn data_frame(name: &str) -> Vec<ParameterDefinition> {
    vec![ParameterDefinition {
        name: name.to_owned(),
        kind: ParameterType::DataFrame,
    }]
}

impl App {
    /// Publishes a realtime service version; without a version, a GUID is assigned. The model
    /// is loaded and checked before anything is stored. Returns the version.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name))]
    pub async fn publish_realtime_service(
        &self,
        caller: &Principal,
        name: &str,
        version: Option<&str>,
        definition: RealtimeDefinition,
    ) -> Result<ServiceVersion, AppError> {
        let (name, version) = parse_new_version(name, version)?;
        self.ensure_may_publish(caller, &name).await?;
        let model = load_model(definition.model.clone()).await?;
        let content = self.store().put_content_bytes(&definition.model).await?;
        let record = Service {
            name: name.clone(),
            version: version.clone(),
            owner: caller.username.clone(),
            runtime: ServiceRuntime::Realtime,
            created_at_micros: now_micros(),
            revision: uuid::Uuid::new_v4().simple().to_string(),
            description: definition.description,
            operation_id: definition.operation_id,
            code: String::new(),
            init_code: None,
            inputs: data_frame(INPUT_NAME),
            outputs: data_frame(OUTPUT_NAME),
            output_file_names: Vec::new(),
            snapshot_id: None,
            content: Some(content),
            pool: None,
            environment: None,
            environment_lock: None,
        };
        self.insert_service(&record).await?;
        self.realtime_models().put(&record, model);
        tracing::info!(version = %version, "realtime service published");
        Ok(version)
    }

    /// Updates a realtime service version; a new model is loaded and checked first.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name, version))]
    pub async fn patch_realtime_service(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        patch: RealtimePatch,
    ) -> Result<(), AppError> {
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        let mut record = self.own_service(caller, &name, &version, "update").await?;
        if record.runtime != ServiceRuntime::Realtime {
            return Err(AppError::InvalidInput(format!(
                "`{name}` version `{version}` runs {} code, not a realtime model; update it as such a service",
                record.runtime
            )));
        }
        let model = match &patch.model {
            Some(bytes) => Some(load_model(bytes.clone()).await?),
            None => None,
        };
        record.description = patch.description.or(record.description);
        record.operation_id = patch.operation_id.or(record.operation_id);
        record.revision = uuid::Uuid::new_v4().simple().to_string();
        if let Some(bytes) = &patch.model {
            record.content = Some(self.store().put_content_bytes(bytes).await?);
        }
        if !self.store().update_service(&record).await? {
            return Err(service_not_found(&name, &version));
        }
        self.service_changed(name.as_str(), version.as_str()).await;
        if let Some(model) = model {
            self.realtime_models().put(&record, model);
        }
        tracing::info!("realtime service updated");
        Ok(())
    }

    /// The columns a realtime service takes and returns, for its swagger document; `None` for
    /// a service of R or Python code.
    pub async fn realtime_signature(
        &self,
        record: &Service,
    ) -> Result<Option<Signature>, AppError> {
        if record.runtime != ServiceRuntime::Realtime {
            return Ok(None);
        }
        Ok(Some(self.realtime_model(record).await?.signature()))
    }

    /// Loads the model of every realtime service, so that the first requests after a start do
    /// not wait for it. A model that no longer loads is logged and left to fail its requests.
    pub async fn load_realtime_models(&self) -> Result<usize, AppError> {
        let mut loaded = 0;
        for record in self.store().list_services().await? {
            if record.runtime != ServiceRuntime::Realtime {
                continue;
            }
            match self.realtime_model(&record).await {
                Ok(_) => loaded += 1,
                Err(err) => tracing::warn!(
                    service = %record.name,
                    version = %record.version,
                    error = %o16n_types::error_chain(&err),
                    "cannot load the model of a realtime service"
                ),
            }
        }
        Ok(loaded)
    }

    /// Scores one request of a realtime service: `inputs` must hold `inputData`.
    pub(crate) async fn score_realtime(
        &self,
        record: &Service,
        mut inputs: Map<String, Value>,
    ) -> Result<ConsumeOutcome, AppError> {
        let input_data = match inputs.remove(INPUT_NAME) {
            Some(Value::Object(columns)) => columns,
            Some(Value::Array(rows)) => columns_of(rows)?,
            Some(_) => {
                return Err(AppError::InvalidInput(format!(
                    "`{INPUT_NAME}` must be an object mapping column names to arrays of values"
                )));
            }
            None => {
                return Err(AppError::InvalidInput(format!(
                    "input `{INPUT_NAME}` is missing"
                )));
            }
        };
        let model = self.realtime_model(record).await?;
        // A request that the model scores within the budget is scored here: handing it to a
        // blocking thread would cost more than the scoring (two thread switches and the blocking
        // pool's lock). Anything longer, or of unknown cost, never occupies an async thread.
        let inline = model
            .estimated_cost(&input_data)
            .is_some_and(|cost| cost <= INLINE_SCORING_BUDGET);
        let rows = input_data
            .values()
            .next()
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let scoring = std::time::Instant::now();
        let output_data = if inline {
            model.score(&input_data)?
        } else {
            run_blocking(move || model.score(&input_data)).await??
        };
        let took = scoring.elapsed();
        if let Some(metrics) = self.metrics() {
            metrics.realtime_request(record.name.as_str(), record.version.as_str(), rows, took);
        }
        let mut outputs = Map::new();
        outputs.insert(OUTPUT_NAME.to_owned(), Value::Object(output_data));
        Ok(ConsumeOutcome {
            success: true,
            error_message: String::new(),
            console_output: String::new(),
            changed_files: Vec::new(),
            outputs,
            output_files: Vec::new(),
            timings: StageTimings {
                execute_micros: u64::try_from(took.as_micros()).unwrap_or(u64::MAX),
                ..StageTimings::default()
            },
        })
    }

    /// The loaded model of the record's revision, loading it from the store if needed.
    async fn realtime_model(&self, record: &Service) -> Result<Arc<RealtimeModel>, AppError> {
        if let Some(model) = self.realtime_models().get(record) {
            return Ok(model);
        }
        let content = record
            .content
            .as_ref()
            .ok_or_else(|| service_not_found(&record.name, &record.version))?;
        let bytes = self.store().content_bytes(&content.digest).await?;
        let model = load_model(bytes.into()).await.map_err(|err| {
            AppError::Internal(format!(
                "the stored model of `{}` version `{}` does not load: {err}",
                record.name, record.version
            ))
        })?;
        self.realtime_models().put(record, model.clone());
        Ok(model)
    }
}

/// A data frame sent as an array of row objects (`[{"a": 1, "b": 2}, ...]`), as columns in the
/// order of the first row's keys.
fn columns_of(rows: Vec<Value>) -> Result<Map<String, Value>, AppError> {
    let mut columns: Map<String, Value> = Map::new();
    let row_count = rows.len();
    for (index, row) in rows.into_iter().enumerate() {
        let Value::Object(cells) = row else {
            return Err(AppError::InvalidInput(format!(
                "`{INPUT_NAME}` row {index} is not an object"
            )));
        };
        if index > 0 && cells.len() != columns.len() {
            return Err(AppError::InvalidInput(format!(
                "`{INPUT_NAME}` row {index} has {} columns and the first row {}",
                cells.len(),
                columns.len()
            )));
        }
        for (name, value) in cells {
            let column = match columns.get_mut(&name) {
                Some(column) => column,
                None if index == 0 => columns
                    .entry(name)
                    .or_insert_with(|| Value::Array(Vec::with_capacity(row_count))),
                None => {
                    return Err(AppError::InvalidInput(format!(
                        "`{INPUT_NAME}` row {index} has the column `{name}`, which the first row lacks"
                    )));
                }
            };
            if let Value::Array(values) = column {
                values.push(value);
            }
        }
    }
    Ok(columns)
}
