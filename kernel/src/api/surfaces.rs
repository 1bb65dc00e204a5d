//! The WASM API-surface plugins, mounted under `/plugins/{name}/`: the server checks the
//! caller (the route table's roles), then hands the request to the plugin and its answer back.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};

use super::AppState;
use super::error::ApiError;
use crate::plugins::wasm::SurfaceRequest;

/// Marks a response as the plugin's own: the server passes it on unchanged.
#[derive(Debug, Clone, Copy)]
pub struct FromPlugin;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/plugins/{plugin}", get(root).post(root))
        .route("/plugins/{plugin}/", get(root).post(root))
        .route("/plugins/{plugin}/{*path}", any(nested))
}

async fn root(
    state: State<AppState>,
    Path(plugin): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    forward(state, plugin, "/".into(), method, uri, headers, body).await
}

async fn nested(
    state: State<AppState>,
    Path((plugin, path)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    forward(state, plugin, format!("/{path}"), method, uri, headers, body).await
}

async fn forward(
    State(state): State<AppState>,
    plugin: String,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(surface) = state.service.plugins().surfaces.iter().find(|s| s.name == plugin) else {
        return ApiError::not_found(format!("no api-surface plugin named `{plugin}` is loaded"))
            .into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return ApiError::payload_too_large().into_response();
        }
        Err(rejection) => return ApiError::bad_request(rejection.body_text()).into_response(),
    };
    let request = SurfaceRequest {
        method: method.to_string(),
        path,
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .filter(|(name, _)| *name != axum::http::header::COOKIE)
            .map(|(name, value)| {
                (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect(),
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
