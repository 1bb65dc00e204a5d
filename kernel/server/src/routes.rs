//! The route table: every route the server answers and who may call it, gathered from the
//! server's own routes and each mounted surface's ([`super::ApiSurface::routes`]). The auth
//! middleware reads it before routing (so no method, known or invented, reaches a handler
//! unchecked), the OpenAPI document carries the REST routes' roles, and the tests generate
//! their auth matrix from it. A path missing here is answered only to callers the auth plugin
//! knows.

use super::auth::Role;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness and the documentation pages.
    Public,
    /// A caller holding at least this role.
    Needs(Role),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub access: Access,
}

impl Route {
    /// The role the route needs; `None` when it is public.
    pub fn role(&self) -> Option<Role> {
        match self.access {
            Access::Public => None,
            Access::Needs(role) => Some(role),
        }
    }
}

/// A route that needs `role`.
pub const fn route(method: &'static str, path: &'static str, role: Role) -> Route {
    Route { method, path, access: Access::Needs(role) }
}

/// A route open to everyone.
pub const fn public(method: &'static str, path: &'static str) -> Route {
    Route { method, path, access: Access::Public }
}

use Role::{Runner, Viewer};

/// The server's own routes: liveness, readiness and metrics.
pub const OPERATIONS: &[Route] =
    &[public("GET", "/health"), public("GET", "/ready"), route("GET", "/metrics", Viewer)];

/// The routes of API-surface plugins (WASM or native), under `/plugins/{name}`: reading needs a
/// viewer, anything else a runner.
pub const PLUGIN_SURFACES: &[Route] = &[
    route("GET", "/plugins/{plugin}", Viewer),
    route("POST", "/plugins/{plugin}", Runner),
    route("GET", "/plugins/{plugin}/", Viewer),
    route("POST", "/plugins/{plugin}/", Runner),
    route("GET", "/plugins/{plugin}/{*path}", Viewer),
    route("POST", "/plugins/{plugin}/{*path}", Runner),
    route("PUT", "/plugins/{plugin}/{*path}", Runner),
    route("PATCH", "/plugins/{plugin}/{*path}", Runner),
    route("DELETE", "/plugins/{plugin}/{*path}", Runner),
];

/// What the table says of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The route exists for this method (`HEAD` counts as its `GET`).
    Route(Route),
    /// The path is in the table, but not with this method; `allow` lists the methods it takes.
    OtherMethod { allow: Vec<&'static str>, public: bool },
    /// No route has this path.
    UnknownPath,
}

/// The table as a router of paths, built once from every surface's routes.
pub struct RouteTable {
    routes: Vec<Route>,
    paths: matchit::Router<&'static str>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> RouteTable {
        let mut paths = matchit::Router::new();
        for route in &routes {
            // The table lists a path once per method; the router holds each path once.
            let _ = paths.insert(route.path, route.path);
        }
        RouteTable { routes, paths }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route `method path` (a concrete request path) is, or why there is none.
    pub fn lookup(&self, method: &str, path: &str) -> Verdict {
        let Ok(matched) = self.paths.at(path) else {
            return Verdict::UnknownPath;
        };
        let pattern = *matched.value;
        let method = if method == "HEAD" { "GET" } else { method };
        let of_path = || self.routes.iter().filter(move |r| r.path == pattern);
        if let Some(route) = of_path().find(|r| r.method == method) {
            return Verdict::Route(*route);
        }
        let mut allow: Vec<&'static str> = of_path().map(|r| r.method).collect();
        if allow.contains(&"GET") {
            allow.push("HEAD");
        }
        Verdict::OtherMethod { allow, public: of_path().all(|r| r.access == Access::Public) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut routes = OPERATIONS.to_vec();
        routes.extend_from_slice(PLUGIN_SURFACES);
        routes.extend([route("GET", "/api/v1/jobs", Viewer), route("POST", "/api/v1/jobs", Runner)]);
        routes.extend([route("GET", "/api/v1/jobs/{id}", Viewer), public("GET", "/graphql")]);
        RouteTable::new(routes)
    }

    #[test]
    fn every_path_is_a_valid_pattern_and_no_route_is_listed_twice() {
        let mut router = matchit::Router::new();
        let mut seen = std::collections::HashSet::new();
        for route in table().routes() {
            assert!(
                seen.insert((route.method, route.path)),
                "{} {} is listed twice",
                route.method,
                route.path
            );
            match router.insert(route.path, ()) {
                Ok(()) => {}
                Err(matchit::InsertError::Conflict { with }) if with == route.path => {}
                Err(error) => panic!("{}: {error}", route.path),
            }
        }
    }

    #[test]
    fn head_takes_the_get_role_and_other_methods_are_named() {
        let table = table();
        let Verdict::Route(route) = table.lookup("HEAD", "/api/v1/jobs/123") else { panic!() };
        assert_eq!(route.role(), Some(Role::Viewer));
        assert_eq!(
            table.lookup("PROPFIND", "/api/v1/jobs"),
            Verdict::OtherMethod { allow: vec!["GET", "POST", "HEAD"], public: false }
        );
        assert_eq!(
            table.lookup("TRACE", "/health"),
            Verdict::OtherMethod { allow: vec!["GET", "HEAD"], public: true }
        );
        assert_eq!(table.lookup("GET", "/nothing/here"), Verdict::UnknownPath);
        let Verdict::Route(route) = table.lookup("DELETE", "/plugins/hello/a/b") else { panic!() };
        assert_eq!(route.role(), Some(Role::Runner));
        assert_eq!(table.lookup("GET", "/graphql"), Verdict::Route(public("GET", "/graphql")));
    }
}
