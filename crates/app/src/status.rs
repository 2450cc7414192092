//! The health report behind `GET /status`: the database, the authentication methods, and
//! every compute node with its pools.

use std::time::Duration;

use o16n_compute::{ComputeCall, NodeStatus, NodeView, PoolHealth};

use crate::App;

/// How long `/status` waits for a compute node's own report.
const NODE_STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// Health of the system or of one component, as the reference spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Working.
    Pass,
    /// Working, but degraded.
    Warn,
    /// Not working.
    Fail,
}

/// The state of the database.
#[derive(Debug, Clone)]
pub struct DatabaseStatus {
    /// `sqlite` or `postgresql`.
    pub backend: &'static str,
    /// Whether it answered a trivial query.
    pub health: Health,
    /// Why it did not, in words safe to show an authenticated user.
    pub problem: Option<String>,
}

/// Which kinds of authentication are enabled, and whether the directory answers.
#[derive(Debug, Clone)]
pub struct AuthenticationStatus {
    /// The active method: `local`, `ldap` or `oidc` (Azure AD or another OpenID Connect
    /// provider).
    pub method: &'static str,
    /// Local accounts (admin and the users added with the CLI) may sign in.
    pub local: bool,
    /// LDAP / Active Directory.
    pub ldap: bool,
    /// Azure Active Directory, or another OpenID Connect provider.
    pub azure_active_directory: bool,
    /// `Pass` when the directory or provider answers (or there is none), `Warn` when it does
    /// not: local sign-in and tokens already issued keep working.
    pub health: Health,
    /// Why the directory or provider does not answer.
    pub problem: Option<String>,
}

/// One compute node as `/status` reports it.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// Its endpoint (`local` for the one-box server's own).
    pub endpoint: String,
    /// Its pools, isolation and sessions, when it answered.
    pub status: Option<NodeStatus>,
    /// Why it did not answer.
    pub problem: Option<String>,
    /// `Pass` when it answers with every runtime ready and isolated, `Warn` when it answers
    /// degraded, `Fail` when it does not answer.
    pub health: Health,
}

/// The whole health report.
#[derive(Debug, Clone)]
pub struct SystemStatus {
    /// The worst health of any component.
    pub health: Health,
    /// The o16n version answering.
    pub version: &'static str,
    /// The database component.
    pub database: DatabaseStatus,
    /// The authentication component.
    pub authentication: AuthenticationStatus,
    /// Whether the nodes are remote (a web node) rather than the one-box server's own.
    pub remote_nodes: bool,
    /// Every compute node.
    pub nodes: Vec<NodeReport>,
    /// The health of the compute side as a whole: `Fail` when no node answers, `Warn` when one
    /// does not or is degraded (including user code that is not isolated).
    pub compute_health: Health,
}

/// What `/status` says when workers run without a sandbox.
pub const UNISOLATED: &str = "user code is not isolated: the worker sandbox is off \
                              (runtime.sandbox.enabled), so R and Python code runs as the server's user";

fn node_health(status: &NodeStatus) -> Health {
    let runtimes_ready = status
        .pools
        .iter()
        .filter(|pool| pool.service.is_none() && pool.environment.is_none())
        .all(|pool| pool.health == PoolHealth::Ready || pool.max_size == 0);
    if runtimes_ready && status.isolation.is_some() {
        Health::Pass
    } else {
        Health::Warn
    }
}

impl App {
    /// Every registered node with its own report, asked of all at once: its status, or why
    /// there is none (it is known not to answer, the call failed, or it took too long).
    pub(crate) async fn node_statuses(&self) -> Vec<(NodeView, Result<NodeStatus, String>)> {
        let views = self.nodes().all();
        futures_util::future::join_all(views.into_iter().map(|view| async move {
            let answer = if view.healthy {
                let status = view.node.compute.ask::<NodeStatus>(ComputeCall::Status);
                match tokio::time::timeout(NODE_STATUS_TIMEOUT, status).await {
                    Ok(Ok(status)) => Ok(status),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err("its status did not arrive in time".to_owned()),
                }
            } else {
                Err(view
                    .problem
                    .clone()
                    .unwrap_or_else(|| "not answering".to_owned()))
            };
            (view, answer)
        }))
        .await
    }

    /// The sign-in methods, with whether the directory or provider answers now.
    async fn authentication_status(&self) -> AuthenticationStatus {
        let sign_in = &self.inner.config.sign_in;
        let check = async {
            if let Some(directory) = &sign_in.ldap {
                directory.check().await
            } else if let Some(provider) = &sign_in.oidc {
                provider.check().await
            } else {
                Ok(())
            }
        };
        let problem = match tokio::time::timeout(NODE_STATUS_TIMEOUT, check).await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(err.to_string()),
            Err(_) => Some("the directory did not answer in time".to_owned()),
        };
        AuthenticationStatus {
            method: if sign_in.ldap.is_some() {
                "ldap"
            } else if sign_in.oidc.is_some() {
                "oidc"
            } else {
                "local"
            },
            local: !sign_in.directory_enabled() || sign_in.local_admin_enabled,
            ldap: sign_in.ldap.is_some(),
            azure_active_directory: sign_in.oidc.is_some(),
            health: if problem.is_none() {
                Health::Pass
            } else {
                Health::Warn
            },
            problem,
        }
    }

    /// Checks every component and reports.
    pub async fn status(&self) -> SystemStatus {
        let database = match self.store().ping().await {
            Ok(()) => DatabaseStatus {
                backend: self.store().backend().as_str(),
                health: Health::Pass,
                problem: None,
            },
            Err(err) => {
                tracing::warn!(error = %o16n_types::error_chain(&err), "database health check failed");
                DatabaseStatus {
                    backend: self.store().backend().as_str(),
                    health: Health::Fail,
                    problem: Some(err.to_string()),
                }
            }
        };
        let reports: Vec<NodeReport> = self
            .node_statuses()
            .await
            .into_iter()
            .map(|(view, answer)| {
                let endpoint = view.node.endpoint.to_string();
                match answer {
                    Ok(status) => NodeReport {
                        endpoint,
                        health: node_health(&status),
                        status: Some(status),
                        problem: None,
                    },
                    Err(problem) => NodeReport {
                        endpoint,
                        status: None,
                        problem: Some(problem),
                        health: Health::Fail,
                    },
                }
            })
            .collect();
        let compute_health = if reports.iter().all(|node| node.health == Health::Fail) {
            Health::Fail
        } else if reports.iter().all(|node| node.health == Health::Pass) {
            Health::Pass
        } else {
            Health::Warn
        };
        // A database or a compute side that does not answer at all fails the system (no
        // compute node registered counts as none answering); a node down or degraded warns.
        let health = match (database.health, compute_health) {
            (Health::Fail, _) | (_, Health::Fail) => Health::Fail,
            (_, Health::Pass) => Health::Pass,
            _ => Health::Warn,
        };
        let authentication = self.authentication_status().await;
        let health = if health == Health::Pass && authentication.health != Health::Pass {
            Health::Warn
        } else {
            health
        };
        SystemStatus {
            health,
            version: env!("CARGO_PKG_VERSION"),
            database,
            authentication,
            remote_nodes: self.nodes().remote(),
            nodes: reports,
            compute_health,
        }
    }
}
