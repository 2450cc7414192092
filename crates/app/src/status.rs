//! The health report behind `GET /status`.

use crate::{App, PoolHealth, PoolStatus};

/// What `/status` says when workers run without a sandbox.
const UNISOLATED: &str = "user code is not isolated: the worker sandbox is off \
                          (runtime.sandbox.enabled), so R and Python code runs as the server's user";

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

/// Which kinds of authentication are enabled.
#[derive(Debug, Clone)]
pub struct AuthenticationStatus {
    /// Local accounts (admin and the users added with the CLI).
    pub local: bool,
    /// LDAP / Active Directory.
    pub ldap: bool,
    /// Azure Active Directory.
    pub azure_active_directory: bool,
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
    /// The runtimes' pools on this compute node.
    pub runtimes: Vec<PoolStatus>,
    /// `Pass` when every runtime this node offers is ready and its user code isolated, else
    /// `Warn`.
    pub runtimes_health: Health,
    /// Whether user code runs sandboxed.
    pub sandboxed: bool,
    /// How user code is isolated, or that it is not.
    pub isolation: String,
}

impl App {
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
        let runtimes = self.compute().status();
        let isolation = self.compute().isolation();
        // A runtime that cannot serve, or runs user code unisolated, degrades the system; only
        // a dead database fails it.
        let runtimes_ok = isolation.is_some()
            && runtimes
                .iter()
                .all(|pool| pool.health == PoolHealth::Ready || pool.max_size == 0);
        let runtimes_health = if runtimes_ok {
            Health::Pass
        } else {
            Health::Warn
        };
        let health = match (database.health, runtimes_ok) {
            (Health::Fail, _) => Health::Fail,
            (_, false) => Health::Warn,
            (health, true) => health,
        };
        SystemStatus {
            health,
            runtimes,
            runtimes_health,
            sandboxed: isolation.is_some(),
            isolation: isolation.unwrap_or(UNISOLATED).to_owned(),
            version: env!("CARGO_PKG_VERSION"),
            database,
            authentication: AuthenticationStatus {
                local: true,
                ldap: false,
                azure_active_directory: false,
            },
        }
    }
}
