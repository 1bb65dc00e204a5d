//! `ratchet generate task NAME`: a working task to start from.

use std::path::{Path, PathBuf};

use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenerateError {
    #[error("`{0}` is not a usable task name; use letters, digits, `-` and `_`")]
    BadName(String),
    #[error("{} already exists; choose another name or remove it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

const MAIN_JS: &str = r#"// Called with the input (checked against input.schema.json) and a context
// ({ executionId, attempt, taskId, taskVersion }). Return the output, or a Promise of it.
(function (input, context) {
  if (input.name.trim() === '') {
    throw new DataError('name must not be blank');
  }
  console.log(`greeting ${input.name}`);
  return { greeting: `Hello, ${input.name}!` };
})
"#;

/// Writes a new task folder `parent/name` and returns its path.
pub fn task(parent: &Path, name: &str) -> Result<PathBuf, GenerateError> {
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(GenerateError::BadName(name.to_owned()));
    }
    let dir = parent.join(name);
    if dir.exists() {
        return Err(GenerateError::Exists(dir));
    }
    let metadata = json!({
        "uuid": uuid::Uuid::new_v4().to_string(),
        "name": name,
        "label": name,
        "version": "1.0.0",
        "description": format!("{name}: describe what this task does"),
        "tags": [],
        "timeout": 10,
        "memory_limit": "64MB"
    });
    let input = json!({
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": false
    });
    let output = json!({
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"]
    });
    let case = json!({"input": {"name": "Ada"}, "expected_output": {"greeting": "Hello, Ada!"}});
    let blank = json!({"input": {"name": " "}, "expected_error": {"name": "DataError"}});
    let files = [
        ("metadata.json", pretty(&metadata)),
        ("input.schema.json", pretty(&input)),
        ("output.schema.json", pretty(&output)),
        ("main.js", MAIN_JS.to_owned()),
        ("tests/greets-by-name.json", pretty(&case)),
        ("tests/rejects-blank-name.json", pretty(&blank)),
    ];
    for (file, content) in files {
        write(&dir.join(file), &content)?;
    }
    Ok(dir)
}

fn pretty(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

fn write(path: &Path, content: &str) -> Result<(), GenerateError> {
    let io = |e: std::io::Error| GenerateError::Io { path: path.to_owned(), message: e.to_string() };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, content).map_err(io)
}
