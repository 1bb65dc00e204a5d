//! The OpenAPI 3.1 document, generated from the handlers. Each operation's `security`
//! carries the role the route table gives it (as the scope of the `api_key` scheme), so
//! clients and the tests read the roles from the document. The document is checked in at
//! `docs/openapi.json`; `cargo xtask codegen --check` fails when it drifts.

use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, SecurityRequirement};

use ratchet_server::operations;

use crate as rest;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ratchet",
        description = "Run JavaScript tasks: synchronously, as queued jobs and on cron schedules. Every run is \
                       recorded. Errors share one shape: `{\"error\": {code, message, details, request_id}}`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        operations::health, operations::ready, operations::metrics,
        rest::list_tasks, rest::get_task, rest::task_versions, rest::validate_task, rest::run_task,
        rest::enqueue_job, rest::list_jobs, rest::get_job, rest::cancel_job, rest::retry_job,
        rest::enqueue_batch, rest::queue_state, rest::pause_queue, rest::resume_queue,
        rest::list_secrets, rest::set_secret, rest::remove_secret,
        rest::list_executions, rest::get_execution, rest::execution_report, rest::replay_execution,
        rest::search_logs, rest::failure_trends, rest::follow_logs, rest::follow_jobs,
        rest::list_schedules, rest::add_schedule, rest::get_schedule, rest::update_schedule, rest::remove_schedule,
        rest::pause_schedule, rest::resume_schedule, rest::next_fire_times, rest::preview_cron,
        rest::list_nodes, rest::list_workers, rest::list_plugins, rest::who_am_i,
    ),
    tags(
        (name = "tasks", description = "Loaded tasks: schemas, validation, synchronous runs"),
        (name = "jobs", description = "The durable job queue"),
        (name = "executions", description = "The record of every run, and offline replay"),
        (name = "schedules", description = "Cron schedules"),
        (name = "secrets", description = "Secrets tasks read, sealed at rest; values are never returned"),
        (name = "system", description = "Nodes, workers and plugins, and who the caller is"),
        (name = "operations", description = "Health, readiness and metrics"),
    ),
)]
struct ApiDoc;

/// The routes the document describes: this surface's and the server's operations.
fn documented_routes() -> impl Iterator<Item = &'static ratchet_server::routes::Route> {
    crate::ROUTES.iter().chain(ratchet_server::routes::OPERATIONS)
}

/// The document as served, with the route table's roles.
pub fn document() -> Document {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    let components = document.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
    );
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, operation) in [
            ("GET", item.get.as_mut()),
            ("POST", item.post.as_mut()),
            ("DELETE", item.delete.as_mut()),
            ("PUT", item.put.as_mut()),
            ("PATCH", item.patch.as_mut()),
        ] {
            let Some(operation) = operation else { continue };
            let route = documented_routes().find(|r| r.method == method && r.path == path);
            if let Some(role) = route.and_then(|r| r.role()) {
                let role = [role.as_str()];
                operation.security = Some(vec![
                    SecurityRequirement::new("api_key", role),
                    SecurityRequirement::new("bearer", role),
                ]);
            }
        }
    }
    add_links(&mut document);
    document
}

/// Where an operation's answer leads: the value at `pointer` in its body fills `parameter`
/// of each operation in `targets`. Clients and schemathesis follow these links.
struct ResponseLink {
    path: &'static str,
    method: &'static str,
    status: &'static str,
    pointer: &'static str,
    parameter: &'static str,
    targets: &'static [&'static str],
}

const fn link(
    path: &'static str,
    method: &'static str,
    status: &'static str,
    pointer: &'static str,
    parameter: &'static str,
    targets: &'static [&'static str],
) -> ResponseLink {
    ResponseLink { path, method, status, pointer, parameter, targets }
}

const LINKS: &[ResponseLink] = &[
    link("/api/v1/jobs", "post", "201", "/id", "id", &["get_job", "cancel_job", "retry_job"]),
    link("/api/v1/jobs", "get", "200", "/items/0/id", "id", &["get_job", "cancel_job", "retry_job"]),
    link(
        "/api/v1/tasks",
        "get",
        "200",
        "/items/0/name",
        "name",
        &["get_task", "task_versions", "validate_task", "run_task"],
    ),
    link(
        "/api/v1/tasks/{name}/run",
        "post",
        "200",
        "/id",
        "id",
        &["get_execution", "execution_report", "replay_execution"],
    ),
    link("/api/v1/executions", "get", "200", "/items/0/id", "id", &["get_execution", "replay_execution"]),
    link(
        "/api/v1/schedules",
        "post",
        "201",
        "/id",
        "id",
        &[
            "get_schedule",
            "update_schedule",
            "pause_schedule",
            "resume_schedule",
            "next_fire_times",
            "remove_schedule",
        ],
    ),
    link("/api/v1/schedules", "get", "200", "/items/0/id", "id", &["get_schedule", "next_fire_times"]),
];

fn add_links(document: &mut Document) {
    use utoipa::openapi::RefOr;
    use utoipa::openapi::link::LinkBuilder;
    for ResponseLink { path, method, status, pointer, parameter, targets } in LINKS {
        let Some(item) = document.paths.paths.get_mut(*path) else { continue };
        let operation = match *method {
            "get" => item.get.as_mut(),
            "post" => item.post.as_mut(),
            _ => None,
        };
        let Some(operation) = operation else { continue };
        let Some(RefOr::T(response)) = operation.responses.responses.get_mut(*status) else { continue };
        for target in *targets {
            let link = LinkBuilder::new()
                .operation_id(*target)
                .parameter(*parameter, format!("$response.body#{pointer}"))
                .build();
            response.links.insert((*target).to_owned(), RefOr::T(link));
        }
    }
}

/// The document as checked in: pretty JSON with a final newline.
pub fn document_json() -> String {
    let mut text = document().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every documented operation but the open ones has a role, and every route in the
    /// table (but GraphQL's) is documented.
    #[test]
    fn the_route_table_and_the_document_agree() {
        let document = document();
        let mut documented = Vec::new();
        for (path, item) in &document.paths.paths {
            for (method, operation) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("PUT", &item.put),
                ("PATCH", &item.patch),
                ("DELETE", &item.delete),
            ] {
                if operation.is_some() {
                    documented.push((method, path.as_str()));
                }
            }
        }
        for (method, path) in &documented {
            let in_table = documented_routes().any(|r| r.method == *method && r.path == *path);
            assert!(in_table, "{method} {path} is documented but missing from the route table");
        }
        // GraphQL and the WASM surfaces describe themselves elsewhere.
        let described_elsewhere = |path: &str| {
            ["/graphql", "/plugins/", "/docs", "/api/v1/openapi.json"].iter().any(|p| path.starts_with(p))
        };
        for route in documented_routes().filter(|r| !described_elsewhere(r.path)) {
            assert!(
                documented.contains(&(route.method, route.path)),
                "{} {} is in the route table but not documented",
                route.method,
                route.path
            );
        }
    }

    /// Every link leads to an operation that exists.
    #[test]
    fn links_name_real_operations() {
        let document = document();
        let ids: Vec<String> = document
            .paths
            .paths
            .values()
            .flat_map(|item| [&item.get, &item.post, &item.put, &item.patch, &item.delete])
            .flatten()
            .filter_map(|operation| operation.operation_id.clone())
            .collect();
        let mut linked = 0;
        for link in LINKS {
            for target in link.targets {
                assert!(ids.iter().any(|id| id == target), "the link target {target} is no operation");
                linked += 1;
            }
        }
        let text = document_json();
        assert_eq!(
            text.matches("\"operationId\": \"get_job\"").count(),
            1 + 2,
            "the links are in the document"
        );
        assert!(linked > 10);
    }

    #[test]
    fn the_checked_in_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../docs/openapi.json");
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == document_json(),
            "docs/openapi.json is out of date: run `cargo xtask codegen` and commit the result"
        );
    }
}
