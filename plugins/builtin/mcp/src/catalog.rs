//! Which tasks agents see, and each as a tool: built from the registry the node serves, once
//! per version of it (a reload swaps the registry, and the next listing builds anew).

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use ratchet_core::Task;
use ratchet_core::config::McpConfig;
use ratchet_service::TaskRegistry;

/// Tool names that start with this are the platform's (see [`crate::platform`]); a task whose
/// name does is not exposed.
pub const RESERVED_PREFIX: &str = "ratchet_";

/// Longest tool name clients accept.
const MAX_TOOL_NAME: usize = 128;

/// Which tasks `mcp.tools` and `mcp.tags` expose.
pub struct Exposure {
    /// Either is set: only the tasks they name are exposed.
    narrowed: bool,
    patterns: Vec<glob::Pattern>,
    tags: Vec<String>,
}

impl Exposure {
    /// Patterns that are not globs were refused when the configuration loaded; should one get
    /// here, no task is exposed by name.
    pub fn new(config: &McpConfig) -> Exposure {
        let patterns = config.tool_patterns().unwrap_or_else(|error| {
            tracing::error!("{error}; no task is exposed by name");
            Vec::new()
        });
        Exposure {
            narrowed: !config.tools.is_empty() || !config.tags.is_empty(),
            patterns,
            tags: config.tags.clone(),
        }
    }

    /// Whether agents may use `task` (run it, or queue it with `ratchet_enqueue_job`).
    pub fn allows(&self, task: &Task) -> bool {
        !self.narrowed
            || self.patterns.iter().any(|pattern| pattern.matches(task.name()))
            || task.metadata.tags.iter().any(|tag| self.tags.contains(tag))
    }
}

/// A task as a tool.
pub struct TaskTool {
    pub task: Arc<Task>,
    /// The task's input schema is not an object's, so the tool takes `{"input": ...}`.
    pub wrapped: bool,
    /// The tool declares an output schema, so its result carries structured content.
    pub structured: bool,
}

/// The exposed tasks of one registry, as tools.
pub struct Catalog {
    pub registry: Arc<TaskRegistry>,
    pub tools: Vec<Tool>,
    pub by_name: HashMap<String, TaskTool>,
}

impl Catalog {
    pub fn build(registry: Arc<TaskRegistry>, exposure: &Exposure) -> Catalog {
        let mut tools = Vec::new();
        let mut by_name = HashMap::new();
        for task in registry.tasks() {
            if !exposure.allows(&task) {
                continue;
            }
            let Some(name) = tool_name(task.name()) else {
                tracing::warn!(
                    task = task.name(),
                    "not exposed over MCP: tool names starting with `{RESERVED_PREFIX}` are the platform's; rename the task"
                );
                continue;
            };
            if by_name.contains_key(&name) {
                tracing::warn!(
                    task = task.name(),
                    "not exposed over MCP: another task already has the tool name `{name}`"
                );
                continue;
            }
            let (tool, entry) = task_tool(&name, task);
            tools.push(tool);
            by_name.insert(name, entry);
        }
        Catalog { registry, tools, by_name }
    }
}

/// The tool name of a task: its name with every character clients refuse (anything but
/// letters, digits, `_`, `-` and `.`) replaced by `_`; `None` for a name the platform holds.
pub fn tool_name(task: &str) -> Option<String> {
    let name: String = task
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .take(MAX_TOOL_NAME)
        .collect();
    (!name.is_empty() && !name.starts_with(RESERVED_PREFIX)).then_some(name)
}

fn task_tool(name: &str, task: Arc<Task>) -> (Tool, TaskTool) {
    let input = &task.input_schema.document;
    let wrapped = !is_object_schema(input);
    let input_schema = if wrapped {
        json!({"type": "object", "properties": {"input": input}, "required": ["input"], "additionalProperties": false})
    } else {
        input.clone()
    };
    let output = &task.output_schema.document;
    let structured = is_object_schema(output);
    let description = task
        .metadata
        .description
        .clone()
        .or_else(|| task.metadata.label.clone())
        .unwrap_or_else(|| format!("Runs the Ratchet task `{}`", task.name()));
    let mut tool = Tool::new(name.to_owned(), description, Arc::new(object(input_schema)))
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(false).open_world(true));
    if let Some(label) = &task.metadata.label {
        tool = tool.with_title(label.clone());
    }
    if structured {
        tool = tool.with_raw_output_schema(Arc::new(object(output.clone())));
    }
    (tool, TaskTool { task, wrapped, structured })
}

/// A schema MCP accepts as a tool's: `"type": "object"` at the root.
fn is_object_schema(schema: &Value) -> bool {
    schema.get("type").and_then(Value::as_str) == Some("object")
}

pub fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_keep_what_clients_accept_and_leave_the_platform_prefix_alone() {
        assert_eq!(tool_name("weather-api").as_deref(), Some("weather-api"));
        assert_eq!(tool_name("add two.v2").as_deref(), Some("add_two.v2"));
        assert_eq!(tool_name("ratchet_get_job"), None);
        assert_eq!(tool_name(""), None);
        assert_eq!(tool_name(&"x".repeat(300)).map(|n| n.len()), Some(MAX_TOOL_NAME));
    }

    #[test]
    fn only_object_schemas_are_tool_schemas() {
        assert!(is_object_schema(&json!({"type": "object"})));
        assert!(!is_object_schema(&json!({"type": "number"})));
        assert!(!is_object_schema(&json!(true)));
    }
}
