//! What the API sends and accepts: its own types, so that the storage can change without
//! changing the contract. Times are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use ratchet_core::schedule::{CatchUp, Overlap};
use ratchet_plugin_host::PluginInfo;
use ratchet_storage::{Attempt, ExecutionRecord, Job, KnownVersion, Node, Schedule, WorkerRow};

pub fn time(ms: i64) -> String {
    ratchet_core::time::format(ms)
}

/// Paging of a list: `limit` items (1 to 500, default 50) from `offset`. Each list has its own
/// `sort` parameter: a field name, `-field` for descending.
#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub offset: Option<u64>,
}

macro_rules! list_type {
    ($name:ident, $item:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Serialize, ToSchema)]
        pub struct $name {
            pub items: Vec<$item>,
            /// How many items the whole filtered list holds.
            pub total: u64,
            pub limit: u64,
            pub offset: u64,
            /// The offset of the next page; absent on the last.
            #[serde(skip_serializing_if = "Option::is_none")]
            pub next_offset: Option<u64>,
        }

        impl $name {
            pub fn new(items: Vec<$item>, total: u64, limit: u64, offset: u64) -> $name {
                let end = offset + items.len() as u64;
                $name { items, total, limit, offset, next_offset: (end < total).then_some(end) }
            }
        }
    };
}

list_type!(TaskList, TaskSummary, "A page of tasks.");
list_type!(JobList, JobView, "A page of jobs.");
list_type!(ExecutionList, ExecutionSummary, "A page of executions.");
list_type!(ScheduleList, ScheduleView, "A page of schedules.");

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskSummary {
    pub name: String,
    pub uuid: Option<String>,
    pub version: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// SHA-256 of the task's files: identifies this version.
    pub digest: String,
}

impl From<&ratchet_core::Task> for TaskSummary {
    fn from(task: &ratchet_core::Task) -> TaskSummary {
        TaskSummary {
            name: task.name().to_owned(),
            uuid: task.metadata.uuid.clone(),
            version: task.metadata.version.clone(),
            label: task.metadata.label.clone(),
            description: task.metadata.description.clone(),
            tags: task.metadata.tags.clone(),
            digest: task.digest.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub summary: TaskSummary,
    pub input_schema: Value,
    pub output_schema: Value,
    /// Every version of the task this database has seen, newest first.
    pub versions: Vec<TaskVersionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskVersionView {
    pub version: String,
    pub digest: String,
    pub first_seen_at: String,
}

impl From<KnownVersion> for TaskVersionView {
    fn from(v: KnownVersion) -> TaskVersionView {
        TaskVersionView { version: v.version, digest: v.digest, first_seen_at: time(v.first_seen_at) }
    }
}

/// Checks a task's script in a worker and, when given, an input against its input schema.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub input: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ValidateResponse {
    /// True when the script compiled and the input (if any) matches the schema.
    pub valid: bool,
    /// Why the script does not load, when it does not.
    pub script_error: Option<String>,
    pub violations: Vec<Violation>,
}

/// One way an input misses its schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct Violation {
    /// JSON pointer of the offending value.
    pub pointer: String,
    /// The schema keyword that failed.
    pub rule: String,
    pub message: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub input: Value,
    /// Seconds to wait for the result (capped by server.run_wait_secs); a run still going
    /// then is answered 202 and can be followed at /api/v1/executions/{id}.
    #[schema(minimum = 0)]
    pub wait_secs: Option<f64>,
}

/// A run that had not finished when the wait ended; it goes on and is recorded.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunAccepted {
    pub execution_id: String,
    /// `running`.
    pub status: String,
    /// Where the execution will be.
    pub location: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnqueueRequest {
    /// A task name or uuid.
    pub task: String,
    pub input: Value,
    /// Higher runs first.
    #[serde(default)]
    pub priority: i32,
    /// RFC 3339 time before which the job does not run.
    pub run_at: Option<String>,
    #[schema(minimum = 1)]
    pub max_attempts: Option<u32>,
    /// A second enqueue with the same key returns the first job (200 instead of 201).
    pub idempotency_key: Option<String>,
    /// Seconds each attempt may run, replacing the task's timeout; at most
    /// `limits.max_timeout_secs`.
    #[schema(minimum = 0.001)]
    pub timeout_secs: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    pub id: String,
    pub task: String,
    pub input: Value,
    pub priority: i32,
    /// queued, running, retrying, completed, failed or cancelled.
    pub status: String,
    pub attempt: u32,
    pub max_attempts: u32,
    /// The job's own timeout per attempt, in seconds, when it has one.
    pub timeout_secs: Option<f64>,
    pub run_at: String,
    pub idempotency_key: Option<String>,
    pub lease_owner: Option<String>,
    pub output: Option<Value>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> JobView {
        JobView {
            id: job.id.clone(),
            task: job.task.clone(),
            input: job.input.clone(),
            priority: job.priority,
            status: job.status.as_str().to_owned(),
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            timeout_secs: job.timeout.map(|t| t.as_secs_f64()),
            run_at: time(job.run_at),
            idempotency_key: job.idempotency_key.clone(),
            lease_owner: job.lease_owner.clone(),
            output: job.output.clone(),
            last_error: job.last_error.clone(),
            created_at: time(job.created_at),
            updated_at: time(job.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: JobView,
    /// How each finished attempt ended.
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempt: u32,
    /// completed, failed, expired or released.
    pub outcome: String,
    pub error: Option<String>,
    pub finished_at: String,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> AttemptView {
        AttemptView {
            attempt: a.attempt,
            outcome: a.outcome,
            error: a.error,
            finished_at: time(a.finished_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionSummary {
    pub id: String,
    /// The job this run was an attempt of; absent for a synchronous run.
    pub job_id: Option<String>,
    pub attempt: u32,
    pub task: String,
    /// success or failure.
    pub status: String,
    pub started_at: String,
    pub finished_at: String,
    pub duration_ms: f64,
    pub worker: Option<String>,
    pub node: Option<String>,
    /// The typed error of a failed run, with the error patterns' classification.
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
}

impl From<&ExecutionRecord> for ExecutionSummary {
    fn from(e: &ExecutionRecord) -> ExecutionSummary {
        ExecutionSummary {
            id: e.id.clone(),
            job_id: e.job_id.clone(),
            attempt: e.attempt,
            task: e.task.clone(),
            status: e.status.clone(),
            started_at: time(e.started_at),
            finished_at: time(e.finished_at),
            duration_ms: e.duration_us as f64 / 1000.0,
            worker: e.worker.clone(),
            node: e.node.clone(),
            error: e.error.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExecutionDetail {
    #[serde(flatten)]
    pub summary: ExecutionSummary,
    pub input: Value,
    pub output: Option<Value>,
    /// `[{level, message}]` in the order the task logged them.
    #[schema(value_type = Vec<Object>)]
    pub logs: Value,
    /// The HTTP calls of the run as a HAR 1.2 document.
    #[schema(value_type = Object)]
    pub http: Value,
}

impl From<ExecutionRecord> for ExecutionDetail {
    fn from(e: ExecutionRecord) -> ExecutionDetail {
        ExecutionDetail { summary: (&e).into(), input: e.input, output: e.output, logs: e.logs, http: e.http }
    }
}

/// The verdict of replaying a recorded execution offline.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResult {
    /// True when the replay produced the recorded output (or the same error).
    pub matches: bool,
    pub difference: Option<String>,
    pub output: Option<Value>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
    /// Requests answered from the recording.
    pub requests_replayed: usize,
    pub duration_ms: f64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewScheduleRequest {
    /// Unique; defaults to the task's name.
    pub name: Option<String>,
    /// A task name or uuid.
    pub task: String,
    /// Five fields, or six with leading seconds.
    pub cron: String,
    /// IANA time zone; UTC by default.
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default = "empty_object")]
    pub input: Value,
    #[serde(default)]
    #[schema(value_type = CatchUpSchema)]
    pub catch_up: CatchUp,
    /// Seconds; 60 by default, at most a year.
    #[schema(minimum = 0, maximum = 31_536_000)]
    pub catch_up_window_secs: Option<f64>,
    #[serde(default)]
    #[schema(value_type = OverlapSchema)]
    pub overlap: Overlap,
}

/// Changes to a schedule: every field left out keeps its value. The next fire time is
/// computed again from now.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SchedulePatch {
    pub name: Option<String>,
    /// A task name or uuid.
    pub task: Option<String>,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub input: Option<Value>,
    #[schema(value_type = Option<CatchUpSchema>)]
    pub catch_up: Option<CatchUp>,
    #[schema(minimum = 0, maximum = 31_536_000)]
    pub catch_up_window_secs: Option<f64>,
    #[schema(value_type = Option<OverlapSchema>)]
    pub overlap: Option<Overlap>,
    /// Pause (false) or resume (true).
    pub enabled: Option<bool>,
}

// `CatchUp` and `Overlap` as the OpenAPI document shows them: the core crate, which defines
// them, knows nothing of OpenAPI.
/// What happens to fire times that passed while no scheduler ran (downtime, a paused node).
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = CatchUp)]
#[serde(rename_all = "lowercase")]
enum CatchUpSchema {
    /// Only the most recent due fire time, and only when it is younger than the window.
    Skip,
    /// The most recent due fire time, however old.
    Latest,
    /// Every due fire time within the window, oldest first.
    All,
}

/// What happens when a fire time comes while the job of the previous one has not finished.
#[allow(dead_code)]
#[derive(Serialize, ToSchema)]
#[schema(as = Overlap)]
#[serde(rename_all = "lowercase")]
enum OverlapSchema {
    /// The fire time is skipped while the previous fire's job is unfinished.
    Skip,
    /// The job is enqueued anyway.
    Allow,
}

fn utc() -> String {
    "UTC".into()
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleView {
    pub id: String,
    pub name: String,
    pub task: String,
    pub cron: String,
    pub timezone: String,
    pub input: Value,
    #[schema(value_type = CatchUpSchema)]
    pub catch_up: CatchUp,
    pub catch_up_window_secs: f64,
    #[schema(value_type = OverlapSchema)]
    pub overlap: Overlap,
    pub enabled: bool,
    pub next_fire_at: Option<String>,
    pub last_fire_at: Option<String>,
    pub last_job_id: Option<String>,
    pub created_at: String,
}

impl From<&Schedule> for ScheduleView {
    fn from(s: &Schedule) -> ScheduleView {
        ScheduleView {
            id: s.id.clone(),
            name: s.name.clone(),
            task: s.task.clone(),
            cron: s.cron.clone(),
            timezone: s.timezone.clone(),
            input: s.input.clone(),
            catch_up: s.catch_up,
            catch_up_window_secs: s.catch_up_window.as_secs_f64(),
            overlap: s.overlap,
            enabled: s.enabled,
            next_fire_at: s.next_fire_at.map(time),
            last_fire_at: s.last_fire_at.map(time),
            last_job_id: s.last_job_id.clone(),
            created_at: time(s.created_at),
        }
    }
}

/// Upcoming fire times.
#[derive(Debug, Serialize, ToSchema)]
pub struct FireTimes {
    pub fire_times: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeView {
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    /// running, stopped, or lost (no heartbeat for a while).
    pub status: String,
    pub started_at: String,
    pub heartbeat_at: String,
    pub stopped_at: Option<String>,
}

impl From<Node> for NodeView {
    fn from(n: Node) -> NodeView {
        NodeView {
            id: n.id,
            hostname: n.hostname,
            pid: n.pid,
            version: n.version,
            status: n.status,
            started_at: time(n.started_at),
            heartbeat_at: time(n.heartbeat_at),
            stopped_at: n.stopped_at.map(time),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WorkerView {
    pub id: String,
    pub node: String,
    pub pid: Option<u32>,
    pub state: String,
    pub runs: u64,
    pub last_error: Option<String>,
    pub updated_at: String,
}

impl From<WorkerRow> for WorkerView {
    fn from(w: WorkerRow) -> WorkerView {
        WorkerView {
            id: w.id,
            node: w.node,
            pid: w.pid,
            state: w.state,
            runs: w.runs,
            last_error: w.last_error,
            updated_at: time(w.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PluginView {
    pub name: String,
    pub plugin: String,
    /// sink, error-pattern, auth or api-surface.
    pub kind: String,
    pub source: String,
    pub interface: String,
    pub version: String,
    pub description: String,
    pub requested: Vec<String>,
    pub granted: Vec<String>,
}

impl From<&PluginInfo> for PluginView {
    fn from(p: &PluginInfo) -> PluginView {
        PluginView {
            name: p.name.clone(),
            plugin: p.plugin.clone(),
            kind: p.kind.clone(),
            source: p.source.clone(),
            interface: p.interface.clone(),
            version: p.version.clone(),
            description: p.description.clone(),
            requested: p.requested.clone(),
            granted: p.granted.clone(),
        }
    }
}
