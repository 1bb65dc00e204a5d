//! One view per entity: the job, execution, schedule, task, node, worker and plugin as every
//! surface writes them out. REST serialises them (with their OpenAPI schema under the
//! `openapi` feature), GraphQL exposes them (as objects under the `graphql` feature; its field
//! names are the camelCase of these), and the CLI's `--format json` prints them, so the three
//! cannot drift. Times are RFC 3339 strings in UTC.

use serde::Serialize;
use serde_json::Value;

use ratchet_plugin_host::PluginInfo;
use ratchet_storage::{
    Attempt, ExecutionRecord, Job, KnownVersion, Node, Pause, Schedule, WHOLE_QUEUE, WorkerRow,
};

/// A view as JSON, for the CLI's `--format json` (views hold nothing that fails to serialise).
pub fn json<V: Serialize>(view: &V) -> Value {
    serde_json::to_value(view).unwrap_or(Value::Null)
}

/// `ms` as an RFC 3339 time (any stored value can be shown).
pub fn time(ms: i64) -> String {
    ratchet_core::time::format(ms)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct TaskView {
    pub name: String,
    pub uuid: Option<String>,
    pub version: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<String>,
    /// SHA-256 of the task's files: identifies this version.
    pub digest: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input_schema: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub output_schema: Value,
    /// The source the task came from: `server.tasks`, a `registry.sources` name, or a loader
    /// plugin's name.
    pub source: String,
    /// The task folder or ZIP (or a loader plugin's name for it).
    pub origin: String,
    /// Why the task's files, changed since this version loaded, do not load; this version
    /// keeps serving until they do.
    pub load_error: Option<String>,
    /// The task's test cases (`tests/*.json`), as `ratchet test` runs them.
    pub tests: Vec<TaskTestView>,
}

/// One of a task's test cases.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct TaskTestView {
    pub name: String,
    pub description: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub input: Value,
    /// `output` (the run succeeds with `expected_output`), `error` (the run fails), or
    /// `assertions` (the case's assertions decide).
    pub expects: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub expected_output: Option<Value>,
}

impl From<&ratchet_core::task::TestCase> for TaskTestView {
    fn from(case: &ratchet_core::task::TestCase) -> TaskTestView {
        use ratchet_core::task::Expectation;
        let (expects, expected_output) = match &case.expect {
            Expectation::Output(output) => ("output", Some(output.clone())),
            Expectation::Error { .. } => ("error", None),
            Expectation::Assertions => ("assertions", None),
        };
        TaskTestView {
            name: case.name.clone(),
            description: case.description.clone(),
            input: case.input.clone(),
            expects: expects.to_owned(),
            expected_output,
        }
    }
}

impl TaskView {
    /// `task` as served from `source`, with the error of its latest change that did not load.
    pub fn new(task: &ratchet_core::Task, source: &str, load_error: Option<&str>) -> TaskView {
        TaskView {
            source: source.to_owned(),
            origin: task.origin.display().to_string(),
            load_error: load_error.map(str::to_owned),
            name: task.name().to_owned(),
            uuid: task.metadata.uuid.clone(),
            version: task.metadata.version.clone(),
            label: task.metadata.label.clone(),
            description: task.metadata.description.clone(),
            tags: task.metadata.tags.clone(),
            digest: task.digest.clone(),
            input_schema: task.input_schema.document.clone(),
            output_schema: task.output_schema.document.clone(),
            tests: task.tests.iter().map(TaskTestView::from).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
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
    /// The task version (digest) the job runs, whatever the task's files hold when it starts;
    /// none for jobs a schedule fired, which run the version a node has then.
    pub task_digest: Option<String>,
    /// The trace the job belongs to (W3C trace id): the enqueuing request's `traceparent`, or
    /// a new trace. Every attempt runs on it.
    pub trace_id: Option<String>,
    /// Jobs of the task sharing this key run at most its per-key concurrency limit at once.
    pub concurrency_key: Option<String>,
    /// Why a queued or retrying job is not running yet: `scheduled` (its time is ahead),
    /// `paused` (its queue is), `concurrency` (its task or key is at its limit); none when it
    /// waits only for a free worker, or is not waiting.
    pub waiting: Option<String>,
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
            task_digest: job.task_digest.clone(),
            trace_id: job.trace_id.clone(),
            concurrency_key: job.concurrency_key.clone(),
            waiting: job.waiting.map(|waiting| waiting.as_str().to_owned()),
            lease_owner: job.lease_owner.clone(),
            output: job.output.clone(),
            last_error: job.last_error.clone(),
            created_at: time(job.created_at),
            updated_at: time(job.updated_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct JobDetail {
    #[serde(flatten)]
    #[cfg_attr(feature = "graphql", graphql(flatten))]
    pub job: JobView,
    /// How each finished attempt ended.
    pub attempts: Vec<AttemptView>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub error: Option<Value>,
    /// Who or what caused the run, when a surface said so: for an agent's MCP call,
    /// `{surface, principal, role, tool, arguments_sha256}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub caused_by: Option<Value>,
    /// The trace the run belongs to (W3C trace id); its `fetch` requests carried it as
    /// `traceparent`.
    pub trace_id: Option<String>,
}

impl From<&ExecutionRecord> for ExecutionSummary {
    fn from(e: &ExecutionRecord) -> ExecutionSummary {
        ExecutionSummary {
            id: e.id.clone(),
            job_id: e.job_id.clone(),
            attempt: e.attempt,
            task: e.task.clone(),
            status: e.status.as_str().to_owned(),
            started_at: time(e.started_at),
            finished_at: time(e.finished_at),
            duration_ms: e.duration_us as f64 / 1000.0,
            worker: e.worker.clone(),
            node: e.node.clone(),
            error: e.error.clone(),
            caused_by: e.caused_by.clone(),
            trace_id: e.trace_id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ExecutionDetail {
    #[serde(flatten)]
    #[cfg_attr(feature = "graphql", graphql(flatten))]
    pub summary: ExecutionSummary,
    pub input: Value,
    pub output: Option<Value>,
    /// `[{level, message}]` in the order the task logged them.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub logs: Value,
    /// The HTTP calls of the run as a HAR 1.2 document.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub http: Value,
}

impl From<ExecutionRecord> for ExecutionDetail {
    fn from(e: ExecutionRecord) -> ExecutionDetail {
        ExecutionDetail { summary: (&e).into(), input: e.input, output: e.output, logs: e.logs, http: e.http }
    }
}

/// A pause of the queue: one task's, or the whole queue's.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct PauseView {
    /// The paused task; none when the whole queue is paused.
    pub task: Option<String>,
    /// Its schedules skip their fires while paused (otherwise they enqueue jobs that wait).
    pub skip_schedules: bool,
    pub paused_at: String,
    pub paused_by: Option<String>,
}

impl From<&Pause> for PauseView {
    fn from(p: &Pause) -> PauseView {
        PauseView {
            task: (p.scope != WHOLE_QUEUE).then(|| p.scope.clone()),
            skip_schedules: p.skip_schedules,
            paused_at: time(p.paused_at),
            paused_by: p.paused_by.clone(),
        }
    }
}

/// A secret as listed: its name and when it was set, never its value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct SecretView {
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

impl SecretView {
    pub fn new(name: String, created_at: i64, updated_at: i64) -> SecretView {
        SecretView { name, created_at: time(created_at), updated_at: time(updated_at) }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
pub struct ScheduleView {
    pub id: String,
    pub name: String,
    pub task: String,
    pub cron: String,
    pub timezone: String,
    pub input: Value,
    #[cfg_attr(feature = "openapi", schema(value_type = CatchUpSchema))]
    pub catch_up: String,
    pub catch_up_window_secs: f64,
    #[cfg_attr(feature = "openapi", schema(value_type = OverlapSchema))]
    pub overlap: String,
    pub enabled: bool,
    pub next_fire_at: Option<String>,
    pub last_fire_at: Option<String>,
    pub last_job_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
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
            catch_up: s.catch_up.as_str().to_owned(),
            catch_up_window_secs: s.catch_up_window.as_secs_f64(),
            overlap: s.overlap.as_str().to_owned(),
            enabled: s.enabled,
            next_fire_at: s.next_fire_at.map(time),
            last_fire_at: s.last_fire_at.map(time),
            last_job_id: s.last_job_id.clone(),
            created_at: time(s.created_at),
            updated_at: time(s.updated_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
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

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
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
            state: w.state.as_str().to_owned(),
            runs: w.runs,
            last_error: w.last_error,
            updated_at: time(w.updated_at),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "graphql", derive(async_graphql::SimpleObject))]
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
            kind: p.kind.to_string(),
            source: p.source.clone(),
            interface: p.interface.clone(),
            version: p.version.clone(),
            description: p.description.clone(),
            requested: p.requested.iter().map(|c| c.as_str().to_owned()).collect(),
            granted: p.granted.iter().map(|c| c.as_str().to_owned()).collect(),
        }
    }
}

// `CatchUp` and `Overlap` as the OpenAPI document shows them: the core crate, which defines
// them, knows nothing of OpenAPI.
/// What happens to fire times that passed while no scheduler ran (downtime, a paused node).
#[allow(dead_code)]
#[cfg(feature = "openapi")]
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CatchUp)]
#[serde(rename_all = "lowercase")]
pub enum CatchUpSchema {
    /// Only the most recent due fire time, and only when it is younger than the window.
    Skip,
    /// The most recent due fire time, however old.
    Latest,
    /// Every due fire time within the window, oldest first.
    All,
}

/// What happens when a fire time comes while the job of the previous one has not finished.
#[allow(dead_code)]
#[cfg(feature = "openapi")]
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Overlap)]
#[serde(rename_all = "lowercase")]
pub enum OverlapSchema {
    /// The fire time is skipped while the previous fire's job is unfinished.
    Skip,
    /// The job is enqueued anyway.
    Allow,
}
