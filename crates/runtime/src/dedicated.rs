//! Dedicated pools (9.3): per service, workers of its own with the service loaded.
//!
//! A service with a dedicated pool runs only on its pool's workers, never on the shared ones,
//! even when all of its workers are busy: its requests then wait, at most `wait_limit`, and
//! are refused with a message naming the pool. Each pool has its own [`Pool`] of fresh workers
//! (so that the shared pool's figures never move for it) and its own [`ServiceWorkers`] on
//! top, which keep `initial_size` workers warm with the service's snapshot and initCode
//! loaded, and grow up to `max_size`.
//!
//! Web nodes send the whole desired set on every health check ([`DedicatedPools::set`]); a
//! request of a pooled service creates the pool on the spot when it is missing (a node that
//! just joined). A pool whose service revision changed is replaced (an update reloads), one no
//! longer wanted is dropped: its workers stop once the requests running on them finish.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use o16n_compute::{DedicatedPoolSpec, PoolHealth, PoolStatus, ServiceSpec};
use o16n_types::RuntimeType;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::RuntimeError;
use crate::content::ContentStore;
use crate::environments::Environments;
use crate::pool::{Launch, Pool, PoolConfig};
use crate::sandbox::Sandbox;
use crate::services::{DedicatedLimits, ServiceWorkers, ServiceWorkersConfig};

/// What every dedicated pool of a node shares.
pub(crate) struct DedicatedPools {
    launch: HashMap<RuntimeType, watch::Receiver<Launch>>,
    environments: Arc<Environments>,
    /// The node's limit of service workers per runtime: the size of a pool whose maximum is 0.
    node_limits: HashMap<RuntimeType, usize>,
    work_root: PathBuf,
    sandbox: Sandbox,
    execution_timeout: Duration,
    wait_limit: Duration,
    contents: Arc<ContentStore>,
    tasks: TaskTracker,
    stop: CancellationToken,
    pools: Mutex<HashMap<String, Arc<DedicatedPool>>>,
}

/// One service's pool.
pub(crate) struct DedicatedPool {
    spec: ServiceSpec,
    initial_size: usize,
    max_size: usize,
    pool: Pool,
    workers: ServiceWorkers,
    /// Whether a task is warming the pool up to its initial size.
    warming: AtomicBool,
    /// Why the last warm-up failed (the initCode, or workers that cannot start).
    warm_failure: Mutex<Option<String>>,
    /// Stops the pool's own maintenance when the pool goes.
    stop: CancellationToken,
}

impl Drop for DedicatedPool {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The settings the node passes down.
pub(crate) struct DedicatedSettings {
    pub(crate) launch: HashMap<RuntimeType, watch::Receiver<Launch>>,
    /// Where the launch of a service's environment comes from.
    pub(crate) environments: Arc<Environments>,
    pub(crate) node_limits: HashMap<RuntimeType, usize>,
    pub(crate) work_root: PathBuf,
    pub(crate) sandbox: Sandbox,
    pub(crate) execution_timeout: Duration,
    pub(crate) wait_limit: Duration,
    pub(crate) contents: Arc<ContentStore>,
}

impl DedicatedPools {
    pub(crate) fn new(
        settings: DedicatedSettings,
        tasks: TaskTracker,
        stop: CancellationToken,
    ) -> Self {
        DedicatedPools {
            launch: settings.launch,
            environments: settings.environments,
            node_limits: settings.node_limits,
            work_root: settings.work_root,
            sandbox: settings.sandbox,
            execution_timeout: settings.execution_timeout,
            wait_limit: settings.wait_limit,
            contents: settings.contents,
            tasks,
            stop,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<DedicatedPool>>> {
        self.pools
            .lock()
            .expect("dedicated pools lock poisoned. This is a bug.")
    }

    /// Brings the pools in line with `services` (each with its pool) and warms them.
    pub(crate) fn set(&self, services: Vec<ServiceSpec>) -> Result<(), RuntimeError> {
        let mut wanted = HashMap::new();
        for spec in services {
            let Some(pool) = &spec.pool else {
                return Err(RuntimeError::InvalidInput(format!(
                    "service revision `{}` has no dedicated pool",
                    spec.key
                )));
            };
            // Content the node lacks is asked for now, so that warming does not fail on it.
            if let Some(content) = &spec.content {
                self.contents.get(content)?;
            }
            wanted.insert(pool.service.clone(), spec);
        }
        let stale: Vec<Arc<DedicatedPool>> = {
            let mut pools = self.pools();
            let gone: Vec<String> = pools
                .keys()
                .filter(|service| !wanted.contains_key(*service))
                .cloned()
                .collect();
            gone.iter()
                .filter_map(|service| pools.remove(service))
                .collect()
        };
        for pool in stale {
            // Its warm-up, if any, stops now; requests running on it finish first.
            pool.stop.cancel();
            tracing::info!(service = %pool.name(), "dedicated pool removed");
        }
        for spec in wanted.into_values() {
            let pool = self.pool_for(&spec)?;
            self.warm(&pool);
        }
        Ok(())
    }

    /// The pool of a pooled service, created (or replaced, when the revision or the sizes
    /// changed) when needed.
    pub(crate) fn pool_for(&self, spec: &ServiceSpec) -> Result<Arc<DedicatedPool>, RuntimeError> {
        let wanted = spec
            .pool
            .as_ref()
            .expect("only pooled services have a dedicated pool. This is a bug.");
        let mut pools = self.pools();
        if let Some(pool) = pools.get(&wanted.service)
            && pool.matches(spec, wanted)
        {
            return Ok(pool.clone());
        }
        let pool = Arc::new(self.create(spec, wanted)?);
        if let Some(replaced) = pools.insert(wanted.service.clone(), pool.clone()) {
            replaced.stop.cancel();
            tracing::info!(service = %wanted.service, revision = %spec.key, "dedicated pool reloaded");
        } else {
            tracing::info!(service = %wanted.service, "dedicated pool created");
        }
        drop(pools);
        self.warm(&pool);
        Ok(pool)
    }

    fn create(
        &self,
        spec: &ServiceSpec,
        wanted: &DedicatedPoolSpec,
    ) -> Result<DedicatedPool, RuntimeError> {
        let launch = match &spec.environment {
            Some(environment) => Some(
                self.environments
                    .launch(&crate::environments::lock_handle(environment), environment),
            ),
            None => self.launch.get(&spec.runtime).cloned(),
        };
        let (Some(launch), Some(node_limit)) = (launch, self.node_limits.get(&spec.runtime)) else {
            return Err(RuntimeError::RuntimeNotSupported(format!(
                "this process runs no {} workers",
                spec.runtime
            )));
        };
        // A pool never holds more workers than the node runs for services of its runtime,
        // whatever size its service asked for.
        let max_size = match wanted.max_size {
            0 => *node_limit,
            max => usize::try_from(max).map_or(*node_limit, |max| max.min(*node_limit)),
        };
        let initial_size = (wanted.initial_size as usize).min(max_size);
        let stop = self.stop.child_token();
        let pool = Pool::start(
            spec.runtime,
            PoolConfig {
                // Workers start when the service workers ask, which load the service into them.
                initial_size: 0,
                max_size,
                acquire_timeout: self.wait_limit,
            },
            self.work_root.clone(),
            self.sandbox.clone(),
            launch,
            &self.tasks,
            stop.clone(),
        );
        let workers = ServiceWorkers::new(
            spec.runtime,
            pool.clone(),
            ServiceWorkersConfig {
                max_workers: max_size,
                max_loaded_per_worker: 1,
            },
            self.execution_timeout,
            Some(DedicatedLimits {
                service: wanted.service.clone(),
                wait_limit: self.wait_limit,
            }),
        );
        Ok(DedicatedPool {
            spec: spec.clone(),
            initial_size,
            max_size,
            pool,
            workers,
            warming: AtomicBool::new(false),
            warm_failure: Mutex::new(None),
            stop,
        })
    }

    /// Starts warming a pool up to its initial size, unless that is under way.
    fn warm(&self, pool: &Arc<DedicatedPool>) {
        if pool.initial_size == 0 || pool.warming.swap(true, Ordering::AcqRel) {
            return;
        }
        let pool = pool.clone();
        let contents = self.contents.clone();
        let stop = pool.stop.clone();
        self.tasks.spawn(async move {
            let warmed = tokio::select! {
                () = stop.cancelled() => return,
                warmed = pool.workers.prewarm(&pool.spec, pool.initial_size, &contents) => warmed,
            };
            let failure = warmed.err().map(|err| {
                tracing::warn!(service = %pool.name(), error = %err, "cannot warm a dedicated pool");
                err.to_string()
            });
            *pool.failure() = failure;
            pool.warming.store(false, Ordering::Release);
        });
    }

    /// Every pool's figures, by service.
    pub(crate) fn statuses(&self) -> Vec<PoolStatus> {
        let pools: Vec<Arc<DedicatedPool>> = self.pools().values().cloned().collect();
        let mut statuses: Vec<PoolStatus> = pools.iter().map(|pool| pool.status()).collect();
        statuses.sort_by(|a, b| a.service.cmp(&b.service));
        statuses
    }

    /// Drops every pool (for shutdown), returning the workers so that the caller can wait for
    /// them to stop.
    pub(crate) fn drain(&self) -> Vec<crate::worker::WorkerHandle> {
        let pools: Vec<Arc<DedicatedPool>> = self.pools().drain().map(|(_, pool)| pool).collect();
        pools
            .iter()
            .flat_map(|pool| {
                let mut workers = pool.workers.drain();
                workers.extend(pool.pool.drain());
                workers
            })
            .collect()
    }
}

impl DedicatedPool {
    fn name(&self) -> &str {
        self.spec
            .pool
            .as_ref()
            .map_or(self.spec.key.as_str(), |pool| pool.service.as_str())
    }

    fn matches(&self, spec: &ServiceSpec, wanted: &DedicatedPoolSpec) -> bool {
        self.spec.key == spec.key && self.spec.pool.as_ref() == Some(wanted)
    }

    fn failure(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.warm_failure
            .lock()
            .expect("dedicated pool lock poisoned. This is a bug.")
    }

    /// The service workers that run the pool's requests.
    pub(crate) fn workers(&self) -> &ServiceWorkers {
        &self.workers
    }

    fn status(&self) -> PoolStatus {
        let mut base = self.pool.status();
        if let Some(failure) = self.failure().clone()
            && base.health == PoolHealth::Ready
        {
            base.health = PoolHealth::Unavailable(failure);
        }
        base.service = Some(self.name().to_owned());
        base.revision = Some(self.spec.key.clone());
        base.initial_size = self.initial_size;
        base.max_size = self.max_size;
        self.workers.status(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Launcher;

    struct Bench {
        pools: DedicatedPools,
        _launch: watch::Sender<Launch>,
        _root: tempfile::TempDir,
    }

    /// Dedicated pools of fake Python workers, with a node limit of 4 service workers.
    async fn bench() -> Bench {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("work")).unwrap();
        let sandbox = Sandbox::off_for_tests(root.path().join("locks")).await;
        let (launch, ready) = watch::channel(Launch::Ready(Launcher::Fake(RuntimeType::Python)));
        let contents = ContentStore::open(root.path().join("content"), 1 << 20).unwrap();
        let launches = HashMap::from([(RuntimeType::Python, ready)]);
        let environments = Arc::new(Environments::new(
            crate::EnvironmentsConfig {
                root: root.path().join("environments"),
                python_index_url: String::new(),
                python_extra_index_urls: Vec::new(),
                r_repositories: Vec::new(),
                build_timeout: Duration::from_secs(60),
                pool_size: 0,
                source_builds: false,
                proxy_env: Vec::new(),
            },
            sandbox.clone(),
            launches.clone(),
            TaskTracker::new(),
            CancellationToken::new(),
        ));
        let pools = DedicatedPools::new(
            DedicatedSettings {
                launch: launches,
                environments,
                node_limits: HashMap::from([(RuntimeType::Python, 4)]),
                work_root: root.path().join("work"),
                sandbox,
                execution_timeout: Duration::from_secs(600),
                wait_limit: Duration::from_secs(5),
                contents: Arc::new(contents),
            },
            TaskTracker::new(),
            CancellationToken::new(),
        );
        Bench {
            pools,
            _launch: launch,
            _root: root,
        }
    }

    fn pooled(service: &str, revision: &str, initial_size: u32, max_size: u32) -> ServiceSpec {
        ServiceSpec {
            key: revision.to_owned(),
            owner: "alice".to_owned(),
            runtime: RuntimeType::Python,
            code: "y".to_owned(),
            init_code: Some("loaded".to_owned()),
            outputs: Vec::new(),
            output_file_names: Vec::new(),
            content: None,
            pool: Some(DedicatedPoolSpec {
                service: service.to_owned(),
                initial_size,
                max_size,
            }),
            environment: None,
        }
    }

    /// Waits (on tokio's paused clock) until the pools' figures satisfy `done`.
    async fn settle(
        pools: &DedicatedPools,
        done: impl Fn(&[PoolStatus]) -> bool,
    ) -> Vec<PoolStatus> {
        for _ in 0..1_000 {
            let statuses = pools.statuses();
            if done(&statuses) {
                return statuses;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the pools never settled: {:?}", pools.statuses());
    }

    #[tokio::test(start_paused = true)]
    async fn the_node_follows_the_desired_pools_warming_reloading_and_dropping_them() {
        let bench = bench().await;
        bench
            .pools
            .set(vec![
                pooled("a/v1", "r1", 2, 3),
                pooled("b/v1", "r1", 1, 0),
                pooled("c/v1", "r1", 1000, 1000),
            ])
            .unwrap();
        let warm = settle(&bench.pools, |pools| {
            pools.len() == 3 && pools.iter().all(|pool| pool.idle == pool.initial_size)
        })
        .await;
        assert_eq!(
            warm.iter()
                .map(|pool| (pool.service.as_deref().unwrap(), pool.idle, pool.max_size))
                .collect::<Vec<_>>(),
            [("a/v1", 2, 3), ("b/v1", 1, 4), ("c/v1", 4, 4)],
            "a maximum of 0, or one past the node's limit, is the node's limit"
        );

        // A new revision of `a` replaces its pool; `b` is no longer wanted and goes.
        bench.pools.set(vec![pooled("a/v1", "r2", 2, 3)]).unwrap();
        let reloaded = settle(&bench.pools, |pools| {
            pools.len() == 1 && pools[0].idle == 2 && pools[0].revision.as_deref() == Some("r2")
        })
        .await;
        assert_eq!(reloaded[0].service.as_deref(), Some("a/v1"));

        // The same desired state again changes nothing.
        let before = Arc::as_ptr(&bench.pools.pool_for(&pooled("a/v1", "r2", 2, 3)).unwrap());
        bench.pools.set(vec![pooled("a/v1", "r2", 2, 3)]).unwrap();
        let after = Arc::as_ptr(&bench.pools.pool_for(&pooled("a/v1", "r2", 2, 3)).unwrap());
        assert_eq!(before, after);

        bench.pools.set(Vec::new()).unwrap();
        assert!(bench.pools.statuses().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_pool_whose_init_code_fails_reports_why() {
        let bench = bench().await;
        let mut failing = pooled("bad/v1", "r1", 1, 1);
        failing.init_code = Some("fail".to_owned());
        bench.pools.set(vec![failing]).unwrap();
        let statuses = settle(&bench.pools, |pools| {
            matches!(
                pools.first().map(|pool| &pool.health),
                Some(PoolHealth::Unavailable(_))
            )
        })
        .await;
        assert_eq!(statuses[0].idle, 0);
    }
}
