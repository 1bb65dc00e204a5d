//! The MCP server: tools from the task registry at run time (no macros), the platform's tools,
//! execution resources, who may call what, the audit of every call, and the notice to clients
//! when the task set changes.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Extensions, Implementation, ListResourceTemplatesResult,
    ListToolsResult, PaginatedRequestParams, ReadResourceRequestParams, ReadResourceResponse,
    ReadResourceResult, ResourceContents, ResourceTemplate, ServerCapabilities, ServerConfig,
    SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, Peer, RequestContext, SubscriptionContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use ratchet_core::trace::{TRACEPARENT, TraceContext};
use ratchet_server::{Caller, Role};
use ratchet_service::Service;
use ratchet_storage::QueueError;

use crate::calls::{Called, Runner, text_result};
use crate::catalog::{Catalog, Exposure};
use crate::platform::{self, PlatformTool};

/// The server, shared by every session of a transport.
#[derive(Clone)]
pub struct RatchetMcp {
    inner: Arc<Inner>,
}

struct Inner {
    service: Arc<Service>,
    sync_runs: Arc<Semaphore>,
    max_sync_runs: usize,
    exposure: Exposure,
    read_only: bool,
    call_wait: Duration,
    /// The tools of the registry last listed.
    catalog: Mutex<Option<Arc<Catalog>>>,
    /// Sessions of protocol versions before 2026-07-28, told when the tools change.
    sessions: Mutex<Vec<Peer<RoleServer>>>,
}

/// What a tool name is.
enum Target {
    Task(Arc<Catalog>, String),
    Platform(&'static PlatformTool),
}

impl RatchetMcp {
    /// A server over `service`; `sync_runs` bounds the runs in progress at once (shared with
    /// the other surfaces of the node).
    pub fn new(service: Arc<Service>, sync_runs: Arc<Semaphore>, max_sync_runs: usize) -> RatchetMcp {
        let config = &service.config().mcp;
        let inner = Arc::new(Inner {
            exposure: Exposure::new(config),
            read_only: config.read_only,
            call_wait: ratchet_server::seconds(config.call_wait_secs),
            service,
            sync_runs,
            max_sync_runs,
            catalog: Mutex::new(None),
            sessions: Mutex::new(Vec::new()),
        });
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(tell_sessions_of_changes(Arc::downgrade(&inner), inner.service.watch_registry()));
        }
        RatchetMcp { inner }
    }

    /// The tools of the registry the node serves now (built once per registry).
    fn catalog(&self) -> Arc<Catalog> {
        let registry = self.inner.service.registry();
        let mut cached = self.inner.catalog.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match cached.as_ref() {
            Some(catalog) if Arc::ptr_eq(&catalog.registry, &registry) => Arc::clone(catalog),
            _ => {
                let catalog = Arc::new(Catalog::build(registry, &self.inner.exposure));
                *cached = Some(Arc::clone(&catalog));
                catalog
            }
        }
    }

    /// Whether `caller` sees the tool: the role it needs, and nothing that changes anything
    /// under `mcp.read_only`.
    fn may_use(&self, caller: &Caller, needs: Role, changes: bool) -> bool {
        caller.may(needs) && !(changes && self.inner.read_only)
    }

    fn tools_for(&self, caller: &Caller) -> Vec<Tool> {
        let mut tools = Vec::new();
        if self.may_use(caller, Role::Runner, true) {
            tools.extend(self.catalog().tools.iter().cloned());
        }
        tools.extend(
            platform::TOOLS
                .iter()
                .filter(|tool| self.may_use(caller, tool.needs, tool.changes))
                .map(PlatformTool::tool),
        );
        tools
    }

    fn target(&self, name: &str) -> Option<Target> {
        if let Some(tool) = platform::find(name) {
            return Some(Target::Platform(tool));
        }
        let catalog = self.catalog();
        catalog.by_name.contains_key(name).then(|| Target::Task(catalog, name.to_owned()))
    }

    async fn call(
        &self,
        params: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        call: &CallId,
    ) -> Result<Called, McpError> {
        let name = params.name.as_ref();
        let args = params.arguments.unwrap_or_default();
        let caller = &call.caller;
        let Some(target) = self.target(name) else {
            return Err(McpError::invalid_params(
                format!("no tool named `{name}`; tools/list shows the tools you may call"),
                None,
            ));
        };
        let (needs, changes) = match &target {
            Target::Task(..) => (Role::Runner, true),
            Target::Platform(tool) => (tool.needs, tool.changes),
        };
        if changes && self.inner.read_only {
            return Ok(refusal(
                "read_only",
                format!("`{name}` changes something, and this server is read-only (mcp.read_only)"),
            ));
        }
        if !caller.may(needs) {
            let held = caller.role.map_or("no role", Role::as_str);
            return Ok(refusal(
                "forbidden",
                format!(
                    "`{name}` needs the {} role; the key of `{}` holds {held}",
                    needs.as_str(),
                    caller.id
                ),
            ));
        }
        if let Target::Platform(tool) = &target
            && tool.name == platform::ENQUEUE
            && let Some(task) =
                args.get("task").and_then(Value::as_str).and_then(|t| self.inner.service.task(t))
            && !self.inner.exposure.allows(&task)
        {
            return Ok(refusal(
                "not_exposed",
                format!("task `{}` is not offered to agents (mcp.tools, mcp.tags)", task.name()),
            ));
        }
        Ok(match target {
            Target::Task(catalog, name) => {
                let Some(tool) = catalog.by_name.get(&name) else {
                    return Err(McpError::internal_error("the tool vanished from its catalog", None));
                };
                let runner = Runner {
                    service: &self.inner.service,
                    sync_runs: &self.inner.sync_runs,
                    max_sync_runs: self.inner.max_sync_runs,
                    wait: self.inner.call_wait,
                    caused_by: json!({
                        "surface": "mcp",
                        "principal": caller.id,
                        "role": caller.role.map(Role::as_str),
                        "tool": name,
                        "arguments_sha256": call.digest,
                    }),
                    trace: trace(context),
                };
                runner.call(tool, args, context).await
            }
            Target::Platform(tool) => {
                match platform::call(&self.inner.service, tool.name, args, trace(context)).await {
                    Ok(platform::Answer { data, text }) => {
                        let id = data.get("id").and_then(Value::as_str).map(str::to_owned);
                        let (execution_id, job_id) = match tool.name {
                            platform::GET_EXECUTION => (id, None),
                            platform::ENQUEUE | platform::CANCEL | platform::GET_JOB => (None, id),
                            _ => (None, None),
                        };
                        let mut result =
                            match text {
                                Some(text) => rmcp::model::CallToolResult::success(vec![
                                    rmcp::model::ContentBlock::text(text),
                                ]),
                                None => text_result(&data, false),
                            };
                        result.structured_content = Some(data);
                        Called { result, execution_id, job_id, outcome: "ok" }
                    }
                    Err(error) => {
                        let mut body = json!({"kind": error.kind, "message": error.message});
                        if let Some(details) = error.details {
                            body["details"] = details;
                        }
                        Called {
                            result: text_result(&json!({"error": body}), true),
                            execution_id: None,
                            job_id: None,
                            outcome: "error",
                        }
                    }
                }
            }
        })
    }

    /// Who called what with which arguments (as a digest), how it ended and how long it took:
    /// an `mcp.tool_called` event to the sinks (with the execution or job it caused or read),
    /// and a line in the log.
    fn audit(
        &self,
        call: &CallId,
        outcome: &str,
        execution: Option<&str>,
        job: Option<&str>,
        took: Duration,
    ) {
        let CallId { caller, tool, digest } = call;
        let duration_ms = took.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "ratchet::audit",
            principal = %caller.id,
            tool = %tool,
            arguments_sha256 = %digest,
            outcome,
            execution = execution.unwrap_or(""),
            job = job.unwrap_or(""),
            duration_ms,
            "mcp tool call"
        );
        self.inner.service.publish("mcp.tool_called", None, execution, || {
            json!({
                "principal": caller.id,
                "role": caller.role.map(Role::as_str),
                "tool": tool,
                "arguments_sha256": digest,
                "outcome": outcome,
                "job_id": job,
                "duration_ms": duration_ms,
            })
        });
    }

    async fn read(
        &self,
        uri: &str,
        context: &RequestContext<RoleServer>,
    ) -> Result<ReadResourceResult, McpError> {
        if !caller(&context.extensions).may(Role::Viewer) {
            return Err(McpError::invalid_request("reading executions needs the viewer role", None));
        }
        let Some((id, part)) = parse_resource(uri) else {
            return Err(McpError::resource_not_found(
                format!("`{uri}` is not a Ratchet resource; resources/templates/list shows the forms"),
                None,
            ));
        };
        let record = match self.inner.service.execution(id).await {
            Ok(record) => record,
            Err(QueueError::NotFound(_)) => {
                let why =
                    if self.inner.service.is_running(id) { "is still running" } else { "does not exist" };
                return Err(McpError::resource_not_found(format!("execution {id} {why}"), None));
            }
            Err(error) => return Err(McpError::internal_error(error.to_string(), None)),
        };
        let (text, mime) = match part {
            Part::Logs => (logs_text(&record.logs), "text/plain"),
            Part::Har => (serde_json::to_string_pretty(&record.http).unwrap_or_default(), "application/json"),
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri).with_mime_type(mime)]))
    }
}

/// Who calls which tool with what (the SHA-256 of the arguments, never their values).
struct CallId {
    caller: Caller,
    tool: String,
    digest: String,
}

/// A refusal the agent reads (a tool error, not a protocol error, so it is shown).
fn refusal(kind: &str, message: String) -> Called {
    Called {
        result: text_result(&json!({"error": {"kind": kind, "message": message}}), true),
        execution_id: None,
        job_id: None,
        outcome: "refused",
    }
}

/// Who is calling: the caller the server's auth check put on the HTTP request; over stdio,
/// the local user who started `ratchet mcp` (an admin, as on the CLI).
fn caller(extensions: &Extensions) -> Caller {
    match extensions.get::<axum::http::request::Parts>() {
        Some(parts) => parts
            .extensions
            .get::<Caller>()
            .cloned()
            .unwrap_or(Caller { id: "unauthenticated".into(), role: None }),
        None => Caller { id: "local".into(), role: Some(Role::Admin) },
    }
}

/// The trace of a call: the HTTP request's (its `traceparent` header), else the call's
/// `_meta.traceparent` (how MCP clients pass a trace over stdio), else a new one.
fn trace(context: &RequestContext<RoleServer>) -> TraceContext {
    let from_http = context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<TraceContext>().cloned());
    from_http
        .or_else(|| context.meta.get(TRACEPARENT).and_then(Value::as_str).and_then(TraceContext::parse))
        .unwrap_or_else(TraceContext::root)
}

fn digest(arguments: Option<&rmcp::model::JsonObject>) -> String {
    let text = arguments.map(|a| serde_json::to_string(a).unwrap_or_default()).unwrap_or_default();
    Sha256::digest(text.as_bytes()).iter().map(|byte| format!("{byte:02x}")).collect()
}

enum Part {
    Logs,
    Har,
}

/// `ratchet://executions/{id}/logs` or `.../har`.
fn parse_resource(uri: &str) -> Option<(&str, Part)> {
    let rest = uri.strip_prefix("ratchet://executions/")?;
    let (id, part) = rest.split_once('/')?;
    let part = match part {
        "logs" => Part::Logs,
        "har" => Part::Har,
        _ => return None,
    };
    (!id.is_empty()).then_some((id, part))
}

/// A run's log as text: one `LEVEL message` line per entry.
fn logs_text(logs: &Value) -> String {
    let mut text = String::new();
    for line in logs.as_array().into_iter().flatten() {
        let level = line.get("level").and_then(Value::as_str).unwrap_or("log");
        let message = line.get("message").and_then(Value::as_str).unwrap_or_default();
        text.push_str(&format!("{level} {message}\n"));
    }
    text
}

/// Tells every open session of an older protocol version that the tools changed, whenever
/// the node swaps its registry; stops with the server.
async fn tell_sessions_of_changes(
    inner: Weak<Inner>,
    mut registry: tokio::sync::watch::Receiver<Arc<ratchet_service::TaskRegistry>>,
) {
    while registry.changed().await.is_ok() {
        let Some(inner) = inner.upgrade() else { return };
        let sessions: Vec<Peer<RoleServer>> = {
            let mut sessions = inner.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sessions.retain(|peer| !peer.is_transport_closed());
            sessions.clone()
        };
        for peer in sessions {
            let _ = peer.notify_tool_list_changed().await;
        }
    }
}

impl ServerHandler for RatchetMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder().enable_tools().enable_tool_list_changed().enable_resources().build(),
        )
        .with_server_info(Implementation::new("ratchet", env!("CARGO_PKG_VERSION")))
        .with_instructions(
            "Each task tool runs a Ratchet task with the input its schema describes. A failed run is a tool error \
             carrying its typed error (kind, message, schema violations): correct the input and call again. A run \
             still going after the wait answers its execution_id: poll ratchet_get_execution.",
        )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools_for(&caller(&context.extensions))))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let started = Instant::now();
        let call = CallId {
            caller: caller(&context.extensions),
            tool: request.name.to_string(),
            digest: digest(request.arguments.as_ref()),
        };
        let called = self.call(request, &context, &call).await;
        match &called {
            Ok(called) => self.audit(
                &call,
                called.outcome,
                called.execution_id.as_deref(),
                called.job_id.as_deref(),
                started.elapsed(),
            ),
            Err(_) => self.audit(&call, "invalid", None, None, started.elapsed()),
        }
        called.map(|called| CallToolResponse::from(called.result))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            ResourceTemplate::new("ratchet://executions/{id}/logs", "execution-logs")
                .with_description("The log lines a run wrote, one per line")
                .with_mime_type("text/plain"),
            ResourceTemplate::new("ratchet://executions/{id}/har", "execution-har")
                .with_description("The HTTP calls a run made, as a HAR 1.2 document (secrets masked)")
                .with_mime_type("application/json"),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.read(&request.uri, &context).await.map(ReadResourceResponse::from)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut sessions = self.inner.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        sessions.retain(|peer| !peer.is_transport_closed());
        sessions.push(context.peer);
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    /// Sessions of protocol version 2026-07-28 listen for changes on a stream of their own.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut registry = self.inner.service.watch_registry();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                changed = registry.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if context.sink().notify_tool_list_changed().await.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_name_an_execution_and_a_part() {
        assert!(matches!(parse_resource("ratchet://executions/abc/logs"), Some(("abc", Part::Logs))));
        assert!(matches!(parse_resource("ratchet://executions/abc/har"), Some(("abc", Part::Har))));
        assert!(parse_resource("ratchet://executions//logs").is_none());
        assert!(parse_resource("ratchet://executions/abc/input").is_none());
        assert!(parse_resource("file:///etc/passwd").is_none());
    }

    #[test]
    fn logs_read_as_lines() {
        let logs = json!([{"level": "info", "message": "one"}, {"level": "error", "message": "two"}]);
        assert_eq!(logs_text(&logs), "info one\nerror two\n");
    }

    #[test]
    fn the_digest_names_the_arguments_not_their_values() {
        let a = digest(Some(&crate::catalog::object(json!({"token": "secret"}))));
        assert_eq!(a.len(), 64);
        assert!(!a.contains("secret"));
        assert_ne!(a, digest(None));
    }
}
