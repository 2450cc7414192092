//! The compute nodes of a web node: who they are, whether they answer, and where work goes.
//!
//! Every registered node is health-checked continuously (its status, every
//! `health_interval`); a node that does not answer within `health_timeout`, or whose call just
//! broke, gets no new work, and rejoins by itself when it answers again. Sessions go to the
//! healthy node with the fewest sessions and requests in flight. A service request prefers a
//! node that already ran the service's revision (its workers have it loaded) and spills to the
//! least loaded healthy node when that one is busier by more than a margin; the spill node then
//! has the revision too.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use o16n_compute::{Compute, ComputeCall, ComputeError, Node, NodeStatus, NodeView, Nodes};
use o16n_types::RuntimeType;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::client::RemoteNode;
use crate::tls::ClientTls;

/// How much busier than the least loaded node a node that has a service loaded may be before
/// a request of that service goes elsewhere.
const SPILL_MARGIN: usize = 2;

/// Settings of a web node's fleet.
#[derive(Clone)]
pub struct FleetConfig {
    /// The cluster secret every call carries.
    pub secret: SecretString,
    /// Certificate authorities trusted for `https://` compute nodes.
    pub tls: ClientTls,
    /// How often every node is checked.
    pub health_interval: Duration,
    /// How long a check waits for an answer.
    pub health_timeout: Duration,
    /// How long connecting to a node may take.
    pub connect_timeout: Duration,
}

struct Member {
    endpoint: Arc<str>,
    node: Arc<RemoteNode>,
    status: Mutex<Option<NodeStatus>>,
    /// How many sessions this web node had opened there when the last status was asked
    /// for. Those opened since are not in that status yet; without them, sessions opened in a
    /// burst would all go to the same node.
    opened_before_status: AtomicUsize,
    problem: Mutex<Option<String>>,
}

impl Member {
    fn view(&self) -> Node {
        Node {
            endpoint: self.endpoint.clone(),
            compute: self.node.clone(),
        }
    }

    /// The node with what its last health check found.
    fn health(&self) -> NodeView {
        let started_at = self
            .status
            .lock()
            .expect("fleet lock poisoned. This is a bug.")
            .as_ref()
            .map(|status| status.started_at);
        NodeView {
            node: self.view(),
            healthy: self.node.healthy(),
            problem: self
                .problem
                .lock()
                .expect("fleet lock poisoned. This is a bug.")
                .clone(),
            started_at,
        }
    }

    /// Sessions it holds (by its last status, plus those opened since) and requests this web
    /// node has running there (sessions being opened among them).
    fn load(&self) -> usize {
        let sessions = self
            .status
            .lock()
            .expect("fleet lock poisoned. This is a bug.")
            .as_ref()
            .map_or(0, |status| status.sessions);
        let opened_since = self
            .node
            .sessions_opened()
            .saturating_sub(self.opened_before_status.load(Ordering::Relaxed));
        sessions + opened_since + self.node.in_flight()
    }
}

/// The compute nodes of a web node. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<FleetInner>,
}

struct FleetInner {
    config: FleetConfig,
    client: reqwest::Client,
    members: RwLock<Vec<Arc<Member>>>,
    /// The nodes that ran each service revision, by revision key.
    homes: Mutex<HashMap<String, HashSet<Arc<str>>>>,
    /// Wakes the health checker at once (the list changed).
    recheck: tokio::sync::Notify,
}

impl Fleet {
    /// An empty fleet; [`Nodes::set_endpoints`] registers nodes.
    pub fn new(config: FleetConfig) -> Result<Fleet, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .http2_prior_knowledge()
            .http2_keep_alive_interval(Duration::from_secs(1))
            .http2_keep_alive_timeout(Duration::from_secs(3))
            .http2_keep_alive_while_idle(true)
            .tcp_nodelay(true)
            .connect_timeout(config.connect_timeout);
        for authority in &config.tls.authorities {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(authority)?);
        }
        Ok(Fleet {
            inner: Arc::new(FleetInner {
                client: builder.build()?,
                config,
                members: RwLock::new(Vec::new()),
                homes: Mutex::new(HashMap::new()),
                recheck: tokio::sync::Notify::new(),
            }),
        })
    }

    fn members(&self) -> Vec<Arc<Member>> {
        self.inner
            .members
            .read()
            .expect("fleet lock poisoned. This is a bug.")
            .clone()
    }

    fn healthy(&self) -> Vec<Arc<Member>> {
        self.members()
            .into_iter()
            .filter(|member| member.node.healthy())
            .collect()
    }

    /// Checks every node until `stop` is cancelled: every health interval, and at once when
    /// the list changes.
    pub fn start_health_checks(&self, tasks: &TaskTracker, stop: CancellationToken) {
        let fleet = self.clone();
        tasks.spawn(async move {
            loop {
                fleet.check_all().await;
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = fleet.inner.recheck.notified() => {}
                    () = tokio::time::sleep(fleet.inner.config.health_interval) => {}
                }
            }
        });
    }

    async fn check_all(&self) {
        let timeout = self.inner.config.health_timeout;
        let checks = self.members().into_iter().map(|member| async move {
            let opened_before = member.node.sessions_opened();
            let node: &dyn Compute = member.node.as_ref();
            let status = node.ask::<NodeStatus>(ComputeCall::Status);
            let answer = tokio::time::timeout(timeout, status).await;
            let (status, problem) = match answer {
                Ok(Ok(status)) => (Some(status), None),
                Ok(Err(err)) => (None, Some(err.to_string())),
                Err(_) => (None, Some(format!("no answer within {} ms", timeout.as_millis()))),
            };
            let healthy = status.is_some();
            if healthy != member.node.healthy() {
                match &problem {
                    None => tracing::info!(endpoint = %member.endpoint, "compute node answers"),
                    Some(problem) => tracing::warn!(endpoint = %member.endpoint, %problem, "compute node does not answer"),
                }
            }
            member.node.set_healthy(healthy);
            *member
                .status
                .lock()
                .expect("fleet lock poisoned. This is a bug.") = status;
            member
                .opened_before_status
                .store(opened_before, Ordering::Relaxed);
            *member
                .problem
                .lock()
                .expect("fleet lock poisoned. This is a bug.") = problem;
        });
        futures_util::future::join_all(checks).await;
    }

    /// The loads of `members`, read once: they change under concurrent requests, so every
    /// decision about one placement must look at the same figures.
    fn loads(members: &[Arc<Member>]) -> Vec<usize> {
        members.iter().map(|member| member.load()).collect()
    }

    fn none_answers(&self) -> ComputeError {
        let registered = self.members().len();
        ComputeError::NodeUnavailable(if registered == 0 {
            "no compute node is registered: add some with /computenodes or cluster.compute_nodes"
                .to_owned()
        } else {
            format!("none of the {registered} registered compute nodes answers")
        })
    }
}

impl Nodes for Fleet {
    fn for_session(&self, _runtime: RuntimeType) -> Result<Node, ComputeError> {
        let healthy = self.healthy();
        let loads = Self::loads(&healthy);
        least_loaded(&loads, random_tie_break)
            .map(|index| healthy[index].view())
            .ok_or_else(|| self.none_answers())
    }

    fn for_service(&self, key: &str, _runtime: RuntimeType) -> Result<Node, ComputeError> {
        let healthy = self.healthy();
        let loads = Self::loads(&healthy);
        let mut homes = self
            .inner
            .homes
            .lock()
            .expect("fleet lock poisoned. This is a bug.");
        let known = homes.entry(key.to_owned()).or_default();
        let is_home: Vec<bool> = healthy
            .iter()
            .map(|member| known.contains(&member.endpoint))
            .collect();
        let chosen = service_placement(&loads, &is_home, random_tie_break)
            .ok_or_else(|| self.none_answers())?;
        known.insert(healthy[chosen].endpoint.clone());
        Ok(healthy[chosen].view())
    }

    fn get(&self, endpoint: &str) -> Option<NodeView> {
        self.members()
            .iter()
            .find(|member| &*member.endpoint == endpoint)
            .map(|member| member.health())
    }

    fn all(&self) -> Vec<NodeView> {
        self.members()
            .iter()
            .map(|member| member.health())
            .collect()
    }

    fn remote(&self) -> bool {
        true
    }

    fn set_endpoints(&self, endpoints: Vec<String>) {
        let mut members = self
            .inner
            .members
            .write()
            .expect("fleet lock poisoned. This is a bug.");
        let kept: Vec<Arc<Member>> = endpoints
            .iter()
            .map(|endpoint| {
                members
                    .iter()
                    .find(|member| &*member.endpoint == endpoint.as_str())
                    .cloned()
                    .unwrap_or_else(|| {
                        Arc::new(Member {
                            endpoint: Arc::from(endpoint.as_str()),
                            node: Arc::new(RemoteNode::new(
                                endpoint,
                                self.inner.client.clone(),
                                self.inner.config.secret.clone(),
                            )),
                            status: Mutex::new(None),
                            opened_before_status: AtomicUsize::new(0),
                            problem: Mutex::new(Some("not checked yet".to_owned())),
                        })
                    })
            })
            .collect();
        *members = kept;
        drop(members);
        self.inner.recheck.notify_one();
    }
}

/// Picks one of `count` equally good nodes at random, so that idle nodes share new work.
fn random_tie_break(count: usize) -> usize {
    rand::random_range(0..count)
}

/// The index of a least-loaded node; `tie_break` picks among the equally loaded ones (it is
/// given their number). `None` when there is no node.
fn least_loaded(loads: &[usize], tie_break: impl FnOnce(usize) -> usize) -> Option<usize> {
    let lowest = *loads.iter().min()?;
    let candidates: Vec<usize> = (0..loads.len())
        .filter(|&index| loads[index] == lowest)
        .collect();
    Some(candidates[tie_break(candidates.len())])
}

/// Where a service request goes: to the least-loaded node that has already loaded the service
/// (`is_home`), unless it is more than [`SPILL_MARGIN`] busier than the least-loaded node of
/// all, which then loads it too.
fn service_placement(
    loads: &[usize],
    is_home: &[bool],
    tie_break: impl FnOnce(usize) -> usize,
) -> Option<usize> {
    let least = least_loaded(loads, tie_break)?;
    let home = (0..loads.len())
        .filter(|&index| is_home[index])
        .min_by_key(|&index| loads[index]);
    Some(match home {
        Some(home) if loads[home] <= loads[least] + SPILL_MARGIN => home,
        _ => least,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_loaded_node_is_chosen_and_ties_are_left_to_the_tie_break() {
        assert_eq!(least_loaded(&[], |_| 0), None);
        assert_eq!(least_loaded(&[3, 1, 2], |_| 0), Some(1));
        let mut offered = 0;
        let chosen = least_loaded(&[2, 0, 5, 0], |count| {
            offered = count;
            1
        });
        assert_eq!((offered, chosen), (2, Some(3)));
    }

    #[test]
    fn a_service_stays_on_its_home_until_the_home_is_clearly_busier() {
        let first = |_| 0;
        // No home yet: the least-loaded node.
        assert_eq!(service_placement(&[4, 1], &[false, false], first), Some(1));
        // A home within the margin keeps the service there.
        assert_eq!(service_placement(&[3, 1], &[true, false], first), Some(0));
        // A home more than the margin busier sends it elsewhere.
        assert_eq!(service_placement(&[4, 1], &[true, false], first), Some(1));
        // Of two homes, the less loaded.
        assert_eq!(
            service_placement(&[2, 9, 1], &[true, false, true], first),
            Some(2)
        );
        assert_eq!(service_placement(&[], &[], first), None);
    }
}
