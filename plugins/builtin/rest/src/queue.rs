//! `/api/v1/queue`: the queue's state, and pausing and resuming it (one task's jobs, or all).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::PauseView;
use ratchet_server::{AppState, Caller, JsonObject};

/// The queue: its pauses and how many jobs are in each state.
#[derive(Debug, Serialize, ToSchema)]
pub struct QueueState {
    /// The pauses in force, the whole queue's first.
    pub pauses: Vec<PauseView>,
    /// Jobs per state. Counting scans every job kept, so a node reuses its last count for ten
    /// times what it took (at most 5 s): with a small history the counts are milliseconds old.
    pub counts: BTreeMap<String, u64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// The task whose jobs wait; absent: every task's.
    pub task: Option<String>,
    /// Its schedules skip their fires while paused (default: they keep enqueueing, and the
    /// jobs wait for the resume).
    #[serde(default)]
    pub skip_schedules: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResumeRequest {
    /// The task to resume; absent: the whole queue (a task's own pause stays).
    pub task: Option<String>,
}

async fn state_of(state: &AppState) -> Result<QueueState, ApiError> {
    let pauses = state.service.pauses().await?.iter().map(PauseView::from).collect();
    let counts =
        state.service.job_counts().await?.into_iter().map(|(s, n)| (s.as_str().to_owned(), n)).collect();
    Ok(QueueState { pauses, counts })
}

/// The queue's pauses and job counts.
#[utoipa::path(get, path = "/api/v1/queue", tag = "jobs",
    responses((status = 200, body = QueueState), (status = "4XX", body = ErrorBody)))]
pub async fn queue_state(State(state): State<AppState>) -> Result<Json<QueueState>, ApiError> {
    Ok(Json(state_of(&state).await?))
}

/// Pause a task's jobs, or every job (admin): they stay queued, running ones finish, every
/// node obeys. Pausing again updates `skip_schedules`.
#[utoipa::path(post, path = "/api/v1/queue/pause", tag = "jobs", request_body = PauseRequest,
    responses((status = 200, body = PauseView), (status = "4XX", body = ErrorBody)))]
pub async fn pause_queue(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    JsonObject(request): JsonObject<PauseRequest>,
) -> Result<Json<PauseView>, ApiError> {
    let pause = state.service.pause(request.task.as_deref(), request.skip_schedules, &caller.id).await?;
    Ok(Json(PauseView::from(&pause)))
}

/// Resume a task's jobs, or the whole queue (admin); 404 when it is not paused.
#[utoipa::path(post, path = "/api/v1/queue/resume", tag = "jobs", request_body = ResumeRequest,
    responses((status = 200, body = QueueState), (status = "4XX", body = ErrorBody)))]
pub async fn resume_queue(
    State(state): State<AppState>,
    JsonObject(request): JsonObject<ResumeRequest>,
) -> Result<Json<QueueState>, ApiError> {
    state.service.resume(request.task.as_deref()).await?;
    Ok(Json(state_of(&state).await?))
}
