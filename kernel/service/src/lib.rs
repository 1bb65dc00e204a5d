//! The service layer: what `ratchet serve`, the CLI and (later) the APIs do with the kernel
//! and the store. Enqueueing checks the task and its input; consumers claim jobs, run them
//! on the worker pool with their lease renewed, record every execution, and report the
//! result under the attempt's fencing token.

mod consumer;
mod doorbell;
mod due_alarm;
pub mod intake;
pub mod job_feed;
mod listening;
pub mod log_relay;
pub mod metrics;
mod node;
mod registry;
pub mod reload;
pub mod remote;
pub mod report;
mod runs;
pub mod scheduler;
pub mod secrets;
pub mod shared_count;
mod surface;
mod versions;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use registry::{Rejected, Reload, SERVER_TASKS, TaskEntry, TaskRegistry, load_path};
pub use runs::RunOptions;
pub use versions::task_from_version;

use crate::metrics::Metrics;
pub use crate::node::node_name;
use ratchet_core::config::{Concurrency, QueueConfig};
use ratchet_core::execution::{Execution, Kernel, RunIdentity};
use ratchet_core::http::Har;
use ratchet_core::task::SchemaViolation;
use ratchet_core::trace::TraceContext;
use ratchet_plugin_host::{Event, FailedRun, Plugins, Suggestion};
use ratchet_storage::{
    Backoff, ConcurrencyLimits, Enqueued, ExecutionRecord, Job, JobStatus, NewJob, QueueError, Store,
    TaskLimit, TaskVersion, WorkerRow, now_ms,
};

/// Options of one enqueue; the queue configuration fills what is `None`.
#[derive(Debug, Clone, Default)]
pub struct EnqueueOptions {
    pub priority: i32,
    pub run_at: Option<i64>,
    pub max_attempts: Option<u32>,
    pub idempotency_key: Option<String>,
    /// The job's own timeout, replacing the task's (bounded by `limits.max_timeout_secs`).
    pub timeout: Option<Duration>,
    /// The trace of the request that enqueues (its `traceparent`); a new trace when `None`.
    pub trace: Option<TraceContext>,
    /// Jobs of the task that share this key run at most its `per_key` limit at once.
    pub concurrency_key: Option<String>,
}

/// A job's own timeout of `secs` seconds, checked against `limits.max_timeout_secs` (`max_secs`).
pub fn job_timeout(secs: f64, max_secs: f64) -> Result<Duration, String> {
    if !(secs > 0.0 && secs <= max_secs) {
        return Err(format!(
            "the job timeout must be above 0 and at most {max_secs} s (limits.max_timeout_secs), not {secs}"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    #[error("no task named `{name}`; known tasks: {known}")]
    UnknownTask { name: String, known: String },
    #[error("input does not match the input schema of {task}: {}", .violations.first().map(ToString::to_string).unwrap_or_default())]
    InvalidInput { task: String, violations: Vec<SchemaViolation> },
    #[error(transparent)]
    Schedule(ratchet_core::schedule::CronSpecError),
    #[error("run_at: {0}")]
    Time(#[from] ratchet_core::time::TimeError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// A batch with jobs that cannot be enqueued: nothing was.
    #[error("{} of the batch's jobs cannot be enqueued, so none was; the first: job {}: {}", .total, .problems.first().map_or(0, |p| p.index), .problems.first().map_or("", |p| p.message.as_str()))]
    InvalidBatch { problems: Vec<BatchProblem>, total: usize },
}

/// Why one job of a batch cannot be enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchProblem {
    /// Its position in the batch, from 0.
    pub index: usize,
    pub message: String,
    pub violations: Vec<SchemaViolation>,
}

/// Problems a batch's refusal lists at most (it counts them all).
pub const MAX_BATCH_PROBLEMS: usize = 100;

/// One job of a batch.
#[derive(Debug, Clone)]
pub struct BatchJob {
    pub task: String,
    pub input: Value,
    pub options: EnqueueOptions,
}

/// The task `reference` names, once `input` matches its input schema.
pub async fn checked_task(
    registry: &TaskRegistry,
    reference: &str,
    input: Value,
) -> Result<(Arc<ratchet_core::Task>, Value), ServiceError> {
    let found = known_task(registry, reference)?;
    let (input, violations) = found.input_schema.check(input).await;
    if !violations.is_empty() {
        return Err(ServiceError::InvalidInput { task: found.name().to_owned(), violations });
    }
    Ok((found, input))
}

/// The task `reference` (a name or id) names in `registry`; `UnknownTask` listing the known
/// ones otherwise.
pub fn known_task(registry: &TaskRegistry, reference: &str) -> Result<Arc<ratchet_core::Task>, ServiceError> {
    registry.get(reference).ok_or_else(|| ServiceError::UnknownTask {
        name: reference.to_owned(),
        known: registry.names().join(", "),
    })
}

/// Checks the task and the input against `registry`, then enqueues into `store`.
pub async fn enqueue(
    store: &Store,
    registry: &TaskRegistry,
    queue: &QueueConfig,
    task: &str,
    input: Value,
    options: EnqueueOptions,
) -> Result<Enqueued, ServiceError> {
    if let Some(run_at) = options.run_at {
        ratchet_core::time::check(run_at)?;
    }
    let (found, input) = checked_task(registry, task, input).await?;
    let new = new_job(queue, &found, input, options)?;
    Ok(store.enqueue(new, now_ms()).await?)
}

/// Checks every job of `jobs` (task, input, time) against `registry`, then enqueues them all in
/// one transaction, or none when any fails its checks (every problem is named, up to
/// [`MAX_BATCH_PROBLEMS`]). Returns each job's id and whether it was created.
pub async fn enqueue_batch(
    store: &Store,
    registry: &TaskRegistry,
    queue: &QueueConfig,
    jobs: Vec<BatchJob>,
    progress: impl FnMut(usize),
) -> Result<Vec<(String, bool)>, ServiceError> {
    let mut problems = Vec::new();
    let mut total = 0;
    let mut new_jobs = Vec::with_capacity(jobs.len());
    for (index, job) in jobs.into_iter().enumerate() {
        match checked_job(registry, queue, job).await {
            Ok(new) => new_jobs.push(new),
            Err(error) => {
                total += 1;
                if problems.len() < MAX_BATCH_PROBLEMS {
                    let violations = match &error {
                        ServiceError::InvalidInput { violations, .. } => violations.clone(),
                        _ => Vec::new(),
                    };
                    problems.push(BatchProblem { index, message: error.to_string(), violations });
                }
            }
        }
    }
    if total > 0 {
        return Err(ServiceError::InvalidBatch { problems, total });
    }
    Ok(store.enqueue_batch(&new_jobs, now_ms(), progress).await?)
}

/// The job `job` asks for, once its task, input and time pass the checks.
async fn checked_job(
    registry: &TaskRegistry,
    queue: &QueueConfig,
    job: BatchJob,
) -> Result<NewJob, ServiceError> {
    let BatchJob { task, input, options } = job;
    if let Some(run_at) = options.run_at {
        ratchet_core::time::check(run_at)?;
    }
    let (found, input) = checked_task(registry, &task, input).await?;
    new_job(queue, &found, input, options)
}

/// The job of `task` with `input` (both checked) as `options` and the queue's defaults say.
fn new_job(
    queue: &QueueConfig,
    task: &ratchet_core::Task,
    input: Value,
    options: EnqueueOptions,
) -> Result<NewJob, ServiceError> {
    if let Some(key) = &options.concurrency_key {
        check_concurrency_key(queue, task, key)?;
    }
    Ok(NewJob {
        task: task.name().to_owned(),
        input,
        priority: options.priority,
        run_at: options.run_at,
        max_attempts: options.max_attempts.unwrap_or(queue.max_attempts),
        backoff: Backoff {
            base: Duration::from_secs_f64(queue.backoff_base_secs),
            max: Duration::from_secs_f64(queue.backoff_max_secs),
        },
        timeout: options.timeout,
        idempotency_key: options.idempotency_key,
        task_digest: Some(task.digest.clone()),
        trace_id: Some(options.trace.unwrap_or_else(TraceContext::root).trace_id().to_owned()),
        concurrency_key: options.concurrency_key,
    })
}

/// The longest concurrency key accepted.
pub const MAX_CONCURRENCY_KEY: usize = 256;

/// A concurrency key names something the task limits per key: a key for a task without a
/// `per_key` limit would limit nothing, which is refused rather than silently ignored.
fn check_concurrency_key(
    queue: &QueueConfig,
    task: &ratchet_core::Task,
    key: &str,
) -> Result<(), QueueError> {
    if key.is_empty() || key.len() > MAX_CONCURRENCY_KEY {
        return Err(QueueError::Invalid(format!(
            "a concurrency key must be 1 to {MAX_CONCURRENCY_KEY} bytes, not {}",
            key.len()
        )));
    }
    if task_concurrency(queue, task).and_then(|c| c.per_key).is_none() {
        return Err(QueueError::Invalid(format!(
            "task {} has no per-key limit, so a concurrency key would limit nothing; declare \
             \"concurrency\": {{\"per_key\": 1}} in its metadata.json, or queue.limits.{}.per_key in the configuration",
            task.name(),
            task.name()
        )));
    }
    Ok(())
}

/// The concurrency limits of `task`: the configuration's `queue.limits` entry, else the
/// task's own `concurrency`.
pub fn task_concurrency(queue: &QueueConfig, task: &ratchet_core::Task) -> Option<Concurrency> {
    queue.limits.get(task.name()).copied().or(task.metadata.concurrency)
}

/// The limits the claims of a node serving `registry` enforce.
pub fn concurrency_limits(registry: &TaskRegistry, queue: &QueueConfig) -> ConcurrencyLimits {
    ConcurrencyLimits::new(registry.tasks().filter_map(|task| {
        let limits = task_concurrency(queue, &task)?;
        Some((task.name().to_owned(), TaskLimit { limit: limits.limit, per_key: limits.per_key }))
    }))
}

/// A synchronous run that ended but whose record the database refused (a full disk): it is
/// not in the history, and must not be answered as if it were.
#[derive(Debug)]
pub struct Unrecorded {
    pub record: ExecutionRecord,
    pub error: String,
}

pub struct Service {
    pub(crate) store: Store,
    pub(crate) kernel: Arc<Kernel>,
    /// The tasks this node serves; a reload swaps in the next registry whole.
    pub(crate) registry: watch::Sender<Arc<TaskRegistry>>,
    /// One reload at a time, so two cannot build on the same registry and lose a change.
    reloading: tokio::sync::Mutex<()>,
    /// Older task versions that queued jobs were enqueued against.
    pinned: versions::PinnedVersions,
    /// This node's name, recorded as lease owner.
    pub node: String,
    queue: QueueConfig,
    /// Wakes the idle claimer: jobs may be claimable now (see [`Service::wake_for`]).
    wake: Notify,
    /// When the idle claimer should look for jobs added that are not due yet.
    due_alarm: due_alarm::DueAlarm,
    /// Wakes the scheduler: a schedule was added, changed, paused or resumed (here, or by
    /// another process that said so), so its next fire time may be sooner.
    schedules_changed: Notify,
    /// Wakes the heartbeat to count the other nodes on this SQLite file again: another process
    /// rang the doorbell while this node did not ring (a node that started announces itself).
    peers_changed: Notify,
    /// Jobs this node is running: id to attempt and execution id.
    in_flight: Mutex<HashMap<String, (u32, String)>>,
    /// Synchronous runs this node is running: execution ids.
    running_now: Mutex<std::collections::HashSet<String>>,
    /// Whether this node is recorded in the database: a node that starts while the database
    /// refuses writes serves (not ready) and records itself once it can.
    registered: std::sync::atomic::AtomicBool,
    /// When readiness last probed whether writes work again (ms since the epoch).
    write_probed_at: std::sync::atomic::AtomicI64,
    /// Sinks (and, later, the other plugin kinds) this node feeds.
    plugins: Arc<Plugins>,
    pub metrics: Arc<Metrics>,
    /// Live log lines of job attempts other nodes run (PostgreSQL; see [`log_relay`]).
    remote_logs: tokio::sync::broadcast::Sender<Arc<log_relay::RemoteLine>>,
    /// Jobs per status as the node heartbeat last counted them, and when: what a failure's
    /// record says of the queue without a query per failure.
    queue_seen: Mutex<Option<(i64, Value)>>,
    /// Jobs per status, as the last count found them (see [`shared_count`]).
    job_counts: shared_count::SharedCount<Vec<(JobStatus, u64)>>,
    /// The secrets tasks declare, opened with this node's key.
    secrets: Arc<secrets::Secrets>,
    /// Commits the consumers' ends and claims together; started with the first consumer.
    consumer_commit: std::sync::OnceLock<ratchet_storage::ConsumerCommit>,
    /// Job changes for followers ([`job_feed`]).
    feed: job_feed::Feed,
    /// Jobs claimed and not started yet ([`intake`]).
    intake: intake::Intake<Job>,
    /// What consumers do once their ends are committed (tracked so a stop waits for them).
    ends: tokio_util::task::TaskTracker,
    /// The PostgreSQL channels this node listens on, and whether it hears them now.
    pub(crate) hearing: Mutex<std::collections::BTreeMap<&'static str, bool>>,
}

impl Service {
    pub fn new(store: Store, kernel: Arc<Kernel>, registry: Arc<TaskRegistry>) -> Service {
        let queue = kernel.config().queue.clone();
        store.set_concurrency_limits(concurrency_limits(&registry, &queue));
        let store_for_secrets = store.clone();
        let node = store.node().map_or_else(node_name, str::to_owned);
        let workers = kernel.config().workers.count;
        let consumers = consumers(&queue, workers);
        Service {
            store,
            kernel,
            registry: watch::Sender::new(registry),
            reloading: tokio::sync::Mutex::new(()),
            pinned: versions::PinnedVersions::default(),
            node,
            queue,
            wake: Notify::new(),
            due_alarm: due_alarm::DueAlarm::default(),
            schedules_changed: Notify::new(),
            peers_changed: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            consumer_commit: std::sync::OnceLock::new(),
            running_now: Mutex::new(std::collections::HashSet::new()),
            registered: std::sync::atomic::AtomicBool::new(false),
            write_probed_at: std::sync::atomic::AtomicI64::new(0),
            remote_logs: tokio::sync::broadcast::channel(log_relay::REMOTE_BUFFER).0,
            plugins: Arc::new(Plugins::none()),
            metrics: Arc::new(Metrics::new()),
            queue_seen: Mutex::new(None),
            job_counts: shared_count::SharedCount::default(),
            secrets: Arc::new(secrets::Secrets::none(store_for_secrets)),
            feed: job_feed::Feed::default(),
            hearing: Mutex::new(std::collections::BTreeMap::new()),
            intake: intake::Intake::new(consumers, workers),
            ends: tokio_util::task::TaskTracker::new(),
        }
    }

    /// Gives tasks the secrets they declare, from `secrets` ([`secrets::Secrets::open`]).
    pub fn with_secrets(mut self, secrets: secrets::Secrets) -> Service {
        self.secrets = Arc::new(secrets);
        self
    }

    pub fn secrets(&self) -> &secrets::Secrets {
        &self.secrets
    }

    /// The secrets `task` declares, for one run: a secret that cannot be opened is left out
    /// and logged (the run goes on, and its task sees no value).
    pub(crate) async fn secrets_for(
        &self,
        task: &ratchet_core::Task,
    ) -> std::collections::BTreeMap<String, String> {
        self.secrets.for_task(task).await.unwrap_or_else(|error| {
            tracing::error!(task = task.name(), "cannot open the secrets the task declares: {error}");
            std::collections::BTreeMap::new()
        })
    }

    /// Feeds the kernel's events to `plugins`' sinks.
    pub fn with_plugins(mut self, plugins: Arc<Plugins>) -> Service {
        self.plugins = plugins;
        self
    }

    /// The tasks this node serves now.
    pub fn registry(&self) -> Arc<TaskRegistry> {
        Arc::clone(&self.registry.borrow())
    }

    /// The registry now and after every reload.
    pub fn watch_registry(&self) -> watch::Receiver<Arc<TaskRegistry>> {
        self.registry.subscribe()
    }

    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// Hands the event `make` builds to the sinks; builds nothing when there are none.
    fn emit(&self, make: impl FnOnce() -> Event) {
        if !self.plugins.sinks.is_empty() {
            self.plugins.sinks.emit(make());
        }
    }

    /// Checks the task and the input, then enqueues, and wakes this node's idle consumers (at
    /// the job's due time when that is ahead).
    pub async fn enqueue(
        &self,
        task: &str,
        input: Value,
        options: EnqueueOptions,
    ) -> Result<Enqueued, ServiceError> {
        let enqueued = enqueue(&self.store, &self.registry(), &self.queue, task, input, options).await?;
        if enqueued.created {
            self.wake_for(Some(enqueued.job.run_at));
            // The change this node made: the job as read back may already run on another node,
            // which announces that itself.
            let job = &enqueued.job;
            self.job_changed(&job.id, &job.task, JobStatus::Queued, 0);
        }
        Ok(enqueued)
    }

    /// [`enqueue_batch`] on this node's tasks, waking its idle consumers (at the earliest due
    /// time when every job is due ahead).
    pub async fn enqueue_batch(&self, jobs: Vec<BatchJob>) -> Result<Vec<(String, bool)>, ServiceError> {
        // A job without a due time is due now.
        let due = jobs.iter().map(|job| job.options.run_at.unwrap_or(i64::MIN)).min();
        // The task of each job, kept only when someone hears of the new jobs.
        let tasks: Vec<String> = if self.announces_jobs() {
            jobs.iter().map(|job| job.task.clone()).collect()
        } else {
            Vec::new()
        };
        let written = enqueue_batch(&self.store, &self.registry(), &self.queue, jobs, |_| {}).await?;
        self.wake_for(due);
        for ((id, created), task) in written.iter().zip(&tasks) {
            if *created {
                self.job_changed(id, task, JobStatus::Queued, 0);
            }
        }
        Ok(written)
    }

    /// Enqueues a failed or cancelled job again, as a new job with its task, input, priority
    /// and attempt budget; any other status is a `Conflict`.
    pub async fn retry(&self, id: &str) -> Result<Enqueued, ServiceError> {
        let job = self.store.job(id).await?;
        if !matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
            return Err(QueueError::Conflict(format!(
                "job {id} is {}; only failed or cancelled jobs are retried",
                job.status
            ))
            .into());
        }
        let options = EnqueueOptions {
            priority: job.priority,
            max_attempts: Some(job.max_attempts),
            timeout: job.timeout,
            // The retry continues the original's trace.
            trace: job.trace_id.as_deref().and_then(TraceContext::resume),
            ..Default::default()
        };
        self.enqueue(&job.task, job.input, options).await
    }

    /// How many jobs this node holds at once: by default two per worker, so that recording one
    /// job and claiming the next overlap with runs (measured: +30% throughput on SQLite).
    pub fn concurrency(&self) -> usize {
        consumers(&self.queue, self.kernel.config().workers.count)
    }

    /// Jobs this node has claimed and not started yet.
    pub fn claimed_waiting(&self) -> usize {
        self.intake.waiting()
    }

    fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.queue.lease_secs)
    }
}

/// `queue.concurrency` consumers, or two per worker when it is 0 ([`Service::concurrency`]).
fn consumers(queue: &QueueConfig, workers: usize) -> usize {
    match queue.concurrency {
        0 => 2 * workers,
        n => n,
    }
}

/// How often a node reports it is alive (and its workers' states).
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(10);

/// A node that missed heartbeats this long (milliseconds) is reported lost.
pub const NODE_STALE_AFTER_MS: i64 = 3 * NODE_HEARTBEAT.as_millis() as i64;

/// The least time between two probes of whether writes work again ([`Service::probe_writes`]).
pub const WRITE_PROBE_INTERVAL: Duration = Duration::from_secs(1);
