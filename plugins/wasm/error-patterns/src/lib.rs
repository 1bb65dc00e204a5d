//! Classifies a failed run: network, database, JavaScript, validation, resource exhaustion and
//! authentication failures, each with suggestions that name Ratchet's own knobs.
//!
//! A pattern matches when every condition it sets holds: the error `kinds`, the error `names`,
//! and at least one of `any_text` found (case-insensitive) in the message or the logs.
//! Operators add their own in the plugin's config, in the same shape:
//! `{"patterns": [{"id": "...", "category": "...", "any_text": ["..."], "suggestions": ["..."]}]}`.

use plugin_api::guest::{Classification, ErrorPattern, Failure, Manifest};
use serde_json::Value;

struct Patterns;

struct Pattern {
    id: String,
    category: String,
    kinds: Vec<String>,
    names: Vec<String>,
    any_text: Vec<String>,
    suggestions: Vec<String>,
    confidence: f32,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn pattern(
    id: &str,
    category: &str,
    (kinds, names, any_text): (&[&str], &[&str], &[&str]),
    suggestions: &[&str],
    confidence: f32,
) -> Pattern {
    Pattern {
        id: id.into(),
        category: category.into(),
        kinds: strings(kinds),
        names: strings(names),
        any_text: strings(any_text),
        suggestions: strings(suggestions),
        confidence,
    }
}

fn built_in() -> Vec<Pattern> {
    vec![
        pattern(
            "egress-denied",
            "network",
            (&[], &["NetworkError"], &["egress", "allow-list", "allowed_hosts", "denied"]),
            &[
                "The host is outside the egress policy: add it to egress.allow_hosts in the config, or pass --allow-host for one command",
                "If the task declares allowed_hosts in its metadata, the host must be listed there too",
            ],
            0.95,
        ),
        pattern(
            "network-error",
            "network",
            (&[], &["NetworkError"], &[]),
            &[
                "Check that the host is up and reachable from the Ratchet node",
                "Check the URL, and the DNS name it uses",
                "Retries with backoff absorb short outages: enqueue the run as a job with --max-attempts",
            ],
            0.8,
        ),
        pattern(
            "http-timeout",
            "network",
            (&[], &["TimeoutError"], &[]),
            &[
                "The remote service did not answer within egress.request_timeout_secs; raise it, or check the service",
            ],
            0.85,
        ),
        pattern(
            "database-timeout",
            "database",
            (
                &[],
                &[],
                &[
                    "database timeout",
                    "connection timeout",
                    "query timeout",
                    "database is locked",
                    "deadlock",
                ],
            ),
            &[
                "Check the database's connectivity and load",
                "Consider longer timeouts, or smaller queries",
                "Review slow queries and their indexes",
            ],
            0.8,
        ),
        pattern(
            "task-timeout",
            "resources",
            (&["timeout"], &[], &[]),
            &[
                "The run passed its timeout: raise `timeout` in the task's metadata (at most limits.max_timeout_secs)",
                "Or do less per run: split the work into several jobs",
            ],
            0.95,
        ),
        pattern(
            "memory-limit",
            "resources",
            (&["memory_limit"], &[], &[]),
            &[
                "The run used more heap than allowed: raise `memory_limit` in the task's metadata (at most limits.max_memory_limit)",
                "Or hold less at once: stream or page through large data",
            ],
            0.95,
        ),
        pattern(
            "recursion",
            "javascript",
            (&[], &["RecursionLimitError", "RangeError"], &["recursion", "call stack"]),
            &["A function recursed too deeply: rewrite the recursion as a loop, or bound its depth"],
            0.9,
        ),
        pattern(
            "javascript-error",
            "javascript",
            (&["task_error"], &["TypeError", "ReferenceError", "SyntaxError"], &[]),
            &[
                "A JavaScript error in the task's code: the stack trace points at the line",
                "ReferenceError: a misspelt or undeclared name; TypeError: a value of the wrong type, often undefined",
                "Reproduce it offline: ratchet run-once --from-fs TASK --input-json '...'",
            ],
            0.85,
        ),
        pattern(
            "validation",
            "validation",
            (&["invalid_input", "invalid_output"], &[], &[]),
            &[
                "The data does not match the task's JSON Schema: the error names the field and the rule",
                "For input, fix the caller; for output, fix the task or its output.schema.json",
            ],
            0.95,
        ),
        pattern(
            "authentication",
            "authentication",
            (
                &[],
                &[],
                &["401", "403", "unauthorized", "forbidden", "authentication", "invalid token", "api key"],
            ),
            &[
                "A service refused the credentials: check the token or key the task sends, and whether it expired",
                "Keep secrets out of task code and inputs that are recorded; HAR recordings mask Authorization headers",
            ],
            0.7,
        ),
        pattern(
            "worker-crashed",
            "resources",
            (&["worker_crashed", "protocol_error"], &[], &[]),
            &[
                "The worker process died during the run; the pool replaced it. If it repeats, run the task with ratchet run-once and check the stderr tail in the error",
            ],
            0.9,
        ),
    ]
}

/// The operator's patterns, then the built-in ones: built once per instance.
fn patterns() -> &'static [Pattern] {
    static PATTERNS: std::sync::OnceLock<Vec<Pattern>> = std::sync::OnceLock::new();
    PATTERNS.get_or_init(|| configured().into_iter().chain(built_in()).collect())
}

fn configured() -> Vec<Pattern> {
    let config: Value = serde_json::from_str(&plugin_api::guest::config()).unwrap_or(Value::Null);
    let list = |entry: &Value, key: &str| -> Vec<String> {
        entry
            .get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    config
        .get("patterns")
        .and_then(Value::as_array)
        .map(|patterns| {
            patterns
                .iter()
                .filter_map(|entry| {
                    Some(Pattern {
                        id: entry.get("id")?.as_str()?.to_owned(),
                        category: entry
                            .get("category")
                            .and_then(Value::as_str)
                            .unwrap_or("custom")
                            .to_owned(),
                        kinds: list(entry, "kinds"),
                        names: list(entry, "names"),
                        any_text: list(entry, "any_text"),
                        suggestions: list(entry, "suggestions"),
                        confidence: entry.get("confidence").and_then(Value::as_f64).unwrap_or(0.9) as f32,
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn matches(pattern: &Pattern, failure: &Failure, text: &str) -> bool {
    let kind_ok = pattern.kinds.is_empty() || pattern.kinds.contains(&failure.kind);
    let name_ok =
        pattern.names.is_empty() || failure.name.as_ref().is_some_and(|n| pattern.names.contains(n));
    let text_ok =
        pattern.any_text.is_empty() || pattern.any_text.iter().any(|t| text.contains(&t.to_lowercase()));
    let conditions = !(pattern.kinds.is_empty() && pattern.names.is_empty() && pattern.any_text.is_empty());
    conditions && kind_ok && name_ok && text_ok
}

impl ErrorPattern for Patterns {
    fn manifest() -> Manifest {
        Manifest::new(
            "error-patterns",
            env!("CARGO_PKG_VERSION"),
            "classifies failed runs and suggests fixes",
        )
    }

    fn classify(failure: Failure) -> Vec<Classification> {
        let mut text = failure.message.to_lowercase();
        for line in &failure.logs {
            text.push('\n');
            text.push_str(&line.to_lowercase());
        }
        let mut found: Vec<Classification> = patterns()
            .iter()
            .filter(|p| matches(p, &failure, &text))
            .map(|p| Classification {
                pattern: p.id.clone(),
                category: p.category.clone(),
                confidence: p.confidence,
                suggestions: p.suggestions.clone(),
            })
            .collect();
        found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        // One answer per pattern; `egress-denied` also matches `network-error`: keep both.
        found.dedup_by(|a, b| a.pattern == b.pattern);
        found
    }
}

plugin_api::export_error_pattern!(Patterns);
