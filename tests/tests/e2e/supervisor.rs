//! The supervisor under faults: timeouts, memory, crashes, recycling, isolation between runs
//! (sandbox rows S1 to S6, S9, S10).

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratchet_core::execution::KernelStart;
use ratchet_core::supervisor::SlotState;
use ratchet_core::{Config, Execution, Kernel};
use serde_json::{Value, json};
use tests::{FAKE_HANDSHAKE, fake_worker, kernel_config, load, task};

fn kernel(workers: usize, edit: impl FnOnce(&mut Config)) -> Kernel {
    let mut config = kernel_config();
    edit(&mut config);
    Kernel::start(config, workers).expect("the kernel starts")
}

async fn run(kernel: &Kernel, code: &str, metadata: Value, input: Value) -> Execution {
    let task = task(code);
    task.write("metadata.json", &metadata.to_string());
    kernel.run(&load(&task, kernel.config()), input).await
}

fn kind(execution: &Execution) -> &'static str {
    execution.outcome.as_ref().err().map_or("success", |e| e.kind())
}

fn message(execution: &Execution) -> String {
    execution.outcome.as_ref().err().map(ToString::to_string).unwrap_or_default()
}

async fn wait_for(
    kernel: &Kernel,
    what: &str,
    condition: impl Fn(&[ratchet_core::supervisor::SlotStatus]) -> bool,
) {
    let status = || kernel.pool().status();
    wait_until(what, || condition(&status()), || format!("{:?}", status())).await;
}

/// Polls `condition` for up to 20 s; `state` says what was seen when it times out.
async fn wait_until(what: &str, condition: impl Fn() -> bool, state: impl Fn() -> String) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < Duration::from_secs(20), "timed out waiting for {what}: {}", state());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_loop_is_killed_at_its_timeout_and_the_pool_heals() {
    let kernel = kernel(1, |_| {});
    for code in [
        "(function () { while (true) {} })",
        // Catching whatever is thrown cannot keep the run alive (S2).
        "(function () { for (;;) { try { for (;;) {} } catch (e) {} } })",
    ] {
        let started = Instant::now();
        let execution = run(&kernel, code, json!({"timeout": 1}), json!(null)).await;
        assert_eq!(kind(&execution), "timeout", "{execution:?}");
        assert!(message(&execution).contains("timeout of 1s"), "{}", message(&execution));
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        let next = run(&kernel, "(function () { return 'alive'; })", json!({}), json!(null)).await;
        assert_eq!(next.outcome, Ok(json!("alive")));
    }
    assert!(kernel.pool().status()[0].restarts >= 2);
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_fails_at_the_limit_and_the_kernel_stays_flat() {
    let kernel = kernel(1, |_| {});
    let bomb = "(function () { const a = []; for (;;) a.push('x'.repeat(1024) + a.length); })";
    let _warm = run(&kernel, bomb, json!({"memory_limit": "64MB"}), json!(null)).await;
    let before = tests::rss_kib();
    for _ in 0..3 {
        let execution = run(&kernel, bomb, json!({"memory_limit": "64MB"}), json!(null)).await;
        assert_eq!(kind(&execution), "memory_limit", "{execution:?}");
        assert!(message(&execution).contains("memory limit of 64MB"), "{}", message(&execution));
    }
    let growth = tests::rss_kib().saturating_sub(before);
    // Three 64MB bombs would show as 192MB; other tests share this process, so allow some noise.
    assert!(growth < 32 * 1024, "kernel grew by {growth} KiB");
    // Loops hidden in built-ins (S3): one huge allocation.
    let huge = run(
        &kernel,
        "(function () { return 'x'.repeat(2 ** 28).length; })",
        json!({"memory_limit": "64MB"}),
        json!(null),
    )
    .await;
    assert_eq!(kind(&huge), "memory_limit", "{huge:?}");
    let next = run(&kernel, "(function () { return 1; })", json!({}), json!(null)).await;
    assert_eq!(next.outcome, Ok(json!(1)));
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catastrophic_regex_backtracking_is_ended_by_the_timeout() {
    let kernel = kernel(1, |_| {});
    let code = "(function () { return /^(a+)+$/.test('a'.repeat(40) + 'b'); })";
    let execution = run(&kernel, code, json!({"timeout": 1}), json!(null)).await;
    assert_eq!(kind(&execution), "timeout", "{execution:?}");
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pollution_of_globals_and_prototypes_is_invisible_to_the_next_run() {
    let kernel = kernel(1, |_| {});
    let polluter = "(function () {
        Object.prototype.polluted = 'yes';
        Array.prototype.push = function () { return 'hijacked'; };
        globalThis.leaked = 42;
        JSON.parse = () => 'hijacked';
        DataError.prototype.name = 'Hijacked';
        console.log = () => {};
        return 'polluted';
    })";
    let checker = "(function () {
        console.log('still logging');
        const a = []; a.push(1);
        return [({}).polluted, a.length, typeof leaked, JSON.parse('1'), new DataError('x').name];
    })";
    let first = run(&kernel, polluter, json!({}), json!(null)).await;
    let second = run(&kernel, checker, json!({}), json!(null)).await;
    assert_eq!(second.outcome, Ok(json!([null, 1, "undefined", 1, "DataError"])), "{second:?}");
    assert_eq!(second.logs.len(), 1);
    let (a, b) = (first.worker.unwrap(), second.worker.unwrap());
    assert_eq!(a.worker_id, b.worker_id, "both runs used the same worker process");
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_fails_that_run_with_the_signal_and_the_pool_heals() {
    let kernel = Arc::new(kernel(1, |_| {}));
    wait_for(&kernel, "an idle worker", |s| s[0].state == SlotState::Idle).await;
    let background = {
        let kernel = Arc::clone(&kernel);
        tokio::spawn(async move {
            run(
                &kernel,
                "async function main() { await new Promise(r => setTimeout(r, 10000)); }",
                json!({"timeout": 30}),
                json!(null),
            )
            .await
        })
    };
    wait_for(&kernel, "a busy worker", |s| s[0].state == SlotState::Busy).await;
    let pid = kernel.pool().status()[0].pid.expect("a busy worker has a pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    let execution = background.await.unwrap();
    assert_eq!(kind(&execution), "worker_crashed", "{execution:?}");
    assert!(message(&execution).contains("SIGKILL"), "{}", message(&execution));
    let next = run(&kernel, "(function () { return 'healed'; })", json!({}), json!(null)).await;
    assert_eq!(next.outcome, Ok(json!("healed")));
    assert_ne!(kernel.pool().status()[0].pid, Some(pid));
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_fails_only_its_own_run() {
    let kernel = Arc::new(kernel(2, |_| {}));
    let crasher = "(function () { let o = {}; for (let i = 0; i < 200000; i++) o = {o}; return JSON.stringify(o).length; })";
    let mut handles = Vec::new();
    for index in 0..8 {
        let kernel = Arc::clone(&kernel);
        let code =
            if index == 3 { crasher.to_owned() } else { format!("(function () {{ return {index}; }})") };
        handles.push(tokio::spawn(async move { run(&kernel, &code, json!({}), json!(null)).await }));
    }
    for (index, handle) in handles.into_iter().enumerate() {
        let execution = handle.await.unwrap();
        if index == 3 {
            assert_eq!(kind(&execution), "worker_crashed", "{execution:?}");
            assert!(message(&execution).contains("native stack"), "{}", message(&execution));
        } else {
            assert_eq!(execution.outcome, Ok(json!(index)), "{execution:?}");
        }
    }
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_are_recycled_after_their_run_quota() {
    let kernel = kernel(1, |c| c.workers.max_runs = 2);
    let mut ids = Vec::new();
    for _ in 0..5 {
        let execution = run(&kernel, "(function () { return 1; })", json!({}), json!(null)).await;
        ids.push(execution.worker.unwrap().worker_id);
    }
    assert_eq!(ids, ["w0.1", "w0.1", "w0.2", "w0.2", "w0.3"]);
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recycled_workers_successor_is_started_before_the_quota_ends() {
    // The successor starts 8 runs before the quota of 20: it is already running when run 20
    // ends, and serves run 21 without a start in between.
    let kernel = kernel(1, |c| c.workers.max_runs = 20);
    let code = "(function () { return 1; })";
    for _ in 0..12 {
        run(&kernel, code, json!({}), json!(null)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A process started now marks the time, in the same clock as the worker's start.
    let mut marker = std::process::Command::new("sleep").arg("30").spawn().unwrap();
    let before_last_runs = process_start_ticks(marker.id());
    for _ in 12..20 {
        run(&kernel, code, json!({}), json!(null)).await;
    }
    let execution = run(&kernel, code, json!({}), json!(null)).await;
    marker.kill().unwrap();
    marker.wait().unwrap();
    assert_eq!(execution.worker.unwrap().worker_id, "w0.2");
    let successor = process_start_ticks(kernel.pool().status()[0].pid.unwrap());
    assert!(
        successor < before_last_runs,
        "w0.2 started at tick {successor}, not before runs 13 to 20 (tick {before_last_runs})"
    );
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_that_died_while_waiting_is_replaced_before_it_gets_a_run() {
    // The worker binary under a path of this test's own, to find this pool's processes.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("ratchet-worker");
    std::os::unix::fs::symlink(tests::worker_bin(), &binary).unwrap();
    let kernel = kernel(1, |c| {
        c.workers.max_runs = 20;
        c.workers.binary = Some(binary.clone());
    });
    let code = "(function () { return 1; })";
    for _ in 0..12 {
        run(&kernel, code, json!({}), json!(null)).await;
    }
    let current = kernel.pool().status()[0].pid.unwrap();
    let started = Instant::now();
    let successor = loop {
        if let Some(pid) = processes_of(&binary).into_iter().find(|pid| *pid != current) {
            break pid;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no successor started after 12 of 20 runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Past its handshake (which takes milliseconds), it waits; then it dies.
    tokio::time::sleep(Duration::from_millis(500)).await;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(successor as i32), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    for _ in 12..20 {
        run(&kernel, code, json!({}), json!(null)).await;
    }
    let execution = run(&kernel, code, json!({}), json!(null)).await;
    assert_eq!(kind(&execution), "success", "{}", message(&execution));
    let serving = kernel.pool().status()[0].pid.unwrap();
    assert!(serving != current && serving != successor, "a new worker serves the slot");
    kernel.shutdown().await;
}

/// Live processes started as `binary` (their first argument).
fn processes_of(binary: &std::path::Path) -> Vec<u32> {
    let wanted = binary.as_os_str().as_encoded_bytes();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).next() == Some(wanted) {
            pids.push(pid);
        }
    }
    pids
}

/// When process `pid` started, in clock ticks after boot (proc(5): `stat` field 22).
fn process_start_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = stat.rsplit_once(") ").unwrap().1;
    after_comm.split_whitespace().nth(19).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_get_no_environment_and_a_memory_cap() {
    // SAFETY of the test: setting a variable the kernel must not pass on.
    let kernel = kernel(1, |c| c.limits.max_memory_limit = "512MB".parse().unwrap());
    wait_for(&kernel, "an idle worker", |s| s[0].state == SlotState::Idle).await;
    let pid = kernel.pool().status()[0].pid.unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    assert!(environ.is_empty(), "worker environment: {}", String::from_utf8_lossy(&environ));
    tests::assert_address_space_cap(pid, (512 + 256) * 1024 * 1024);
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_workers_answer_health_pings() {
    let kernel = kernel(1, |c| c.workers.ping_interval_secs = 1);
    wait_for(&kernel, "an idle worker", |s| s[0].state == SlotState::Idle).await;
    let pid = kernel.pool().status()[0].pid;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let status = &kernel.pool().status()[0];
    assert_eq!((status.pid, status.restarts), (pid, 0), "pinged workers stay: {status:?}");
    let execution = run(&kernel, "(function () { return 'ok'; })", json!({}), json!(null)).await;
    assert_eq!(execution.outcome, Ok(json!("ok")));
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_at_start_is_retried_with_backoff_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_worker(dir.path(), "echo 'cannot start: broken install' >&2\nexit 3");
    let kernel = kernel(1, |c| c.workers.binary = Some(binary));
    let started = Instant::now();
    let execution = run(&kernel, "(function () { return 1; })", json!({}), json!(null)).await;
    assert_eq!(kind(&execution), "worker_unavailable", "{execution:?}");
    let text = message(&execution);
    assert!(text.contains("exited with code 3") && text.contains("broken install"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = &kernel.pool().status()[0];
    assert!(status.consecutive_start_failures <= 8, "no tight respawn loop: {status:?}");
    assert!(kernel.pool().unavailable().is_some(), "the failure is visible in health");
    kernel.shutdown().await;
}

/// A fake worker that handshakes, reads the ExecuteTask, then prints `reply`.
async fn fake_run(reply: &str, edit: impl FnOnce(&mut Config)) -> Execution {
    let dir = tempfile::tempdir().unwrap();
    let binary = fake_worker(dir.path(), &format!("echo '{FAKE_HANDSHAKE}'\nread line\n{reply}\nsleep 5"));
    let kernel = kernel(1, |c| {
        c.workers.binary = Some(binary);
        edit(c);
    });
    let execution = run(&kernel, "(function () { return 1; })", json!({}), json!(null)).await;
    kernel.shutdown().await;
    execution
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_frame_kills_the_worker_with_a_protocol_error() {
    let execution = fake_run("echo 'this is not a frame'", |_| {}).await;
    assert_eq!(kind(&execution), "protocol_error", "{execution:?}");
    assert!(message(&execution).contains("malformed frame"), "{}", message(&execution));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_frame_kills_the_worker_with_a_protocol_error() {
    let execution =
        fake_run("head -c 100000 /dev/zero | tr '\\0' 'x'; echo", |c| c.workers.max_frame_bytes = 70_000)
            .await;
    assert_eq!(kind(&execution), "protocol_error", "{execution:?}");
    assert!(message(&execution).contains("exceeds the limit of 70000 bytes"), "{}", message(&execution));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_of_another_protocol_version_is_refused() {
    let frame = r#"{"protocol_version":1,"timestamp":0,"message":{"type":"Pong","nonce":1}}"#;
    let execution = fake_run(&format!("echo '{frame}'"), |_| {}).await;
    assert_eq!(kind(&execution), "protocol_error", "{execution:?}");
    let expected = format!("protocol version 1, expected {}", worker_protocol::PROTOCOL_VERSION);
    assert!(message(&execution).contains(&expected), "{}", message(&execution));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_for_another_run_is_refused() {
    let frame = r#"{"protocol_version":2,"timestamp":0,"message":{"type":"TaskResult","correlation_id":999,"outcome":{"status":"success","output":"forged"},"stats":{"duration_us":0,"peak_rss_kib":0}}}"#;
    let execution = fake_run(&format!("echo '{frame}'"), |_| {}).await;
    assert_eq!(kind(&execution), "protocol_error", "{execution:?}");
}

/// The worker binary under another name in `dir`, so that its processes can be told apart
/// from every other test's workers.
fn worker_alias(dir: &std::path::Path, name: &str) -> std::path::PathBuf {
    let alias = dir.join(name);
    std::os::unix::fs::symlink(tests::worker_bin(), &alias).unwrap();
    alias
}

/// An early worker started from `guessed`, handshaken, and its pid.
async fn early_worker(
    guessed: &Config,
    binary: &std::path::Path,
) -> (ratchet_core::supervisor::EarlyWorker, u32) {
    let early =
        ratchet_core::supervisor::EarlyWorker::start(&Kernel::pool_spec(guessed, 1).expect("a pool spec"));
    wait_until(
        "the early worker to start",
        || processes_of(binary).len() == 1,
        || format!("{:?}", processes_of(binary)),
    )
    .await;
    (early, processes_of(binary)[0])
}

/// A one-worker kernel for `config` given `early`, once its worker is idle.
async fn kernel_with_early(config: Config, early: ratchet_core::supervisor::EarlyWorker) -> Kernel {
    let kernel = Kernel::start_with(config, 1, KernelStart { early: Some(early), ..KernelStart::default() })
        .expect("the kernel starts");
    wait_for(&kernel, "an idle worker", |s| s[0].state == SlotState::Idle).await;
    kernel
}

/// A trivial task succeeds on `kernel`.
async fn assert_runs(kernel: &Kernel) {
    let execution =
        run(kernel, "function main(i) { return { sum: i.a + 1 }; }", json!({}), json!({"a": 1})).await;
    assert_eq!(kind(&execution), "success", "{}", message(&execution));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_worker_that_fits_serves_the_first_run() {
    let dir = tempfile::tempdir().unwrap();
    let alias = worker_alias(dir.path(), "early-worker");
    let mut config = kernel_config();
    config.workers.binary = Some(alias.clone());
    let (early, early_pid) = early_worker(&config, &alias).await;
    let kernel = kernel_with_early(config, early).await;
    assert_eq!(kernel.pool().status()[0].pid, Some(early_pid), "the early worker serves the slot");
    assert_eq!(processes_of(&alias), vec![early_pid], "no other worker was started");
    assert_runs(&kernel).await;
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_worker_started_for_another_memory_limit_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let alias = worker_alias(dir.path(), "early-worker");
    let mut guessed = kernel_config();
    guessed.workers.binary = Some(alias.clone());
    let (early, early_pid) = early_worker(&guessed, &alias).await;
    // A cap lowered under a running worker would fail its next mapping: it must be restarted.
    let mut config = guessed.clone();
    config.limits.max_memory_limit = "512MB".parse().unwrap();
    let kernel = kernel_with_early(config, early).await;
    let pid = kernel.pool().status()[0].pid.unwrap();
    assert_ne!(pid, early_pid, "a worker started under the configured cap serves the slot");
    wait_until(
        "the early worker to be stopped",
        || processes_of(&alias) == vec![pid],
        || format!("{:?}", processes_of(&alias)),
    )
    .await;
    tests::assert_address_space_cap(pid, (512 + 256) * 1024 * 1024);
    assert_runs(&kernel).await;
    kernel.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_worker_that_does_not_fit_is_stopped_and_the_configured_one_serves() {
    let dir = tempfile::tempdir().unwrap();
    let (guess, configured) =
        (worker_alias(dir.path(), "guessed-worker"), worker_alias(dir.path(), "configured-worker"));
    let mut guessed = kernel_config();
    guessed.workers.binary = Some(guess.clone());
    let (early, _) = early_worker(&guessed, &guess).await;
    let mut config = kernel_config();
    config.workers.binary = Some(configured.clone());
    let kernel = kernel_with_early(config, early).await;
    let pid = kernel.pool().status()[0].pid.unwrap();
    assert_eq!(processes_of(&configured), vec![pid], "the configured binary serves the slot");
    wait_until(
        "the early worker to be stopped",
        || processes_of(&guess).is_empty(),
        || format!("{:?}", processes_of(&guess)),
    )
    .await;
    assert_runs(&kernel).await;
    kernel.shutdown().await;
}
