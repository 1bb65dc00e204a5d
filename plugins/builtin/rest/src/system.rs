//! `/api/v1/nodes`, `/api/v1/workers`, `/api/v1/plugins`: what runs Ratchet; `/api/v1/me`:
//! who calls it.

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::{NodeView, PluginView, WorkerView};
use ratchet_server::{AppState, Caller, Role};

/// The nodes sharing this database.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "system",
    responses((status = 200, body = Vec<NodeView>), (status = "4XX", body = ErrorBody)))]
pub async fn list_nodes(State(state): State<AppState>) -> Result<Json<Vec<NodeView>>, ApiError> {
    let nodes = state.service.nodes().await?;
    Ok(Json(nodes.into_iter().map(Into::into).collect()))
}

/// The worker processes of every node, as last reported.
#[utoipa::path(get, path = "/api/v1/workers", tag = "system",
    responses((status = 200, body = Vec<WorkerView>), (status = "4XX", body = ErrorBody)))]
pub async fn list_workers(State(state): State<AppState>) -> Result<Json<Vec<WorkerView>>, ApiError> {
    let workers = state.service.workers().await?;
    Ok(Json(workers.into_iter().map(Into::into).collect()))
}

/// The plugins this node loaded.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "system",
    responses((status = 200, body = Vec<PluginView>), (status = "4XX", body = ErrorBody)))]
pub async fn list_plugins(State(state): State<AppState>) -> Result<Json<Vec<PluginView>>, ApiError> {
    Ok(Json(state.plugin_views()))
}

/// The caller as the auth plugin identified it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct CallerView {
    /// The principal (`anonymous` without an auth plugin, which makes every caller an admin).
    pub id: String,
    /// The highest role it holds (viewers read; runners also run, enqueue, cancel, retry and
    /// replay; admins also manage schedules, pauses, secrets and plugins); none when it holds
    /// no role Ratchet knows.
    pub role: Option<Role>,
}

/// Who the key belongs to and which role it holds: what a client may offer its user (the
/// dashboard shows only the buttons the role allows; the server checks every call anyway).
#[utoipa::path(get, path = "/api/v1/me", tag = "system",
    responses((status = 200, body = CallerView), (status = "4XX", body = ErrorBody)))]
pub async fn who_am_i(Extension(caller): Extension<Caller>) -> Json<CallerView> {
    Json(CallerView { id: caller.id, role: caller.role })
}
