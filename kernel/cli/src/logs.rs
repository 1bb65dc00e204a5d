//! `ratchet logs`: search the log lines of recorded runs, and follow new ones as runs end.

use std::collections::HashSet;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use ratchet_core::Config;
use ratchet_storage::{LogHit, LogSearch, Store, now_ms};
use serde_json::json;

use super::Format;
use super::jobs::{Common, open_existing};

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Only this task's runs.
    #[arg(long)]
    task: Option<String>,
    /// Only this execution.
    #[arg(long, value_name = "ID")]
    execution: Option<String>,
    /// Lines at this level or above: debug, info, warn, error.
    #[arg(long, value_parser = ["debug", "info", "warn", "error"])]
    level: Option<String>,
    /// Runs that started within this long, e.g. 1h or 30m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Lines containing this text (case-insensitive).
    #[arg(long, value_name = "TEXT")]
    grep: Option<String>,
    /// Most lines shown (the newest).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Keep watching: the lines of each run that ends from now on, as it is recorded.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    common: Common,
}

pub async fn logs(mut config: Config, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&mut config, &args.common).await?;
    let since = args.since.map(|d| now_ms().saturating_sub(d.as_millis().min(i64::MAX as u128) as i64));
    let search = LogSearch {
        task: args.task.clone(),
        execution_id: args.execution.clone(),
        since,
        level: args.level.clone(),
        grep: args.grep.clone(),
        limit: args.limit,
    };
    let found = store.search_logs(&search).await?;
    match (args.common.format, args.follow) {
        (Format::Json, false) => {
            let items: Vec<_> = found.lines.iter().map(hit_json).collect();
            println!("{}", json!({"items": items, "scanned": found.scanned, "truncated": found.truncated}));
        }
        (format, _) => {
            for hit in &found.lines {
                print_hit(hit, format);
            }
            if found.truncated && !args.follow && format == Format::Text {
                eprintln!(
                    "(the newest {} lines shown: --limit, --since or --task narrow the search)",
                    args.limit
                );
            }
        }
    }
    if args.follow {
        follow(&store, search, &found.lines, args.common.format).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the lines of runs recorded from now on, polling the database every second.
async fn follow(
    store: &Store,
    mut search: LogSearch,
    shown: &[LogHit],
    format: Format,
) -> anyhow::Result<()> {
    let mut seen: HashSet<String> = shown.iter().map(|h| h.execution_id.clone()).collect();
    search.since = Some(shown.iter().map(|h| h.started_at).max().unwrap_or_else(now_ms).min(now_ms()));
    search.limit = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let found = store.search_logs(&search).await?;
        let fresh: Vec<&LogHit> = found.lines.iter().filter(|h| !seen.contains(&h.execution_id)).collect();
        for hit in &fresh {
            print_hit(hit, format);
        }
        seen.extend(fresh.iter().map(|h| h.execution_id.clone()));
    }
}

fn print_hit(hit: &LogHit, format: Format) {
    match format {
        Format::Json => println!("{}", hit_json(hit)),
        Format::Text => println!(
            "{}  {:<20}  {}  {:<5}  {}",
            ratchet_core::time::format(hit.started_at),
            hit.task,
            &hit.execution_id[..hit.execution_id.len().min(13)],
            hit.level,
            hit.message
        ),
    }
}

fn hit_json(hit: &LogHit) -> serde_json::Value {
    json!({
        "execution_id": hit.execution_id,
        "task": hit.task,
        "started_at": ratchet_core::time::format(hit.started_at),
        "index": hit.index,
        "level": hit.level,
        "message": hit.message,
    })
}
