//! `/health` (liveness: touches nothing slow), `/ready` (database and workers) and
//! `/metrics` (Prometheus text).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};

/// Routes open to everyone.
pub fn public() -> Router<AppState> {
    Router::new().route("/health", get(health)).route("/ready", get(ready))
}

/// Operations routes behind the auth check.
pub fn protected() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Ratchet's version.
    pub version: String,
}

/// Liveness: answers as long as the process serves requests.
#[utoipa::path(get, path = "/health", tag = "operations", security(()), responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok".into(), version: env!("CARGO_PKG_VERSION").into() })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `not ready`.
    pub status: String,
    /// `ok`, or why the database cannot be used.
    pub database: String,
    /// `ok`, or why no worker can run.
    pub workers: String,
    /// `ok`, or what this node does not hear yet from the other nodes sharing its PostgreSQL
    /// database (job changes, live log lines). Informative: the node serves and runs jobs
    /// without it, so it does not make the node not ready.
    pub other_nodes: String,
    /// Jobs waiting and running (`queued`, `retrying`, `running`), as this node's heartbeat
    /// last counted them (every 10 s; empty before the first count). Readiness itself never
    /// counts: a count of every job kept, on a database holding months of history, would
    /// outlast the probe's 2 s.
    #[schema(value_type = Object)]
    pub jobs: Value,
}

/// How long readiness waits for the database.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the database answers within 2 s and a worker can run.
#[utoipa::path(get, path = "/ready", tag = "operations", security(()),
    responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let service = &state.service;
    // The pool waits up to 30 s for a connection; readiness must answer fast.
    let database = match tokio::time::timeout(READY_TIMEOUT, service.database_ping()).await {
        Ok(answer) => answer.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", READY_TIMEOUT.as_secs())),
    };
    // Reads may work while writes fail (a full disk): see whether they work again.
    let database = match (database, service.write_failure()) {
        (Ok(()), Some(_)) => {
            let _ = tokio::time::timeout(READY_TIMEOUT, service.probe_writes()).await;
            match service.write_failure() {
                Some(failure) => Err(format!(
                    "cannot write since {}: {}",
                    ratchet_core::time::format(failure.since_ms),
                    failure.message
                )),
                None => Ok(()),
            }
        }
        (database, _) => database,
    };
    let workers = service.workers_unavailable();
    let ok = database.is_ok() && workers.is_none();
    let jobs = match (&database, service.queue_as_counted()) {
        (Ok(()), Some((_, counts))) => counts,
        _ => Value::Object(serde_json::Map::new()),
    };
    let body = Readiness {
        status: if ok { "ready" } else { "not ready" }.into(),
        database: database.as_ref().map_or_else(Clone::clone, |_| "ok".into()),
        workers: workers.unwrap_or_else(|| "ok".into()),
        other_nodes: service.not_hearing().unwrap_or_else(|| "ok".into()),
        jobs,
    };
    (if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, Json(body))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain", body = String), (status = "4XX", body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let service = Arc::clone(&state.service);
    let jobs = tokio::time::timeout(Duration::from_secs(2), service.job_counts())
        .await
        .map_err(|_| ApiError::unavailable("the database did not answer within 2 s").retry_after(1))??;
    let text =
        service.metrics.render(&jobs, &service.worker_status(), service.plugins(), service.claimed_waiting());
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text))
}
