//! `ratchet-worker`: runs JavaScript tasks for the Ratchet kernel.
//!
//! Speaks the worker protocol on stdin/stdout and nothing else; diagnostics go to stderr.
//! The kernel spawns it with an empty environment and a memory cap, and kills it when a run
//! outlives its timeout.

mod alloc;
mod cap;
mod fetch;
mod globals;
mod host;
mod runtime;

use std::collections::HashMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use worker_protocol::{
    DEFAULT_MAX_FRAME_BYTES, EXIT_PROTOCOL_ERROR, ExecuteTask, JsError, KernelMessage, PROTOCOL_VERSION,
    RunOutcome, RunStats, TaskResult, WorkerMessage, WorkerReady,
};

#[global_allocator]
static ALLOCATOR: alloc::BudgetAllocator = alloc::BudgetAllocator::new();

const USAGE: &str = "usage: ratchet-worker [--worker-id ID] [--max-frame-bytes N] [--address-space-cap BYTES]\n\
                     Started by the Ratchet kernel; speaks its protocol on stdin and stdout.";

struct Args {
    worker_id: String,
    max_frame_bytes: usize,
    address_space_cap: Option<u64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        worker_id: std::process::id().to_string(),
        max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        address_space_cap: None,
    };
    let mut iter = std::env::args().skip(1);
    while let Some(flag) = iter.next() {
        let mut value = || iter.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--worker-id" => args.worker_id = value()?,
            "--max-frame-bytes" => {
                let raw = value()?;
                args.max_frame_bytes =
                    raw.parse().map_err(|_| format!("--max-frame-bytes: `{raw}` is not a byte count"))?;
            }
            cap::FLAG => args.address_space_cap = Some(cap::parse_bytes(value()?.as_bytes())?),
            "--version" => return Err(format!("ratchet-worker protocol {PROTOCOL_VERSION}")),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // The first allocation applied the cap already (see `cap`); this is the same cap again, or
    // the cap at last when that could not read the command line (no /proc).
    if let Some(cap) = args.address_space_cap
        && let Err(message) = cap::set_address_space_limit(cap)
    {
        eprintln!("ratchet-worker: {message}");
        return ExitCode::from(2);
    }
    host::install(args.max_frame_bytes);
    watch_parent();
    // The first run's realm is ready before the kernel hears from us.
    let realm = runtime::FreshRealm::build();
    let ready = WorkerReady {
        worker_id: args.worker_id,
        protocol_version: PROTOCOL_VERSION,
        capabilities: vec!["boa".into(), "fetch".into(), "timers".into()],
    };
    if let Err(error) = host::with_pipe(|pipe| pipe.send(WorkerMessage::WorkerReady(ready))) {
        eprintln!("ratchet-worker: cannot write the handshake: {error}");
        return ExitCode::from(EXIT_PROTOCOL_ERROR as u8);
    }
    serve(realm)
}

/// How often the worker checks that the kernel that started it is alive.
const PARENT_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// A worker never outlives its kernel. A kernel killed with SIGKILL cannot stop its workers,
/// and a task stuck in a loop never reads the closed pipe, so a thread checks that the parent
/// is still the process that started the worker, and ends the worker when it is not (it was
/// re-parented to init or a subreaper). Polling, not `PR_SET_PDEATHSIG`: that fires when the
/// kernel's spawning *thread* ends, which a thread pool may do at any time.
fn watch_parent() {
    let parent = std::os::unix::process::parent_id();
    let watcher =
        std::thread::Builder::new().name("parent-watch".into()).stack_size(64 * 1024).spawn(move || {
            loop {
                std::thread::sleep(PARENT_CHECK);
                if std::os::unix::process::parent_id() != parent {
                    // Not eprintln!: stderr is a pipe to the dead kernel, and a failed write panics.
                    let _ = writeln!(
                        std::io::stderr(),
                        "ratchet-worker: the kernel that started this worker is gone"
                    );
                    #[allow(unsafe_code)]
                    // SAFETY: _exit(2) ends the process at once without running destructors or
                    // taking locks the running task may hold; nothing is left to flush that matters.
                    unsafe {
                        libc::_exit(worker_protocol::EXIT_PROTOCOL_ERROR)
                    };
                }
            }
        });
    if let Err(error) = watcher {
        eprintln!("ratchet-worker: cannot watch the kernel ({error}); this worker may outlive it");
    }
}

/// Answers the kernel until it says stop. `realm` is the next run's: after each run is
/// answered, the used realm is dropped and the next one built, off the run's critical path.
fn serve(mut realm: Result<runtime::FreshRealm, JsError>) -> ExitCode {
    let mut cache = CodeCache::default();
    loop {
        let mut spent = false;
        let reply = match host::with_pipe(|pipe| pipe.receive()) {
            Ok(None | Some(KernelMessage::Shutdown)) => return ExitCode::SUCCESS,
            Ok(Some(KernelMessage::Ping { nonce })) => WorkerMessage::Pong { nonce },
            Ok(Some(KernelMessage::ExecuteTask(task))) => {
                spent = true;
                WorkerMessage::TaskResult(run(task, &mut cache, &mut realm))
            }
            Ok(Some(other)) => {
                return refuse(&format!("unexpected message outside a fetch: {other:?}"));
            }
            Err(error) => return refuse(&error.to_string()),
        };
        if let Err(error) = host::with_pipe(|pipe| send_reply(pipe, reply)) {
            return refuse(&error.to_string());
        }
        if spent {
            if let Ok(used) = realm {
                runtime::retire(used);
            }
            realm = runtime::FreshRealm::build();
        }
    }
}

/// Sends a reply; a result whose frame is too large becomes [`RunOutcome::OutputTooLarge`].
fn send_reply(pipe: &mut host::Pipe, reply: WorkerMessage) -> Result<(), worker_protocol::ProtocolError> {
    let WorkerMessage::TaskResult(result) = reply else {
        return pipe.send(reply);
    };
    let (correlation_id, stats) = (result.correlation_id, result.stats);
    match pipe.send(WorkerMessage::TaskResult(result)) {
        Err(worker_protocol::ProtocolError::FrameTooLarge { size, limit }) => {
            let outcome = RunOutcome::OutputTooLarge { bytes: size as u64, limit: limit as u64 };
            pipe.send(WorkerMessage::TaskResult(TaskResult { correlation_id, outcome, stats }))
        }
        sent => sent,
    }
}

fn refuse(reason: &str) -> ExitCode {
    eprintln!("ratchet-worker: protocol error: {reason}");
    ExitCode::from(EXIT_PROTOCOL_ERROR as u8)
}

/// Code received from the kernel, by key. Bounded by the worker's lifetime: the kernel
/// recycles a worker after a fixed number of runs.
#[derive(Default)]
struct CodeCache(HashMap<String, Rc<str>>);

impl CodeCache {
    fn resolve(&mut self, key: String, code: Option<String>) -> Option<Rc<str>> {
        match code {
            Some(code) => {
                let code: Rc<str> = code.into();
                self.0.insert(key, Rc::clone(&code));
                Some(code)
            }
            None => self.0.get(&key).cloned(),
        }
    }
}

fn run(
    task: ExecuteTask,
    cache: &mut CodeCache,
    realm: &mut Result<runtime::FreshRealm, JsError>,
) -> TaskResult {
    let started = Instant::now();
    let correlation_id = task.correlation_id;
    let outcome = match (cache.resolve(task.task.key.clone(), task.task.code), realm) {
        (_, Err(error)) => RunOutcome::Error { error: error.clone() },
        (Some(code), Ok(realm)) => {
            host::with_pipe(|pipe| pipe.correlation_id = correlation_id);
            let budget = usize::try_from(task.limits.memory_bytes).unwrap_or(usize::MAX);
            ALLOCATOR.set_budget(ALLOCATOR.live_bytes().saturating_add(budget));
            let run =
                runtime::Run { mode: task.mode, code: &code, input: &task.input, context: &task.context };
            let outcome = runtime::execute(&run, realm);
            ALLOCATOR.set_budget(usize::MAX);
            outcome
        }
        (None, Ok(_)) => RunOutcome::Error {
            error: JsError {
                name: "ProtocolError".into(),
                message: format!("the worker has no code for task reference `{}`", task.task.key),
                stack: None,
            },
        },
    };
    let stats = RunStats { duration_us: started.elapsed().as_micros() as u64, peak_rss_kib: peak_rss_kib() };
    TaskResult { correlation_id, outcome, stats }
}

/// This process image's peak resident memory, in KiB ([`worker_protocol::vm_hwm_kib`]).
/// `/proc/self/status` stays open between runs, and is read again from its start after each.
fn peak_rss_kib() -> u64 {
    use std::os::unix::fs::FileExt as _;
    thread_local! {
        static STATUS: Option<std::fs::File> = std::fs::File::open("/proc/self/status").ok();
    }
    let mut buffer = [0u8; 4096];
    let read = STATUS.with(|status| status.as_ref().and_then(|file| file.read_at(&mut buffer, 0).ok()));
    let status = read.map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned()).unwrap_or_default();
    worker_protocol::vm_hwm_kib(&status).unwrap_or_else(|| {
        use nix::sys::resource::{UsageWho, getrusage};
        getrusage(UsageWho::RUSAGE_SELF).map_or(0, |usage| usage.max_rss().max(0) as u64)
    })
}
