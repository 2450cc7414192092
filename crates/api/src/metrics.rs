//! `GET /metrics` (Prometheus text) and the middleware that counts every HTTP request by its
//! route template, so that label values stay bounded whatever paths clients send.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use o16n_app::App;
use o16n_types::Code;
use subtle::ConstantTimeEq;

use crate::ApiError;
use crate::extract::ClientAddress;

/// The route label of requests no route matched.
const UNMATCHED: &str = "unmatched";

/// Counts one request under its route template.
pub(crate) async fn track(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let response = next.run(request).await;
    if let Some(metrics) = app.metrics() {
        metrics.http_request(
            &route,
            method.as_str(),
            response.status().as_u16(),
            started.elapsed(),
        );
    }
    response
}

/// `GET /metrics`: for callers with the configured bearer token, or, when none is configured,
/// for callers on this machine's loopback only (the figures name services, users' activity and
/// the cluster's shape).
pub(crate) async fn render(
    State((app, token)): State<(App, Option<Arc<str>>)>,
    ClientAddress(client): ClientAddress,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if token.is_none() && !client.is_some_and(|address| address.to_canonical().is_loopback()) {
        return Err(ApiError::new(
            Code::Forbidden,
            "without metrics.bearer_token, the metrics answer only on this machine's loopback; \
             set a bearer token for scrapers elsewhere",
        ));
    }
    if let Some(token) = token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
            return Err(ApiError::new(
                Code::Unauthorized,
                "the metrics need the bearer token configured in metrics.bearer_token",
            ));
        }
    }
    let text = app.render_metrics().await.ok_or_else(|| {
        ApiError::new(Code::NotFound, "metrics are off (metrics.enabled = false)")
    })?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
