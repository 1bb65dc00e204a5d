//! The service layer: what `ratchet serve`, the CLI and (later) the APIs do with the kernel
//! and the store. Enqueueing checks the task and its input; consumers claim jobs, run them
//! on the worker pool with their lease renewed, record every execution, and report the
//! result under the attempt's fencing token.

pub mod log_relay;
pub mod metrics;
mod registry;
pub mod scheduler;
mod surface;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use registry::{Rejected, TaskRegistry};

use crate::metrics::Metrics;
use ratchet_core::config::QueueConfig;
use ratchet_core::execution::{Execution, Kernel, RunIdentity};
use ratchet_core::http::Har;
use ratchet_core::task::SchemaViolation;
use ratchet_plugin_host::{Event, FailedRun, Plugins, Suggestion};
use ratchet_storage::{
    Backoff, Enqueued, ExecutionRecord, Job, JobStatus, NewJob, Outcome, QueueError, Store, TaskVersion,
    WorkerRow, now_ms,
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
}

/// The task `reference` names, once `input` matches its input schema.
pub async fn checked_task(
    registry: &TaskRegistry,
    reference: &str,
    input: Value,
) -> Result<(Arc<ratchet_core::Task>, Value), ServiceError> {
    let found = registry.get(reference).ok_or_else(|| ServiceError::UnknownTask {
        name: reference.to_owned(),
        known: registry.names().join(", "),
    })?;
    let (input, violations) = found.input_schema.check(input).await;
    if !violations.is_empty() {
        return Err(ServiceError::InvalidInput { task: found.name().to_owned(), violations });
    }
    Ok((found, input))
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
    let new = NewJob {
        task: found.name().to_owned(),
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
    };
    Ok(store.enqueue(new, now_ms()).await?)
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
    pub(crate) registry: Arc<TaskRegistry>,
    /// This node's name, recorded as lease owner.
    pub node: String,
    queue: QueueConfig,
    /// Wakes idle consumers when this process enqueues.
    wake: Notify,
    /// Jobs this node is running: id to attempt and execution id.
    in_flight: Mutex<HashMap<String, (u32, String)>>,
    /// Synchronous runs this node is running: execution ids.
    running_now: Mutex<std::collections::HashSet<String>>,
    /// Whether this node is recorded in the database: a node that starts while the database
    /// refuses writes serves (not ready) and records itself once it can.
    registered: std::sync::atomic::AtomicBool,
    /// Sinks (and, later, the other plugin kinds) this node feeds.
    plugins: Arc<Plugins>,
    pub metrics: Arc<Metrics>,
    /// Live log lines of job attempts other nodes run (PostgreSQL; see [`log_relay`]).
    remote_logs: tokio::sync::broadcast::Sender<Arc<log_relay::RemoteLine>>,
}

impl Service {
    pub fn new(store: Store, kernel: Arc<Kernel>, registry: Arc<TaskRegistry>) -> Service {
        let queue = kernel.config().queue.clone();
        let node = format!("{}-{}", hostname(), std::process::id());
        Service {
            store,
            kernel,
            registry,
            node,
            queue,
            wake: Notify::new(),
            in_flight: Mutex::new(HashMap::new()),
            running_now: Mutex::new(std::collections::HashSet::new()),
            registered: std::sync::atomic::AtomicBool::new(false),
            remote_logs: tokio::sync::broadcast::channel(log_relay::REMOTE_BUFFER).0,
            plugins: Arc::new(Plugins::none()),
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Feeds the kernel's events to `plugins`' sinks.
    pub fn with_plugins(mut self, plugins: Arc<Plugins>) -> Service {
        self.plugins = plugins;
        self
    }

    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// Hands the event `make` builds to the sinks; builds nothing when there are none.
    fn emit(&self, make: impl FnOnce() -> Event) {
        if !self.plugins.sinks.is_empty() {
            self.plugins.sinks.emit(&make());
        }
    }

    /// Checks the task and the input, then enqueues, and wakes this node's idle consumers.
    pub async fn enqueue(
        &self,
        task: &str,
        input: Value,
        options: EnqueueOptions,
    ) -> Result<Enqueued, ServiceError> {
        let enqueued = enqueue(&self.store, &self.registry, &self.queue, task, input, options).await?;
        self.wake.notify_waiters();
        Ok(enqueued)
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
            ..Default::default()
        };
        self.enqueue(&job.task, job.input, options).await
    }

    /// How many jobs this node holds at once: by default two per worker, so that recording one
    /// job and claiming the next overlap with runs (measured: +30% throughput on SQLite).
    pub fn concurrency(&self) -> usize {
        match self.queue.concurrency {
            0 => 2 * self.kernel.config().workers.count,
            n => n,
        }
    }

    fn lease(&self) -> Duration {
        Duration::from_secs_f64(self.queue.lease_secs)
    }

    /// Records this node and the versions of the tasks it loaded.
    pub async fn register(&self) -> Result<(), QueueError> {
        let registered = self.write_registration().await;
        self.store.note_write(&registered);
        if registered.is_ok() {
            self.registered.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        registered
    }

    async fn write_registration(&self) -> Result<(), QueueError> {
        let now = now_ms();
        self.store.register_node(&self.node, &hostname(), std::process::id(), now).await?;
        for task in self.registry.tasks() {
            self.store.record_task_version(&task_version(&task), now).await?;
            self.emit(|| {
                Event::new(
                    "task.loaded",
                    Some(task.name()),
                    None,
                    json!({"version": task.metadata.version, "digest": task.digest}),
                )
            });
        }
        self.store.node_heartbeat(&self.node, &self.worker_rows(), now).await
    }

    /// Writes this node's heartbeat now (or its registration, until that succeeded): the
    /// heartbeat loop, and readiness to see whether writes work again.
    pub async fn beat(&self) -> Result<(), QueueError> {
        if !self.registered.load(std::sync::atomic::Ordering::Relaxed) {
            return self.register().await;
        }
        self.store.node_heartbeat(&self.node, &self.worker_rows(), now_ms()).await
    }

    /// Marks this node stopped (end of a drain).
    pub async fn deregister(&self) {
        if let Err(error) = self.store.stop_node(&self.node, now_ms()).await {
            tracing::warn!("cannot mark node {} stopped: {error}", self.node);
        }
    }

    /// Starts the consumers and the background loops (lease rescue, scheduler, node
    /// heartbeat, retention); they stop when `stop` turns true, consumers after finishing the
    /// job they hold.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> =
            (0..self.concurrency()).map(|_| tokio::spawn(Arc::clone(self).consume(stop.clone()))).collect();
        tasks.push(tokio::spawn(Arc::clone(self).rescue(stop.clone())));
        tasks.push(tokio::spawn(Arc::clone(self).fire_schedules(stop.clone())));
        tasks.push(tokio::spawn(Arc::clone(self).heartbeat_node(stop.clone())));
        tasks.extend(log_relay::start(self, stop.clone()));
        tasks.push(tokio::spawn(Arc::clone(self).retain(stop)));
        tasks
    }

    /// Fires due schedules, waking at the earliest next fire time (at least once a second,
    /// to see schedules other processes add).
    async fn fire_schedules(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            match scheduler::tick(&self.store, &self.queue, now_ms()).await {
                Ok(report) => {
                    if !report.enqueued.is_empty() {
                        self.wake.notify_waiters();
                    }
                    for (schedule, at, job) in &report.enqueued {
                        tracing::info!(schedule, fire_time = at, job, "schedule fired");
                    }
                }
                Err(error) => tracing::warn!("the scheduler cannot reach the database: {error}"),
            }
            let wait = match self.store.earliest_fire_time().await {
                Ok(Some(next)) => (next - now_ms()).clamp(0, 1000),
                _ => 1000,
            };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn heartbeat_node(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            tokio::select! {
                () = tokio::time::sleep(NODE_HEARTBEAT) => {}
                _ = stop.changed() => return,
            }
            if let Err(error) = self.beat().await {
                tracing::warn!("node heartbeat failed: {error}");
            }
        }
    }

    async fn retain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let retention = self.kernel.config().retention.clone();
        if retention.max_age_days <= 0.0 {
            return;
        }
        let max_age = Duration::from_secs_f64(retention.max_age_days * 86_400.0);
        while !*stop.borrow() {
            match self.store.prune(now_ms() - max_age.as_millis() as i64).await {
                Ok(pruned) if pruned.executions + pruned.jobs > 0 => tracing::info!(
                    executions = pruned.executions,
                    jobs = pruned.jobs,
                    "pruned history older than {} day(s)",
                    retention.max_age_days
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!("cannot prune old history: {error}"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs_f64(retention.interval_secs)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    fn worker_rows(&self) -> Vec<WorkerRow> {
        let now = now_ms();
        self.kernel
            .pool()
            .status()
            .into_iter()
            .enumerate()
            .map(|(slot, status)| WorkerRow {
                id: format!("{}/{slot}", self.node),
                node: self.node.clone(),
                pid: status.pid,
                state: status.state,
                runs: status.runs,
                last_error: status.last_error,
                updated_at: now,
            })
            .collect()
    }

    async fn consume(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.queue.poll_interval_ms.max(1));
        // The job claimed together with the end of the previous one.
        let mut next: Option<Job> = None;
        while !*stop.borrow() {
            let claimed = match next.take() {
                Some(job) => Ok(Some(job)),
                None => self.store.claim(&self.node, self.lease(), now_ms()).await,
            };
            match claimed {
                Ok(Some(job)) => next = self.process_then_claim(job, true).await,
                Ok(None) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(poll) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(error) => {
                    // The database may be down for a while (J9): keep trying, slowly.
                    tracing::warn!("cannot claim jobs: {error}");
                    tokio::time::sleep(poll.max(Duration::from_secs(1))).await;
                }
            }
        }
        // Claimed as the stop came: back to the queue, its attempt not used up.
        if let Some(job) = next
            && let Err(error) = self.store.release(&job.id, job.attempt, now_ms()).await
        {
            tracing::warn!(job = %job.id, "cannot release a job claimed while stopping: {error}");
        }
    }

    /// Runs one claimed job to its end, under its fencing token.
    pub async fn process(&self, job: Job) {
        self.process_then_claim(job, false).await;
    }

    /// `process`, then (when `claim_next`) the next job, claimed in the transaction that
    /// records this one's end.
    async fn process_then_claim(&self, job: Job, claim_next: bool) -> Option<Job> {
        let Some(task) = self.registry.get(&job.task) else {
            let message = format!("this node has no task named `{}`", job.task);
            self.report_unknown_task(&job, message).await;
            return None;
        };
        let execution_id = ratchet_storage::new_id();
        self.track(&job, Some(&execution_id));
        let heartbeat =
            tokio::spawn(heartbeat(self.store.clone(), job.clone(), self.node.clone(), self.lease()));
        let started = now_ms();
        self.emit(|| {
            Event::new(
                "execution.started",
                Some(&job.task),
                None,
                json!({"job": job.id, "attempt": job.attempt}),
            )
        });
        let http = self.kernel.live_http(&task);
        let identity = RunIdentity { execution_id, attempt: job.attempt, timeout: job.timeout };
        let execution = self.kernel.run_as(identity, &task, job.input.clone(), http).await;
        let classification = self.classify(&job.task, &execution).await;
        heartbeat.abort();
        self.metrics.run(&job.task, execution.outcome.is_ok(), execution.duration);
        self.emit_outcome(&job.task, Some(&job), &execution, &classification);
        let run = Run { job_id: Some(&job.id), attempt: job.attempt, task: &job.task, input: &job.input };
        let record = record(run, &execution, &classification, started, &self.node);
        let error = execution.outcome.as_ref().err().map(ToString::to_string);
        let outcome = match (&execution.outcome, &error) {
            (Ok(output), _) => Outcome::Completed(output),
            (Err(_), Some(error)) => Outcome::Failed(error),
            (Err(_), None) => Outcome::Failed("the run failed"),
        };
        let claim = claim_next.then(|| (self.node.as_str(), self.lease()));
        let reported =
            self.store.finish_then_claim(&job.id, job.attempt, outcome, Some(&record), claim, now_ms()).await;
        self.track(&job, None);
        match reported {
            Ok((status, next)) => {
                log_report(&job, Ok(status));
                next
            }
            Err(error) => {
                log_report(&job, Err(error));
                None
            }
        }
    }

    /// Runs `task` now, outside the queue (the API's synchronous run), and records it. The
    /// execution id is known at once; the record arrives on the receiver when the run ends,
    /// and the run finishes and is recorded even when nobody waits for it any more. `guard`
    /// (a concurrency permit) is held until the run is recorded.
    pub fn run_now(
        self: &Arc<Self>,
        task: Arc<ratchet_core::Task>,
        input: Value,
        guard: impl Send + 'static,
    ) -> (String, tokio::sync::oneshot::Receiver<Result<ExecutionRecord, Unrecorded>>) {
        let id = ratchet_storage::new_id();
        let (done, receiver) = tokio::sync::oneshot::channel();
        let service = Arc::clone(self);
        let execution_id = id.clone();
        if let Ok(mut running) = self.running_now.lock() {
            running.insert(id.clone());
        }
        tokio::spawn(async move {
            let started = now_ms();
            let name = task.name().to_owned();
            service.emit(|| Event::new("execution.started", Some(&name), Some(&execution_id), json!({})));
            let http = service.kernel.live_http(&task);
            let execution =
                service.kernel.run_as(RunIdentity::new(execution_id), &task, input.clone(), http).await;
            let classification = service.classify(&name, &execution).await;
            service.metrics.run(&name, execution.outcome.is_ok(), execution.duration);
            service.emit_outcome(&name, None, &execution, &classification);
            let run = Run { job_id: None, attempt: 1, task: &name, input: &input };
            let record = record(run, &execution, &classification, started, &service.node);
            let recorded = match service.store.record_execution(&record).await {
                Ok(()) => Ok(record),
                Err(error) => {
                    tracing::error!(execution = %record.id, "cannot record the run: {error}");
                    Err(Unrecorded { record, error: error.to_string() })
                }
            };
            if let Ok(mut running) = service.running_now.lock() {
                running.remove(&execution.id);
            }
            let _ = done.send(recorded);
            drop(guard);
        });
        (id, receiver)
    }

    /// What the error-pattern plugins make of a failed run (nothing for a success).
    async fn classify(&self, task: &str, execution: &Execution) -> Vec<Suggestion> {
        let Err(error) = &execution.outcome else { return Vec::new() };
        if self.plugins.patterns.is_empty() {
            return Vec::new();
        }
        let failure = FailedRun {
            kind: error.kind().to_owned(),
            name: Some(error.name().to_owned()),
            message: error.to_string(),
            task: task.to_owned(),
            logs: execution.logs.iter().map(|line| line.message.clone()).collect(),
        };
        self.plugins.patterns.classify(failure).await
    }

    fn emit_outcome(
        &self,
        task: &str,
        job: Option<&Job>,
        execution: &Execution,
        classification: &[Suggestion],
    ) {
        if self.plugins.sinks.is_empty() {
            return;
        }
        let id = Some(execution.id.as_str());
        let duration_ms = execution.duration.as_secs_f64() * 1000.0;
        let base = match job {
            Some(job) => json!({"job": job.id, "attempt": job.attempt, "duration_ms": duration_ms}),
            None => json!({"duration_ms": duration_ms}),
        };
        match &execution.outcome {
            Ok(_) => self.emit(|| Event::new("execution.succeeded", Some(task), id, base)),
            Err(error) => {
                let mut data = base;
                data["error"] = json!({"kind": error.kind(), "message": error.to_string()});
                if !classification.is_empty() {
                    data["classification"] = json!(classification);
                }
                if error.kind() == "worker_crashed" {
                    self.emit(|| Event::new("worker.crashed", Some(task), id, data.clone()));
                }
                self.emit(|| Event::new("execution.failed", Some(task), id, data));
            }
        }
    }

    async fn report_unknown_task(&self, job: &Job, message: String) {
        let reported = self.store.fail(&job.id, job.attempt, &message, now_ms()).await;
        log_report(job, reported);
    }

    /// Records (`Some(execution id)`) or forgets (`None`) a job this node runs.
    fn track(&self, job: &Job, execution: Option<&str>) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            match execution {
                Some(id) => in_flight.insert(job.id.clone(), (job.attempt, id.to_owned())),
                None => in_flight.remove(&job.id),
            };
        }
    }

    /// Whether this node is running the execution `id` now (a job's or a synchronous run).
    pub fn is_running(&self, id: &str) -> bool {
        let sync = self.running_now.lock().is_ok_and(|running| running.contains(id));
        sync || self.job_of(id).is_some()
    }

    /// The job whose attempt this node runs as execution `id`, if any.
    fn job_of(&self, id: &str) -> Option<String> {
        let in_flight = self.in_flight.lock().ok()?;
        in_flight.iter().find(|(_, (_, execution))| execution == id).map(|(job, _)| job.clone())
    }

    /// The live log lines of the job attempts other nodes run, from now on (PostgreSQL; none on
    /// SQLite). A follower that falls [`log_relay::REMOTE_BUFFER`] lines behind misses some.
    pub fn follow_remote_logs(&self) -> tokio::sync::broadcast::Receiver<Arc<log_relay::RemoteLine>> {
        self.remote_logs.subscribe()
    }

    /// The execution of job `job_id` this node is running now, if any.
    pub fn running_execution(&self, job_id: &str) -> Option<String> {
        self.in_flight.lock().ok()?.get(job_id).map(|(_, execution)| execution.clone())
    }

    /// Gives every job still running on this node back to the queue (end of a drain).
    pub async fn release_in_flight(&self) -> usize {
        let jobs: Vec<(String, u32)> = self
            .in_flight
            .lock()
            .map(|j| j.iter().map(|(id, (attempt, _))| (id.clone(), *attempt)).collect())
            .unwrap_or_default();
        let mut released = 0;
        for (id, attempt) in jobs {
            if self.store.release(&id, attempt, now_ms()).await.is_ok() {
                released += 1;
            }
        }
        released
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|j| j.len()).unwrap_or(0)
    }

    async fn rescue(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = self.lease() / 2;
        while !*stop.borrow() {
            match self.store.rescue_expired(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!("rescued {n} job(s) whose lease expired"),
                Err(error) => tracing::warn!("cannot rescue expired leases: {error}"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

fn log_report(job: &Job, reported: Result<JobStatus, QueueError>) {
    match reported {
        Ok(status) => {
            tracing::info!(job = %job.id, attempt = job.attempt, task = %job.task, "job {status}")
        }
        Err(QueueError::Fenced { .. }) => {
            tracing::info!(job = %job.id, attempt = job.attempt, "result discarded: the attempt no longer owns the job")
        }
        Err(error) => tracing::error!(job = %job.id, "cannot record the job's result: {error}"),
    }
}

/// Renews the lease every third of its length until aborted or refused.
async fn heartbeat(store: Store, job: Job, node: String, lease: Duration) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        match store.heartbeat(&job.id, job.attempt, &node, until, now).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %job.id, "the job was cancelled or rescued; this attempt's result will be discarded");
                return;
            }
            Err(error) => tracing::warn!(job = %job.id, "heartbeat failed: {error}"),
        }
    }
}

/// What an execution ran: a job's attempt, or a direct run (no job).
struct Run<'a> {
    job_id: Option<&'a str>,
    attempt: u32,
    task: &'a str,
    input: &'a Value,
}

/// The stored record of `execution`, its error carrying the error patterns' classification.
fn record(
    run: Run<'_>,
    execution: &Execution,
    classification: &[Suggestion],
    started: i64,
    node: &str,
) -> ExecutionRecord {
    let har = serde_json::to_value(Har::from_exchanges(&execution.http, execution.http_unrecorded))
        .unwrap_or(Value::Null);
    let mut error = execution.outcome.as_ref().err().map(ratchet_core::recording::error_json);
    if let (Some(error), false) = (error.as_mut(), classification.is_empty()) {
        error["classification"] = json!(classification);
    }
    ExecutionRecord {
        id: execution.id.clone(),
        job_id: run.job_id.map(str::to_owned),
        attempt: run.attempt,
        task: run.task.to_owned(),
        status: execution.status(),
        input: run.input.clone(),
        output: execution.outcome.as_ref().ok().cloned(),
        error,
        logs: ratchet_core::recording::logs_json(&execution.logs),
        http: har,
        started_at: started,
        finished_at: now_ms(),
        duration_us: execution.duration.as_micros() as i64,
        worker: execution.worker.as_ref().map(|w| w.worker_id.clone()),
        node: Some(node.to_owned()),
    }
}

/// How often a node reports it is alive (and its workers' states).
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(10);

/// A node that missed heartbeats this long (milliseconds) is reported lost.
pub const NODE_STALE_AFTER_MS: i64 = 3 * NODE_HEARTBEAT.as_millis() as i64;

fn task_version(task: &ratchet_core::Task) -> TaskVersion {
    TaskVersion {
        task: task.name().to_owned(),
        uuid: task.metadata.uuid.clone(),
        digest: task.digest.clone(),
        version: task.metadata.version.clone(),
        origin: task.origin.display().to_string(),
        metadata: task.metadata_document.clone(),
        input_schema: task.input_schema.document.clone(),
        output_schema: task.output_schema.document.clone(),
        code: task.code.to_string(),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".into())
}
