//! `/api/v1/jobs`: enqueue, list, inspect, cancel and retry jobs.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::page;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::{EnqueueRequest, JobDetail, JobList, JobView, PageQuery};
use ratchet_server::{AppState, JsonObject, Trace};
use ratchet_service::{EnqueueOptions, job_timeout};
use ratchet_storage::{JobFilter, JobStatus};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// queued, running, retrying, completed, failed or cancelled.
    #[param(pattern = "^(queued|running|retrying|completed|failed|cancelled)$")]
    pub status: Option<String>,
    /// A task name.
    pub task: Option<String>,
    /// created_at (default, descending), updated_at, run_at or priority; `-` first for descending.
    #[param(pattern = "^-?(created_at|updated_at|run_at|priority)$")]
    pub sort: Option<String>,
}

/// Enqueue a job. A repeated idempotency key returns the existing job with 200.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = EnqueueRequest,
    responses((status = 201, body = JobView), (status = 200, body = JobView, description = "The job of this idempotency key"),
        (status = "4XX", body = ErrorBody)))]
pub async fn enqueue_job(
    State(state): State<AppState>,
    Trace(trace): Trace,
    JsonObject(request): JsonObject<EnqueueRequest>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let run_at = request.run_at.as_deref().map(parse_time).transpose()?;
    if request.max_attempts == Some(0) {
        return Err(ApiError::invalid("max_attempts must be at least 1"));
    }
    let max = state.service.config().limits.max_timeout_secs;
    let timeout =
        request.timeout_secs.map(|secs| job_timeout(secs, max)).transpose().map_err(ApiError::invalid)?;
    let options = EnqueueOptions {
        priority: request.priority,
        run_at,
        max_attempts: request.max_attempts,
        idempotency_key: request.idempotency_key,
        timeout,
        trace: Some(trace),
    };
    let enqueued = state.service.enqueue(&request.task, request.input, options).await?;
    let status = if enqueued.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(JobView::from(&enqueued.job))))
}

/// List jobs, newest first by default.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", params(PageQuery, JobQuery),
    responses((status = 200, body = JobList), (status = "4XX", body = ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    paging: Result<Query<PageQuery>, QueryRejection>,
    filter: Result<Query<JobQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let (Query(paging), Query(filter)) = (paging?, filter?);
    let page = page(&paging, filter.sort.as_deref(), &["created_at", "updated_at", "run_at", "priority"])?;
    let status =
        filter.status.as_deref().map(str::parse::<JobStatus>).transpose().map_err(ApiError::bad_request)?;
    let listed = state.service.jobs(&JobFilter { status, task: filter.task }, page).await?;
    let items = listed.items.iter().map(JobView::from).collect();
    Ok(Json(JobList::new(items, listed.total, page.limit, page.offset)))
}

/// A job with how each of its attempts ended.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobDetail), (status = "4XX", body = ErrorBody)))]
pub async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobDetail>, ApiError> {
    let job = state.service.job(&id).await?;
    let attempts = state.service.attempts(&id).await?;
    Ok(Json(JobDetail { job: JobView::from(&job), attempts: attempts.into_iter().map(Into::into).collect() }))
}

/// Cancel a queued, retrying or running job; 409 when it already ended.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobView), (status = "4XX", body = ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let job = state.service.cancel(&id).await?;
    Ok(Json(JobView::from(&job)))
}

/// Enqueue a failed or cancelled job again, as a new job with the same task and input.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "jobs", params(("id" = String, Path)),
    responses((status = 201, body = JobView), (status = "4XX", body = ErrorBody)))]
pub async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    let enqueued = state.service.retry(&id).await?;
    Ok((StatusCode::CREATED, Json(JobView::from(&enqueued.job))))
}

/// An RFC 3339 time as milliseconds.
fn parse_time(text: &str) -> Result<i64, ApiError> {
    ratchet_core::time::parse_rfc3339(text).map_err(|error| ApiError::invalid(format!("run_at: {error}")))
}
