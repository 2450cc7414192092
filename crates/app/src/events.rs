//! What one web node announces so that the others follow at once: a revoked login session, a
//! changed or deleted service, a changed list of compute nodes, a batch to run or to stop.
//!
//! Announcements travel through the database (`o16n_store::Store::announce`, PostgreSQL's
//! `NOTIFY`); [`App::follow_announcements`] hears them on every node and applies them to its
//! caches. They are hints: every cache keeps its time limit as a backstop, and all are emptied
//! when the listener had to reconnect (announcements made meanwhile are lost).

use o16n_store::Heard;
use tokio_util::sync::CancellationToken;

use crate::App;

/// A change announced to every web node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A login session was renewed or revoked: its cached generation is stale.
    LoginSession(String),
    /// A service version was published, updated or deleted.
    Service { name: String, version: String },
    /// The list of compute nodes changed.
    ComputeNodes,
    /// A batch was submitted: some node should claim it.
    BatchSubmitted,
    /// A batch was cancelled: the node running it must stop.
    BatchCancelled(String),
    /// An environment build was asked for: some node should claim it.
    EnvironmentBuild,
    /// An environment build finished: services in it use its new lock.
    EnvironmentBuilt,
}

impl Event {
    fn encode(&self) -> String {
        match self {
            Event::LoginSession(id) => format!("login {id}"),
            Event::Service { name, version } => format!("service {name} {version}"),
            Event::ComputeNodes => "computenodes".to_owned(),
            Event::BatchSubmitted => "batch".to_owned(),
            Event::BatchCancelled(id) => format!("batch-cancel {id}"),
            Event::EnvironmentBuild => "environment-build".to_owned(),
            Event::EnvironmentBuilt => "environment-built".to_owned(),
        }
    }

    fn decode(text: &str) -> Option<Event> {
        let mut words = text.split(' ');
        let event = match (words.next()?, words.next(), words.next()) {
            ("login", Some(id), None) => Event::LoginSession(id.to_owned()),
            ("service", Some(name), Some(version)) => Event::Service {
                name: name.to_owned(),
                version: version.to_owned(),
            },
            ("computenodes", None, None) => Event::ComputeNodes,
            ("batch", None, None) => Event::BatchSubmitted,
            ("batch-cancel", Some(id), None) => Event::BatchCancelled(id.to_owned()),
            ("environment-build", None, None) => Event::EnvironmentBuild,
            ("environment-built", None, None) => Event::EnvironmentBuilt,
            _ => return None,
        };
        words.next().is_none().then_some(event)
    }
}

impl App {
    /// Announces a change to the other web nodes. A failure only delays them until their
    /// caches expire, so it is logged, not returned.
    pub(crate) async fn announce(&self, event: &Event) {
        if let Err(err) = self.store().announce(&event.encode()).await {
            tracing::warn!(error = %err, ?event, "cannot announce a change to other web nodes");
        }
    }

    /// Applies what other nodes announce until `stop` is cancelled (PostgreSQL only; a SQLite
    /// server is the only node). A lost connection is re-established after a pause.
    pub async fn follow_announcements(&self, stop: CancellationToken) {
        loop {
            let listener = tokio::select! {
                () = stop.cancelled() => return,
                listener = self.store().listen() => listener,
            };
            let mut listener = match listener {
                Ok(Some(listener)) => listener,
                Ok(None) => return,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for other web nodes' changes");
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                    }
                }
            };
            // Whatever was announced before listening started is unknown.
            self.forget_cached();
            loop {
                let heard = tokio::select! {
                    () = stop.cancelled() => return,
                    heard = listener.next() => heard,
                };
                match heard {
                    Ok(Heard::Event(text)) => match Event::decode(&text) {
                        Some(event) => self.apply(event).await,
                        None => {
                            tracing::debug!(%text, "an announcement this version does not know")
                        }
                    },
                    Ok(Heard::Reconnected) => self.forget_cached(),
                    Err(err) => {
                        tracing::warn!(error = %err, "lost the announcements of other web nodes");
                        break;
                    }
                }
            }
        }
    }

    async fn apply(&self, event: Event) {
        match event {
            Event::LoginSession(id) => self.inner.login_sessions.forget(&id),
            Event::Service { name, version } => self.forget_service(&name, &version),
            Event::ComputeNodes => {
                if let Err(err) = self.reload_compute_nodes().await {
                    tracing::warn!(error = %err, "cannot reload the compute nodes");
                }
            }
            Event::BatchSubmitted => self.inner.batch_runners.wake(),
            Event::BatchCancelled(id) => self.inner.batch_runners.stop(&id),
            Event::EnvironmentBuild => self.inner_environment_builds().notify_one(),
            Event::EnvironmentBuilt => self.forget_all_services(),
        }
    }

    /// Empties every cache of what other nodes may have changed.
    fn forget_cached(&self) {
        self.inner.login_sessions.clear();
        self.forget_all_services();
    }

    /// Forgets every cached service definition (and model), for example because the lock of
    /// an environment that services run in changed.
    pub(crate) fn forget_all_services(&self) {
        self.service_cache().clear();
        self.realtime_models().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_their_text_form() {
        for event in [
            Event::LoginSession("a1b2".to_owned()),
            Event::Service {
                name: "iris".to_owned(),
                version: "v1.0".to_owned(),
            },
            Event::ComputeNodes,
            Event::BatchSubmitted,
            Event::BatchCancelled("c3".to_owned()),
        ] {
            assert_eq!(Event::decode(&event.encode()), Some(event));
        }
        assert_eq!(Event::decode("service iris"), None);
        assert_eq!(Event::decode("login a b"), None);
    }
}
