//! The conformance checks every WASM plugin must pass, by kind: it loads with no grants and
//! describes itself; its calls return or refuse with a typed error, never trap, on ordinary
//! and on awkward input; and it still answers afterwards. `ratchet plugins test FILE` runs
//! them, and the test suite runs them on every first-party plugin.

use std::path::Path;

use serde_json::json;

use super::wasm::{Failure, SinkCalls, WasmHost};
use super::{Event, LoadError, PluginError};
use ratchet_core::config::PluginConfig;

/// One check and how it went: `Ok(detail)` or `Err(why)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub what: String,
    pub outcome: Result<String, String>,
}

impl Check {
    fn new(what: &str, outcome: Result<String, String>) -> Check {
        Check { what: what.to_owned(), outcome }
    }
}

/// Runs the checks of the plugin's kind (read from its exports) against `file`.
pub fn run(host: &WasmHost, file: &Path) -> Vec<Check> {
    let kind = match host.kind_of(file) {
        Ok(Some(kind)) => kind,
        Ok(None) => {
            return vec![Check::new(
                &format!("exports a {} interface", crate::wasm::WIT_INTERFACE),
                Err("it exports none (sink, error-pattern, auth, loader, api-surface)".into()),
            )];
        }
        Err(error) => return vec![Check::new("is a WebAssembly component", Err(error.to_string()))],
    };
    let config = PluginConfig {
        name: "under-test".into(),
        kind,
        source: file.display().to_string(),
        config: json!({}),
        grants: Default::default(),
        limits: Default::default(),
    };
    match kind {
        plugin_api::PluginKind::Sink => sink(host, &config),
        plugin_api::PluginKind::ErrorPattern => error_pattern(host, &config),
        plugin_api::PluginKind::Auth => auth(host, &config),
        plugin_api::PluginKind::ApiSurface => api_surface(host, &config),
        plugin_api::PluginKind::Loader => loader(host, &config),
        other => vec![Check::new(
            &format!("loads as a {other} plugin"),
            Err(format!("no conformance checks for {other} plugins")),
        )],
    }
}

fn loaded(kind: &str, result: Result<(String, String), LoadError>) -> Check {
    Check::new(
        &format!("loads as {kind} with no grants and describes itself"),
        result.map(|(name, version)| format!(": {name} {version}")).map_err(|e| e.to_string()),
    )
}

/// A returned error is a fine answer; a trap or a quarantine is not.
fn answered<T>(result: Result<T, PluginError>) -> Result<String, String> {
    match result {
        Ok(_) => Ok(String::new()),
        Err(PluginError::Returned { message, .. }) => Ok(format!(" (refused: {message})")),
        Err(error) => Err(error.to_string()),
    }
}

fn sink(host: &WasmHost, config: &PluginConfig) -> Vec<Check> {
    let mut sink = match host.load_sink(config) {
        Ok(sink) => sink,
        Err(error) => return vec![loaded("a sink", Err(error))],
    };
    let info = sink.info().clone();
    let events: Vec<Event> = (0..3)
        .map(|n| {
            Event::new("execution.succeeded", Some("conformance"), Some(&format!("run-{n}")), json!({"n": n}))
        })
        .collect();
    let odd = vec![Event::new("", None, None, json!({"text": "\u{0}\u{fffd}".repeat(4096)}))];
    vec![
        loaded("a sink", Ok((info.plugin, info.version))),
        Check::new(
            "writes a batch, or refuses it with a typed error (no trap)",
            answered(sink.write_events(&events)),
        ),
        Check::new("answers an empty batch", answered(sink.write_events(&[]))),
        Check::new("answers an odd event (empty kind, large odd text)", answered(sink.write_events(&odd))),
        Check::new("still answers afterwards", answered(sink.write_events(&events[..1]))),
    ]
}

fn error_pattern(host: &WasmHost, config: &PluginConfig) -> Vec<Check> {
    let mut plugin = match host.load_error_pattern(config) {
        Ok(plugin) => plugin,
        Err(error) => return vec![loaded("an error-pattern plugin", Err(error))],
    };
    let info = plugin.info().clone();
    let failure = |kind: &str, name: Option<&str>, message: String| Failure {
        kind: kind.into(),
        name: name.map(str::to_owned),
        message,
        task: "conformance".into(),
        logs: vec!["[info] a log line".into()],
    };
    let ordinary = plugin.classify(&failure("task_error", Some("TypeError"), "x is undefined".into()));
    let count = ordinary.as_ref().map_or(0, Vec::len);
    vec![
        loaded("an error-pattern plugin", Ok((info.plugin, info.version))),
        Check::new(
            "classifies an ordinary failure (no trap)",
            answered(ordinary).map(|d| format!("{d} ({count} classification(s))")),
        ),
        Check::new(
            "answers a failure with an empty message and no name",
            answered(plugin.classify(&failure("", None, String::new()))),
        ),
        Check::new(
            "answers a 64 KiB message",
            answered(plugin.classify(&failure("task_error", Some("Error"), "x".repeat(64 * 1024)))),
        ),
        Check::new(
            "still answers afterwards",
            answered(plugin.classify(&failure("timeout", None, "too slow".into()))),
        ),
    ]
}

fn loader(host: &WasmHost, config: &PluginConfig) -> Vec<Check> {
    let mut plugin = match host.load_loader(config) {
        Ok(plugin) => plugin,
        Err(error) => return vec![loaded("a loader", Err(error))],
    };
    let info = plugin.info().clone();
    let first = plugin.list_tasks();
    let count = first.as_ref().map_or(0, Vec::len);
    let limits = ratchet_core::config::LimitConfig::default();
    let broken: Vec<String> = first
        .as_ref()
        .map(|tasks| {
            tasks
                .iter()
                .filter_map(|(name, files)| {
                    ratchet_core::task::load_files(
                        &format!("plugin:under-test/{name}"),
                        files.clone(),
                        &limits,
                    )
                    .err()
                })
                .map(|error| error.to_string())
                .collect()
        })
        .unwrap_or_default();
    // With no config, a loader lists nothing or says what it needs; it never traps.
    let listed = match first {
        Ok(_) => Ok(format!(" ({count} task(s))")),
        Err(message) if message.starts_with("the loader refused") => Ok(format!(" ({message})")),
        Err(message) => Err(message),
    };
    let again = match plugin.list_tasks() {
        Ok(tasks) if tasks.len() == count => Ok(String::new()),
        Ok(tasks) => Err(format!("listed {} task(s), then {}", count, tasks.len())),
        Err(message) if message.starts_with("the loader refused") => Ok(String::new()),
        Err(message) => Err(message),
    };
    vec![
        loaded("a loader", Ok((info.plugin, info.version))),
        Check::new("lists its tasks with plain names and relative paths, or refuses (no trap)", listed),
        Check::new("lists the same again", again),
        Check::new(
            "every listed task loads (files, JSON, schemas, limits)",
            if broken.is_empty() { Ok(String::new()) } else { Err(broken.join("; ")) },
        ),
    ]
}

fn api_surface(host: &WasmHost, config: &PluginConfig) -> Vec<Check> {
    use super::wasm::SurfaceRequest;
    let mut plugin = match host.load_api_surface(config) {
        Ok(plugin) => plugin,
        Err(error) => return vec![loaded("an api-surface plugin", Err(error))],
    };
    let info = plugin.info().clone();
    let request = |method: &str, path: String, body: Vec<u8>| SurfaceRequest {
        method: method.into(),
        path,
        query: Some("a=1&b=%20".into()),
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    let answer = |result: Result<super::wasm::SurfaceResponse, String>| {
        result.map(|r| format!(" (status {}, {} byte(s))", r.status, r.body.len()))
    };
    vec![
        loaded("an api-surface plugin", Ok((info.plugin, info.version))),
        Check::new(
            "answers GET / with a valid response (no trap)",
            answer(plugin.handle(request("GET", "/".into(), Vec::new()))),
        ),
        Check::new(
            "answers an unknown route",
            answer(plugin.handle(request("DELETE", "/no/such/route".into(), Vec::new()))),
        ),
        Check::new(
            "answers a 1 MiB binary body and a 4 KiB path",
            answer(plugin.handle(request("POST", format!("/{}", "x".repeat(4096)), vec![0xff; 1 << 20]))),
        ),
        Check::new("still answers afterwards", answer(plugin.handle(request("GET", "/".into(), Vec::new())))),
    ]
}

fn auth(host: &WasmHost, config: &PluginConfig) -> Vec<Check> {
    let mut plugin = match host.load_auth(config) {
        Ok(plugin) => plugin,
        Err(error) => return vec![loaded("an auth plugin", Err(error))],
    };
    let info = plugin.info().clone();
    let denies = |result: Result<super::wasm::Principal, String>| match result {
        Ok(principal) => Err(format!("it let the request in as `{}`", principal.id)),
        Err(reason) => Ok(format!(" ({reason})")),
    };
    let garbage = vec![("authorization".to_owned(), "Bearer \u{0}".repeat(1000))];
    vec![
        loaded("an auth plugin", Ok((info.plugin, info.version))),
        Check::new(
            "denies a request without credentials (no keys configured)",
            denies(plugin.authenticate(&[])),
        ),
        Check::new("denies garbage credentials", denies(plugin.authenticate(&garbage))),
        Check::new(
            "still answers afterwards",
            denies(plugin.authenticate(&[("x-api-key".to_owned(), "k".to_owned())])),
        ),
    ]
}
