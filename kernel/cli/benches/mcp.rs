//! MCP over streamable HTTP against a real release `ratchet serve` (SQLite, 2 workers, every
//! run recorded), through `cargo xtask bench`: one client in a session (protocol 2025-11-25),
//! `tools/call` of the `addition` sample (p50, p99), and `tools/list` with 1,000 tasks.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Task folders besides the samples, for `tools/list`.
const TASKS: usize = 1_000;

fn main() {
    // `-- [CALLS]`
    let calls = std::env::args().skip(1).find_map(|a| a.parse::<usize>().ok()).unwrap_or(2_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ratchet =
        std::env::var("RATCHET_BIN").map_or_else(|_| root.join("target/release/ratchet"), PathBuf::from);
    let dir = std::env::temp_dir().join(format!("ratchet-bench-mcp-{}", std::process::id()));
    let tasks = dir.join("tasks");
    write_tasks(&root.join("examples/tasks/addition"), &tasks);
    std::fs::write(
        dir.join("ratchet.yaml"),
        "server:\n  rate_limit_per_second: 0\nregistry:\n  watch: false\n",
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(&ratchet)
        .arg("--config")
        .arg(dir.join("ratchet.yaml"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--tasks")
        .arg(&tasks)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", ratchet.display()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        common::wait_until_ready(&client, port, Duration::from_secs(120)).await;
        let session = Session::open(client, port).await;
        let call = json!({"name": "addition", "arguments": {"num1": 1, "num2": 2}});
        for _ in 0..200 {
            session.request("tools/call", &call).await; // warm-up: workers, SQLite pages
        }
        let mut latencies = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            let answer = session.request("tools/call", &call).await;
            latencies.push(started.elapsed());
            assert_eq!(answer["result"]["structuredContent"], json!({"sum": 3}), "{answer}");
        }
        report(&format!("tools/call addition, 1 client, {calls} calls"), latencies);
        let mut latencies = Vec::new();
        let mut listed = 0;
        for _ in 0..50 {
            let started = Instant::now();
            let answer = session.request("tools/list", &json!({})).await;
            latencies.push(started.elapsed());
            listed = answer["result"]["tools"].as_array().map_or(0, Vec::len);
        }
        report(&format!("tools/list of {listed} tools, 50 lists"), latencies);
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

/// `addition` and [`TASKS`] copies of it under other names.
fn write_tasks(addition: &Path, tasks: &Path) {
    for index in 0..=TASKS {
        let name = if index == 0 { "addition".to_owned() } else { format!("addition-{index:04}") };
        let folder = tasks.join(&name);
        std::fs::create_dir_all(&folder).unwrap();
        for file in ["main.js", "input.schema.json", "output.schema.json"] {
            std::fs::copy(addition.join(file), folder.join(file)).unwrap();
        }
        let metadata = json!({"name": name, "version": "1.0.0", "description": "Adds two numbers"});
        std::fs::write(folder.join("metadata.json"), metadata.to_string()).unwrap();
    }
}

/// A session of the 2025-11-25 protocol over streamable HTTP.
struct Session {
    client: reqwest::Client,
    url: String,
    id: String,
}

impl Session {
    async fn open(client: reqwest::Client, port: u16) -> Session {
        let url = format!("http://127.0.0.1:{port}/mcp");
        let initialize = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}});
        let response = post(&client, &url, None, &initialize).await;
        let id = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .expect("the server opened a session")
            .to_owned();
        let _ = response.bytes().await;
        let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let _ = post(&client, &url, Some(&id), &initialized).await.bytes().await;
        Session { client, url, id }
    }

    async fn request(&self, method: &str, params: &Value) -> Value {
        let message = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        let body = post(&self.client, &self.url, Some(&self.id), &message).await.text().await.unwrap();
        // An SSE stream whose data line carries the answer.
        body.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .find(|message| message.get("id").is_some())
            .unwrap_or_else(|| panic!("no answer in {body}"))
    }
}

async fn post(client: &reqwest::Client, url: &str, session: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(session) = session {
        request = request.header("mcp-session-id", session).header("mcp-protocol-version", "2025-11-25");
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    response
}

fn report(what: &str, mut latencies: Vec<Duration>) {
    latencies.sort_unstable();
    let at = |q: f64| common::quantile_ms(&latencies, q);
    println!(
        "MCP over streamable HTTP ({what}): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.50),
        at(0.99),
        at(1.0)
    );
}
