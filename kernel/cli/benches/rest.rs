//! Synchronous runs over REST: `POST /api/v1/tasks/addition/run` against a real release
//! `ratchet serve` (SQLite, 2 workers, every run recorded); p50, p99, runs/s. Run through
//! `cargo xtask bench`. Three phases:
//!
//! 1. One client, each run sent when the last one answered: the latency of a run.
//! 2. 16 keep-alive clients, each sending its next run as soon as its last one answered
//!    (closed loop): the throughput at saturation. Latency there is queueing by construction:
//!    16 runs always in flight at N runs/s wait 16/N s on average (Little's law).
//! 3. 16 keep-alive connections sharing a fixed schedule of arrivals at `RATE` runs/s (open
//!    loop, as in wrk2): the latency a user sees at that load. A run's latency counts from its
//!    scheduled time whenever all connections were busy then (the wait is the server's fault;
//!    no coordinated omission), and from its send otherwise (the client's timer wakes up to a
//!    millisecond late, which is not the server's fault).

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 16;
/// The offered load of phase 3 unless the second argument says otherwise: the throughput
/// issue 6 asks for.
const RATE: u32 = 1_500;

fn main() {
    // `-- [REQUESTS [RATE]]`
    let numbers: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let requests = numbers.first().map_or(10_000, |&n| n as usize);
    let rate = numbers.get(1).copied().unwrap_or(RATE).max(1);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
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
        common::wait_until_ready(&client, port, Duration::from_secs(30)).await;
        drive(&client, &url, 500, CLIENTS, None).await; // warm-up: workers, connections, SQLite pages
        for clients in [1, CLIENTS] {
            let total = if clients == 1 { requests / 5 } else { requests };
            let started = Instant::now();
            let (latencies, failures) = drive(&client, &url, total, clients, None).await;
            report(
                &format!("{clients} client(s), closed loop"),
                total,
                started.elapsed(),
                latencies,
                failures,
            );
        }
        let started = Instant::now();
        let (latencies, failures) = drive(&client, &url, requests, CLIENTS, Some(rate)).await;
        report(
            &format!("{CLIENTS} connections, open loop at {rate} runs/s"),
            requests,
            started.elapsed(),
            latencies,
            failures,
        );
    });
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn report(phase: &str, total: usize, elapsed: Duration, mut latencies: Vec<Duration>, failures: usize) {
    latencies.sort_unstable();
    let at = |q: f64| common::quantile_ms(&latencies, q);
    println!(
        "REST sync run ({phase}, keep-alive, SQLite, every run recorded): {total} runs in {:.2} s = \
         {:.0} runs/s; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {failures} non-200",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
        at(1.0),
    );
}

/// `total` runs over `concurrency` concurrent connections; each run's latency, and the
/// failures. Without a `rate`, each connection sends its next run when its last one answered;
/// with one, run `i` is due `i / rate` seconds after the start, on whichever connection is free.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    total: usize,
    concurrency: usize,
    rate: Option<u32>,
) -> (Vec<Duration>, usize) {
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut clients = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next) = (client.clone(), url.to_owned(), Arc::clone(&next));
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            loop {
                let run = next.fetch_add(1, Ordering::Relaxed);
                if run >= total {
                    break;
                }
                let mut started = Instant::now();
                if let Some(rate) = rate {
                    let due = start + Duration::from_secs(1) * run as u32 / rate;
                    if due > tokio::time::Instant::now() {
                        tokio::time::sleep_until(due).await;
                        started = Instant::now();
                    } else {
                        started = due.into_std();
                    }
                }
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
