//! The worker's side of the pipe, and the native functions JS reaches it through.
//!
//! The worker is single-threaded: the pipe lives in a thread-local so that native functions
//! (plain `fn` pointers, as Boa wants them) can write `Log` and `FetchRequest` frames.

use std::cell::RefCell;
use std::io::{BufReader, Stdin, Stdout, Write};

use worker_protocol::{
    FetchOutcome, FetchRequest, FrameReader, KernelMessage, LogLevel, LogRecord, ProtocolError,
    WorkerMessage, encode_within,
};

/// The longest log message kept; longer ones are cut and say so.
const MAX_LOG_MESSAGE_BYTES: usize = 64 * 1024;

pub struct Pipe {
    pub input: FrameReader<BufReader<Stdin>>,
    output: Stdout,
    /// The run in progress, for tagging its frames.
    pub correlation_id: u64,
    next_request_id: u64,
    /// The longest frame the kernel reads.
    max_frame_bytes: usize,
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
        max_frame_bytes,
    };
    PIPE.with(|cell| *cell.borrow_mut() = Some(pipe));
}

pub fn with_pipe<T>(f: impl FnOnce(&mut Pipe) -> T) -> T {
    PIPE.with(|cell| f(cell.borrow_mut().as_mut().expect("host::install runs first")))
}

impl Pipe {
    /// Writes one frame; a frame past the kernel's limit is refused here, unsent
    /// ([`ProtocolError::FrameTooLarge`]), so the caller can fail the one payload instead.
    pub fn send(&mut self, message: WorkerMessage) -> Result<(), ProtocolError> {
        let frame = encode_within(message, self.max_frame_bytes)?;
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
        let record =
            LogRecord { correlation_id: pipe.correlation_id, level, message, fields: Default::default() };
        pipe.send(WorkerMessage::Log(record))
    });
    if let Err(error) = sent {
        fatal(&error);
    }
}

/// A task's HTTP request, performed by the kernel: blocks until it answers.
pub fn request(
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> FetchOutcome {
    with_pipe(|pipe| exchange(pipe, method, url, headers, body)).unwrap_or_else(|e| fatal(&e))
}

fn exchange(
    pipe: &mut Pipe,
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
) -> Result<FetchOutcome, ProtocolError> {
    let request_id = pipe.next_request_id;
    pipe.next_request_id += 1;
    let request =
        FetchRequest { correlation_id: pipe.correlation_id, request_id, method, url, headers, body };
    match pipe.send(WorkerMessage::FetchRequest(request)) {
        Err(ProtocolError::FrameTooLarge { size, limit }) => {
            return Ok(FetchOutcome::Failed {
                error: worker_protocol::JsError {
                    name: "NetworkError".into(),
                    message: format!(
                        "the request is {size} bytes as a frame to the kernel; frames carry at most {limit} \
                         (workers.max_frame_bytes)"
                    ),
                    stack: None,
                },
            });
        }
        sent => sent?,
    }
    loop {
        match pipe.receive()? {
            Some(KernelMessage::FetchResponse(response)) if response.request_id == request_id => {
                return Ok(response.outcome);
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

/// A broken pipe or a refused frame is not the task's fault and cannot be recovered: the
/// worker leaves, and the kernel reports the run as a protocol failure.
fn fatal(error: &ProtocolError) -> ! {
    eprintln!("ratchet-worker: pipe to the kernel failed: {error}");
    std::process::exit(worker_protocol::EXIT_PROTOCOL_ERROR)
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
