//! The wire protocol between the Ratchet kernel and a JavaScript worker process.
//!
//! Transport: the worker's stdin (kernel to worker) and stdout (worker to kernel), one JSON
//! object per line, each wrapped in an [`Envelope`]. A JSON serializer never emits a raw newline
//! (newlines inside strings are escaped), so a line is always exactly one frame, and nothing a
//! task prints can pose as a frame: task output only ever travels inside a [`LogRecord`].
//!
//! Both sides reject frames larger than their limit ([`ProtocolError::FrameTooLarge`]) and frames
//! of another protocol version ([`ProtocolError::VersionMismatch`]).

use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

mod codec;

pub use codec::{FrameBuffer, decode, encode, encode_within};

/// Version of this protocol. Bumped on any incompatible change of a message.
pub const PROTOCOL_VERSION: u32 = 2;

/// Default maximum size of one frame in bytes, newline excluded. Every payload that crosses
/// the pipe (input, output, fetch bodies, log lines) must fit in one frame with its envelope;
/// each sender checks its frame before writing it and fails the one payload with a typed
/// error instead, and each reader refuses larger frames as a protocol error.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;

/// Bytes a frame needs besides its payload (envelope, ids, field names); the configuration
/// checks that every payload limit leaves this much room in a frame.
pub const FRAME_HEADROOM: usize = 64 * 1024;

/// Deepest nesting of a task's input or output. Frames wrap values in a few levels of
/// envelope, and serde_json refuses documents nested deeper than 128 levels.
pub const MAX_VALUE_DEPTH: usize = 100;

/// How deeply `value` nests (a scalar is 0, `[1]` is 1). Iterative: safe on any input.
pub fn value_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        deepest = deepest.max(depth);
        match value {
            Value::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Value::Object(map) => stack.extend(map.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    deepest
}

/// The error classes every task can throw to classify its failure (README.md, "Tasks"). Their
/// names reach the kernel unchanged as [`JsError::name`].
pub const TYPED_ERROR_CLASSES: [&str; 11] = [
    "NetworkError",
    "HttpError",
    "DataError",
    "ValidationError",
    "AuthenticationError",
    "AuthorizationError",
    "RateLimitError",
    "ConfigurationError",
    "ServiceUnavailableError",
    "NotFoundError",
    "TimeoutError",
];

/// Exit code a worker uses when a run exceeded its memory budget.
pub const EXIT_MEMORY_LIMIT: i32 = 86;

/// Exit code a worker uses when the kernel sent a frame it cannot accept.
pub const EXIT_PROTOCOL_ERROR: i32 = 87;

/// Every frame on the wire, in both directions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<M> {
    pub protocol_version: u32,
    /// Milliseconds since the Unix epoch at which the frame was written.
    pub timestamp: u64,
    pub message: M,
}

impl<M> Envelope<M> {
    pub fn new(message: M) -> Self {
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Envelope { protocol_version: PROTOCOL_VERSION, timestamp, message }
    }
}

/// Messages from the kernel to a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum KernelMessage {
    ExecuteTask(ExecuteTask),
    FetchResponse(FetchResponse),
    Ping { nonce: u64 },
    Shutdown,
}

/// Messages from a worker to the kernel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum WorkerMessage {
    WorkerReady(WorkerReady),
    Log(LogRecord),
    FetchRequest(FetchRequest),
    TaskResult(TaskResult),
    Pong { nonce: u64 },
}

/// The handshake: the first frame a worker writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerReady {
    pub worker_id: String,
    pub protocol_version: u32,
    pub capabilities: Vec<String>,
}

/// Run (or only check) a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteTask {
    pub correlation_id: u64,
    pub mode: RunMode,
    pub task: TaskCode,
    pub input: Value,
    pub limits: RunLimits,
    pub context: RunContext,
}

/// What the worker does with the task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// Evaluate the script, resolve its entry point and call it with the input.
    Run,
    /// Evaluate the script and resolve its entry point, without calling it.
    Check,
}

/// The code of a task, or a reference to code this worker already received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskCode {
    /// Identifies the code: task id, version and content hash. Stable for identical code.
    pub key: String,
    /// The source of `main.js`; `None` when the kernel already sent it to this worker.
    pub code: Option<String>,
}

/// Limits the worker applies to one run. The kernel enforces them from outside as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunLimits {
    pub timeout_ms: u64,
    pub memory_bytes: u64,
}

/// What the task sees as its second argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunContext {
    pub execution_id: String,
    pub attempt: u32,
    pub task_id: String,
    pub task_version: String,
    /// The secrets the task declares, by name (`context.secrets.NAME`); only those.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub secrets: std::collections::BTreeMap<String, String>,
}

/// Output of the task's `console.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub correlation_id: u64,
    pub level: LogLevel,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

/// A task's `fetch`, performed by the kernel on the worker's behalf.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchRequest {
    pub correlation_id: u64,
    pub request_id: u64,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchResponse {
    pub correlation_id: u64,
    pub request_id: u64,
    pub outcome: FetchOutcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FetchOutcome {
    Response {
        status: u16,
        status_text: String,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// The request failed before a response; `error.name` is the JS error class to throw.
    Failed {
        error: JsError,
    },
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    pub correlation_id: u64,
    pub outcome: RunOutcome,
    pub stats: RunStats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The task returned a value (`null` in check mode).
    Success { output: Value },
    /// The script failed to compile, had no entry point, or threw.
    Error { error: JsError },
    /// The task returned a value whose frame would be `bytes` long, past the frame limit.
    OutputTooLarge { bytes: u64, limit: u64 },
}

/// A JavaScript error as the task raised it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsError {
    /// The error class, e.g. `DataError`, `TypeError`, `SyntaxError`.
    pub name: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

/// Resource figures of a run, measured by the worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RunStats {
    /// Time inside the worker, from receiving the frame to writing the result.
    pub duration_us: u64,
    /// Peak resident memory of the worker process so far, in KiB ([`vm_hwm_kib`]).
    pub peak_rss_kib: u64,
}

/// The `VmHWM` line of a `/proc/<pid>/status` text: the process image's peak resident memory,
/// in KiB. Kernel and worker report their peaks from it rather than from `getrusage`'s
/// `ru_maxrss`, which Linux carries over `fork` and `exec` (a process started by a larger one
/// reports its parent's size).
pub fn vm_hwm_kib(status: &str) -> Option<u64> {
    let value = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
    value.trim().trim_end_matches("kB").trim().parse().ok()
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    #[error("frame of {size} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge { size: usize, limit: usize },
    #[error("frame speaks protocol version {found}, expected {expected}")]
    VersionMismatch { expected: u32, found: u32 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("i/o error on the worker pipe: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads frames from a blocking reader (the worker's side of the pipe).
pub struct FrameReader<R> {
    reader: R,
    buffer: FrameBuffer,
}

impl<R: BufRead> FrameReader<R> {
    pub fn new(reader: R, max_frame_bytes: usize) -> Self {
        FrameReader { reader, buffer: FrameBuffer::new(max_frame_bytes) }
    }

    /// The next frame, or `None` at end of input.
    pub fn read<M: DeserializeOwned>(&mut self) -> Result<Option<M>, ProtocolError> {
        loop {
            let available = self.reader.fill_buf()?;
            if available.is_empty() {
                return self.buffer.finish_eof().map(|()| None);
            }
            let (consumed, line) = self.buffer.push(available)?;
            self.reader.consume(consumed);
            if let Some(line) = line {
                return decode(&line, self.buffer.limit()).map(Some);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::vm_hwm_kib;

    #[test]
    fn the_peak_is_read_from_the_vm_hwm_line() {
        let status = "Name:\tratchet\nVmPeak:\t  123456 kB\nVmHWM:\t   11240 kB\nVmRSS:\t   11008 kB\n";
        assert_eq!(vm_hwm_kib(status), Some(11_240));
        assert_eq!(vm_hwm_kib("Name:\tratchet\n"), None);
        assert_eq!(vm_hwm_kib("VmHWM:\tlots kB\n"), None);
    }
}
