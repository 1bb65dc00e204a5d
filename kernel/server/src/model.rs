//! What the API sends and accepts: its own types, so that the storage can change without
//! changing the contract. Times are RFC 3339 strings in UTC.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use ratchet_core::schedule::{CatchUp, Overlap};
pub use ratchet_views::*;

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

/// The bounds of a list's time filter (`since`, `until`): each an RFC 3339 time or a duration
/// ago (`1h`); 422 naming the parameter when one is neither, or when they leave no time between.
pub fn time_range(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<(Option<i64>, Option<i64>), crate::error::ApiError> {
    ratchet_core::time::parse_range(since, until, ratchet_core::time::now_ms())
        .map_err(|error| crate::error::ApiError::invalid(error.to_string()))
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

list_type!(TaskList, TaskView, "A page of tasks.");
list_type!(JobList, JobView, "A page of jobs.");
list_type!(ExecutionList, ExecutionSummary, "A page of executions.");
list_type!(ScheduleList, ScheduleView, "A page of schedules.");

#[derive(Debug, Serialize, ToSchema)]
pub struct TaskDetail {
    #[serde(flatten)]
    pub task: TaskView,
    /// Every version of the task this database has seen, newest first.
    pub versions: Vec<TaskVersionView>,
}

/// The versions of a task.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskVersions {
    pub task: String,
    /// The digest of the version this node serves now.
    pub serving: String,
    /// Every version the database has seen, newest first. Jobs run the version they were
    /// enqueued against.
    pub items: Vec<TaskVersionView>,
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
    /// Jobs of the task sharing this key (e.g. a customer id) run at most the task's
    /// `per_key` concurrency limit at once; the task must declare one.
    pub concurrency_key: Option<String>,
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

fn utc() -> String {
    "UTC".into()
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

/// Upcoming fire times.
#[derive(Debug, Serialize, ToSchema)]
pub struct FireTimes {
    pub fire_times: Vec<String>,
}
