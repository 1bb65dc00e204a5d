//! `/api/v1/logs/live`: the log lines of runs as they are written, as server-sent events. The
//! lines of every run on this node and, on PostgreSQL, of job attempts on the other nodes
//! (relayed by them); the record stays the truth, and a line a slow follower misses is
//! announced (`event: lagged`) and can be read from the record once its run ends.
//!
//! `/api/v1/events`: jobs as they change state (enqueued, started, ended, cancelled), on this
//! node and, on PostgreSQL, on the others; what the dashboard redraws its pages on.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use ratchet_server::AppState;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_service::job_feed::FeedItem;
use ratchet_storage::level_rank;

/// Lines held for a follower that reads slower than runs write.
const FOLLOWER_BUFFER: usize = 1_024;
/// A comment this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LiveQuery {
    pub task: Option<String>,
    pub execution_id: Option<String>,
    pub job_id: Option<String>,
    /// The runs of one trace (a W3C trace id, as `x-trace-id` answers).
    pub trace_id: Option<String>,
    /// Lines at this level or above.
    #[param(pattern = "^(debug|info|warn|error)$")]
    pub level: Option<String>,
    /// Lines containing this text, case-insensitive.
    pub grep: Option<String>,
}

/// One line, as the `data` of a `line` event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LiveLogLine {
    pub execution_id: String,
    /// The job whose attempt wrote it; none for a synchronous run.
    pub job_id: Option<String>,
    pub task: String,
    pub trace_id: Option<String>,
    /// Its position in the run's log, from 0.
    pub index: usize,
    pub level: String,
    pub message: String,
}

/// Follow log lines as runs write them: a `text/event-stream` of `line` events (each a
/// `LiveLogLine` as JSON) and `lagged` events (`{"missed": N}`: lines this follower fell too
/// far behind to get; the record has them). Ends when the server stops.
#[utoipa::path(get, path = "/api/v1/logs/live", tag = "executions", params(LiveQuery),
    responses((status = 200, content_type = "text/event-stream", body = LiveLogLine,
        description = "`line` events, each a LiveLogLine; `lagged` events, {\"missed\": N}"),
        (status = "4XX", body = ErrorBody)))]
pub async fn follow_logs(
    State(state): State<AppState>,
    query: Result<Query<LiveQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query?;
    crate::logs::check_level(query.level.as_deref())?;
    // Following before the answer's headers go: a line written once they arrive is sent.
    let lines = (state.service.follow_logs(), state.service.follow_remote_logs());
    Ok(event_stream(move |events| forward(state, Filter::new(query), lines, events)))
}

/// The events `produce` sends (until it returns), as a `text/event-stream` kept open by a
/// comment every [`KEEP_ALIVE`].
fn event_stream<F, Fut>(produce: F) -> Sse<impl Stream<Item = Result<Event, Infallible>>>
where
    F: FnOnce(mpsc::Sender<Event>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (events, receiver) = mpsc::channel(FOLLOWER_BUFFER);
    tokio::spawn(produce(events));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

/// What a follower asked for.
struct Filter {
    query: LiveQuery,
    floor: u8,
    needle: Option<String>,
}

impl Filter {
    fn new(query: LiveQuery) -> Filter {
        let floor = query.level.as_deref().map_or(0, level_rank);
        let needle = query.grep.as_deref().map(str::to_lowercase);
        Filter { query, floor, needle }
    }

    fn admits(&self, line: &LiveLogLine) -> bool {
        let q = &self.query;
        let same =
            |wanted: &Option<String>, value: Option<&str>| wanted.as_deref().is_none_or(|w| Some(w) == value);
        same(&q.task, Some(&line.task))
            && same(&q.execution_id, Some(&line.execution_id))
            && same(&q.job_id, line.job_id.as_deref())
            && same(&q.trace_id, line.trace_id.as_deref())
            && level_rank(&line.level) >= self.floor
            && self.needle.as_ref().is_none_or(|n| line.message.to_lowercase().contains(n.as_str()))
    }
}

/// Sends the lines `filter` admits, from this node and the others, until the follower leaves
/// or the server stops.
async fn forward(
    state: AppState,
    filter: Filter,
    (mut local, mut remote): (
        tokio::sync::broadcast::Receiver<ratchet_core::supervisor::LiveLine>,
        tokio::sync::broadcast::Receiver<Arc<ratchet_service::log_relay::RemoteLine>>,
    ),
    events: mpsc::Sender<Event>,
) {
    let mut stopping = state.stopping.clone();
    loop {
        let line = tokio::select! {
            line = local.recv() => match line {
                Ok(line) => Ok(LiveLogLine {
                    job_id: state.service.job_of(&line.execution_id),
                    execution_id: line.execution_id.to_string(),
                    task: line.label.task.to_string(),
                    trace_id: line.label.trace_id.as_deref().map(str::to_owned),
                    index: line.index,
                    level: line.level.as_str().to_owned(),
                    message: line.message,
                }),
                Err(error) => Err(error),
            },
            line = remote.recv() => match line {
                Ok(line) => Ok(LiveLogLine {
                    execution_id: line.execution.clone(),
                    job_id: Some(line.job.clone()),
                    task: line.task.clone(),
                    trace_id: line.trace_id.clone(),
                    index: line.index,
                    level: line.level.as_str().to_owned(),
                    message: line.message.clone(),
                }),
                Err(error) => Err(error),
            },
            _ = stopping.wait_for(|stopped| *stopped) => return,
            () = events.closed() => return,
        };
        let event = match line {
            Ok(line) if filter.admits(&line) => Event::default().event("line").json_data(&line),
            Ok(_) => continue,
            Err(RecvError::Lagged(missed)) => {
                Event::default().event("lagged").json_data(serde_json::json!({"missed": missed}))
            }
            Err(RecvError::Closed) => return,
        };
        let Ok(event) = event else { continue };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// The changes of one job only.
    pub job_id: Option<String>,
    /// The changes of one task's jobs only.
    pub task: Option<String>,
}

/// A job's new state, as the `data` of a `job` event.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct JobEvent {
    pub job_id: String,
    pub task: String,
    /// queued, running, retrying, completed, failed or cancelled.
    pub status: String,
    /// The attempt it is on (0 before its first start).
    pub attempt: u32,
}

/// Follow jobs as they change state: a `text/event-stream` of `job` events (each a `JobEvent`)
/// and `lagged` events (`{"missed": N}`: changes not sent one by one; read the lists again).
/// The database stays the truth: a job rescued from an expired lease is not announced. Ends
/// when the server stops.
#[utoipa::path(get, path = "/api/v1/events", tag = "jobs", params(EventQuery),
    responses((status = 200, content_type = "text/event-stream", body = JobEvent,
        description = "`job` events, each a JobEvent; `lagged` events, {\"missed\": N}"),
        (status = "4XX", body = ErrorBody)))]
pub async fn follow_jobs(
    State(state): State<AppState>,
    query: Result<Query<EventQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(query) = query?;
    // Following before the answer's headers go: a change made once they arrive is sent.
    let feed = state.service.follow_jobs();
    Ok(event_stream(move |events| forward_jobs(state, query, feed, events)))
}

/// Sends the job changes `query` admits until the follower leaves or the server stops.
async fn forward_jobs(
    state: AppState,
    query: EventQuery,
    mut feed: tokio::sync::broadcast::Receiver<FeedItem>,
    events: mpsc::Sender<Event>,
) {
    let mut stopping = state.stopping.clone();
    loop {
        let item = tokio::select! {
            item = feed.recv() => item,
            _ = stopping.wait_for(|stopped| *stopped) => return,
            () = events.closed() => return,
        };
        let event = match item {
            Ok(FeedItem::Changed(change)) => {
                if !change.concerns(query.job_id.as_deref(), query.task.as_deref()) {
                    continue;
                }
                let event = JobEvent {
                    job_id: change.job.clone(),
                    task: change.task.clone(),
                    status: change.status.as_str().to_owned(),
                    attempt: change.attempt,
                };
                Event::default().event("job").json_data(&event)
            }
            Ok(FeedItem::Missed(missed)) | Err(RecvError::Lagged(missed)) => {
                Event::default().event("lagged").json_data(serde_json::json!({"missed": missed}))
            }
            Err(RecvError::Closed) => return,
        };
        let Ok(event) = event else { continue };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
