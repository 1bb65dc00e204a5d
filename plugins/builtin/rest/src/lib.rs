//! The built-in REST surface under `/api/v1`, mounted by the server like any API surface: tasks, jobs, executions, schedules, nodes, workers and
//! plugins, over the same service layer as the CLI.

mod executions;
mod jobs;
mod live;
mod logs;
pub mod openapi;
mod queue;
mod schedules;
mod secrets;
mod system;
mod tasks;

use axum::Router;
use axum::routing::{get, post, put};

use ratchet_server::AppState;
use ratchet_server::error::ApiError;
use ratchet_server::model::PageQuery;
use ratchet_storage::Page;

pub use executions::*;
pub use jobs::*;
pub use live::*;
pub use logs::*;
pub use queue::*;
pub use schedules::*;
pub use secrets::*;
pub use system::*;
pub use tasks::*;

use ratchet_server::Role::{Admin, Runner, Viewer};
use ratchet_server::routes::{Route, public, route};

/// Every route of this surface and the role it needs; the server checks them before routing,
/// and the OpenAPI document carries them.
pub const ROUTES: &[Route] = &[
    // The documentation: Swagger UI and the OpenAPI document.
    public("GET", "/docs"),
    public("GET", "/docs/"),
    public("GET", "/docs/{*rest}"),
    public("GET", "/api/v1/openapi.json"),
    route("GET", "/api/v1/tasks", Viewer),
    route("GET", "/api/v1/tasks/{name}", Viewer),
    route("GET", "/api/v1/tasks/{name}/versions", Viewer),
    route("POST", "/api/v1/tasks/{name}/validate", Runner),
    route("POST", "/api/v1/tasks/{name}/run", Runner),
    route("GET", "/api/v1/jobs", Viewer),
    route("POST", "/api/v1/jobs", Runner),
    route("GET", "/api/v1/jobs/{id}", Viewer),
    route("POST", "/api/v1/jobs/{id}/cancel", Runner),
    route("POST", "/api/v1/jobs/{id}/retry", Runner),
    route("GET", "/api/v1/executions", Viewer),
    route("GET", "/api/v1/executions/{id}", Viewer),
    route("GET", "/api/v1/executions/{id}/report", Viewer),
    route("POST", "/api/v1/executions/{id}/replay", Runner),
    route("GET", "/api/v1/logs", Viewer),
    route("GET", "/api/v1/logs/trends", Viewer),
    route("GET", "/api/v1/logs/live", Viewer),
    route("GET", "/api/v1/events", Viewer),
    route("POST", "/api/v1/jobs/batch", Runner),
    route("GET", "/api/v1/queue", Viewer),
    route("POST", "/api/v1/queue/pause", Admin),
    route("POST", "/api/v1/queue/resume", Admin),
    route("GET", "/api/v1/secrets", Admin),
    route("PUT", "/api/v1/secrets/{name}", Admin),
    route("DELETE", "/api/v1/secrets/{name}", Admin),
    route("GET", "/api/v1/schedules", Viewer),
    route("POST", "/api/v1/schedules", Admin),
    route("GET", "/api/v1/schedules/{id}", Viewer),
    route("PATCH", "/api/v1/schedules/{id}", Admin),
    route("DELETE", "/api/v1/schedules/{id}", Admin),
    route("POST", "/api/v1/schedules/{id}/pause", Admin),
    route("POST", "/api/v1/schedules/{id}/resume", Admin),
    route("GET", "/api/v1/schedules/{id}/next", Viewer),
    route("GET", "/api/v1/cron/next", Viewer),
    route("GET", "/api/v1/nodes", Viewer),
    route("GET", "/api/v1/workers", Viewer),
    route("GET", "/api/v1/plugins", Viewer),
    route("GET", "/api/v1/me", Viewer),
];

/// Every REST route; the roles they need are in [`ROUTES`].
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(who_am_i))
        .route("/api/v1/cron/next", get(preview_cron))
        .route("/api/v1/tasks", get(list_tasks))
        .route("/api/v1/tasks/{name}", get(get_task))
        .route("/api/v1/tasks/{name}/versions", get(task_versions))
        .route("/api/v1/tasks/{name}/validate", post(validate_task))
        .route("/api/v1/tasks/{name}/run", post(run_task))
        .route("/api/v1/jobs", get(list_jobs).post(enqueue_job))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/api/v1/jobs/{id}/retry", post(retry_job))
        .route("/api/v1/executions", get(list_executions))
        .route("/api/v1/executions/{id}", get(get_execution))
        .route("/api/v1/executions/{id}/report", get(execution_report))
        .route("/api/v1/executions/{id}/replay", post(replay_execution))
        .route("/api/v1/logs", get(search_logs))
        .route("/api/v1/logs/trends", get(failure_trends))
        .route("/api/v1/logs/live", get(follow_logs))
        .route("/api/v1/events", get(follow_jobs))
        .route("/api/v1/jobs/batch", post(enqueue_batch))
        .route("/api/v1/queue", get(queue_state))
        .route("/api/v1/queue/pause", post(pause_queue))
        .route("/api/v1/queue/resume", post(resume_queue))
        .route("/api/v1/secrets", get(list_secrets))
        .route("/api/v1/secrets/{name}", put(set_secret).delete(remove_secret))
        .route("/api/v1/schedules", get(list_schedules).post(add_schedule))
        .route("/api/v1/schedules/{id}", get(get_schedule).patch(update_schedule).delete(remove_schedule))
        .route("/api/v1/schedules/{id}/pause", post(pause_schedule))
        .route("/api/v1/schedules/{id}/resume", post(resume_schedule))
        .route("/api/v1/schedules/{id}/next", get(next_fire_times))
        .route("/api/v1/nodes", get(list_nodes))
        .route("/api/v1/workers", get(list_workers))
        .route("/api/v1/plugins", get(list_plugins))
}

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;
pub const MAX_OFFSET: u64 = 1_000_000_000;

/// The page `query` asks for, ordered by `sort`; `sortable` lists the fields it may sort by,
/// the first being the default (descending: newest first).
pub fn page(query: &PageQuery, sort: Option<&str>, sortable: &[&'static str]) -> Result<Page, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LIMIT}, not {limit}")));
    }
    let (sort, descending) = match sort {
        None => (sortable[0], true),
        Some(text) => {
            let (field, descending) = match text.strip_prefix('-') {
                Some(field) => (field, true),
                None => (text, false),
            };
            let Some(&column) = sortable.iter().find(|&&c| c == field) else {
                return Err(ApiError::bad_request(format!(
                    "cannot sort by `{field}`; sort by one of {} (prefix `-` for descending)",
                    sortable.join(", ")
                )));
            };
            (column, descending)
        }
    };
    let offset = query.offset.unwrap_or(0);
    if offset > MAX_OFFSET {
        return Err(ApiError::bad_request(format!("offset must be at most {MAX_OFFSET}, not {offset}")));
    }
    Ok(Page { limit, offset, sort, descending })
}

/// The slice of an in-memory list `page` asks for.
pub fn slice<T>(items: Vec<T>, page: &Page) -> Vec<T> {
    items.into_iter().skip(page.offset.min(usize::MAX as u64) as usize).take(page.limit as usize).collect()
}

/// The REST surface, with its OpenAPI document and the Swagger UI at `/docs` (served from
/// the binary: no CDN, no download).
pub struct RestSurface;

impl ratchet_server::ApiSurface for RestSurface {
    fn info(&self) -> ratchet_server::PluginInfo {
        ratchet_server::builtin_info(
            "rest",
            "REST API under /api/v1, OpenAPI document and Swagger UI at /docs",
        )
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn protected(&self, _state: &AppState) -> Router<AppState> {
        router()
    }

    fn public(&self, _state: &AppState) -> Router<AppState> {
        use utoipa_swagger_ui::{Config, SwaggerUi};
        let ui = SwaggerUi::new("/docs")
            .url("/api/v1/openapi.json", crate::openapi::document())
            // No badge from validator.swagger.io: the page reaches nothing but this server.
            .config(Config::from("/api/v1/openapi.json").validator_url("none").try_it_out_enabled(true));
        Router::from(ui)
    }
}
