//! The `ratchet` binary, and what it shares with `ratchet-full`: the global options, the
//! `run-once` command, logging, and how a command runs and reports its error.
//!
//! `ratchet` runs `run-once` itself and hands every other command to `ratchet-full` (see
//! [`front`]). This crate depends on the core and nothing else of the kernel: no database,
//! HTTP server, plugin host or WASM runtime reaches the binary that a one-off run starts
//! (checked by `cargo xtask deps`), and an edit to those crates does not rebuild it
//! (docs/architecture.md, "Two binaries").

pub mod front;
pub mod run;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use ratchet_core::Config;
use ratchet_core::config::LogFormat;

/// What `ratchet --help` says the program does.
pub const ABOUT: &str = "Run JavaScript tasks in supervised, isolated workers";
/// What the help says `run-once` does, in both binaries.
pub const RUN_ONCE_ABOUT: &str = "Run a task once and print its output.";

/// The options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Configuration file (default: ./ratchet.yaml if present).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Colour in logs: auto (when stderr is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t)]
    pub color: ColorChoice,
}

/// When to colour what the CLI writes for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    /// When the stream is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour stderr.
    fn stderr(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// Widening the egress policy for one invocation.
#[derive(Debug, Args)]
pub struct EgressArgs {
    /// Let tasks reach HOST (or HOST:PORT) even at a loopback or private address. Repeatable.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    allow_hosts: Vec<String>,
}

impl EgressArgs {
    /// Adds the hosts to the configuration's allow-list, checking each.
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        for host in &self.allow_hosts {
            ratchet_core::http::HostRule::parse(host).map_err(|e| anyhow::anyhow!("--allow-host: {e}"))?;
            config.egress.allow_hosts.push(host.clone());
        }
        Ok(())
    }
}

/// Whether the kernel's log is JSON lines (`logging.format: json`), for [`log_line`].
static JSON_LOG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

pub fn init_tracing(color: ColorChoice, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RATCHET_LOG")
        // Warnings, what a node says of itself (start, stop), which task versions it reloads
        // (one line per change), the compiles of large plugins (seconds each), and the audit
        // of MCP tool calls.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "warn,ratchet::node=info,ratchet_service::reload=info,ratchet::plugins=info,ratchet::audit=info",
            )
        });
    let json = format == LogFormat::Json;
    let _ = JSON_LOG.set(json);
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        // A line logged during a run carries the run's span: its trace id, job and execution.
        subscriber.json().with_current_span(true).with_span_list(false).init();
    } else {
        subscriber.with_ansi(color.stderr()).init();
    }
}

/// A line for the operator on stderr: as it is in a text log, or as a JSON log line (target
/// `ratchet::node`) under `logging.format: json`, so a log shipper sees one format.
pub fn log_line(level: tracing::Level, text: &str) {
    if JSON_LOG.get() != Some(&true) {
        eprintln!("{text}");
        return;
    }
    let text = text.strip_prefix("warning: ").or_else(|| text.strip_prefix("error: ")).unwrap_or(text);
    match level {
        tracing::Level::ERROR => tracing::error!(target: "ratchet::node", "{text}"),
        tracing::Level::WARN => tracing::warn!(target: "ratchet::node", "{text}"),
        _ => tracing::info!(target: "ratchet::node", "{text}"),
    }
}

/// A reader that goes away (`ratchet jobs list | head`) ends the command quietly with the
/// status a shell gives a process killed by SIGPIPE (128 + 13), as `cat` or `ls` would, rather
/// than with a panic from `println!`. Rust ignores SIGPIPE, and the kernel keeps it ignored: a
/// worker that dies must not kill it through the pipe to its stdin.
const BROKEN_PIPE_STATUS: u8 = 141;

pub fn exit_quietly_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // `print!` and `eprint!` panic with "failed printing to stdout: Broken pipe (os error 32)".
        if message.starts_with("failed printing to")
            && message
                .ends_with(&std::io::Error::from_raw_os_error(nix::errno::Errno::EPIPE as i32).to_string())
        {
            std::process::exit(i32::from(BROKEN_PIPE_STATUS));
        }
        report(info);
    }));
}

/// Whether `error` is a write to a reader that went away.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// The runtime commands run on. One tokio thread per core: under many concurrent API requests
/// a single thread is the bottleneck (about a fifth more synchronous runs per second with 16
/// clients on 2 cores). `run-once` needs a second thread too: its worker starts while the task
/// loads.
pub fn new_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| {
        eprintln!("error: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

/// Runs `command` on `runtime` with the configured log format, and reports its error.
pub fn run_on<F>(runtime: &tokio::runtime::Runtime, globals: &GlobalArgs, command: F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    // The log's format is the configuration's; a configuration that does not load is reported
    // by the command, in text. The command loads it again, so that what loading logs (which
    // file, if any) reaches the log set up here.
    let format =
        Config::load(globals.config.as_deref()).map_or(LogFormat::Text, |config| config.logging.format);
    init_tracing(globals.color, format);
    match runtime.block_on(command) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::from(BROKEN_PIPE_STATUS),
        Err(error) => {
            log_line(tracing::Level::ERROR, &format!("error: {error:#}"));
            ExitCode::FAILURE
        }
    }
}
