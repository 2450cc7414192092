//! The audit trail: one line per request at info level, as the reference's operationalization
//! server writes, with a correlation id, the user, the login session, method, path and status.
//!
//! The user is only known once the bearer token has been checked, deep inside the handler's
//! extractors; an [`AuditIdentity`] slot placed in the request's extensions carries it back out
//! to this middleware. Query strings are never logged: they can carry refresh tokens.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use o16n_app::Principal;
use tracing::Instrument;

/// The response header that carries the request's correlation id, so that a client can quote
/// it when reporting a problem.
const CORRELATION_HEADER: &str = "x-correlation-id";

/// Where the bearer-token check leaves who the caller is.
#[derive(Clone, Default)]
pub(crate) struct AuditIdentity(Arc<OnceLock<(String, String)>>);

impl AuditIdentity {
    pub(crate) fn record(&self, principal: &Principal) {
        let _ = self.0.set((
            principal.username.to_string(),
            // An identity provider's token has no login session of o16n's.
            principal
                .login_session_id
                .clone()
                .unwrap_or_else(|| "external".to_owned()),
        ));
    }
}

pub(crate) async fn audit(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let identity = AuditIdentity::default();
    request.extensions_mut().insert(identity.clone());

    let span = tracing::info_span!("request", correlation_id = %correlation_id);
    let mut response = next.run(request).instrument(span).await;

    let (user, login_session) = identity
        .0
        .get()
        .map(|(user, session)| (user.as_str(), session.as_str()))
        .unwrap_or(("-", "-"));
    tracing::info!(
        target: "o16n::audit",
        correlation_id = %correlation_id,
        user,
        login_session,
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
    );
    if let Ok(value) = HeaderValue::from_str(&correlation_id) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}
