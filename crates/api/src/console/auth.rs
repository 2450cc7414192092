//! Signing in and out of the console: a user name and password (local accounts or the LDAP
//! directory, through the same `App::login` as `POST /login`), or an access token of the
//! configured OpenID Connect provider, checked as the API checks a bearer token.

use askama::Template;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use o16n_app::{App, SignInMethods};

use crate::extract::ClientAddress;
use serde::Deserialize;

use super::{
    ACCESS_COOKIE, ConsoleConfig, FormBody, REFRESH_COOKIE, ROOT, back_to, cookie, render,
};

pub(super) fn router(config: ConsoleConfig) -> Router<App> {
    Router::new()
        .route(
            "/login",
            get(sign_in_page).post(move |state, client, form| sign_in(state, client, form, config)),
        )
        .route(
            "/logout",
            post(move |state, headers| sign_out(state, headers, config)),
        )
}

#[derive(Template)]
#[template(path = "console/login.html")]
struct SignInPage<'a> {
    methods: SignInMethods,
    next: &'a str,
    problem: Option<&'a str>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn sign_in_page(State(app): State<App>, Query(query): Query<NextQuery>) -> Response {
    render(&SignInPage {
        methods: app.sign_in_methods(),
        next: &safe_next(query.next.as_deref()),
        problem: None,
    })
}

#[derive(Deserialize)]
struct SignInForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    /// An identity provider's access token, instead of a user name and password.
    #[serde(default)]
    token: String,
    next: Option<String>,
}

async fn sign_in(
    State(app): State<App>,
    ClientAddress(client): ClientAddress,
    FormBody(form): FormBody<SignInForm>,
    config: ConsoleConfig,
) -> Response {
    let next = safe_next(form.next.as_deref());
    let signed_in = if form.token.trim().is_empty() {
        app.login(form.username.trim(), &form.password, client)
            .await
            .map(|pair| (pair.access_token, Some(pair.refresh_token)))
    } else if app.sign_in_methods().provider_token {
        let token = form.token.trim().to_owned();
        app.authenticate(&token).await.map(|_| (token, None))
    } else {
        Err(o16n_app::AppError::InvalidCredentials)
    };
    match signed_in {
        Ok((access, refresh)) => {
            let mut response = back_to(&next);
            let headers = response.headers_mut();
            headers.append(
                header::SET_COOKIE,
                session_cookie(ACCESS_COOKIE, &access, config),
            );
            if let Some(refresh) = refresh {
                headers.append(
                    header::SET_COOKIE,
                    session_cookie(REFRESH_COOKIE, &refresh, config),
                );
            }
            response
        }
        Err(err) => {
            tracing::info!(error = %err, "console sign-in refused");
            let page = SignInPage {
                methods: app.sign_in_methods(),
                next: &next,
                problem: Some("The user name, password or token was not accepted."),
            };
            (axum::http::StatusCode::UNAUTHORIZED, render(&page)).into_response()
        }
    }
}

/// Ends the login session (its access tokens stop working everywhere) and forgets the cookies.
async fn sign_out(State(app): State<App>, headers: HeaderMap, config: ConsoleConfig) -> Response {
    if let Some(refresh) = cookie(&headers, REFRESH_COOKIE)
        && let Err(err) = app.revoke(&refresh).await
    {
        tracing::info!(error = %err, "the console's refresh token was already gone");
    }
    let mut response = back_to(&format!("{ROOT}/login"));
    for name in [ACCESS_COOKIE, REFRESH_COOKIE] {
        response
            .headers_mut()
            .append(header::SET_COOKIE, session_cookie(name, "", config));
    }
    response
}

/// A cookie only the console's pages receive and no script can read; an empty value deletes
/// it.
fn session_cookie(name: &str, value: &str, config: ConsoleConfig) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path={ROOT}; HttpOnly; SameSite=Strict");
    if value.is_empty() {
        cookie.push_str("; Max-Age=0");
    }
    if config.secure_cookies {
        cookie.push_str("; Secure");
    }
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Where to go after signing in: a console page, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with(&format!("{ROOT}/"))
                && !path.contains("//")
                && !path.contains('\\') =>
        {
            path.to_owned()
        }
        _ => format!("{ROOT}/services"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_in_returns_only_to_console_pages() {
        assert_eq!(safe_next(Some("/console/sessions")), "/console/sessions");
        for hostile in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console//evil.example",
            "/consolex",
            "/console/\\evil",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/console/services", "{hostile}");
        }
        assert_eq!(safe_next(None), "/console/services");
    }
}
