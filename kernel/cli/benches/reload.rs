//! Hot reload against a real release `ratchet serve`, run through `cargo xtask bench`:
//!
//! 1. From a saved file to the next run using it: `main.js` of one task is rewritten in place
//!    (default debounce, 500 ms), and a client runs the task every 5 ms until the new output
//!    shows; p50, p99 and max over the saves.
//! 2. Start-up with many task folders (10,000 by default): the time from spawning the server
//!    to `/ready`, and its resident memory then, with the folders watched and without (the
//!    difference is the watcher's).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    // `-- [SAVES [FOLDERS]]`
    let numbers: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let saves = numbers.first().copied().unwrap_or(40);
    let folders = numbers.get(1).copied().unwrap_or(10_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ratchet =
        std::env::var("RATCHET_BIN").map_or_else(|_| root.join("target/release/ratchet"), PathBuf::from);
    let dir = std::env::temp_dir().join(format!("ratchet-bench-reload-{}", std::process::id()));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(save_to_run(&ratchet, &dir.join("one"), saves));
    for watch in [false, true] {
        runtime.block_on(start_up(&ratchet, &dir.join(format!("many-{watch}")), folders, watch));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

async fn save_to_run(ratchet: &Path, dir: &Path, saves: usize) {
    let tasks = dir.join("tasks");
    write_task(&tasks.join("edited"), "edited", 0);
    let (mut server, port) = serve(ratchet, dir, "server: {rate_limit_per_second: 0}\n");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    common::wait_until_ready(&client, port, Duration::from_secs(30)).await;
    let url = format!("http://127.0.0.1:{port}/api/v1/tasks/edited/run");
    let mut latencies = Vec::with_capacity(saves);
    for save in 1..=saves {
        std::fs::write(tasks.join("edited/main.js"), code(save)).unwrap();
        let saved = Instant::now();
        loop {
            let answer: serde_json::Value = client
                .post(&url)
                .json(&serde_json::json!({"input": {}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or_default();
            if answer["output"]["v"] == save {
                latencies.push(saved.elapsed());
                break;
            }
            assert!(saved.elapsed() < Duration::from_secs(30), "save {save} never served: {answer}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // Apart by more than the debounce, as a person saves.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(&mut server);
    latencies.sort_unstable();
    let at = |q: f64| common::quantile_ms(&latencies, q);
    println!(
        "hot reload, saved file to the next run using it ({saves} saves, debounce 500 ms): \
         p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}

async fn start_up(ratchet: &Path, dir: &Path, folders: usize, watch: bool) {
    let tasks = dir.join("tasks");
    for n in 0..folders {
        write_task(&tasks.join(format!("task-{n:05}")), &format!("task-{n:05}"), n);
    }
    let config = format!("registry: {{watch: {watch}}}\n");
    let started = Instant::now();
    let (mut server, port) = serve(ratchet, dir, &config);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    common::wait_until_ready(&client, port, Duration::from_secs(600)).await;
    let ready = started.elapsed();
    let rss = status_kib(server.id(), "VmRSS:");
    let peak = status_kib(server.id(), "VmHWM:");
    stop(&mut server);
    println!(
        "start-up with {folders} task folders ({}): ready in {:.2} s; kernel RSS {:.1} MiB (peak {:.1} MiB)",
        if watch { "watched" } else { "not watched" },
        ready.as_secs_f64(),
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
    );
}

fn write_task(folder: &Path, name: &str, version: usize) {
    std::fs::create_dir_all(folder).unwrap();
    let metadata = serde_json::json!({"name": name, "version": "1.0.0"}).to_string();
    std::fs::write(folder.join("metadata.json"), metadata).unwrap();
    let schema = r#"{"type": "object", "properties": {"n": {"type": "integer"}}}"#;
    std::fs::write(folder.join("input.schema.json"), schema).unwrap();
    std::fs::write(folder.join("output.schema.json"), r#"{"type": "object"}"#).unwrap();
    std::fs::write(folder.join("main.js"), code(version)).unwrap();
}

fn code(version: usize) -> String {
    format!("(input) => ({{v: {version}}})")
}

fn serve(ratchet: &Path, dir: &Path, config: &str) -> (Child, u16) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ratchet.yaml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let server = Command::new(ratchet)
        .arg("--config")
        .arg(dir.join("ratchet.yaml"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.join("data"))
        .arg("--tasks")
        .arg(dir.join("tasks"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", ratchet.display()));
    (server, port)
}

fn stop(server: &mut Child) {
    let _ = server.kill();
    let _ = server.wait();
}

/// A `/proc/PID/status` figure in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
