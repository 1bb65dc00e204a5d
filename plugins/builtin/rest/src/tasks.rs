//! `/api/v1/tasks`: list, describe, validate and run tasks synchronously.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{page, slice};
use ratchet_core::execution::ValidateError;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::{
    ExecutionDetail, PageQuery, RunAccepted, RunRequest, TaskDetail, TaskList, TaskVersions, TaskView,
    ValidateRequest, ValidateResponse, Violation,
};
use ratchet_server::{AppState, JsonObject, Trace};
use ratchet_service::RunOptions;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskFilter {
    /// Only tasks carrying this tag.
    pub tag: Option<String>,
    /// Only tasks whose name, label or description contains this text (any case).
    pub q: Option<String>,
    /// name (default, ascending) or version; `-` first for descending.
    #[param(pattern = "^-?(name|version)$")]
    pub sort: Option<String>,
}

/// List the loaded tasks.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", params(PageQuery, TaskFilter),
    responses((status = 200, body = TaskList), (status = "4XX", body = ErrorBody)))]
pub async fn list_tasks(
    State(state): State<AppState>,
    paging: Result<Query<PageQuery>, QueryRejection>,
    filter: Result<Query<TaskFilter>, QueryRejection>,
) -> Result<Json<TaskList>, ApiError> {
    let (Query(paging), Query(filter)) = (paging?, filter?);
    let page = page(&paging, filter.sort.as_deref(), &["name", "version"])?;
    let needle = filter.q.as_deref().map(str::to_lowercase);
    let mut tasks: Vec<TaskView> = state
        .service
        .tasks()
        .into_iter()
        .map(|entry| TaskView::new(&entry.task, &entry.source, entry.load_error.as_deref()))
        .filter(|task| filter.tag.as_ref().is_none_or(|tag| task.tags.contains(tag)))
        .filter(|task| {
            needle.as_ref().is_none_or(|needle| {
                [Some(&task.name), task.label.as_ref(), task.description.as_ref()]
                    .into_iter()
                    .flatten()
                    .any(|text| text.to_lowercase().contains(needle))
            })
        })
        .collect();
    // Names read best A to Z: the default order of tasks is ascending.
    let descending = filter.sort.is_some() && page.descending;
    tasks.sort_by(|a, b| match page.sort {
        "version" => a.version.cmp(&b.version).then_with(|| a.name.cmp(&b.name)),
        _ => a.name.cmp(&b.name),
    });
    if descending {
        tasks.reverse();
    }
    let total = tasks.len() as u64;
    Ok(Json(TaskList::new(slice(tasks, &page), total, page.limit, page.offset)))
}

/// A task with its schemas and every version seen.
#[utoipa::path(get, path = "/api/v1/tasks/{name}", tag = "tasks",
    params(("name" = String, Path, description = "A task name or uuid")),
    responses((status = 200, body = TaskDetail), (status = "4XX", body = ErrorBody)))]
pub async fn get_task(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TaskDetail>, ApiError> {
    let entry = state.service.task_entry(&name).ok_or_else(|| unknown_task(&name))?;
    let versions = state.service.task_versions(entry.task.name()).await?;
    Ok(Json(TaskDetail {
        task: TaskView::new(&entry.task, &entry.source, entry.load_error.as_deref()),
        versions: versions.into_iter().map(Into::into).collect(),
    }))
}

/// Every version of a task this database has seen, newest first, and the one this node serves.
#[utoipa::path(get, path = "/api/v1/tasks/{name}/versions", tag = "tasks",
    params(("name" = String, Path, description = "A task name or uuid")),
    responses((status = 200, body = TaskVersions), (status = "4XX", body = ErrorBody)))]
pub async fn task_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<TaskVersions>, ApiError> {
    let task = find(&state, &name)?;
    let versions = state.service.task_versions(task.name()).await?;
    Ok(Json(TaskVersions {
        task: task.name().to_owned(),
        serving: task.digest.clone(),
        items: versions.into_iter().map(Into::into).collect(),
    }))
}

/// Check a task's script in a worker and, when given, an input against its schema.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/validate", tag = "tasks",
    params(("name" = String, Path, description = "A task name or uuid")), request_body = ValidateRequest,
    responses((status = 200, body = ValidateResponse), (status = "4XX", body = ErrorBody)))]
pub async fn validate_task(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonObject(request): JsonObject<ValidateRequest>,
) -> Result<Json<ValidateResponse>, ApiError> {
    let task = find(&state, &name)?;
    let script_error = match state.service.validate_task(&task).await {
        Ok(()) => None,
        Err(ValidateError::Task(error)) => Some(error.to_string()),
        Err(error) => return Err(ApiError::unavailable(format!("no worker could check the task: {error}"))),
    };
    let violations = match request.input {
        Some(input) => task.input_schema.check(input).await.1,
        None => Vec::new(),
    };
    let violations: Vec<Violation> = violations
        .into_iter()
        .map(|v| Violation { pointer: v.pointer, rule: v.rule, message: v.message })
        .collect();
    Ok(Json(ValidateResponse {
        valid: script_error.is_none() && violations.is_empty(),
        script_error,
        violations,
    }))
}

/// Run a task now and wait for its result (at most `wait_secs`, capped by the server).
///
/// The run is recorded like every other. A run that fails is still answered 200, with
/// `status: failure` and its typed error; a run still going when the wait ends is answered
/// 202 with its execution id.
#[utoipa::path(post, path = "/api/v1/tasks/{name}/run", tag = "tasks",
    params(("name" = String, Path, description = "A task name or uuid")), request_body = RunRequest,
    responses((status = 200, body = ExecutionDetail), (status = 202, body = RunAccepted),
        (status = "4XX", body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn run_task(
    State(state): State<AppState>,
    Trace(trace): Trace,
    Path(name): Path<String>,
    JsonObject(request): JsonObject<RunRequest>,
) -> Result<Response, ApiError> {
    let (task, input) = state.service.check_input(&name, request.input).await?;
    let cap = state.config.run_wait_secs;
    let wait = request.wait_secs.unwrap_or(cap);
    if !wait.is_finite() || wait < 0.0 {
        return Err(ApiError::bad_request(format!("wait_secs must be a number of seconds >= 0, not {wait}")));
    }
    let permit = state.sync_runs.clone().try_acquire_owned().map_err(|_| {
        ApiError::unavailable(format!(
            "{} synchronous runs are in progress (server.max_sync_runs); retry shortly or enqueue a job",
            state.config.max_sync_runs
        ))
        .retry_after(1)
    })?;
    let options = RunOptions { trace: Some(trace), ..RunOptions::default() };
    let (id, done) = state.service.run_now_with(task, input, permit, options);
    match tokio::time::timeout(ratchet_server::seconds(wait.min(cap)), done).await {
        Ok(Ok(Ok(record))) => Ok(Json(ExecutionDetail::from(record)).into_response()),
        Ok(Ok(Err(unrecorded))) => Err(not_recorded(unrecorded)),
        Ok(Err(_)) => Err(ApiError::internal(format!("run {id} ended without a result; see the server log"))),
        Err(_) => {
            let location = format!("/api/v1/executions/{id}");
            let accepted =
                RunAccepted { execution_id: id, status: "running".into(), location: location.clone() };
            Ok((StatusCode::ACCEPTED, [(axum::http::header::LOCATION, location)], Json(accepted))
                .into_response())
        }
    }
}

/// 503 for a run that ended but could not be recorded; its result is in the details, since
/// the run did happen (its effects, if any, too).
fn not_recorded(unrecorded: ratchet_service::Unrecorded) -> ApiError {
    let status = unrecorded.record.status;
    let id = unrecorded.record.id.clone();
    let execution = serde_json::to_value(ExecutionDetail::from(unrecorded.record)).unwrap_or_default();
    ApiError::unavailable(format!(
        "run {id} ended ({status}) but the database refused its record ({}); it is not in the history. \
         /ready says when the database takes writes again",
        unrecorded.error
    ))
    .with_code("not_recorded")
    .with_details(serde_json::json!({"execution": execution}))
    .retry_after(5)
}

fn find(state: &AppState, name: &str) -> Result<std::sync::Arc<ratchet_core::Task>, ApiError> {
    state.service.task(name).ok_or_else(|| unknown_task(name))
}

fn unknown_task(name: &str) -> ApiError {
    ApiError::not_found(format!("no task named `{name}`; GET /api/v1/tasks lists the loaded tasks"))
}
