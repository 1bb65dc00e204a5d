//! The GraphQL surface at `/graphql` (queries and mutations over POST, subscriptions over
//! WebSocket on GET) with GraphiQL at `/graphql/playground`, served from the binary. Limits:
//! depth, complexity and batch size. Reading needs a viewer; each mutation checks its role.

mod introspection;
mod mutation;
mod playground;
mod query;
mod subscription;

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
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use serde_json::Value;

use ratchet_core::trace::TraceContext;
use ratchet_server::routes::{Route, public, route};
use ratchet_server::{AppState, Caller, Role, Trace, builtin_info};
use ratchet_views::{
    ExecutionDetail, JobView, NodeView, PauseView, PluginView, ScheduleView, SecretView, TaskView,
};

use crate::introspection::Asks;
use ratchet_service::EnqueueOptions;
use ratchet_service::log_relay::RemoteLine;
use ratchet_storage::{ExecutionFilter, JobFilter, JobStatus, NewSchedule, Page};

pub use mutation::Mutation;
pub use query::Query;
pub use subscription::Subscription;

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
            post(
                move |Extension(caller): Extension<Caller>,
                      Trace(trace): Trace,
                      request: GraphQLBatchRequest| {
                    let schema = schema.clone();
                    async move { execute(&schema, caller, trace, request).await }
                },
            ),
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
            .route("/graphql/playground", get(|| async { Html(playground::PLAYGROUND) }))
            .route("/graphql/playground/{file}", get(playground::asset))
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
    trace: TraceContext,
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
    GraphQLResponse::from(schema.execute_batch(batch.data(caller).data(trace)).await).into_response()
}

/// The trace of the request the operation came in (a new one on a subscription socket).
fn trace(ctx: &Context<'_>) -> TraceContext {
    ctx.data_opt::<TraceContext>().cloned().unwrap_or_else(TraceContext::root)
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

/// A job's new state; or, when `missed` is above 0, how many changes were not sent one by one
/// (the other fields are then null: read the lists again).
#[derive(SimpleObject)]
pub struct GqlJobChange {
    job_id: Option<String>,
    task: Option<String>,
    /// queued, running, retrying, completed, failed or cancelled.
    status: Option<String>,
    /// The attempt it is on (0 before its first start).
    attempt: Option<u32>,
    missed: u64,
}

impl GqlJobChange {
    fn changed(change: &ratchet_service::job_feed::JobChange) -> GqlJobChange {
        GqlJobChange {
            job_id: Some(change.job.clone()),
            task: Some(change.task.clone()),
            status: Some(change.status.as_str().to_owned()),
            attempt: Some(change.attempt),
            missed: 0,
        }
    }

    fn missing(missed: u64) -> GqlJobChange {
        GqlJobChange { job_id: None, task: None, status: None, attempt: None, missed }
    }
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
