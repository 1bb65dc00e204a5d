//! `/api/v1/nodes`, `/api/v1/workers`, `/api/v1/plugins`: what runs Ratchet.

use axum::Json;
use axum::extract::State;

use ratchet_server::AppState;
use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::{NodeView, PluginView, WorkerView};

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
