//! Running a task: input check, a worker run, output check, one typed result.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use worker_protocol::{FRAME_HEADROOM, JsError, RunContext, RunMode, RunOutcome};

use crate::config::Config;
use crate::http::{Egress, Exchange, HttpMode, HttpSession, MASK, Masker, RecordingBudget};
use crate::supervisor::{EarlyWorker, LogLine, PoolSpec, RunLabel, RunRequest, WorkerFailure, WorkerPool};
use crate::task::{SchemaViolation, Task, TaskError};
use crate::trace::TraceContext;

/// Name of the worker binary looked up next to the `ratchet` binary.
pub const WORKER_BINARY: &str = "ratchet-worker";

/// Extra address space a worker gets above the largest memory limit, for code and stacks.
const ADDRESS_SPACE_HEADROOM: u64 = 256 * 1024 * 1024;

/// The kernel: configuration and a supervised worker pool.
pub struct Kernel {
    config: Config,
    pool: WorkerPool,
    egress: Arc<Egress>,
    /// `None` when started with [`KernelStart::no_followers`].
    live: Option<crate::supervisor::LiveLogs>,
    /// `recording.mask_names` on the built-in rules.
    masker: Masker,
}

/// The result of one run.
#[derive(Debug)]
pub struct Execution {
    pub id: String,
    pub outcome: Result<Value, ExecutionError>,
    /// The run's log, within `recording.max_log_bytes`; when lines were dropped, the last
    /// line says how many.
    pub logs: Vec<LogLine>,
    pub dropped_logs: u64,
    pub duration: Duration,
    pub worker: Option<WorkerUsage>,
    /// The task's `fetch` calls, in order, secrets masked, within `recording.max_http_bytes`.
    pub http: Vec<Exchange>,
    /// Requests made after the HTTP recording budget was spent: counted, not recorded.
    pub http_unrecorded: u64,
}

/// Figures the worker reported for the run.
#[derive(Debug, Clone)]
pub struct WorkerUsage {
    pub worker_id: String,
    pub duration_us: u64,
    pub peak_rss_kib: u64,
}

/// How a run ended, as the record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    Success,
    Failure,
}

impl RunStatus {
    pub const ALL: [RunStatus; 2] = [RunStatus::Success, RunStatus::Failure];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Success => "success",
            RunStatus::Failure => "failure",
        }
    }

    pub fn parse(name: &str) -> Option<RunStatus> {
        RunStatus::ALL.into_iter().find(|status| status.as_str() == name)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutionError {
    #[error("input does not match the input schema {}", violations_text(.0))]
    InvalidInput(Vec<SchemaViolation>),
    #[error("output does not match the output schema {}", violations_text(.0))]
    InvalidOutput(Vec<SchemaViolation>),
    /// The task threw (or its script did not compile).
    #[error("{}: {}", .0.name, .0.message)]
    Task(JsError),
    #[error(transparent)]
    Worker(#[from] WorkerFailure),
}

impl ExecutionError {
    /// A stable identifier of the failure class, for scripts and the API.
    pub fn kind(&self) -> &'static str {
        match self {
            ExecutionError::InvalidInput(_) => "invalid_input",
            ExecutionError::InvalidOutput(_) => "invalid_output",
            ExecutionError::Task(_) => "task_error",
            ExecutionError::Worker(WorkerFailure::Timeout(_)) => "timeout",
            ExecutionError::Worker(WorkerFailure::MemoryLimit(_)) => "memory_limit",
            ExecutionError::Worker(WorkerFailure::Crashed(_)) => "worker_crashed",
            ExecutionError::Worker(WorkerFailure::Protocol(_)) => "protocol_error",
            ExecutionError::Worker(WorkerFailure::Cancelled(_)) => "cancelled",
            ExecutionError::Worker(_) => "worker_unavailable",
        }
    }

    /// What went wrong, without the class: the JS error's message, or the kernel's account.
    pub fn message(&self) -> String {
        match self {
            ExecutionError::Task(error) => error.message.clone(),
            other => other.to_string(),
        }
    }

    /// The error class: the JS error's name, or the kernel's name for the failure.
    pub fn name(&self) -> &str {
        match self {
            ExecutionError::Task(error) => &error.name,
            ExecutionError::InvalidInput(_) | ExecutionError::InvalidOutput(_) => "ValidationError",
            ExecutionError::Worker(WorkerFailure::Timeout(_)) => "TimeoutError",
            ExecutionError::Worker(WorkerFailure::MemoryLimit(_)) => "MemoryLimitError",
            ExecutionError::Worker(WorkerFailure::Crashed(_)) => "WorkerCrashedError",
            ExecutionError::Worker(WorkerFailure::Protocol(_)) => "ProtocolError",
            ExecutionError::Worker(WorkerFailure::Cancelled(_)) => "CancelledError",
            ExecutionError::Worker(_) => "WorkerUnavailableError",
        }
    }
}

fn violations_text(violations: &[SchemaViolation]) -> String {
    match violations {
        [] => String::new(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more)", rest.len()),
    }
}

/// How a kernel starts, besides its configuration.
#[derive(Default)]
pub struct KernelStart {
    /// A worker started before the kernel, for its first slot when it fits (see
    /// [`EarlyWorker`]).
    pub early: Option<EarlyWorker>,
    /// No one will follow runs' log lines as they are written ([`Kernel::follow_logs`]): a
    /// command that runs one task and prints its record. The followers' buffer of
    /// [`LIVE_LOG_BUFFER`] lines is then not allocated (a quarter of a millisecond of a cold
    /// `run-once`).
    pub no_followers: bool,
}

/// Errors starting the kernel.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    #[error(
        "cannot find the worker binary `{WORKER_BINARY}` (looked in {looked}); build it with \
         `cargo build -p boa-worker`, or set `workers.binary` in the config or RATCHET_WORKER_BIN"
    )]
    WorkerBinaryNotFound { looked: String },
    #[error("cannot set up HTTP for tasks: {0}")]
    Egress(String),
}

impl Kernel {
    /// Starts a kernel whose pool holds `workers` processes.
    pub fn start(config: Config, workers: usize) -> Result<Kernel, KernelError> {
        Kernel::start_with(config, workers, KernelStart::default())
    }

    /// [`Kernel::start`], as `how` says.
    pub fn start_with(config: Config, workers: usize, how: KernelStart) -> Result<Kernel, KernelError> {
        let spec = Kernel::pool_spec(&config, workers)?;
        let egress = Arc::new(Egress::new(&config.egress).map_err(KernelError::Egress)?);
        let live = (!how.no_followers).then(|| tokio::sync::broadcast::channel(LIVE_LOG_BUFFER).0);
        let masker = Masker::new(&config.recording.mask_names);
        Ok(Kernel { pool: WorkerPool::start_with(spec, how.early), config, egress, live, masker })
    }

    /// How `config` starts a pool of `workers` processes.
    pub fn pool_spec(config: &Config, workers: usize) -> Result<PoolSpec, KernelError> {
        Ok(PoolSpec {
            size: workers.max(1),
            max_runs: config.workers.max_runs,
            binary: find_worker_binary(config.workers.binary.as_deref())?,
            max_frame_bytes: config.workers.max_frame_bytes,
            address_space_cap: config.limits.max_memory_limit.0.saturating_add(ADDRESS_SPACE_HEADROOM),
            ping_interval: Duration::from_secs(config.workers.ping_interval_secs.max(1)),
            start_timeout: Duration::from_secs(config.workers.start_timeout_secs.max(1)),
        })
    }

    /// The log lines of every run from now on, as the tasks write them. A follower that falls
    /// more than [`LIVE_LOG_BUFFER`] lines behind misses some (the recorded execution keeps
    /// them all). A kernel started with [`KernelStart::no_followers`] has none: its follower
    /// hears the channel closed.
    pub fn follow_logs(&self) -> tokio::sync::broadcast::Receiver<crate::supervisor::LiveLine> {
        match &self.live {
            Some(live) => live.subscribe(),
            None => tokio::sync::broadcast::channel(1).1,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }

    /// Runs `task` with `input` and live HTTP: input checked, run in a worker, output checked.
    pub async fn run(&self, task: &Task, input: Value) -> Execution {
        self.run_with(task, input, self.live_http(task)).await
    }

    /// Live HTTP under the operator's policy narrowed by the task's `allowed_hosts`.
    pub fn live_http(&self, task: &Task) -> HttpMode {
        HttpMode::Live(Arc::clone(&self.egress), self.egress.policy_for(task.allowed_hosts.clone()))
    }

    /// Runs `task` with `input`, its requests answered by `http`.
    pub async fn run_with(&self, task: &Task, input: Value, http: HttpMode) -> Execution {
        self.run_as(RunIdentity::new(crate::time::new_id()), task, input, http).await
    }

    /// `run_with` as `identity` says: under an execution id the caller chose (to hand it out
    /// before the run ends), as an attempt of a job, with a job's own timeout.
    pub async fn run_as(
        &self,
        identity: RunIdentity,
        task: &Task,
        input: Value,
        http: HttpMode,
    ) -> Execution {
        let RunIdentity { execution_id: id, attempt, timeout, input_checked, cancel, trace, mut secrets } =
            identity;
        // A replay runs offline and is given no secret: each one the task declares reads as the
        // mask, as the recording shows it, so the replayed requests and output match it.
        if secrets.is_empty() && matches!(http, HttpMode::Replay(_)) {
            secrets = task.metadata.secrets.iter().map(|name| (name.clone(), MASK.to_owned())).collect();
        }
        let started = Instant::now();
        let limit = self.config.workers.max_frame_bytes.saturating_sub(FRAME_HEADROOM);
        let (input, violations) =
            match input_too_deep(&input).or_else(|| input_too_large(&input, &task.code, limit)) {
                Some(violation) => (input, vec![violation]),
                None if input_checked => (input, Vec::new()),
                None => task.input_schema.check(input).await,
            };
        if !violations.is_empty() {
            return Execution::failed(id, ExecutionError::InvalidInput(violations), started);
        }
        let mut budget = self.recording_budget();
        if !secrets.is_empty() {
            budget.masker = budget.masker.with_values(secrets.values().map(String::as_str));
        }
        let session = Arc::new(HttpSession::new(http, budget).traced(trace.clone()));
        let mut request = self.request(task, RunMode::Run, input, &id, Arc::clone(&session));
        request.context.attempt = attempt;
        request.context.secrets = secrets;
        request.cancel = cancel;
        request.label.trace_id = trace.as_ref().map(|trace| trace.trace_id().into());
        if let Some(timeout) = timeout {
            let ceiling =
                Duration::try_from_secs_f64(self.config.limits.max_timeout_secs).unwrap_or(Duration::MAX);
            request.limits.timeout = timeout.min(ceiling);
        }
        let mut reply = self.pool.execute(request).await;
        let outcome = match reply.result {
            Ok(RunOutcome::Success { output }) => {
                check_output(task, output).await.map(|output| session.masker().json(output))
            }
            Ok(RunOutcome::Error { error }) => Err(ExecutionError::Task(masked(error, session.masker()))),
            Ok(RunOutcome::OutputTooLarge { bytes, limit }) => {
                Err(ExecutionError::InvalidOutput(vec![too_large("output", bytes, limit)]))
            }
            Err(failure) => Err(ExecutionError::Worker(failure)),
        };
        if reply.dropped_logs > 0 {
            reply.logs.push(LogLine {
                level: worker_protocol::LogLevel::Warn,
                message: format!(
                    "[ratchet] {} further log line(s), {} bytes, were dropped: the run reached \
                     recording.max_log_bytes ({})",
                    reply.dropped_logs, reply.dropped_log_bytes, self.config.recording.max_log_bytes
                ),
            });
        }
        let (http, http_unrecorded) = session.exchanges();
        let worker = reply.stats.map(|stats| WorkerUsage {
            worker_id: reply.worker_id,
            duration_us: stats.duration_us,
            peak_rss_kib: stats.peak_rss_kib,
        });
        Execution {
            id,
            outcome,
            logs: reply.logs,
            dropped_logs: reply.dropped_logs,
            duration: started.elapsed(),
            worker,
            http,
            http_unrecorded,
        }
    }

    /// Checks the task's script in a worker: it compiles and yields a callable entry point.
    pub async fn check(&self, task: &Task) -> Result<(), ExecutionError> {
        let session = Arc::new(HttpSession::new(HttpMode::Disabled, self.recording_budget()));
        let request = self.request(task, RunMode::Check, Value::Null, "check", session);
        match self.pool.execute(request).await.result {
            Ok(RunOutcome::Success { .. }) => Ok(()),
            Ok(RunOutcome::Error { error }) => Err(ExecutionError::Task(error)),
            Ok(RunOutcome::OutputTooLarge { bytes, limit }) => {
                Err(ExecutionError::InvalidOutput(vec![too_large("output", bytes, limit)]))
            }
            Err(failure) => Err(ExecutionError::Worker(failure)),
        }
    }

    /// `check`, with a script error turned into a task error naming `main.js`.
    pub async fn validate(&self, task: &Task) -> Result<(), ValidateError> {
        match self.check(task).await {
            Ok(()) => Ok(()),
            Err(ExecutionError::Task(error)) => Err(ValidateError::Task(TaskError::BadScript {
                file: script_path(&task.origin),
                message: format!("{}: {}", error.name, error.message),
            })),
            Err(other) => Err(ValidateError::Execution(other)),
        }
    }

    pub async fn shutdown(&self) {
        self.pool.shutdown().await;
    }

    fn request(
        &self,
        task: &Task,
        mode: RunMode,
        input: Value,
        execution_id: &str,
        http: Arc<HttpSession>,
    ) -> RunRequest {
        RunRequest {
            mode,
            code_key: task.code_key.clone(),
            code: Arc::clone(&task.code),
            input,
            limits: task.limits(&self.config.limits),
            context: RunContext {
                execution_id: execution_id.to_owned(),
                attempt: 1,
                task_id: task.id(),
                task_version: task.metadata.version.clone(),
                secrets: std::collections::BTreeMap::new(),
            },
            http,
            max_log_bytes: self.config.recording.max_log_bytes.0,
            live: self.live.clone(),
            cancel: None,
            label: RunLabel { task: task.name().into(), trace_id: None },
        }
    }

    /// `recording.*` for one run's HTTP session.
    fn recording_budget(&self) -> RecordingBudget {
        RecordingBudget { max_bytes: self.config.recording.max_http_bytes.0, masker: self.masker.clone() }
    }
}

/// A task's error with secrets in URLs it quotes masked.
fn masked(mut error: JsError, masker: &Masker) -> JsError {
    error.message = masker.text(&error.message).into_owned();
    error.stack = error.stack.map(|stack| masker.text(&stack).into_owned());
    error
}

/// Which run this is: its execution id, the attempt of its job (1 outside a job, and for a
/// job's first), and a timeout that replaces the task's (a job's own, bounded by
/// `limits.max_timeout_secs`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunIdentity {
    pub execution_id: String,
    pub attempt: u32,
    pub timeout: Option<Duration>,
    /// The caller already checked the input against this task's input schema (a synchronous
    /// run over the API does, to answer 422 before anything runs): it is not checked twice.
    pub input_checked: bool,
    /// Cancelling it stops the run (its worker is killed) and fails it as `cancelled`.
    pub cancel: Option<CancellationToken>,
    /// The trace the run belongs to: its live `fetch` requests carry it as `traceparent`.
    pub trace: Option<TraceContext>,
    /// The secrets the task declared, by name: the task reads them as `context.secrets`, and
    /// their values are masked in everything the run leaves behind (logs, output, error, HTTP).
    pub secrets: std::collections::BTreeMap<String, String>,
}

impl RunIdentity {
    pub fn new(execution_id: String) -> RunIdentity {
        RunIdentity {
            execution_id,
            attempt: 1,
            timeout: None,
            input_checked: false,
            cancel: None,
            trace: None,
            secrets: std::collections::BTreeMap::new(),
        }
    }
}

/// Live log lines held for slow followers.
pub const LIVE_LOG_BUFFER: usize = 4096;

/// Why `validate` failed: the task is wrong, or no worker could check it.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    #[error(transparent)]
    Task(#[from] TaskError),
    #[error("cannot check the script: {0}")]
    Execution(ExecutionError),
}

fn script_path(origin: &Path) -> String {
    if origin.is_dir() {
        origin.join("main.js").display().to_string()
    } else {
        format!("{}!/main.js", origin.display())
    }
}

/// Inputs nested beyond what the protocol carries are refused before schema checks.
fn input_too_deep(input: &Value) -> Option<SchemaViolation> {
    let depth = worker_protocol::value_depth(input);
    (depth > worker_protocol::MAX_VALUE_DEPTH).then(|| SchemaViolation {
        pointer: String::new(),
        rule: "maxDepth".into(),
        value: Value::String(format!("a value nested {depth} levels deep")),
        message: format!(
            "input nests {depth} levels deep; at most {} are accepted",
            worker_protocol::MAX_VALUE_DEPTH
        ),
    })
}

/// An input that, with the task's code, would not fit in a frame to the worker.
fn input_too_large(input: &Value, code: &str, limit: usize) -> Option<SchemaViolation> {
    let mut counter = ByteCounter(code.len() as u64);
    serde_json::to_writer(&mut counter, input).ok()?;
    (counter.0 > limit as u64).then(|| too_large("input", counter.0, limit as u64))
}

/// Counts what is written to it.
struct ByteCounter(u64);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The violation of a value too large to cross the pipe to or from a worker.
fn too_large(what: &str, bytes: u64, limit: u64) -> SchemaViolation {
    SchemaViolation {
        pointer: String::new(),
        rule: "maxBytes".into(),
        value: Value::String(format!("{bytes} bytes")),
        message: format!(
            "the {what} is {bytes} bytes as JSON (with the task's code, for the input); a worker takes \
             at most {limit} (workers.max_frame_bytes)"
        ),
    }
}

async fn check_output(task: &Task, output: Value) -> Result<Value, ExecutionError> {
    let (output, violations) = task.output_schema.check(output).await;
    if violations.is_empty() { Ok(output) } else { Err(ExecutionError::InvalidOutput(violations)) }
}

impl Execution {
    pub fn status(&self) -> RunStatus {
        if self.outcome.is_ok() { RunStatus::Success } else { RunStatus::Failure }
    }

    fn failed(id: String, error: ExecutionError, started: Instant) -> Execution {
        Execution {
            id,
            outcome: Err(error),
            logs: Vec::new(),
            dropped_logs: 0,
            duration: started.elapsed(),
            worker: None,
            http: Vec::new(),
            http_unrecorded: 0,
        }
    }
}

/// The worker binary: configured path, `RATCHET_WORKER_BIN`, or next to the running binary
/// (or one folder up, where cargo puts binaries relative to test executables).
pub fn find_worker_binary(configured: Option<&Path>) -> Result<PathBuf, KernelError> {
    if let Some(path) = configured {
        return Ok(path.to_owned());
    }
    if let Some(path) = std::env::var_os("RATCHET_WORKER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().ok();
    let dirs: Vec<PathBuf> =
        exe.iter().flat_map(|exe| exe.ancestors().skip(1).take(2).map(Path::to_owned)).collect();
    dirs.iter().map(|dir| dir.join(WORKER_BINARY)).find(|candidate| candidate.is_file()).ok_or_else(|| {
        KernelError::WorkerBinaryNotFound {
            looked: dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", "),
        }
    })
}
