//! `/api/v1/schedules`: cron schedules and their next fire times.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{page, slice};
use ratchet_core::schedule::CronSpec;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::{
    FireTimes, NewScheduleRequest, PageQuery, ScheduleList, SchedulePatch, ScheduleView, time,
};
use ratchet_server::{AppState, JsonObject};
use ratchet_storage::{NewSchedule, now_ms};

/// The longest catch-up window accepted: a year.
const MAX_WINDOW_SECS: f64 = 31_536_000.0;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduleQuery {
    pub task: Option<String>,
    pub enabled: Option<bool>,
    /// created_at (default, descending), name or next_fire_at; `-` first for descending.
    #[param(pattern = "^-?(created_at|name|next_fire_at)$")]
    pub sort: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// How many fire times (1 to 100, default 5).
    #[param(minimum = 1, maximum = 100)]
    pub count: Option<usize>,
}

/// List schedules.
#[utoipa::path(get, path = "/api/v1/schedules", tag = "schedules", params(PageQuery, ScheduleQuery),
    responses((status = 200, body = ScheduleList), (status = "4XX", body = ErrorBody)))]
pub async fn list_schedules(
    State(state): State<AppState>,
    paging: Result<Query<PageQuery>, QueryRejection>,
    filter: Result<Query<ScheduleQuery>, QueryRejection>,
) -> Result<Json<ScheduleList>, ApiError> {
    let (Query(paging), Query(filter)) = (paging?, filter?);
    let page = page(&paging, filter.sort.as_deref(), &["created_at", "name", "next_fire_at"])?;
    let mut schedules: Vec<_> = state
        .service
        .schedules()
        .await?
        .into_iter()
        .filter(|s| filter.task.as_ref().is_none_or(|task| &s.task == task))
        .filter(|s| filter.enabled.is_none_or(|enabled| s.enabled == enabled))
        .collect();
    match page.sort {
        "name" => schedules.sort_by(|a, b| a.name.cmp(&b.name)),
        "next_fire_at" => schedules.sort_by_key(|s| (s.next_fire_at.unwrap_or(i64::MAX), s.id.clone())),
        _ => schedules.sort_by_key(|s| (s.created_at, s.id.clone())),
    }
    if page.descending {
        schedules.reverse();
    }
    let total = schedules.len() as u64;
    let items = slice(schedules, &page).iter().map(ScheduleView::from).collect();
    Ok(Json(ScheduleList::new(items, total, page.limit, page.offset)))
}

/// Add a schedule; its first fire time is the first after now.
#[utoipa::path(post, path = "/api/v1/schedules", tag = "schedules", request_body = NewScheduleRequest,
    responses((status = 201, body = ScheduleView), (status = "4XX", body = ErrorBody)))]
pub async fn add_schedule(
    State(state): State<AppState>,
    JsonObject(request): JsonObject<NewScheduleRequest>,
) -> Result<(StatusCode, Json<ScheduleView>), ApiError> {
    let window = request.catch_up_window_secs.unwrap_or(60.0);
    if !(0.0..=MAX_WINDOW_SECS).contains(&window) {
        return Err(ApiError::invalid(format!(
            "catch_up_window_secs must be between 0 and {MAX_WINDOW_SECS} (a year), not {window}"
        )));
    }
    let new = NewSchedule {
        name: request.name.unwrap_or_else(|| request.task.clone()),
        task: request.task,
        cron: request.cron,
        timezone: request.timezone,
        input: request.input,
        catch_up: request.catch_up,
        catch_up_window: Duration::from_secs_f64(window),
        overlap: request.overlap,
    };
    let schedule = state.service.add_schedule(new).await?;
    Ok((StatusCode::CREATED, Json(ScheduleView::from(&schedule))))
}

/// A schedule, by id or name.
#[utoipa::path(get, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "A schedule id or name")),
    responses((status = 200, body = ScheduleView), (status = "4XX", body = ErrorBody)))]
pub async fn get_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(ScheduleView::from(&state.service.schedule(&id).await?)))
}

/// Remove a schedule; jobs it already enqueued stay.
#[utoipa::path(delete, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "A schedule id or name")),
    responses((status = 200, body = ScheduleView), (status = "4XX", body = ErrorBody)))]
pub async fn remove_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    Ok(Json(ScheduleView::from(&state.service.remove_schedule(&id).await?)))
}

/// Change a schedule; fields left out keep their values.
#[utoipa::path(patch, path = "/api/v1/schedules/{id}", tag = "schedules",
    params(("id" = String, Path, description = "A schedule id or name")), request_body = SchedulePatch,
    responses((status = 200, body = ScheduleView), (status = "4XX", body = ErrorBody)))]
pub async fn update_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonObject(patch): JsonObject<SchedulePatch>,
) -> Result<Json<ScheduleView>, ApiError> {
    let window = match patch.catch_up_window_secs {
        Some(window) if !(0.0..=MAX_WINDOW_SECS).contains(&window) => {
            return Err(ApiError::invalid(format!(
                "catch_up_window_secs must be between 0 and {MAX_WINDOW_SECS} (a year), not {window}"
            )));
        }
        window => window.map(Duration::from_secs_f64),
    };
    let mut schedule = state
        .service
        .update_schedule(&id, |s| {
            if let Some(name) = patch.name {
                s.name = name;
            }
            if let Some(task) = patch.task {
                s.task = task;
            }
            if let Some(cron) = patch.cron {
                s.cron = cron;
            }
            if let Some(timezone) = patch.timezone {
                s.timezone = timezone;
            }
            if let Some(input) = patch.input {
                s.input = input;
            }
            s.catch_up = patch.catch_up.unwrap_or(s.catch_up);
            s.catch_up_window = window.unwrap_or(s.catch_up_window);
            s.overlap = patch.overlap.unwrap_or(s.overlap);
        })
        .await?;
    if let Some(enabled) = patch.enabled.filter(|&enabled| enabled != schedule.enabled) {
        schedule = state.service.set_schedule_enabled(&schedule.id, enabled).await?;
    }
    Ok(Json(ScheduleView::from(&schedule)))
}

/// Stop firing a schedule until it is resumed.
#[utoipa::path(post, path = "/api/v1/schedules/{id}/pause", tag = "schedules",
    params(("id" = String, Path, description = "A schedule id or name")),
    responses((status = 200, body = ScheduleView), (status = "4XX", body = ErrorBody)))]
pub async fn pause_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let schedule = state.service.set_schedule_enabled(&id, false).await?;
    Ok(Json(ScheduleView::from(&schedule)))
}

/// Fire a paused schedule again from its next fire time (the pause is not caught up).
#[utoipa::path(post, path = "/api/v1/schedules/{id}/resume", tag = "schedules",
    params(("id" = String, Path, description = "A schedule id or name")),
    responses((status = 200, body = ScheduleView), (status = "4XX", body = ErrorBody)))]
pub async fn resume_schedule(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    let schedule = state.service.set_schedule_enabled(&id, true).await?;
    Ok(Json(ScheduleView::from(&schedule)))
}

/// The next fire times of a schedule.
#[utoipa::path(get, path = "/api/v1/schedules/{id}/next", tag = "schedules",
    params(("id" = String, Path, description = "A schedule id or name"), NextQuery),
    responses((status = 200, body = FireTimes), (status = "4XX", body = ErrorBody)))]
pub async fn next_fire_times(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<NextQuery>, QueryRejection>,
) -> Result<Json<FireTimes>, ApiError> {
    let Query(query) = query?;
    let count = fire_count(query.count)?;
    let schedule = state.service.schedule(&id).await?;
    let spec =
        CronSpec::parse(&schedule.cron, &schedule.timezone).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(upcoming(&spec, count)))
}

/// How many fire times a request asks for: 1 to 100, 5 unless it says.
fn fire_count(count: Option<usize>) -> Result<usize, ApiError> {
    let count = count.unwrap_or(5);
    if !(1..=100).contains(&count) {
        return Err(ApiError::bad_request(format!("count must be between 1 and 100, not {count}")));
    }
    Ok(count)
}

/// The next `count` fire times of `spec` from now.
fn upcoming(spec: &CronSpec, count: usize) -> FireTimes {
    FireTimes { fire_times: spec.upcoming(now_ms(), count).into_iter().map(time).collect() }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CronQuery {
    /// A cron expression, as a schedule takes it (5 fields, or 6 with seconds first).
    pub cron: String,
    /// An IANA time zone (default `UTC`).
    pub timezone: Option<String>,
    /// How many fire times (1 to 100, default 5).
    #[param(minimum = 1, maximum = 100)]
    pub count: Option<usize>,
}

/// The next fire times of a cron expression, before a schedule is added with it; a mistake in
/// the expression or the time zone is answered 400 naming it.
#[utoipa::path(get, path = "/api/v1/cron/next", tag = "schedules", params(CronQuery),
    responses((status = 200, body = FireTimes), (status = "4XX", body = ErrorBody)))]
pub async fn preview_cron(
    query: Result<Query<CronQuery>, QueryRejection>,
) -> Result<Json<FireTimes>, ApiError> {
    let Query(query) = query?;
    let count = fire_count(query.count)?;
    let spec = CronSpec::parse(&query.cron, query.timezone.as_deref().unwrap_or("UTC"))
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(Json(upcoming(&spec, count)))
}
