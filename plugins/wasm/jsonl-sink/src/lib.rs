//! Appends every event as one JSON line to a file in the folder the operator grants, and
//! rotates the file when it passes a size (`events.jsonl` -> `events.jsonl.1` -> ...).
//!
//! Config: `{"file": "events.jsonl", "max_bytes": 10485760, "keep": 3}`. The plugin needs the
//! operator to grant a folder (`grants.dir`); it sees it as `/`.

use std::fs::{self, OpenOptions};
use std::io::Write;

use plugin_api::guest::{Capability, Event, Manifest, PluginError, Sink};
use serde_json::{Value, json};

struct JsonlSink;

struct Settings {
    file: String,
    max_bytes: u64,
    keep: u32,
}

/// The settings, parsed once per instance (the operator's config does not change under it).
fn settings() -> Result<&'static Settings, PluginError> {
    static SETTINGS: std::sync::OnceLock<Result<Settings, PluginError>> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(parse_settings).as_ref().map_err(Clone::clone)
}

fn parse_settings() -> Result<Settings, PluginError> {
    let config: Value = serde_json::from_str(&plugin_api::guest::config())
        .map_err(|e| PluginError::InvalidInput(format!("config is not JSON: {e}")))?;
    let file = config.get("file").and_then(Value::as_str).unwrap_or("events.jsonl");
    if file.contains('/') || file.starts_with('.') {
        return Err(PluginError::InvalidInput(format!("config.file `{file}` must be a plain file name")));
    }
    Ok(Settings {
        file: format!("/{file}"),
        max_bytes: config.get("max_bytes").and_then(Value::as_u64).unwrap_or(10 * 1024 * 1024),
        keep: config.get("keep").and_then(Value::as_u64).unwrap_or(3).min(100) as u32,
    })
}

fn rotate(settings: &Settings) -> std::io::Result<()> {
    for n in (1..settings.keep).rev() {
        let from = format!("{}.{n}", settings.file);
        if fs::metadata(&from).is_ok() {
            fs::rename(&from, format!("{}.{}", settings.file, n + 1))?;
        }
    }
    if settings.keep == 0 {
        return fs::remove_file(&settings.file);
    }
    fs::rename(&settings.file, format!("{}.1", settings.file))
}

fn line(event: &Event) -> String {
    let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::String(event.data.clone()));
    json!({
        "kind": event.kind,
        "at_ms": event.at_ms,
        "task": event.task,
        "execution_id": event.execution_id,
        "data": data,
    })
    .to_string()
}

impl Sink for JsonlSink {
    fn manifest() -> Manifest {
        Manifest::new(
            "jsonl-sink",
            env!("CARGO_PKG_VERSION"),
            "appends events as JSON lines to a file, rotating by size",
        )
        .capability(Capability::Fs)
    }

    fn write(events: Vec<Event>) -> Result<(), PluginError> {
        // Also the load-time check of the configuration: the host sends an empty batch.
        let settings = settings()?;
        if events.is_empty() {
            return Ok(());
        }
        let io = |what: &str, e: std::io::Error| {
            let message = format!("{what} {}: {e}", settings.file);
            if e.kind() == std::io::ErrorKind::PermissionDenied || e.kind() == std::io::ErrorKind::NotFound {
                PluginError::Denied(format!("{message} (grant the plugin a folder: grants.dir)"))
            } else {
                PluginError::Failed(message)
            }
        };
        let mut size = fs::metadata(&settings.file).map(|m| m.len()).unwrap_or(0);
        let mut pending = String::new();
        for event in &events {
            let mut text = line(event);
            text.push('\n');
            // Rotate before the line that would take the file past max_bytes.
            if size > 0 && size + text.len() as u64 > settings.max_bytes {
                append(&settings.file, &pending).map_err(|e| io("cannot write", e))?;
                pending.clear();
                rotate(settings).map_err(|e| io("cannot rotate", e))?;
                size = 0;
            }
            size += text.len() as u64;
            pending.push_str(&text);
        }
        append(&settings.file, &pending).map_err(|e| io("cannot write", e))
    }
}

fn append(path: &str, text: &str) -> std::io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    OpenOptions::new().create(true).append(true).open(path)?.write_all(text.as_bytes())
}

plugin_api::export_sink!(JsonlSink);
