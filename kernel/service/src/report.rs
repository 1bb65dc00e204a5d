//! The failure report of a run, for a person or an LLM: what `ratchet explain` prints and
//! `GET /api/v1/executions/{id}/report` answers. Built from the stored record (whose logs,
//! errors and HTTP exchanges were masked when they were recorded), the job and its attempts,
//! the task's code around the failing line, the error patterns' classification, and the
//! node's state now; trimmed to `llm_export.max_context_tokens`.

use std::fmt::Write as _;
use std::sync::LazyLock;

use regex::Regex;

use serde::Serialize;
use serde_json::{Value, json};

use ratchet_core::config::Config;
use ratchet_core::http::Masker;
use ratchet_storage::{ExecutionRecord, Job, QueueError, Store, now_ms};

use crate::Service;

/// Lines of code shown on each side of the failing line.
const CODE_CONTEXT: usize = 5;
/// Characters per token, for the budget (a rough, conservative rule for English and code).
const CHARS_PER_TOKEN: usize = 4;

/// One run's report, as data; [`Report::markdown`] is the same as text.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    /// The typed error as recorded (kind, name, message, stack, violations, classification).
    pub error: Option<Value>,
    pub context: Context,
    /// The error patterns' readings, most confident first.
    pub classification: Vec<Value>,
    /// The task's code around the line the stack names first in `main.js`.
    pub code: Option<CodeExcerpt>,
    pub system: SystemState,
    /// Prompts to paste into an assistant, built from the error and the code.
    pub prompts: Vec<String>,
    /// The run's log lines and HTTP exchanges (method, URL, status, time), oldest first.
    pub logs: Vec<Value>,
    pub http: Vec<Value>,
    /// Log lines or exchanges left out to keep within `llm_export.max_context_tokens`.
    pub trimmed: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub execution_id: String,
    pub task: String,
    pub status: String,
    /// `kind` of the error (`task_error`, `timeout`, ...), and the JavaScript error's name.
    pub error_kind: Option<String>,
    pub error_name: Option<String>,
    /// `info` (cancelled), `warning` (the caller's input), `error`.
    pub severity: &'static str,
    pub message: Option<String>,
    pub finished_at: String,
    pub duration_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Context {
    pub task_version: Option<String>,
    pub task_digest: Option<String>,
    /// Where the code shown comes from: the version that ran, or (for runs recorded before
    /// failures kept it) the job's pinned version or the version serving now.
    pub code_source: Option<String>,
    pub job_id: Option<String>,
    pub attempt: u32,
    pub max_attempts: Option<u32>,
    /// How each earlier attempt of the job ended.
    pub attempts: Vec<Value>,
    pub worker: Option<String>,
    pub node: Option<String>,
    pub caused_by: Option<Value>,
    /// The trace the run belongs to: `ratchet logs --trace ID` and
    /// `GET /api/v1/executions?trace_id=ID` find the request's other runs.
    pub trace_id: Option<String>,
    /// The input, with the values of secret-looking keys masked.
    pub input: Value,
}

#[derive(Debug, Clone, Serialize)]
pub struct CodeExcerpt {
    pub file: String,
    pub line: usize,
    pub column: Option<usize>,
    /// `[number, text]`, the failing line among them.
    pub lines: Vec<(usize, String)>,
}

/// The state of the node that ran it when the run failed (kept in its record), and the
/// cluster's when the report was made.
#[derive(Debug, Clone, Serialize)]
pub struct SystemState {
    /// The node at the failure: `{at, node, workers: [{state, runs, restarts}], jobs_in_flight,
    /// runs_in_flight, rss_kib, queue, queue_counted_at}`; absent for runs recorded before
    /// nodes kept it.
    pub at_failure: Option<Value>,
    pub at: String,
    /// Jobs per status.
    pub queue: Value,
    /// The workers of running nodes, as they last reported.
    pub workers: Vec<Value>,
}

impl Service {
    /// The report of execution `id`.
    pub async fn report(&self, id: &str) -> Result<Report, QueueError> {
        report(&self.store, self.config(), id).await
    }

    /// The reports of every execution of job `id`, by attempt.
    pub async fn job_reports(&self, id: &str) -> Result<Vec<Report>, QueueError> {
        job_reports(&self.store, self.config(), id).await
    }
}

/// The report of execution `id`, from the database alone (the CLI makes it without a node).
pub async fn report(store: &Store, config: &Config, id: &str) -> Result<Report, QueueError> {
    let record = store.execution(id).await?;
    let job = match &record.job_id {
        Some(job) => Some(store.job(job).await?),
        None => None,
    };
    let attempts = match &job {
        Some(job) => store.attempts(&job.id).await?,
        None => Vec::new(),
    };
    let (code, code_source, version) = code_of(store, &record, job.as_ref()).await;
    let queue = store.job_counts().await.map_or(Value::Null, |counts| {
        Value::Object(counts.into_iter().map(|(status, n)| (status.to_string(), json!(n))).collect())
    });
    let workers = store
        .workers()
        .await
        .unwrap_or_default()
        .iter()
        .map(|w| json!({"id": w.id, "node": w.node, "state": w.state.as_str(), "runs": w.runs, "last_error": w.last_error}))
        .collect();
    let masker = Masker::new(&config.recording.mask_names);
    let excerpt = code.as_deref().and_then(|code| excerpt(code, record.error.as_ref())).map(|mut excerpt| {
        for (_, line) in &mut excerpt.lines {
            *line = mask_code(line, &masker);
        }
        excerpt
    });
    let summary = summary(&record);
    let prompts = prompts(&summary, record.error.as_ref(), excerpt.as_ref());
    let context = Context {
        task_version: version.as_ref().map(|(v, _)| v.clone()),
        task_digest: version.map(|(_, d)| d),
        code_source,
        job_id: record.job_id.clone(),
        attempt: record.attempt,
        max_attempts: job.as_ref().map(|j| j.max_attempts),
        attempts: attempts
            .iter()
            .map(|a| json!({"attempt": a.attempt, "outcome": a.outcome, "error": a.error}))
            .collect(),
        worker: record.worker.clone(),
        node: record.node.clone(),
        caused_by: record.caused_by.clone(),
        trace_id: record.trace_id.clone(),
        input: mask_json(&record.input, &masker),
    };
    let mut report = Report {
        summary,
        classification: record
            .error
            .as_ref()
            .and_then(|e| e.get("classification"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default(),
        error: record.error.clone(),
        context,
        code: excerpt,
        system: SystemState {
            at_failure: record.error.as_ref().and_then(|e| e.get("system")).cloned(),
            at: ratchet_core::time::format(now_ms()),
            queue,
            workers,
        },
        prompts,
        logs: record.logs.as_array().cloned().unwrap_or_default(),
        http: exchanges(&record.http),
        trimmed: 0,
    };
    report.trim(config.llm_export.max_context_tokens.saturating_mul(CHARS_PER_TOKEN));
    Ok(report)
}

/// The reports of every execution of job `id`, by attempt.
pub async fn job_reports(store: &Store, config: &Config, id: &str) -> Result<Vec<Report>, QueueError> {
    store.job(id).await?;
    let mut executions = store.executions(Some(id), 1_000).await?;
    executions.sort_by_key(|e| (e.attempt, e.started_at));
    let mut reports = Vec::with_capacity(executions.len());
    for execution in executions {
        reports.push(report(store, config, &execution.id).await?);
    }
    Ok(reports)
}

/// The code the run ran, where it can be known: a job's pinned version, else the version this
/// database says nodes serve now; with where it came from and (version, digest).
async fn code_of(
    store: &Store,
    record: &ExecutionRecord,
    job: Option<&Job>,
) -> (Option<String>, Option<String>, Option<(String, String)>) {
    let ran = record.error.as_ref().and_then(|e| e.get("task_digest")).and_then(Value::as_str);
    let pinned = job.and_then(|j| j.task_digest.as_deref());
    match store.stored_task(&record.task, ran.or(pinned)).await {
        Ok(Some(version)) => {
            let source = match (ran, pinned) {
                (Some(_), _) => "the version that ran",
                (None, Some(_)) => "the version the job was enqueued for",
                // Runs recorded before failures kept their version.
                (None, None) => "the version serving now (the run's own version was not recorded)",
            };
            (Some(version.code), Some(source.to_owned()), Some((version.version, version.digest)))
        }
        _ => (None, None, None),
    }
}

fn summary(record: &ExecutionRecord) -> Summary {
    let text =
        |key: &str| record.error.as_ref().and_then(|e| e.get(key)).and_then(Value::as_str).map(str::to_owned);
    let kind = text("kind");
    let severity = match kind.as_deref() {
        None => "info",
        Some("cancelled") => "info",
        Some("invalid_input") => "warning",
        Some(_) => "error",
    };
    Summary {
        execution_id: record.id.clone(),
        task: record.task.clone(),
        status: record.status.as_str().to_owned(),
        error_kind: kind,
        error_name: text("name"),
        severity,
        message: text("message"),
        finished_at: ratchet_core::time::format(record.finished_at),
        duration_ms: record.duration_us as f64 / 1000.0,
    }
}

/// The code around the first `main.js:LINE:COLUMN` of the error's stack.
fn excerpt(code: &str, error: Option<&Value>) -> Option<CodeExcerpt> {
    let stack = error?.get("stack")?.as_str()?;
    let at = stack.split("main.js:").nth(1)?;
    let mut numbers = at.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty());
    let line: usize = numbers.next()?.parse().ok()?;
    let column = numbers.next().and_then(|c| c.parse().ok());
    let lines: Vec<&str> = code.lines().collect();
    if line == 0 || line > lines.len() {
        return None;
    }
    let first = line.saturating_sub(CODE_CONTEXT).max(1);
    let last = (line + CODE_CONTEXT).min(lines.len());
    Some(CodeExcerpt {
        file: "main.js".into(),
        line,
        column,
        lines: (first..=last).map(|n| (n, lines[n - 1].to_owned())).collect(),
    })
}

fn prompts(summary: &Summary, error: Option<&Value>, code: Option<&CodeExcerpt>) -> Vec<String> {
    let Some(kind) = &summary.error_kind else { return Vec::new() };
    let what = match (&summary.error_name, &summary.message) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        (_, Some(message)) => message.clone(),
        _ => kind.clone(),
    };
    let mut prompts = Vec::new();
    match code {
        Some(code) => {
            let listing: String = code.lines.iter().map(|(n, text)| format!("{n:>4} | {text}\n")).collect();
            prompts.push(format!(
                "A Ratchet task `{}` (JavaScript, run by the Boa engine) failed with `{what}` (error kind `{kind}`) at \
                 main.js line {}. Here is the code around it:\n\n{listing}\nWhat is the most likely cause, and how \
                 should the code change?",
                summary.task, code.line
            ));
        }
        None => prompts.push(format!(
            "A Ratchet task `{}` failed with `{what}` (error kind `{kind}`). What are the likely causes, and what \
             should I check first?",
            summary.task
        )),
    }
    if let Some(violations) = error.and_then(|e| e.get("violations")).and_then(Value::as_array) {
        let listed: Vec<String> = violations
            .iter()
            .map(|v| {
                format!("{} ({})", v["pointer"].as_str().unwrap_or(""), v["message"].as_str().unwrap_or(""))
            })
            .collect();
        prompts.push(format!(
            "The data broke the task's JSON Schema at: {}. How should the data or the schema change?",
            listed.join("; ")
        ));
    }
    prompts
}

/// The HAR's entries as `{method, url, status, time_ms}`.
fn exchanges(har: &Value) -> Vec<Value> {
    har.pointer("/log/entries")
        .and_then(Value::as_array)
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    json!({
                        "method": e.pointer("/request/method"),
                        "url": e.pointer("/request/url"),
                        "status": e.pointer("/response/status"),
                        "time_ms": e.get("time"),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Values the code assigns to secret-looking names (`token: '...'`, `api_key = "..."`,
/// `Authorization: 'Bearer ...'`).
static ASSIGNED: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r#"([A-Za-z_][\w-]*)(['"]?\s*[:=]\s*)(['"`])([^'"`]*)(['"`])"#).ok());
/// Credentials after an authorization scheme.
static SCHEME: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{6,}").ok());

/// A line of the task's code with literal secrets and URL credentials masked: code is part of
/// what the report hands an assistant, and a key written into it is still a key.
fn mask_code(line: &str, masker: &Masker) -> String {
    let mut line = masker.text(line).into_owned();
    if let Some(assigned) = ASSIGNED.as_ref() {
        line = assigned
            .replace_all(&line, |found: &regex::Captures<'_>| {
                if masker.is_secret(&found[1]) && !found[4].is_empty() {
                    format!("{}{}{}***{}", &found[1], &found[2], &found[3], &found[5])
                } else {
                    found[0].to_owned()
                }
            })
            .into_owned();
    }
    if let Some(scheme) = SCHEME.as_ref() {
        line = scheme.replace_all(&line, "$1 ***").into_owned();
    }
    line
}

/// `value` with the values of keys that name secrets (as the recording masks headers and
/// parameters) replaced by `***`, and URLs in strings masked.
fn mask_json(value: &Value, masker: &Masker) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = if masker.is_secret(key) { json!("***") } else { mask_json(value, masker) };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| mask_json(v, masker)).collect()),
        Value::String(text) => Value::String(masker.text(text).into_owned()),
        other => other.clone(),
    }
}

impl Report {
    /// Keeps the report within `budget` characters of Markdown by leaving out the oldest log
    /// lines, then the earliest exchanges (the end of a run says most about its failure).
    fn trim(&mut self, budget: usize) {
        while self.markdown().len() > budget && (!self.logs.is_empty() || !self.http.is_empty()) {
            if self.logs.is_empty() {
                self.http.remove(0);
                self.trimmed += 1;
            } else {
                let drop = (self.logs.len() / 4).max(1);
                self.logs.drain(..drop);
                self.trimmed += drop;
            }
        }
    }

    /// The report as Markdown.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let s = &self.summary;
        let _ = writeln!(out, "# Failure report: {} ({})\n", s.task, s.execution_id);
        let _ = writeln!(out, "## Summary\n");
        let _ = writeln!(out, "| | |\n|---|---|");
        let _ = writeln!(out, "| status | {} |", s.status);
        let _ = writeln!(out, "| error | {} |", cell(s.error_kind.as_deref()));
        let _ = writeln!(out, "| name | {} |", cell(s.error_name.as_deref()));
        let _ = writeln!(out, "| severity | {} |", s.severity);
        let _ = writeln!(out, "| finished | {} |", s.finished_at);
        let _ = writeln!(out, "| duration | {:.1} ms |\n", s.duration_ms);
        self.error_details(&mut out);
        self.context_section(&mut out);
        self.patterns_section(&mut out);
        self.code_section(&mut out);
        self.system_section(&mut out);
        if !self.prompts.is_empty() {
            let _ = writeln!(out, "## Suggested prompts\n");
            for prompt in &self.prompts {
                let _ = writeln!(out, "```text\n{prompt}\n```\n");
            }
        }
        self.events_section(&mut out);
        out
    }

    fn error_details(&self, out: &mut String) {
        let _ = writeln!(out, "## Error details\n");
        match &self.summary.message {
            Some(message) => {
                let _ = writeln!(out, "{}\n", message);
            }
            None => {
                let _ = writeln!(out, "The run did not fail.\n");
            }
        }
        if let Some(stack) = self.error.as_ref().and_then(|e| e.get("stack")).and_then(Value::as_str) {
            let _ = writeln!(out, "```text\n{}\n```\n", stack.trim_end());
        }
        if let Some(violations) =
            self.error.as_ref().and_then(|e| e.get("violations")).and_then(Value::as_array)
        {
            for v in violations {
                let _ = writeln!(
                    out,
                    "- `{}`: {} (rule `{}`)",
                    v["pointer"].as_str().unwrap_or(""),
                    v["message"].as_str().unwrap_or(""),
                    v["rule"].as_str().unwrap_or("")
                );
            }
            out.push('\n');
        }
    }

    fn context_section(&self, out: &mut String) {
        let c = &self.context;
        let _ = writeln!(out, "## Execution context\n");
        let _ = writeln!(out, "- execution: `{}`", self.summary.execution_id);
        if let Some(trace) = &c.trace_id {
            let _ = writeln!(out, "- trace: `{trace}`");
        }
        let _ = writeln!(
            out,
            "- task: `{}` version {} (digest {})",
            self.summary.task,
            cell(c.task_version.as_deref()),
            cell(c.task_digest.as_deref().map(|d| &d[..d.len().min(12)]))
        );
        match &c.job_id {
            Some(job) => {
                let _ = writeln!(
                    out,
                    "- job: `{job}`, attempt {} of {}",
                    c.attempt,
                    c.max_attempts.map_or("?".into(), |m| m.to_string())
                );
                for a in &c.attempts {
                    let _ = writeln!(
                        out,
                        "  - attempt {}: {}{}",
                        a["attempt"],
                        a["outcome"].as_str().unwrap_or(""),
                        a["error"].as_str().map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                }
            }
            None => {
                let _ = writeln!(out, "- job: none (a synchronous run)");
            }
        }
        let _ = writeln!(out, "- worker: {}, node: {}", cell(c.worker.as_deref()), cell(c.node.as_deref()));
        if let Some(caused) = &c.caused_by {
            let _ = writeln!(out, "- caused by: `{caused}`");
        }
        let _ = writeln!(out, "- input: `{}`\n", c.input);
    }

    fn patterns_section(&self, out: &mut String) {
        let _ = writeln!(out, "## Pattern analysis\n");
        if self.classification.is_empty() {
            let _ = writeln!(out, "No error pattern matched.\n");
            return;
        }
        for c in &self.classification {
            let _ = writeln!(
                out,
                "- **{}** ({}, confidence {:.2})",
                c["pattern"].as_str().unwrap_or(""),
                c["category"].as_str().unwrap_or(""),
                c["confidence"].as_f64().unwrap_or(0.0)
            );
            for suggestion in c["suggestions"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "  - {}", suggestion.as_str().unwrap_or(""));
            }
        }
        out.push('\n');
    }

    fn code_section(&self, out: &mut String) {
        let Some(code) = &self.code else { return };
        let _ = writeln!(out, "## Code\n");
        if let Some(source) = &self.context.code_source {
            let _ = writeln!(out, "From {source}.\n");
        }
        let _ = writeln!(out, "```js");
        for (number, text) in &code.lines {
            let mark = if *number == code.line { ">" } else { " " };
            let _ = writeln!(out, "{mark}{number:>4} | {text}");
        }
        let _ = writeln!(out, "```\n");
    }

    fn system_section(&self, out: &mut String) {
        if let Some(then) = &self.system.at_failure {
            let workers = then["workers"].as_array().map(Vec::as_slice).unwrap_or_default();
            let busy = workers.iter().filter(|w| w["state"] == "busy").count();
            let _ = writeln!(
                out,
                "## System state at the failure ({}, node {})\n",
                then["at"].as_str().unwrap_or("?"),
                then["node"].as_str().unwrap_or("?")
            );
            let _ = writeln!(out, "- workers: {} ({busy} busy)", workers.len());
            let _ = writeln!(
                out,
                "- in flight on the node: {} job(s), {} synchronous run(s)",
                then["jobs_in_flight"], then["runs_in_flight"]
            );
            if let Some(rss) = then["rss_kib"].as_u64() {
                let _ = writeln!(out, "- node memory (resident): {:.1} MiB", rss as f64 / 1024.0);
            }
            if let Some(at) = then["queue_counted_at"].as_str() {
                let _ = writeln!(out, "- queue (counted at {at}): `{}`", then["queue"]);
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out, "## System state now (at {})\n", self.system.at);
        let _ = writeln!(out, "- queue: `{}`", self.system.queue);
        let busy = self.system.workers.iter().filter(|w| w["state"] == "busy").count();
        let failing = self.system.workers.iter().filter(|w| w["last_error"].is_string()).count();
        let _ = writeln!(
            out,
            "- workers of running nodes: {} ({busy} busy, {failing} with a start error)\n",
            self.system.workers.len()
        );
    }

    fn events_section(&self, out: &mut String) {
        let _ = writeln!(out, "## Related events\n");
        if self.trimmed > 0 {
            let _ =
                writeln!(out, "({} earlier entries left out: llm_export.max_context_tokens)\n", self.trimmed);
        }
        let _ = writeln!(out, "### Logs\n");
        if self.logs.is_empty() {
            let _ = writeln!(out, "None.\n");
        } else {
            let _ = writeln!(out, "```text");
            for line in &self.logs {
                let _ = writeln!(
                    out,
                    "{:<5} {}",
                    line["level"].as_str().unwrap_or("log"),
                    line["message"].as_str().unwrap_or("")
                );
            }
            let _ = writeln!(out, "```\n");
        }
        let _ = writeln!(out, "### HTTP exchanges\n");
        if self.http.is_empty() {
            let _ = writeln!(out, "None.");
        }
        for e in &self.http {
            let _ = writeln!(
                out,
                "- {} {} -> {} ({} ms)",
                e["method"].as_str().unwrap_or("?"),
                e["url"].as_str().unwrap_or("?"),
                e["status"],
                e["time_ms"]
            );
        }
    }
}

fn cell(value: Option<&str>) -> &str {
    value.unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_excerpt_is_the_code_around_the_first_main_js_frame() {
        let code = (1..=20).map(|n| format!("line {n}")).collect::<Vec<_>>().join("\n");
        let error = json!({"stack": "    at helper (main.js:12:7)\n    at main (main.js:3:1)\n"});
        let excerpt = excerpt(&code, Some(&error)).unwrap();
        assert_eq!((excerpt.line, excerpt.column), (12, Some(7)));
        assert_eq!(excerpt.lines.first().unwrap().0, 7);
        assert_eq!(excerpt.lines.last().unwrap(), &(17, "line 17".to_owned()));
        assert!(super::excerpt(&code, Some(&json!({"stack": "at main (main.js:99:1)"}))).is_none());
        assert!(super::excerpt(&code, Some(&json!({"message": "no stack"}))).is_none());
    }

    #[test]
    fn secrets_written_into_code_are_masked() {
        let masker = Masker::new(&[]);
        let line = r#"const api_key = "k-123456"; fetch(url, {headers: {Authorization: 'Bearer abcdef123'}, name: "ada"});"#;
        let masked = mask_code(line, &masker);
        assert!(!masked.contains("k-123456") && !masked.contains("abcdef123"), "{masked}");
        assert!(masked.contains(r#"name: "ada""#), "{masked}");
        assert_eq!(
            mask_code("fetch('https://x.example/v1?token=t0ps3cret')", &masker),
            "fetch('https://x.example/v1?token=***')"
        );
    }

    #[test]
    fn secret_keys_of_the_input_are_masked() {
        let masker = Masker::new(&[]);
        let input = json!({"user": "ada", "api_key": "k-123", "nested": [{"password": "p", "n": 1}]});
        assert_eq!(
            mask_json(&input, &masker),
            json!({"user": "ada", "api_key": "***", "nested": [{"password": "***", "n": 1}]})
        );
    }
}
