//! Warm-pool throughput and latency: one kernel, 2 workers, trivial runs; then the cost of one
//! `fetch` round trip (worker to kernel to a local server and back).
//! Run through `cargo xtask bench`, which builds the release worker and points at it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratchet_core::{Config, Kernel};
use serde_json::json;

const WORKERS: usize = 2;
const CLIENTS: usize = 4;

fn main() {
    let runs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(1000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(bench(runs));
}

async fn bench(runs: usize) {
    let config = Config::default();
    let task_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tasks/addition");
    let task =
        Arc::new(ratchet_core::task::load(task_path.as_ref(), &config.limits).expect("the sample loads"));
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
    report("sequential, 1 client", runs, started.elapsed(), &mut latencies);

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
    report(&format!("concurrent, {CLIENTS} clients"), latencies.len(), started.elapsed(), &mut latencies);
    kernel.shutdown().await;
    fetch_overhead(runs / 2).await;
}

/// Sequential runs of a task that makes one `fetch`, against the same runs without it and
/// against the bare HTTP request made directly with reqwest.
async fn fetch_overhead(runs: usize) {
    let server = local_server();
    let mut config = Config::default();
    config.egress.allow_hosts.push(server.to_string());
    let url = format!("http://{server}/");
    let dir = std::env::temp_dir().join(format!("ratchet-bench-fetch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, text) in [
        ("metadata.json", r#"{"version": "1.0.0"}"#),
        ("input.schema.json", "{}"),
        ("output.schema.json", "{}"),
        ("main.js", "(function (input) { return input.fetch ? fetch(input.url).status : 200; })"),
    ] {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let task = ratchet_core::task::load(&dir, &config.limits).expect("the bench task loads");
    let kernel = Kernel::start(config, 1).expect("the kernel starts");
    let mut with_fetch = Vec::with_capacity(runs);
    let mut without = Vec::with_capacity(runs);
    for round in 0..runs + 50 {
        for (fetch, samples) in [(true, &mut with_fetch), (false, &mut without)] {
            let started = Instant::now();
            let execution = kernel.run(&task, json!({"fetch": fetch, "url": url})).await;
            assert_eq!(execution.outcome, Ok(json!(200)), "{execution:?}");
            if round >= 50 {
                samples.push(started.elapsed());
            }
        }
    }
    kernel.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    let client = reqwest::Client::new();
    let mut direct = Vec::with_capacity(runs);
    for round in 0..runs + 50 {
        let started = Instant::now();
        let response = client.get(&url).send().await.unwrap();
        let _ = response.bytes().await.unwrap();
        if round >= 50 {
            direct.push(started.elapsed());
        }
    }
    let (with_fetch, without, direct) = (median(&mut with_fetch), median(&mut without), median(&mut direct));
    println!(
        "fetch round trip ({runs} runs, medians): run with one fetch {with_fetch:.0} µs, without {without:.0} µs \
         -> fetch adds {:.0} µs, of which the HTTP request itself (direct reqwest, keep-alive) is {direct:.0} µs \
         and kernel + IPC + JS take {:.0} µs",
        with_fetch - without,
        with_fetch - without - direct
    );
}

fn median(samples: &mut [Duration]) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1e6
}

/// An HTTP/1.1 keep-alive server on 127.0.0.1 that answers every request with `{"ok":true}`.
fn local_server() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_connection(stream));
        }
    });
    addr
}

fn serve_connection(stream: std::net::TcpStream) {
    use std::io::{BufRead, BufReader, Write};
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if line == "\r\n" {
            let body = r#"{"ok":true}"#;
            // One write: a head and body written apart meet Nagle's algorithm and the
            // client's delayed ACK, a 40 ms stall per request.
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }
}

fn report(label: &str, runs: usize, elapsed: Duration, latencies: &mut [Duration]) {
    latencies.sort();
    let at = |q: f64| {
        latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)].as_secs_f64() * 1000.0
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
