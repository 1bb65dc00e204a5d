//! Synchronous runs over REST: `POST /api/v1/tasks/addition/run` against a real release
//! `ratchet serve` (SQLite, 2 workers, every run recorded), from one client (the latency of a
//! run) and from 16 concurrent keep-alive clients (throughput; with 2 workers, latency there
//! is mostly queueing: 16 in flight at N runs/s wait 16/N s on average); p50, p99, runs/s. Run through `cargo xtask bench`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;

fn main() {
    let requests: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(10_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let ratchet =
        std::env::var("RATCHET_BIN").map_or_else(|_| root.join("target/release/ratchet"), PathBuf::from);
    let dir = std::env::temp_dir().join(format!("ratchet-bench-rest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One client machine sends everything: no per-client rate limit.
    std::fs::write(dir.join("ratchet.yaml"), "server:\n  rate_limit_per_second: 0\n").unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(&ratchet)
        .arg("--config")
        .arg(dir.join("ratchet.yaml"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--tasks")
        .arg(root.join("examples/tasks"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", ratchet.display()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CLIENTS).build().unwrap();
        let url = format!("http://127.0.0.1:{port}/api/v1/tasks/addition/run");
        wait_for(&client, port).await;
        drive(&client, &url, 500, CLIENTS).await; // warm-up: workers, connections, SQLite pages
        for clients in [1, CLIENTS] {
            let total = if clients == 1 { requests / 5 } else { requests };
            let started = Instant::now();
            let (mut latencies, failures) = drive(&client, &url, total, clients).await;
            let elapsed = started.elapsed();
            latencies.sort_unstable();
            let at = |q: f64| {
                latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0
            };
            println!(
                "REST sync run ({clients} client(s), keep-alive, SQLite, every run recorded): {total} runs in {:.2} s = \
                 {:.0} runs/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {failures} non-200",
                elapsed.as_secs_f64(),
                total as f64 / elapsed.as_secs_f64(),
                at(0.50),
                at(0.99),
                at(1.0),
            );
        }
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

async fn wait_for(client: &reqwest::Client, port: u16) {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/ready")).send().await
            && response.status().is_success()
        {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "ratchet serve did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `total` runs from `concurrency` concurrent clients; each run's latency, and the failures.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    total: usize,
    concurrency: usize,
) -> (Vec<Duration>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_owned(), Arc::clone(&next));
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let started = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(r#"{"input": {"num1": 1, "num2": 2}}"#)
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().as_u16() == 200 => {
                        let _ = response.bytes().await;
                    }
                    _ => failures += 1,
                }
                latencies.push(started.elapsed());
            }
            (latencies, failures)
        }));
    }
    let mut all = Vec::with_capacity(total);
    let mut failures = 0;
    for client in clients {
        let (latencies, failed) = client.await.unwrap();
        all.extend(latencies);
        failures += failed;
    }
    (all, failures)
}
