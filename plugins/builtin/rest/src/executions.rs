//! `/api/v1/executions`: the record of every run, and offline replay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use utoipa::IntoParams;

use super::page;
use ratchet_core::http::{Har, HttpMode};
use ratchet_server::AppState;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::{ExecutionDetail, ExecutionList, ExecutionSummary, PageQuery, ReplayResult};
use ratchet_storage::ExecutionFilter;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    pub task: Option<String>,
    /// success or failure.
    #[param(pattern = "^(success|failure)$")]
    pub status: Option<String>,
    pub job_id: Option<String>,
    /// The runs of one trace (a W3C trace id: 32 hex digits, as `x-trace-id` answers).
    pub trace_id: Option<String>,
    /// started_at (default, descending), finished_at or duration_us; `-` first for descending.
    #[param(pattern = "^-?(started_at|finished_at|duration_us)$")]
    pub sort: Option<String>,
    /// Runs that started at or after this time: an RFC 3339 time, or a duration ago (`1h`, `7d`).
    pub since: Option<String>,
    /// Runs that started before this time: an RFC 3339 time, or a duration ago.
    pub until: Option<String>,
}

/// List executions, newest first by default.
#[utoipa::path(get, path = "/api/v1/executions", tag = "executions", params(PageQuery, ExecutionQuery),
    responses((status = 200, body = ExecutionList), (status = "4XX", body = ErrorBody)))]
pub async fn list_executions(
    State(state): State<AppState>,
    paging: Result<Query<PageQuery>, QueryRejection>,
    filter: Result<Query<ExecutionQuery>, QueryRejection>,
) -> Result<Json<ExecutionList>, ApiError> {
    let (Query(paging), Query(filter)) = (paging?, filter?);
    let page = page(&paging, filter.sort.as_deref(), &["started_at", "finished_at", "duration_us"])?;
    let status = match filter.status.as_deref() {
        None => None,
        Some(name) => Some(ratchet_core::RunStatus::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!("`{name}` is not an execution status; use success or failure"))
        })?),
    };
    let (since, until) = ratchet_server::model::time_range(filter.since.as_deref(), filter.until.as_deref())?;
    let filter = ExecutionFilter {
        task: filter.task,
        status,
        job_id: filter.job_id,
        trace_id: filter.trace_id,
        since,
        until,
    };
    let listed = state.service.executions(&filter, page).await?;
    let items = listed.items.iter().map(ExecutionSummary::from).collect();
    Ok(Json(ExecutionList::new(items, listed.total, page.limit, page.offset)))
}

/// An execution with its input, output or error, logs and HTTP recording (HAR).
#[utoipa::path(get, path = "/api/v1/executions/{id}", tag = "executions", params(("id" = String, Path)),
    responses((status = 200, body = ExecutionDetail), (status = "4XX", body = ErrorBody)))]
pub async fn get_execution(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ExecutionDetail>, ApiError> {
    Ok(Json(state.service.execution(&id).await?.into()))
}

/// Why a run failed: the failure report `ratchet explain` prints (error and stack, the task's
/// code around the failing line, the error patterns' reading, the job's attempts, the
/// cluster's state, prompts for an assistant, logs and HTTP calls), as JSON, or as Markdown
/// when the request accepts `text/markdown` and not JSON.
#[utoipa::path(get, path = "/api/v1/executions/{id}/report", tag = "executions", params(("id" = String, Path)),
    responses(
        (status = 200, description = "The report", content((Object = "application/json"), (String = "text/markdown"))),
        (status = "4XX", body = ErrorBody)))]
pub async fn execution_report(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse as _;
    let report = state.service.report(&id).await?;
    let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let markdown = accept.contains("text/markdown") && !accept.contains("application/json");
    Ok(if markdown {
        ([(axum::http::header::CONTENT_TYPE, "text/markdown; charset=utf-8")], report.markdown())
            .into_response()
    } else {
        Json(report).into_response()
    })
}

/// Run the task again with the recorded input, its HTTP calls answered from the recording
/// (nothing reaches the network), and compare with the recorded result. Not recorded.
#[utoipa::path(post, path = "/api/v1/executions/{id}/replay", tag = "executions", params(("id" = String, Path)),
    responses((status = 200, body = ReplayResult), (status = "4XX", body = ErrorBody)))]
pub async fn replay_execution(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ReplayResult>, ApiError> {
    let record = state.service.execution(&id).await?;
    let task = state.service.task(&record.task).ok_or_else(|| {
        ApiError::conflict(format!(
            "task `{}` of execution {id} is no longer loaded; it cannot be replayed",
            record.task
        ))
    })?;
    let har: Har = serde_json::from_value(record.http.clone()).map_err(|e| {
        ApiError::conflict(format!("the HTTP recording of execution {id} is unreadable: {e}"))
    })?;
    let http = HttpMode::Replay(Arc::new(Mutex::new(VecDeque::from(har.log.entries))));
    let execution = state.service.run_with(&task, record.input.clone(), http).await;
    let recorded = match (&record.output, &record.error) {
        (Some(output), _) => serde_json::json!({"output": output}),
        (None, Some(error)) => serde_json::json!({"error": error}),
        (None, None) => serde_json::json!({}),
    };
    let verdict = ratchet_core::recording::compare(&recorded, &execution.outcome);
    Ok(Json(ReplayResult {
        matches: verdict.is_ok(),
        difference: verdict.err(),
        output: execution.outcome.as_ref().ok().cloned(),
        error: execution.outcome.as_ref().err().map(ratchet_core::recording::error_json),
        requests_replayed: execution.http.len(),
        duration_ms: execution.duration.as_secs_f64() * 1000.0,
    }))
}
