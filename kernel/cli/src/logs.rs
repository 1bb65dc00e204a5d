//! `ratchet logs`: search the log lines of recorded runs, and follow new ones as runs write
//! them (from the running node's live stream) or, with no node to ask, as runs are recorded.

use std::collections::{HashMap, HashSet};
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
    /// Only the runs of this trace: the `x-trace-id` a request was answered with, or the trace
    /// id of its `traceparent`.
    #[arg(long, value_name = "TRACE_ID")]
    trace: Option<String>,
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
    /// Keep watching: lines as runs write them, from the node serving at --server; when no
    /// node answers there, lines of each run as it is recorded (polling the database).
    #[arg(long)]
    follow: bool,
    /// The node to follow (its REST API), with the key in RATCHET_API_KEY when it needs one.
    /// Default: server.bind of the configuration.
    #[arg(long, value_name = "URL", requires = "follow")]
    server: Option<String>,
    #[command(flatten)]
    common: Common,
}

pub async fn logs(mut config: Config, args: LogsArgs) -> anyhow::Result<ExitCode> {
    let store = open_existing(&mut config, &args.common).await?;
    let since = args.since.map(|d| now_ms().saturating_sub(d.as_millis().min(i64::MAX as u128) as i64));
    let search = LogSearch {
        task: args.task.clone(),
        execution_id: args.execution.clone(),
        trace_id: args.trace.clone(),
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
        let server = args.server.clone().unwrap_or_else(|| local_url(&config.server.bind));
        let live = live::connect(&server, &search).await;
        let live = match live {
            Ok(live) => {
                eprintln!("(following {server} live)");
                Some(live)
            }
            Err(reason) => {
                eprintln!("(no live lines: {reason}; showing each run's lines when it is recorded)");
                None
            }
        };
        follow(&store, search, &found.lines, live, args.common.format).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The URL of a node listening on `bind` from this machine (a wildcard address is reached on
/// loopback).
fn local_url(bind: &str) -> String {
    let bind = bind.replacen("0.0.0.0:", "127.0.0.1:", 1).replacen("[::]:", "[::1]:", 1);
    format!("http://{bind}")
}

/// Prints lines as they arrive from the node's live stream (when there is one) and, polling
/// the database every second, the lines of recorded runs that were not (all) seen live: runs
/// on nodes whose lines are not relayed, lines a slow follower missed, a run's early lines
/// written before the follower joined.
async fn follow(
    store: &Store,
    mut search: LogSearch,
    shown: &[LogHit],
    mut live: Option<tokio::sync::mpsc::Receiver<LogHit>>,
    format: Format,
) -> anyhow::Result<()> {
    let mut printed: HashMap<String, HashSet<usize>> = HashMap::new();
    for hit in shown {
        printed.entry(hit.execution_id.clone()).or_default().insert(hit.index);
    }
    // Runs whose record was read: any line of theirs still arriving live was already printed.
    let mut recorded: HashSet<String> = printed.keys().cloned().collect();
    search.since = Some(shown.iter().map(|h| h.started_at).max().unwrap_or_else(now_ms).min(now_ms()));
    search.limit = 0;
    let mut poll = tokio::time::interval(Duration::from_secs(1));
    loop {
        let line = match &mut live {
            Some(receiver) => tokio::select! {
                line = receiver.recv() => line.map_or(Step::LiveEnded, Step::Live),
                _ = poll.tick() => Step::Poll,
            },
            None => {
                poll.tick().await;
                Step::Poll
            }
        };
        match line {
            Step::Live(hit) => {
                if !recorded.contains(&hit.execution_id)
                    && printed.entry(hit.execution_id.clone()).or_default().insert(hit.index)
                {
                    print_hit(&hit, format);
                }
            }
            Step::LiveEnded => {
                eprintln!("(the node's live stream ended; showing each run's lines when it is recorded)");
                live = None;
            }
            Step::Poll => {
                let found = store.search_logs(&search).await?;
                let fresh: Vec<&LogHit> =
                    found.lines.iter().filter(|h| !recorded.contains(&h.execution_id)).collect();
                for hit in &fresh {
                    if printed.entry(hit.execution_id.clone()).or_default().insert(hit.index) {
                        print_hit(hit, format);
                    }
                }
                recorded.extend(fresh.iter().map(|h| h.execution_id.clone()));
            }
        }
    }
}

enum Step {
    Live(LogHit),
    LiveEnded,
    Poll,
}

/// The node's `/api/v1/logs/live` stream (server-sent events), read into log lines.
mod live {
    use ratchet_storage::{LogHit, LogSearch, now_ms};
    use serde::Deserialize;
    use tokio::sync::mpsc;

    /// Bytes of one event at most; a longer one is skipped.
    const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

    #[derive(Deserialize)]
    struct Line {
        execution_id: String,
        task: String,
        trace_id: Option<String>,
        index: usize,
        level: String,
        message: String,
    }

    /// Opens the stream with `search`'s filters; why not, when the node does not answer it.
    pub async fn connect(server: &str, search: &LogSearch) -> Result<mpsc::Receiver<LogHit>, String> {
        // reqwest brings rustls without a provider; ring is the one compiled in.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(2))
            .build()
            .map_err(|error| error.to_string())?;
        let base = format!("{}/api/v1/logs/live", server.trim_end_matches('/'));
        let mut query: Vec<(&str, &str)> = Vec::new();
        let filters = [
            ("task", &search.task),
            ("execution_id", &search.execution_id),
            ("trace_id", &search.trace_id),
            ("level", &search.level),
            ("grep", &search.grep),
        ];
        for (name, value) in &filters {
            if let Some(value) = value {
                query.push((name, value));
            }
        }
        let url = url::Url::parse_with_params(&base, &query)
            .map_err(|error| format!("--server {server} is not a URL ({error})"))?;
        let mut request = client.get(url);
        if let Ok(key) = std::env::var("RATCHET_API_KEY") {
            request = request.header("x-api-key", key);
        }
        let response =
            request.send().await.map_err(|error| format!("no node answers at {server} ({error})"))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            let hint = match status.as_u16() {
                401 | 403 => " (set RATCHET_API_KEY to a viewer's key)",
                404 => " (the node predates live logs, or serves no REST surface)",
                _ => "",
            };
            return Err(format!("{server} answered {status}{hint}: {}", body.trim()));
        }
        let (lines, receiver) = mpsc::channel(1_024);
        tokio::spawn(read(response, lines));
        Ok(receiver)
    }

    async fn read(mut response: reqwest::Response, lines: mpsc::Sender<LogHit>) {
        let mut buffer: Vec<u8> = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            buffer.extend_from_slice(&chunk);
            while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
                let event: Vec<u8> = buffer.drain(..end + 2).collect();
                if let Some(hit) = parse(&String::from_utf8_lossy(&event))
                    && lines.send(hit).await.is_err()
                {
                    return;
                }
            }
            if buffer.len() > MAX_EVENT_BYTES {
                buffer.clear();
            }
        }
    }

    /// A `line` event's line; `None` for keep-alives, `lagged` events and what does not parse.
    fn parse(event: &str) -> Option<LogHit> {
        let mut kind = "message";
        let mut data = String::new();
        for field in event.lines() {
            if let Some(value) = field.strip_prefix("event:") {
                kind = value.trim();
            } else if let Some(value) = field.strip_prefix("data:") {
                data.push_str(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        if kind == "lagged" {
            eprintln!("(some live lines were missed; they show when their run is recorded)");
        }
        let line: Line = (kind == "line").then(|| serde_json::from_str(&data).ok()).flatten()?;
        Some(LogHit {
            execution_id: line.execution_id,
            task: line.task,
            trace_id: line.trace_id,
            started_at: now_ms(),
            index: line.index,
            level: line.level,
            message: line.message,
        })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn line_events_parse_and_others_are_skipped() {
            let event = "event: line\ndata: {\"execution_id\":\"e\",\"job_id\":null,\"task\":\"t\",\
                         \"trace_id\":\"a\",\"index\":3,\"level\":\"warn\",\"message\":\"hi\"}\n\n";
            let hit = super::parse(event).unwrap();
            assert_eq!((hit.index, hit.level.as_str(), hit.message.as_str()), (3, "warn", "hi"));
            assert!(super::parse(": keep-alive\n\n").is_none());
            assert!(super::parse("event: lagged\ndata: {\"missed\":2}\n\n").is_none());
        }
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
        "trace_id": hit.trace_id,
        "started_at": ratchet_core::time::format(hit.started_at),
        "index": hit.index,
        "level": hit.level,
        "message": hit.message,
    })
}
