//! POSTs each batch of events as a JSON array to a URL. The request goes through the kernel's
//! HTTP import, so the operator's egress policy applies and the host must be granted
//! (`grants.http_hosts`).
//!
//! Config: `{"url": "https://hooks.example.com/ratchet", "headers": {"Authorization": "..."}}`.

use plugin_api::guest::{Capability, Event, Manifest, PluginError, Sink};
use serde_json::{Value, json};

struct WebhookSink;

/// Where batches go: the config, parsed once per instance.
struct Target {
    url: String,
    headers: Vec<(String, String)>,
}

fn target() -> Result<&'static Target, PluginError> {
    static TARGET: std::sync::OnceLock<Result<Target, PluginError>> = std::sync::OnceLock::new();
    TARGET.get_or_init(parse_target).as_ref().map_err(Clone::clone)
}

fn parse_target() -> Result<Target, PluginError> {
    let config: Value = serde_json::from_str(&plugin_api::guest::config())
        .map_err(|e| PluginError::InvalidInput(format!("config is not JSON: {e}")))?;
    let url = config
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::InvalidInput("config.url is required".into()))?;
    let mut headers: Vec<(String, String)> = vec![("content-type".into(), "application/json".into())];
    if let Some(extra) = config.get("headers").and_then(Value::as_object) {
        for (name, value) in extra {
            headers.push((name.clone(), value.as_str().unwrap_or_default().to_owned()));
        }
    }
    Ok(Target { url: url.to_owned(), headers })
}

impl Sink for WebhookSink {
    fn manifest() -> Manifest {
        Manifest::new("webhook-sink", env!("CARGO_PKG_VERSION"), "POSTs event batches as JSON to a URL")
            .capability(Capability::Http)
    }

    fn write(events: Vec<Event>) -> Result<(), PluginError> {
        // Also the load-time check of the configuration: the host sends an empty batch.
        let target = target()?;
        if events.is_empty() {
            return Ok(());
        }
        let body: Vec<Value> = events
            .iter()
            .map(|e| {
                json!({
                    "kind": e.kind,
                    "at_ms": e.at_ms,
                    "task": e.task,
                    "execution_id": e.execution_id,
                    "data": serde_json::from_str::<Value>(&e.data).unwrap_or(Value::Null),
                })
            })
            .collect();
        let body = Value::Array(body).to_string();
        let headers: Vec<(&str, &str)> =
            target.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let response = plugin_api::guest::http("POST", &target.url, &headers, body.as_bytes())?;
        if (200..300).contains(&response.status) {
            Ok(())
        } else {
            Err(PluginError::Failed(format!("{} answered {}", target.url, response.status)))
        }
    }
}

plugin_api::export_sink!(WebhookSink);
