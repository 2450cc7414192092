//! Dedicated pools (9.3): `POST`, `DELETE` and `GET /services/{name}/{version}/pool`.
//!
//! The desired pools live in the database, with their services. Every web node pushes the
//! whole desired set to every healthy compute node right after a change and then every
//! `pool_sync_interval` ([`App::run_pool_sync`]), so that a node that joins later or restarts
//! gets the pools without anyone retrying, and a pool deleted while a node was away goes from
//! it when it comes back. A compute node reports its pools in its status; `GET` reads them.

use std::collections::HashMap;

use o16n_compute::{ComputeCall, ComputeError, NodeStatus, PoolHealth, PoolStatus, ServiceSpec};
use o16n_types::Service;
use o16n_types::{DedicatedPoolSize, Role, ServiceRuntime};
use tokio_util::sync::CancellationToken;

use crate::services::{parse_name, parse_version, service_not_found, service_spec};
use crate::{App, AppError, Principal};

/// Where a dedicated pool stands on one compute node, as the reference names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolState {
    /// The pool holds its initial size of workers with the current revision loaded.
    Success,
    /// The pool is being created, warmed or reloaded, or its node does not answer yet.
    Pending,
    /// The service has no dedicated pool on this node.
    NotFound,
}

impl PoolState {
    /// The reference's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PoolState::Success => "Success",
            PoolState::Pending => "Pending",
            PoolState::NotFound => "NotFound",
        }
    }
}

/// One compute node's entry in `GET .../pool`.
#[derive(Debug, Clone)]
pub struct NodePoolState {
    /// The node's endpoint (`local` for the one-box server's own).
    pub endpoint: String,
    /// Where the pool stands there.
    pub state: PoolState,
}

impl App {
    /// Creates or resizes a service's dedicated pool on every compute node. Sizes the caller
    /// leaves out are 0 (as the reference's clients default them); a maximum of 0 lets the
    /// pool grow to the node's limit of service workers.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name, version))]
    pub async fn set_service_pool(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
        initial_size: Option<i64>,
        max_size: Option<i64>,
    ) -> Result<(), AppError> {
        ensure_may_manage_pools(caller)?;
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        let size = pool_size(initial_size, max_size)?;
        let record = self
            .own_service(caller, &name, &version, "give a dedicated pool to")
            .await?;
        if record.runtime == ServiceRuntime::Realtime {
            return Err(AppError::InvalidInput(format!(
                "`{name}` version `{version}` is a realtime service: it is scored natively by every web node and has no workers to pool"
            )));
        }
        if !self
            .store()
            .set_service_pool(&name, &version, Some(size))
            .await?
        {
            return Err(service_not_found(&name, &version));
        }
        self.service_changed(name.as_str(), version.as_str()).await;
        self.sync_dedicated_pools().await;
        tracing::info!(
            initial = size.initial(),
            max = size.max(),
            "dedicated pool set"
        );
        Ok(())
    }

    /// Deletes a service's dedicated pool on every compute node.
    #[tracing::instrument(skip_all, fields(user = %caller.username, service = name, version))]
    pub async fn delete_service_pool(
        &self,
        caller: &Principal,
        name: &str,
        version: &str,
    ) -> Result<(), AppError> {
        ensure_may_manage_pools(caller)?;
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        self.own_service(caller, &name, &version, "delete the dedicated pool of")
            .await?;
        if !self.store().set_service_pool(&name, &version, None).await? {
            return Err(service_not_found(&name, &version));
        }
        self.service_changed(name.as_str(), version.as_str()).await;
        self.sync_dedicated_pools().await;
        tracing::info!("dedicated pool deleted");
        Ok(())
    }

    /// Where a service's dedicated pool stands on each compute node.
    pub async fn service_pool_status(
        &self,
        _caller: &Principal,
        name: &str,
        version: &str,
    ) -> Result<Vec<NodePoolState>, AppError> {
        let (name, version) = (parse_name(name)?, parse_version(version)?);
        let record = self
            .store()
            .find_service(&name, &version)
            .await?
            .ok_or_else(|| service_not_found(&name, &version))?;
        Ok(self
            .node_statuses()
            .await
            .into_iter()
            .map(|(view, answer)| NodePoolState {
                endpoint: view.node.endpoint.to_string(),
                state: state_on_node(&answer, &record),
            })
            .collect())
    }

    /// Where the dedicated pools of `services` stand, for those that have one: by
    /// `name/version`, the pool's state on every compute node, from one status call per node.
    pub async fn dedicated_pool_states<'a>(
        &self,
        services: impl IntoIterator<Item = &'a Service>,
    ) -> HashMap<String, Vec<PoolState>> {
        let with_pools: Vec<&Service> = services
            .into_iter()
            .filter(|record| record.pool.is_some())
            .collect();
        if with_pools.is_empty() {
            return HashMap::new();
        }
        let answers = self.node_statuses().await;
        with_pools
            .into_iter()
            .map(|record| {
                let states = answers
                    .iter()
                    .map(|(_, answer)| state_on_node(answer, record))
                    .collect();
                (pool_label(record), states)
            })
            .collect()
    }

    /// Sends the desired dedicated pools to every healthy compute node. A node that fails is
    /// logged and tried again at the next sync.
    pub(crate) async fn sync_dedicated_pools(&self) {
        let services = match self.store().list_service_pools().await {
            Ok(records) => records
                .iter()
                .filter_map(|record| match record.runtime {
                    ServiceRuntime::Interpreted(runtime) => Some(service_spec(record, runtime)),
                    ServiceRuntime::Realtime => None,
                })
                .collect::<Vec<ServiceSpec>>(),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the dedicated pools");
                return;
            }
        };
        let views = self.nodes().all();
        let sends = views.into_iter().filter(|view| view.healthy).map(|view| {
            let services = services.clone();
            async move {
                let node = view.node;
                let sent = self.send_pools(&node, services).await;
                if let Err(err) = sent {
                    tracing::warn!(node = %node.endpoint, error = %err, "cannot send the dedicated pools to a compute node");
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }

    /// Sends the pools to one node, with the content of their services that it lacks.
    async fn send_pools(
        &self,
        node: &o16n_compute::Node,
        services: Vec<ServiceSpec>,
    ) -> Result<(), AppError> {
        // Each missing content is sent once; a node lacking several asks again for the next.
        for _ in 0..=services.len() {
            let call = ComputeCall::SetDedicatedPools(services.clone());
            match node.compute.ask::<()>(call).await {
                Err(ComputeError::ContentMissing(digest)) => {
                    let content = services
                        .iter()
                        .filter_map(|spec| spec.content.as_ref())
                        .find(|content| content.digest == digest)
                        .ok_or_else(|| {
                            AppError::Internal(format!("a node asked for unknown content {digest}"))
                        })?;
                    self.send_content(node, content).await?;
                }
                other => return Ok(other?),
            }
        }
        Err(AppError::Internal(
            "a compute node kept asking for content it was sent".to_owned(),
        ))
    }

    /// Keeps the compute nodes' dedicated pools in line until `stop`.
    pub async fn run_pool_sync(&self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.inner.config.pool_sync_interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => self.sync_dedicated_pools().await,
            }
        }
    }
}

/// Readers manage no pools; Contributors those of their services, Owners any.
fn ensure_may_manage_pools(caller: &Principal) -> Result<(), AppError> {
    if caller.role < Role::Contributor {
        return Err(AppError::Forbidden(
            "you are not authorized to create or update service pools".to_owned(),
        ));
    }
    Ok(())
}

/// The sizes of a request, checked; a missing size is 0.
fn pool_size(
    initial_size: Option<i64>,
    max_size: Option<i64>,
) -> Result<DedicatedPoolSize, AppError> {
    let size = |value: Option<i64>, field: &str| {
        u32::try_from(value.unwrap_or(0)).map_err(|_| {
            AppError::InvalidInput(format!(
                "{field} must be between 0 and {}",
                DedicatedPoolSize::LIMIT
            ))
        })
    };
    let (initial, max) = (
        size(initial_size, "InitialPoolSize")?,
        size(max_size, "MaxPoolSize")?,
    );
    DedicatedPoolSize::new(initial, max).map_err(|err| AppError::InvalidInput(err.to_string()))
}

/// The name compute nodes know a service's pool by.
fn pool_label(record: &Service) -> String {
    format!("{}/{}", record.name, record.version)
}

/// Where a service's dedicated pool stands on a node, from the node's status or why it did not
/// answer.
fn state_on_node(answer: &Result<NodeStatus, String>, record: &Service) -> PoolState {
    let wanted = record.pool.is_some();
    match answer {
        Ok(status) => {
            let label = pool_label(record);
            pool_state(
                status
                    .pools
                    .iter()
                    .find(|pool| pool.service.as_deref() == Some(&label)),
                &record.revision,
                wanted,
            )
        }
        // A node that does not answer gets the pool when it comes back.
        Err(_) if wanted => PoolState::Pending,
        Err(_) => PoolState::NotFound,
    }
}

/// Where a pool stands on a node that answered.
fn pool_state(pool: Option<&PoolStatus>, revision: &str, wanted: bool) -> PoolState {
    match (pool, wanted) {
        (None, false) => PoolState::NotFound,
        // Not there yet, or still there after a delete: either way the next sync settles it.
        (None, true) | (Some(_), false) => PoolState::Pending,
        (Some(pool), true) => {
            let ready = pool.revision.as_deref() == Some(revision)
                && pool.health == PoolHealth::Ready
                && pool.idle + pool.busy >= pool.initial_size;
            if ready {
                PoolState::Success
            } else {
                PoolState::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use o16n_types::RuntimeType;

    use super::*;

    fn pool(revision: &str, idle: usize, busy: usize, health: PoolHealth) -> PoolStatus {
        PoolStatus {
            runtime: RuntimeType::Python,
            service: Some("svc/v1".to_owned()),
            revision: Some(revision.to_owned()),
            environment: None,
            health,
            initial_size: 2,
            max_size: 4,
            size: idle + busy,
            busy,
            idle,
            starting: 0,
            waiting: 0,
            workers_started: 0,
            worker_start_failures: 0,
            workers_retired: 0,
            workers_died: 0,
        }
    }

    #[test]
    fn a_pool_succeeds_once_its_initial_workers_hold_the_current_revision() {
        let ready = pool("r2", 1, 1, PoolHealth::Ready);
        assert_eq!(pool_state(Some(&ready), "r2", true), PoolState::Success);
        assert_eq!(pool_state(Some(&ready), "r3", true), PoolState::Pending);
        let warming = pool("r2", 1, 0, PoolHealth::Ready);
        assert_eq!(pool_state(Some(&warming), "r2", true), PoolState::Pending);
        let failing = pool(
            "r2",
            2,
            0,
            PoolHealth::Unavailable("initCode failed".to_owned()),
        );
        assert_eq!(pool_state(Some(&failing), "r2", true), PoolState::Pending);
    }

    #[test]
    fn a_pool_is_not_found_only_when_neither_wanted_nor_held() {
        assert_eq!(pool_state(None, "r", false), PoolState::NotFound);
        assert_eq!(pool_state(None, "r", true), PoolState::Pending);
        let held = pool("r", 2, 0, PoolHealth::Ready);
        assert_eq!(pool_state(Some(&held), "r", false), PoolState::Pending);
    }

    #[test]
    fn sizes_are_checked() {
        assert_eq!(
            pool_size(None, None).unwrap(),
            DedicatedPoolSize::new(0, 0).unwrap()
        );
        assert!(pool_size(Some(3), Some(2)).is_err());
        assert!(pool_size(Some(-1), Some(2)).is_err());
        assert!(pool_size(Some(0), Some(1_001)).is_err());
        assert!(pool_size(Some(5), Some(0)).is_ok());
    }
}
