//! `builtin:console-sink`: a first-party sink linked into the kernel. It implements
//! plugin-api's `NativeSink`, like a shared-library sink, and runs through the same adapter;
//! it writes events to the kernel's log.

use std::sync::Arc;

use plugin_api::native::NativeSink;
use plugin_api::{Manifest, PluginKind};

use super::native::Native;
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
            let plugin: Box<dyn NativeSink> = Box::new(ConsoleSink);
            let manifest = plugin.manifest();
            let info = PluginInfo {
                name: config.name.clone(),
                plugin: manifest.name,
                kind: PluginKind::Sink,
                source: config.source.clone(),
                interface: "native".into(),
                version: manifest.version,
                description: manifest.description,
                requested: Vec::new(),
                granted: Vec::new(),
            };
            Ok((info, Box::new(Native::builtin(config.name.clone(), plugin, counters))))
        }
        ("console-sink", other) => Err(LoadError::WrongKind {
            name: config.name.clone(),
            configured: other.to_string(),
            found: "a sink".into(),
            path: config.source.clone(),
        }),
        (other, _) => Err(LoadError::Unsupported {
            name: config.name.clone(),
            message: format!("there is no built-in plugin `{other}`; built-ins: console-sink, fs-loader"),
        }),
    }
}

/// Writes each event to the kernel's log (stderr) as a JSON line.
struct ConsoleSink;

impl NativeSink for ConsoleSink {
    fn manifest(&self) -> Manifest {
        Manifest::new("console-sink", env!("CARGO_PKG_VERSION"), "writes events to the kernel's log (stderr)")
    }

    fn write(&mut self, events: &[plugin_api::Event]) -> Result<(), plugin_api::PluginError> {
        for event in events {
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
