//! Tasks: a folder (or a ZIP of one) with metadata, schemas, code and test cases.
//!
//! ```text
//! metadata.json        uuid, label, version, description, tags; optional timeout, memory_limit,
//!                      allowed_hosts, concurrency, secrets
//! input.schema.json    JSON Schema of the input   (input.schema is accepted too)
//! output.schema.json   JSON Schema of the output  (output.schema likewise)
//! main.js              the code
//! tests/*.json         {"input": ..., "expected_output": ...} or {"input": ..., "expected_error": ...}
//!                      or assertions, in the original Ratchet's format too (see [`expect`])
//! ```

pub mod expect;
mod files;
mod load;
mod schema;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

pub use expect::{Assertion, Operator};
pub use load::{TaskError, load, load_files};
pub use schema::{MAX_BACKTRACKING_SUBJECT, Schema, SchemaViolation, VALIDATION_BUDGET};

use crate::config::{ByteSize, Concurrency, LimitConfig};
use crate::http::{HostRule, Mocks};

/// A loaded, checked task. Its JavaScript is only known to parse once a worker checked it.
#[derive(Debug)]
pub struct Task {
    pub metadata: TaskMetadata,
    /// `metadata.json` as written.
    pub metadata_document: Value,
    /// SHA-256 (hex) of metadata, schemas and code: identifies this version of the task.
    pub digest: String,
    pub input_schema: Schema,
    pub output_schema: Schema,
    pub code: std::sync::Arc<str>,
    /// Identifies this exact code for worker-side caching: id, version and content hash.
    pub code_key: String,
    pub tests: Vec<TestCase>,
    /// `allowed_hosts` of the metadata, parsed: when non-empty, the only hosts `fetch` may reach.
    pub allowed_hosts: Vec<HostRule>,
    /// Where the task was loaded from.
    pub origin: PathBuf,
    /// The run timeout `metadata.json` asked for, as understood.
    pub timeout: Option<Duration>,
    /// What loading noticed but accepted (a timeout read as milliseconds): `ratchet validate`
    /// prints it, a node logs it at load.
    pub warnings: Vec<String>,
}

/// `metadata.json`. Unknown fields are accepted: tasks written for the original Ratchet carry some.
#[derive(Debug, Clone, Deserialize)]
pub struct TaskMetadata {
    #[serde(alias = "id")]
    pub uuid: Option<String>,
    /// Short name; the folder name when absent.
    pub name: Option<String>,
    pub label: Option<String>,
    #[serde(default = "default_version")]
    pub version: String,
    pub description: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Wall-clock time a run may take: seconds, or text with units (`"30s"`, `"500ms"`,
    /// `"2m"`); a bare number above `limits.max_timeout_secs` is read as milliseconds, as the
    /// original Ratchet wrote it, with a warning ([`Task::timeout`] is what was understood).
    #[serde(default, deserialize_with = "metadata_duration")]
    pub timeout: Option<MetadataDuration>,
    /// Heap a run may use, e.g. `"128MB"`.
    pub memory_limit: Option<ByteSize>,
    /// Hosts the task's `fetch` may reach, narrowing the deployment's egress policy.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// How many of its jobs run at once over every node (`queue.limits` of the configuration
    /// overrides it).
    pub concurrency: Option<Concurrency>,
    /// The secrets the task reads (`context.secrets.NAME`); it sees no other.
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// A duration as `metadata.json` writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetadataDuration {
    /// A bare number: seconds (or, past the ceiling, milliseconds: see [`TaskMetadata::timeout`]).
    Number(f64),
    /// Text with units.
    Text(Duration),
}

fn metadata_duration<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MetadataDuration>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64().map(MetadataDuration::Number)),
        Some(Value::String(text)) => {
            let text = text.trim();
            if let Ok(seconds) = text.parse::<f64>() {
                return Ok(Some(MetadataDuration::Number(seconds)));
            }
            humantime::parse_duration(text).map(|d| Some(MetadataDuration::Text(d))).map_err(|_| {
                serde::de::Error::custom(format!(
                    "`{text}` is neither a number of seconds nor a duration such as \"30s\", \"500ms\" or \"2m\""
                ))
            })
        }
        Some(other) => Err(serde::de::Error::custom(format!(
            "a duration is a number of seconds or text such as \"30s\", not {other}"
        ))),
    }
}

fn default_version() -> String {
    "1.0.0".into()
}

/// One file of `tests/` (the format, the original Ratchet's included, is in [`expect`]).
#[derive(Debug, Clone)]
pub struct TestCase {
    /// The case's `name`, else the file name without `.json`.
    pub name: String,
    pub description: Option<String>,
    pub input: Value,
    pub expect: Expectation,
    /// Checks on the output or the failure; all must hold.
    pub assertions: Vec<Assertion>,
    /// HTTP mocks: when present, the case's `fetch` calls are answered from them only.
    pub mock: Option<Mocks>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// The run succeeds with this output: compared exactly, or, when the case has assertions,
    /// as a subset (matcher strings allowed either way).
    Output(Value),
    /// The run fails; `name` and `message` (a substring) are checked when given.
    Error { name: Option<String>, message: Option<String> },
    /// Only the case's assertions decide.
    Assertions,
}

/// The limits a run of this task gets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TaskLimits {
    pub timeout: Duration,
    pub memory: ByteSize,
}

impl Task {
    /// The task's name: `name` from metadata, else the label, else the folder name.
    pub fn name(&self) -> &str {
        self.metadata
            .name
            .as_deref()
            .unwrap_or_else(|| self.origin.file_stem().and_then(|s| s.to_str()).unwrap_or("task"))
    }

    pub fn id(&self) -> String {
        self.metadata.uuid.clone().unwrap_or_else(|| self.name().to_owned())
    }

    /// Metadata limits where set, configuration defaults otherwise. Checked at load against
    /// the configured ceilings.
    pub fn limits(&self, defaults: &LimitConfig) -> TaskLimits {
        TaskLimits {
            timeout: self.timeout.unwrap_or_else(|| Duration::from_secs_f64(defaults.timeout_secs)),
            memory: self.metadata.memory_limit.unwrap_or(defaults.memory_limit),
        }
    }
}
