//! `cargo xtask bench`: the performance figures of the foundation, in release mode.
//!
//! 1. Cold `ratchet run-once` of the `addition` sample: wall time (median and p90 of 20
//!    process runs) and the peak resident memory of the kernel and of its worker; then the
//!    same through `ratchet-full`, the binary that links everything, for comparison.
//! 2. Warm pool: the `warm_pool` bench target drives one kernel with 2 workers through 1,000
//!    trivial runs, sequentially (latency) and from 4 concurrent clients (throughput), and
//!    measures one `fetch` round trip.
//! 3. Queue: the `queue` bench target drains 2,000 trivial jobs on SQLite and on PostgreSQL
//!    and measures enqueue-to-start latency on an idle node.
//! 4. REST: the `rest` bench target drives a release `ratchet serve` with synchronous runs of
//!    `addition`: from one client, from 16 concurrent keep-alive clients in a closed loop
//!    (throughput at saturation), and over 16 connections at a fixed 1,500 runs/s (latency
//!    at that load); p50, p99 and runs per second.
//! 5. Queue over REST: the `queue_rest` bench target drives release `ratchet serve` nodes
//!    (one, then three on one database; SQLite, then PostgreSQL) as a user would: the drain of
//!    2,000 jobs enqueued on a paused queue and resumed at once, add-to-start of single jobs
//!    and due-to-start of delayed ones on an idle node.
//! 6. Hot reload: the `reload` bench target: from a saved `main.js` to the next run using it
//!    (p50, p99), and start-up time and memory with 10,000 task folders, watched and not.
//! 7. MCP: the `mcp` bench target: `tools/call` of `addition` over streamable HTTP from one
//!    client (p50, p99), and `tools/list` with 1,000 tasks, against a release `ratchet serve`.
//! 8. Failure analysis: the `patterns` bench target classifies failures with the built-in set
//!    plus 100 custom patterns (p50, p95, p99), and the `report` bench target makes a failure
//!    report from SQLite and renders its Markdown; the `events` bench target creates run events
//!    and hands them to two sinks (p50, p95, p99).
//! 9. Plugins: the `plugins` bench target: compile vs cached load of a component, instantiation
//!    from the template, and the cost of one sink call.
//! 10. Dashboard: the `dashboard` bench target loads each page's REST calls from a release
//!     `ratchet serve` whose SQLite database holds 100,000 finished jobs (p50, p99 per page).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{cargo, root};

const COLD_RUNS: usize = 20;

pub fn run(quick: bool) -> anyhow::Result<()> {
    cargo(&["build", "--release", "-p", "ratchet-front", "-p", "ratchet-cli", "-p", "boa-worker"])?;
    cold_run_once("ratchet", if quick { 5 } else { COLD_RUNS })?;
    cold_run_once("ratchet-full", if quick { 5 } else { COLD_RUNS })?;
    let worker = root().join("target/release/ratchet-worker");
    let ratchet = root().join("target/release/ratchet");
    let worker_env = [("RATCHET_WORKER_BIN", worker.as_path())];
    let ratchet_env = [("RATCHET_BIN", ratchet.as_path())];
    let pick = |quick_value: &'static str, full: &'static str| if quick { quick_value } else { full };
    bench("ratchet-core", "warm_pool", &[pick("200", "1000")], &worker_env)?;
    bench("ratchet-service", "queue", &[pick("500", "2000")], &worker_env)?;
    bench("ratchet-cli", "rest", &[pick("2000", "10000")], &ratchet_env)?;
    bench("ratchet-cli", "queue_rest", &[pick("500", "2000"), pick("40", "200")], &ratchet_env)?;
    bench("ratchet-cli", "reload", &[pick("10", "40"), pick("1000", "10000")], &ratchet_env)?;
    crate::plugins::build()?;
    bench("ratchet-cli", "mcp", &[pick("300", "2000")], &[])?;
    bench("ratchet-error-patterns", "patterns", &[pick("10000", "100000")], &[])?;
    bench("ratchet-service", "report", &[pick("200", "2000")], &[])?;
    bench("ratchet-plugin-host", "events", &[pick("10000", "100000")], &[])?;
    bench("ratchet-plugin-host", "plugins", &[], &[])?;
    bench("ratchet-cli", "dashboard", &[pick("10000", "100000"), pick("20", "50")], &ratchet_env)?;
    Ok(())
}

/// `cargo bench -p PACKAGE --bench TARGET -- ARGS` with `env`, printed first; a failure names
/// the bench.
fn bench(package: &str, target: &str, args: &[&str], env: &[(&str, &std::path::Path)]) -> anyhow::Result<()> {
    let shown = if args.is_empty() { String::new() } else { format!(" -- {}", args.join(" ")) };
    println!("$ cargo bench -p {package} --bench {target}{shown}");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.args(["bench", "-p", package, "--bench", target]).current_dir(root());
    if !args.is_empty() {
        command.arg("--").args(args);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let status = command.status().with_context(|| format!("running the {target} bench"))?;
    if !status.success() {
        bail!("the {target} bench failed ({status})");
    }
    Ok(())
}

fn cold_run_once(binary: &str, runs: usize) -> anyhow::Result<()> {
    let ratchet = root().join("target/release").join(binary);
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
        "cold {binary} run-once (addition, {runs} runs): median {median:.2} ms, p90 {p90:.2} ms, min {:.2} ms; \
         peak RSS kernel {:.1} MiB, worker {:.1} MiB",
        walls[0],
        kernel_peak as f64 / 1024.0,
        worker_peak as f64 / 1024.0
    );
    Ok(())
}
