//! The `ratchet` binary: pay only for what a command uses.
//!
//! `ratchet run-once` is the command people time: a task run from a shell or a script, where
//! the process's start is most of the cost. A binary that holds the database drivers, the HTTP
//! server, the plugin host and WASM runtime loads and relocates all of them at every start,
//! even when the command touches none. So `ratchet` links only what `run-once` needs (the core,
//! through [`crate::run`]), and every other command, like a `run-once` whose task declares
//! secrets (they live in the database), is handed to `ratchet-full` by `exec`: same process,
//! same arguments, same exit status and signals.
//!
//! `ratchet` parses only what `run-once` takes (the same [`GlobalArgs`] and
//! [`RunOnceArgs`] that `ratchet-full` parses, so its help and errors are the same), and hands
//! any other command over before parsing it: `ratchet-full` then parses the whole command line.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use ratchet_core::Kernel;
use ratchet_core::supervisor::EarlyWorker;

use crate::run::{self, NeedsStore, RunOnceArgs};
use crate::{ABOUT, GlobalArgs, RUN_ONCE_ABOUT};

/// The command line `ratchet` runs itself: `run-once`, with the global options.
#[derive(Debug, Parser)]
#[command(name = "ratchet", version, about = ABOUT)]
struct FrontCli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: FrontCommand,
}

#[derive(Debug, Subcommand)]
enum FrontCommand {
    #[command(about = RUN_ONCE_ABOUT)]
    RunOnce(RunOnceArgs),
}

/// The binary that runs every command, found beside `ratchet`.
pub const FULL_BINARY: &str = "ratchet-full";
/// Where `ratchet-full` is when it is not beside `ratchet`.
pub const FULL_BINARY_ENV: &str = "RATCHET_FULL_BIN";

/// `ratchet`'s `main`.
pub fn front_main() -> ExitCode {
    crate::exit_quietly_on_broken_pipe();
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if command_word(&args) != Some(OsStr::new("run-once")) {
        return hand_over();
    }
    // `ratchet run-once ...` starts its worker before it parses its arguments and reads its
    // configuration (about a millisecond here). Were the arguments wrong, clap ends the process
    // and the worker, whose stdin then closes, ends too.
    let Ok(runtime) = crate::new_runtime() else { return ExitCode::FAILURE };
    let early = if args.first().is_some_and(|first| first == "run-once") {
        start_worker_early(&runtime)
    } else {
        None
    };
    let FrontCli { globals, command: FrontCommand::RunOnce(args) } = FrontCli::parse();
    // Options before the command (`ratchet --config FILE run-once ...`): start it now.
    let early = early.or_else(|| start_worker_early(&runtime));
    let config_file = globals.config.clone();
    crate::run_on(&runtime, &globals, async move {
        let config = ratchet_core::Config::load(config_file.as_deref()).context("loading configuration")?;
        match run::run_once(config, args, run::secrets_without_store, early).await {
            // The kernel and its worker are gone; `exec` leaves the runtime's threads behind.
            Err(error) if error.is::<NeedsStore>() => Ok(hand_over()),
            other => other,
        }
    })
}

/// The command `args` (the program's name left out) names: the first word that is neither a
/// global option nor its value.
fn command_word(args: &[OsString]) -> Option<&OsStr> {
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match word.to_str() {
            Some("--config" | "--color") => {
                words.next();
            }
            Some(option) if option.starts_with("--config=") || option.starts_with("--color=") => {}
            _ => return Some(word),
        }
    }
    None
}

/// Starts the run's worker before anything else: its start (exec, then its first realm) is
/// the longest step of a `run-once`, and it needs nothing from the configuration that the
/// default configuration does not guess right. When the configuration says otherwise (another
/// worker binary, frame limit or memory limit), the kernel stops this one and starts its own.
fn start_worker_early(runtime: &tokio::runtime::Runtime) -> Option<EarlyWorker> {
    let spec = Kernel::pool_spec(&ratchet_core::Config::default(), 1).ok()?;
    let _entered = runtime.enter();
    Some(EarlyWorker::start(&spec))
}

/// Replaces this process with `ratchet-full`, given the same arguments; returns only when
/// that fails.
fn hand_over() -> ExitCode {
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| OsString::from("ratchet"));
    let full = match full_binary() {
        Ok(full) => full,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The name stays `ratchet`, so that usage lines and errors say what the user typed.
    let error = std::process::Command::new(&full).arg0(name).args(args).exec();
    eprintln!("error: cannot start {}: {error}", full.display());
    ExitCode::FAILURE
}

/// `RATCHET_FULL_BIN`, or `ratchet-full` beside this binary.
fn full_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(FULL_BINARY_ENV) {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary's folder: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    let full = dir.join(FULL_BINARY);
    if full.is_file() {
        Ok(full)
    } else {
        Err(format!(
            "this command needs `{FULL_BINARY}`, which is not in {} (build it with `cargo build -p \
             ratchet-cli`, install it beside `ratchet`, or set {FULL_BINARY_ENV})",
            dir.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_command_is_found_after_the_global_options() {
        let command = |line: &str| command_word(&words(line)).map(|w| w.to_string_lossy().into_owned());
        assert_eq!(command("run-once --from-fs t").as_deref(), Some("run-once"));
        assert_eq!(command("--config run-once.yaml jobs list").as_deref(), Some("jobs"));
        assert_eq!(command("--color=never --config c.yaml run-once").as_deref(), Some("run-once"));
        assert_eq!(command("--version").as_deref(), Some("--version"));
        assert_eq!(command("--config c.yaml"), None);
    }
}
