//! Extractors whose failures speak the reference `Error` shape, and the bearer-token check.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use o16n_app::{App, Principal};
use o16n_types::Code;
use serde::de::DeserializeOwned;

use crate::ApiError;
use crate::audit::AuditIdentity;

/// The address of the client the request came from, when the server knows it (the listener
/// records each connection's peer; a request built in a test may have none).
pub(crate) struct ClientAddress(pub(crate) Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddress(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// A JSON request body; malformed JSON, wrong field types, a wrong content type and an oversize
/// body all become [`ApiError`]s with the matching status.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// The kind of failure of a body axum refused with `status`: too large, of the wrong type, or
/// malformed.
pub(crate) fn body_rejection_code(status: axum::http::StatusCode) -> Code {
    match status.as_u16() {
        413 => Code::PayloadTooLarge,
        415 => Code::UnsupportedMediaType,
        _ => Code::BadRequest,
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let code = body_rejection_code(rejection.status());
    let message = match &rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a request body with `Content-Type: application/json`".to_owned()
        }
        JsonRejection::BytesRejection(_) if code == Code::PayloadTooLarge => {
            "the request body is larger than the server accepts".to_owned()
        }
        _ => rejection.body_text(),
    };
    ApiError::new(code, message)
}

/// Query-string parameters; a missing or malformed parameter becomes a 400.
pub(crate) struct QueryParams<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryParams(value)),
            Err(rejection) => Err(query_rejection(rejection)),
        }
    }
}

fn query_rejection(rejection: QueryRejection) -> ApiError {
    ApiError::new(Code::BadRequest, rejection.body_text())
}

/// The authenticated caller. Taking this as a handler argument makes the route require a valid
/// `Authorization: Bearer <access_token>` header.
pub(crate) struct AuthUser(pub(crate) Principal);

impl FromRequestParts<App> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                Code::Unauthorized,
                "an `Authorization: Bearer <access_token>` header is required",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|value| {
                let (scheme, token) = value.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|token| !token.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    Code::Unauthorized,
                    "the Authorization header must be `Bearer <access_token>`",
                )
                .with_bad_token()
            })?;
        let principal = app
            .authenticate(token)
            .await
            .map_err(|err| ApiError::from(err).with_bad_token())?;
        if let Some(identity) = parts.extensions.get::<AuditIdentity>() {
            identity.record(&principal);
        }
        Ok(AuthUser(principal))
    }
}

/// A JSON body that may also be absent: an empty body reads as `T::default()`. The reference
/// marks some bodies required that clients do send empty (`POST /sessions` with no options).
pub(crate) struct OptionalJsonBody<T>(pub(crate) T);

impl<T, S> FromRequest<S> for OptionalJsonBody<T>
where
    T: DeserializeOwned + Default,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let empty_body = req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|length| length == "0")
            || (!req
                .headers()
                .contains_key(axum::http::header::CONTENT_LENGTH)
                && !req
                    .headers()
                    .contains_key(axum::http::header::TRANSFER_ENCODING));
        if empty_body {
            return Ok(OptionalJsonBody(T::default()));
        }
        let JsonBody(value) = JsonBody::<T>::from_request(req, state).await?;
        Ok(OptionalJsonBody(value))
    }
}

/// The raw request body, of any content type (workspace objects arrive as
/// `application/octet-stream`).
pub(crate) struct RawBody(pub(crate) axum::body::Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|rejection| {
                let code = if rejection.status().as_u16() == 413 {
                    Code::PayloadTooLarge
                } else {
                    Code::BadRequest
                };
                ApiError::new(code, rejection.body_text())
            })
    }
}

/// Path parameters; a segment that does not decode becomes a 400.
pub(crate) struct PathParams<T>(pub(crate) T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection| ApiError::new(Code::BadRequest, rejection.body_text()))
    }
}

/// A `multipart/form-data` upload whose file part is streamed on as it arrives, never held
/// whole in memory.
pub(crate) struct StreamedForm(axum::extract::Multipart);

impl<S> FromRequest<S> for StreamedForm
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Multipart::from_request(req, state)
            .await
            .map(StreamedForm)
            .map_err(|rejection| {
                multipart_error(rejection.status().as_u16(), rejection.body_text())
            })
    }
}

impl StreamedForm {
    /// Hands the first file part (its file name and its bytes, as they arrive) to `consume`.
    pub(crate) async fn stream_file<T, F>(
        mut self,
        consume: impl FnOnce(String, o16n_app::ByteStream) -> F,
    ) -> Result<T, ApiError>
    where
        F: std::future::Future<Output = Result<T, ApiError>>,
    {
        let mut field = loop {
            match self
                .0
                .next_field()
                .await
                .map_err(|err| multipart_error(err.status().as_u16(), err.body_text()))?
            {
                Some(field) if field.file_name().is_some() => break field,
                Some(_) => continue,
                None => {
                    return Err(ApiError::new(
                        Code::BadRequest,
                        "the multipart body has no file part (expected a `file` field with a file name)",
                    ));
                }
            }
        };
        let file_name = field.file_name().unwrap_or_default().to_owned();
        // The field borrows the form, so its chunks are passed on through a channel while the
        // consumer reads them; both run until the file is through.
        let (chunks, received) = tokio::sync::mpsc::channel(4);
        let content: o16n_app::ByteStream = Box::pin(futures_util::stream::unfold(
            received,
            |mut received| async move { received.recv().await.map(|chunk| (chunk, received)) },
        ));
        let pump = async move {
            loop {
                let chunk = match field.chunk().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => return,
                    Err(err) => Err(std::io::Error::other(err.body_text())),
                };
                let failed = chunk.is_err();
                if chunks.send(chunk).await.is_err() || failed {
                    return;
                }
            }
        };
        let ((), consumed) = tokio::join!(pump, consume(file_name, content));
        consumed
    }
}

/// One part of a `multipart/form-data` body.
pub(crate) struct FormPart {
    pub(crate) name: String,
    pub(crate) content: axum::body::Bytes,
}

/// Every part of a `multipart/form-data` body, in order.
pub(crate) struct MultipartForm(pub(crate) Vec<FormPart>);

impl MultipartForm {
    /// Takes the part named `name`.
    pub(crate) fn take(&mut self, name: &str) -> Option<axum::body::Bytes> {
        let position = self.0.iter().position(|part| part.name == name)?;
        Some(self.0.remove(position).content)
    }

    /// Takes the text part named `name`, which must be UTF-8.
    pub(crate) fn take_text(&mut self, name: &str) -> Result<Option<String>, ApiError> {
        self.take(name)
            .map(|bytes| {
                String::from_utf8(bytes.to_vec()).map_err(|_| {
                    ApiError::new(
                        Code::BadRequest,
                        format!("the form field `{name}` is not UTF-8 text"),
                    )
                })
            })
            .transpose()
    }

    /// Fails on a part that the route has not taken (a field it does not know, or one given
    /// twice), so that a misspelt field is not ignored.
    pub(crate) fn finish(self) -> Result<(), ApiError> {
        match self.0.first() {
            None => Ok(()),
            Some(part) => Err(ApiError::new(
                Code::BadRequest,
                format!(
                    "unexpected form field `{}`: unknown, or given twice",
                    part.name
                ),
            )),
        }
    }
}

fn multipart_error(status: u16, text: String) -> ApiError {
    let code = match status {
        413 => Code::PayloadTooLarge,
        415 => Code::UnsupportedMediaType,
        _ => Code::BadRequest,
    };
    ApiError::new(code, text)
}

impl<S> FromRequest<S> for MultipartForm
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut multipart = axum::extract::Multipart::from_request(req, state)
            .await
            .map_err(|rejection| {
                multipart_error(rejection.status().as_u16(), rejection.body_text())
            })?;
        let mut parts: Vec<FormPart> = Vec::new();
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|err| multipart_error(err.status().as_u16(), err.body_text()))?
        {
            let name = field.name().unwrap_or_default().to_owned();
            let content = field
                .bytes()
                .await
                .map_err(|err| multipart_error(err.status().as_u16(), err.body_text()))?;
            parts.push(FormPart { name, content });
        }
        Ok(MultipartForm(parts))
    }
}

/// A JSON request body as text, for use cases that parse it themselves (and may keep it as it
/// came). The content type must be JSON; the body must be UTF-8.
pub(crate) struct JsonText(pub(crate) String);

impl<S> FromRequest<S> for JsonText
where
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json") || value.contains("+json"));
        if !is_json {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "expected a request body with `Content-Type: application/json`",
            ));
        }
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        String::from_utf8(bytes.to_vec())
            .map(JsonText)
            .map_err(|_| ApiError::new(Code::BadRequest, "the request body is not UTF-8"))
    }
}
