//! First-party native plugins, linked in and registered through the same `Sink` trait as
//! WASM sinks. `builtin:console-sink` writes events to the kernel's log.

use super::sinks::Sink;
use super::{Event, LoadError, PluginError, PluginInfo};
use ratchet_core::config::PluginConfig;

pub fn load(builtin: &str, config: &PluginConfig) -> Result<(PluginInfo, Box<dyn Sink>), LoadError> {
    match (builtin, config.kind) {
        ("console-sink", plugin_api::PluginKind::Sink) => {
            let info = PluginInfo {
                name: config.name.clone(),
                plugin: "console-sink".into(),
                kind: plugin_api::PluginKind::Sink,
                source: config.source.clone(),
                interface: "native".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                description: "writes events to the kernel's log (stderr)".into(),
                requested: Vec::new(),
                granted: Vec::new(),
            };
            Ok((info, Box::new(ConsoleSink { name: config.name.clone() })))
        }
        ("console-sink", other) => Err(LoadError::WrongKind {
            name: config.name.clone(),
            configured: other.to_string(),
            found: "a sink".into(),
            path: config.source.clone(),
        }),
        (other, _) => Err(LoadError::Unsupported {
            name: config.name.clone(),
            message: format!("there is no built-in plugin `{other}`; built-ins: console-sink"),
        }),
    }
}

struct ConsoleSink {
    name: String,
}

impl Sink for ConsoleSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, events: &[Event]) -> Result<(), PluginError> {
        for event in events {
            let line = serde_json::to_string(event).unwrap_or_default();
            eprintln!("[event] {line}");
        }
        Ok(())
    }
}
