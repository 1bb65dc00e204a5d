//! The HTTP front door of `ratchet serve`: the listener, authentication before routing,
//! limits, the one error shape, and the mounting of API surfaces. Every surface goes through
//! [`ApiSurface`]: the built-in REST and GraphQL surfaces (crates of their own, linked in) and
//! the API-surface plugins (WASM or native, under `/plugins/{name}`). Around them sit the
//! operations routes (`/health`, `/ready`, `/metrics`) and the protections every request
//! passes: a request id, the one error shape, per-client rate limits, a body size limit, a
//! timeout, CORS, and the route table's roles checked against the auth plugin.

pub mod auth;
mod body_limit;
mod client;
pub mod error;
mod extract;
pub mod listener;
pub mod model;
pub mod operations;
pub mod routes;
mod surfaces;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;
use tower::ServiceExt as _;

pub use auth::{Caller, Role};
pub use error::{ApiError, request_id};
pub use extract::{JsonObject, Trace};

use model::PluginView;
use ratchet_core::config::ServerConfig;
use ratchet_core::trace::{TRACEPARENT, TraceContext};
pub use ratchet_plugin_host::PluginInfo;
use ratchet_service::Service;

/// What every handler reaches.
pub struct ApiState {
    pub service: Arc<Service>,
    pub config: ServerConfig,
    /// Permits for synchronous runs in progress.
    pub sync_runs: Arc<Semaphore>,
    /// True once the node stops ([`app`]).
    pub stopping: tokio::sync::watch::Receiver<bool>,
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// `server.trusted_proxies`, parsed.
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The built-in plugins: the loader of `server.tasks` and the mounted surfaces.
    surfaces: Vec<PluginInfo>,
    routes: routes::RouteTable,
}

pub type AppState = Arc<ApiState>;

impl ApiState {
    pub fn plugin_views(&self) -> Vec<PluginView> {
        self.service.plugins().list().iter().chain(&self.surfaces).map(PluginView::from).collect()
    }
}

/// An API surface: routes mounted into the server, and the table of who may call them. The
/// built-in surfaces use this richer in-process contract (axum routers over the service)
/// rather than the WIT's request/response one, so they keep streaming bodies, WebSockets and
/// typed extractors; the server treats both alike: one route table, one auth check before
/// routing, the same limits.
pub trait ApiSurface: Send + Sync {
    fn info(&self) -> PluginInfo;
    /// Every route [`ApiSurface::protected`] and [`ApiSurface::public`] answer, with the role
    /// each needs; a route missing here is refused to callers the auth plugin does not know.
    fn routes(&self) -> &'static [routes::Route];
    fn protected(&self, state: &AppState) -> Router<AppState>;
    fn public(&self, _state: &AppState) -> Router<AppState> {
        Router::new()
    }
}

/// Refuses to serve an unauthenticated API beyond loopback unless the operator said so.
pub fn check_exposure(config: &ServerConfig, bound: SocketAddr, auth_enabled: bool) -> Result<(), String> {
    if auth_enabled || bound.ip().is_loopback() || config.allow_unauthenticated_remote {
        return Ok(());
    }
    Err(format!(
        "refusing to serve on {bound} with no auth plugin: anyone who reaches it could run tasks. Enable an \
         auth plugin (kind: auth, e.g. api-key-auth), bind to 127.0.0.1, or set \
         server.allow_unauthenticated_remote: true to accept the risk"
    ))
}

/// The whole HTTP application.
/// The server's application over `service`: `surfaces` mounted behind one route table and auth
/// check. `stopping` turns true when the node stops: long-lived streams end then, so the
/// listener's graceful stop does not wait on them.
pub fn app(
    service: Arc<Service>,
    config: ServerConfig,
    surfaces: &[Box<dyn ApiSurface>],
    stopping: tokio::sync::watch::Receiver<bool>,
) -> Router {
    let limiter = (config.rate_limit_per_second > 0).then(|| {
        let per_second =
            std::num::NonZeroU32::new(config.rate_limit_per_second).unwrap_or(std::num::NonZeroU32::MIN);
        let burst =
            std::num::NonZeroU32::new(config.rate_limit_burst.max(1)).unwrap_or(std::num::NonZeroU32::MIN);
        RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst))
    });
    // Checked when the configuration loaded; should a bad entry get here, no proxy is trusted.
    let trusted_proxies = config.trusted_proxy_ranges().unwrap_or_else(|error| {
        tracing::error!("{error}; trusting no proxy");
        Vec::new()
    });
    let state = Arc::new(ApiState {
        service,
        stopping,
        sync_runs: Arc::new(Semaphore::new(config.max_sync_runs.max(1))),
        limiter,
        trusted_proxies,
        surfaces: std::iter::once(ratchet_plugin_host::loaders::server_tasks_info(&config.tasks))
            .chain(surfaces.iter().map(|s| s.info()))
            .collect(),
        routes: routes::RouteTable::new(route_table(surfaces)),
        config,
    });
    forget_idle_clients(&state);
    let mut protected = operations::protected();
    let mut public = operations::public();
    if !state.service.plugins().surfaces.is_empty() {
        protected = protected.merge(surfaces::router());
    }
    for surface in surfaces {
        protected = protected.merge(surface.protected(&state));
        public = public.merge(surface.public(&state));
    }
    let protected = protected.route_layer(from_fn_with_state(Arc::clone(&state), record_metrics));
    let served: Router = public
        .merge(protected)
        .fallback(|| async { ApiError::from_status(StatusCode::NOT_FOUND) })
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(from_fn_with_state(Arc::clone(&state), body_limit::limit_body))
        // Before routing: every method of every path, known or not, is checked here.
        .layer(from_fn_with_state(Arc::clone(&state), auth::authorize))
        .layer(from_fn_with_state(Arc::clone(&state), limit))
        // A bug in a handler answers 500 in the one shape; the connection and the node live on.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send>| {
            ApiError::internal("the server failed answering this request; the log holds the details")
                .into_response()
        }))
        .with_state(Arc::clone(&state));
    let with_cors = served.clone().layer(cors(&state.config));
    let origins = state.config.cors_origins.clone();
    // The CORS layer answers every OPTIONS itself; only a real preflight from an allowed origin
    // may skip authentication, so any other OPTIONS goes the way of every request.
    let front = tower::service_fn(move |request: Request| {
        let service = if is_honoured_preflight(&request, &origins) || request.method() != Method::OPTIONS {
            with_cors.clone()
        } else {
            served.clone()
        };
        service.oneshot(request)
    });
    Router::new().fallback_service(front).layer(from_fn(envelope))
}

/// A CORS preflight (OPTIONS naming the method it asks for) from an origin the operator allows.
fn is_honoured_preflight(request: &Request, origins: &[String]) -> bool {
    let headers = request.headers();
    request.method() == Method::OPTIONS
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
        && headers
            .get(header::ORIGIN)
            .and_then(|origin| origin.to_str().ok())
            .is_some_and(|origin| origins.iter().any(|allowed| allowed == origin))
}

/// The server's routes, the plugin surfaces' and every built-in surface's.
fn route_table(surfaces: &[Box<dyn ApiSurface>]) -> Vec<routes::Route> {
    let mut table = routes::OPERATIONS.to_vec();
    table.extend_from_slice(routes::PLUGIN_SURFACES);
    for surface in surfaces {
        table.extend_from_slice(surface.routes());
    }
    table
}

fn cors(config: &ServerConfig) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = config.cors_origins.iter().filter_map(|o| o.parse().ok()).collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            axum::http::Method::GET,
            axum::http::Method::POST,
            axum::http::Method::PATCH,
            axum::http::Method::DELETE,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static(TRACEPARENT),
        ])
        .expose_headers([
            header::HeaderName::from_static(REQUEST_ID_HEADER),
            header::HeaderName::from_static(TRACE_ID_HEADER),
            header::RETRY_AFTER,
        ])
}

const REQUEST_ID_HEADER: &str = "x-request-id";
/// The response header naming the request's trace id (W3C Trace Context).
const TRACE_ID_HEADER: &str = "x-trace-id";

/// Gives every request an id (the caller's `x-request-id` when it is sane) and a trace (the
/// caller's `traceparent` when it is valid, else a new one, in the request's extensions),
/// answers every failure in the one error shape, and stamps both ids on the response.
async fn envelope(mut request: Request, next: Next) -> Response {
    let trace = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .unwrap_or_else(TraceContext::root);
    let trace_id = HeaderValue::from_str(trace.trace_id()).ok();
    request.extensions_mut().insert(trace);
    let id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    error::REQUEST_ID
        .scope(id.clone(), async move {
            let mut response = next.run(request).await;
            let is_json = response
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/json"));
            let upgrading = response.status() == StatusCode::SWITCHING_PROTOCOLS;
            let from_plugin = response.extensions().get::<surfaces::FromPlugin>().is_some();
            let failed = response.status().is_client_error() || response.status().is_server_error();
            if failed && !is_json && !upgrading && !from_plugin {
                let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
                response = ApiError::from_status(response.status()).into_response();
                if let Some(retry_after) = retry_after {
                    response.headers_mut().insert(header::RETRY_AFTER, retry_after);
                }
            }
            if let Ok(value) = HeaderValue::from_str(&id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            if let Some(trace_id) = trace_id {
                response.headers_mut().insert(TRACE_ID_HEADER, trace_id);
            }
            response
        })
        .await
}

/// Per-client rate limit (not on the health routes; the client is found by [`client`]) and the
/// request timeout.
async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let exempt = path == "/health" || path == "/ready";
    if let (Some(limiter), false) = (&state.limiter, exempt) {
        let client = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|peer| client::client_address(peer.0.ip(), request.headers(), &state.trusted_proxies));
        if let Some(client) = client
            && let Err(not_until) = limiter.check_key(&client)
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests per second from {client} (server.rate_limit_per_second); retry in {seconds} s",
                    state.config.rate_limit_per_second
                ),
            )
            .retry_after(seconds.max(1))
            .into_response();
        }
    }
    let timeout = seconds(state.config.request_timeout_secs.max(0.001));
    match tokio::time::timeout(timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(format!(
            "the request took longer than {} s (server.request_timeout_secs)",
            state.config.request_timeout_secs
        ))
        .retry_after(1)
        .into_response(),
    }
}

async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("", |m| m.as_str()).to_owned();
    let response = next.run(request).await;
    state.service.metrics.http(&method, &route, response.status().as_u16(), started.elapsed());
    response
}

/// `secs` as a duration; negative is zero, too large or not a number is forever.
pub fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

/// Forgets clients the rate limiter has not seen for a while, so its memory stays bounded;
/// stops when the application is dropped.
fn forget_idle_clients(state: &AppState) {
    let weak = Arc::downgrade(state);
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let Some(state) = weak.upgrade() else { return };
            if let Some(limiter) = &state.limiter {
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }
    });
}

/// How a built-in surface shows in `ratchet plugins list` and `/api/v1/plugins`.
pub fn builtin_info(name: &str, description: &str) -> PluginInfo {
    PluginInfo {
        name: name.to_owned(),
        plugin: name.to_owned(),
        kind: ratchet_plugin_host::PluginKind::ApiSurface,
        source: format!("builtin:{name}"),
        interface: "native".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: description.to_owned(),
        requested: Vec::new(),
        granted: Vec::new(),
    }
}
