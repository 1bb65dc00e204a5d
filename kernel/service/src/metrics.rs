//! The node's Prometheus metrics: runs by task and outcome, run durations, queue depth, worker
//! states, plugin calls and traps, HTTP requests. Counters are bumped where things happen;
//! gauges that mirror state (queue depth, workers, plugins) are set when `/metrics` is read.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use ratchet_core::supervisor::SlotStatus;
use ratchet_plugin_host::Plugins;
use ratchet_storage::JobStatus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    task: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Mutex<Registry>,
    runs: Family<RunLabels, Counter>,
    run_seconds: Histograms<TaskLabels>,
    queue_depth: Family<StatusLabels, Gauge>,
    workers: Family<StateLabels, Gauge>,
    plugin_calls: Family<PluginLabels, Counter>,
    plugin_traps: Family<PluginLabels, Counter>,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Histogram,
    queue_commit_steps: Histogram,
    queue_claimed_ahead: Gauge,
}

fn run_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("ratchet");
        let metrics = Metrics {
            registry: Mutex::new(Registry::default()),
            runs: Family::default(),
            run_seconds: Family::new_with_constructor(run_histogram),
            queue_depth: Family::default(),
            workers: Family::default(),
            plugin_calls: Family::default(),
            plugin_traps: Family::default(),
            http_requests: Family::default(),
            http_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            // 1 to 64 steps.
            queue_commit_steps: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            queue_claimed_ahead: Gauge::default(),
        };
        registry.register("runs", "Task runs by task and outcome", metrics.runs.clone());
        registry.register("run_duration_seconds", "Task run durations", metrics.run_seconds.clone());
        registry.register("queue_jobs", "Jobs in the queue by status", metrics.queue_depth.clone());
        registry.register("workers", "Worker processes by state", metrics.workers.clone());
        registry.register("plugin_calls", "Calls into each plugin", metrics.plugin_calls.clone());
        registry.register(
            "plugin_traps",
            "Calls into each plugin that trapped (WASM) or panicked (native)",
            metrics.plugin_traps.clone(),
        );
        registry.register("http_requests", "API requests by route and status", metrics.http_requests.clone());
        registry.register(
            "http_request_duration_seconds",
            "API request durations",
            metrics.http_seconds.clone(),
        );
        registry.register(
            "queue_commit_steps",
            "Steps (a job's end, a claim of jobs, or both) per transaction of this node's queue writes",
            metrics.queue_commit_steps.clone(),
        );
        registry.register(
            "queue_claimed_ahead",
            "Jobs this node has claimed and not started yet (held for its workers)",
            metrics.queue_claimed_ahead.clone(),
        );
        *metrics.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        metrics
    }

    /// One finished run of `task`.
    pub fn run(&self, task: &str, succeeded: bool, took: Duration) {
        let outcome = if succeeded { "success" } else { "failure" };
        self.runs.get_or_create(&RunLabels { task: task.to_owned(), outcome: outcome.to_owned() }).inc();
        self.run_seconds.get_or_create(&TaskLabels { task: task.to_owned() }).observe(took.as_secs_f64());
    }

    /// One transaction of the consumers' group commit, of `steps` steps.
    pub fn queue_commit(&self, steps: usize) {
        self.queue_commit_steps.observe(steps as f64);
    }

    /// One answered API request; `route` is the route's pattern, never the raw path.
    pub fn http(&self, method: &str, route: &str, status: u16, took: Duration) {
        let labels =
            HttpLabels { method: method.to_owned(), route: route.to_owned(), status: status.to_string() };
        self.http_requests.get_or_create(&labels).inc();
        self.http_seconds.observe(took.as_secs_f64());
    }

    /// The text exposition, with the state gauges set from `jobs`, `workers` and `plugins`.
    /// The metrics as text; `claimed_ahead` is [`crate::Service::claimed_waiting`].
    pub fn render(
        &self,
        jobs: &[(JobStatus, u64)],
        workers: &[SlotStatus],
        plugins: &Plugins,
        claimed_ahead: usize,
    ) -> String {
        self.queue_claimed_ahead.set(i64::try_from(claimed_ahead).unwrap_or(i64::MAX));
        for status in JobStatus::ALL {
            let n = jobs.iter().find(|(s, _)| *s == status).map_or(0, |(_, n)| *n);
            self.queue_depth.get_or_create(&StatusLabels { status: status.as_str().into() }).set(n as i64);
        }
        self.workers.clear();
        for slot in workers {
            let state = slot.state.as_str().to_owned();
            self.workers.get_or_create(&StateLabels { state }).inc();
        }
        for (name, counters) in &plugins.counters {
            let labels = PluginLabels { plugin: name.clone() };
            catch_up(&self.plugin_calls.get_or_create(&labels), counters.calls.load(Ordering::Relaxed));
            catch_up(&self.plugin_traps.get_or_create(&labels), counters.traps.load(Ordering::Relaxed));
        }
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!("cannot encode the metrics: {error}");
        }
        text
    }
}

/// Moves `counter` up to `total`, a count kept elsewhere.
fn catch_up(counter: &Counter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}
