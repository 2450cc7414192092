//! Persistence: the only crate that contains SQL.
//!
//! [`Store`] talks to SQLite (the embedded default) or PostgreSQL (for several web nodes)
//! through sqlx's `Any` driver, so every query is written once, in the dialect both accept:
//! `$n` placeholders, 64-bit integers for times and flags, `TEXT` and bytes. Schema differences
//! live in the two migration folders, `migrations/sqlite` and `migrations/postgres`, which must
//! describe the same tables. The conformance suite in `tests/` runs every operation against
//! both backends.
//!
//! Records returned here are domain types ([`o16n_types::Username`], [`o16n_types::Role`]);
//! a row that no longer parses is reported as [`StoreError::Corrupt`].

mod batches;
mod compute_nodes;
mod contents;
mod environments;
mod error;
mod events;
mod login_sessions;
mod services;
mod sessions;
mod settings;
mod snapshots;
mod users;

use std::path::Path;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;

pub use batches::BatchRecord;
pub use environments::{EnvironmentBuildOutcome, EnvironmentRecord, EnvironmentState};
pub use error::StoreError;
pub use events::{Heard, Listener};
pub use login_sessions::LoginSessionRecord;
pub use sessions::SessionRecord;
pub use snapshots::SnapshotRecord;
pub use users::{DirectoryProfile, UserRecord};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// Which database a [`Store`] is connected to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file (the one-box default).
    Sqlite,
    /// A PostgreSQL server, shareable by several web nodes.
    Postgres,
}

impl Backend {
    /// The name reported by `/status`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
        }
    }

    /// Which backend a connection URL addresses.
    pub fn of_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl)
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// A `sqlite:` or `postgres://` URL. May contain a password: never log it.
    pub url: String,
    /// The most connections the pool opens.
    pub max_connections: u32,
    /// How long a query waits for a free connection before failing.
    pub acquire_timeout: Duration,
}

/// A handle on the database. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The URL, for the PostgreSQL listener's own connection. May hold a password: never log it.
    url: String,
}

impl Store {
    /// The URL of an SQLite database file, created on first connection.
    pub fn sqlite_url(path: &Path) -> String {
        format!("sqlite://{}?mode=rwc", path.display())
    }

    /// Connects and brings the schema up to date.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(&config.url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(config.acquire_timeout)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    // With SQLite's write-ahead log, NORMAL syncs at checkpoints instead of at
                    // every commit: a crash of o16n loses nothing, a power loss at most the
                    // last commits, and writes get an order of magnitude cheaper (without the
                    // log, every commit costs two syncs, milliseconds on most disks). Readers
                    // also no longer wait for writers.
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *connection)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(connection)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&config.url)
            .await
            .map_err(StoreError::Connect)?;
        let migrations = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrations.run(&pool).await?;
        tracing::debug!(backend = backend.as_str(), "database schema is up to date");
        let store = Store {
            pool,
            backend,
            url: config.url.clone(),
        };
        store.move_inline_content().await?;
        store.remove_abandoned_chunks().await?;
        Ok(store)
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers a trivial query.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes every connection; queries after this fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_sqlite_database_keeps_a_write_ahead_log() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreConfig {
            url: Store::sqlite_url(&dir.path().join("o16n.db")),
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        })
        .await
        .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
