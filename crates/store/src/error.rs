//! The one error type of the store.

use o16n_types::{Code, ErrorCode};

/// What can go wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`.
    #[error("unsupported database URL: expected sqlite: or postgres://")]
    UnsupportedUrl,
    /// The database could not be reached or opened.
    #[error("cannot connect to the database")]
    Connect(#[source] sqlx::Error),
    /// Bringing the schema up to date failed.
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row with the same key already exists.
    #[error("{0} already exists")]
    Conflict(&'static str),
    /// A stored value no longer parses; someone edited the database by hand or a bug wrote it.
    #[error("corrupt row in the database: {0}")]
    Corrupt(String),
    /// Content being stored could not be read from where it came from (a client went away).
    #[error("the content could not be read: {0}")]
    Read(#[source] std::io::Error),
    /// Any other database failure.
    #[error("database query failed")]
    Query(#[from] sqlx::Error),
}

impl ErrorCode for StoreError {
    fn code(&self) -> Code {
        match self {
            StoreError::Conflict(_) => Code::Conflict,
            StoreError::Read(_) => Code::BadRequest,
            StoreError::Connect(_) | StoreError::Query(sqlx::Error::PoolTimedOut) => {
                Code::Unavailable
            }
            _ => Code::Internal,
        }
    }
}

/// Turns a unique-constraint violation into [`StoreError::Conflict`], so that races between
/// two inserts are settled by the database instead of by a check-then-insert.
pub(crate) fn on_unique_violation(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |err| match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict(what),
        _ => StoreError::Query(err),
    }
}
