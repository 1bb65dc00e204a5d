//! `cargo xtask bench`: the performance figures of the foundation, in release mode.
//!
//! 1. Cold `ratchet run-once` of the `addition` sample: wall time (median and p90 of 20
//!    process runs) and the peak resident memory of the kernel and of its worker.
//! 2. Warm pool: the `warm_pool` bench target drives one kernel with 2 workers through 1,000
//!    trivial runs, sequentially (latency) and from 4 concurrent clients (throughput), and
//!    measures one `fetch` round trip.
//! 3. Queue: the `queue` bench target drains 2,000 trivial jobs on SQLite and on PostgreSQL
//!    and measures enqueue-to-start latency on an idle node.
//! 4. REST: the `rest` bench target drives a release `ratchet serve` with synchronous runs of
//!    `addition`: from one client, from 16 concurrent keep-alive clients in a closed loop
//!    (throughput at saturation), and over 16 connections at a fixed 1,500 runs/s (latency
//!    at that load); p50, p99 and runs per second.
//! 5. Hot reload: the `reload` bench target: from a saved `main.js` to the next run using it
//!    (p50, p99), and start-up time and memory with 10,000 task folders, watched and not.
//! 6. MCP: the `mcp` bench target: `tools/call` of `addition` over streamable HTTP from one
//!    client (p50, p99), and `tools/list` with 1,000 tasks, against a release `ratchet serve`.
//! 7. Failure analysis: the `patterns` bench target classifies failures with the built-in set
//!    plus 100 custom patterns (p50, p95, p99), and the `report` bench target makes a failure
//!    report from SQLite and renders its Markdown; the `events` bench target creates run events
//!    and hands them to two sinks (p50, p95, p99).
//! 8. Plugins: the `plugins` bench target: compile vs cached load of a component, instantiation
//!    from the template, and the cost of one sink call.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{cargo, root};

const COLD_RUNS: usize = 20;

pub fn run(quick: bool) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-p", "ratchet-cli", "-p", "boa-worker"])?;
    cold_run_once(if quick { 5 } else { COLD_RUNS })?;
    let worker = root().join("target/release/ratchet-worker");
    let runs = if quick { "200" } else { "1000" };
    println!("$ cargo bench -p ratchet-core --bench warm_pool -- {runs}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-core", "--bench", "warm_pool", "--", runs])
        .env("RATCHET_WORKER_BIN", worker)
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("the warm pool bench failed ({status})");
    }
    let jobs = if quick { "500" } else { "2000" };
    println!("$ cargo bench -p ratchet-service --bench queue -- {jobs}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-service", "--bench", "queue", "--", jobs])
        .env("RATCHET_WORKER_BIN", root().join("target/release/ratchet-worker"))
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("the queue bench failed ({status})");
    }
    let requests = if quick { "2000" } else { "10000" };
    println!("$ cargo bench -p ratchet-cli --bench rest -- {requests}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-cli", "--bench", "rest", "--", requests])
        .env("RATCHET_BIN", root().join("target/release/ratchet"))
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("the REST bench failed ({status})");
    }
    let reload = if quick { ["10", "1000"] } else { ["40", "10000"] };
    println!("$ cargo bench -p ratchet-cli --bench reload -- {} {}", reload[0], reload[1]);
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-cli", "--bench", "reload", "--"])
        .args(reload)
        .env("RATCHET_BIN", root().join("target/release/ratchet"))
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("the hot reload bench failed ({status})");
    }
    crate::plugins::build()?;
    let calls = if quick { "300" } else { "2000" };
    println!("$ cargo bench -p ratchet-cli --bench mcp -- {calls}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-cli", "--bench", "mcp", "--", calls])
        .current_dir(root())
        .status()
        .context("running the MCP bench")?;
    if !status.success() {
        bail!("the MCP bench failed ({status})");
    }
    let classifications = if quick { "10000" } else { "100000" };
    println!("$ cargo bench -p ratchet-error-patterns --bench patterns -- {classifications}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-error-patterns", "--bench", "patterns", "--", classifications])
        .current_dir(root())
        .status()
        .context("running the error patterns bench")?;
    if !status.success() {
        bail!("the error patterns bench failed ({status})");
    }
    let reports = if quick { "200" } else { "2000" };
    println!("$ cargo bench -p ratchet-service --bench report -- {reports}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-service", "--bench", "report", "--", reports])
        .current_dir(root())
        .status()
        .context("running the report bench")?;
    if !status.success() {
        bail!("the report bench failed ({status})");
    }
    let events = if quick { "10000" } else { "100000" };
    println!("$ cargo bench -p ratchet-plugin-host --bench events -- {events}");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-plugin-host", "--bench", "events", "--", events])
        .current_dir(root())
        .status()
        .context("running the events bench")?;
    if !status.success() {
        bail!("the events bench failed ({status})");
    }
    println!("$ cargo bench -p ratchet-plugin-host --bench plugins");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["bench", "-p", "ratchet-plugin-host", "--bench", "plugins"])
        .current_dir(root())
        .status()?;
    if !status.success() {
        bail!("the plugin bench failed ({status})");
    }
    Ok(())
}

fn cold_run_once(runs: usize) -> anyhow::Result<()> {
    let ratchet = root().join("target/release/ratchet");
    let task = root().join("examples/tasks/addition");
    let mut walls = Vec::with_capacity(runs);
    let mut kernel_peak = 0u64;
    let mut worker_peak = 0u64;
    for _ in 0..runs {
        let started = Instant::now();
        let output = Command::new(&ratchet)
            .args(["run-once", "--from-fs"])
            .arg(&task)
            .args(["--input-json", r#"{"num1": 1, "num2": 2}"#, "--format", "json"])
            .output()
            .context("running ratchet")?;
        walls.push(started.elapsed().as_secs_f64() * 1000.0);
        if !output.status.success() {
            bail!("run-once failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        let envelope: Value = serde_json::from_slice(&output.stdout)?;
        kernel_peak = kernel_peak.max(envelope["kernel"]["peak_rss_kib"].as_u64().unwrap_or(0));
        worker_peak = worker_peak.max(envelope["worker"]["peak_rss_kib"].as_u64().unwrap_or(0));
    }
    walls.sort_by(f64::total_cmp);
    let median = walls[walls.len() / 2];
    let p90 = walls[(walls.len() * 9 / 10).min(walls.len() - 1)];
    println!(
        "cold run-once (addition, {runs} runs): median {median:.2} ms, p90 {p90:.2} ms, min {:.2} ms; \
         peak RSS kernel {:.1} MiB, worker {:.1} MiB",
        walls[0],
        kernel_peak as f64 / 1024.0,
        worker_peak as f64 / 1024.0
    );
    Ok(())
}
