//! `ratchet queue`: pause and resume the queue (one task's jobs, or every job), and its state.
//! Through the database, so every node obeys at its next claim, whether or not one runs here.

use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use ratchet_core::Config;
use ratchet_storage::{Pause, Store, WHOLE_QUEUE, now_ms};
use ratchet_views::PauseView;
use serde_json::json;

use super::Format;
use super::jobs::{Common, open, open_existing};

#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Pause TASK's jobs (every task's without TASK): they stay queued, running jobs finish,
    /// and every node obeys. Schedules keep enqueueing (the jobs wait) unless --skip-schedules.
    Pause {
        task: Option<String>,
        /// The paused tasks' schedules skip their fires until the resume.
        #[arg(long)]
        skip_schedules: bool,
        #[command(flatten)]
        common: Common,
    },
    /// Resume TASK's jobs (the whole queue without TASK; a task's own pause stays).
    Resume {
        task: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// The pauses in force and the jobs per state.
    Status {
        #[command(flatten)]
        common: Common,
    },
}

pub async fn queue(mut config: Config, command: QueueCommand) -> anyhow::Result<ExitCode> {
    match command {
        QueueCommand::Pause { task, skip_schedules, common } => {
            let store = open(&mut config, &common).await?;
            let scope = match &task {
                Some(task) => known_task(&config, &store, task).await?,
                None => WHOLE_QUEUE.to_owned(),
            };
            let pause = store.pause(&scope, skip_schedules, Some("local"), now_ms()).await?;
            match common.format {
                Format::Json => println!("{}", ratchet_views::json(&PauseView::from(&pause))),
                Format::Text => println!("paused {}{}", what(&pause.scope), schedules_note(&pause)),
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Resume { task, common } => {
            let store = open_existing(&mut config, &common).await?;
            let scope = task.as_deref().unwrap_or(WHOLE_QUEUE);
            if !store.resume(scope).await? {
                bail!("{} is not paused (ratchet queue status lists the pauses)", what(scope));
            }
            let left = store.pauses().await?;
            match common.format {
                Format::Json => println!("{}", json!({"resumed": task, "pauses": views(&left)})),
                Format::Text => {
                    println!("resumed {}", what(scope));
                    for pause in left.iter().filter(|p| task.as_deref().is_none_or(|t| p.covers(t))) {
                        println!("still paused: {}", what(&pause.scope));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        QueueCommand::Status { common } => {
            let store = open_existing(&mut config, &common).await?;
            let pauses = store.pauses().await?;
            let counts = store.job_counts().await?;
            match common.format {
                Format::Json => {
                    let counts: serde_json::Map<String, serde_json::Value> =
                        counts.iter().map(|(s, n)| (s.as_str().to_owned(), json!(n))).collect();
                    println!("{}", json!({"pauses": views(&pauses), "counts": counts}));
                }
                Format::Text => {
                    if pauses.is_empty() {
                        println!("not paused");
                    }
                    for pause in &pauses {
                        println!(
                            "paused: {} since {}{}",
                            what(&pause.scope),
                            ratchet_core::time::format(pause.paused_at),
                            schedules_note(pause)
                        );
                    }
                    let counts: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
                    println!("jobs: {}", if counts.is_empty() { "none".into() } else { counts.join(", ") });
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The name of `task` as the nodes know it; an unknown task is refused.
async fn known_task(config: &Config, store: &Store, task: &str) -> anyhow::Result<String> {
    let registry = super::registry_for(config, store, task, false).await?;
    match registry.get(task) {
        Some(found) => Ok(found.name().to_owned()),
        None => bail!("no task named `{task}` is known (ratchet tasks lists what the nodes serve)"),
    }
}

fn what(scope: &str) -> String {
    if scope == WHOLE_QUEUE { "the whole queue".into() } else { format!("task {scope}") }
}

fn schedules_note(pause: &Pause) -> &'static str {
    if pause.skip_schedules { " (its schedules skip their fires)" } else { " (schedules keep enqueueing)" }
}

fn views(pauses: &[Pause]) -> Vec<PauseView> {
    pauses.iter().map(PauseView::from).collect()
}
