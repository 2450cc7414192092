//! The services pages: a searchable list, and a page per service with its inputs and outputs,
//! its code (for its publisher and Owners), its Swagger document, its dedicated pool, and a
//! "try it" form built from the declared inputs.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use o16n_app::{
    App, ConsumeOutcome, InputColumns, PoolState, RealtimeDefinition, ServiceView, Signature,
    encoded_output_files,
};
use o16n_types::{Code, ParameterType, ServiceRuntime};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::pages::{data_links, environment_name};
use super::{FormBody, Nav, PageError, ROOT, Viewer, back_to, render};
use crate::extract::MultipartForm;
use crate::routes::BodyLimits;
use crate::swagger;

pub(super) fn router(limits: BodyLimits) -> Router<App> {
    Router::new()
        .route(
            "/services",
            get(list).post(publish_realtime).layer(limits.upload()),
        )
        .route("/services/{name}/{version}", get(show))
        .route(
            "/services/{name}/{version}/try",
            post(try_it).layer(limits.data()),
        )
        .route(
            "/services/{name}/{version}/swagger.json",
            get(swagger_document),
        )
        .route("/services/{name}/{version}/delete", post(delete))
}

/// One row of the list.
struct ServiceRow {
    name: String,
    version: String,
    runtime: &'static str,
    owner: String,
    realtime: bool,
    pool: String,
    environment: String,
    description: String,
}

impl ServiceRow {
    /// The row of a service; `pool_states` are its dedicated pool's states on the compute
    /// nodes, when it has one.
    fn new(view: &ServiceView, pool_states: Option<&Vec<PoolState>>) -> Self {
        let record = &view.record;
        ServiceRow {
            name: record.name.to_string(),
            version: record.version.to_string(),
            runtime: record.runtime.as_str(),
            owner: record.owner.to_string(),
            realtime: record.runtime == ServiceRuntime::Realtime,
            pool: record.pool.map_or_else(
                || "shared".to_owned(),
                |pool| {
                    format!(
                        "dedicated, {} to {}: {}",
                        pool.initial(),
                        pool.max(),
                        pool_summary(pool_states.map_or(&[][..], Vec::as_slice))
                    )
                },
            ),
            environment: environment_name(record.environment.as_deref()),
            description: record.description.clone().unwrap_or_default(),
        }
    }
}

/// A dedicated pool's states on the compute nodes, in words: "ready on 2 of 2 nodes".
fn pool_summary(states: &[PoolState]) -> String {
    let ready = states
        .iter()
        .filter(|state| **state == PoolState::Success)
        .count();
    match states.len() {
        0 => "no compute node answers".to_owned(),
        1 => format!(
            "{} on the node",
            if ready == 1 { "ready" } else { "pending" }
        ),
        nodes => format!("ready on {ready} of {nodes} nodes"),
    }
}

#[derive(Template)]
#[template(path = "console/services.html")]
struct ListPage {
    nav: Nav,
    query: String,
    services: Vec<ServiceRow>,
    total: usize,
    may_publish: bool,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
struct ListQuery {
    #[serde(default)]
    q: String,
    published: Option<String>,
}

async fn list(
    State(app): State<App>,
    viewer: Viewer,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let services = app.list_services(viewer.principal()).await?;
    let pools = app
        .dedicated_pool_states(services.iter().map(|view| &view.record))
        .await;
    let needle = query.q.trim().to_lowercase();
    let rows: Vec<ServiceRow> = services
        .iter()
        .map(|view| {
            let label = format!("{}/{}", view.record.name, view.record.version);
            ServiceRow::new(view, pools.get(&label))
        })
        .filter(|row| {
            needle.is_empty()
                || [&row.name, &row.owner, &row.description, &row.environment]
                    .iter()
                    .any(|field| field.to_lowercase().contains(&needle))
                || row.runtime.to_lowercase() == needle
        })
        .collect();
    Ok(render(&ListPage {
        nav: viewer.nav("services"),
        query: query.q,
        total: services.len(),
        services: rows,
        may_publish: viewer.may_publish(),
        notice: query
            .published
            .map(|service| format!("Published {service}.")),
    }))
}

/// A realtime service published from the list page: name, optional version, description and
/// an ONNX file, as `POST /realtime-services/{name}` takes them.
async fn publish_realtime(
    State(app): State<App>,
    viewer: Viewer,
    form: MultipartForm,
) -> Result<Response, PageError> {
    let mut fields: Map<String, Value> = Map::new();
    let mut model = None;
    for part in form.0 {
        if part.name == "model" {
            model = Some(part.content);
        } else {
            let text = String::from_utf8(part.content.to_vec()).map_err(|_| {
                PageError::new(Code::BadRequest, format!("`{}` is not text", part.name))
            })?;
            fields.insert(part.name, Value::String(text.trim().to_owned()));
        }
    }
    let text = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let name =
        text("name").ok_or_else(|| PageError::new(Code::BadRequest, "the service needs a name"))?;
    let model = model
        .filter(|bytes| !bytes.is_empty())
        .ok_or_else(|| PageError::new(Code::BadRequest, "choose an ONNX model file"))?;
    let definition = RealtimeDefinition {
        description: text("description"),
        operation_id: None,
        model: model.to_vec().into(),
    };
    let version = app
        .publish_realtime_service(
            viewer.principal(),
            &name,
            text("version").as_deref(),
            definition,
        )
        .await?;
    Ok(back_to(&format!(
        "{ROOT}/services/{name}/{version}?published=1"
    )))
}

/// A declared input, as the "try it" form asks for it.
struct InputField {
    name: String,
    kind: &'static str,
    /// Whether the value is typed as JSON (vectors, matrices, data frames).
    json: bool,
    /// What the field starts with: the last value tried, or an example.
    value: String,
}

/// What a try gave back.
struct TryResult {
    success: bool,
    error_message: String,
    outputs: Vec<(String, String)>,
    console_output: String,
    images: Vec<(String, String)>,
    files: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "console/service.html")]
struct ServicePage {
    nav: Nav,
    name: String,
    version: String,
    runtime: &'static str,
    owner: String,
    description: String,
    environment: String,
    operation_id: String,
    inputs: Vec<(String, &'static str)>,
    outputs: Vec<(String, &'static str)>,
    code: Option<String>,
    init_code: Option<String>,
    can_write: bool,
    pool: String,
    pool_nodes: Vec<(String, &'static str)>,
    fields: Vec<InputField>,
    result: Option<TryResult>,
    problem: Option<String>,
    notice: Option<String>,
}

#[derive(Deserialize, Default)]
struct ShowQuery {
    published: Option<String>,
}

async fn show(
    State(app): State<App>,
    viewer: Viewer,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, PageError> {
    let view = app.get_service(viewer.principal(), &name, &version).await?;
    let mut page = service_page(&app, &viewer, &view, None).await?;
    if query.published.is_some() {
        page.notice = Some("Published.".to_owned());
    }
    Ok(render(&page))
}

/// The page of a service, its form filled with `tried` when given.
async fn service_page(
    app: &App,
    viewer: &Viewer,
    view: &ServiceView,
    tried: Option<&Map<String, Value>>,
) -> Result<ServicePage, PageError> {
    let signature = app.realtime_signature(&view.record).await?;
    let record = &view.record;
    let pool_nodes = match record.pool {
        Some(_) => app
            .service_pool_status(
                viewer.principal(),
                record.name.as_str(),
                record.version.as_str(),
            )
            .await?
            .into_iter()
            .map(|node| (node.endpoint, node.state.as_str()))
            .collect(),
        None => Vec::new(),
    };
    let realtime_outputs = signature.as_ref().map(|signature| {
        signature
            .outputs
            .iter()
            .map(|(name, kind)| (name.clone(), kind.schema_type()))
            .collect::<Vec<_>>()
    });
    Ok(ServicePage {
        nav: viewer.nav("services"),
        name: record.name.to_string(),
        version: record.version.to_string(),
        runtime: record.runtime.as_str(),
        owner: record.owner.to_string(),
        description: record.description.clone().unwrap_or_default(),
        environment: environment_name(record.environment.as_deref()),
        operation_id: record
            .operation_id
            .clone()
            .unwrap_or_else(|| "consume".to_owned()),
        inputs: match &signature {
            Some(signature) => realtime_input_columns(signature),
            None => record
                .inputs
                .iter()
                .map(|input| (input.name.clone(), input.kind.as_str()))
                .collect(),
        },
        outputs: realtime_outputs.unwrap_or_else(|| {
            record
                .outputs
                .iter()
                .map(|output| (output.name.clone(), output.kind.as_str()))
                .collect()
        }),
        code: view.code_visible.then(|| record.code.clone()),
        init_code: if view.code_visible {
            record.init_code.clone()
        } else {
            None
        },
        can_write: view.can_write,
        pool: record.pool.map_or_else(
            || "the shared pool".to_owned(),
            |pool| format!("a dedicated pool of {} to {}", pool.initial(), pool.max()),
        ),
        pool_nodes,
        fields: form_fields(view, signature.as_ref(), tried),
        result: None,
        problem: None,
        notice: None,
    })
}

/// The columns of a realtime service's `inputData`.
fn realtime_input_columns(signature: &Signature) -> Vec<(String, &'static str)> {
    match &signature.inputs {
        InputColumns::Named(columns) => columns
            .iter()
            .map(|(name, kind)| (name.clone(), kind.schema_type()))
            .collect(),
        InputColumns::Ordered { count, kind } => (0..*count)
            .map(|index| (format!("column {}", index + 1), kind.schema_type()))
            .collect(),
    }
}

/// The fields of the "try it" form: one per declared input, or for a realtime service one
/// `inputData` data frame with a row of its columns to fill in.
fn form_fields(
    view: &ServiceView,
    signature: Option<&Signature>,
    tried: Option<&Map<String, Value>>,
) -> Vec<InputField> {
    let earlier = |name: &str| {
        tried
            .and_then(|tried| tried.get(name))
            .map(|value| match value {
                Value::String(text) => text.clone(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            })
    };
    if let Some(signature) = signature {
        let example: Map<String, Value> = match &signature.inputs {
            InputColumns::Named(columns) => columns
                .iter()
                .map(|(name, _)| (name.clone(), Value::Array(vec![Value::Null])))
                .collect(),
            InputColumns::Ordered { count, .. } => (0..*count)
                .map(|index| (format!("x{index}"), Value::Array(vec![Value::Null])))
                .collect(),
        };
        return vec![InputField {
            name: "inputData".to_owned(),
            kind: ParameterType::DataFrame.as_str(),
            json: true,
            value: earlier("inputData").unwrap_or_else(|| {
                serde_json::to_string_pretty(&Value::Object(example)).unwrap_or_default()
            }),
        }];
    }
    view.record
        .inputs
        .iter()
        .map(|input| {
            let json = matches!(
                input.kind,
                ParameterType::Vector | ParameterType::Matrix | ParameterType::DataFrame
            );
            let example = match input.kind {
                ParameterType::Vector => "[1, 2, 3]",
                ParameterType::Matrix => "[[1, 2], [3, 4]]",
                ParameterType::DataFrame => "{\"x\": [1, 2]}",
                ParameterType::Logical => "true",
                _ => "",
            };
            InputField {
                name: input.name.clone(),
                kind: input.kind.as_str(),
                json,
                value: earlier(&input.name).unwrap_or_else(|| example.to_owned()),
            }
        })
        .collect()
}

/// The inputs of a try: each field's text turned into the JSON value its type takes.
fn parse_inputs(
    view: &ServiceView,
    realtime: bool,
    form: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let text = |name: &str| form.get(name).and_then(Value::as_str).unwrap_or("").trim();
    let json = |name: &str| {
        serde_json::from_str::<Value>(text(name))
            .map_err(|err| format!("`{name}` is not valid JSON: {err}"))
    };
    if realtime {
        return Ok(Map::from_iter([(
            "inputData".to_owned(),
            json("inputData")?,
        )]));
    }
    let mut inputs = Map::new();
    for input in &view.record.inputs {
        let name = input.name.as_str();
        let value = match input.kind {
            ParameterType::Character => Value::String(form_text(form, name)),
            ParameterType::Vector | ParameterType::Matrix | ParameterType::DataFrame => json(name)?,
            ParameterType::Logical => match text(name) {
                "true" | "TRUE" => Value::Bool(true),
                "false" | "FALSE" => Value::Bool(false),
                other => return Err(format!("`{name}` must be true or false, not `{other}`")),
            },
            ParameterType::Integer | ParameterType::Numeric => {
                let parsed = json(name)?;
                if !parsed.is_number() {
                    return Err(format!("`{name}` must be a number"));
                }
                parsed
            }
        };
        inputs.insert(name.to_owned(), value);
    }
    Ok(inputs)
}

/// A text field as typed (a character input keeps its spaces).
fn form_text(form: &Map<String, Value>, name: &str) -> String {
    form.get(name)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// `POST .../try`: consumes the service with the form's values, as `POST /api/{name}/{version}`
/// would, and shows the page with the outcome (htmx takes only the outcome from it).
async fn try_it(
    State(app): State<App>,
    viewer: Viewer,
    Path((name, version)): Path<(String, String)>,
    FormBody(form): FormBody<Map<String, Value>>,
) -> Result<Response, PageError> {
    let view = app.get_service(viewer.principal(), &name, &version).await?;
    let mut page = service_page(&app, &viewer, &view, Some(&form)).await?;
    let realtime = view.record.runtime == ServiceRuntime::Realtime;
    match parse_inputs(&view, realtime, &form) {
        Ok(inputs) => match app
            .consume(viewer.principal(), &name, &version, inputs)
            .await
        {
            Ok((outcome, _)) => page.result = Some(try_result(outcome)),
            Err(err) => page.problem = Some(PageError::from(err).0.public_message().to_owned()),
        },
        Err(problem) => page.problem = Some(problem),
    }
    Ok(render(&page))
}

fn try_result(outcome: ConsumeOutcome) -> TryResult {
    let outputs = outcome
        .outputs
        .iter()
        .map(|(name, value)| {
            (
                name.clone(),
                serde_json::to_string_pretty(value).unwrap_or_default(),
            )
        })
        .collect();
    let (images, files) = data_links(encoded_output_files(outcome.output_files));
    TryResult {
        success: outcome.success,
        error_message: outcome.error_message,
        outputs,
        console_output: outcome.console_output,
        images,
        files,
    }
}

/// The service's Swagger document, as `GET /api/{name}/{version}/swagger.json` gives it.
async fn swagger_document(
    State(app): State<App>,
    viewer: Viewer,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, PageError> {
    let service = app.get_service(viewer.principal(), &name, &version).await?;
    let signature = app.realtime_signature(&service.record).await?;
    Ok(Json(swagger::service_document(
        &service.record,
        signature.as_ref(),
    )))
}

async fn delete(
    State(app): State<App>,
    viewer: Viewer,
    Path((name, version)): Path<(String, String)>,
) -> Result<Response, PageError> {
    app.delete_service(viewer.principal(), &name, &version)
        .await?;
    Ok(back_to(&format!("{ROOT}/services")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_states_read_as_words() {
        assert_eq!(pool_summary(&[]), "no compute node answers");
        assert_eq!(pool_summary(&[PoolState::Success]), "ready on the node");
        assert_eq!(pool_summary(&[PoolState::Pending]), "pending on the node");
        assert_eq!(
            pool_summary(&[PoolState::Success, PoolState::Pending, PoolState::Success]),
            "ready on 2 of 3 nodes"
        );
    }
}
