//! `/api/v1/jobs`: enqueue, list, inspect, cancel and retry jobs.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::page;
use ratchet_core::trace::TraceContext;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::{EnqueueRequest, JobDetail, JobList, JobView, PageQuery};
use ratchet_server::{AppState, JsonObject, Trace};
use ratchet_service::{BatchJob, EnqueueOptions, job_timeout};
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
    /// Jobs created at or after this time: an RFC 3339 time, or a duration ago (`1h`, `7d`).
    pub since: Option<String>,
    /// Jobs created before this time: an RFC 3339 time, or a duration ago.
    pub until: Option<String>,
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
    let job = batch_job(&state, request, &trace)?;
    let enqueued = state.service.enqueue(&job.task, job.input, job.options).await?;
    let status = if enqueued.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(JobView::from(&enqueued.job))))
}

/// The job `request` asks for, its options checked (time, attempts, timeout) but not its task
/// and input, which the service checks.
fn batch_job(state: &AppState, request: EnqueueRequest, trace: &TraceContext) -> Result<BatchJob, ApiError> {
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
        trace: Some(trace.clone()),
        concurrency_key: request.concurrency_key,
    };
    Ok(BatchJob { task: request.task, input: request.input, options })
}

/// Jobs per batch at most.
pub const MAX_BATCH_JOBS: usize = 10_000;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs, each as `POST /api/v1/jobs` takes one; at most 10,000.
    pub jobs: Vec<EnqueueRequest>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    /// The jobs' ids, in the batch's order (an idempotency key already used gives the id of
    /// the job it named).
    pub ids: Vec<String>,
    /// How many jobs the batch created (the others' keys named existing jobs).
    pub created: usize,
}

/// Enqueue many jobs at once, all or none: one job that cannot be enqueued (an unknown task,
/// an input its schema refuses, a bad time) refuses the batch, naming each such job by index
/// in `details.problems`. 201 when it created a job, 200 when every key named an existing one.
#[utoipa::path(post, path = "/api/v1/jobs/batch", tag = "jobs", request_body = BatchRequest,
    responses((status = 201, body = BatchResponse), (status = 200, body = BatchResponse),
        (status = "4XX", body = ErrorBody)))]
pub async fn enqueue_batch(
    State(state): State<AppState>,
    Trace(trace): Trace,
    JsonObject(request): JsonObject<BatchRequest>,
) -> Result<(StatusCode, Json<BatchResponse>), ApiError> {
    if request.jobs.is_empty() || request.jobs.len() > MAX_BATCH_JOBS {
        return Err(ApiError::invalid(format!(
            "a batch holds 1 to {MAX_BATCH_JOBS} jobs, not {}",
            request.jobs.len()
        )));
    }
    let jobs = request
        .jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| {
            batch_job(&state, job, &trace).map_err(|mut error| {
                error.message = format!("job {index}: {}", error.message);
                error
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let written = state.service.enqueue_batch(jobs).await?;
    let created = written.iter().filter(|(_, created)| *created).count();
    let status = if created > 0 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(BatchResponse { ids: written.into_iter().map(|(id, _)| id).collect(), created })))
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
    let (since, until) = ratchet_server::model::time_range(filter.since.as_deref(), filter.until.as_deref())?;
    let listed = state.service.jobs(&JobFilter { status, task: filter.task, since, until }, page).await?;
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
