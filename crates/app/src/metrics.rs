//! Prometheus metrics: what a web node counts as requests pass ([`Metrics`]), and what it
//! reads from its compute nodes when scraped ([`App::render_metrics`]).
//!
//! Each [`App`] has a registry of its own (no global state), so that several servers in one
//! process keep separate figures. Labels are bounded: routes are templates (never raw paths),
//! services are the published ones, pools and nodes the configured ones. Names follow the
//! Prometheus conventions: `o16n_` prefix, base units, `_total` for counters.

use std::fmt::Write;
use std::time::Duration;

use o16n_compute::{PoolHealth, StageTimings};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::App;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceOutcomeLabels {
    service: String,
    version: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceStageLabels {
    service: String,
    version: String,
    stage: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    provider: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    node: String,
    runtime: &'static str,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolStateLabels {
    node: String,
    runtime: &'static str,
    pool: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerExitLabels {
    node: String,
    runtime: &'static str,
    pool: String,
    reason: &'static str,
}

/// Durations from 0.5 ms to about 33 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The figures a web node counts as work passes through it.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_durations: Family<RouteLabels, Histogram, fn() -> Histogram>,
    service_requests: Family<ServiceOutcomeLabels, Counter>,
    service_durations: Family<ServiceStageLabels, Histogram, fn() -> Histogram>,
    realtime_durations: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    realtime_rows: Family<ServiceLabels, Counter>,
    batch_records: Family<OutcomeLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
}

/// How one service request ended.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ServiceOutcome {
    /// The code ran and succeeded.
    Success,
    /// The code ran and failed (its error is in the answer).
    Failure,
    /// The request was refused or could not run (bad input, no worker, node down).
    Error,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("o16n");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_durations =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route template and method",
            http_durations.clone(),
        );
        let service_requests = Family::<ServiceOutcomeLabels, Counter>::default();
        registry.register(
            "service_requests",
            "Web service requests (single and batch records), by service, version and outcome",
            service_requests.clone(),
        );
        let service_durations =
            Family::<ServiceStageLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "service_request_duration_seconds",
            "Time of web service requests by stage: queue (waiting for or starting a worker), \
             load (snapshot and initCode), execute, hop (web node to compute node and back) and total",
            service_durations.clone(),
        );
        let realtime_durations =
            Family::<ServiceLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "realtime_score_duration_seconds",
            "Time to score one realtime request natively",
            realtime_durations.clone(),
        );
        let realtime_rows = Family::<ServiceLabels, Counter>::default();
        registry.register(
            "realtime_rows",
            "Rows scored by realtime services",
            realtime_rows.clone(),
        );
        let batch_records = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "batch_records",
            "Batch records run, by outcome",
            batch_records.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Sign-ins, by provider and outcome",
            logins.clone(),
        );
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The o16n version answering", build_info);
        Metrics {
            registry,
            http_requests,
            http_durations,
            service_requests,
            service_durations,
            realtime_durations,
            realtime_rows,
            batch_records,
            logins,
        }
    }
}

impl Metrics {
    /// Counts one HTTP request; `route` is the matched route template.
    pub fn http_request(&self, route: &str, method: &str, status: u16, duration: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                route: route.to_owned(),
                method: method.to_owned(),
                status,
            })
            .inc();
        self.http_durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
                method: method.to_owned(),
            })
            .observe(duration.as_secs_f64());
    }

    /// Counts one request of an R or Python service with where its time went.
    pub(crate) fn service_request(
        &self,
        service: &str,
        version: &str,
        outcome: ServiceOutcome,
        stages: Option<&ServiceStages>,
    ) {
        self.service_requests
            .get_or_create(&ServiceOutcomeLabels {
                service: service.to_owned(),
                version: version.to_owned(),
                outcome: match outcome {
                    ServiceOutcome::Success => "success",
                    ServiceOutcome::Failure => "failure",
                    ServiceOutcome::Error => "error",
                },
            })
            .inc();
        let Some(stages) = stages else { return };
        for (stage, duration) in stages.named() {
            self.service_durations
                .get_or_create(&ServiceStageLabels {
                    service: service.to_owned(),
                    version: version.to_owned(),
                    stage,
                })
                .observe(duration.as_secs_f64());
        }
    }

    /// Counts one realtime request of `rows` rows.
    pub(crate) fn realtime_request(
        &self,
        service: &str,
        version: &str,
        rows: usize,
        took: Duration,
    ) {
        let labels = ServiceLabels {
            service: service.to_owned(),
            version: version.to_owned(),
        };
        self.realtime_durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.realtime_rows
            .get_or_create(&labels)
            .inc_by(rows as u64);
    }

    /// Counts one batch record.
    pub(crate) fn batch_record(&self, succeeded: bool) {
        self.batch_records
            .get_or_create(&OutcomeLabels {
                outcome: if succeeded { "success" } else { "failure" },
            })
            .inc();
    }

    /// Counts one sign-in.
    pub(crate) fn login(&self, provider: &'static str, succeeded: bool) {
        self.logins
            .get_or_create(&LoginLabels {
                provider,
                outcome: if succeeded { "success" } else { "failure" },
            })
            .inc();
    }
}

/// Where one service request spent its time, as the web node saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceStages {
    /// The compute node's own stages.
    pub node: StageTimings,
    /// From the web node's use case sending the request to its answer.
    pub total: Duration,
}

impl ServiceStages {
    /// The stages by the names the metrics, `Server-Timing` and the capacity tool use: the
    /// hop is what the total leaves after the compute node's stages.
    pub fn named(&self) -> [(&'static str, Duration); 5] {
        let queue = Duration::from_micros(self.node.queue_micros);
        let load = Duration::from_micros(self.node.load_micros);
        let execute = Duration::from_micros(self.node.execute_micros);
        let hop = self.total.saturating_sub(queue + load + execute);
        [
            ("queue", queue),
            ("load", load),
            ("execute", execute),
            ("hop", hop),
            ("total", self.total),
        ]
    }
}

impl App {
    /// The metrics, when they are on.
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.as_ref()
    }

    /// The Prometheus text: the counted figures, then every compute node's pools, sessions
    /// and health, read now.
    pub async fn render_metrics(&self) -> Option<String> {
        let metrics = self.metrics()?;
        let reports = self.node_statuses().await;

        let mut nodes = Registry::with_prefix("o16n");
        let up = Family::<NodeLabels, Gauge>::default();
        let sessions = Family::<NodeLabels, Gauge>::default();
        let workers = Family::<PoolStateLabels, Gauge>::default();
        let waiting = Family::<PoolLabels, Gauge>::default();
        let max_workers = Family::<PoolLabels, Gauge>::default();
        let ready = Family::<PoolLabels, Gauge>::default();
        let starts = Family::<PoolLabels, Counter>::default();
        let start_failures = Family::<PoolLabels, Counter>::default();
        let exits = Family::<WorkerExitLabels, Counter>::default();
        for (view, answer) in &reports {
            let node = view.node.endpoint.to_string();
            up.get_or_create(&NodeLabels { node: node.clone() })
                .set(i64::from(answer.is_ok()));
            let Ok(status) = answer else { continue };
            sessions
                .get_or_create(&NodeLabels { node: node.clone() })
                .set(status.sessions as i64);
            for pool in &status.pools {
                let labels = PoolLabels {
                    node: node.clone(),
                    runtime: pool.runtime.as_str(),
                    pool: match (&pool.service, &pool.environment) {
                        (Some(service), _) => service.clone(),
                        (None, Some(environment)) => format!("environment:{environment}"),
                        (None, None) => "shared".to_owned(),
                    },
                };
                for (state, count) in [
                    ("idle", pool.idle),
                    ("busy", pool.busy),
                    ("starting", pool.starting),
                ] {
                    workers
                        .get_or_create(&PoolStateLabels {
                            node: labels.node.clone(),
                            runtime: labels.runtime,
                            pool: labels.pool.clone(),
                            state,
                        })
                        .set(count as i64);
                }
                waiting.get_or_create(&labels).set(pool.waiting as i64);
                max_workers.get_or_create(&labels).set(pool.max_size as i64);
                ready
                    .get_or_create(&labels)
                    .set(i64::from(pool.health == PoolHealth::Ready));
                starts.get_or_create(&labels).inc_by(pool.workers_started);
                start_failures
                    .get_or_create(&labels)
                    .inc_by(pool.worker_start_failures);
                for (reason, count) in [
                    ("retired", pool.workers_retired),
                    ("died", pool.workers_died),
                ] {
                    exits
                        .get_or_create(&WorkerExitLabels {
                            node: labels.node.clone(),
                            runtime: labels.runtime,
                            pool: labels.pool.clone(),
                            reason,
                        })
                        .inc_by(count);
                }
            }
        }
        nodes.register(
            "compute_node_up",
            "Whether the compute node answers (1) or not (0)",
            up,
        );
        nodes.register(
            "sessions_open",
            "Remote sessions open on the node",
            sessions,
        );
        nodes.register(
            "pool_workers",
            "Workers of a pool (the shared pool of a runtime, or a service's dedicated pool) by state",
            workers,
        );
        nodes.register(
            "pool_waiting_requests",
            "Requests waiting for a worker of the pool",
            waiting,
        );
        nodes.register("pool_max_workers", "The pool's maximum size", max_workers);
        nodes.register(
            "pool_ready",
            "Whether the pool's runtime is ready (1) or preparing or unavailable (0)",
            ready,
        );
        nodes.register(
            "worker_starts",
            "Workers started by the pool since the node started",
            starts,
        );
        nodes.register(
            "worker_start_failures",
            "Workers that failed to start",
            start_failures,
        );
        nodes.register(
            "worker_exits",
            "Workers that ended, by reason: retired by the server, or died",
            exits,
        );

        let mut text = String::with_capacity(16 * 1024);
        let encoded =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &metrics.registry)
                .and_then(|()| {
                    prometheus_client::encoding::prometheus_text::encode(&mut text, &nodes)
                });
        if let Err(err) = encoded {
            // Writing to a String cannot fail; an encoder error would be a bug.
            let _ = writeln!(text, "# the metrics could not be encoded: {err}");
        }
        Some(text)
    }
}
