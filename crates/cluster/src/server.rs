//! The compute node's side of the internal API: the compute interface behind the cluster
//! secret.
//!
//! Every operation on values is one route, `POST /v1/call`, whose body is a
//! [`ComputeCall`] and whose answer is a [`ComputeReply`] (JSON); the four that move files and
//! archives have routes of their own whose bodies stream as they come. A call without the
//! secret (or with another) gets 401 before anything else happens. The streaming session calls
//! carry the session's owner in a header, which the node checks as its own callers would.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use futures_util::TryStreamExt;
use o16n_compute::{
    ByteStream, Compute, ComputeCall, ComputeError, ComputeReply, ContentRef, Download, SessionRef,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::tls::ServerTls;
use crate::wire::{OWNER_HEADER, status_of};

/// A compute node's failure, as a response.
struct Failure(ComputeError);

impl From<ComputeError> for Failure {
    fn from(error: ComputeError) -> Self {
        Failure(error)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        if let ComputeError::Internal(detail) = &self.0 {
            tracing::error!(error = %detail, "an internal call failed");
        }
        (status_of(&self.0), Json(self.0)).into_response()
    }
}

type Answer<T> = Result<T, Failure>;
type Node = State<Arc<dyn Compute>>;

/// The session a call addresses: its id from the path and its owner from the header.
fn session(id: String, headers: &HeaderMap) -> Result<SessionRef, Failure> {
    let owner = headers
        .get(OWNER_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|owner| !owner.is_empty())
        .ok_or_else(|| {
            ComputeError::InvalidInput(format!("the {OWNER_HEADER} header is missing"))
        })?;
    Ok(SessionRef {
        id,
        owner: owner.to_owned(),
    })
}

fn body_stream(body: Body) -> ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

fn stream_response(download: Download) -> Response {
    let mut response = Body::from_stream(download.content).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(size) = download.size {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, size.into());
    }
    response
}

/// The internal API over `compute`, admitting only calls that carry `secret`.
pub fn router(compute: Arc<dyn Compute>, secret: SecretString) -> Router {
    let secret = Arc::new(secret);
    Router::new()
        .route("/v1/call", post(call))
        .route(
            "/v1/sessions/{id}/files/{name}",
            put(upload_file).get(download_file),
        )
        .route("/v1/sessions/{id}/snapshot", post(export_snapshot))
        .route("/v1/contents/{digest}", put(put_content))
        // Web nodes are trusted once they prove the secret; their bodies are as large as the
        // REST API let in, and files and archives stream.
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(secret, require_secret))
        .with_state(compute)
}

/// Refuses a call that does not carry the cluster secret, comparing in constant time.
async fn require_secret(
    State(secret): State<Arc<SecretString>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    let expected = secret.expose_secret().as_bytes();
    if bool::from(presented.as_bytes().ct_eq(expected)) && !expected.is_empty() {
        next.run(request).await
    } else {
        tracing::warn!("refused an internal call without the cluster secret");
        (
            StatusCode::UNAUTHORIZED,
            Json(ComputeError::InvalidInput(
                "this call needs the cluster secret".to_owned(),
            )),
        )
            .into_response()
    }
}

/// Every operation on values: the call in, its reply out.
async fn call(State(node): Node, Json(call): Json<ComputeCall>) -> Answer<Json<ComputeReply>> {
    Ok(Json(node.call(call).await?))
}

async fn upload_file(
    State(node): Node,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer<StatusCode> {
    node.upload_file(&session(id, &headers)?, &name, body_stream(body))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn download_file(
    State(node): Node,
    Path((id, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer<Response> {
    let download = node.download_file(&session(id, &headers)?, &name).await?;
    Ok(stream_response(download))
}

async fn export_snapshot(
    State(node): Node,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Answer<Response> {
    let archive = node.export_snapshot(&session(id, &headers)?).await?;
    Ok(stream_response(archive))
}

#[derive(Deserialize)]
struct ContentQuery {
    size: u64,
}

async fn put_content(
    State(node): Node,
    Path(digest): Path<String>,
    Query(query): Query<ContentQuery>,
    body: Body,
) -> Answer<StatusCode> {
    let content = ContentRef {
        digest,
        size: query.size,
    };
    node.put_content(&content, body_stream(body)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Serves the internal API on `listener` until `shutdown` completes: HTTP/1.1 and HTTP/2
/// (cleartext, with prior knowledge), or both over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<ServerTls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Some(tls) = tls else {
        // Without TCP_NODELAY, a reply written in two parts waits for the web node's delayed
        // acknowledgement: 40 ms stalls on a fraction of calls.
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        return axum::serve(listener, router.into_make_service())
            .with_graceful_shutdown(shutdown)
            .await;
    };
    let acceptor = tls.acceptor();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted?,
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        connections
            .spawn(async move { serve_tls_connection(acceptor, router, stream, peer).await });
    }
    connections.close();
    connections.wait().await;
    Ok(())
}

async fn serve_tls_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    router: Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let stream = match acceptor.accept(stream).await {
        Ok(stream) => stream,
        Err(err) => {
            tracing::warn!(%peer, error = %err, "a TLS handshake on the internal API failed");
            return;
        }
    };
    let service = hyper_util::service::TowerToHyperService::new(router);
    let builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    if let Err(err) = builder
        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
        .await
    {
        tracing::debug!(%peer, error = %err, "an internal API connection ended");
    }
}
