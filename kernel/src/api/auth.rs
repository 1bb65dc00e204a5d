//! Who may call what: every protected route's role comes from the one route table
//! ([`super::routes::ROUTES`]); the auth plugin says who the caller is. With no auth plugin
//! every caller is an anonymous admin, and `serve` keeps the server on loopback.

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::routes::required_role;

/// Roles, each allowed what the one before it is: viewers read, runners also run and
/// enqueue, admins also manage schedules and plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Runner,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Runner, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Runner => "runner",
            Role::Admin => "admin",
        }
    }

    fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == name)
    }
}

/// The authenticated caller of a request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    /// The highest role the principal holds; `None` when it holds none Ratchet knows.
    pub role: Option<Role>,
}

impl Caller {
    pub fn may(&self, needed: Role) -> bool {
        self.role.is_some_and(|role| role >= needed)
    }

    fn anonymous() -> Caller {
        Caller { id: "anonymous".into(), role: Some(Role::Admin) }
    }
}

/// Checks the caller against the route's role; refuses routes missing from the table.
pub async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| request.uri().path().to_owned(), |m| m.as_str().to_owned());
    let Some(needed) = required_role(request.method().as_str(), &path) else {
        if super::routes::ROUTES.iter().any(|r| r.path == path) {
            // Another method of a known route: the router answers 405 without running anything.
            return next.run(request).await;
        }
        // Fail closed: a route nobody gave a role to is nobody's.
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("{path} has no role in the route table"),
        )
        .into_response();
    };
    let caller = match identify(&state, request.headers()).await {
        Ok(caller) => caller,
        Err(error) => return error.into_response(),
    };
    if !caller.may(needed) {
        let held = caller.role.map_or("no role", Role::as_str);
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{} {path} needs the {} role; {} has {held}",
                request.method(),
                needed.as_str(),
                caller.id
            ),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// Asks the auth plugin who sent a request with `headers`; 401 when it says no one it knows.
pub async fn identify(state: &AppState, headers: &axum::http::HeaderMap) -> Result<Caller, ApiError> {
    let Some(auth) = &state.service.plugins().auth else {
        return Ok(Caller::anonymous());
    };
    let headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| *name != axum::http::header::COOKIE)
        .map(|(name, value)| {
            (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
        })
        .collect();
    match auth.authenticate(headers).await {
        Ok(principal) => {
            let role = principal.roles.iter().filter_map(|r| Role::parse(r)).max();
            Ok(Caller { id: principal.id, role })
        }
        Err(reason) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            format!("{reason}; send an API key as `authorization: Bearer KEY` or `x-api-key: KEY`"),
        )),
    }
}
