//! Who may call what: every protected route's role comes from the one route table
//! ([`super::routes::ROUTES`]); the auth plugin says who the caller is. With no auth plugin
//! every caller is an anonymous admin, and `serve` keeps the server on loopback.

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::error::ApiError;
use super::routes::Verdict;

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

/// Checks every request before routing: the route table says what the path and method need
/// (`HEAD` its `GET`'s role); a known path with another method is answered 405, and an unknown
/// path 404, only to callers the auth plugin knows, so neither reveals anything to strangers
/// nor reaches a handler (or an API-surface plugin) unchecked.
pub async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let needed = match state.routes.lookup(method.as_str(), &path) {
        Verdict::Route(route) => route.role(),
        Verdict::OtherMethod { public: true, allow } => return method_not_allowed(&method, &path, &allow),
        Verdict::OtherMethod { public: false, allow } => {
            return match identify(&state, request.headers()).await {
                Ok(_) => method_not_allowed(&method, &path, &allow),
                Err(error) => error.into_response(),
            };
        }
        Verdict::UnknownPath => {
            return match identify(&state, request.headers()).await {
                Ok(_) => next.run(request).await,
                Err(error) => error.into_response(),
            };
        }
    };
    let Some(needed) = needed else {
        return next.run(request).await;
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
            format!("{method} {path} needs the {} role; {} has {held}", needed.as_str(), caller.id),
        )
        .into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}

/// 405 naming the methods the path takes, in the `Allow` header too.
fn method_not_allowed(method: &Method, path: &str, allow: &[&str]) -> Response {
    let allow = allow.join(", ");
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{path} does not take {method}; it takes {allow}"),
    )
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&allow) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
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
