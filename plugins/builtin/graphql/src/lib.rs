//! The GraphQL surface at `/graphql` (queries and mutations over POST, subscriptions over
//! WebSocket on GET) with GraphiQL at `/graphql/playground`, served from the binary. Limits:
//! depth, complexity and batch size. Reading needs a viewer; each mutation checks its role.

mod introspection;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_graphql::futures_util::Stream;
use async_graphql::futures_util::stream;
use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::{Context, Json, Object, Schema, SimpleObject, Subscription};
use async_graphql_axum::{GraphQLBatchRequest, GraphQLProtocol, GraphQLResponse, GraphQLWebSocket};
use axum::Extension;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde_json::Value;

use ratchet_server::routes::{Route, public, route};
use ratchet_server::{AppState, Caller, Role, builtin_info};
use ratchet_views::{ExecutionDetail, JobView, NodeView, PluginView, ScheduleView, TaskView};

use crate::introspection::Asks;
use ratchet_service::EnqueueOptions;
use ratchet_service::log_relay::RemoteLine;
use ratchet_storage::{ExecutionFilter, JobFilter, JobStatus, NewSchedule, Page};

pub type RatchetSchema = Schema<Query, Mutation, Subscription>;

/// Every route of this surface and who may call it.
pub const ROUTES: &[Route] = &[
    // Queries and mutations: reading needs a viewer; each mutation checks its own role.
    route("POST", "/graphql", Role::Viewer),
    // Subscriptions: a browser cannot give a WebSocket headers, so the socket opens to anyone
    // and must authenticate in its `connection_init` before any operation runs.
    public("GET", "/graphql"),
    public("GET", "/graphql/playground"),
    public("GET", "/graphql/playground/{file}"),
];

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex query accepted (each field counts one, lists their page size).
pub const MAX_COMPLEXITY: usize = 1000;
/// Most operations in one batched request.
pub const MAX_BATCH: usize = 10;

pub fn schema(state: AppState) -> RatchetSchema {
    schema_with_depth(state, MAX_DEPTH)
}

fn schema_with_depth(state: AppState, depth: usize) -> RatchetSchema {
    Schema::build(Query, Mutation, Subscription)
        .data(state)
        .limit_depth(depth)
        .limit_complexity(MAX_COMPLEXITY)
        .finish()
}

/// The schema for data, and the one for questions about the schema (see [`introspection`]).
#[derive(Clone)]
struct Schemas {
    data: RatchetSchema,
    introspection: RatchetSchema,
}

/// The schema in SDL, as checked in at `docs/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query, Mutation, Subscription).finish().sdl()
}

pub struct GraphQlSurface;

impl ratchet_server::ApiSurface for GraphQlSurface {
    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn info(&self) -> ratchet_server::PluginInfo {
        builtin_info(
            "graphql",
            "GraphQL at /graphql (subscriptions over WebSocket), GraphiQL at /graphql/playground",
        )
    }

    fn protected(&self, state: &AppState) -> Router<AppState> {
        let schema = Schemas {
            data: schema(std::sync::Arc::clone(state)),
            introspection: schema_with_depth(std::sync::Arc::clone(state), introspection::MAX_DEPTH),
        };
        Router::new().route(
            "/graphql",
            post(move |Extension(caller): Extension<Caller>, request: GraphQLBatchRequest| {
                let schema = schema.clone();
                async move { execute(&schema, caller, request).await }
            }),
        )
    }

    /// Subscriptions: browsers cannot put a key in a WebSocket's headers, so a socket whose
    /// headers do not authenticate is upgraded and must authenticate in its `connection_init`
    /// payload (`{"x-api-key": KEY}` or `{"authorization": "Bearer KEY"}`) as a viewer, or it is
    /// closed before any operation runs.
    fn public(&self, state: &AppState) -> Router<AppState> {
        let schema = schema(std::sync::Arc::clone(state));
        let subscribe = move |State(state): State<AppState>,
                              headers: HeaderMap,
                              protocol: GraphQLProtocol,
                              upgrade: WebSocketUpgrade| {
            let schema = schema.clone();
            async move {
                let by_headers = ratchet_server::auth::identify(&state, &headers).await.ok();
                upgrade.protocols(ALL_WEBSOCKET_PROTOCOLS).on_upgrade(move |socket| {
                    GraphQLWebSocket::new(socket, schema, protocol)
                        .on_connection_init(move |payload| connection_init(state, by_headers, payload))
                        .serve()
                })
            }
        };
        Router::new()
            .route("/graphql", get(subscribe))
            .route("/graphql/playground", get(|| async { Html(PLAYGROUND) }))
            .route("/graphql/playground/{file}", get(asset))
    }
}

/// The caller of a subscription socket: from its headers, else from its `connection_init`
/// payload; a viewer at least.
async fn connection_init(
    state: AppState,
    by_headers: Option<Caller>,
    payload: Value,
) -> async_graphql::Result<async_graphql::Data> {
    let caller = match by_headers {
        Some(caller) => caller,
        None => {
            let mut headers = HeaderMap::new();
            for name in ["x-api-key", "authorization"] {
                let value = payload.as_object().and_then(|p| {
                    p.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).and_then(|(_, v)| v.as_str())
                });
                if let Some(value) = value.and_then(|v| axum::http::HeaderValue::from_str(v).ok()) {
                    headers.insert(name, value);
                }
            }
            ratchet_server::auth::identify(&state, &headers)
                .await
                .map_err(|error| async_graphql::Error::new(error.message))?
        }
    };
    if !caller.may(Role::Viewer) {
        return Err(async_graphql::Error::new(format!("{} holds no role that may subscribe", caller.id)));
    }
    let mut data = async_graphql::Data::default();
    data.insert(caller);
    Ok(data)
}

async fn execute(
    schemas: &Schemas,
    caller: Caller,
    request: GraphQLBatchRequest,
) -> axum::response::Response {
    let batch = request.into_inner();
    if let async_graphql::BatchRequest::Batch(requests) = &batch
        && requests.len() > MAX_BATCH
    {
        return ratchet_server::ApiError::bad_request(format!(
            "a batch of {} operations is more than the {MAX_BATCH} allowed",
            requests.len()
        ))
        .into_response();
    }
    let queries: Vec<&str> = match &batch {
        async_graphql::BatchRequest::Single(request) => vec![request.query.as_str()],
        async_graphql::BatchRequest::Batch(requests) => requests.iter().map(|r| r.query.as_str()).collect(),
    };
    let mut schema = &schemas.introspection;
    for query in queries {
        match introspection::classify(query) {
            Asks::Schema => {}
            Asks::Data => schema = &schemas.data,
            Asks::TooMuchSchema(message) => {
                let refused = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
                    message, None,
                )]);
                return GraphQLResponse::from(refused).into_response();
            }
        }
    }
    GraphQLResponse::from(schema.execute_batch(batch.data(caller)).await).into_response()
}

const PLAYGROUND: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ratchet GraphiQL</title>
<link rel="stylesheet" href="/graphql/playground/graphiql.min.css">
</head>
<body style="margin: 0">
<div id="graphiql" style="height: 100vh"></div>
<script src="/graphql/playground/react.production.min.js"></script>
<script src="/graphql/playground/react-dom.production.min.js"></script>
<script src="/graphql/playground/graphiql.min.js"></script>
<script>
  // Subscriptions authenticate with the headers set in GraphiQL's header editor.
  const fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    subscriptionUrl: (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql',
    wsConnectionParams: () => { try { return JSON.parse(localStorage.getItem('graphiql:headers') || '{}'); } catch (e) { return {}; } },
  });
  // /graphql/playground?docs opens with the documentation explorer showing.
  // (GraphiQL keeps the open pane in its storage, which it reads before its props.)
  if (new URLSearchParams(location.search).has('docs')) {
    try { localStorage.setItem('graphiql:visiblePlugin', 'Documentation Explorer'); } catch (e) {}
  }
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, { fetcher, defaultQuery: '{\n  tasks { name version description }\n}\n' })
  );
</script>
</body>
</html>
"#;

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> axum::response::Response {
    let (body, kind): (&'static [u8], &str) = match file.as_str() {
        "graphiql.min.js" => (include_bytes!("../assets/graphiql/graphiql.min.js"), "text/javascript"),
        "graphiql.min.css" => (include_bytes!("../assets/graphiql/graphiql.min.css"), "text/css"),
        "react.production.min.js" => {
            (include_bytes!("../assets/graphiql/react.production.min.js"), "text/javascript")
        }
        "react-dom.production.min.js" => {
            (include_bytes!("../assets/graphiql/react-dom.production.min.js"), "text/javascript")
        }
        _ => {
            return ratchet_server::ApiError::not_found(format!("no playground file {file}")).into_response();
        }
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "public, max-age=86400")], body).into_response()
}

fn state<'a>(ctx: &Context<'a>) -> async_graphql::Result<&'a AppState> {
    ctx.data::<AppState>()
}

/// Refuses the operation unless the caller holds `role`.
fn need(ctx: &Context<'_>, role: Role) -> async_graphql::Result<()> {
    let caller = ctx.data::<Caller>()?;
    if caller.may(role) {
        Ok(())
    } else {
        let message = format!("this operation needs the {} role; {} lacks it", role.as_str(), caller.id);
        Err(gql(ratchet_server::ApiError::new(axum::http::StatusCode::FORBIDDEN, "forbidden", message)))
    }
}

/// A failure as GraphQL reports it: the message, and in `extensions` the same `code` (and
/// `details`, such as schema violations) a REST client gets for it.
fn gql(error: impl Into<ratchet_server::ApiError>) -> async_graphql::Error {
    use async_graphql::ErrorExtensions as _;
    let error = error.into();
    async_graphql::Error::new(error.message).extend_with(|_, extensions| {
        extensions.set("code", error.code);
        if !error.details.is_null()
            && let Ok(details) = async_graphql::Value::from_json(error.details.clone())
        {
            extensions.set("details", details);
        }
    })
}

fn page(limit: Option<u64>, offset: Option<u64>, sort: &'static str) -> async_graphql::Result<Page> {
    let limit = limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(async_graphql::Error::new(format!("limit must be between 1 and 500, not {limit}")));
    }
    Ok(Page { limit, offset: offset.unwrap_or(0), sort, descending: true })
}

/// A page of jobs.
#[derive(SimpleObject)]
pub struct JobPage {
    items: Vec<JobView>,
    total: u64,
}

#[derive(SimpleObject)]
pub struct ExecutionPage {
    items: Vec<ExecutionDetail>,
    total: u64,
}

/// One log line of a run.
#[derive(SimpleObject)]
pub struct GqlLogLine {
    execution_id: String,
    /// The line's position in the run's log, from 0.
    index: usize,
    /// The job attempt, when the line comes from the record.
    attempt: Option<u32>,
    level: String,
    message: String,
}

pub struct Query;

#[Object]
impl Query {
    /// The loaded tasks, by name.
    async fn tasks(&self, ctx: &Context<'_>, tag: Option<String>) -> async_graphql::Result<Vec<TaskView>> {
        let mut tasks: Vec<TaskView> = state(ctx)?
            .service
            .tasks()
            .filter(|t| tag.as_ref().is_none_or(|tag| t.metadata.tags.contains(tag)))
            .map(|t| TaskView::from(&*t))
            .collect();
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(tasks)
    }

    /// A task by name or uuid.
    async fn task(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<Option<TaskView>> {
        Ok(state(ctx)?.service.task(&name).map(|t| TaskView::from(&*t)))
    }

    /// Jobs, newest first.
    #[graphql(complexity = "limit.unwrap_or(50) as usize * child_complexity")]
    async fn jobs(
        &self,
        ctx: &Context<'_>,
        status: Option<String>,
        task: Option<String>,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> async_graphql::Result<JobPage> {
        let status = status.as_deref().map(str::parse::<JobStatus>).transpose()?;
        let listed = state(ctx)?
            .service
            .jobs(&JobFilter { status, task }, page(limit, offset, "created_at")?)
            .await
            .map_err(gql)?;
        Ok(JobPage { items: listed.items.iter().map(JobView::from).collect(), total: listed.total })
    }

    async fn job(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<JobView> {
        Ok(JobView::from(&state(ctx)?.service.job(&id).await.map_err(gql)?))
    }

    /// Executions, newest first.
    #[graphql(complexity = "limit.unwrap_or(50) as usize * child_complexity")]
    async fn executions(
        &self,
        ctx: &Context<'_>,
        task: Option<String>,
        status: Option<String>,
        job_id: Option<String>,
        limit: Option<u64>,
        offset: Option<u64>,
    ) -> async_graphql::Result<ExecutionPage> {
        let status = match status.as_deref() {
            None => None,
            Some(name) => Some(ratchet_core::RunStatus::parse(name).ok_or_else(|| {
                gql(ratchet_server::ApiError::bad_request(format!(
                    "`{name}` is not an execution status; use success or failure"
                )))
            })?),
        };
        let filter = ExecutionFilter { task, status, job_id };
        let listed =
            state(ctx)?.service.executions(&filter, page(limit, offset, "started_at")?).await.map_err(gql)?;
        Ok(ExecutionPage { items: listed.items.into_iter().map(Into::into).collect(), total: listed.total })
    }

    async fn execution(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<ExecutionDetail> {
        Ok(state(ctx)?.service.execution(&id).await.map_err(gql)?.into())
    }

    /// A schedule by id or name.
    async fn schedule(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<ScheduleView> {
        Ok(ScheduleView::from(&state(ctx)?.service.schedule(&id).await.map_err(gql)?))
    }

    async fn schedules(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ScheduleView>> {
        Ok(state(ctx)?.service.schedules().await.map_err(gql)?.iter().map(ScheduleView::from).collect())
    }

    async fn nodes(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<NodeView>> {
        let nodes = state(ctx)?.service.nodes().await.map_err(gql)?;
        Ok(nodes.into_iter().map(NodeView::from).collect())
    }

    async fn plugins(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<PluginView>> {
        Ok(state(ctx)?.plugin_views())
    }
}

pub struct Mutation;

#[Object]
impl Mutation {
    /// Enqueue a job (runner). A repeated idempotency key returns the existing job.
    async fn enqueue(
        &self,
        ctx: &Context<'_>,
        task: String,
        input: Json<Value>,
        priority: Option<i32>,
        idempotency_key: Option<String>,
        #[graphql(
            desc = "Seconds each attempt may run, replacing the task's timeout (at most limits.max_timeout_secs)."
        )]
        timeout_secs: Option<f64>,
    ) -> async_graphql::Result<JobView> {
        need(ctx, Role::Runner)?;
        let state = state(ctx)?;
        let max = state.service.config().limits.max_timeout_secs;
        let timeout = timeout_secs.map(|secs| ratchet_service::job_timeout(secs, max)).transpose()?;
        let options = EnqueueOptions {
            priority: priority.unwrap_or(0),
            idempotency_key,
            timeout,
            ..Default::default()
        };
        let enqueued = state.service.enqueue(&task, input.0, options).await.map_err(gql)?;
        Ok(JobView::from(&enqueued.job))
    }

    /// Cancel a job that has not ended (runner).
    async fn cancel_job(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<JobView> {
        need(ctx, Role::Runner)?;
        Ok(JobView::from(&state(ctx)?.service.cancel(&id).await.map_err(gql)?))
    }

    /// Enqueue a failed or cancelled job again as a new job with the same task and input
    /// (runner).
    async fn retry_job(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<JobView> {
        need(ctx, Role::Runner)?;
        Ok(JobView::from(&state(ctx)?.service.retry(&id).await.map_err(gql)?.job))
    }

    /// Run a task now and wait for its recorded execution (runner), at most
    /// server.run_wait_secs.
    async fn run_task(
        &self,
        ctx: &Context<'_>,
        name: String,
        input: Json<Value>,
    ) -> async_graphql::Result<ExecutionDetail> {
        need(ctx, Role::Runner)?;
        let state = state(ctx)?;
        let (task, input) = state.service.check_input(&name, input.0).await.map_err(gql)?;
        let permit = state.sync_runs.clone().try_acquire_owned().map_err(|_| {
            async_graphql::Error::new(
                "too many synchronous runs in progress (server.max_sync_runs); retry shortly",
            )
        })?;
        let (id, done) = state.service.run_now(task, input, permit);
        match tokio::time::timeout(ratchet_server::seconds(state.config.run_wait_secs), done).await {
            Ok(Ok(Ok(record))) => Ok(record.into()),
            Ok(Ok(Err(unrecorded))) => Err(async_graphql::Error::new(format!(
                "run {id} ended ({}) but the database refused its record ({}); it is not in the history",
                unrecorded.record.status, unrecorded.error
            ))),
            Ok(Err(_)) => Err(async_graphql::Error::new(format!("run {id} ended without a result"))),
            Err(_) => Err(async_graphql::Error::new(format!(
                "run {id} is still going after server.run_wait_secs; query execution(id: \"{id}\") later"
            ))),
        }
    }

    /// Add a cron schedule (admin).
    async fn add_schedule(
        &self,
        ctx: &Context<'_>,
        task: String,
        cron: String,
        timezone: Option<String>,
        input: Option<Json<Value>>,
        name: Option<String>,
    ) -> async_graphql::Result<ScheduleView> {
        need(ctx, Role::Admin)?;
        let state = state(ctx)?;
        let new = NewSchedule {
            name: name.unwrap_or_else(|| task.clone()),
            task,
            cron,
            timezone: timezone.unwrap_or_else(|| "UTC".into()),
            input: input.map_or_else(|| serde_json::json!({}), |i| i.0),
            catch_up: Default::default(),
            catch_up_window: Duration::from_secs(60),
            overlap: Default::default(),
        };
        let schedule = state.service.add_schedule(new).await.map_err(gql)?;
        Ok(ScheduleView::from(&schedule))
    }

    /// Remove a schedule by id or name (admin).
    async fn remove_schedule(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<ScheduleView> {
        need(ctx, Role::Admin)?;
        Ok(ScheduleView::from(&state(ctx)?.service.remove_schedule(&id).await.map_err(gql)?))
    }

    /// Pause or resume a schedule (admin).
    async fn set_schedule_enabled(
        &self,
        ctx: &Context<'_>,
        id: String,
        enabled: bool,
    ) -> async_graphql::Result<ScheduleView> {
        need(ctx, Role::Admin)?;
        let schedule = state(ctx)?.service.set_schedule_enabled(&id, enabled).await.map_err(gql)?;
        Ok(ScheduleView::from(&schedule))
    }
}

/// How often subscriptions look for changes in the database (which any node may make).
const POLL: Duration = Duration::from_millis(100);

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The job each time its status or attempt changes, from its current state; ends when it
    /// reaches a final state.
    async fn job_status(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<impl Stream<Item = JobView>> {
        let state = std::sync::Arc::clone(state(ctx)?);
        state.service.job(&id).await.map_err(gql)?;
        Ok(stream::unfold(
            (state, id, None::<(JobStatus, u32)>, false),
            |(state, id, last, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    let job = state.service.job(&id).await.ok()?;
                    let seen = (job.status, job.attempt);
                    if last != Some(seen) {
                        let ended = job.status.is_final();
                        return Some((JobView::from(&job), (state, id, Some(seen), ended)));
                    }
                    tokio::time::sleep(POLL).await;
                }
            },
        ))
    }

    /// The log lines of an execution: live as the task writes them when this node runs it,
    /// then any line missed from its record; ends when the execution is recorded. Lines carry
    /// their `index` in the run's log (a follower that joined late gets the early lines last).
    async fn execution_logs(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<impl Stream<Item = GqlLogLine>> {
        let state = std::sync::Arc::clone(state(ctx)?);
        let live = state.service.follow_logs();
        let recorded = state.service.execution(&id).await.is_ok();
        if !recorded && !state.service.is_running(&id) {
            return Err(async_graphql::Error::new(format!(
                "no execution {id}: it is neither recorded nor running on this node"
            )));
        }
        Ok(spawn_stream(move |lines| async move {
            follow_execution(&state, &id, &lines, live).await;
        }))
    }

    /// The log lines of every attempt of a job: live for an attempt this node runs and, on
    /// PostgreSQL, for one another node runs; from the record for the others (and for any line
    /// the relay between nodes missed); ends when the job reaches a final state.
    async fn job_logs(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<impl Stream<Item = GqlLogLine>> {
        let state = std::sync::Arc::clone(state(ctx)?);
        state.service.job(&id).await.map_err(gql)?;
        let mut remote = state.service.follow_remote_logs();
        Ok(spawn_stream(move |lines| async move {
            // Executions whose lines were all sent (followed live here, or from the record).
            let mut done: HashSet<String> = HashSet::new();
            // Lines other nodes relayed and that were sent, by execution.
            let mut relayed: HashMap<String, HashSet<usize>> = HashMap::new();
            loop {
                let live = state.service.follow_logs();
                let Ok(job) = state.service.job(&id).await else { return };
                if let Some(execution) = state.service.running_execution(&id)
                    && done.insert(execution.clone())
                {
                    if !follow_execution(&state, &execution, &lines, live).await {
                        return;
                    }
                    continue;
                }
                let filter = ExecutionFilter { job_id: Some(id.clone()), ..Default::default() };
                let page = Page { limit: 100, offset: 0, sort: "started_at", descending: false };
                let Ok(executions) = state.service.executions(&filter, page).await else { return };
                for execution in &executions.items {
                    if !done.insert(execution.id.clone()) {
                        continue;
                    }
                    let sent = relayed.remove(&execution.id).unwrap_or_default();
                    for line in log_lines(execution).into_iter().filter(|l| !sent.contains(&l.index)) {
                        if lines.send(line).await.is_err() {
                            return;
                        }
                    }
                }
                if job.status.is_final() {
                    return;
                }
                let relaying = Relaying { job: &id, done: &done, relayed: &mut relayed, lines: &lines };
                if !relaying.forward(&mut remote, POLL).await {
                    return;
                }
            }
        }))
    }
}

/// Forwards the lines other nodes relay for one job's attempts.
struct Relaying<'a> {
    job: &'a str,
    /// Executions whose lines were all sent: their relayed lines are late.
    done: &'a HashSet<String>,
    relayed: &'a mut HashMap<String, HashSet<usize>>,
    lines: &'a tokio::sync::mpsc::Sender<GqlLogLine>,
}

impl Relaying<'_> {
    /// Sends the job's relayed lines heard during `wait`, each once. False when the subscriber
    /// went away.
    async fn forward(
        self,
        remote: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<RemoteLine>>,
        wait: Duration,
    ) -> bool {
        use tokio::sync::broadcast::error::RecvError;
        let waited = tokio::time::sleep(wait);
        tokio::pin!(waited);
        loop {
            tokio::select! {
                line = remote.recv() => match line {
                    Ok(line) if line.job == self.job && !self.done.contains(&line.execution) => {
                        if !self.relayed.entry(line.execution.clone()).or_default().insert(line.index) {
                            continue;
                        }
                        let line = GqlLogLine {
                            execution_id: line.execution.clone(),
                            index: line.index,
                            attempt: None,
                            level: line.level.as_str().to_owned(),
                            message: line.message.clone(),
                        };
                        if self.lines.send(line).await.is_err() {
                            return false;
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {
                        waited.as_mut().await;
                        return true;
                    }
                },
                () = &mut waited => return true,
            }
        }
    }
}

/// A stream fed by `produce`, which runs on a task of its own until it returns or the
/// subscriber goes away (its sends then fail).
fn spawn_stream<T, F, Fut>(produce: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(produce(sender));
    stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
}

/// Sends the lines of execution `id`: live ones from `live` while it runs, then those missing
/// from its record. False when the subscriber went away.
async fn follow_execution(
    state: &AppState,
    id: &str,
    lines: &tokio::sync::mpsc::Sender<GqlLogLine>,
    mut live: tokio::sync::broadcast::Receiver<ratchet_core::supervisor::LiveLine>,
) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    let mut sent = HashSet::new();
    let mut ticker = tokio::time::interval(POLL);
    let mut closed = false;
    loop {
        tokio::select! {
            line = live.recv(), if !closed => match line {
                Ok(line) if &*line.execution_id == id => {
                    sent.insert(line.index);
                    let line = GqlLogLine {
                        execution_id: id.to_owned(),
                        index: line.index,
                        attempt: None,
                        level: line.level.as_str().to_owned(),
                        message: line.message,
                    };
                    if lines.send(line).await.is_err() {
                        return false;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => closed = true,
            },
            _ = ticker.tick() => {
                let Ok(record) = state.service.execution(id).await else { continue };
                for line in log_lines(&record).into_iter().filter(|l| !sent.contains(&l.index)) {
                    if lines.send(line).await.is_err() {
                        return false;
                    }
                }
                return true;
            }
        }
    }
}

fn log_lines(execution: &ratchet_storage::ExecutionRecord) -> Vec<GqlLogLine> {
    execution
        .logs
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .enumerate()
                .map(|(index, line)| GqlLogLine {
                    execution_id: execution.id.clone(),
                    index,
                    attempt: Some(execution.attempt),
                    level: line["level"].as_str().unwrap_or("info").to_owned(),
                    message: line["message"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}
