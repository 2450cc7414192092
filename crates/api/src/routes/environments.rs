//! Environment APIs (an o16n extension): create or rebuild, list, read and delete the named
//! package sets that sessions and services run in.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use o16n_app::App;
use o16n_app::EnvironmentSpec;
use o16n_types::{Code, RuntimeType};
use serde::{Deserialize, Serialize};

use super::sessions::SUCCESS;
use crate::ApiError;
use crate::dto::iso8601;
use crate::extract::{AuthUser, JsonBody, PathParams};

pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/environments", get(list_environments))
        .route(
            "/environments/{name}",
            post(put_environment)
                .get(get_environment)
                .delete(delete_environment),
        )
}

/// What an environment asks for: a Python requirements text, or R packages and (optionally)
/// the configured repositories to take them from.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EnvironmentRequest {
    runtime_type: String,
    requirements: Option<String>,
    packages: Option<Vec<String>>,
    repositories: Option<Vec<String>>,
}

impl EnvironmentRequest {
    fn into_spec(self) -> Result<EnvironmentSpec, ApiError> {
        let bad = |message: &str| ApiError::new(Code::BadRequest, message.to_owned());
        let runtime: RuntimeType = self
            .runtime_type
            .parse()
            .map_err(|err: o16n_types::ParseRuntimeTypeError| bad(&err.to_string()))?;
        match runtime {
            RuntimeType::Python => {
                if self.packages.is_some() || self.repositories.is_some() {
                    return Err(bad(
                        "a Python environment takes `requirements` (a requirements text), not `packages` or `repositories`",
                    ));
                }
                Ok(EnvironmentSpec::Python {
                    requirements: self.requirements.ok_or_else(|| {
                        bad("`requirements` is required for a Python environment")
                    })?,
                })
            }
            RuntimeType::R => {
                if self.requirements.is_some() {
                    return Err(bad(
                        "an R environment takes `packages` (and optionally `repositories`), not `requirements`",
                    ));
                }
                Ok(EnvironmentSpec::R {
                    packages: self
                        .packages
                        .ok_or_else(|| bad("`packages` is required for an R environment"))?,
                    repositories: self.repositories.unwrap_or_default(),
                })
            }
        }
    }
}

/// A package of an environment's lock.
#[derive(Serialize)]
struct PackageDto {
    name: String,
    version: String,
}

/// An environment as the API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Environment {
    name: String,
    runtime_type: &'static str,
    owner: Option<String>,
    state: &'static str,
    is_default: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    requirements: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repositories: Option<Vec<String>>,
    resolved_packages: Vec<PackageDto>,
    lock: Option<String>,
    log: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    creation_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    last_update_time: Option<String>,
}

impl From<o16n_app::EnvironmentView> for Environment {
    fn from(view: o16n_app::EnvironmentView) -> Self {
        let (requirements, packages, repositories) = match view.spec {
            Some(EnvironmentSpec::Python { requirements }) => (Some(requirements), None, None),
            Some(EnvironmentSpec::R {
                packages,
                repositories,
            }) => (None, Some(packages), Some(repositories)),
            None => (None, None, None),
        };
        let time = |unix: i64| (!view.is_default).then(|| iso8601(unix));
        Environment {
            name: view.name,
            runtime_type: view.runtime.as_str(),
            owner: view.owner,
            state: view.state.as_str(),
            is_default: view.is_default,
            requirements,
            packages,
            repositories,
            resolved_packages: view
                .packages
                .into_iter()
                .map(|package| PackageDto {
                    name: package.name,
                    version: package.version,
                })
                .collect(),
            lock: view.lock,
            log: view.log,
            creation_time: time(view.created_at),
            last_update_time: time(view.updated_at),
        }
    }
}

async fn put_environment(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(name): PathParams<String>,
    JsonBody(request): JsonBody<EnvironmentRequest>,
) -> Result<(StatusCode, Json<Environment>), ApiError> {
    let (view, created) = app
        .put_environment(&caller, &name, request.into_spec()?)
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view.into())))
}

async fn list_environments(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
) -> Result<Json<Vec<Environment>>, ApiError> {
    let views = app.environments(&caller).await?;
    Ok(Json(views.into_iter().map(Environment::from).collect()))
}

async fn get_environment(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(name): PathParams<String>,
) -> Result<Json<Environment>, ApiError> {
    Ok(Json(app.environment(&caller, &name).await?.into()))
}

async fn delete_environment(
    State(app): State<App>,
    AuthUser(caller): AuthUser,
    PathParams(name): PathParams<String>,
) -> Result<Json<&'static str>, ApiError> {
    app.delete_environment(&caller, &name).await?;
    Ok(SUCCESS)
}
