//! Warm-pool throughput and latency: one kernel, 2 workers, trivial runs.
//! Run through `cargo xtask bench`, which builds the release worker and points at it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kernel::{Config, Kernel};
use serde_json::json;

const WORKERS: usize = 2;
const CLIENTS: usize = 4;

fn main() {
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(runs));
}

async fn bench(runs: usize) {
    let config = Config::default();
    let task_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/tasks/addition");
    let task =
        Arc::new(kernel::task::load(task_path.as_ref(), &config.limits).expect("the sample loads"));
    let kernel = Arc::new(Kernel::start(config, WORKERS).expect("the kernel starts"));
    for _ in 0..100 {
        let warm = kernel.run(&task, json!({"num1": 1, "num2": 2})).await;
        assert!(warm.outcome.is_ok(), "{warm:?}");
    }

    let mut latencies = Vec::with_capacity(runs);
    let started = Instant::now();
    for _ in 0..runs {
        let run_started = Instant::now();
        let execution = kernel.run(&task, json!({"num1": 1, "num2": 2})).await;
        assert!(execution.outcome.is_ok());
        latencies.push(run_started.elapsed());
    }
    report(
        "sequential, 1 client",
        runs,
        started.elapsed(),
        &mut latencies,
    );

    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let (kernel, task) = (Arc::clone(&kernel), Arc::clone(&task));
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(runs / CLIENTS);
            for _ in 0..runs / CLIENTS {
                let run_started = Instant::now();
                let execution = kernel.run(&task, json!({"num1": 1, "num2": 2})).await;
                assert!(execution.outcome.is_ok());
                latencies.push(run_started.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(runs);
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    report(
        &format!("concurrent, {CLIENTS} clients"),
        latencies.len(),
        started.elapsed(),
        &mut latencies,
    );
    kernel.shutdown().await;
}

fn report(label: &str, runs: usize, elapsed: Duration, latencies: &mut [Duration]) {
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64()
            * 1000.0
    };
    println!(
        "warm pool ({WORKERS} workers, {label}): {runs} runs in {:.2} s = {:.0} runs/s; p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        elapsed.as_secs_f64(),
        runs as f64 / elapsed.as_secs_f64(),
        at(0.50),
        at(0.99),
        at(1.0)
    );
}
