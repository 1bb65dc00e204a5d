//! An example native sink: appends one line per event (`kind task`) to the file named by
//! `config.file`. An event of kind `panic` makes it panic, to show the boundary holds.

use std::io::Write;

use plugin_api::native::NativeSink;
use plugin_api::{Event, Manifest, PluginError};

struct ExampleSink {
    file: std::path::PathBuf,
}

impl NativeSink for ExampleSink {
    fn manifest(&self) -> Manifest {
        Manifest::new("example-sink", env!("CARGO_PKG_VERSION"), "appends event kinds to a file")
    }

    fn write(&mut self, events: &[Event]) -> Result<(), PluginError> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.file)
            .map_err(|e| PluginError::Failed(format!("cannot open {}: {e}", self.file.display())))?;
        for event in events {
            assert!(event.kind != "panic", "asked to panic");
            writeln!(file, "{} {}", event.kind, event.task.as_deref().unwrap_or("-"))
                .map_err(|e| PluginError::Failed(e.to_string()))?;
        }
        Ok(())
    }
}

fn start(config: &str) -> Result<ExampleSink, PluginError> {
    let config: serde_json::Value =
        serde_json::from_str(config).map_err(|e| PluginError::InvalidInput(e.to_string()))?;
    let file = config
        .get("file")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| PluginError::InvalidInput("config.file is required".into()))?;
    Ok(ExampleSink { file: file.into() })
}

#[allow(unsafe_code, reason = "the exported C entry points")]
mod entry {
    plugin_api::export_native_sink!(super::start);
}
