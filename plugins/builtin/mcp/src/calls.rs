//! Calling a task's tool: check the input, run it now (as REST's synchronous run does), and
//! wait up to `mcp.call_wait_secs`, reporting progress when the client asked for it. A run
//! still going then is answered with its execution id to poll; a cancelled call stops it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::RoleServer;
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RequestContext};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use ratchet_core::task::SchemaViolation;
use ratchet_core::trace::TraceContext;
use ratchet_service::{RunOptions, Service, ServiceError, Unrecorded};
use ratchet_storage::ExecutionRecord;

use crate::catalog::TaskTool;

/// How often a waiting call reports progress when the task logs nothing.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What a task call came to, for the answer and the audit.
pub struct Called {
    pub result: CallToolResult,
    pub execution_id: Option<String>,
    /// The job a call queued, cancelled or read.
    pub job_id: Option<String>,
    /// `ok`, `error` (the run or the call failed), `running` (handed off to poll), `cancelled`.
    pub outcome: &'static str,
}

/// What a waiting call needs from the node.
pub struct Runner<'a> {
    pub service: &'a Arc<Service>,
    pub sync_runs: &'a Arc<Semaphore>,
    pub max_sync_runs: usize,
    pub wait: Duration,
    /// Stored with the run's record: who called which tool with what (as a digest).
    pub caused_by: Value,
    /// The trace the run belongs to.
    pub trace: TraceContext,
}

impl Runner<'_> {
    pub async fn call(
        &self,
        tool: &TaskTool,
        mut args: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Called {
        let input =
            if tool.wrapped { args.remove("input").unwrap_or(Value::Null) } else { Value::Object(args) };
        let (task, input) = match self.service.check_input(tool.task.name(), input).await {
            Ok(checked) => checked,
            Err(error) => return refused(&error),
        };
        let Ok(permit) = Arc::clone(self.sync_runs).try_acquire_owned() else {
            return failed(
                None,
                json!({"kind": "busy", "message": format!(
                    "{} runs are in progress (server.max_sync_runs); retry shortly, or queue it with ratchet_enqueue_job",
                    self.max_sync_runs
                )}),
            );
        };
        let stop = CancellationToken::new();
        let options = RunOptions {
            cancel: Some(stop.clone()),
            caused_by: Some(self.caused_by.clone()),
            trace: Some(self.trace.clone()),
        };
        let (id, done) = self.service.run_now_with(task, input, permit, options);
        let progress =
            context.meta.get_progress_token().map(|token| Progress::new(token, context.peer.clone()));
        let waited = tokio::select! {
            ended = self.wait_reporting(&id, done, progress) => ended,
            () = context.ct.cancelled() => {
                stop.cancel();
                Waited::Cancelled
            }
        };
        match waited {
            Waited::Ended(ended) => match *ended {
                Ok(Ok(record)) => finished(tool, record, None),
                Ok(Err(Unrecorded { record, error })) => finished(tool, record, Some(error)),
                Err(_) => failed(
                    Some(&id),
                    json!({"kind": "internal", "message": format!("run {id} ended without a result; see the server log")}),
                ),
            },
            // A tool error, though nothing failed: the tool's output schema describes a result
            // this call does not have yet, and clients check a successful result against it.
            Waited::Running => Called {
                result: text_result(
                    &json!({
                        "execution_id": id,
                        "status": "running",
                        "error": {
                            "kind": "still_running",
                            "message": format!(
                                "the run is still going after {} s (mcp.call_wait_secs); poll ratchet_get_execution \
                                 with execution_id {id} for its output",
                                self.wait.as_secs_f64()
                            ),
                        },
                    }),
                    true,
                ),
                execution_id: Some(id),
                job_id: None,
                outcome: "running",
            },
            Waited::Cancelled => {
                tracing::info!(execution = %id, "the MCP client cancelled its call; the run was stopped");
                Called {
                    result: text_result(&json!({"execution_id": id, "status": "cancelled"}), true),
                    execution_id: Some(id),
                    job_id: None,
                    outcome: "cancelled",
                }
            }
        }
    }

    /// Waits for the run's record up to the call's wait, sending progress: each log line the
    /// run writes, and a tick every [`PROGRESS_EVERY`] without one.
    async fn wait_reporting(
        &self,
        id: &str,
        mut done: tokio::sync::oneshot::Receiver<Result<ExecutionRecord, Unrecorded>>,
        mut progress: Option<Progress>,
    ) -> Waited {
        let deadline = tokio::time::sleep(self.wait);
        tokio::pin!(deadline);
        let mut lines = progress.as_ref().map(|_| self.service.follow_logs());
        let started = Instant::now();
        loop {
            let line = async {
                match lines.as_mut() {
                    Some(lines) => lines.recv().await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                ended = &mut done => return Waited::Ended(Box::new(ended)),
                () = &mut deadline => return Waited::Running,
                line = line => {
                    if let (Some(progress), Some(line)) = (progress.as_mut(), line)
                        && *line.execution_id == *id
                    {
                        progress.send(line.message.clone()).await;
                    }
                }
                () = tokio::time::sleep(PROGRESS_EVERY), if progress.is_some() => {
                    if let Some(progress) = progress.as_mut() {
                        progress.send(format!("running for {} s", started.elapsed().as_secs())).await;
                    }
                }
            }
        }
    }
}

enum Waited {
    Ended(Box<Result<Result<ExecutionRecord, Unrecorded>, tokio::sync::oneshot::error::RecvError>>),
    Running,
    Cancelled,
}

/// Progress notifications of one call: each with a larger count.
struct Progress {
    token: ProgressToken,
    peer: Peer<RoleServer>,
    sent: u32,
}

impl Progress {
    fn new(token: ProgressToken, peer: Peer<RoleServer>) -> Progress {
        Progress { token, peer, sent: 0 }
    }

    async fn send(&mut self, message: String) {
        self.sent += 1;
        let note =
            ProgressNotificationParam::new(self.token.clone(), f64::from(self.sent)).with_message(message);
        // A client that went away learns nothing; the run goes on.
        let _ = self.peer.notify_progress(note).await;
    }
}

/// A run's answer: its output as structured content (and as text), or its typed error.
fn finished(tool: &TaskTool, record: ExecutionRecord, unrecorded: Option<String>) -> Called {
    let id = record.id.clone();
    match (record.output, record.error) {
        (Some(output), None) => {
            let mut result = text_result(&output, false);
            if tool.structured && output.is_object() {
                result.structured_content = Some(output);
            }
            if let Some(error) = unrecorded {
                tracing::warn!(execution = %id, "answered a run the database did not record: {error}");
            }
            Called { result, execution_id: Some(id), job_id: None, outcome: "ok" }
        }
        (_, error) => {
            let error = error
                .unwrap_or_else(|| json!({"kind": "internal", "message": "the run ended without output"}));
            failed(Some(&id), error)
        }
    }
}

/// A call refused before anything ran: an unknown task, or input its schema refuses.
fn refused(error: &ServiceError) -> Called {
    let error = match error {
        ServiceError::InvalidInput { violations, .. } => json!({
            "kind": "invalid_input",
            "name": "ValidationError",
            "message": error.to_string(),
            "violations": violations_json(violations),
        }),
        ServiceError::UnknownTask { .. } => json!({"kind": "unknown_task", "message": error.to_string()}),
        other => json!({"kind": "unavailable", "message": other.to_string()}),
    };
    failed(None, error)
}

fn failed(execution_id: Option<&str>, error: Value) -> Called {
    let mut body = json!({"error": error});
    if let Some(id) = execution_id {
        body["execution_id"] = json!(id);
    }
    Called {
        result: text_result(&body, true),
        execution_id: execution_id.map(str::to_owned),
        job_id: None,
        outcome: "error",
    }
}

/// `value` as the JSON text clients of every protocol version read (and, for errors, as the
/// tool error an agent corrects its call from).
pub fn text_result(value: &Value, is_error: bool) -> CallToolResult {
    let text = serde_json::to_string(value).unwrap_or_default();
    if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    }
}

pub fn violations_json(violations: &[SchemaViolation]) -> Value {
    violations.iter().map(|v| json!({"pointer": v.pointer, "rule": v.rule, "message": v.message})).collect()
}
