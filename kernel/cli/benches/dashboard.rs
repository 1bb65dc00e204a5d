//! The dashboard's pages with a large history: a release `ratchet serve` (SQLite, 2 workers)
//! whose database holds JOBS finished jobs (each with its execution) and 1,000 queued ones.
//! Each page is timed as the dashboard loads it: the page's REST calls sent together, as the
//! browser sends them, from the first request to the last answer (p50, p99 over LOADS loads).
//! Run through `cargo xtask bench`; `-- [JOBS [LOADS]]`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Jobs per `POST /api/v1/jobs/batch`.
const BATCH: usize = 1_000;
/// Jobs left queued (behind a paused queue), for the queued filter and the overview.
const QUEUED: usize = 1_000;
/// How long filling the history may take before the bench gives up.
const FILL_DEADLINE: Duration = Duration::from_secs(900);

fn main() {
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let jobs = numbers.first().copied().unwrap_or(100_000);
    let loads = numbers.get(1).copied().unwrap_or(50);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ratchet =
        std::env::var("RATCHET_BIN").map_or_else(|_| root.join("target/release/ratchet"), PathBuf::from);
    let dir = std::env::temp_dir().join(format!("ratchet-bench-dashboard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("ratchet.yaml");
    std::fs::write(&config, "server:\n  rate_limit_per_second: 0\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut node = Command::new(&ratchet)
        .arg("--config")
        .arg(&config)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--tasks")
        .arg(root.join("examples/tasks"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", ratchet.display()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let api = Api { client: reqwest::Client::builder().no_proxy().build().unwrap(), port };
        common::wait_until_ready(&api.client, port, Duration::from_secs(60)).await;
        println!("dashboard: {jobs} finished jobs (and their executions) and {QUEUED} queued, SQLite, {loads} loads per page");
        let filled = Instant::now();
        fill(&api, jobs).await;
        println!("  history written in {:.0} s", filled.elapsed().as_secs_f64());
        measure(&api, jobs, loads).await;
    });
    let _ = node.kill();
    let _ = node.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `jobs` jobs run to completion, then `QUEUED` more left queued behind a pause.
async fn fill(api: &Api, jobs: usize) {
    api.post("/api/v1/queue/pause", json!({})).await;
    enqueue(api, jobs).await;
    api.post("/api/v1/queue/resume", json!({})).await;
    let started = Instant::now();
    loop {
        let counts = api.get("/api/v1/queue").await;
        if counts["counts"]["completed"].as_u64().unwrap_or(0) >= jobs as u64 {
            break;
        }
        assert!(
            started.elapsed() < FILL_DEADLINE,
            "the jobs did not finish within {FILL_DEADLINE:?}: {counts}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    api.post("/api/v1/queue/pause", json!({})).await;
    enqueue(api, QUEUED).await;
}

async fn enqueue(api: &Api, jobs: usize) {
    let mut left = jobs;
    while left > 0 {
        let n = left.min(BATCH);
        let batch: Vec<Value> =
            (0..n).map(|i| json!({"task": "addition", "input": {"num1": i, "num2": 1}})).collect();
        api.post("/api/v1/jobs/batch", json!({ "jobs": batch })).await;
        left -= n;
    }
}

async fn measure(api: &Api, jobs: usize, loads: usize) {
    let job =
        api.get("/api/v1/jobs?limit=1&status=completed").await["items"][0]["id"].as_str().unwrap().to_owned();
    let execution =
        api.get("/api/v1/executions?limit=1").await["items"][0]["id"].as_str().unwrap().to_owned();
    let deep = jobs.saturating_sub(50);
    let pages: Vec<(&str, Vec<String>)> = vec![
        (
            "the page, its script and styles",
            vec!["/".into(), "/dashboard/dashboard.js".into(), "/dashboard/dashboard.css".into()],
        ),
        (
            "overview",
            vec![
                "/api/v1/me".into(),
                "/api/v1/queue".into(),
                "/api/v1/logs/trends?since=1h&bucket=5m".into(),
                "/api/v1/nodes".into(),
                "/api/v1/workers".into(),
                "/api/v1/executions?status=failure&limit=10".into(),
            ],
        ),
        ("jobs, first page", vec!["/api/v1/me".into(), "/api/v1/jobs?limit=50&offset=0".into()]),
        ("jobs, queued", vec!["/api/v1/me".into(), "/api/v1/jobs?limit=50&offset=0&status=queued".into()]),
        ("jobs, by task", vec!["/api/v1/me".into(), "/api/v1/jobs?limit=50&offset=0&task=addition".into()]),
        ("jobs, last page", vec!["/api/v1/me".into(), format!("/api/v1/jobs?limit=50&offset={deep}")]),
        (
            "jobs, completed in the last hour",
            vec!["/api/v1/me".into(), "/api/v1/jobs?limit=50&offset=0&status=completed&since=1h".into()],
        ),
        (
            "jobs, created before an hour ago",
            vec!["/api/v1/me".into(), "/api/v1/jobs?limit=50&offset=0&until=1h".into()],
        ),
        ("a job", vec!["/api/v1/me".into(), format!("/api/v1/jobs/{job}")]),
        ("executions, first page", vec!["/api/v1/me".into(), "/api/v1/executions?limit=50&offset=0".into()]),
        (
            "executions, failures",
            vec!["/api/v1/me".into(), "/api/v1/executions?limit=50&offset=0&status=failure".into()],
        ),
        ("an execution", vec!["/api/v1/me".into(), format!("/api/v1/executions/{execution}")]),
        ("tasks", vec!["/api/v1/me".into(), "/api/v1/tasks?limit=50&offset=0".into()]),
        (
            "a task, with its versions",
            vec![
                "/api/v1/me".into(),
                "/api/v1/tasks/addition".into(),
                "/api/v1/tasks/addition/versions".into(),
            ],
        ),
        (
            "schedules",
            vec![
                "/api/v1/me".into(),
                "/api/v1/schedules?limit=50&offset=0".into(),
                "/api/v1/tasks?limit=500".into(),
            ],
        ),
    ];
    for (name, paths) in pages {
        api.load(&paths).await; // warm-up
        let mut times = Vec::with_capacity(loads);
        for _ in 0..loads {
            times.push(api.load(&paths).await);
        }
        times.sort_unstable();
        println!(
            "  {name}: p50 {:.1} ms, p99 {:.1} ms ({} calls together)",
            common::quantile_ms(&times, 0.5),
            common::quantile_ms(&times, 0.99),
            paths.len()
        );
    }
}

struct Api {
    client: reqwest::Client,
    port: u16,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.client.post(self.url(path)).json(&body).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "GET {path}: {status} {answer}");
        answer
    }

    /// Sends every call of a page at once and waits for all the answers (bodies read).
    async fn load(&self, paths: &[String]) -> Duration {
        let started = Instant::now();
        let calls: Vec<_> = paths
            .iter()
            .map(|path| {
                let request = self.client.get(self.url(path));
                let path = path.clone();
                tokio::spawn(async move {
                    let response = request.send().await.unwrap();
                    assert!(response.status().is_success(), "GET {path}: {}", response.status());
                    response.bytes().await.unwrap().len()
                })
            })
            .collect();
        for call in calls {
            call.await.unwrap();
        }
        started.elapsed()
    }
}
