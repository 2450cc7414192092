//! The configuration tree, layered: built-in defaults < TOML file (`--config`) < environment
//! (`O16N_SECTION__KEY`) < command-line flags.
//!
//! `config/o16n.example.toml` documents every key with its default; a test keeps it equal to
//! [`Config::default`]. Secrets are [`SecretString`], whose `Debug` is redacted, so the resolved
//! configuration can be logged at start-up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Everything o16n can be configured with.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the embedded database, the admin password file and (later) runtimes live.
    pub data_dir: PathBuf,
    /// The HTTP listener.
    pub http: HttpConfig,
    /// The database.
    pub database: DatabaseConfig,
    /// Tokens and login sessions.
    pub auth: AuthConfig,
    /// The compute side: worker pools and sessions.
    pub runtime: RuntimeConfig,
    /// Asynchronous batch consumption.
    pub batch: BatchConfig,
    /// Named environments: where their packages come from and how they are built.
    pub environments: EnvironmentsSection,
    /// `GET /metrics` (Prometheus).
    pub metrics: MetricsConfig,
    /// Web nodes and compute nodes on several machines.
    pub cluster: ClusterConfig,
    /// Logging.
    pub log: LogConfig,
    /// The clock that expiries (idle sessions, batch leases) are measured by: the wall clock,
    /// which tests move forward instead of waiting. Not a setting.
    #[serde(skip)]
    pub clock: o16n_types::Clock,
}

/// `GET /metrics` (Prometheus).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Whether figures are counted and served at `/metrics`.
    pub enabled: bool,
    /// The bearer token a scraper must send; when it is not set, `/metrics` answers only
    /// callers on the machine's loopback.
    pub bearer_token: Option<SecretString>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            bearer_token: None,
        }
    }
}

/// Web nodes and compute nodes on several machines.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// The secret every call between web nodes and compute nodes carries; the same on every
    /// node. Required by compute nodes and web nodes.
    pub secret: Option<SecretString>,
    /// Compute nodes a web node sends work to besides those stored by `/computenodes` (URIs
    /// or ranges, as there).
    pub compute_nodes: Vec<String>,
    /// How often a web node checks every compute node, in milliseconds.
    pub health_interval_ms: u64,
    /// How long a check waits for an answer, in milliseconds; a node that does not answer
    /// gets no new work.
    pub health_timeout_ms: u64,
    /// How often a web node sends the dedicated pools to every compute node besides when they
    /// change, in milliseconds: a node that joins or restarts has them within this time.
    pub pool_sync_interval_ms: u64,
    /// TLS between web nodes and compute nodes (optional).
    pub tls: ClusterTlsConfig,
}

/// TLS between web nodes and compute nodes: a compute node serves `https://` with its
/// certificate and key; a web node trusts the certificate authority for `https://` entries.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterTlsConfig {
    /// A compute node's certificate chain (PEM).
    pub certificate: Option<PathBuf>,
    /// A compute node's private key (PEM).
    pub key: Option<PathBuf>,
    /// The certificate authority a web node trusts for compute nodes (PEM), besides the
    /// system's.
    pub ca_certificate: Option<PathBuf>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            secret: None,
            compute_nodes: Vec::new(),
            health_interval_ms: 500,
            health_timeout_ms: 1000,
            pool_sync_interval_ms: 5000,
            tls: ClusterTlsConfig::default(),
        }
    }
}

/// The HTTP listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on.
    pub bind: String,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
    /// Largest body of a request that carries data (consume, batch, execute, publish, workspace
    /// objects), in bytes. Small control requests (login, token renewal, ...) are limited to
    /// 1 MiB whatever this says.
    pub max_body_bytes: usize,
    /// Largest uploaded file or realtime model, in bytes.
    pub max_upload_bytes: usize,
    /// Marks the web console's cookies `Secure`: set it when browsers reach the server over
    /// HTTPS (through a proxy that terminates TLS).
    pub secure_cookies: bool,
}

/// The database.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite:` or `postgres://` URL; unset means SQLite at `DATA_DIR/o16n.db`.
    pub url: Option<SecretString>,
    /// Most connections in the pool.
    pub max_connections: u32,
    /// Seconds a query waits for a free connection.
    pub acquire_timeout_seconds: u64,
}

/// Tokens and login sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of an access token.
    pub access_token_lifetime_seconds: u64,
    /// A refresh token unused for this long expires.
    pub refresh_token_idle_lifetime_seconds: u64,
    /// No renewal past this age of a login session.
    pub max_login_session_lifetime_seconds: u64,
    /// How long a node trusts its cached check that a login session was not revoked elsewhere.
    pub revocation_check_interval_seconds: u64,
    /// Failed sign-ins one client address may make at once; they then come back at this many
    /// per `login_failure_window_seconds`. Beyond, sign-ins from it are answered 429.
    pub login_failures_per_address: u32,
    /// The same per user name.
    pub login_failures_per_user: u32,
    /// The time in which a client's or a name's allowance of failed sign-ins comes back.
    pub login_failure_window_seconds: u64,
    /// Passwords checked (argon2: 19 MiB and tens of milliseconds each) at once on this node.
    pub max_concurrent_password_checks: usize,
    /// How long a sign-in waits for a password check to start before it is answered 429.
    pub password_check_wait_ms: u64,
    /// Local accounts while a directory or provider signs users in.
    pub local: LocalAuthSection,
    /// LDAP / LDAP-S / Active Directory sign-in at `POST /login`.
    pub ldap: LdapSection,
    /// Bearer tokens of Azure AD or another OpenID Connect provider.
    pub oidc: OidcSection,
    /// Which directory or provider groups give which role.
    pub roles: RolesSection,
}

/// Local accounts while a directory or provider signs users in (without one, local accounts
/// always sign in).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalAuthSection {
    /// Whether the local `admin` may still sign in (the reference turns it off).
    pub admin_enabled: bool,
}

/// LDAP / LDAP-S / Active Directory sign-in (the reference's `LDAP` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapSection {
    /// Whether users sign in with the directory.
    pub enabled: bool,
    /// `ldap://host:389` or `ldaps://host:636` (Active Directory's Global Catalog: 3268/3269).
    pub url: String,
    /// Whether an `ldap://` connection is upgraded with StartTLS.
    pub start_tls: bool,
    /// Certificate authorities (PEM) trusted for LDAP-S and StartTLS, besides the system's.
    pub ca_certificate: Option<PathBuf>,
    /// The service account that searches for users.
    pub query_user_dn: String,
    /// The service account's password.
    pub query_user_password: Option<SecretString>,
    /// Where users are searched for.
    pub search_base: String,
    /// The filter that finds a user; `{0}` is the user name as typed (escaped).
    pub search_filter: String,
    /// The attribute o16n knows a user by; do not change it once users own services.
    pub unique_user_identifier_attribute: String,
    /// The attribute with a user's display name.
    pub display_name_attribute: String,
    /// The attribute with a user's e-mail address.
    pub email_attribute: String,
    /// The longest a sign-in may wait for the directory, in seconds.
    pub timeout_seconds: u64,
}

impl Default for LdapSection {
    fn default() -> Self {
        LdapSection {
            enabled: false,
            url: "ldap://localhost:389".to_owned(),
            start_tls: false,
            ca_certificate: None,
            query_user_dn: String::new(),
            query_user_password: None,
            search_base: String::new(),
            search_filter: "(uid={0})".to_owned(),
            unique_user_identifier_attribute: "uid".to_owned(),
            display_name_attribute: "displayName".to_owned(),
            email_attribute: "mail".to_owned(),
            timeout_seconds: 5,
        }
    }
}

/// Bearer tokens of Azure AD or another OpenID Connect provider (the reference's
/// `AzureActiveDirectory` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OidcSection {
    /// Whether the provider's tokens are accepted.
    pub enabled: bool,
    /// The issuer URL (`https://login.microsoftonline.com/<tenant>/v2.0`, ...).
    pub authority: String,
    /// The audience tokens must be issued for (Azure AD: the web application's id).
    pub audience: String,
    /// The claim that names the user: `upn`, `preferred_username`, `email` or `sub`.
    pub username_claim: String,
    /// The claim that lists the user's groups.
    pub groups_claim: String,
    /// The longest one fetch from the provider may take, in seconds.
    pub timeout_seconds: u64,
    /// The shortest time between two fetches of the provider's keys caused by tokens signed
    /// with a key not seen before, in seconds.
    pub key_refetch_interval_seconds: u64,
}

impl Default for OidcSection {
    fn default() -> Self {
        OidcSection {
            enabled: false,
            authority: String::new(),
            audience: String::new(),
            username_claim: "upn".to_owned(),
            groups_claim: "groups".to_owned(),
            timeout_seconds: 5,
            key_refetch_interval_seconds: 60,
        }
    }
}

/// Which groups give which role (the reference's `Authorization` section).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolesSection {
    /// Groups whose members are Owners.
    pub owner: Vec<String>,
    /// Groups whose members are Contributors.
    pub contributor: Vec<String>,
    /// Groups whose members are Readers.
    pub reader: Vec<String>,
    /// How long a directory user's groups are trusted before a token renewal reads them again.
    pub cache_lifetime_minutes: u64,
}

impl Default for RolesSection {
    fn default() -> Self {
        RolesSection {
            owner: Vec::new(),
            contributor: Vec::new(),
            reader: Vec::new(),
            cache_lifetime_minutes: 60,
        }
    }
}

/// Asynchronous batch consumption.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BatchConfig {
    /// The most records one batch runs at once, whatever it asks for (the reference's
    /// `MaxNumberOfThreadsPerBatchExecution`).
    pub max_parallelism: i64,
    /// How long a web node's claim on a batch lasts unless renewed, in seconds: a batch of a
    /// web node that died is taken over by another after this.
    pub lease_seconds: u64,
    /// How often a web node looks for batches to run (besides when one is announced), in
    /// milliseconds.
    pub poll_interval_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_parallelism: 100,
            lease_seconds: 30,
            poll_interval_ms: 1000,
        }
    }
}

/// Named environments (an o16n extension).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnvironmentsSection {
    /// The Python package index environments resolve and install from (a PEP 503 "simple"
    /// URL; an organisation's mirror in practice).
    pub python_index_url: String,
    /// Further Python indexes, searched after the first.
    pub python_extra_index_urls: Vec<String>,
    /// The CRAN-like repositories R environments take packages from.
    pub r_repositories: Vec<String>,
    /// Whether requirement lines may name other sources (URLs, VCS, paths, index options) and
    /// R environments other repositories. Off by default: only the configured sources.
    pub allow_other_sources: bool,
    /// The longest one build may run, in seconds.
    pub build_timeout_seconds: u64,
    /// Workers kept warm per environment in use on each compute node (the runtimes' default
    /// environments have their own pool sizes); 0 starts them on demand.
    pub pool_size: usize,
    /// Whether builds may build packages from source, which runs the packages' own build code
    /// (a Python sdist's, any R package's). Off by default: Python environments take wheels
    /// only, and R environments (whose packages come as source) cannot be built.
    pub allow_source_builds: bool,
}

impl Default for EnvironmentsSection {
    fn default() -> Self {
        EnvironmentsSection {
            python_index_url: "https://pypi.org/simple".to_owned(),
            python_extra_index_urls: Vec::new(),
            r_repositories: vec!["https://cloud.r-project.org".to_owned()],
            allow_other_sources: false,
            build_timeout_seconds: 900,
            pool_size: 0,
            allow_source_builds: false,
        }
    }
}

/// The compute side.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Longest an execution may run before it is interrupted (and killed if it will not stop).
    pub execution_timeout_seconds: u64,
    /// Sessions unused for this long are closed.
    pub session_idle_timeout_seconds: u64,
    /// Longest a worker may take to start and import its packages.
    pub worker_startup_timeout_seconds: u64,
    /// Largest message a worker may send (a serialized object or workspace), in MiB; a worker
    /// that announces a larger one is stopped.
    pub max_frame_mb: usize,
    /// The most console output (what user code prints) the server keeps of one execution, in
    /// KiB; the rest is dropped and a line at the end says how much.
    pub max_console_kb: usize,
    /// The most content (snapshot archives sent by digest) a compute node keeps, in MiB.
    pub content_cache_mb: u64,
    /// How long a request of a service with a dedicated pool waits for one of the pool's
    /// workers when all are busy, in seconds, before it is refused (503).
    pub dedicated_pool_wait_seconds: u64,
    /// The most sessions one user may have open at once, across all nodes (0: no limit); one
    /// more is refused with 429 and the reason.
    pub max_sessions_per_user: usize,
    /// How workers are isolated from the server and from each other.
    pub sandbox: SandboxSection,
    /// The Python runtime.
    pub python: PythonRuntimeConfig,
    /// The R runtime.
    pub r: RRuntimeConfig,
}

/// The worker sandbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSection {
    /// Whether every worker runs in a sandbox of its own; off runs user code unisolated.
    pub enabled: bool,
    /// Whether workers may use the network; a runtime's own `network` key overrides this.
    pub network: bool,
    /// The first of the host user ids given to workers (a server running as root).
    pub first_uid: u32,
    /// How many user ids workers may use: the most workers alive at once on the machine.
    pub uid_count: u32,
    /// Where the locks that keep two workers from sharing a user id live.
    pub lock_dir: PathBuf,
    /// Most processes and threads one worker may have (a fork bomb stops there).
    pub max_processes: u64,
    /// Largest file a worker may write, in MiB.
    pub max_file_size_mb: u64,
    /// Most files a worker may have open at once.
    pub max_open_files: u64,
    /// Size of each worker's private `/tmp`, in MiB (memory, outside its address-space limit).
    pub tmp_size_mb: u64,
    /// Size of each worker's private `/dev/shm`, in MiB.
    pub shm_size_mb: u64,
    /// Destinations (`ADDRESS[/PREFIX]:PORT`) that workers and builds with the network on
    /// reach although their range is denied (private, loopback, link-local): a database, say.
    pub network_allow: Vec<o16n_runtime::AllowedDestination>,
}

impl Default for SandboxSection {
    fn default() -> Self {
        SandboxSection {
            enabled: true,
            network: true,
            first_uid: 2_000_000_000,
            uid_count: 65_536,
            lock_dir: PathBuf::from("/run/o16n/worker-uids"),
            max_processes: 256,
            max_file_size_mb: 1024,
            max_open_files: 1024,
            tmp_size_mb: 256,
            shm_size_mb: 64,
            network_allow: Vec::new(),
        }
    }
}

/// The R runtime and its pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RRuntimeConfig {
    /// The `Rscript` to run (Debian's r-base-core, with r-cran-jsonlite).
    pub rscript: PathBuf,
    /// Workers kept warm.
    pub initial_size: usize,
    /// Most workers alive.
    pub max_size: usize,
    /// How long a request waits for a worker when all are busy.
    pub acquire_timeout_seconds: u64,
    /// Most workers running web services at once.
    pub max_service_workers: usize,
    /// Most services one worker keeps loaded.
    pub max_services_per_worker: usize,
    /// Address-space limit per worker in MiB; 0 for none.
    pub memory_limit_mb: u64,
    /// Whether R workers may use the network; unset follows `runtime.sandbox.network`.
    pub network: Option<bool>,
    /// Whether workers are forked from a warmed template (where the sandbox allows it: a
    /// server running as root, and a C compiler to build the template's helper) instead of
    /// each starting R.
    pub fork_workers: bool,
}

impl Default for RRuntimeConfig {
    fn default() -> Self {
        RRuntimeConfig {
            rscript: PathBuf::from("Rscript"),
            initial_size: 2,
            max_size: 8,
            acquire_timeout_seconds: 30,
            max_service_workers: 2,
            max_services_per_worker: 16,
            memory_limit_mb: 2048,
            network: None,
            fork_workers: true,
        }
    }
}

/// The Python runtime and its pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PythonRuntimeConfig {
    /// An existing interpreter (with numpy, pandas, scikit-learn and dill) instead of the
    /// managed environment.
    pub executable: Option<PathBuf>,
    /// The interpreter that creates the managed environment.
    pub base_interpreter: PathBuf,
    /// Workers kept warm (the reference's `InitialSize`).
    pub initial_size: usize,
    /// Most workers alive (the reference's `MaxSize`).
    pub max_size: usize,
    /// How long a request waits for a worker when all are busy.
    pub acquire_timeout_seconds: u64,
    /// Most workers running web services at once (taken from the pool).
    pub max_service_workers: usize,
    /// Most services one worker keeps loaded.
    pub max_services_per_worker: usize,
    /// Address-space limit per worker in MiB; 0 for none.
    pub memory_limit_mb: u64,
    /// Whether Python workers may use the network; unset follows `runtime.sandbox.network`.
    pub network: Option<bool>,
    /// Whether workers are forked from a warmed template (where the sandbox allows it: a
    /// server running as root) instead of each starting an interpreter and its imports.
    pub fork_workers: bool,
}

/// Logging.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `o16n=debug,info`, ...); `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./o16n-data"),
            http: HttpConfig::default(),
            database: DatabaseConfig::default(),
            auth: AuthConfig::default(),
            runtime: RuntimeConfig::default(),
            batch: BatchConfig::default(),
            environments: EnvironmentsSection::default(),
            metrics: MetricsConfig::default(),
            cluster: ClusterConfig::default(),
            log: LogConfig::default(),
            clock: o16n_types::Clock::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            bind: "127.0.0.1".to_owned(),
            port: 12800,
            max_body_bytes: 256 * 1024 * 1024,
            max_upload_bytes: 1024 * 1024 * 1024,
            secure_cookies: false,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: 10,
            acquire_timeout_seconds: 30,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            access_token_lifetime_seconds: 3600,
            refresh_token_idle_lifetime_seconds: 14 * 24 * 3600,
            max_login_session_lifetime_seconds: 90 * 24 * 3600,
            revocation_check_interval_seconds: 5,
            login_failures_per_address: 30,
            login_failures_per_user: 10,
            login_failure_window_seconds: 60,
            max_concurrent_password_checks: 2,
            password_check_wait_ms: 2000,
            local: LocalAuthSection::default(),
            ldap: LdapSection::default(),
            oidc: OidcSection::default(),
            roles: RolesSection::default(),
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            execution_timeout_seconds: 600,
            session_idle_timeout_seconds: 3600,
            worker_startup_timeout_seconds: 60,
            max_frame_mb: 512,
            max_console_kb: 1024,
            max_sessions_per_user: 10,
            content_cache_mb: 4096,
            dedicated_pool_wait_seconds: 30,
            sandbox: SandboxSection::default(),
            python: PythonRuntimeConfig::default(),
            r: RRuntimeConfig::default(),
        }
    }
}

impl Default for PythonRuntimeConfig {
    fn default() -> Self {
        PythonRuntimeConfig {
            executable: None,
            base_interpreter: PathBuf::from("python3"),
            initial_size: 2,
            max_size: 8,
            acquire_timeout_seconds: 30,
            max_service_workers: 2,
            max_services_per_worker: 16,
            memory_limit_mb: 2048,
            network: None,
            fork_workers: true,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
        }
    }
}

/// Command-line flags that override the layered configuration.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--database-url`.
    pub database_url: Option<String>,
    /// `--bind`.
    pub bind: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
}

impl Config {
    /// Resolves the configuration from the optional TOML file, the given environment and the
    /// command-line overrides.
    pub fn load(
        file: Option<&Path>,
        environment: impl IntoIterator<Item = (String, String)>,
        overrides: Overrides,
    ) -> anyhow::Result<Config> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            anyhow::ensure!(
                file.is_file(),
                "configuration file {} not found",
                file.display()
            );
            figment = figment.merge(Toml::file_exact(file));
        }
        // Only `O16N_SECTION__KEY` and `O16N_DATA_DIR` are configuration: other `O16N_`
        // variables (such as `O16N_ADMIN_PASSWORD`) have meanings of their own.
        for (name, raw_value) in environment {
            let Some(key) = name.strip_prefix("O16N_") else {
                continue;
            };
            if !(key.contains("__") || key == "DATA_DIR") {
                continue;
            }
            let key = key.to_ascii_lowercase().replace("__", ".");
            // Values are parsed like TOML scalars, so `O16N_HTTP__PORT=8080` is a number.
            let value: Value = raw_value.parse().unwrap_or_else(|never| match never {});
            figment = figment.merge(Serialized::default(&key, value));
        }
        let mut config: Config = figment.extract().context("invalid configuration")?;
        if let Some(data_dir) = overrides.data_dir {
            config.data_dir = data_dir;
        }
        if let Some(url) = overrides.database_url {
            config.database.url = Some(SecretString::from(url));
        }
        if let Some(bind) = overrides.bind {
            config.http.bind = bind;
        }
        if let Some(port) = overrides.port {
            config.http.port = port;
        }
        // Workers run in directories of their own, so every path handed down must be absolute.
        config.data_dir = std::path::absolute(&config.data_dir)
            .with_context(|| format!("invalid data directory {}", config.data_dir.display()))?;
        Ok(config)
    }

    /// The database URL: the configured one, or the SQLite file in the data directory.
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.expose_secret().to_owned(),
            None => o16n_store::Store::sqlite_url(&self.data_dir.join("o16n.db")),
        }
    }

    /// The store settings.
    pub fn store_config(&self) -> o16n_store::StoreConfig {
        o16n_store::StoreConfig {
            url: self.database_url(),
            max_connections: self.database.max_connections,
            acquire_timeout: Duration::from_secs(self.database.acquire_timeout_seconds),
        }
    }

    /// How users sign in: the directory and provider built from `auth.ldap` and `auth.oidc`.
    pub fn sign_in(&self) -> anyhow::Result<o16n_app::SignInConfig> {
        let auth = &self.auth;
        anyhow::ensure!(
            !(auth.ldap.enabled && auth.oidc.enabled),
            "auth.ldap and auth.oidc cannot both be enabled: users sign in with one directory, as in the reference"
        );
        let ldap = if auth.ldap.enabled {
            let ldap = &auth.ldap;
            let settings = o16n_directory::LdapSettings {
                url: ldap.url.clone(),
                start_tls: ldap.start_tls,
                ca_certificate: ldap.ca_certificate.clone(),
                query_user_dn: ldap.query_user_dn.clone(),
                query_user_password: ldap
                    .query_user_password
                    .clone()
                    .unwrap_or_else(|| SecretString::from("")),
                search_base: ldap.search_base.clone(),
                search_filter: ldap.search_filter.clone(),
                unique_user_identifier_attribute: ldap.unique_user_identifier_attribute.clone(),
                display_name_attribute: ldap.display_name_attribute.clone(),
                email_attribute: ldap.email_attribute.clone(),
                timeout: Duration::from_secs(ldap.timeout_seconds.max(1)),
            };
            let directory = o16n_directory::LdapDirectory::new(settings)?;
            Some(std::sync::Arc::new(directory) as std::sync::Arc<dyn o16n_directory::Directory>)
        } else {
            None
        };
        let oidc = if auth.oidc.enabled {
            let oidc = &auth.oidc;
            let settings = o16n_directory::OidcSettings {
                authority: oidc.authority.clone(),
                audience: oidc.audience.clone(),
                username_claim: oidc.username_claim.clone(),
                groups_claim: oidc.groups_claim.clone(),
                timeout: Duration::from_secs(oidc.timeout_seconds.max(1)),
                key_refetch_interval: Duration::from_secs(oidc.key_refetch_interval_seconds),
                key_max_age: Duration::from_secs(24 * 3600),
            };
            Some(std::sync::Arc::new(o16n_directory::OidcProvider::new(
                settings,
                self.clock.clone(),
            )?))
        } else {
            None
        };
        Ok(o16n_app::SignInConfig {
            ldap,
            oidc,
            roles: o16n_auth::roles::RoleMapping::new(
                &auth.roles.owner,
                &auth.roles.contributor,
                &auth.roles.reader,
            ),
            role_cache_lifetime: Duration::from_secs(auth.roles.cache_lifetime_minutes * 60),
            local_admin_enabled: auth.local.admin_enabled,
        })
    }

    /// The use cases' settings.
    pub fn app_config(&self) -> anyhow::Result<o16n_app::AppConfig> {
        let auth = &self.auth;
        Ok(o16n_app::AppConfig {
            token_lifetimes: o16n_auth::tokens::TokenLifetimes {
                access: Duration::from_secs(auth.access_token_lifetime_seconds),
                refresh_idle: Duration::from_secs(auth.refresh_token_idle_lifetime_seconds),
                max_session: Duration::from_secs(auth.max_login_session_lifetime_seconds),
            },
            revocation_check_interval: Duration::from_secs(auth.revocation_check_interval_seconds),
            max_batch_parallelism: self.batch.max_parallelism.max(1),
            batch_lease: Duration::from_secs(self.batch.lease_seconds.max(1)),
            batch_poll_interval: Duration::from_millis(self.batch.poll_interval_ms.max(10)),
            pool_sync_interval: Duration::from_millis(self.cluster.pool_sync_interval_ms.max(10)),
            metrics: self.metrics.enabled,
            max_sessions_per_user: self.runtime.max_sessions_per_user,
            configured_compute_nodes: self.cluster.compute_nodes.clone(),
            sign_in: self.sign_in()?,
            login_limits: o16n_app::LoginLimits {
                failures_per_address: auth.login_failures_per_address.max(1),
                failures_per_user: auth.login_failures_per_user.max(1),
                failure_window: Duration::from_secs(auth.login_failure_window_seconds.max(1)),
                max_concurrent_checks: auth.max_concurrent_password_checks.max(1),
                check_wait: Duration::from_millis(auth.password_check_wait_ms),
            },
            environments: o16n_app::EnvironmentPolicy {
                allow_other_sources: self.environments.allow_other_sources,
                r_repositories: self.environments.r_repositories.clone(),
                build_timeout: self.environment_build_timeout(),
            },
            clock: self.clock.clone(),
        })
    }

    fn environment_build_timeout(&self) -> Duration {
        Duration::from_secs(self.environments.build_timeout_seconds.max(1))
    }

    /// The Python runtime's settings.
    pub fn python_config(&self) -> o16n_runtime::PythonConfig {
        let python = &self.runtime.python;
        o16n_runtime::PythonConfig {
            executable: python.executable.clone(),
            base_interpreter: python.base_interpreter.clone(),
            env_dir: self.data_dir.join("runtimes").join("python"),
            memory_limit_mb: python.memory_limit_mb,
            network: python.network.unwrap_or(self.runtime.sandbox.network),
            startup_timeout: Duration::from_secs(self.runtime.worker_startup_timeout_seconds),
            max_frame_bytes: self.max_frame_bytes(),
            max_console_bytes: self.max_console_bytes(),
            fork_workers: python.fork_workers,
        }
    }

    fn max_frame_bytes(&self) -> usize {
        self.runtime.max_frame_mb.max(1).saturating_mul(1024 * 1024)
    }

    fn max_console_bytes(&self) -> usize {
        self.runtime.max_console_kb.max(1).saturating_mul(1024)
    }

    /// The worker sandbox's settings.
    pub fn sandbox_config(&self) -> o16n_runtime::SandboxConfig {
        let sandbox = &self.runtime.sandbox;
        o16n_runtime::SandboxConfig {
            enabled: sandbox.enabled,
            first_uid: sandbox.first_uid,
            uid_count: sandbox.uid_count.max(1),
            lock_dir: sandbox.lock_dir.clone(),
            max_processes: sandbox.max_processes.max(1),
            max_file_size_mb: sandbox.max_file_size_mb.max(1),
            max_open_files: sandbox.max_open_files.max(16),
            tmp_size_mb: sandbox.tmp_size_mb.max(1),
            shm_size_mb: sandbox.shm_size_mb.max(1),
            network_allow: sandbox.network_allow.clone(),
        }
    }

    /// The compute node's settings.
    pub fn compute_config(&self) -> o16n_runtime::ComputeConfig {
        let python = &self.runtime.python;
        o16n_runtime::ComputeConfig {
            work_root: self.data_dir.join("work"),
            content_dir: self.data_dir.join("content"),
            content_cache_bytes: self.runtime.content_cache_mb.max(1) * 1024 * 1024,
            sandbox: self.sandbox_config(),
            python: self.python_config(),
            python_pool: o16n_runtime::PoolConfig {
                initial_size: python.initial_size,
                max_size: python.max_size.max(1),
                acquire_timeout: Duration::from_secs(python.acquire_timeout_seconds),
            },
            python_services: o16n_runtime::ServiceWorkersConfig {
                max_workers: python.max_service_workers.max(1),
                max_loaded_per_worker: python.max_services_per_worker.max(1),
            },
            r: o16n_runtime::RConfig {
                rscript: self.runtime.r.rscript.clone(),
                env_dir: self.data_dir.join("runtimes").join("r"),
                memory_limit_mb: self.runtime.r.memory_limit_mb,
                network: self
                    .runtime
                    .r
                    .network
                    .unwrap_or(self.runtime.sandbox.network),
                startup_timeout: Duration::from_secs(self.runtime.worker_startup_timeout_seconds),
                max_frame_bytes: self.max_frame_bytes(),
                max_console_bytes: self.max_console_bytes(),
                fork_workers: self.runtime.r.fork_workers,
            },
            r_pool: o16n_runtime::PoolConfig {
                initial_size: self.runtime.r.initial_size,
                max_size: self.runtime.r.max_size.max(1),
                acquire_timeout: Duration::from_secs(self.runtime.r.acquire_timeout_seconds),
            },
            r_services: o16n_runtime::ServiceWorkersConfig {
                max_workers: self.runtime.r.max_service_workers.max(1),
                max_loaded_per_worker: self.runtime.r.max_services_per_worker.max(1),
            },
            environments: o16n_runtime::EnvironmentsConfig {
                root: self.data_dir.join("environments"),
                python_index_url: self.environments.python_index_url.clone(),
                python_extra_index_urls: self.environments.python_extra_index_urls.clone(),
                r_repositories: self.environments.r_repositories.clone(),
                build_timeout: self.environment_build_timeout(),
                pool_size: self.environments.pool_size,
                source_builds: self.environments.allow_source_builds,
                proxy_env: proxy_env(),
            },
            dedicated_pool_wait: Duration::from_secs(self.runtime.dedicated_pool_wait_seconds),
            execution_timeout: Duration::from_secs(self.runtime.execution_timeout_seconds),
            session_idle_timeout: Duration::from_secs(self.runtime.session_idle_timeout_seconds),
            clock: self.clock.clone(),
        }
    }

    /// The HTTP layer's settings.
    pub fn api_config(&self) -> o16n_api::ApiConfig {
        o16n_api::ApiConfig {
            max_body_bytes: self.http.max_body_bytes,
            max_upload_bytes: self.http.max_upload_bytes,
            secure_cookies: self.http.secure_cookies,
            metrics_token: self
                .metrics
                .bearer_token
                .as_ref()
                .map(|token| std::sync::Arc::from(token.expose_secret())),
        }
    }
}

/// The proxy settings of the server's own environment, which builds get so that they reach
/// the configured sources the way the server's machine does.
fn proxy_env() -> Vec<(String, String)> {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "NO_PROXY",
        "no_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .into_iter()
    .filter_map(|name| {
        std::env::var(name)
            .ok()
            .map(|value| (name.to_owned(), value))
    })
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/o16n.example.toml");
        let from_file = Config::load(Some(&example), [], Overrides::default()).unwrap();
        let mut defaults = Config::default();
        defaults.data_dir = std::path::absolute(&defaults.data_dir).unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn environment_beats_file_and_flags_beat_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("o16n.toml");
        std::fs::write(&file, "data_dir = \"/from/file\"\n[http]\nport = 1111\nbind = \"file\"\n[log]\nlevel = \"debug\"\n").unwrap();
        let environment = env(&[
            ("O16N_HTTP__PORT", "2222"),
            ("O16N_HTTP__BIND", "env"),
            ("O16N_DATA_DIR", "/from/env"),
            ("O16N_ADMIN_PASSWORD", "not configuration"),
            ("UNRELATED", "x"),
        ]);
        let overrides = Overrides {
            bind: Some("flag".to_owned()),
            ..Overrides::default()
        };

        let config = Config::load(Some(&file), environment, overrides).unwrap();

        assert_eq!(config.log.level, "debug");
        assert_eq!(config.http.port, 2222);
        assert_eq!(config.http.bind, "flag");
        assert_eq!(config.data_dir, PathBuf::from("/from/env"));
    }

    /// The chart cannot run here (no Kubernetes); what can drift is its configuration, so every
    /// key its `o16n.toml` sets and every `O16N_*` variable it passes must be one that exists.
    #[test]
    fn every_key_the_helm_chart_sets_exists() {
        let chart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/helm/o16n/templates");
        let configmap = std::fs::read_to_string(chart.join("configmap.yaml")).unwrap();
        let toml: String = configmap
            .split_once("o16n.toml: |\n")
            .unwrap()
            .1
            .lines()
            // Template control lines go; template values become a plausible value.
            .filter(|line| !line.trim_start().starts_with("{{-"))
            .map(|line| {
                let mut rendered = line.strip_prefix("    ").unwrap_or(line).to_owned();
                while let (Some(start), Some(end)) = (rendered.find("{{"), rendered.find("}}")) {
                    rendered.replace_range(start..end + 2, "1");
                }
                rendered + "\n"
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("o16n.toml");
        std::fs::write(&file, &toml).unwrap();
        let config = Config::load(Some(&file), [], Overrides::default())
            .unwrap_or_else(|err| panic!("the chart's o16n.toml does not load: {err:#}\n{toml}"));
        assert_eq!(config.cluster.compute_nodes.len(), 1);

        let mut variables = Vec::new();
        for template in std::fs::read_dir(&chart).unwrap() {
            let text = std::fs::read_to_string(template.unwrap().path()).unwrap();
            for word in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("O16N_") && !variables.contains(&word.to_owned()) {
                    variables.push(word.to_owned());
                }
            }
        }
        assert!(variables.contains(&"O16N_CLUSTER__SECRET".to_owned()));
        let environment = variables
            .iter()
            .map(|name| (name.clone(), "postgres://value".to_owned()));
        Config::load(None, environment, Overrides::default())
            .unwrap_or_else(|err| panic!("a variable the chart sets is no key: {err:#}"));
    }

    #[test]
    fn the_database_url_is_redacted_in_debug_output() {
        let overrides = Overrides {
            database_url: Some("postgres://u:hunter2@db/o16n".to_owned()),
            ..Overrides::default()
        };
        let config = Config::load(None, [], overrides).unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
        assert_eq!(config.database_url(), "postgres://u:hunter2@db/o16n");
    }

    #[test]
    fn a_missing_file_or_a_bad_value_is_an_error() {
        assert!(
            Config::load(
                Some(Path::new("/no/such/file.toml")),
                [],
                Overrides::default()
            )
            .is_err()
        );
        assert!(
            Config::load(
                None,
                env(&[("O16N_HTTP__PORT", "many")]),
                Overrides::default()
            )
            .is_err()
        );
    }
}
