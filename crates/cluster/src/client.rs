//! A web node's view of one compute node: the compute interface over the internal API.
//!
//! Requests go over one HTTP/2 connection per node (multiplexed; keep-alive pings notice a
//! node that stopped answering within seconds). A call that cannot connect fails with
//! [`ComputeError::NodeUnreachable`] (nothing was sent, so the caller may go elsewhere); a call
//! whose connection breaks while it runs fails with [`ComputeError::NodeUnavailable`] and is
//! never retried, because user code may have had side effects. Either marks the node unhealthy
//! at once, so that no new work goes there before the next health check. The node's own
//! failures arrive as the same [`ComputeError`] it raised.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use futures_util::TryStreamExt;
use o16n_compute::{
    ByteStream, Compute, ComputeCall, ComputeError, ComputeReply, ContentRef, Download, SessionRef,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;

use crate::wire::OWNER_HEADER;

/// One compute node, reached over the network.
pub struct RemoteNode {
    endpoint: Arc<str>,
    client: reqwest::Client,
    secret: SecretString,
    /// Requests this web node has running there now.
    in_flight: AtomicUsize,
    /// Sessions this web node has opened there, ever.
    sessions_opened: AtomicUsize,
    /// Whether the last contact succeeded.
    healthy: AtomicBool,
}

/// Counts a request as in flight for as long as it lives.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl RemoteNode {
    /// A node at `endpoint` (`http://host:port`), called with `client` and `secret`.
    pub(crate) fn new(endpoint: &str, client: reqwest::Client, secret: SecretString) -> RemoteNode {
        RemoteNode {
            endpoint: Arc::from(endpoint),
            client,
            secret,
            in_flight: AtomicUsize::new(0),
            sessions_opened: AtomicUsize::new(0),
            healthy: AtomicBool::new(false),
        }
    }

    /// Requests running there now, sent by this web node.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Sessions this web node has opened there since it started.
    pub(crate) fn sessions_opened(&self) -> usize {
        self.sessions_opened.load(Ordering::Relaxed)
    }

    pub(crate) fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Relaxed);
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.endpoint))
            .bearer_auth(self.secret.expose_secret())
    }

    fn session_request(&self, method: Method, path: &str, session: &SessionRef) -> RequestBuilder {
        let path = format!("/v1/sessions/{}{path}", encode(&session.id));
        self.request(method, &path)
            .header(OWNER_HEADER, &session.owner)
    }

    /// Sends a request; the node's failures become its errors, a broken transport
    /// `NodeUnavailable`.
    async fn send(&self, request: RequestBuilder) -> Result<Response, ComputeError> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(&self.in_flight);
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return Err(self.unreachable(&err)),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            self.set_healthy(false);
            return Err(ComputeError::NodeUnavailable(format!(
                "the compute node {} refused this web node's cluster secret (cluster.secret \
                 must be the same on every node)",
                self.endpoint
            )));
        }
        match response.json::<ComputeError>().await {
            Ok(error) => Err(error),
            Err(err) => Err(self.unreachable(&err)),
        }
    }

    fn unreachable(&self, err: &reqwest::Error) -> ComputeError {
        self.set_healthy(false);
        tracing::warn!(endpoint = %self.endpoint, error = %err, "a compute node call failed");
        if err.is_connect() {
            return ComputeError::NodeUnreachable(format!(
                "the compute node {} cannot be reached ({})",
                self.endpoint,
                describe(err)
            ));
        }
        ComputeError::NodeUnavailable(format!(
            "the compute node {} failed while the request was sent or ran ({}); the request \
             was not retried",
            self.endpoint,
            describe(err)
        ))
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, ComputeError> {
        let response = self.send(request).await?;
        response.json().await.map_err(|err| self.unreachable(&err))
    }

    async fn done(&self, request: RequestBuilder) -> Result<(), ComputeError> {
        self.send(request).await.map(drop)
    }

    fn download(&self, response: Response) -> Download {
        Download {
            size: response.content_length(),
            content: Box::pin(response.bytes_stream().map_err(std::io::Error::other)),
        }
    }
}

/// A path segment, percent-encoded (names are validated, but a segment must never be able to
/// change the path).
fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// What went wrong on the way, in a few words.
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_connect() {
        "cannot connect"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_body() || err.is_decode() {
        "the connection broke in the middle of the answer"
    } else {
        "the connection failed"
    };
    let mut detail = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        detail = format!("{detail}: {cause}");
        source = cause.source();
    }
    format!("{kind}: {detail}")
}

#[async_trait]
impl Compute for RemoteNode {
    async fn call(&self, call: ComputeCall) -> Result<ComputeReply, ComputeError> {
        let opens_session = matches!(call, ComputeCall::CreateSession(_));
        let reply = self
            .json(self.request(Method::POST, "/v1/call").json(&call))
            .await?;
        if opens_session {
            self.sessions_opened.fetch_add(1, Ordering::Relaxed);
        }
        Ok(reply)
    }

    async fn upload_file(
        &self,
        session: &SessionRef,
        name: &str,
        content: ByteStream,
    ) -> Result<(), ComputeError> {
        let request = self
            .session_request(Method::PUT, &format!("/files/{}", encode(name)), session)
            .body(reqwest::Body::wrap_stream(content));
        self.done(request).await
    }

    async fn download_file(
        &self,
        session: &SessionRef,
        name: &str,
    ) -> Result<Download, ComputeError> {
        let request =
            self.session_request(Method::GET, &format!("/files/{}", encode(name)), session);
        Ok(self.download(self.send(request).await?))
    }

    async fn export_snapshot(&self, session: &SessionRef) -> Result<Download, ComputeError> {
        let request = self.session_request(Method::POST, "/snapshot", session);
        Ok(self.download(self.send(request).await?))
    }

    async fn put_content(
        &self,
        content: &ContentRef,
        bytes: ByteStream,
    ) -> Result<(), ComputeError> {
        let request = self
            .request(
                Method::PUT,
                &format!("/v1/contents/{}", encode(&content.digest)),
            )
            .query(&[("size", content.size)])
            .body(reqwest::Body::wrap_stream(bytes));
        self.done(request).await
    }
}
