//! An example loader: the tasks are written in the plugin's own config, each as a name and
//! its files (text), so a deployment can carry small tasks in its configuration:
//!
//! ```yaml
//! - name: inline
//!   kind: loader
//!   source: target/plugins/inline-loader.wasm
//!   config:
//!     tasks:
//!       - name: greet
//!         files:
//!           metadata.json: '{"version": "1.0.0"}'
//!           input.schema.json: '{"type": "object"}'
//!           output.schema.json: '{"type": "object"}'
//!           main.js: 'function main(input) { return {hello: input.name}; }'
//! ```

use plugin_api::guest::{Loader, Manifest, PluginError, TaskFiles};
use serde_json::Value;

struct InlineLoader;

impl Loader for InlineLoader {
    fn manifest() -> Manifest {
        Manifest::new(
            "inline-loader",
            env!("CARGO_PKG_VERSION"),
            "Tasks written inline in the plugin's config",
        )
    }

    fn list_tasks() -> Result<Vec<TaskFiles>, PluginError> {
        let config: Value = serde_json::from_str(&plugin_api::guest::config())
            .map_err(|e| PluginError::InvalidInput(format!("the config is not JSON: {e}")))?;
        let Some(tasks) = config.get("tasks") else { return Ok(Vec::new()) };
        let tasks = tasks.as_array().ok_or_else(|| {
            PluginError::InvalidInput("config.tasks must be a list of {name, files}".into())
        })?;
        tasks.iter().map(task).collect()
    }
}

fn task(entry: &Value) -> Result<TaskFiles, PluginError> {
    let name = entry["name"]
        .as_str()
        .ok_or_else(|| PluginError::InvalidInput(format!("a task in config.tasks has no name: {entry}")))?;
    let files = entry["files"]
        .as_object()
        .ok_or_else(|| PluginError::InvalidInput(format!("task {name}: `files` must map paths to text")))?;
    let files = files
        .iter()
        .map(|(path, text)| match text.as_str() {
            Some(text) => Ok((path.clone(), text.as_bytes().to_vec())),
            None => Err(PluginError::InvalidInput(format!("task {name}: {path} must be text"))),
        })
        .collect::<Result<_, _>>()?;
    Ok(TaskFiles { name: name.to_owned(), files })
}

plugin_api::export_loader!(InlineLoader);
