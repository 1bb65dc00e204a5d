//! The worker's side of the pipe, and the native functions JS reaches it through.
//!
//! The worker is single-threaded: the pipe lives in a thread-local so that native functions
//! (plain `fn` pointers, as Boa wants them) can write `Log` and `FetchRequest` frames.

use std::cell::RefCell;
use std::io::{BufReader, Stdin, Stdout, Write};

use boa_engine::{Context, JsNativeError, JsResult, JsValue};
use serde_json::{Value, json};
use worker_protocol::{
    FetchOutcome, FetchRequest, FrameReader, KernelMessage, LogLevel, LogRecord, ProtocolError,
    WorkerMessage, encode,
};

/// The longest log message kept; longer ones are cut and say so.
const MAX_LOG_MESSAGE_BYTES: usize = 64 * 1024;

pub struct Pipe {
    pub input: FrameReader<BufReader<Stdin>>,
    output: Stdout,
    /// The run in progress, for tagging its frames.
    pub correlation_id: u64,
    next_request_id: u64,
}

thread_local! {
    static PIPE: RefCell<Option<Pipe>> = const { RefCell::new(None) };
}

/// Takes over stdin and stdout. Nothing else in the worker may touch them.
pub fn install(max_frame_bytes: usize) {
    let pipe = Pipe {
        input: FrameReader::new(BufReader::new(std::io::stdin()), max_frame_bytes),
        output: std::io::stdout(),
        correlation_id: 0,
        next_request_id: 1,
    };
    PIPE.with(|cell| *cell.borrow_mut() = Some(pipe));
}

pub fn with_pipe<T>(f: impl FnOnce(&mut Pipe) -> T) -> T {
    PIPE.with(|cell| {
        f(cell
            .borrow_mut()
            .as_mut()
            .expect("host::install runs first"))
    })
}

impl Pipe {
    pub fn send(&mut self, message: WorkerMessage) -> Result<(), ProtocolError> {
        let frame = encode(message)?;
        let mut out = self.output.lock();
        out.write_all(&frame)?;
        out.flush()?;
        Ok(())
    }

    pub fn receive(&mut self) -> Result<Option<KernelMessage>, ProtocolError> {
        self.input.read()
    }
}

/// Sends a line of the task's console output.
pub fn log(level: LogLevel, message: String) {
    let message = truncate(message);
    let sent = with_pipe(|pipe| {
        let record = LogRecord {
            correlation_id: pipe.correlation_id,
            level,
            message,
            fields: Default::default(),
        };
        pipe.send(WorkerMessage::Log(record))
    });
    if let Err(error) = sent {
        fatal(&error);
    }
}

/// `hostFetch(method, url, headerPairs, body)` of the fetch shim: blocks until the kernel answers.
pub fn fetch(_this: &JsValue, args: &[JsValue], context: &mut Context) -> JsResult<JsValue> {
    let method = arg_string(args, 0, context)?;
    let url = arg_string(args, 1, context)?;
    let headers = match args
        .get(2)
        .map(|v| v.to_json(context))
        .transpose()?
        .flatten()
    {
        Some(value) => serde_json::from_value(value).map_err(|e| {
            JsNativeError::typ()
                .with_message(format!("fetch: headers must be name/value strings: {e}"))
        })?,
        None => Vec::new(),
    };
    let body = match args.get(3) {
        Some(v) if !v.is_null_or_undefined() => Some(v.to_string(context)?.to_std_string_escaped()),
        _ => None,
    };
    let reply =
        with_pipe(|pipe| exchange(pipe, method, url, headers, body)).unwrap_or_else(|e| fatal(&e));
    JsValue::from_json(&reply, context)
}

fn exchange(
    pipe: &mut Pipe,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> Result<Value, ProtocolError> {
    let request_id = pipe.next_request_id;
    pipe.next_request_id += 1;
    let request = FetchRequest {
        correlation_id: pipe.correlation_id,
        request_id,
        method,
        url,
        headers,
        body,
    };
    pipe.send(WorkerMessage::FetchRequest(request))?;
    loop {
        match pipe.receive()? {
            Some(KernelMessage::FetchResponse(response)) if response.request_id == request_id => {
                return Ok(fetch_reply(response.outcome));
            }
            Some(KernelMessage::Ping { nonce }) => pipe.send(WorkerMessage::Pong { nonce })?,
            Some(KernelMessage::Shutdown) | None => std::process::exit(0),
            Some(other) => {
                return Err(ProtocolError::Malformed(format!(
                    "expected the FetchResponse to request {request_id}, got {other:?}"
                )));
            }
        }
    }
}

fn fetch_reply(outcome: FetchOutcome) -> Value {
    match outcome {
        FetchOutcome::Response {
            status,
            status_text,
            headers,
            body,
        } => {
            json!({ "status": status, "statusText": status_text, "headers": headers, "body": body })
        }
        FetchOutcome::Failed { error } => {
            json!({ "error": { "name": error.name, "message": error.message } })
        }
    }
}

/// A broken pipe or a refused frame is not the task's fault and cannot be recovered: the
/// worker leaves, and the kernel reports the run as a protocol failure.
fn fatal(error: &ProtocolError) -> ! {
    eprintln!("ratchet-worker: pipe to the kernel failed: {error}");
    std::process::exit(worker_protocol::EXIT_PROTOCOL_ERROR)
}

fn arg_string(args: &[JsValue], index: usize, context: &mut Context) -> JsResult<String> {
    match args.get(index) {
        Some(value) => Ok(value.to_string(context)?.to_std_string_escaped()),
        None => Ok(String::new()),
    }
}

fn truncate(mut message: String) -> String {
    if message.len() > MAX_LOG_MESSAGE_BYTES {
        let dropped = message.len() - MAX_LOG_MESSAGE_BYTES;
        let mut cut = MAX_LOG_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str(&format!(" … ({dropped} bytes truncated)"));
    }
    message
}
