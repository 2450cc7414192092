//! Changes announced to every web node sharing the database, so that their caches follow a
//! change made through another node at once: PostgreSQL's `NOTIFY` on one channel, heard with
//! `LISTEN` on a connection of its own. A notification is a hint carrying a key (what changed),
//! delivered only once its transaction commits and lost while a listener is disconnected, so
//! the caches keep their time limits as a backstop and are emptied when a listener reconnects.
//! SQLite serves one node only: there, announcing does nothing and nobody listens.

use crate::{Backend, Store, StoreError};

/// The channel every notification goes on.
const CHANNEL: &str = "o16n_events";

/// A listener for the changes other nodes announce.
pub struct Listener {
    listener: sqlx::postgres::PgListener,
}

/// What a listener hears.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Heard {
    /// Something changed; the payload says what.
    Event(String),
    /// The connection was lost and has been re-established: what was announced meanwhile is
    /// lost, so every cache must be emptied.
    Reconnected,
}

impl Store {
    /// Announces a change to every node listening (PostgreSQL only).
    pub async fn announce(&self, event: &str) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(event)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Starts listening for announced changes; `None` on SQLite, which serves one node only.
    pub async fn listen(&self) -> Result<Option<Listener>, StoreError> {
        if self.backend != Backend::Postgres {
            return Ok(None);
        }
        let mut listener = sqlx::postgres::PgListener::connect(&self.url)
            .await
            .map_err(StoreError::Connect)?;
        listener.listen(CHANNEL).await?;
        Ok(Some(Listener { listener }))
    }
}

impl Listener {
    /// Waits for the next notification (reconnecting when the connection drops).
    pub async fn next(&mut self) -> Result<Heard, StoreError> {
        match self.listener.try_recv().await? {
            Some(notification) => Ok(Heard::Event(notification.payload().to_owned())),
            None => Ok(Heard::Reconnected),
        }
    }
}
