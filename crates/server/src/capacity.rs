//! `o16n admin capacity run`: the reference's "Evaluate Capacity" tool. It measures the
//! network overhead with a call that runs nothing, then ramps closed-loop callers on one
//! service from `--min-thread` by `--increment` until the mean latency passes `--latency`
//! (strategy `latency`) or the callers reach `--max-thread`, and reports each step: throughput,
//! percentiles, errors, pool occupancy and where the time went (the stages the server reports
//! in `Server-Timing`), on the terminal, as JSON and as a self-contained HTML report.
//!
//! A closed loop understates tail latency under overload (each caller waits for its answer
//! before sending the next, so the server is never offered more than it can take); the report
//! says so. Benchmarks use open-loop tools.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};

use crate::capacity_report;
use crate::remote::RemoteServer;

/// The service the tool publishes for itself when none is named.
const DEFAULT_SERVICE: (&str, &str) = ("o16n-capacity", "v1");

/// The most per-request samples a step keeps for the report's timeline.
const SAMPLES_PER_STEP: usize = 2_000;

/// When to stop adding callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Until the mean latency passes `--latency` (or the callers reach `--max-thread`).
    Latency,
    /// Until the callers reach `--max-thread`.
    Thread,
}

/// What to measure and how.
#[derive(Debug, Clone)]
pub struct CapacityOptions {
    pub strategy: Strategy,
    pub latency_ms: f64,
    pub min_thread: usize,
    pub max_thread: usize,
    pub increment: usize,
    pub service: Option<(String, String)>,
    pub args: Option<Value>,
    pub step_duration: Duration,
    pub report: PathBuf,
    pub json: Option<PathBuf>,
}

/// One request as measured.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When it started, in milliseconds since the run began.
    pub at_ms: f64,
    /// Its latency as the caller saw it.
    pub latency_ms: f64,
    /// Whether it got a successful answer.
    pub ok: bool,
    /// The server's stages, in milliseconds, by name.
    pub stages: Vec<(String, f64)>,
}

/// One step of the ramp.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub callers: usize,
    pub requests: usize,
    pub errors: usize,
    pub throughput_per_s: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// The mean of each server-side stage, in milliseconds, by name.
    pub stage_means_ms: Vec<(String, f64)>,
    /// The most workers busy at once in the pools, of how many they may have.
    pub pool_busy_max: u64,
    pub pool_max_size: u64,
    /// The most requests waiting for a worker at once.
    pub pool_waiting_max: u64,
    /// A sample of the requests, for the timeline.
    pub samples: Vec<Sample>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityRun {
    pub server: String,
    pub service: String,
    pub version: String,
    pub strategy: Strategy,
    pub latency_limit_ms: f64,
    pub network_overhead_ms: f64,
    pub steps: Vec<Step>,
    pub stopped_because: String,
}

/// Runs the evaluation and writes its reports.
pub async fn run(server: RemoteServer, options: CapacityOptions) -> anyhow::Result<CapacityRun> {
    anyhow::ensure!(
        options.min_thread >= 1 && options.increment >= 1,
        "--min-thread and --increment must be at least 1"
    );
    anyhow::ensure!(
        options.max_thread >= options.min_thread,
        "--max-thread must be at least --min-thread"
    );
    let ((name, version), args) = match &options.service {
        Some(service) => (service.clone(), options.args.clone().unwrap_or(json!({}))),
        None => {
            publish_default_service(&server).await?;
            let (name, version) = DEFAULT_SERVICE;
            (
                (name.to_owned(), version.to_owned()),
                options.args.clone().unwrap_or(json!({"x": 1})),
            )
        }
    };
    let consume_path = format!("/api/{name}/{version}");
    let check = server
        .call(Method::POST, &consume_path, Some(&args))
        .await?;
    anyhow::ensure!(
        check.status == StatusCode::OK,
        "the service {name}/{version} does not answer: {}",
        check.problem()
    );

    eprintln!("Measuring network overhead");
    let network_overhead_ms = network_overhead(&server, &name, &version).await?;
    eprintln!("Network overhead is {network_overhead_ms:.1} ms");

    let started = Instant::now();
    let mut steps = Vec::new();
    let mut callers = options.min_thread;
    let stopped_because = loop {
        eprintln!("Testing with {callers} callers");
        let step = run_step(&server, &consume_path, &args, callers, &options, started).await;
        eprintln!(
            "Mean latency with {callers} callers was {:.1} ms (p99 {:.1} ms, {:.0} requests/s)",
            step.mean_ms, step.p99_ms, step.throughput_per_s
        );
        let mean = step.mean_ms;
        steps.push(step);
        if options.strategy == Strategy::Latency && mean > options.latency_ms {
            break format!(
                "the mean latency ({mean:.1} ms) passed {} ms",
                options.latency_ms
            );
        }
        if callers >= options.max_thread {
            break format!("the callers reached --max-thread ({})", options.max_thread);
        }
        callers = (callers + options.increment).min(options.max_thread);
    };

    let run = CapacityRun {
        server: server.url().to_owned(),
        service: name,
        version,
        strategy: options.strategy,
        latency_limit_ms: options.latency_ms,
        network_overhead_ms,
        steps,
        stopped_because,
    };
    print_table(&run);
    std::fs::write(&options.report, capacity_report::html(&run))
        .with_context(|| format!("cannot write the report to {}", options.report.display()))?;
    println!("Report written to {}", options.report.display());
    if let Some(path) = &options.json {
        let text = serde_json::to_string_pretty(&run).context("cannot encode the figures")?;
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the figures to {}", path.display()))?;
        println!("Figures written to {}", path.display());
    }
    Ok(run)
}

/// Publishes the tool's own Python service unless it exists.
async fn publish_default_service(server: &RemoteServer) -> anyhow::Result<()> {
    let (name, version) = DEFAULT_SERVICE;
    let path = format!("/services/{name}/{version}");
    if server.call(Method::GET, &path, None).await?.status == StatusCode::OK {
        return Ok(());
    }
    let definition = json!({
        "runtimeType": "Python",
        "description": "Published by `o16n admin capacity run` to measure with.",
        "code": "y = x * 2",
        "inputParameterDefinitions": [{"name": "x", "type": "numeric"}],
        "outputParameterDefinitions": [{"name": "y", "type": "numeric"}],
    });
    let answer = server.call(Method::POST, &path, Some(&definition)).await?;
    anyhow::ensure!(
        answer.status == StatusCode::CREATED,
        "cannot publish the default service {name}/{version}: {}",
        answer.problem()
    );
    Ok(())
}

/// The median time of a call that runs nothing: reading the service's definition.
async fn network_overhead(server: &RemoteServer, name: &str, version: &str) -> anyhow::Result<f64> {
    let path = format!("/services/{name}/{version}");
    let mut times = Vec::with_capacity(20);
    for _ in 0..20 {
        let start = Instant::now();
        server.call(Method::GET, &path, None).await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(percentile(&mut times, 50.0))
}

/// Runs `callers` closed-loop callers for the step's duration, sampling the pools meanwhile.
async fn run_step(
    server: &RemoteServer,
    path: &str,
    args: &Value,
    callers: usize,
    options: &CapacityOptions,
    run_started: Instant,
) -> Step {
    let deadline = Instant::now() + options.step_duration;
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (server, path, args, samples) = (
            server.clone(),
            path.to_owned(),
            args.clone(),
            samples.clone(),
        );
        tasks.spawn(async move {
            while Instant::now() < deadline {
                let start = Instant::now();
                let answer = server.call(Method::POST, &path, Some(&args)).await;
                let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
                let (ok, stages) = match &answer {
                    Ok(answer) => (
                        answer.status == StatusCode::OK && answer.body["success"] == true,
                        answer
                            .server_timing
                            .as_deref()
                            .map(parse_server_timing)
                            .unwrap_or_default(),
                    ),
                    Err(_) => (false, Vec::new()),
                };
                samples
                    .lock()
                    .expect("samples lock poisoned. This is a bug.")
                    .push(Sample {
                        at_ms: start.duration_since(run_started).as_secs_f64() * 1000.0,
                        latency_ms,
                        ok,
                        stages,
                    });
            }
        });
    }
    let mut occupancy = Occupancy::default();
    let live = std::io::stderr().is_terminal();
    while !tasks.is_empty() {
        tokio::select! {
            _ = tasks.join_next() => {}
            () = tokio::time::sleep(Duration::from_millis(250)) => {
                if let Ok(status) = server.call(Method::GET, "/status", None).await {
                    occupancy.add(&status.body);
                }
                if live {
                    let samples = samples.lock().expect("samples lock poisoned. This is a bug.");
                    let mean = samples.iter().map(|sample| sample.latency_ms).sum::<f64>()
                        / samples.len().max(1) as f64;
                    eprint!(
                        "\r  {callers} callers: {} requests, mean latency {mean:.1} ms    ",
                        samples.len()
                    );
                }
            }
        }
    }
    if live {
        eprintln!();
    }
    let samples = std::mem::take(
        &mut *samples
            .lock()
            .expect("samples lock poisoned. This is a bug."),
    );
    summarize(callers, samples, options.step_duration, occupancy)
}

/// The busiest the pools were during a step.
#[derive(Debug, Default, Clone, Copy)]
struct Occupancy {
    busy: u64,
    max_size: u64,
    waiting: u64,
}

impl Occupancy {
    /// Adds a `/status` answer: the sums over every pool component it holds.
    fn add(&mut self, status: &Value) {
        let mut sums = Occupancy::default();
        sum_pools(status, &mut sums);
        self.busy = self.busy.max(sums.busy);
        self.max_size = self.max_size.max(sums.max_size);
        self.waiting = self.waiting.max(sums.waiting);
    }
}

fn sum_pools(component: &Value, sums: &mut Occupancy) {
    let details = &component["details"];
    if let (Some(busy), Some(max)) = (details["busy"].as_u64(), details["maxSize"].as_u64()) {
        sums.busy += busy;
        sums.max_size += max;
        sums.waiting += details["waiting"].as_u64().unwrap_or(0);
    }
    if let Some(components) = component["components"].as_object() {
        for child in components.values() {
            sum_pools(child, sums);
        }
    }
}

/// `queue;dur=0.120, load;dur=0.000, ...` as stage names and milliseconds.
fn parse_server_timing(header: &str) -> Vec<(String, f64)> {
    header
        .split(',')
        .filter_map(|metric| {
            let mut parts = metric.trim().split(';');
            let name = parts.next()?.trim();
            let duration = parts
                .find_map(|part| part.trim().strip_prefix("dur="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), duration))
        })
        .collect()
}

/// The nearest-rank percentile of `values` (sorted in place); 0 when empty.
fn percentile(values: &mut [f64], percent: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((percent / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn summarize(
    callers: usize,
    samples: Vec<Sample>,
    duration: Duration,
    occupancy: Occupancy,
) -> Step {
    let mut latencies: Vec<f64> = samples.iter().map(|sample| sample.latency_ms).collect();
    let requests = samples.len();
    let errors = samples.iter().filter(|sample| !sample.ok).count();
    let mean_ms = latencies.iter().sum::<f64>() / requests.max(1) as f64;
    let mut stage_means_ms: Vec<(String, f64)> = Vec::new();
    for sample in &samples {
        for (name, value) in &sample.stages {
            match stage_means_ms.iter_mut().find(|(known, _)| known == name) {
                Some((_, sum)) => *sum += value,
                None => stage_means_ms.push((name.clone(), *value)),
            }
        }
    }
    let timed = samples
        .iter()
        .filter(|sample| !sample.stages.is_empty())
        .count();
    for (_, sum) in &mut stage_means_ms {
        *sum /= timed.max(1) as f64;
    }
    // An even spread of the step's requests is enough to draw its timeline.
    let every = requests.div_ceil(SAMPLES_PER_STEP).max(1);
    let kept = samples.into_iter().step_by(every).collect();
    Step {
        callers,
        requests,
        errors,
        throughput_per_s: requests as f64 / duration.as_secs_f64(),
        mean_ms,
        p50_ms: percentile(&mut latencies, 50.0),
        p95_ms: percentile(&mut latencies, 95.0),
        p99_ms: percentile(&mut latencies, 99.0),
        stage_means_ms,
        pool_busy_max: occupancy.busy,
        pool_max_size: occupancy.max_size,
        pool_waiting_max: occupancy.waiting,
        samples: kept,
    }
}

/// The headings of a step's figures, in the order of [`Step::cells`].
pub(crate) const STEP_HEADINGS: [&str; 10] = [
    "callers",
    "requests",
    "errors",
    "req/s",
    "mean ms",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "pool busy",
    "waiting",
];

impl Step {
    /// The step's figures as the terminal table and the report show them.
    pub(crate) fn cells(&self) -> [String; 10] {
        [
            self.callers.to_string(),
            self.requests.to_string(),
            self.errors.to_string(),
            format!("{:.1}", self.throughput_per_s),
            format!("{:.1}", self.mean_ms),
            format!("{:.1}", self.p50_ms),
            format!("{:.1}", self.p95_ms),
            format!("{:.1}", self.p99_ms),
            format!("{}/{}", self.pool_busy_max, self.pool_max_size),
            self.pool_waiting_max.to_string(),
        ]
    }
}

fn print_table(run: &CapacityRun) {
    println!(
        "\nCapacity of {}/{} at {} (network overhead {:.1} ms; stopped: {})",
        run.service, run.version, run.server, run.network_overhead_ms, run.stopped_because
    );
    let row = |cells: &[&str]| {
        cells
            .iter()
            .map(|cell| format!("{cell:>10}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("{}", row(&STEP_HEADINGS));
    for step in &run.steps {
        let cells = step.cells();
        println!("{}", row(&cells.each_ref().map(String::as_str)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut values: Vec<f64> = (1..=100).map(f64::from).rev().collect();
        assert_eq!(percentile(&mut values, 50.0), 50.0);
        assert_eq!(percentile(&mut values, 99.0), 99.0);
        assert_eq!(percentile(&mut [7.0], 95.0), 7.0);
        assert_eq!(percentile(&mut [], 50.0), 0.0);
    }

    #[test]
    fn server_timing_is_read_by_stage() {
        let stages = parse_server_timing("queue;dur=0.120, load;dur=0.000, execute;dur=1.5, bad");
        assert_eq!(
            stages,
            [
                ("queue".to_owned(), 0.12),
                ("load".to_owned(), 0.0),
                ("execute".to_owned(), 1.5)
            ]
        );
    }

    #[test]
    fn pools_are_summed_from_every_status_component() {
        let status = json!({"components": {"runtimes": {"components": {
            "python": {"details": {"busy": 2, "maxSize": 20, "waiting": 1}},
            "r": {"details": {"busy": 0, "maxSize": 20}},
            "dedicatedPools": {"components": {"svc/v1": {"details": {"busy": 3, "maxSize": 3, "waiting": 4}}}}
        }}}});
        let mut occupancy = Occupancy::default();
        occupancy.add(&status);
        assert_eq!(
            (occupancy.busy, occupancy.max_size, occupancy.waiting),
            (5, 43, 5)
        );
    }

    #[test]
    fn a_step_sums_up_its_samples() {
        let samples: Vec<Sample> = (1..=4)
            .map(|i| Sample {
                at_ms: f64::from(i),
                latency_ms: f64::from(i * 10),
                ok: i != 4,
                stages: vec![("execute".to_owned(), f64::from(i))],
            })
            .collect();
        let step = summarize(2, samples, Duration::from_secs(2), Occupancy::default());
        assert_eq!((step.requests, step.errors), (4, 1));
        assert_eq!(step.throughput_per_s, 2.0);
        assert_eq!((step.mean_ms, step.p50_ms, step.p99_ms), (25.0, 20.0, 40.0));
        assert_eq!(step.stage_means_ms, [("execute".to_owned(), 2.5)]);
    }
}
