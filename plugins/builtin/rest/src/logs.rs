//! `/api/v1/logs`: search the log lines of recorded runs, and the trend of failures over time
//! by task and by error pattern.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use ratchet_server::AppState;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_storage::{LogSearch, now_ms};

/// Most lines one search answers.
const MAX_LINES: usize = 1_000;
/// Most buckets one trend answers.
const MAX_BUCKETS: i64 = 1_000;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    pub task: Option<String>,
    pub execution_id: Option<String>,
    /// The runs of one trace (a W3C trace id, as `x-trace-id` answers).
    pub trace_id: Option<String>,
    /// Lines at this level or above.
    #[param(pattern = "^(debug|info|warn|error)$")]
    pub level: Option<String>,
    /// Runs that started within this long: `30m`, `1h`, `7d`.
    pub since: Option<String>,
    /// Lines containing this text, case-insensitive.
    pub grep: Option<String>,
    /// Most lines (1 to 1000, default 200); the newest are kept.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogLine {
    pub execution_id: String,
    pub task: String,
    /// The trace its run belongs to.
    pub trace_id: Option<String>,
    /// When its run started.
    pub started_at: String,
    /// Its position in the run's log.
    pub index: usize,
    pub level: String,
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LogLines {
    /// Oldest first.
    pub items: Vec<LogLine>,
    /// Runs read (at most 5,000, newest first).
    pub scanned: u64,
    /// More lines matched than `limit`: the oldest were left out.
    pub truncated: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TrendQuery {
    /// How far back: `24h` by default.
    pub since: Option<String>,
    /// The width of a bucket: `1h` by default; at most 1,000 buckets.
    pub bucket: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TrendBucketView {
    pub start: String,
    pub runs: u64,
    pub failures: u64,
    pub by_task: BTreeMap<String, u64>,
    /// By the most confident error pattern of each failure (`unclassified` without one).
    pub by_pattern: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Trends {
    pub since: String,
    pub bucket_secs: u64,
    /// Buckets with runs in them, oldest first.
    pub buckets: Vec<TrendBucketView>,
}

/// `text` as a duration (`default` when absent or empty); 422 naming `name` when it is not one.
fn duration(name: &str, text: Option<&str>, default: &str) -> Result<std::time::Duration, ApiError> {
    let text = text.filter(|t| !t.trim().is_empty()).unwrap_or(default);
    humantime::parse_duration(text)
        .map_err(|_| ApiError::invalid(format!("{name}: `{text}` is not a duration such as 30m, 1h or 7d")))
}

/// A `level` filter names a level: 400 otherwise (the document's pattern says which).
pub(crate) fn check_level(level: Option<&str>) -> Result<(), ApiError> {
    match level {
        Some(level) if !["debug", "info", "warn", "error"].contains(&level) => {
            Err(ApiError::bad_request(format!("level is debug, info, warn or error, not `{level}`")))
        }
        _ => Ok(()),
    }
}

fn ago(duration: std::time::Duration) -> i64 {
    now_ms().saturating_sub(duration.as_millis().min(i64::MAX as u128) as i64)
}

/// Log lines of recorded runs, by task, execution, level, time and text.
#[utoipa::path(get, path = "/api/v1/logs", tag = "executions", params(LogQuery),
    responses((status = 200, body = LogLines), (status = "4XX", body = ErrorBody)))]
pub async fn search_logs(
    State(state): State<AppState>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<LogLines>, ApiError> {
    let Query(query) = query?;
    let limit = query.limit.unwrap_or(200);
    if !(1..=MAX_LINES).contains(&limit) {
        return Err(ApiError::bad_request(format!("limit must be between 1 and {MAX_LINES}, not {limit}")));
    }
    check_level(query.level.as_deref())?;
    let since = match query.since.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(text) => Some(ago(duration("since", Some(text), "")?)),
        None => None,
    };
    let search = LogSearch {
        task: query.task,
        execution_id: query.execution_id,
        trace_id: query.trace_id,
        since,
        level: query.level,
        grep: query.grep,
        limit,
    };
    let found = state.service.search_logs(&search).await?;
    let items = found
        .lines
        .into_iter()
        .map(|hit| LogLine {
            execution_id: hit.execution_id,
            task: hit.task,
            trace_id: hit.trace_id,
            started_at: ratchet_core::time::format(hit.started_at),
            index: hit.index,
            level: hit.level,
            message: hit.message,
        })
        .collect();
    Ok(Json(LogLines { items, scanned: found.scanned, truncated: found.truncated }))
}

/// Runs and failures over time, by task and by error pattern.
#[utoipa::path(get, path = "/api/v1/logs/trends", tag = "executions", params(TrendQuery),
    responses((status = 200, body = Trends), (status = "4XX", body = ErrorBody)))]
pub async fn failure_trends(
    State(state): State<AppState>,
    query: Result<Query<TrendQuery>, QueryRejection>,
) -> Result<Json<Trends>, ApiError> {
    let Query(query) = query?;
    let window = duration("since", query.since.as_deref(), "24h")?;
    let bucket = duration("bucket", query.bucket.as_deref(), "1h")?;
    let bucket_ms = bucket.as_millis().min(i64::MAX as u128) as i64;
    let window_ms = window.as_millis().min(i64::MAX as u128) as i64;
    if bucket_ms < 60_000 || window_ms / bucket_ms > MAX_BUCKETS {
        return Err(ApiError::invalid(format!(
            "bucket must be at least 1m, and since at most {MAX_BUCKETS} buckets long"
        )));
    }
    let since = ago(window);
    let buckets = state
        .service
        .failure_trends(since, bucket_ms)
        .await?
        .into_iter()
        .map(|b| TrendBucketView {
            start: ratchet_core::time::format(b.start),
            runs: b.runs,
            failures: b.failures,
            by_task: b.by_task,
            by_pattern: b.by_pattern,
        })
        .collect();
    Ok(Json(Trends { since: ratchet_core::time::format(since), bucket_secs: bucket.as_secs(), buckets }))
}
