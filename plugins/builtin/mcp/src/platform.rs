//! The platform's own tools: enqueue a job, read a job or an execution, list a task's recent
//! executions, cancel a job. Their names start with [`crate::catalog::RESERVED_PREFIX`].

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde::Deserialize;
use serde_json::{Value, json};

use ratchet_core::RunStatus;
use ratchet_core::trace::TraceContext;
use ratchet_server::Role;
use ratchet_service::{EnqueueOptions, Service, ServiceError};
use ratchet_storage::{ExecutionFilter, Page, QueueError};
use ratchet_views::{ExecutionDetail, ExecutionSummary, JobDetail, JobView};

use crate::catalog::object;

/// A platform tool: who may call it, and whether it changes anything (`mcp.read_only` hides
/// those).
pub struct PlatformTool {
    pub name: &'static str,
    description: &'static str,
    pub needs: Role,
    pub changes: bool,
    schema: fn() -> Value,
}

pub const ENQUEUE: &str = "ratchet_enqueue_job";
pub const GET_JOB: &str = "ratchet_get_job";
pub const GET_EXECUTION: &str = "ratchet_get_execution";
pub const LIST_EXECUTIONS: &str = "ratchet_list_executions";
pub const CANCEL: &str = "ratchet_cancel_job";
pub const EXPLAIN: &str = "ratchet_explain_execution";

/// Most executions one listing returns.
const MAX_LISTED: u64 = 50;

pub const TOOLS: &[PlatformTool] = &[
    PlatformTool {
        name: ENQUEUE,
        description: "Queues a job that runs a task in the background (with retries); answers the job. \
                      Poll it with ratchet_get_job.",
        needs: Role::Runner,
        changes: true,
        schema: || {
            json!({"type": "object", "required": ["task"], "additionalProperties": false, "properties": {
                "task": {"type": "string", "description": "The task's name"},
                "input": {"description": "The task's input, as its input schema says"},
                "priority": {"type": "integer", "description": "Higher runs first (default 0)"},
                "run_at": {"type": "string", "description": "RFC 3339 time to run at (default now)"},
                "max_attempts": {"type": "integer", "minimum": 1},
                "idempotency_key": {"type": "string", "description": "A second enqueue with the same key answers the first job"},
                "timeout_secs": {"type": "number", "exclusiveMinimum": 0},
                "concurrency_key": {"type": "string", "description": "Jobs of the task sharing this key run at most its per-key concurrency limit at once"}
            }})
        },
    },
    PlatformTool {
        name: GET_JOB,
        description: "A job: its status, how each attempt ended, and its executions (output, error).",
        needs: Role::Viewer,
        changes: false,
        schema: || id_schema("The job's id"),
    },
    PlatformTool {
        name: GET_EXECUTION,
        description: "One run of a task: status, input, output, the typed error and its logs; \
                      `running` while it runs. Its HTTP calls: the resource ratchet://executions/{id}/har.",
        needs: Role::Viewer,
        changes: false,
        schema: || id_schema("The execution's id"),
    },
    PlatformTool {
        name: EXPLAIN,
        description: "Why a run failed: its failure report (error and stack, the task's code around the failing \
                      line, matched error patterns with suggestions, the job's attempts, logs and HTTP calls), \
                      as Markdown, with the same as structured data.",
        needs: Role::Viewer,
        changes: false,
        schema: || id_schema("The execution's id"),
    },
    PlatformTool {
        name: LIST_EXECUTIONS,
        description: "The most recent runs, newest first, of one task or of all.",
        needs: Role::Viewer,
        changes: false,
        schema: || {
            json!({"type": "object", "additionalProperties": false, "properties": {
                "task": {"type": "string"},
                "status": {"enum": ["success", "failure"]},
                "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LISTED, "default": 10}
            }})
        },
    },
    PlatformTool {
        name: CANCEL,
        description: "Cancels a job that has not ended; a running attempt is stopped.",
        needs: Role::Runner,
        changes: true,
        schema: || id_schema("The job's id"),
    },
];

fn id_schema(what: &str) -> Value {
    json!({"type": "object", "required": ["id"], "additionalProperties": false,
           "properties": {"id": {"type": "string", "description": what}}})
}

pub fn find(name: &str) -> Option<&'static PlatformTool> {
    TOOLS.iter().find(|tool| tool.name == name)
}

impl PlatformTool {
    pub fn tool(&self) -> Tool {
        Tool::new(self.name, self.description, Arc::new(object((self.schema)()))).with_annotations(
            ToolAnnotations::new().read_only(!self.changes).destructive(self.name == CANCEL),
        )
    }
}

/// Why a platform tool call failed, for the agent to read.
pub struct CallError {
    pub kind: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl CallError {
    fn new(kind: &'static str, message: impl Into<String>) -> CallError {
        CallError { kind, message: message.into(), details: None }
    }
}

impl From<QueueError> for CallError {
    fn from(error: QueueError) -> CallError {
        match error {
            QueueError::NotFound(_) => CallError::new("not_found", error.to_string()),
            QueueError::Conflict(_) => CallError::new("conflict", error.to_string()),
            other => CallError::new("unavailable", other.to_string()),
        }
    }
}

impl From<ServiceError> for CallError {
    fn from(error: ServiceError) -> CallError {
        match error {
            ServiceError::InvalidInput { ref violations, .. } => CallError {
                kind: "invalid_input",
                message: error.to_string(),
                details: Some(json!({"violations": crate::calls::violations_json(violations)})),
            },
            ServiceError::UnknownTask { .. } => CallError::new("unknown_task", error.to_string()),
            ServiceError::Queue(error) => error.into(),
            other => CallError::new("invalid_arguments", other.to_string()),
        }
    }
}

fn arguments<T: for<'de> Deserialize<'de>>(tool: &str, arguments: JsonObject) -> Result<T, CallError> {
    serde_json::from_value(Value::Object(arguments)).map_err(|error| {
        CallError::new("invalid_arguments", format!("{tool}: {error}; tools/list shows its input schema"))
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnqueueArgs {
    task: String,
    #[serde(default)]
    input: Value,
    #[serde(default)]
    priority: i32,
    run_at: Option<String>,
    max_attempts: Option<u32>,
    idempotency_key: Option<String>,
    timeout_secs: Option<f64>,
    concurrency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdArgs {
    id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    task: Option<String>,
    status: Option<String>,
    limit: Option<u64>,
}

/// What a platform tool answers: a JSON object, and the text to show when it is not that
/// object's JSON (a report's Markdown).
pub struct Answer {
    pub data: Value,
    pub text: Option<String>,
}

/// Calls platform tool `name`.
pub async fn call(
    service: &Arc<Service>,
    name: &str,
    args: JsonObject,
    trace: TraceContext,
) -> Result<Answer, CallError> {
    if name == EXPLAIN {
        let report = service.report(&arguments::<IdArgs>(name, args)?.id).await?;
        let text = Some(report.markdown());
        return Ok(Answer { data: serde_json::to_value(&report).unwrap_or_default(), text });
    }
    Ok(Answer { data: call_for_data(service, name, args, trace).await?, text: None })
}

async fn call_for_data(
    service: &Arc<Service>,
    name: &str,
    args: JsonObject,
    trace: TraceContext,
) -> Result<Value, CallError> {
    match name {
        ENQUEUE => enqueue(service, arguments(name, args)?, trace).await,
        GET_JOB => get_job(service, arguments::<IdArgs>(name, args)?.id).await,
        GET_EXECUTION => get_execution(service, arguments::<IdArgs>(name, args)?.id).await,
        LIST_EXECUTIONS => list_executions(service, arguments(name, args)?).await,
        CANCEL => {
            let job = service.cancel(&arguments::<IdArgs>(name, args)?.id).await?;
            Ok(ratchet_views::json(&JobView::from(&job)))
        }
        other => Err(CallError::new("unknown_tool", format!("no platform tool named `{other}`"))),
    }
}

async fn enqueue(service: &Arc<Service>, args: EnqueueArgs, trace: TraceContext) -> Result<Value, CallError> {
    let run_at = args
        .run_at
        .as_deref()
        .map(ratchet_core::time::parse_rfc3339)
        .transpose()
        .map_err(|error| CallError::new("invalid_arguments", format!("run_at: {error}")))?;
    if args.max_attempts == Some(0) {
        return Err(CallError::new("invalid_arguments", "max_attempts must be at least 1"));
    }
    let max = service.config().limits.max_timeout_secs;
    let timeout = args
        .timeout_secs
        .map(|secs| ratchet_service::job_timeout(secs, max))
        .transpose()
        .map_err(|error| CallError::new("invalid_arguments", error))?;
    let options = EnqueueOptions {
        priority: args.priority,
        run_at,
        max_attempts: args.max_attempts,
        idempotency_key: args.idempotency_key,
        timeout,
        trace: Some(trace),
        concurrency_key: args.concurrency_key,
    };
    let enqueued = service.enqueue(&args.task, args.input, options).await?;
    Ok(ratchet_views::json(&JobView::from(&enqueued.job)))
}

async fn get_job(service: &Arc<Service>, id: String) -> Result<Value, CallError> {
    let job = service.job(&id).await?;
    let attempts = service.attempts(&id).await?;
    let detail =
        JobDetail { job: JobView::from(&job), attempts: attempts.into_iter().map(Into::into).collect() };
    let filter = ExecutionFilter { job_id: Some(id.clone()), ..Default::default() };
    let executions = service.executions(&filter, newest(MAX_LISTED)).await?;
    let mut answer = ratchet_views::json(&detail);
    answer["executions"] =
        executions.items.iter().map(|e| ratchet_views::json(&ExecutionSummary::from(e))).collect();
    if let Some(running) = service.running_execution(&id) {
        answer["running_execution"] = json!(running);
    }
    Ok(answer)
}

async fn get_execution(service: &Arc<Service>, id: String) -> Result<Value, CallError> {
    match service.execution(&id).await {
        Ok(record) => {
            let mut detail = ratchet_views::json(&ExecutionDetail::from(record));
            // The HTTP calls are a resource of their own: they can be large.
            if let Some(detail) = detail.as_object_mut() {
                detail.remove("http");
            }
            detail["http_resource"] = json!(format!("ratchet://executions/{id}/har"));
            Ok(detail)
        }
        Err(QueueError::NotFound(_)) if service.is_running(&id) => {
            Ok(json!({"id": id, "status": "running", "hint": "poll again; it is recorded when it ends"}))
        }
        Err(error) => Err(error.into()),
    }
}

async fn list_executions(service: &Arc<Service>, args: ListArgs) -> Result<Value, CallError> {
    let status = args
        .status
        .as_deref()
        .map(|s| {
            RunStatus::parse(s)
                .ok_or_else(|| CallError::new("invalid_arguments", "status is success or failure"))
        })
        .transpose()?;
    let limit = args.limit.unwrap_or(10).clamp(1, MAX_LISTED);
    let filter = ExecutionFilter { task: args.task, status, ..ExecutionFilter::default() };
    let listed = service.executions(&filter, newest(limit)).await?;
    let items: Vec<Value> =
        listed.items.iter().map(|e| ratchet_views::json(&ExecutionSummary::from(e))).collect();
    Ok(json!({"items": items, "total": listed.total}))
}

fn newest(limit: u64) -> Page {
    Page { limit, offset: 0, sort: "started_at", descending: true }
}
