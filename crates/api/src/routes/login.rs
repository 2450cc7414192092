//! Authentication APIs: `POST /login`, `POST /login/refreshToken`, `DELETE /login/refreshToken`.
//!
//! None of them takes a bearer token: logging in and renewing happen without one, and revoking
//! needs only the refresh token itself, so that a client whose access token has already expired
//! can still end its session.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use o16n_app::App;

use crate::ApiError;
use crate::dto::{AccessTokenResponse, LoginRequest, RenewTokenRequest, RevokeRefreshTokenQuery};
use crate::extract::{ClientAddress, JsonBody, QueryParams};

pub(super) fn router() -> Router<App> {
    Router::new().route("/login", post(login)).route(
        "/login/refreshToken",
        post(renew_token).delete(revoke_refresh_token),
    )
}

async fn login(
    State(app): State<App>,
    ClientAddress(client): ClientAddress,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Json<AccessTokenResponse>, ApiError> {
    let pair = app
        .login(&request.username, &request.password, client)
        .await?;
    Ok(Json(pair.into()))
}

async fn renew_token(
    State(app): State<App>,
    JsonBody(request): JsonBody<RenewTokenRequest>,
) -> Result<Json<AccessTokenResponse>, ApiError> {
    let pair = app.renew(&request.refresh_token).await?;
    Ok(Json(pair.into()))
}

async fn revoke_refresh_token(
    State(app): State<App>,
    QueryParams(query): QueryParams<RevokeRefreshTokenQuery>,
) -> Result<Json<&'static str>, ApiError> {
    app.revoke(&query.refresh_token).await?;
    Ok(Json("Success"))
}
