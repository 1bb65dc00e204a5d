//! First-party plugins linked into the kernel: `builtin:console-sink`, which writes events to
//! the kernel's log, and `builtin:error-patterns` (the `ratchet-error-patterns` crate). Each
//! implements plugin-api's native trait for its kind, like a shared-library plugin, and runs
//! through the same adapter.

use std::sync::Arc;

use plugin_api::native::{NativeErrorPattern, NativeSink};
use plugin_api::{Manifest, PluginKind};

use super::native::Native;
use super::patterns::PatternPlugin;
use super::sinks::Sink;
use super::wasm::PluginCounters;
use super::{LoadError, PluginInfo};
use ratchet_core::config::PluginConfig;

/// `builtin:NAME` with the configuration `config`: a built-in plugin implements plugin-api's
/// native trait for its kind, like a shared-library plugin, and runs through the same adapter.
pub fn load(
    builtin: &str,
    config: &PluginConfig,
    counters: Arc<PluginCounters>,
) -> Result<(PluginInfo, Box<dyn Sink>), LoadError> {
    match (builtin, config.kind) {
        ("console-sink", PluginKind::Sink) => {
            let plugin: Box<dyn NativeSink> = Box::new(ConsoleSink::new(config)?);
            let info = builtin_info(config, PluginKind::Sink, plugin.manifest());
            Ok((info, Box::new(Native::builtin(config.name.clone(), plugin, counters))))
        }
        ("console-sink", other) => Err(LoadError::WrongKind {
            name: config.name.clone(),
            configured: other.to_string(),
            found: "a sink".into(),
            path: config.source.clone(),
        }),
        ("error-patterns" | "fs-loader", other) => Err(LoadError::WrongKind {
            name: config.name.clone(),
            configured: other.to_string(),
            found: if builtin == "fs-loader" { "a loader".into() } else { "an error-pattern plugin".into() },
            path: config.source.clone(),
        }),
        (other, _) => Err(LoadError::Unsupported {
            name: config.name.clone(),
            message: format!(
                "there is no built-in plugin `{other}`; built-ins: console-sink, error-patterns, fs-loader"
            ),
        }),
    }
}

/// `builtin:error-patterns`: the built-in patterns and the operator's (`error_patterns` in the
/// configuration), through the native adapter like any native error-pattern plugin. A
/// pattern the crate refuses stops start-up, naming it.
pub fn load_patterns(
    config: &PluginConfig,
    counters: Arc<PluginCounters>,
) -> Result<(PluginInfo, Box<dyn PatternPlugin>), LoadError> {
    let text = if config.config.is_null() { String::new() } else { config.config.to_string() };
    let plugin = ratchet_error_patterns::BuiltinPatterns::new(&text)
        .map_err(|message| LoadError::Config { name: config.name.clone(), message })?;
    let plugin: Box<dyn NativeErrorPattern> = Box::new(plugin);
    let info = builtin_info(config, PluginKind::ErrorPattern, plugin.manifest());
    Ok((info, Box::new(Native::builtin(config.name.clone(), plugin, counters))))
}

/// How a built-in plugin of `kind` shows in `ratchet plugins list`: native, asking for nothing.
fn builtin_info(config: &PluginConfig, kind: PluginKind, manifest: Manifest) -> PluginInfo {
    PluginInfo {
        name: config.name.clone(),
        plugin: manifest.name,
        kind,
        source: config.source.clone(),
        interface: "native".into(),
        version: manifest.version,
        description: manifest.description,
        requested: Vec::new(),
        granted: Vec::new(),
    }
}

/// Writes each event to the kernel's log (stderr): as `[event] {JSON}` in a text log, or as a
/// JSON log line (target `ratchet::event`, the event under `fields`) when the log is JSON
/// (`logging.format: json`, or the plugin's own `format`).
struct ConsoleSink {
    json: bool,
}

impl ConsoleSink {
    fn new(config: &PluginConfig) -> Result<ConsoleSink, LoadError> {
        let format = config.config.get("format").and_then(serde_json::Value::as_str).unwrap_or("text");
        match format {
            "text" | "json" => Ok(ConsoleSink { json: format == "json" }),
            other => Err(LoadError::Config {
                name: config.name.clone(),
                message: format!("format is `text` or `json`, not `{other}`"),
            }),
        }
    }

    /// The event as the log line of a JSON log, in the shape the kernel's other lines have.
    fn json_line(event: &plugin_api::Event) -> String {
        let data: serde_json::Value = serde_json::from_str(&event.data)
            .unwrap_or_else(|_| serde_json::Value::from(event.data.as_str()));
        let line = serde_json::json!({
            "timestamp": ratchet_core::time::format(event.at_ms),
            "level": "INFO",
            "fields": {
                "message": event.kind,
                "task": event.task,
                "execution_id": event.execution_id,
                "trace_id": data.get("trace_id"),
                "data": data,
            },
            "target": "ratchet::event",
        });
        line.to_string()
    }
}

impl NativeSink for ConsoleSink {
    fn manifest(&self) -> Manifest {
        Manifest::new("console-sink", env!("CARGO_PKG_VERSION"), "writes events to the kernel's log (stderr)")
    }

    fn write(&mut self, events: &[plugin_api::Event]) -> Result<(), plugin_api::PluginError> {
        for event in events {
            if self.json {
                eprintln!("{}", ConsoleSink::json_line(event));
                continue;
            }
            eprintln!(
                "[event] {{\"kind\":{},\"at_ms\":{},\"task\":{},\"execution_id\":{},\"data\":{}}}",
                serde_json::Value::from(event.kind.as_str()),
                event.at_ms,
                serde_json::to_string(&event.task).unwrap_or_default(),
                serde_json::to_string(&event.execution_id).unwrap_or_default(),
                event.data
            );
        }
        Ok(())
    }
}
