//! The WASM API-surface plugins, mounted under `/plugins/{name}/`: the server checks the
//! caller (the route table's roles), then hands the request to the plugin and its answer back.

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use super::AppState;
use super::error::ApiError;
use super::{Caller, Role};
use ratchet_plugin_host::wasm::SurfaceRequest;

/// Marks a response as the plugin's own: the server passes it on unchanged.
#[derive(Debug, Clone, Copy)]
pub struct FromPlugin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/plugins/{plugin}", get(root).post(root))
        .route("/plugins/{plugin}/", get(root).post(root))
        .route("/plugins/{plugin}/{*path}", any(nested))
}

async fn root(state: State<AppState>, Path(plugin): Path<String>, request: Request) -> Response {
    forward(state, plugin, "/".into(), request).await
}

async fn nested(
    state: State<AppState>,
    Path((plugin, path)): Path<(String, String)>,
    request: Request,
) -> Response {
    forward(state, plugin, format!("/{path}"), request).await
}

/// Headers a caller sends that a plugin never sees: credentials, and the names the server sets.
const WITHHELD: [&str; 4] = ["authorization", "proxy-authorization", "x-api-key", "cookie"];

/// The header carrying the authenticated caller's id to the plugin.
pub const PRINCIPAL_HEADER: &str = "x-ratchet-principal";
/// The header carrying the caller's role (`viewer`, `runner`, `admin`; empty for none).
pub const ROLE_HEADER: &str = "x-ratchet-role";

/// The request's headers as the plugin gets them: credentials removed, and the principal the
/// auth plugin identified in [`PRINCIPAL_HEADER`] and [`ROLE_HEADER`] (set only by the server:
/// a caller's own `x-ratchet-*` headers are dropped).
fn plugin_headers(headers: &HeaderMap, caller: Option<&Caller>) -> Vec<(String, String)> {
    let mut forwarded: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !WITHHELD.contains(&name.as_str()) && !name.as_str().starts_with("x-ratchet-"))
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    if let Some(caller) = caller {
        forwarded.push((PRINCIPAL_HEADER.to_owned(), caller.id.clone()));
        forwarded.push((ROLE_HEADER.to_owned(), caller.role.map_or("", Role::as_str).to_owned()));
    }
    forwarded
}

async fn forward(State(state): State<AppState>, plugin: String, path: String, request: Request) -> Response {
    let Some(surface) = state.service.plugins().surfaces.iter().find(|s| s.name == plugin) else {
        return ApiError::not_found(format!("no api-surface plugin named `{plugin}` is loaded"))
            .into_response();
    };
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, state.config.max_body_bytes).await {
        Ok(body) => body,
        Err(_) => return ApiError::payload_too_large().into_response(),
    };
    let request = SurfaceRequest {
        method: parts.method.to_string(),
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: plugin_headers(&parts.headers, parts.extensions.get::<Caller>()),
        body: body.to_vec(),
    };
    match surface.handle(request).await {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut response = (status, answer.body).into_response();
            for (name, value) in answer.headers {
                let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::try_from(value)) else {
                    continue;
                };
                // The server frames the body itself.
                if !matches!(name.as_str(), "content-length" | "transfer-encoding" | "connection") {
                    response.headers_mut().append(name, value);
                }
            }
            response.extensions_mut().insert(FromPlugin);
            response
        }
        Err(error) => ApiError::new(StatusCode::BAD_GATEWAY, "plugin_failed", error).into_response(),
    }
}
