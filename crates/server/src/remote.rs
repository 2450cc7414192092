//! A small client of a running server's REST API, for the admin tools that test a server from
//! the outside as a client would (`admin capacity run`, `admin diagnostic run`).

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A signed-in connection to a server.
#[derive(Clone)]
pub struct RemoteServer {
    url: String,
    client: reqwest::Client,
    token: String,
}

/// An answer: its status, its JSON body (or `null`) and its `Server-Timing` header.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub server_timing: Option<String>,
}

impl Answer {
    /// The server's error message, or the status.
    pub fn problem(&self) -> String {
        self.body["message"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", self.status), str::to_owned)
    }
}

impl RemoteServer {
    /// Signs in as `user`.
    pub async fn sign_in(url: &str, user: &str, password: &str) -> anyhow::Result<RemoteServer> {
        o16n_cluster::install_crypto_provider();
        let url = url.trim_end_matches('/').to_owned();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()
            .context("cannot create an HTTP client")?;
        let response = client
            .post(format!("{url}/login"))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {url}"))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(
            status == StatusCode::OK,
            "cannot sign in to {url} as {user}: {}",
            body["message"].as_str().unwrap_or(status.as_str())
        );
        let token = body["access_token"]
            .as_str()
            .context("the login answer has no access_token")?
            .to_owned();
        Ok(RemoteServer { url, client, token })
    }

    /// The server's address.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Calls `path` with an optional JSON body, asking for the stage timings of consumption.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Answer> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .header("X-O16N-Timing", "1");
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the server at {}", self.url))?;
        let status = response.status();
        let server_timing = response
            .headers()
            .get("server-timing")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::Null),
            server_timing,
        })
    }
}
