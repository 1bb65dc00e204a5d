//! `ratchet run-once`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;
use std::collections::BTreeMap;

use ratchet_core::execution::{KernelStart, RunIdentity};
use ratchet_core::supervisor::EarlyWorker;
use ratchet_core::{Config, Execution, ExecutionError, Kernel};
use serde_json::{Value, json};

use crate::{EgressArgs, Format};

#[derive(Debug, Args)]
pub struct RunOnceArgs {
    /// The task: a folder, or a ZIP archive of one.
    #[arg(long = "from-fs", value_name = "DIR_OR_ZIP")]
    from_fs: PathBuf,
    /// The input, as JSON text.
    #[arg(long, value_name = "JSON", conflicts_with = "input_file")]
    input_json: Option<String>,
    /// A file holding the input JSON.
    #[arg(long, value_name = "FILE")]
    input_file: Option<PathBuf>,
    /// `text` prints the output JSON alone; `json` prints a full result envelope.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    egress: EgressArgs,
    /// Write a recording of the run (input, result, logs, HTTP as HAR) into this new folder.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
}

/// Runs the task once. `secrets` gives the secrets the task declares: from the configured
/// database in `ratchet-full`; the front refuses a task that declares
/// any ([`NeedsStore`]) and hands the command over, so that it links no database.
pub async fn run_once<S>(
    mut config: Config,
    args: RunOnceArgs,
    secrets: S,
    early: Option<EarlyWorker>,
) -> anyhow::Result<ExitCode>
where
    S: AsyncFnOnce(&Config, &ratchet_core::Task) -> anyhow::Result<BTreeMap<String, String>>,
{
    let input = read_input(&args)?;
    args.egress.apply(&mut config)?;
    // The worker starts while the task loads, unless it started earlier still (`early`).
    let kernel = Kernel::start_with(config, 1, KernelStart { early, no_followers: true })?;
    let task = match ratchet_core::task::load(&args.from_fs, &kernel.config().limits) {
        Ok(task) => task,
        Err(error) => {
            kernel.shutdown().await;
            bail!(error);
        }
    };
    let secrets = match secrets(kernel.config(), &task).await {
        Ok(secrets) => secrets,
        Err(error) => {
            kernel.shutdown().await;
            return Err(error);
        }
    };
    for warning in &task.warnings {
        eprintln!("warning: {warning}");
    }
    let identity = RunIdentity { secrets, ..RunIdentity::new(ratchet_core::time::new_id()) };
    let execution = kernel.run_as(identity, &task, input.clone(), kernel.live_http(&task)).await;
    // Not `kernel.shutdown()`: the worker has answered and holds nothing, and waiting for it to
    // leave (it builds its next realm first) and be reaped took a millisecond or two of every
    // run. It is killed when the runtime drops its process (`kill_on_drop`).
    drop(kernel);
    if let Some(dir) = &args.record {
        ratchet_core::recording::write(dir, &task, &input, &execution)?;
        eprintln!(
            "recorded to {} ({} request(s)); replay with: ratchet replay {}",
            dir.display(),
            execution.http.len(),
            dir.display()
        );
    }
    match args.format {
        Format::Text => print_text(&execution),
        Format::Json => println!("{}", envelope(&execution)),
    }
    Ok(if execution.outcome.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A task declares secrets, which only `ratchet-full` can read (they are in the database).
#[derive(Debug, thiserror::Error)]
#[error("the task declares secrets; `ratchet-full` reads them from the database")]
pub struct NeedsStore;

/// The front's secrets: none for a task that declares none, else [`NeedsStore`].
pub async fn secrets_without_store(
    _config: &Config,
    task: &ratchet_core::Task,
) -> anyhow::Result<BTreeMap<String, String>> {
    if task.metadata.secrets.is_empty() { Ok(BTreeMap::new()) } else { Err(NeedsStore.into()) }
}

fn read_input(args: &RunOnceArgs) -> anyhow::Result<Value> {
    match (&args.input_json, &args.input_file) {
        (Some(text), _) => serde_json::from_str(text).context("--input-json is not valid JSON"),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))
        }
        (None, None) => Ok(json!({})),
    }
}

pub fn print_text(execution: &Execution) {
    for line in &execution.logs {
        eprintln!("[{}] {}", line.level.as_str(), line.message);
    }
    if execution.dropped_logs > 0 {
        eprintln!("[warn] {} further log lines were dropped", execution.dropped_logs);
    }
    match &execution.outcome {
        Ok(output) => println!("{output}"),
        Err(error) => {
            eprintln!("error [{}]: {error}", error.kind());
            if let ExecutionError::Task(js) = error
                && let Some(stack) = &js.stack
            {
                eprintln!("{}", stack.trim_end());
            }
        }
    }
}

/// The full result of a run as one JSON document.
pub fn envelope(execution: &Execution) -> Value {
    let logs = ratchet_core::recording::logs_json(&execution.logs);
    let mut document = json!({
        "execution_id": execution.id,
        "status": execution.status().as_str(),
        "logs": logs,
        "dropped_logs": execution.dropped_logs,
        "duration_ms": execution.duration.as_secs_f64() * 1000.0,
        "kernel": {"peak_rss_kib": kernel_peak_rss_kib()},
    });
    match &execution.outcome {
        Ok(output) => document["output"] = output.clone(),
        Err(error) => document["error"] = ratchet_core::recording::error_json(error),
    }
    document["http"] = execution.http.iter().map(exchange_summary).collect();
    if let Some(worker) = &execution.worker {
        document["worker"] = json!({
            "id": worker.worker_id,
            "duration_us": worker.duration_us,
            "peak_rss_kib": worker.peak_rss_kib,
        });
    }
    document
}

/// One `fetch` in the envelope: enough to see what happened, secrets masked.
fn exchange_summary(exchange: &ratchet_core::http::Exchange) -> Value {
    let mut summary = json!({
        "method": exchange.method,
        "url": ratchet_core::http::mask_url(&exchange.url),
        "duration_ms": exchange.duration.as_secs_f64() * 1000.0,
    });
    match &exchange.outcome {
        ratchet_core::http::ExchangeOutcome::Response(response) => {
            summary["status"] = json!(response.status);
            if !response.redirects.is_empty() {
                summary["redirects"] = json!(response.redirects);
            }
        }
        ratchet_core::http::ExchangeOutcome::Failed { error, denied } => {
            summary["error"] = json!({"name": error.name, "message": error.message});
            summary["denied"] = json!(denied);
        }
    }
    summary
}

/// The kernel's own peak resident memory, in KiB ([`worker_protocol::vm_hwm_kib`]).
fn kernel_peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    worker_protocol::vm_hwm_kib(&status).unwrap_or_else(|| {
        use nix::sys::resource::{UsageWho, getrusage};
        getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| u.max_rss().max(0) as u64)
    })
}
