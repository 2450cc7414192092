//! Assembling and running a server, by role: the one-box server (REST API, database and a
//! compute node in one process), a web node (REST API and database; R and Python work goes to
//! the registered compute nodes) or a compute node (workers only, behind the cluster's
//! internal API, with no database and no user accounts). Each binds its listener, serves until
//! told to stop, then stops its background tasks and workers.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use o16n_app::{AdminBootstrap, App};
use o16n_cluster::{ClientTls, Fleet, FleetConfig, ServerTls};
use o16n_compute::{Compute, Nodes, SingleNode};
use o16n_runtime::ComputeNode;
use o16n_store::Store;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cli::ServerRole;
use crate::config::Config;

/// A built server, bound to its port but not yet serving.
pub struct Application {
    role: Running,
    listener: TcpListener,
    local_addr: SocketAddr,
    /// Background tasks (batch scheduling, announcements, health checks), stopped at shutdown.
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// What the process serves.
enum Running {
    /// The REST API, with a compute node in the process (one-box) or not (web node).
    Api {
        app: App,
        router: axum::Router,
        store: Store,
        compute: Option<ComputeNode>,
    },
    /// The internal API of a compute node.
    Compute {
        compute: ComputeNode,
        router: axum::Router,
        tls: Option<ServerTls>,
    },
}

/// What the first start needs beyond the configuration.
#[derive(Default)]
pub struct Bootstrap {
    /// The admin password chosen by the operator (`O16N_ADMIN_PASSWORD`); generated if unset.
    pub admin_password: Option<SecretString>,
    /// The compute node a one-box server sends work to instead of starting its own: tests
    /// put an in-memory one here (`o16n_compute::testing::FakeCompute`).
    pub compute: Option<Arc<dyn Compute>>,
}

impl Application {
    /// Builds the one-box server.
    pub async fn build(config: &Config, bootstrap: Bootstrap) -> anyhow::Result<Application> {
        Self::build_as(ServerRole::Onebox, config, bootstrap).await
    }

    /// Builds a server of `role`: opens what it needs, creates the admin account on first
    /// start (servers with a database) and binds the listener.
    pub async fn build_as(
        role: ServerRole,
        config: &Config,
        bootstrap: Bootstrap,
    ) -> anyhow::Result<Application> {
        o16n_cluster::install_crypto_provider();
        let tasks = TaskTracker::new();
        let stop = CancellationToken::new();
        let running = match role {
            ServerRole::Onebox => {
                let (node, compute): (Arc<dyn Compute>, _) = match &bootstrap.compute {
                    Some(node) => (node.clone(), None),
                    None => {
                        let compute = ComputeNode::start(config.compute_config())
                            .await
                            .context("cannot start the compute node")?;
                        (Arc::new(compute.clone()), Some(compute))
                    }
                };
                let nodes: Arc<dyn Nodes> = Arc::new(SingleNode::new(node));
                let (app, store) = open_app(config, nodes).await?;
                // This process's node just started: whatever sessions a previous run held are
                // gone.
                app.forget_sessions_of_restarted_node(SingleNode::ENDPOINT)
                    .await
                    .context("cannot forget the sessions of the previous run")?;
                prepare_api(&app, config, &bootstrap, &tasks, &stop).await?;
                Running::Api {
                    router: o16n_api::router(app.clone(), &config.api_config()),
                    app,
                    store,
                    compute,
                }
            }
            ServerRole::Web => {
                anyhow::ensure!(
                    o16n_store::Backend::of_url(&config.database_url())?
                        == o16n_store::Backend::Postgres,
                    "a web node needs the PostgreSQL database that every web node shares \
                     (database.url = postgres://...); SQLite serves the one-box server only"
                );
                let fleet = Fleet::new(fleet_config(config)?)
                    .context("cannot set up the connections to compute nodes")?;
                fleet.start_health_checks(&tasks, stop.clone());
                let (app, store) = open_app(config, Arc::new(fleet)).await?;
                app.reload_compute_nodes()
                    .await
                    .context("cannot read the compute nodes")?;
                prepare_api(&app, config, &bootstrap, &tasks, &stop).await?;
                Running::Api {
                    router: o16n_api::router(app.clone(), &config.api_config()),
                    app,
                    store,
                    compute: None,
                }
            }
            ServerRole::Compute => {
                let secret = cluster_secret(config)?;
                ensure_data_dir(&config.data_dir)?;
                let tls = match (&config.cluster.tls.certificate, &config.cluster.tls.key) {
                    (Some(certificate), Some(key)) => Some(ServerTls::load(certificate, key)?),
                    (None, None) => None,
                    _ => anyhow::bail!(
                        "cluster.tls.certificate and cluster.tls.key go together: set both, or neither"
                    ),
                };
                let compute = ComputeNode::start(config.compute_config())
                    .await
                    .context("cannot start the compute node")?;
                Running::Compute {
                    router: o16n_cluster::server::router(Arc::new(compute.clone()), secret),
                    compute,
                    tls,
                }
            }
        };
        let address = format!("{}:{}", config.http.bind, config.http.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local_addr = listener.local_addr()?;
        Ok(Application {
            role: running,
            listener,
            local_addr,
            tasks,
            stop,
        })
    }

    /// The use cases, for tests and tools that act without HTTP (e.g. to add a user); `None`
    /// for a compute node.
    pub fn app(&self) -> Option<App> {
        match &self.role {
            Running::Api { app, .. } => Some(app.clone()),
            Running::Compute { .. } => None,
        }
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The scheme clients reach it with.
    pub fn scheme(&self) -> &'static str {
        match &self.role {
            Running::Compute { tls: Some(_), .. } => "https",
            _ => "http",
        }
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish, stops the
    /// background tasks and the workers, and closes the database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Application {
            role,
            listener,
            tasks,
            stop,
            ..
        } = self;
        match role {
            Running::Api {
                router,
                store,
                compute,
                ..
            } => {
                // Responses are small and latency matters more than packet count: no Nagle.
                let listener = listener.tap_io(|tcp| {
                    if let Err(err) = tcp.set_nodelay(true) {
                        tracing::warn!(error = %err, "cannot set TCP_NODELAY");
                    }
                });
                // Each connection's peer address reaches the handlers (sign-in limits count it).
                let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
                axum::serve(listener, service)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .context("the HTTP server failed")?;
                stop_tasks(&tasks, &stop).await;
                if let Some(compute) = compute {
                    compute.shutdown().await;
                }
                store.close().await;
            }
            Running::Compute {
                compute,
                router,
                tls,
            } => {
                o16n_cluster::server::serve(listener, router, tls, shutdown)
                    .await
                    .context("the internal API failed")?;
                stop_tasks(&tasks, &stop).await;
                compute.shutdown().await;
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Stops the background tasks, giving them a few seconds to finish (batches give up their
/// leases).
async fn stop_tasks(tasks: &TaskTracker, stop: &CancellationToken) {
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("background tasks did not stop within 10 s");
    }
}

/// What a server with the REST API does before it serves: the admin account, the realtime
/// models, and its background tasks.
async fn prepare_api(
    app: &App,
    config: &Config,
    bootstrap: &Bootstrap,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let admin_password = bootstrap.admin_password.as_ref().map(|p| p.expose_secret());
    match app
        .ensure_admin(admin_password)
        .await
        .context("cannot create the admin account from O16N_ADMIN_PASSWORD")?
    {
        AdminBootstrap::Existing => {}
        AdminBootstrap::CreatedWithGivenPassword => {
            tracing::info!("created the admin account with the password from O16N_ADMIN_PASSWORD");
        }
        AdminBootstrap::CreatedWithGeneratedPassword(password) => {
            let file = config.data_dir.join("admin-password");
            write_secret_file(&file, &password)?;
            // Only the file holds it: stderr often ends up in a log aggregator. Printed directly
            // rather than logged, so that it appears whatever the log level.
            eprintln!(
                "Created the admin account with a generated password, written to {} (readable \
                 by this user only). Change it with `o16n admin password`.",
                file.display()
            );
        }
    }
    let models = app
        .load_realtime_models()
        .await
        .context("cannot list the realtime services")?;
    if models > 0 {
        tracing::info!(models, "loaded the models of realtime services");
    }
    let (scheduler, announcements, pools) = (app.clone(), app.clone(), app.clone());
    let (stop_scheduler, stop_announcements, stop_pools) =
        (stop.clone(), stop.clone(), stop.clone());
    tasks.spawn(async move { scheduler.run_batch_scheduler(stop_scheduler).await });
    tasks.spawn(async move { announcements.follow_announcements(stop_announcements).await });
    tasks.spawn(async move { pools.run_pool_sync(stop_pools).await });
    let (builder, stop_builder) = (app.clone(), stop.clone());
    let build_poll = Duration::from_millis(config.batch.poll_interval_ms.max(10)) * 5;
    tasks.spawn(async move {
        builder
            .run_environment_builder(build_poll, stop_builder)
            .await
    });
    Ok(())
}

/// The cluster secret, which web nodes and compute nodes must have.
fn cluster_secret(config: &Config) -> anyhow::Result<SecretString> {
    config
        .cluster
        .secret
        .clone()
        .filter(|secret| !secret.expose_secret().is_empty())
        .context(
            "web nodes and compute nodes need the cluster secret: set cluster.secret in the \
             configuration file or O16N_CLUSTER__SECRET in the environment, the same on every node",
        )
}

fn fleet_config(config: &Config) -> anyhow::Result<FleetConfig> {
    let tls = match &config.cluster.tls.ca_certificate {
        Some(ca_certificate) => ClientTls::load(ca_certificate)?,
        None => ClientTls::default(),
    };
    Ok(FleetConfig {
        secret: cluster_secret(config)?,
        tls,
        health_interval: Duration::from_millis(config.cluster.health_interval_ms.max(50)),
        health_timeout: Duration::from_millis(config.cluster.health_timeout_ms.max(50)),
        connect_timeout: Duration::from_millis(config.cluster.health_timeout_ms.max(50)),
    })
}

/// Opens the data directory and the database and builds the use cases on them and `nodes`.
pub async fn open_app(config: &Config, nodes: Arc<dyn Nodes>) -> anyhow::Result<(App, Store)> {
    ensure_data_dir(&config.data_dir)?;
    let store = Store::open(&config.store_config())
        .await
        .context("cannot open the database")?;
    let app = App::new(store.clone(), nodes, config.app_config()?)
        .await
        .context("cannot initialise the application")?;
    Ok((app, store))
}

/// Creates the data directory, readable by this user only, if it does not exist.
fn ensure_data_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// Writes a secret to a file that only this user can read.
fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{secret}")?;
    Ok(())
}
