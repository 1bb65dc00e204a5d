//! An example API surface: mounted under `/plugins/{name}/`, it answers
//!
//! - `GET /hello?name=NAME` with `{"greeting": "hello, NAME"}` (the greeting word comes from
//!   the plugin's config, `{"greeting": "hi"}`);
//! - `POST /echo` with the request body and its size;
//! - `GET /headers` with the request headers it was given (the kernel removes credentials and
//!   adds the caller it authenticated as `x-ratchet-principal` and `x-ratchet-role`);
//! - `GET /env/NAME` with the value of the environment variable NAME, when the operator
//!   granted it (`grants: {env: [NAME]}`), else null: the plugin sees nothing else;
//! - anything else with 404 in Ratchet's error shape.
//!
//! The kernel checks the caller's credentials and role before a request reaches it.

use plugin_api::guest::{ApiSurface, Capability, Manifest, Request, Response};
use serde_json::json;

struct HelloApi;

impl ApiSurface for HelloApi {
    fn manifest() -> Manifest {
        Manifest::new(
            "hello-api",
            env!("CARGO_PKG_VERSION"),
            "Example API surface: GET /hello, POST /echo, GET /headers, GET /env/NAME",
        )
        .capability(Capability::Env)
    }

    fn handle(request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/hello") => hello(&request),
            ("GET", path) if path.starts_with("/env/") => {
                let name = &path["/env/".len()..];
                Response::json(200, &json!({"name": name, "value": std::env::var(name).ok()}).to_string())
            }
            ("GET", "/headers") => {
                let headers: serde_json::Map<String, serde_json::Value> =
                    request.headers.iter().map(|(name, value)| (name.clone(), json!(value))).collect();
                Response::json(200, &serde_json::Value::Object(headers).to_string())
            }
            ("POST", "/echo") => {
                let body = String::from_utf8_lossy(&request.body);
                Response::json(200, &json!({"bytes": request.body.len(), "body": body}).to_string())
            }
            (method, path) => Response::json(
                404,
                &json!({"error": {"code": "not_found", "message": format!("hello-api has no route {method} {path}"),
                                  "details": null}})
                .to_string(),
            ),
        }
    }
}

fn hello(request: &Request) -> Response {
    let name = request
        .query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="))
        .filter(|name| !name.is_empty())
        .unwrap_or("world");
    let config: serde_json::Value = serde_json::from_str(&plugin_api::guest::config()).unwrap_or_default();
    let word = config["greeting"].as_str().unwrap_or("hello");
    Response::json(200, &json!({"greeting": format!("{word}, {name}")}).to_string())
}

plugin_api::export_api_surface!(HelloApi);
