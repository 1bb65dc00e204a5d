//! The worker supervisor: a pool of `ratchet-worker` processes.
//!
//! Each slot of the pool is a tokio task that owns one worker process at a time: it spawns
//! it, waits for the handshake, pings it while idle, hands it runs from the shared queue,
//! and replaces it when it dies, times out, breaks the protocol or reaches its run quota.
//! A slot whose worker keeps dying at start-up backs off exponentially and, once it has
//! failed [`FAILING_AFTER`] times in a row, fails waiting runs with the start error instead
//! of letting them hang.

mod process;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use worker_protocol::{LogLevel, RunContext, RunMode, RunOutcome, RunStats};

use crate::config::ByteSize;
use crate::http::HttpSession;
use crate::task::TaskLimits;
use process::WorkerProcess;

/// Consecutive start failures after which a slot counts as failing.
pub const FAILING_AFTER: u32 = 3;
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
/// Runs before its quota at which a worker's successor starts, so that recycling a worker
/// leaves no gap in its slot (a worker takes a few milliseconds to start).
const SUCCESSOR_LEAD_RUNS: u32 = 8;

/// How to start and run workers.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub size: usize,
    pub max_runs: u32,
    pub binary: PathBuf,
    pub max_frame_bytes: usize,
    /// `RLIMIT_AS` of each worker process, in bytes.
    pub address_space_cap: u64,
    pub ping_interval: Duration,
    pub start_timeout: Duration,
}

/// One run for a worker.
#[derive(Clone)]
pub struct RunRequest {
    pub mode: RunMode,
    pub code_key: String,
    pub code: Arc<str>,
    pub input: Value,
    pub limits: TaskLimits,
    pub context: RunContext,
    /// Answers the run's `fetch` calls; its masker masks the run's log lines too.
    pub http: Arc<HttpSession>,
    /// Log bytes kept for the run (`recording.max_log_bytes`).
    pub max_log_bytes: u64,
    /// Where each log line also goes as the task writes it, for live followers.
    pub live: Option<LiveLogs>,
    /// Cancelling it stops the run: its worker is killed (a run cannot be interrupted any
    /// other way), and the run fails as [`WorkerFailure::Cancelled`].
    pub cancel: Option<CancellationToken>,
    /// The task's name and the run's trace, carried by its live lines.
    pub label: RunLabel,
}

/// What a run's live lines say of it besides its execution id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunLabel {
    pub task: Arc<str>,
    pub trace_id: Option<Arc<str>>,
}

/// Log lines of runs in progress, as they are written: `Kernel::follow_logs` subscribes.
pub type LiveLogs = tokio::sync::broadcast::Sender<LiveLine>;

/// One log line of a run in progress.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveLine {
    pub execution_id: Arc<str>,
    pub label: RunLabel,
    /// The line's position in the run's log, from 0.
    pub index: usize,
    pub level: LogLevel,
    pub message: String,
}

/// What came back from a worker.
#[derive(Debug)]
pub struct RunReply {
    /// The task's own outcome, or why the worker could not deliver one.
    pub result: Result<RunOutcome, WorkerFailure>,
    pub logs: Vec<LogLine>,
    /// Bytes of the messages in `logs`.
    pub log_bytes: u64,
    /// Log lines past the per-run caps (lines, bytes), counted but not kept, and their bytes.
    pub dropped_logs: u64,
    pub dropped_log_bytes: u64,
    pub stats: Option<RunStats>,
    pub worker_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: LogLevel,
    pub message: String,
}

/// A run that ended without a result from the task.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WorkerFailure {
    #[error("the run exceeded its timeout of {}s and its worker was killed", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the run exceeded its memory limit{}", .0.map(|l| format!(" of {l}")).unwrap_or_default())]
    MemoryLimit(Option<ByteSize>),
    #[error("{0}")]
    Crashed(String),
    #[error("the worker broke the protocol: {0}")]
    Protocol(String),
    #[error("no worker is available: {0}")]
    Unavailable(String),
    #[error("the run was cancelled by its caller{}", if *.0 { " and its worker was stopped" } else { " before it started" })]
    Cancelled(bool),
}

/// What a slot is doing, for health reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Starting,
    Idle,
    Busy,
    BackingOff,
    Stopped,
}

impl SlotState {
    pub const ALL: [SlotState; 5] =
        [SlotState::Starting, SlotState::Idle, SlotState::Busy, SlotState::BackingOff, SlotState::Stopped];

    /// The name health reports and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotState::Starting => "starting",
            SlotState::Idle => "idle",
            SlotState::Busy => "busy",
            SlotState::BackingOff => "backingoff",
            SlotState::Stopped => "stopped",
        }
    }

    pub fn parse(name: &str) -> Option<SlotState> {
        SlotState::ALL.into_iter().find(|state| state.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotStatus {
    pub state: SlotState,
    pub pid: Option<u32>,
    pub runs: u64,
    pub restarts: u64,
    pub consecutive_start_failures: u32,
    pub last_error: Option<String>,
}

struct Job {
    request: RunRequest,
    reply: oneshot::Sender<RunReply>,
}

struct Shared {
    spec: PoolSpec,
    queue: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    status: Mutex<Vec<SlotStatus>>,
}

pub struct WorkerPool {
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    shared: Arc<Shared>,
    slots: Mutex<Vec<JoinHandle<()>>>,
}

/// A worker started before the kernel that will use it: a short command (`run-once`) starts
/// its worker first, so that the worker's own start (a few milliseconds: exec, its first
/// realm) overlaps the command's (configuration, task loading) instead of following it.
///
/// It is started from a guess at the pool's spec (the default configuration). The pool adopts
/// it only when the real spec would have started it the same way: same binary, frame limit and
/// memory cap. The cap cannot be lowered afterwards: a worker already past it (its heap, its
/// threads' stacks) would fail its next mapping and crash. Otherwise it is stopped and the pool
/// starts its own. Dropped unadopted, it is killed.
pub struct EarlyWorker {
    binary: PathBuf,
    max_frame_bytes: usize,
    address_space_cap: u64,
    started: Option<Successor>,
}

impl EarlyWorker {
    /// Starts a worker as `spec` says: the process now, on this thread; its handshake in the
    /// background. Call from within a Tokio runtime.
    pub fn start(spec: &PoolSpec) -> EarlyWorker {
        let (binary, max_frame_bytes, address_space_cap, start_timeout) =
            (spec.binary.clone(), spec.max_frame_bytes, spec.address_space_cap, spec.start_timeout);
        let started = WorkerProcess::start(spec, worker_id(0, 1));
        let started = tokio::spawn(async move { started?.ready(start_timeout).await });
        EarlyWorker { binary, max_frame_bytes, address_space_cap, started: Some(started) }
    }

    /// The started worker, when `spec` would have started it the same way.
    fn adopt_for(mut self, spec: &PoolSpec) -> Option<Successor> {
        if self.binary == spec.binary
            && self.max_frame_bytes == spec.max_frame_bytes
            && self.address_space_cap == spec.address_space_cap
        {
            self.started.take()
        } else {
            tracing::debug!("the worker started early does not fit the configured pool; starting another");
            None
        }
    }
}

impl Drop for EarlyWorker {
    fn drop(&mut self) {
        // Aborting drops the spawn's future and with it the child (`kill_on_drop`).
        if let Some(started) = self.started.take() {
            started.abort();
        }
    }
}

impl WorkerPool {
    /// Starts the slots; workers spawn in the background.
    pub fn start(spec: PoolSpec) -> WorkerPool {
        WorkerPool::start_with(spec, None)
    }

    /// Starts the slots, the first with `early` when it fits `spec` (see [`EarlyWorker`]).
    pub fn start_with(spec: PoolSpec, early: Option<EarlyWorker>) -> WorkerPool {
        let mut early = early.and_then(|early| early.adopt_for(&spec));
        let (sender, receiver) = mpsc::channel(1024);
        let initial = SlotStatus {
            state: SlotState::Starting,
            pid: None,
            runs: 0,
            restarts: 0,
            consecutive_start_failures: 0,
            last_error: None,
        };
        let shared = Arc::new(Shared {
            status: Mutex::new(vec![initial; spec.size]),
            spec,
            queue: tokio::sync::Mutex::new(receiver),
        });
        let slots = (0..shared.spec.size)
            .map(|index| tokio::spawn(slot_main(index, Arc::clone(&shared), early.take())))
            .collect();
        WorkerPool { sender: Mutex::new(Some(sender)), shared, slots: Mutex::new(slots) }
    }

    /// Runs one request on the next free worker.
    pub async fn execute(&self, request: RunRequest) -> RunReply {
        if let Some(reason) = self.unavailable() {
            return RunReply::failed(WorkerFailure::Unavailable(reason));
        }
        let sender = self.sender.lock().ok().and_then(|s| s.clone());
        let Some(sender) = sender else {
            return RunReply::failed(WorkerFailure::Unavailable("the worker pool is shut down".into()));
        };
        let (reply, answer) = oneshot::channel();
        if sender.send(Job { request, reply }).await.is_err() {
            return RunReply::failed(WorkerFailure::Unavailable("the worker pool is shut down".into()));
        }
        answer
            .await
            .unwrap_or_else(|_| RunReply::failed(WorkerFailure::Crashed("the worker slot stopped".into())))
    }

    pub fn status(&self) -> Vec<SlotStatus> {
        self.shared.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Why no run can be served now: every slot keeps failing to start a worker.
    pub fn unavailable(&self) -> Option<String> {
        let status = self.status();
        let failing = status.iter().all(|s| s.consecutive_start_failures >= FAILING_AFTER);
        if failing { status.iter().find_map(|s| s.last_error.clone()) } else { None }
    }

    /// Stops taking runs, lets queued ones finish, and shuts every worker down.
    pub async fn shutdown(&self) {
        self.sender.lock().ok().and_then(|mut s| s.take());
        let slots: Vec<_> = self.slots.lock().map(|mut s| s.drain(..).collect()).unwrap_or_default();
        for mut slot in slots {
            // A slot backing off from a broken worker binary never sees the queue close.
            if tokio::time::timeout(SHUTDOWN_WAIT, &mut slot).await.is_err() {
                slot.abort();
            }
        }
    }
}

impl RunReply {
    fn failed(failure: WorkerFailure) -> RunReply {
        RunReply {
            result: Err(failure),
            logs: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            dropped_log_bytes: 0,
            stats: None,
            worker_id: String::new(),
        }
    }
}

/// A worker started ahead of its predecessor's retirement.
type Successor = JoinHandle<Result<WorkerProcess, String>>;

/// Runs slot `index` until the pool closes; `early` is a worker started for it before the pool
/// (see [`EarlyWorker`]).
async fn slot_main(index: usize, shared: Arc<Shared>, early: Option<Successor>) {
    let mut generation = 0u64;
    let mut successor: Option<Successor> = None;
    let mut early = early;
    loop {
        generation += 1;
        let id = worker_id(index, generation);
        let spare = match (early.take(), successor.take()) {
            // Handshaken moments ago, as this pool would have started it.
            (Some(early), _) => early.await.ok().and_then(Result::ok),
            // A successor may have waited a while unwatched: it must answer before it gets a run.
            (None, Some(spare)) => match spare.await {
                Ok(Ok(mut worker)) => worker.ping(PING_TIMEOUT).await.then_some(worker),
                _ => None,
            },
            (None, None) => None,
        };
        let worker = match spare {
            Some(worker) => {
                adopt(&shared, index, &worker);
                worker
            }
            None => match start_worker(index, &shared, id).await {
                Some(worker) => worker,
                None => return,
            },
        };
        match serve(index, &shared, worker, generation, &mut successor).await {
            Served::Replace => update(&shared, index, |s| s.restarts += 1),
            Served::Closed => {
                if let Some(spare) = successor.take()
                    && let Ok(Ok(spare)) = spare.await
                {
                    spare.shutdown().await;
                }
                update(&shared, index, |s| s.state = SlotState::Stopped);
                return;
            }
        }
    }
}

fn worker_id(index: usize, generation: u64) -> String {
    format!("w{index}.{generation}")
}

/// Marks the slot as holding `worker`, started and handshaken.
fn adopt(shared: &Shared, index: usize, worker: &WorkerProcess) {
    let pid = worker.pid();
    update(shared, index, |s| {
        s.state = SlotState::Idle;
        s.pid = pid;
        s.consecutive_start_failures = 0;
    });
}

/// Spawns a worker, backing off while spawning fails. `None` when the pool closed meanwhile.
async fn start_worker(index: usize, shared: &Shared, id: String) -> Option<WorkerProcess> {
    let mut backoff = BACKOFF_START;
    loop {
        update(shared, index, |s| s.state = SlotState::Starting);
        match WorkerProcess::spawn(&shared.spec, id.clone()).await {
            Ok(worker) => {
                adopt(shared, index, &worker);
                return Some(worker);
            }
            Err(error) => {
                tracing::warn!(slot = index, "{error}; retrying in {backoff:?}");
                let mut failures = 0;
                update(shared, index, |s| {
                    s.state = SlotState::BackingOff;
                    s.pid = None;
                    s.consecutive_start_failures += 1;
                    s.last_error = Some(error.clone());
                    failures = s.consecutive_start_failures;
                });
                if failures >= FAILING_AFTER && !fail_waiting_job(shared, &error).await {
                    return None;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Fails one queued run with the start error. `false` when the pool has closed.
async fn fail_waiting_job(shared: &Shared, error: &str) -> bool {
    let Ok(mut queue) = shared.queue.try_lock() else {
        return true;
    };
    match queue.try_recv() {
        Ok(job) => {
            let _ = job.reply.send(RunReply::failed(WorkerFailure::Unavailable(error.to_owned())));
            true
        }
        Err(mpsc::error::TryRecvError::Empty) => true,
        Err(mpsc::error::TryRecvError::Disconnected) => false,
    }
}

enum Served {
    /// The worker is gone or used up; start another.
    Replace,
    /// The pool is shutting down.
    Closed,
}

/// Hands runs to `worker` until it dies, is used up or the pool closes. Near its quota, its
/// successor (generation + 1) starts in `successor`.
async fn serve(
    index: usize,
    shared: &Shared,
    mut worker: WorkerProcess,
    generation: u64,
    successor: &mut Option<Successor>,
) -> Served {
    loop {
        if successor.is_none() && worker.runs.saturating_add(SUCCESSOR_LEAD_RUNS) >= shared.spec.max_runs {
            let (spec, id) = (shared.spec.clone(), worker_id(index, generation + 1));
            *successor = Some(tokio::spawn(async move { WorkerProcess::spawn(&spec, id).await }));
        }
        let job = tokio::select! {
            job = next_job(shared) => job,
            () = tokio::time::sleep(shared.spec.ping_interval) => {
                if worker.ping(PING_TIMEOUT).await {
                    continue;
                }
                tracing::warn!(slot = index, worker = %worker.id, "worker failed its health ping; replacing it");
                drop(worker);
                return Served::Replace;
            }
        };
        let Some(job) = job else {
            worker.shutdown().await;
            return Served::Closed;
        };
        if job.request.cancel.as_ref().is_some_and(CancellationToken::is_cancelled) {
            let _ = job.reply.send(RunReply::failed(WorkerFailure::Cancelled(false)));
            continue;
        }
        update(shared, index, |s| s.state = SlotState::Busy);
        let reply = worker.execute(job.request).await;
        let worker_lost = reply.result.is_err();
        let _ = job.reply.send(reply);
        update(shared, index, |s| {
            s.runs += 1;
            s.state = SlotState::Idle;
        });
        if worker_lost {
            return Served::Replace;
        }
        if worker.runs >= shared.spec.max_runs {
            tokio::spawn(worker.shutdown());
            return Served::Replace;
        }
    }
}

async fn next_job(shared: &Shared) -> Option<Job> {
    shared.queue.lock().await.recv().await
}

fn update(shared: &Shared, index: usize, change: impl FnOnce(&mut SlotStatus)) {
    if let Ok(mut status) = shared.status.lock()
        && let Some(slot) = status.get_mut(index)
    {
        change(slot);
    }
}
