//! `ratchet replay DIR`.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Args;
use ratchet_core::http::HttpMode;
use ratchet_core::{Config, Kernel};

use super::Format;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// A folder written by `ratchet run-once --record`.
    dir: PathBuf,
    /// `text` prints the replayed output and the verdict; `json` a full envelope with `matches`.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    #[command(flatten)]
    egress: super::EgressArgs,
}

pub async fn replay(mut config: Config, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    args.egress.apply(&mut config)?;
    let recording = ratchet_core::recording::read(&args.dir)?;
    let kernel = Kernel::start(config, 1)?;
    let task = ratchet_core::task::load(&recording.task_path(), &kernel.config().limits)
        .with_context(|| format!("loading the recorded task from {}", args.dir.display()));
    let task = match task {
        Ok(task) => task,
        Err(error) => {
            kernel.shutdown().await;
            return Err(error);
        }
    };
    let entries = VecDeque::from(recording.har.log.entries.clone());
    let http = HttpMode::Replay(Arc::new(Mutex::new(entries)));
    let execution = kernel.run_with(&task, recording.input.clone(), http).await;
    kernel.shutdown().await;
    let verdict = recording.compare(&execution.outcome);
    match args.format {
        Format::Text => {
            ratchet_front::run::print_text(&execution);
            match &verdict {
                Ok(()) => eprintln!(
                    "replay matches the recording ({} request(s) served from it)",
                    execution.http.len()
                ),
                Err(difference) => eprintln!("replay differs from the recording: {difference}"),
            }
        }
        Format::Json => {
            let mut envelope = ratchet_front::run::envelope(&execution);
            envelope["matches"] = serde_json::json!(verdict.is_ok());
            if let Err(difference) = &verdict {
                envelope["difference"] = serde_json::json!(difference);
            }
            println!("{envelope}");
        }
    }
    Ok(if verdict.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
