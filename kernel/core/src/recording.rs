//! Recordings of runs. `ratchet run-once --record DIR` writes one; `ratchet replay DIR` runs
//! the recorded task again offline, serving its `fetch` calls from the recording.
//!
//! ```text
//! DIR/manifest.json    format, execution id, task, time, status
//! DIR/task/ or task.zip  a copy of the task as it ran
//! DIR/input.json       the input
//! DIR/result.json      {"output": ...} or {"error": {"kind", "name", "message", ...}}
//! DIR/logs.json        [{"level", "message"}]
//! DIR/requests.har     every HTTP exchange, HAR 1.2, secrets masked
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::execution::{Execution, ExecutionError};
use crate::http::Har;
use crate::task::Task;

pub const FORMAT: &str = "ratchet-recording/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub execution_id: String,
    pub task_name: String,
    pub task_version: String,
    /// `task` (a folder) or `task.zip`, relative to the recording.
    pub task_path: String,
    pub recorded_at: String,
    pub duration_ms: f64,
    pub status: String,
    pub requests: usize,
}

/// A recording read back.
#[derive(Debug, Clone)]
pub struct Recording {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub input: Value,
    pub result: Value,
    pub har: Har,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordingError {
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Format { path: PathBuf, message: String },
    #[error("{} already exists and is not empty; record into a new folder", .0.display())]
    NotEmpty(PathBuf),
}

/// Writes the recording of `execution` (a run of `task` with `input`) into `dir`.
pub fn write(dir: &Path, task: &Task, input: &Value, execution: &Execution) -> Result<(), RecordingError> {
    prepare(dir)?;
    let task_path = copy_task(&task.origin, dir)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        execution_id: execution.id.clone(),
        task_name: task.name().to_owned(),
        task_version: task.metadata.version.clone(),
        task_path,
        recorded_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        duration_ms: execution.duration.as_secs_f64() * 1000.0,
        status: execution.status().as_str().into(),
        requests: execution.http.len(),
    };
    write_json(&dir.join("input.json"), input)?;
    write_json(&dir.join("result.json"), &result_json(&execution.outcome))?;
    write_json(&dir.join("logs.json"), &logs_json(&execution.logs))?;
    write_json(&dir.join("requests.har"), &Har::from_exchanges(&execution.http, execution.http_unrecorded))?;
    write_json(&dir.join("manifest.json"), &manifest)
}

/// Reads the recording in `dir`.
pub fn read(dir: &Path) -> Result<Recording, RecordingError> {
    let manifest: Manifest = read_json(&dir.join("manifest.json"))?;
    if manifest.format != FORMAT {
        return Err(RecordingError::Format {
            path: dir.join("manifest.json"),
            message: format!("format `{}` is not {FORMAT}", manifest.format),
        });
    }
    Ok(Recording {
        input: read_json(&dir.join("input.json"))?,
        result: read_json(&dir.join("result.json"))?,
        har: read_json(&dir.join("requests.har"))?,
        dir: dir.to_owned(),
        manifest,
    })
}

impl Recording {
    /// The recorded copy of the task.
    pub fn task_path(&self) -> PathBuf {
        self.dir.join(&self.manifest.task_path)
    }

    /// `Ok` when `outcome` is what was recorded: the same output, or an error of the same
    /// kind and name. Otherwise what differs.
    pub fn compare(&self, outcome: &Result<Value, ExecutionError>) -> Result<(), String> {
        compare(&self.result, outcome)
    }
}

/// `Ok` when `outcome` is the `recorded` result (`{"output": ..}` or `{"error": ..}`): the same
/// output, or an error of the same kind and name. Otherwise what differs.
pub fn compare(recorded: &Value, outcome: &Result<Value, ExecutionError>) -> Result<(), String> {
    match (recorded.get("output"), recorded.get("error"), outcome) {
        (Some(recorded), _, Ok(output)) if crate::task::expect::json_eq(recorded, output) => Ok(()),
        (Some(recorded), _, Ok(output)) => {
            Err(format!("output differs: recorded {recorded}, replayed {output}"))
        }
        (Some(recorded), _, Err(error)) => Err(format!("recorded output {recorded}, replay failed: {error}")),
        (None, Some(recorded), Err(error))
            if recorded["kind"] == error.kind() && recorded["name"] == error.name() =>
        {
            Ok(())
        }
        (None, Some(recorded), Err(error)) => Err(format!(
            "error differs: recorded {} {}, replayed {} {}",
            recorded["kind"],
            recorded["name"],
            error.kind(),
            error.name()
        )),
        (None, Some(recorded), Ok(output)) => {
            Err(format!("recorded error {recorded}, replay returned {output}"))
        }
        (None, None, _) => Err("result.json holds neither `output` nor `error`".into()),
    }
}

/// `{"output": ...}` or `{"error": ...}`, as in recordings and `--format json`.
pub fn result_json(outcome: &Result<Value, ExecutionError>) -> Value {
    match outcome {
        Ok(output) => json!({ "output": output }),
        Err(error) => json!({ "error": error_json(error) }),
    }
}

/// A run's log lines as `[{"level", "message"}]`, as in recordings, envelopes and the history.
pub fn logs_json(logs: &[crate::supervisor::LogLine]) -> Value {
    logs.iter().map(|l| json!({"level": l.level.as_str(), "message": l.message})).collect()
}

/// An execution error as one JSON document: `kind`, `name`, `message`, and `stack` or
/// schema `violations` where there are some.
pub fn error_json(error: &ExecutionError) -> Value {
    let mut value = json!({"kind": error.kind(), "name": error.name(), "message": error.to_string()});
    match error {
        ExecutionError::InvalidInput(violations) | ExecutionError::InvalidOutput(violations) => {
            value["violations"] = violations
                .iter()
                .map(
                    |v| json!({"pointer": v.pointer, "rule": v.rule, "value": v.value, "message": v.message}),
                )
                .collect();
        }
        ExecutionError::Task(js) => {
            value["message"] = json!(js.message);
            if let Some(stack) = &js.stack {
                value["stack"] = json!(stack);
            }
        }
        _ => {}
    }
    value
}

fn prepare(dir: &Path) -> Result<(), RecordingError> {
    let io = |e: std::io::Error| RecordingError::Io { path: dir.to_owned(), message: e.to_string() };
    if dir.exists() && std::fs::read_dir(dir).map_err(io)?.next().is_some() {
        return Err(RecordingError::NotEmpty(dir.to_owned()));
    }
    std::fs::create_dir_all(dir).map_err(io)
}

/// Copies the task's folder (or archive) into the recording; returns its relative path.
fn copy_task(origin: &Path, dir: &Path) -> Result<String, RecordingError> {
    if origin.is_dir() {
        copy_dir(origin, &dir.join("task"))?;
        Ok("task".into())
    } else {
        let target = dir.join("task.zip");
        std::fs::copy(origin, &target)
            .map_err(|e| RecordingError::Io { path: target, message: e.to_string() })?;
        Ok("task.zip".into())
    }
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), RecordingError> {
    let io =
        |path: &Path, e: std::io::Error| RecordingError::Io { path: path.to_owned(), message: e.to_string() };
    std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
    for entry in std::fs::read_dir(from).map_err(|e| io(from, e))? {
        let entry = entry.map_err(|e| io(from, e))?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if source.is_dir() {
            copy_dir(&source, &target)?;
        } else if source.is_file() {
            std::fs::copy(&source, &target).map_err(|e| io(&source, e))?;
        }
    }
    Ok(())
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), RecordingError> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| RecordingError::Format { path: path.to_owned(), message: e.to_string() })?;
    text.push('\n');
    std::fs::write(path, text)
        .map_err(|e| RecordingError::Io { path: path.to_owned(), message: e.to_string() })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordingError> {
    let text = std::fs::read_to_string(path).map_err(|e| RecordingError::Io {
        path: path.to_owned(),
        message: format!("{e}; is this a folder written by `ratchet run-once --record`?"),
    })?;
    serde_json::from_str(&text)
        .map_err(|e| RecordingError::Format { path: path.to_owned(), message: e.to_string() })
}
