//! The route table: every protected route and the role it needs. The auth middleware reads
//! it, the OpenAPI document carries it (each operation's `security` scopes), and the tests
//! generate their auth matrix from it. A route missing here is refused to everyone.

use super::auth::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub role: Role,
}

const fn route(method: &'static str, path: &'static str, role: Role) -> Route {
    Route { method, path, role }
}

use Role::{Admin, Runner, Viewer};

pub const ROUTES: &[Route] = &[
    route("GET", "/api/v1/tasks", Viewer),
    route("GET", "/api/v1/tasks/{name}", Viewer),
    route("POST", "/api/v1/tasks/{name}/validate", Runner),
    route("POST", "/api/v1/tasks/{name}/run", Runner),
    route("GET", "/api/v1/jobs", Viewer),
    route("POST", "/api/v1/jobs", Runner),
    route("GET", "/api/v1/jobs/{id}", Viewer),
    route("POST", "/api/v1/jobs/{id}/cancel", Runner),
    route("POST", "/api/v1/jobs/{id}/retry", Runner),
    route("GET", "/api/v1/executions", Viewer),
    route("GET", "/api/v1/executions/{id}", Viewer),
    route("POST", "/api/v1/executions/{id}/replay", Runner),
    route("GET", "/api/v1/schedules", Viewer),
    route("POST", "/api/v1/schedules", Admin),
    route("GET", "/api/v1/schedules/{id}", Viewer),
    route("PATCH", "/api/v1/schedules/{id}", Admin),
    route("DELETE", "/api/v1/schedules/{id}", Admin),
    route("POST", "/api/v1/schedules/{id}/pause", Admin),
    route("POST", "/api/v1/schedules/{id}/resume", Admin),
    route("GET", "/api/v1/schedules/{id}/next", Viewer),
    route("GET", "/api/v1/nodes", Viewer),
    route("GET", "/api/v1/workers", Viewer),
    route("GET", "/api/v1/plugins", Viewer),
    route("GET", "/metrics", Viewer),
    // GraphQL checks each mutation's role itself; reading needs a viewer.
    // Subscriptions (GET /graphql, WebSocket) authenticate in their `connection_init` when
    // their headers do not (api::graphql).
    route("POST", "/graphql", Viewer),
    // WASM API surfaces: reading needs a viewer, anything else a runner.
    route("GET", "/plugins/{plugin}", Viewer),
    route("GET", "/plugins/{plugin}/", Viewer),
    route("POST", "/plugins/{plugin}/", Runner),
    route("GET", "/plugins/{plugin}/{*path}", Viewer),
    route("POST", "/plugins/{plugin}", Runner),
    route("POST", "/plugins/{plugin}/{*path}", Runner),
    route("PUT", "/plugins/{plugin}/{*path}", Runner),
    route("PATCH", "/plugins/{plugin}/{*path}", Runner),
    route("DELETE", "/plugins/{plugin}/{*path}", Runner),
];

/// The role `method path` needs (`path` as the router matched it, with `{params}`).
pub fn required_role(method: &str, path: &str) -> Option<Role> {
    ROUTES.iter().find(|r| r.method == method && r.path == path).map(|r| r.role)
}
