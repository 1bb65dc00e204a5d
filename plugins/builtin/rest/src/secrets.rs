//! `/api/v1/secrets` (admin): the secrets tasks read. Values go in, never out: a listing names
//! the secrets and when they were set.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::ToSchema;

use ratchet_server::error::{ApiError, ErrorBody};
use ratchet_server::model::SecretView;
use ratchet_server::{AppState, JsonObject};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRequest {
    /// The value: at least 4 characters, at most 64 KiB. It is sealed before it is stored and
    /// never returned.
    pub value: String,
}

/// The secrets' names and when they were set (admin); never their values.
#[utoipa::path(get, path = "/api/v1/secrets", tag = "secrets",
    responses((status = 200, body = Vec<SecretView>), (status = "4XX", body = ErrorBody)))]
pub async fn list_secrets(State(state): State<AppState>) -> Result<Json<Vec<SecretView>>, ApiError> {
    let listed = state.service.secrets().list().await?;
    Ok(Json(listed.into_iter().map(|s| SecretView::new(s.name, s.created_at, s.updated_at)).collect()))
}

/// Set a secret (admin): 201 when new, 200 when its value was replaced; 409 when this node has
/// no secrets key.
#[utoipa::path(put, path = "/api/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path)),
    request_body = SecretRequest,
    responses((status = 201, body = SecretView), (status = 200, body = SecretView), (status = "4XX", body = ErrorBody)))]
pub async fn set_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonObject(request): JsonObject<SecretRequest>,
) -> Result<(StatusCode, Json<SecretView>), ApiError> {
    let secrets = state.service.secrets();
    let created = secrets.set(&name, &request.value).await?;
    let secret = secrets.info(&name).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(SecretView::new(secret.name, secret.created_at, secret.updated_at))))
}

/// Remove a secret (admin); 404 when there is none of that name.
#[utoipa::path(delete, path = "/api/v1/secrets/{name}", tag = "secrets", params(("name" = String, Path)),
    responses((status = 204), (status = "4XX", body = ErrorBody)))]
pub async fn remove_secret(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.service.secrets().remove(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
