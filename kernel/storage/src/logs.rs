//! Searching the logs of recorded runs (`ratchet logs`, `GET /api/v1/logs`), and the trend of
//! failures over time by task and by error pattern (`GET /api/v1/logs/trends`). Both read the
//! executions the store keeps (so `retention` bounds them), newest first, a bounded number at
//! a time.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, Value as SqlValue};
use serde_json::Value;

use super::row::{int, json};
use super::{QueueError, Store};

/// Most executions one search reads.
pub const MAX_SCANNED: u64 = 5_000;

/// What to look for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogSearch {
    pub task: Option<String>,
    pub execution_id: Option<String>,
    /// The runs of one trace.
    pub trace_id: Option<String>,
    /// Runs that started at or after this time (ms).
    pub since: Option<i64>,
    /// Lines at this level or above: `debug` < `info` < `warn` < `error`.
    pub level: Option<String>,
    /// Lines containing this text, case-insensitive.
    pub grep: Option<String>,
    /// Most lines returned (the newest runs' lines when there are more).
    pub limit: usize,
}

/// One log line of a recorded run.
#[derive(Debug, Clone, PartialEq)]
pub struct LogHit {
    pub execution_id: String,
    pub task: String,
    pub trace_id: Option<String>,
    /// When its run started (lines carry no time of their own).
    pub started_at: i64,
    /// The line's position in its run's log, from 0.
    pub index: usize,
    pub level: String,
    pub message: String,
}

/// What a search found: lines oldest first, and how many runs it read.
#[derive(Debug, Clone, PartialEq)]
pub struct LogsFound {
    pub lines: Vec<LogHit>,
    pub scanned: u64,
    /// More lines matched than `limit`: the oldest were left out.
    pub truncated: bool,
}

/// Failures in one time bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendBucket {
    pub start: i64,
    pub runs: u64,
    pub failures: u64,
    pub by_task: BTreeMap<String, u64>,
    /// By the most confident error pattern of each failure (`unclassified` without one).
    pub by_pattern: BTreeMap<String, u64>,
}

/// The rank of a level name; an unknown name ranks as `info`.
pub fn level_rank(level: &str) -> u8 {
    match level.to_ascii_lowercase().as_str() {
        "trace" | "debug" => 0,
        "warn" | "warning" => 2,
        "error" => 3,
        _ => 1,
    }
}

impl Store {
    pub async fn search_logs(&self, search: &LogSearch) -> Result<LogsFound, QueueError> {
        let (mut clauses, mut values): (Vec<&str>, Vec<SqlValue>) = (Vec::new(), Vec::new());
        if let Some(task) = &search.task {
            clauses.push("task = ?");
            values.push(task.clone().into());
        }
        if let Some(id) = &search.execution_id {
            clauses.push("id = ?");
            values.push(id.clone().into());
        }
        if let Some(trace) = &search.trace_id {
            clauses.push("trace_id = ?");
            values.push(trace.clone().into());
        }
        if let Some(since) = search.since {
            clauses.push("started_at >= ?");
            values.push(since.into());
        }
        let filter =
            if clauses.is_empty() { String::new() } else { format!("WHERE {}", clauses.join(" AND ")) };
        values.push((MAX_SCANNED as i64).into());
        let sql = format!(
            "SELECT id, task, trace_id, started_at, logs FROM executions {filter} ORDER BY started_at DESC, id DESC LIMIT ?"
        );
        let rows = self.connection().query_all_raw(self.statement(&sql, values)).await?;
        let scanned = rows.len() as u64;
        let floor = search.level.as_deref().map_or(0, level_rank);
        let needle = search.grep.as_deref().map(str::to_lowercase);
        let mut lines = Vec::new();
        let mut truncated = false;
        // Newest runs first, so a limit keeps the latest lines.
        'runs: for row in &rows {
            let logs = json(row, "logs")?;
            let id: String = row.try_get("", "id")?;
            let task: String = row.try_get("", "task")?;
            let trace_id: Option<String> = row.try_get("", "trace_id")?;
            let started_at = int(row, "started_at")?;
            let mut found: Vec<LogHit> = Vec::new();
            for (index, line) in logs.as_array().into_iter().flatten().enumerate() {
                let level = line.get("level").and_then(Value::as_str).unwrap_or("info");
                let message = line.get("message").and_then(Value::as_str).unwrap_or_default();
                if level_rank(level) < floor
                    || needle.as_ref().is_some_and(|n| !message.to_lowercase().contains(n.as_str()))
                {
                    continue;
                }
                found.push(LogHit {
                    execution_id: id.clone(),
                    task: task.clone(),
                    trace_id: trace_id.clone(),
                    started_at,
                    index,
                    level: level.to_owned(),
                    message: message.to_owned(),
                });
            }
            for hit in found.into_iter().rev() {
                if search.limit > 0 && lines.len() >= search.limit {
                    truncated = true;
                    break 'runs;
                }
                lines.push(hit);
            }
        }
        lines.reverse();
        Ok(LogsFound { lines, scanned, truncated })
    }

    /// Runs and failures per `bucket_ms` since `since`, by task and by error pattern. The
    /// database counts the runs per bucket; only failures are read, for their task and pattern.
    pub async fn failure_trends(&self, since: i64, bucket_ms: i64) -> Result<Vec<TrendBucket>, QueueError> {
        let bucket_ms = bucket_ms.max(1);
        let bucket = |started_at: i64| since + (started_at - since) / bucket_ms * bucket_ms;
        let counts = "SELECT (started_at - ?) / ? AS slot, COUNT(*) AS runs FROM executions \
                      WHERE started_at >= ? GROUP BY slot";
        let values = vec![since.into(), bucket_ms.into(), since.into()];
        let rows = self.connection().query_all_raw(self.statement(counts, values)).await?;
        let mut buckets: BTreeMap<i64, TrendBucket> = BTreeMap::new();
        for row in &rows {
            let start = since + int(row, "slot")? * bucket_ms;
            buckets.insert(
                start,
                TrendBucket {
                    start,
                    runs: u64::try_from(int(row, "runs")?).unwrap_or(0),
                    failures: 0,
                    by_task: BTreeMap::new(),
                    by_pattern: BTreeMap::new(),
                },
            );
        }
        let failures = "SELECT task, started_at, error FROM executions WHERE status = 'failure' \
                        AND started_at >= ? ORDER BY started_at LIMIT ?";
        let values = vec![since.into(), ((MAX_SCANNED * 20) as i64).into()];
        let rows = self.connection().query_all_raw(self.statement(failures, values)).await?;
        for row in &rows {
            let start = bucket(int(row, "started_at")?);
            let Some(bucket) = buckets.get_mut(&start) else { continue };
            bucket.failures += 1;
            let task: String = row.try_get("", "task")?;
            *bucket.by_task.entry(task).or_default() += 1;
            let error: Option<String> = row.try_get("", "error")?;
            let pattern = error
                .and_then(|e| serde_json::from_str::<Value>(&e).ok())
                .and_then(|e| {
                    e.pointer("/classification/0/pattern").and_then(Value::as_str).map(str::to_owned)
                })
                .unwrap_or_else(|| "unclassified".into());
            *bucket.by_pattern.entry(pattern).or_default() += 1;
        }
        Ok(buckets.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::level_rank;

    #[test]
    fn levels_rank_from_debug_to_error() {
        assert!(level_rank("debug") < level_rank("info"));
        assert!(level_rank("info") < level_rank("WARN"));
        assert!(level_rank("warn") < level_rank("error"));
        assert_eq!(level_rank("log"), level_rank("info"));
    }
}
