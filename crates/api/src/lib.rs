//! The HTTP face of o16n: the only crate that knows about axum and HTTP.
//!
//! [`router`] builds the whole REST API of the reference server. Handlers are thin: they
//! extract and parse the request into domain values, call one [`o16n_app::App`] method and turn
//! the result into the reference's JSON shapes (`dto`). Every failure, including the ones
//! axum produces itself (bad JSON, wrong content type, unknown route, wrong method, oversize
//! body, a panic), leaves through [`error::ApiError`] in the reference `Error` shape.
//! The web console (`console`) is served here too, as HTML pages over the same [`App`].
//! Start reading at `routes`.

mod audit;
mod console;
mod core_swagger;
mod dto;
mod error;
mod extract;
mod metrics;
mod routes;
mod swagger;

use std::any::Any;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use o16n_app::App;
use o16n_types::Code;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// The largest body of a request that carries data (consume, batch, execute, publish,
    /// workspace objects), in bytes; larger bodies get 413. Other requests are limited to
    /// 1 MiB.
    pub max_body_bytes: usize,
    /// The largest uploaded file or model, in bytes.
    pub max_upload_bytes: usize,
    /// Whether the console's cookies are marked `Secure` (browsers come over HTTPS).
    pub secure_cookies: bool,
    /// The bearer token `/metrics` asks for; open when `None`.
    pub metrics_token: Option<std::sync::Arc<str>>,
}

/// The complete REST API.
pub fn router(app: App, config: &ApiConfig) -> Router {
    let console = console::router(console::ConsoleConfig {
        secure_cookies: config.secure_cookies,
        limits: routes::BodyLimits::of(config),
    });
    let mut api = routes::router(config)
        .merge(console)
        .with_state(app.clone());
    if app.metrics().is_some() {
        api = api
            .route(
                "/metrics",
                axum::routing::get(metrics::render)
                    .with_state((app.clone(), config.metrics_token.clone())),
            )
            // Added after the routes so that it runs after routing and sees the route template.
            .layer(axum::middleware::from_fn_with_state(app, metrics::track));
    }
    api.merge(core_swagger::router())
        .fallback(unknown_route)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(routes::CONTROL_BODY_BYTES))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn(audit::audit))
}

async fn unknown_route() -> ApiError {
    ApiError::new(Code::NotFound, "no such resource")
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        Code::MethodNotAllowed,
        "this resource does not support this HTTP method",
    )
}

/// A panic in a handler is a bug; the request gets a 500 and every other request goes on.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}
