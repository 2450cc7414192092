//! The use cases of o16n, one module per API area. This is where the business rules live.
//!
//! [`App`] is a cheap-to-clone handle that the HTTP layer holds; each method is one use case
//! (log in, renew a token, add a user, report status, ...). It orchestrates the store and the
//! auth primitives and knows nothing about HTTP: it takes and returns domain types and reports
//! failures as [`AppError`], which carries its client-visible [`o16n_types::Code`].

mod batches;
mod caches;
mod compute;
mod compute_nodes;
mod directory;
mod environments;
mod error;
mod events;
mod login;
mod login_guard;
mod metrics;
mod pools;
mod realtime;
mod services;
mod sessions;
mod snapshots;
mod status;
mod users;

use std::sync::Arc;
use std::time::Duration;

use o16n_auth::tokens::{TokenLifetimes, TokenSigner};
use o16n_compute::Nodes;
use o16n_store::Store;

pub use batches::{BatchStatus, DEFAULT_PARALLELISM, encoded_output_files};
pub use compute_nodes::EntriesChange;
pub use environments::{DEFAULT_ENVIRONMENTS, EnvironmentPolicy, EnvironmentView};
pub use error::AppError;
pub use login::{Principal, SignInMethods, TokenPair};
pub use login_guard::LoginLimits;
pub use metrics::{Metrics, ServiceStages};
pub use o16n_compute::{
    ByteStream, ConsumeOutcome, Download, EnvironmentSpec, ExecuteOutcome, ExecuteRequest,
    NamedValue, PoolHealth, PoolStatus, SessionInfo,
};
pub use o16n_realtime::{ColumnType, InputColumns, Signature};
use o16n_types::Clock;
pub use pools::{NodePoolState, PoolState};
pub use realtime::{RealtimeDefinition, RealtimePatch};
pub use services::{SERVICE_CACHE_TTL, ServiceDefinition, ServicePatch, ServiceView};
pub use sessions::OpenSession;
pub use snapshots::SnapshotInfo;
pub use status::{
    AuthenticationStatus, DatabaseStatus, Health, NodeReport, SystemStatus, UNISOLATED,
};
pub use users::{ADMIN_USERNAME, AdminBootstrap};

use caches::ExpiringCache;
use realtime::RealtimeModels;

/// The settings the use cases need, passed down from the server's configuration.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Token and login-session lifetimes.
    pub token_lifetimes: TokenLifetimes,
    /// How long this node may trust its cached knowledge that a login session is still valid.
    /// A revocation made on another web node takes effect here within this time; on this node
    /// it takes effect at once. Zero checks the database on every request.
    pub revocation_check_interval: Duration,
    /// The most records one batch runs at once, whatever its `parallelCount` asks for (the
    /// reference's `MaxNumberOfThreadsPerBatchExecution`).
    pub max_batch_parallelism: i64,
    /// How long a web node's claim on a batch lasts unless renewed; a batch of a node that
    /// died is taken over after this.
    pub batch_lease: Duration,
    /// How often a web node looks for batches to run besides when one is announced.
    pub batch_poll_interval: Duration,
    /// How often the desired dedicated pools are sent to every compute node besides when they
    /// change.
    pub pool_sync_interval: Duration,
    /// Whether figures are counted for `/metrics`.
    pub metrics: bool,
    /// The most sessions one user may have open at once (0: no limit).
    pub max_sessions_per_user: usize,
    /// Compute nodes named by the configuration, besides those stored by `/computenodes`.
    pub configured_compute_nodes: Vec<String>,
    /// How users sign in besides local accounts, and the roles their groups give.
    pub sign_in: SignInConfig,
    /// What environments may take packages from, and how long their builds may take.
    pub environments: EnvironmentPolicy,
    /// Limits of failed sign-ins and of password checks at once.
    pub login_limits: LoginLimits,
    /// The time leases are measured with.
    pub clock: Clock,
}

/// How users sign in: local accounts, an LDAP directory, an OpenID Connect provider.
#[derive(Clone)]
pub struct SignInConfig {
    /// The directory `POST /login` checks user names and passwords with (`auth.ldap`).
    pub ldap: Option<Arc<dyn o16n_directory::Directory>>,
    /// The provider whose bearer tokens are accepted (`auth.oidc`).
    pub oidc: Option<Arc<o16n_directory::OidcProvider>>,
    /// Which directory and provider groups give which role (`auth.roles`).
    pub roles: o16n_auth::roles::RoleMapping,
    /// How long a directory user's groups are trusted before a renewal reads them again.
    pub role_cache_lifetime: Duration,
    /// Whether the local `admin` may sign in while the directory or provider is on
    /// (`auth.local.admin_enabled`). Without either, local accounts always may.
    pub local_admin_enabled: bool,
}

impl SignInConfig {
    /// Local accounts only, as a server without directory settings signs in.
    pub fn local() -> SignInConfig {
        SignInConfig {
            ldap: None,
            oidc: None,
            roles: o16n_auth::roles::RoleMapping::default(),
            role_cache_lifetime: Duration::from_secs(3600),
            local_admin_enabled: true,
        }
    }

    /// Whether a directory or a provider signs users in (which turns local accounts off).
    pub fn directory_enabled(&self) -> bool {
        self.ldap.is_some() || self.oidc.is_some()
    }
}

impl std::fmt::Debug for SignInConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInConfig")
            .field("ldap", &self.ldap.is_some())
            .field("oidc", &self.oidc.is_some())
            .field("roles", &self.roles)
            .field("role_cache_lifetime", &self.role_cache_lifetime)
            .field("local_admin_enabled", &self.local_admin_enabled)
            .finish()
    }
}

/// The application: every use case hangs off this handle.
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

struct AppInner {
    store: Store,
    nodes: Arc<dyn Nodes>,
    signer: TokenSigner,
    config: AppConfig,
    /// Login sessions' generations, trusted for `revocation_check_interval`.
    login_sessions: ExpiringCache<String, Option<i64>>,
    login_guard: login_guard::LoginGuard,
    /// o16n's own access tokens whose signature was checked, until they expire.
    verified_tokens: ExpiringCache<String, Arc<o16n_auth::tokens::AccessClaims>>,
    /// The callers named by an identity provider's tokens, until they expire.
    external_tokens: ExpiringCache<String, Arc<Principal>>,
    /// Service definitions, trusted for [`SERVICE_CACHE_TTL`].
    services: ExpiringCache<(String, String), Arc<o16n_types::Service>>,
    realtime_models: RealtimeModels,
    batch_runners: batches::BatchRunners,
    /// Wakes this node's environment builder.
    environment_builds: tokio::sync::Notify,
    metrics: Option<metrics::Metrics>,
}

/// The most entries each of this node's caches keeps (tokens, login sessions, services).
const CACHE_CAPACITY: u64 = 10_000;

/// The settings key of the token signing secret.
const SIGNING_KEY_SETTING: &str = "jwt-signing-key";

impl App {
    /// Builds the application on an opened store and the compute nodes it sends work to,
    /// creating the token signing key on first use.
    pub async fn new(
        store: Store,
        nodes: Arc<dyn Nodes>,
        config: AppConfig,
    ) -> Result<App, AppError> {
        let secret = store
            .setting_or_insert(SIGNING_KEY_SETTING, &TokenSigner::generate_secret())
            .await?;
        let login_guard = login_guard::LoginGuard::new(config.login_limits);
        let metrics = config.metrics.then(metrics::Metrics::default);
        Ok(App {
            inner: Arc::new(AppInner {
                store,
                nodes,
                signer: TokenSigner::new(&secret),
                login_sessions: ExpiringCache::new(CACHE_CAPACITY, config.clock.clone()),
                login_guard,
                verified_tokens: ExpiringCache::new(CACHE_CAPACITY, config.clock.clone()),
                external_tokens: ExpiringCache::new(CACHE_CAPACITY, config.clock.clone()),
                services: ExpiringCache::new(CACHE_CAPACITY, config.clock.clone()),
                realtime_models: RealtimeModels::default(),
                batch_runners: batches::BatchRunners::new(),
                environment_builds: tokio::sync::Notify::new(),
                metrics,
                config,
            }),
        })
    }

    fn store(&self) -> &Store {
        &self.inner.store
    }

    fn nodes(&self) -> &dyn Nodes {
        self.inner.nodes.as_ref()
    }

    fn service_cache(&self) -> &ExpiringCache<(String, String), Arc<o16n_types::Service>> {
        &self.inner.services
    }

    fn realtime_models(&self) -> &RealtimeModels {
        &self.inner.realtime_models
    }

    fn config(&self) -> &AppConfig {
        &self.inner.config
    }

    /// Now, in Unix seconds, by the clock every expiry is measured with.
    fn now_unix(&self) -> i64 {
        self.inner.config.clock.now_ms().div_euclid(1000)
    }

    fn inner_environment_builds(&self) -> &tokio::sync::Notify {
        &self.inner.environment_builds
    }
}

/// Runs CPU-heavy work (password hashing) off the async threads.
async fn run_blocking<T, F>(work: F) -> Result<T, AppError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| AppError::Internal(format!("blocking task failed: {err}")))
}
