//! Assembling and running the one-box server: data directory, database, admin bootstrap,
//! listener, router and graceful shutdown.

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use axum::serve::ListenerExt;
use o16n_app::{AdminBootstrap, App};
use o16n_runtime::ComputeNode;
use o16n_store::Store;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::config::Config;

/// A built server, bound to its port but not yet serving.
pub struct Application {
    app: App,
    listener: TcpListener,
    router: axum::Router,
    store: Store,
    compute: ComputeNode,
    local_addr: SocketAddr,
}

/// What the first start needs beyond the configuration.
#[derive(Default)]
pub struct Bootstrap {
    /// The admin password chosen by the operator (`O16N_ADMIN_PASSWORD`); generated if unset.
    pub admin_password: Option<SecretString>,
}

impl Application {
    /// Opens the database, creates the admin account on first start and binds the listener.
    pub async fn build(config: &Config, bootstrap: Bootstrap) -> anyhow::Result<Application> {
        let compute = ComputeNode::start(config.compute_config())
            .await
            .context("cannot start the compute node")?;
        let (app, store) = open_app(config, compute.clone()).await?;
        let admin_password = bootstrap.admin_password.as_ref().map(|p| p.expose_secret());
        match app
            .ensure_admin(admin_password)
            .await
            .context("cannot create the admin account from O16N_ADMIN_PASSWORD")?
        {
            AdminBootstrap::Existing => {}
            AdminBootstrap::CreatedWithGivenPassword => {
                tracing::info!(
                    "created the admin account with the password from O16N_ADMIN_PASSWORD"
                );
            }
            AdminBootstrap::CreatedWithGeneratedPassword(password) => {
                let file = config.data_dir.join("admin-password");
                write_secret_file(&file, &password)?;
                // Printed directly rather than logged: it must appear exactly once, whatever
                // the log level, and never in a log aggregator.
                eprintln!(
                    "Created the admin account with a generated password: {password}\n\
                     It is also in {} (readable by this user only). Change it with `o16n admin password`.",
                    file.display()
                );
            }
        }

        let resumed = app
            .resume_batches()
            .await
            .context("cannot resume unfinished batches")?;
        if resumed > 0 {
            tracing::info!(resumed, "resumed unfinished batch executions");
        }

        let models = app
            .load_realtime_models()
            .await
            .context("cannot list the realtime services")?;
        if models > 0 {
            tracing::info!(models, "loaded the models of realtime services");
        }

        let address = format!("{}:{}", config.http.bind, config.http.port);
        let listener = TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let local_addr = listener.local_addr()?;
        let router = o16n_api::router(app.clone(), &config.api_config());
        Ok(Application {
            app,
            listener,
            router,
            store,
            compute,
            local_addr,
        })
    }

    /// The use cases, for tests and tools that act without HTTP (e.g. to add a user).
    pub fn app(&self) -> App {
        self.app.clone()
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish and closes the
    /// database.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Responses are small and latency matters more than packet count: no Nagle delay.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::warn!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .context("the HTTP server failed")?;
        self.compute.shutdown().await;
        self.store.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Opens the data directory and the database and builds the use cases on them and `compute`.
pub async fn open_app(config: &Config, compute: ComputeNode) -> anyhow::Result<(App, Store)> {
    ensure_data_dir(&config.data_dir)?;
    let store = Store::open(&config.store_config())
        .await
        .context("cannot open the database")?;
    let app = App::new(store.clone(), compute, config.app_config())
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
