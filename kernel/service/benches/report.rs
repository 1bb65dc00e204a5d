//! Making a failure report: `report::report` of a failed run with 50 log lines and 5 HTTP
//! exchanges, from SQLite (reads of the record, the task's code and the cluster's state), and
//! its Markdown alone; p50 and p99. Run through `cargo xtask bench`.

use std::time::{Duration, Instant};

use ratchet_core::RunStatus;
use ratchet_core::config::Config;
use ratchet_service::report;
use ratchet_storage::{ExecutionRecord, Store};
use serde_json::json;

fn main() {
    let runs = std::env::args().skip(1).find_map(|a| a.parse::<usize>().ok()).unwrap_or(2_000);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let store = Store::open_data_dir(dir.path()).await.expect("SQLite opens");
        let config = Config::default();
        let logs: Vec<_> = (0..50).map(|i| json!({"level": "info", "message": format!("step {i} of the import")})).collect();
        let entries: Vec<_> = (0..5)
            .map(|i| json!({"time": 12.5, "request": {"method": "GET", "url": format!("https://api.example.com/items/{i}")},
                            "response": {"status": 200}}))
            .collect();
        let record = ExecutionRecord {
            id: "bench-execution".into(),
            job_id: None,
            attempt: 1,
            task: "importer".into(),
            status: RunStatus::Failure,
            input: json!({"account": "acme", "api_key": "k"}),
            output: None,
            error: Some(json!({"kind": "task_error", "name": "TypeError", "message": "cannot read property 'id' of undefined",
                               "stack": "    at helper (main.js:12:7)\n    at main (main.js:30:3)\n",
                               "classification": [{"plugin": "error-patterns", "pattern": "undefined-value", "category": "javascript",
                                                   "confidence": 0.85, "suggestions": ["check optional fields"]}]})),
            logs: json!(logs),
            http: json!({"log": {"version": "1.2", "entries": entries}}),
            started_at: 1_000,
            finished_at: 1_250,
            duration_us: 250_000,
            worker: Some("w0.1".into()),
            node: Some("node".into()),
            caused_by: None,
            trace_id: None,
        };
        store.record_execution(&record).await.expect("the record is stored");
        for _ in 0..100 {
            report::report(&store, &config, "bench-execution").await.expect("a report"); // warm-up
        }
        let mut whole = Vec::with_capacity(runs);
        let mut markdown = Vec::with_capacity(runs);
        let mut length = 0;
        for _ in 0..runs {
            let started = Instant::now();
            let made = report::report(&store, &config, "bench-execution").await.expect("a report");
            whole.push(started.elapsed());
            let started = Instant::now();
            length = made.markdown().len();
            markdown.push(started.elapsed());
        }
        println!(
            "failure report (50 log lines, 5 exchanges, SQLite): made {} ms p50, {} ms p99; its Markdown ({length} \
             bytes) {} ms p50, {} ms p99",
            quantile(&mut whole, 0.5),
            quantile(&mut whole, 0.99),
            quantile(&mut markdown, 0.5),
            quantile(&mut markdown, 0.99),
        );
    });
}

fn quantile(latencies: &mut [Duration], q: f64) -> String {
    latencies.sort_unstable();
    let at = latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    format!("{:.3}", at.as_secs_f64() * 1000.0)
}
