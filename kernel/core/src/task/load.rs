//! Loading and checking a task from disk. The JavaScript itself is checked by a worker.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::files::TaskFiles;
use super::{Assertion, Expectation, MetadataDuration, Schema, Task, TaskMetadata, TestCase};
use crate::config::LimitConfig;
use crate::http::{HostRule, Mocks};

/// Why a task cannot be loaded. Each names the file and, where there is one, the line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TaskError {
    #[error("{path}: no such task folder or ZIP archive", path = path.display())]
    NotFound { path: PathBuf },
    #[error("{file}: missing; {hint}")]
    MissingFile { file: String, hint: &'static str },
    #[error("{file}:{line}:{column}: invalid JSON: {message}")]
    BadJson { file: String, line: usize, column: usize, message: String },
    #[error("{file}: {message}")]
    BadSchema { file: String, message: String },
    #[error("{file}: {message}")]
    BadMetadata { file: String, message: String },
    #[error("{file}: {message}")]
    BadTestCase { file: String, message: String },
    #[error("{file}: {message}")]
    BadScript { file: String, message: String },
    #[error("{file}: larger than the limit of {limit} bytes")]
    TooLarge { file: String, limit: u64 },
    #[error("{archive}: {message}", archive = archive.display())]
    Archive { archive: PathBuf, message: String },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
    /// A symlink leading out of the task folder, or something that is not a regular file.
    #[error("{file}: {reason}")]
    NotAPlainFile { file: String, reason: String },
}

/// Loads the task at `path` (a folder or a ZIP archive) and checks everything but its script.
pub fn load(path: &Path, limits: &LimitConfig) -> Result<Task, TaskError> {
    load_from(TaskFiles::open(path)?, path, limits)
}

/// Loads a task from files held in memory (a loader plugin's), keyed by their `/`-separated
/// path inside the task folder; `origin` (such as `plugin:NAME/TASK`) names it in messages.
/// The same checks apply as to a folder on disk.
pub fn load_files(
    origin: &str,
    entries: std::collections::BTreeMap<String, Vec<u8>>,
    limits: &LimitConfig,
) -> Result<Task, TaskError> {
    let path = Path::new(origin);
    let files = TaskFiles::memory(path, entries)?;
    load_from(files, path, limits)
}

fn load_from(files: TaskFiles, path: &Path, limits: &LimitConfig) -> Result<Task, TaskError> {
    let (_, metadata_value) =
        required_json(&files, &["metadata.json"], "every task needs one, with at least a version")?;
    let metadata = parse_metadata(&files, metadata_value.clone())?;
    check_limits(&files, &metadata, limits)?;
    let mut warnings = Vec::new();
    let timeout = timeout(&files, &metadata, limits, &mut warnings)?;
    let input_schema = schema(&files, "input")?;
    let output_schema = schema(&files, "output")?;
    let code = required_text(&files, "main.js")?;
    let tests = test_cases(&files)?;
    let allowed_hosts = metadata
        .allowed_hosts
        .iter()
        .map(|rule| HostRule::parse(rule))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|message| TaskError::BadMetadata {
            file: files.display("metadata.json"),
            message: format!("allowed_hosts: {message}"),
        })?;
    let name = metadata.name.clone().unwrap_or_else(|| folder_name(path));
    let code_key = format!(
        "{}@{}#{:016x}",
        metadata.uuid.as_deref().unwrap_or(&name),
        metadata.version,
        fnv1a(code.as_bytes())
    );
    let digest = digest(&[
        metadata_value.to_string().as_bytes(),
        input_schema.document.to_string().as_bytes(),
        output_schema.document.to_string().as_bytes(),
        code.as_bytes(),
    ]);
    Ok(Task {
        metadata,
        metadata_document: metadata_value,
        digest,
        input_schema,
        output_schema,
        code: code.into(),
        code_key,
        tests,
        allowed_hosts,
        origin: path.to_owned(),
        timeout,
        warnings,
    })
}

fn folder_name(path: &Path) -> String {
    path.file_stem().and_then(|s| s.to_str()).unwrap_or("task").to_owned()
}

fn parse_metadata(files: &TaskFiles, value: Value) -> Result<TaskMetadata, TaskError> {
    serde_json::from_value(value)
        .map_err(|e| TaskError::BadMetadata { file: files.display("metadata.json"), message: e.to_string() })
}

fn check_limits(files: &TaskFiles, metadata: &TaskMetadata, limits: &LimitConfig) -> Result<(), TaskError> {
    let bad = |message: String| TaskError::BadMetadata { file: files.display("metadata.json"), message };
    if let Some(memory) = metadata.memory_limit
        && memory > limits.max_memory_limit
    {
        return Err(bad(format!(
            "memory_limit {memory} exceeds the configured ceiling {} (limits.max_memory_limit)",
            limits.max_memory_limit
        )));
    }
    Ok(())
}

/// The run timeout `metadata.json` asks for. A bare number above `limits.max_timeout_secs`
/// is read as milliseconds (the original Ratchet's authoring guide writes `"timeout": 30000`),
/// with a warning saying so.
fn timeout(
    files: &TaskFiles,
    metadata: &TaskMetadata,
    limits: &LimitConfig,
    warnings: &mut Vec<String>,
) -> Result<Option<Duration>, TaskError> {
    let file = files.display("metadata.json");
    let seconds = match metadata.timeout {
        None => return Ok(None),
        Some(MetadataDuration::Text(duration)) => duration.as_secs_f64(),
        Some(MetadataDuration::Number(n)) if n > limits.max_timeout_secs => {
            warnings.push(format!(
                "{file}: `timeout: {n}` is above limits.max_timeout_secs ({} s), so it was read as milliseconds: \
                 {} s; write \"{}ms\" or \"{}s\" to say which you mean",
                limits.max_timeout_secs,
                n / 1000.0,
                n,
                n / 1000.0
            ));
            n / 1000.0
        }
        Some(MetadataDuration::Number(n)) => n,
    };
    if !(seconds > 0.0 && seconds <= limits.max_timeout_secs) {
        return Err(TaskError::BadMetadata {
            file,
            message: format!(
                "timeout must be above 0 and at most {} s (limits.max_timeout_secs), not {seconds} s",
                limits.max_timeout_secs
            ),
        });
    }
    Ok(Some(Duration::from_secs_f64(seconds)))
}

fn schema(files: &TaskFiles, which: &str) -> Result<Schema, TaskError> {
    let names = [format!("{which}.schema.json"), format!("{which}.schema")];
    let names = [names[0].as_str(), names[1].as_str()];
    let (file, document) = required_json(files, &names, "add a JSON Schema; `{}` accepts any value")?;
    Schema::compile(document).map_err(|message| TaskError::BadSchema {
        file,
        message: format!("not a valid JSON Schema: {message}"),
    })
}

fn required_text(files: &TaskFiles, name: &str) -> Result<String, TaskError> {
    let bytes = files.read(name)?.ok_or_else(|| TaskError::MissingFile {
        file: files.display(name),
        hint: "write the task's code there: `(function(input) { return input; })`",
    })?;
    String::from_utf8(bytes).map_err(|e| TaskError::BadScript {
        file: files.display(name),
        message: format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
    })
}

/// Reads the first of `names` that exists and parses it as JSON; returns its shown name too.
fn required_json(
    files: &TaskFiles,
    names: &[&str],
    hint: &'static str,
) -> Result<(String, Value), TaskError> {
    for name in names {
        if let Some(bytes) = files.read(name)? {
            let file = files.display(name);
            let value = parse_json(&file, &bytes)?;
            return Ok((file, value));
        }
    }
    Err(TaskError::MissingFile { file: files.display(names[0]), hint })
}

fn parse_json(file: &str, bytes: &[u8]) -> Result<Value, TaskError> {
    serde_json::from_slice(bytes).map_err(|e| TaskError::BadJson {
        file: file.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })
}

/// serde_json ends its messages with " at line L column C"; the error shows those itself.
fn strip_position(message: &str) -> String {
    message.split(" at line ").next().unwrap_or(message).to_owned()
}

fn test_cases(files: &TaskFiles) -> Result<Vec<TestCase>, TaskError> {
    files
        .tests()?
        .into_iter()
        .map(|(path, bytes)| {
            let file = files.display(&path);
            let value = parse_json(&file, &bytes)?;
            test_case(&path, value).map_err(|message| TaskError::BadTestCase { file, message })
        })
        .collect()
}

fn test_case(path: &str, value: Value) -> Result<TestCase, String> {
    let Value::Object(mut case) = value else {
        return Err(
            "a test case is an object with `input` and `expected_output`, `expected_error` or `assertions`"
                .into(),
        );
    };
    let text = |value: Option<Value>, field: &str| -> Result<Option<String>, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(other) => Err(format!("`{field}` must be a string, not {other}")),
        }
    };
    let file_name = path.trim_start_matches("tests/").trim_end_matches(".json").to_owned();
    let name = text(case.remove("name"), "name")?.filter(|n| !n.trim().is_empty()).unwrap_or(file_name);
    let description = text(case.remove("description"), "description")?;
    let input = case.remove("input").unwrap_or(Value::Null);
    let mock = case.remove("mock").map(|mock| Mocks::parse(&mock)).transpose()?;
    let assertions = match case.remove("assertions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, a)| Assertion::parse(a).map_err(|e| format!("assertions[{i}]: {e}")))
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("`assertions` must be a list, not {other}")),
    };
    let expect = match (case.remove("expected_output"), case.remove("expected_error")) {
        (Some(output), None) => Expectation::Output(output),
        (None, Some(error)) => expected_error(error)?,
        (Some(_), Some(_)) => {
            return Err("has both `expected_output` and `expected_error`; keep one".into());
        }
        (None, None) if !assertions.is_empty() => Expectation::Assertions,
        (None, None) => return Err("needs `expected_output`, `expected_error` or `assertions`".into()),
    };
    Ok(TestCase { name, description, input, expect, assertions, mock })
}

/// `"DataError"`, `true`, or `{"name": "DataError", "message": "substring"}`.
fn expected_error(value: Value) -> Result<Expectation, String> {
    let text = |v: Option<&Value>| -> Result<Option<String>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(format!("`expected_error` fields must be strings, got {other}")),
        }
    };
    match value {
        Value::Bool(true) => Ok(Expectation::Error { name: None, message: None }),
        Value::String(name) => Ok(Expectation::Error { name: Some(name), message: None }),
        Value::Object(map) => {
            Ok(Expectation::Error { name: text(map.get("name"))?, message: text(map.get("message"))? })
        }
        other => Err(format!("`expected_error` is an error name or {{\"name\", \"message\"}}, got {other}")),
    }
}

/// SHA-256 over length-prefixed parts, in hex: a task version's identity.
fn digest(parts: &[&[u8]]) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A stable 64-bit content hash for cache keys (FNV-1a; not for security).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
