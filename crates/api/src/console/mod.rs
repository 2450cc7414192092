//! The web console under `/console/`: server-rendered HTML pages over the same application
//! layer as the REST API, for the people who publish and consume services and for operators.
//!
//! Every page is an askama template (`templates/console/`, checked at compile time) filled by
//! a thin handler that calls one or two [`App`] methods with the signed-in [`Principal`], so
//! the console obeys exactly the roles and ownership rules of the API. Live parts (the cluster,
//! a running batch) refresh with the vendored htmx (`assets/console/htmx.min.js`); every page
//! also works without JavaScript.
//!
//! Signing in stores o16n's access and refresh tokens in `HttpOnly`, `SameSite=Strict` cookies
//! scoped to `/console`; a state-changing request must also come from the console's own
//! origin (`Origin`/`Sec-Fetch-Site`), so another site cannot make a signed-in browser act.
//! Failures are HTML pages with the status the API would answer: another user's session is a
//! 404 page, never their data.

mod auth;
mod batches;
mod cluster;
mod pages;
mod services;
mod sessions;

use askama::Template;
use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use o16n_app::{App, Principal};
use o16n_types::{Code, ErrorCode, Role};
use serde::de::DeserializeOwned;

use crate::ApiError;
use crate::extract::body_rejection_code;
use crate::routes::BodyLimits;

/// The console's root.
pub(crate) const ROOT: &str = "/console";
/// The cookie that holds the access token.
const ACCESS_COOKIE: &str = "o16n_access";
/// The cookie that holds the refresh token, used only to end the login session on sign-out.
const REFRESH_COOKIE: &str = "o16n_refresh";

/// Settings of the console.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsoleConfig {
    /// Whether cookies are marked `Secure` (the server speaks HTTPS).
    pub(crate) secure_cookies: bool,
    pub(crate) limits: BodyLimits,
}

/// The console's routes, and `/` redirecting to it.
pub(crate) fn router(config: ConsoleConfig) -> Router<App> {
    let pages = Router::new()
        .route("/assets/{file}", get(pages::asset))
        .merge(auth::router(config))
        .merge(services::router(config.limits))
        .merge(sessions::router(config.limits))
        .merge(batches::router())
        .merge(cluster::router())
        .fallback(|| async { PageError::new(Code::NotFound, "there is no such page") })
        .layer(axum::middleware::from_fn(same_origin_changes))
        .layer(axum::middleware::map_response(security_headers));
    Router::new()
        .route("/", get(|| async { Redirect::to(&format!("{ROOT}/")) }))
        .route(ROOT, get(|| async { Redirect::to(&format!("{ROOT}/")) }))
        .route(
            &format!("{ROOT}/"),
            get(|| async { Redirect::to(&format!("{ROOT}/services")) }),
        )
        .nest(ROOT, pages)
}

/// Refuses a request that changes something (any method but GET and HEAD) unless it comes
/// from a page of this server: a browser names the page's origin in `Origin` and says
/// `Sec-Fetch-Site: same-origin`. The `SameSite=Strict` cookies already keep other sites'
/// requests anonymous; this keeps them out even from a browser that ignores `SameSite`.
/// What every console answer tells the browser: run only the console's own script and style,
/// never inside another site's frame, never guess a content type, keep addresses to itself.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
             form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn same_origin_changes(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) || is_same_origin(request.headers())
    {
        return next.run(request).await;
    }
    PageError::new(
        Code::Forbidden,
        "this form was sent from another site; open the console and try again",
    )
    .into_response()
}

fn is_same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|value| value.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (text("origin"), text("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        // Requests without `Origin` come from tools, not from another site's page.
        (None, _) => true,
        (Some(_), None) => false,
    }
}

/// The signed-in user of a console request. Without a valid access cookie, a page answers
/// with a redirect to the sign-in page, which comes back here afterwards.
pub(crate) struct Viewer(pub(crate) Principal);

impl Viewer {
    pub(crate) fn principal(&self) -> &Principal {
        &self.0
    }

    /// The name and role shown in every page's header.
    pub(crate) fn nav(&self, section: &'static str) -> Nav {
        Nav {
            user: self.0.username.to_string(),
            role: self.0.role.as_str(),
            section,
        }
    }

    /// Whether the user may publish (Contributors and Owners, as the API decides).
    pub(crate) fn may_publish(&self) -> bool {
        self.0.role >= Role::Contributor
    }
}

/// What the page header shows: who is signed in, and which section is open.
pub(crate) struct Nav {
    pub(crate) user: String,
    pub(crate) role: &'static str,
    pub(crate) section: &'static str,
}

impl FromRequestParts<App> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let sign_in = || {
            // Inside the console's nested router the URI lacks its `/console` prefix.
            let uri = parts
                .extensions
                .get::<axum::extract::OriginalUri>()
                .map_or(&parts.uri, |original| &original.0);
            let here = uri.path_and_query().map_or(ROOT, |path| path.as_str());
            Redirect::to(&format!(
                "{ROOT}/login?next={}",
                urlencoding_component(here)
            ))
            .into_response()
        };
        let Some(token) = cookie(&parts.headers, ACCESS_COOKIE) else {
            return Err(sign_in());
        };
        match app.authenticate(&token).await {
            Ok(principal) => Ok(Viewer(principal)),
            Err(err) if err.code() == Code::Unauthorized => Err(sign_in()),
            Err(err) => Err(PageError::from(ApiError::from(err)).into_response()),
        }
    }
}

/// The value of cookie `name`, if the request has it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
        .filter(|value| !value.is_empty())
}

/// Percent-encodes a URL component (everything but unreserved characters).
pub(crate) fn urlencoding_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// A submitted form (`application/x-www-form-urlencoded`); a malformed, oversize or
/// mistyped one is a page with the matching status, as every console failure is.
pub(crate) struct FormBody<T>(pub(crate) T);

impl<T, S> FromRequest<S> for FormBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(request, state).await {
            Ok(axum::Form(value)) => Ok(FormBody(value)),
            Err(rejection) => Err(PageError::new(
                body_rejection_code(rejection.status()),
                rejection.body_text(),
            )),
        }
    }
}

/// A failure shown as a page: the API's status and message, in the console's layout.
pub(crate) struct PageError(ApiError);

impl PageError {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Self {
        PageError(ApiError::new(code, message))
    }
}

impl From<ApiError> for PageError {
    fn from(err: ApiError) -> Self {
        PageError(err)
    }
}

impl From<o16n_app::AppError> for PageError {
    fn from(err: o16n_app::AppError) -> Self {
        PageError(ApiError::from(err))
    }
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        let status = StatusCode::from_u16(code.http_status())
            .expect("every Code has a valid status. This is a bug.");
        let message = self.0.public_message();
        let page = ErrorPage {
            status: status.as_u16(),
            title: status.canonical_reason().unwrap_or("Error"),
            message,
        };
        (status, render(&page)).into_response()
    }
}

/// A rendered page. Rendering only fails on a template bug (a filter error), which becomes a
/// plain 500.
pub(crate) fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "a console template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page failed to render",
            )
                .into_response()
        }
    }
}

/// Where a form goes after it did its work: back to a console page (`See Other`, so that a
/// reload does not send the form again).
pub(crate) fn back_to(path: &str) -> Response {
    Redirect::to(path).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn only_the_consoles_own_pages_may_change_things() {
        assert!(is_same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "same-origin"),
        ])));
        assert!(is_same_origin(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!is_same_origin(&headers(&[
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ])));
        assert!(!is_same_origin(&headers(&[
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ])));
    }

    #[test]
    fn cookies_are_found_by_name() {
        let headers = headers(&[("cookie", "a=1; o16n_access=tok.en; b=")]);
        assert_eq!(cookie(&headers, ACCESS_COOKIE).as_deref(), Some("tok.en"));
        assert_eq!(cookie(&headers, "b"), None);
        assert_eq!(cookie(&headers, "c"), None);
    }

    #[test]
    fn url_components_are_percent_encoded() {
        assert_eq!(
            urlencoding_component("/console/x?a=b c"),
            "%2Fconsole%2Fx%3Fa%3Db%20c"
        );
    }
}
