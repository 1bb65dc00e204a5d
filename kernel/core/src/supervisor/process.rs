//! One worker process: spawn, handshake, frames, and how it ended.

use std::collections::{HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::time::{Instant, timeout, timeout_at};
use tokio_util::sync::CancellationToken;
use worker_protocol::{
    EXIT_MEMORY_LIMIT, EXIT_PROTOCOL_ERROR, ExecuteTask, FetchResponse, FrameBuffer, KernelMessage, LogLevel,
    PROTOCOL_VERSION, ProtocolError, RunOutcome, TaskCode, WorkerMessage, decode, encode_within,
};

use super::{LogLine, PoolSpec, RunReply, RunRequest, WorkerFailure};

/// Lines of a worker's stderr kept to explain its death.
const STDERR_TAIL_LINES: usize = 20;
/// Log lines kept per run; further lines are counted, not stored.
const MAX_LOG_LINES: usize = 10_000;
/// How long a worker asked to shut down gets before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);
/// How long a dead worker's last stderr lines are waited for.
const STDERR_DRAIN: Duration = Duration::from_millis(500);

pub(super) struct WorkerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    buffer: FrameBuffer,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    /// The task reading stderr; it ends when the worker's stderr closes.
    stderr_reader: tokio::task::JoinHandle<()>,
    pub id: String,
    pub runs: u32,
    /// Code keys this worker already holds.
    sent: HashSet<String>,
    next_correlation: u64,
    /// The longest frame either side reads (`workers.max_frame_bytes`).
    max_frame_bytes: usize,
}

impl WorkerProcess {
    pub(super) async fn spawn(spec: &PoolSpec, id: String) -> Result<WorkerProcess, String> {
        WorkerProcess::start(spec, id)?.ready(spec.start_timeout).await
    }

    /// Starts the process, without waiting for its handshake ([`WorkerProcess::ready`]).
    /// Synchronous, so that a caller in a hurry starts it on its own thread; call it within a
    /// Tokio runtime.
    pub(super) fn start(spec: &PoolSpec, id: String) -> Result<WorkerProcess, String> {
        let mut child = command(spec, &id)
            .spawn()
            .map_err(|e| format!("cannot start worker binary {}: {e}", spec.binary.display()))?;
        if let Some(pid) = child.id()
            && let Err(error) = cap_address_space(pid, spec.address_space_cap)
        {
            let _ = child.start_kill();
            return Err(error);
        }
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err("worker started without its pipes".into());
        };
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let stderr_reader = tokio::spawn(collect_stderr(stderr, Arc::clone(&stderr_tail), id.clone()));
        Ok(WorkerProcess {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            buffer: FrameBuffer::new(spec.max_frame_bytes),
            stderr_tail,
            stderr_reader,
            id,
            runs: 0,
            sent: HashSet::new(),
            next_correlation: 1,
            max_frame_bytes: spec.max_frame_bytes,
        })
    }

    /// The started worker once it has said it is ready, within `start_timeout`.
    pub(super) async fn ready(mut self, start_timeout: Duration) -> Result<WorkerProcess, String> {
        match timeout(start_timeout, self.handshake()).await {
            Ok(Ok(())) => Ok(self),
            Ok(Err(reason)) => Err(self.fail_start(&reason).await),
            Err(_) => Err(self.fail_start(&format!("no handshake within {start_timeout:?}")).await),
        }
    }

    pub(super) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn handshake(&mut self) -> Result<(), String> {
        match self.read_frame().await {
            Ok(Some(WorkerMessage::WorkerReady(ready))) if ready.protocol_version == PROTOCOL_VERSION => {
                Ok(())
            }
            Ok(Some(WorkerMessage::WorkerReady(ready))) => Err(format!(
                "worker speaks protocol {}, the kernel speaks {PROTOCOL_VERSION}",
                ready.protocol_version
            )),
            Ok(Some(other)) => Err(format!("expected WorkerReady, got {other:?}")),
            Ok(None) => Err("the worker exited before its handshake".into()),
            Err(error) => Err(error.to_string()),
        }
    }

    async fn fail_start(&mut self, reason: &str) -> String {
        let status = self.kill().await;
        let how = status.map(|s| format!(" ({})", describe_exit(s, ""))).unwrap_or_default();
        format!("worker failed to start: {reason}{how}{}", self.stderr_note().await)
    }

    /// Runs one request. On any failure the worker is dead when this returns.
    pub(super) async fn execute(&mut self, request: RunRequest) -> RunReply {
        self.runs += 1;
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let limits = request.limits;
        let http = Arc::clone(&request.http);
        let live = request.live.clone();
        let max_log_bytes = request.max_log_bytes;
        let execution_id: Arc<str> = request.context.execution_id.as_str().into();
        let label = request.label.clone();
        let cancel = request.cancel.clone();
        let deadline = Instant::now() + limits.timeout;
        let mut reply = RunReply::new(self.id.clone());
        if let Err(error) = self.send_task(correlation_id, request).await {
            reply.result = Err(self.died(&format!("cannot send the task: {error}")).await);
            return reply;
        }
        loop {
            let frame = tokio::select! {
                biased;
                () = cancelled(cancel.as_ref()) => None,
                frame = timeout_at(deadline, self.read_frame()) => Some(frame),
            };
            let Some(frame) = frame else {
                self.kill().await;
                reply.result = Err(WorkerFailure::Cancelled(true));
                return reply;
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(_) => {
                    self.kill().await;
                    reply.result = Err(WorkerFailure::Timeout(limits.timeout));
                    return reply;
                }
            };
            match frame {
                Ok(Some(WorkerMessage::Log(record))) if record.correlation_id == correlation_id => {
                    let message = http.masker().text(&record.message).into_owned();
                    let Some(index) = push_log(&mut reply, record.level, message, max_log_bytes) else {
                        continue;
                    };
                    // A follower may join at any time; with none, nothing is copied.
                    if let Some(live) = &live
                        && live.receiver_count() > 0
                    {
                        let line = super::LiveLine {
                            execution_id: Arc::clone(&execution_id),
                            label: label.clone(),
                            index,
                            level: record.level,
                            message: reply.logs[index].message.clone(),
                        };
                        // Nobody following is fine.
                        let _ = live.send(line);
                    }
                }
                Ok(Some(WorkerMessage::FetchRequest(request)))
                    if request.correlation_id == correlation_id =>
                {
                    // The run's deadline covers time spent on its requests.
                    let fetched = tokio::select! {
                        biased;
                        () = cancelled(cancel.as_ref()) => Err(WorkerFailure::Cancelled(true)),
                        outcome = timeout_at(deadline, http.fetch(&request)) => {
                            outcome.map_err(|_| WorkerFailure::Timeout(limits.timeout))
                        }
                    };
                    let outcome = match fetched {
                        Ok(outcome) => outcome,
                        Err(failure) => {
                            self.kill().await;
                            reply.result = Err(failure);
                            return reply;
                        }
                    };
                    let response = FetchResponse {
                        correlation_id: request.correlation_id,
                        request_id: request.request_id,
                        outcome,
                    };
                    if let Err(error) = self.answer_fetch(response).await {
                        reply.result = Err(self.died(&format!("cannot answer a fetch: {error}")).await);
                        return reply;
                    }
                }
                Ok(Some(WorkerMessage::TaskResult(result))) if result.correlation_id == correlation_id => {
                    reply.stats = Some(result.stats);
                    reply.result = Ok(result.outcome);
                    return reply;
                }
                Ok(Some(WorkerMessage::Pong { .. })) => {}
                Ok(Some(other)) => {
                    self.kill().await;
                    reply.result =
                        Err(WorkerFailure::Protocol(format!("unexpected frame during run: {other:?}")));
                    return reply;
                }
                Ok(None) => {
                    reply.result = Err(match self.died("").await {
                        WorkerFailure::MemoryLimit(_) => WorkerFailure::MemoryLimit(Some(limits.memory)),
                        other => other,
                    });
                    return reply;
                }
                Err(error) => {
                    self.kill().await;
                    reply.result = Err(WorkerFailure::Protocol(error.to_string()));
                    return reply;
                }
            }
        }
    }

    /// Health check: the worker answers a ping within `limit`.
    pub(super) async fn ping(&mut self, limit: Duration) -> bool {
        let nonce = self.next_correlation;
        self.next_correlation += 1;
        if self.send(KernelMessage::Ping { nonce }).await.is_err() {
            return false;
        }
        matches!(
            timeout(limit, self.read_frame()).await,
            Ok(Ok(Some(WorkerMessage::Pong { nonce: n }))) if n == nonce
        )
    }

    /// Asks the worker to leave, then kills it if it lingers.
    pub(super) async fn shutdown(mut self) {
        let _ = self.send(KernelMessage::Shutdown).await;
        if timeout(SHUTDOWN_GRACE, self.child.wait()).await.is_err() {
            self.kill().await;
        }
    }

    async fn send_task(&mut self, correlation_id: u64, request: RunRequest) -> Result<(), ProtocolError> {
        let code = if self.sent.contains(&request.code_key) { None } else { Some(request.code.to_string()) };
        self.sent.insert(request.code_key.clone());
        let message = ExecuteTask {
            correlation_id,
            mode: request.mode,
            task: TaskCode { key: request.code_key, code },
            input: request.input,
            limits: worker_protocol::RunLimits {
                timeout_ms: request.limits.timeout.as_millis() as u64,
                memory_bytes: request.limits.memory.0,
            },
            context: request.context,
        };
        self.send(KernelMessage::ExecuteTask(message)).await
    }

    /// Answers a fetch; a response too large for a frame is answered with a `NetworkError`
    /// naming the limit instead, so the task can handle it and the worker lives.
    async fn answer_fetch(&mut self, response: FetchResponse) -> Result<(), ProtocolError> {
        let (correlation_id, request_id) = (response.correlation_id, response.request_id);
        match self.send(KernelMessage::FetchResponse(response)).await {
            Err(ProtocolError::FrameTooLarge { size, limit }) => {
                let error = worker_protocol::JsError {
                    name: "NetworkError".into(),
                    message: format!(
                        "the response is {size} bytes as a frame to the worker; frames carry at most \
                         {limit} (workers.max_frame_bytes; egress.max_response_bytes limits the body)"
                    ),
                    stack: None,
                };
                let outcome = worker_protocol::FetchOutcome::Failed { error };
                self.send(KernelMessage::FetchResponse(FetchResponse { correlation_id, request_id, outcome }))
                    .await
            }
            sent => sent,
        }
    }

    /// Writes one frame; one past the worker's limit is refused here, unsent.
    async fn send(&mut self, message: KernelMessage) -> Result<(), ProtocolError> {
        let frame = encode_within(message, self.max_frame_bytes)?;
        self.stdin.write_all(&frame).await?;
        self.stdin.flush().await?;
        Ok(())
    }

    /// Reads one frame. Cancel-safe: partial lines stay in `self.buffer`.
    async fn read_frame(&mut self) -> Result<Option<WorkerMessage>, ProtocolError> {
        loop {
            let available = self.stdout.fill_buf().await?;
            if available.is_empty() {
                self.buffer.finish_eof()?;
                return Ok(None);
            }
            let (consumed, line) = self.buffer.push(available)?;
            self.stdout.consume(consumed);
            if let Some(line) = line {
                return decode(&line, self.buffer.limit()).map(Some);
            }
        }
    }

    /// The worker closed its stdout: wait for it and say how it ended.
    async fn died(&mut self, context: &str) -> WorkerFailure {
        let status = match timeout(SHUTDOWN_GRACE, self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => self.kill().await,
        };
        let tail = self.stderr_note().await;
        match status {
            Some(status) => describe_exit(status, &tail),
            None => WorkerFailure::Crashed(format!("{context} (exit status unknown){tail}")),
        }
    }

    async fn kill(&mut self) -> Option<ExitStatus> {
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }

    /// The last lines the worker wrote to stderr, once its stderr has closed (briefly waited
    /// for: the process is dead, but its last lines may still be in the pipe).
    async fn stderr_note(&mut self) -> String {
        if !self.stderr_reader.is_finished() {
            let _ = timeout(STDERR_DRAIN, &mut self.stderr_reader).await;
        }
        let tail = self
            .stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
            .unwrap_or_default();
        if tail.is_empty() { String::new() } else { format!("; worker stderr: {tail}") }
    }
}

fn command(spec: &PoolSpec, id: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(&spec.binary);
    command
        .arg("--worker-id")
        .arg(id)
        .arg("--max-frame-bytes")
        .arg(spec.max_frame_bytes.to_string())
        .arg("--address-space-cap")
        .arg(spec.address_space_cap.to_string())
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Caps the worker's address space with prlimit(2) from the kernel, right after spawn.
///
/// `ratchet-worker` caps itself first, from `--address-space-cap`, before its first
/// allocation; this call only makes sure that a worker binary which does not (another build,
/// a test's fake) is capped too. It cannot be the only cap: it races with the worker's
/// start-up, and a worker whose allocator had already reserved more than the cap failed its
/// next mapping. Not in `pre_exec` either: a pre-exec hook forces fork+exec of the whole
/// kernel instead of posix_spawn, which costs milliseconds once the kernel is large.
fn cap_address_space(pid: u32, cap: u64) -> Result<(), String> {
    let limit = libc::rlimit { rlim_cur: cap, rlim_max: cap };
    #[allow(unsafe_code)]
    // SAFETY: prlimit with a valid pid, a pointer to an initialised rlimit and a null old-limit
    // pointer, as prlimit(2) documents; no memory is shared with the call beyond that.
    let result = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_AS, &limit, std::ptr::null_mut()) };
    if result == 0 {
        Ok(())
    } else {
        Err(format!("cannot cap the worker's memory: {}", std::io::Error::last_os_error()))
    }
}

async fn collect_stderr(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>, id: String) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::debug!(worker = %id, "worker stderr: {line}");
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == STDERR_TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    }
}

/// Names how a worker process ended.
fn describe_exit(status: ExitStatus, stderr_note: &str) -> WorkerFailure {
    if let Some(signal) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned());
        if name == "SIGABRT" && stderr_note.contains("memory allocation") {
            return WorkerFailure::MemoryLimit(None);
        }
        if name == "SIGABRT" && stderr_note.contains("overflowed its stack") {
            return WorkerFailure::Crashed(format!(
                "the task overflowed the worker's native stack (SIGABRT); deeply nested objects \
                 passed to built-ins such as JSON.stringify do this{stderr_note}"
            ));
        }
        return WorkerFailure::Crashed(format!("worker killed by signal {name}{stderr_note}"));
    }
    match status.code() {
        Some(EXIT_MEMORY_LIMIT) => WorkerFailure::MemoryLimit(None),
        Some(EXIT_PROTOCOL_ERROR) => {
            WorkerFailure::Protocol(format!("the worker refused a frame{stderr_note}"))
        }
        Some(code) => WorkerFailure::Crashed(format!("worker exited with code {code}{stderr_note}")),
        None => WorkerFailure::Crashed(format!("worker ended ({status}){stderr_note}")),
    }
}

/// Keeps a log line while the run's budgets allow (the line that crosses the byte budget is
/// kept cut, marked so), else counts it; the index of the kept line.
fn push_log(reply: &mut RunReply, level: LogLevel, mut message: String, max_bytes: u64) -> Option<usize> {
    let length = message.len() as u64;
    let room = max_bytes.saturating_sub(reply.log_bytes);
    if reply.logs.len() >= MAX_LOG_LINES || reply.dropped_logs > 0 || room == 0 {
        reply.dropped_logs += 1;
        reply.dropped_log_bytes += length;
        return None;
    }
    if length > room {
        let mut cut = room as usize;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        reply.dropped_log_bytes += length - cut as u64;
        message.truncate(cut);
        message.push_str(TRUNCATED_LINE);
        message.shrink_to_fit();
    }
    reply.log_bytes += message.len() as u64;
    reply.logs.push(LogLine { level, message });
    Some(reply.logs.len() - 1)
}

/// The end of a log line cut at the run's log budget.
const TRUNCATED_LINE: &str = " [... cut: recording.max_log_bytes]";

impl RunReply {
    fn new(worker_id: String) -> RunReply {
        RunReply {
            result: Ok(RunOutcome::Success { output: serde_json::Value::Null }),
            logs: Vec::new(),
            log_bytes: 0,
            dropped_logs: 0,
            dropped_log_bytes: 0,
            stats: None,
            worker_id,
        }
    }
}

/// Resolves when `cancel` is cancelled; never without one.
async fn cancelled(cancel: Option<&CancellationToken>) {
    match cancel {
        Some(cancel) => cancel.cancelled().await,
        None => std::future::pending().await,
    }
}
