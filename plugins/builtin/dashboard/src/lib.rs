//! The built-in dashboard: a page at `/` with its script and styles under `/dashboard/`, served
//! from the binary (no CDN, no build step: plain HTML, CSS and JavaScript in `assets/`). The
//! page holds no data, so it is public; everything it shows it reads from the REST API with
//! the key the operator types in, which the browser keeps for the tab only. The server's auth
//! and roles apply to those calls as to any other client's.

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use ratchet_server::routes::{Route, public};
use ratchet_server::{ApiSurface, AppState};

/// The dashboard's routes: all public (the data behind them is not).
pub const ROUTES: &[Route] = &[public("GET", "/"), public("GET", "/dashboard/{file}")];

/// What the page may load and call: this server only. Nothing is fetched from elsewhere, and a
/// script injected through data could not send it anywhere else either.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                      connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub struct DashboardSurface;

impl ApiSurface for DashboardSurface {
    fn info(&self) -> ratchet_server::PluginInfo {
        ratchet_server::builtin_info("dashboard", "the web dashboard at /, drawn from the REST API")
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    fn protected(&self, _state: &AppState) -> Router<AppState> {
        Router::new()
    }

    fn public(&self, _state: &AppState) -> Router<AppState> {
        Router::new().route("/", get(|| async { page() })).route("/dashboard/{file}", get(asset))
    }
}

fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../assets/index.html"),
    )
        .into_response()
}

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "dashboard.js" => (include_str!("../assets/dashboard.js"), "text/javascript; charset=utf-8"),
        "dashboard.css" => (include_str!("../assets/dashboard.css"), "text/css; charset=utf-8"),
        _ => return ratchet_server::ApiError::not_found(format!("no dashboard file {file}")).into_response(),
    };
    // Revalidated on every load: a new binary's page never runs the old script.
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}
