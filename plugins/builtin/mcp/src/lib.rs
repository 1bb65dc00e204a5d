//! Tasks as tools for LLM agents, over the Model Context Protocol (the official SDK, `rmcp`):
//! `ratchet mcp` speaks it on stdio, `ratchet serve` mounts streamable HTTP at `/mcp`.
//!
//! - Each exposed task is a tool: its input schema is the tool's, its output schema the
//!   tool's output schema, a run's output the structured result (and the same JSON as text).
//!   A failed run is a tool error carrying the typed error, so an agent can correct its call.
//! - Platform tools (`ratchet_*`) enqueue, read and cancel jobs and read executions;
//!   resources (`ratchet://executions/{id}/logs`, `.../har`) give a run's logs and HTTP calls.
//! - Who may do what: over HTTP the server's auth check runs first (the same keys as the
//!   APIs); viewers see the read tools, runners also run, enqueue and cancel;
//!   `mcp.read_only` hides every tool that changes anything. Every call is audited.
//! - When the task set changes, clients hear `notifications/tools/list_changed`.

mod calls;
mod catalog;
mod handler;
mod platform;

use std::sync::Arc;

use axum::Router;
use rmcp::ServiceExt as _;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use ratchet_server::routes::{Route, route};
use ratchet_server::{AppState, Role, builtin_info};

pub use handler::RatchetMcp;

/// The path streamable HTTP is served at.
pub const PATH: &str = "/mcp";

/// Every route of this surface: the server authenticates the caller before the SDK sees the
/// request; each tool then checks the caller's role.
pub const ROUTES: &[Route] = &[
    // Requests and notifications.
    route("POST", PATH, Role::Viewer),
    // A legacy session's stream of server notifications.
    route("GET", PATH, Role::Viewer),
    // The end of a legacy session.
    route("DELETE", PATH, Role::Viewer),
];

/// The `Host` names `/mcp` answers when `mcp.allowed_hosts` is empty.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// `/mcp` on `ratchet serve`, mounted like every built-in surface.
pub struct McpSurface {
    /// Cancelled when the server stops: open sessions and streams end with it.
    shutdown: CancellationToken,
}

impl McpSurface {
    pub fn new(shutdown: CancellationToken) -> McpSurface {
        McpSurface { shutdown }
    }
}

impl ratchet_server::ApiSurface for McpSurface {
    fn info(&self) -> ratchet_server::PluginInfo {
        builtin_info("mcp", "Model Context Protocol at /mcp (streamable HTTP): tasks as tools for LLM agents")
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn protected(&self, state: &AppState) -> Router<AppState> {
        let handler = RatchetMcp::new(
            Arc::clone(&state.service),
            Arc::clone(&state.sync_runs),
            state.config.max_sync_runs,
        );
        let service: StreamableHttpService<RatchetMcp, LocalSessionManager> = StreamableHttpService::new(
            move || Ok(handler.clone()),
            Arc::new(LocalSessionManager::default()),
            http_config(state, self.shutdown.child_token()),
        );
        Router::new().route_service(PATH, service)
    }
}

/// DNS-rebinding and cross-origin protection: only the `Host` names `mcp.allowed_hosts` lists
/// (loopback names by default), and only browser origins in `server.cors_origins` (a request
/// from any other origin is answered 403; one without an `Origin` is not a browser's).
fn http_config(state: &AppState, shutdown: CancellationToken) -> StreamableHttpServerConfig {
    let mcp = &state.service.config().mcp;
    let hosts: Vec<String> = if mcp.allowed_hosts.is_empty() {
        LOOPBACK_HOSTS.iter().map(|host| (*host).to_owned()).collect()
    } else {
        mcp.allowed_hosts.clone()
    };
    StreamableHttpServerConfig::default()
        .with_allowed_hosts(hosts)
        .with_allowed_origins(state.config.cors_origins.clone())
        .enforce_origin_validation()
        .with_max_request_body_bytes(state.config.max_body_bytes)
        .with_cancellation_token(shutdown)
}

/// Why `ratchet mcp` stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    #[error("the MCP client did not complete its handshake: {0}")]
    Handshake(String),
    #[error("the MCP session failed: {0}")]
    Session(String),
}

/// Serves `handler` on stdin and stdout until the client closes them or `stop` is cancelled.
/// Nothing but protocol messages is written to stdout: logs go to stderr.
pub async fn serve_stdio(handler: RatchetMcp, stop: CancellationToken) -> Result<(), StdioError> {
    let running = handler
        .serve_with_ct(rmcp::transport::stdio(), stop)
        .await
        .map_err(|error| StdioError::Handshake(error.to_string()))?;
    running.waiting().await.map_err(|error| StdioError::Session(error.to_string()))?;
    Ok(())
}
