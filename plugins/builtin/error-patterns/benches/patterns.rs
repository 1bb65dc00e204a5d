//! Classifying a failed run: the built-in set plus 100 operator patterns, against failures of
//! every kind with 20 log lines each; p50, p95 and p99 per classification. Run through
//! `cargo xtask bench`.

use std::time::{Duration, Instant};

use plugin_api::Failure;
use ratchet_error_patterns::Patterns;
use serde_json::json;

fn main() {
    let runs = std::env::args().skip(1).find_map(|a| a.parse::<usize>().ok()).unwrap_or(100_000);
    let custom: Vec<_> = (0..100)
        .map(|i| {
            json!({"id": format!("custom-{i}"), "category": "custom", "any_text": [format!("vendor error e{i:03}")],
                   "suggestions": ["call the vendor"], "confidence": 0.9})
        })
        .collect();
    let patterns =
        Patterns::from_config(&json!({"patterns": custom}).to_string()).expect("the patterns load");
    let logs: Vec<String> =
        (0..20).map(|i| format!("step {i}: fetched 42 records from the ledger")).collect();
    let failures = [
        failure("timeout", Some("TimeoutError"), "the run exceeded its timeout of 30s", &logs),
        failure("task_error", Some("TypeError"), "cannot read property 'id' of undefined", &logs),
        failure("task_error", Some("NetworkError"), "fetch to 10.0.0.1 denied by the egress policy", &logs),
        failure("task_error", Some("Error"), "HTTP 503 from the billing API: vendor error e099", &logs),
        failure("invalid_output", Some("ValidationError"), "output does not match the output schema", &logs),
    ];
    let mut matched = 0;
    for failure in failures.iter().cycle().take(1_000) {
        matched += patterns.classify(failure).len(); // warm-up
    }
    let mut latencies = Vec::with_capacity(runs);
    for failure in failures.iter().cycle().take(runs) {
        let started = Instant::now();
        matched += patterns.classify(failure).len();
        latencies.push(started.elapsed());
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    println!(
        "error patterns ({} patterns: built-in + 100 custom; 5 failure kinds, 20 log lines each): {runs} \
         classifications, p50 {:.2} µs, p95 {:.2} µs, p99 {:.2} µs ({matched} matches)",
        patterns.len(),
        micros(at(0.50)),
        micros(at(0.95)),
        micros(at(0.99)),
    );
}

fn failure(kind: &str, name: Option<&str>, message: &str, logs: &[String]) -> Failure {
    Failure {
        kind: kind.into(),
        name: name.map(Into::into),
        message: message.into(),
        task: "bench".into(),
        logs: logs.to_vec(),
    }
}
