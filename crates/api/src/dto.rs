//! Request and response bodies, named and spelled as the definitions of the reference swagger
//! (`mlserver-swagger-9.3.0.json`). These are the serialization boundary: domain types are
//! converted to and from them here and nowhere else.

use std::collections::BTreeMap;

use o16n_app::{Health, SystemStatus, TokenPair};
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
    components: BTreeMap<&'static str, StatusResponse>,
}

fn health_name(health: Health) -> &'static str {
    match health {
        Health::Pass => "pass",
        Health::Warn => "warn",
        Health::Fail => "fail",
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
        let authentication = StatusResponse {
            status_code: "pass",
            details: BTreeMap::from([
                ("local", json!(auth.local)),
                ("ldap", json!(auth.ldap)),
                ("azureActiveDirectory", json!(auth.azure_active_directory)),
            ]),
            components: BTreeMap::new(),
        };
        StatusResponse {
            status_code: health_name(status.health),
            details: BTreeMap::from([
                ("version", json!(status.version)),
                ("apiVersion", json!("9.3.0")),
            ]),
            components: BTreeMap::from([
                (
                    "database",
                    StatusResponse {
                        status_code: health_name(database.health),
                        details: database_details,
                        components: BTreeMap::new(),
                    },
                ),
                ("authentication", authentication),
            ]),
        }
    }
}
