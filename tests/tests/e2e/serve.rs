//! `ratchet serve` as an operator runs it: jobs from the CLI, kill -9 and restart, SIGTERM
//! (docs/reliability.md J1 on SQLite, J2 and J8 on both backends, J9 on PostgreSQL; the queue semantics run on both backends
//! in `queue` and `schedules`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::{ratchet_bin, ratchet_in};

/// A task that sleeps `input.ms` then returns `input.n` (or throws when `input.fail`).
fn tasks_dir(root: &Path) -> PathBuf {
    let dir = root.join("tasks/sleepy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metadata.json"), r#"{"name": "sleepy", "version": "1.0.0", "timeout": 30}"#)
        .unwrap();
    std::fs::write(dir.join("input.schema.json"), r#"{"type": "object", "required": ["n", "ms"]}"#).unwrap();
    std::fs::write(dir.join("output.schema.json"), r#"{"type": "object"}"#).unwrap();
    std::fs::write(
        dir.join("main.js"),
        "async function main(input) { await new Promise(r => setTimeout(r, input.ms)); \
         if (input.fail) throw new Error('asked to fail'); return { n: input.n }; }",
    )
    .unwrap();
    root.join("tasks")
}

struct Node {
    child: Child,
    port: u16,
}

impl Node {
    fn start(root: &Path, env: &[(&str, &str)]) -> Node {
        let data = root.join("data");
        Node::start_with(root, &["--data-dir", data.to_str().unwrap()], env)
    }

    /// Starts `ratchet serve` with `storage` arguments (`--data-dir DIR` or `--database-url URL`).
    fn start_with(root: &Path, storage: &[&str], env: &[(&str, &str)]) -> Node {
        let mut node = Node::spawn_with(root, storage, env);
        node.wait_until_up();
        node
    }

    /// Starts `ratchet serve` like [`Node::start_with`] without waiting for it.
    fn spawn_with(root: &Path, storage: &[&str], env: &[(&str, &str)]) -> Node {
        let port = free_port();
        let child = Command::new(ratchet_bin())
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(storage)
            .arg("--tasks")
            .arg(root.join("tasks"))
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Node { child, port }
    }

    /// Waits until the node answers `/health`; panics with its stderr when it exits first.
    fn wait_until_up(&mut self) {
        let started = Instant::now();
        while get(self.port, "/health").is_none() {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut stderr);
                panic!("ratchet serve exited ({status}) instead of coming up: {stderr}");
            }
            assert!(started.elapsed() < Duration::from_secs(20), "ratchet serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal).unwrap();
    }

    /// Waits for the process to exit; returns its exit code and stderr.
    /// SIGTERM, then the exit within `limit`, which must be clean; the node's log.
    fn stop(self, limit: Duration) -> String {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let (code, stderr) = self.wait(limit);
        assert_eq!(code, Some(0), "{stderr}");
        stderr
    }

    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut stderr = String::new();
                let _ = self.child.stderr.take().unwrap().read_to_string(&mut stderr);
                return (status.code(), stderr);
            }
            assert!(started.elapsed() < limit, "ratchet serve did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain HTTP GET; the body, or `None` when nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned()))
}

/// A plain HTTP `POST` of the JSON `body`; the status and the response's body.
fn post(port: u16, path: &str, body: &Value) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.to_string();
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response.split("\r\n\r\n").nth(1).unwrap_or("").to_owned())
}

/// [`commit_steps`] once the node's start-up claims are done (its first claim, and the one it
/// makes as it starts listening for wake-ups): the count an idle node keeps.
fn settled_commit_steps(port: u16) -> u64 {
    wait_until("the node's first claim", Duration::from_secs(20), || commit_steps(port) > 0);
    std::thread::sleep(Duration::from_secs(1));
    commit_steps(port)
}

/// How many batches of queue steps (claims and ends) the node has committed, from `/metrics`.
fn commit_steps(port: u16) -> u64 {
    let (_, metrics) = get(port, "/metrics").expect("the node answers /metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("ratchet_queue_commit_steps_count ")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no ratchet_queue_commit_steps_count in /metrics:\n{metrics}"))
}

fn cli(root: &Path, args: &[&str]) -> Value {
    let data = root.join("data");
    cli_on(root, &["--data-dir", data.to_str().unwrap()], args)
}

/// A CLI command in JSON against the database `storage` names.
fn cli_on(root: &Path, storage: &[&str], args: &[&str]) -> Value {
    let tasks = root.join("tasks");
    let mut all = args.to_vec();
    all.extend(storage);
    all.extend(["--format", "json"]);
    if matches!((args[0], args.get(1).copied()), ("jobs", Some("enqueue")) | ("schedules", Some("add"))) {
        all.extend(["--tasks", tasks.to_str().unwrap()]);
    }
    let run = ratchet_in(root, &all, &[]);
    assert!(run.success(), "{all:?}: {run:?}");
    run.json()
}

/// How many jobs are in `status`.
fn jobs_in(root: &Path, storage: &[&str], status: &str) -> usize {
    cli_on(root, storage, &["jobs", "list", "--status", status, "--limit", "1"])["total"]
        .as_u64()
        .map_or(0, |n| n as usize)
}

/// Enqueues job `n` of the `sleepy` task (1 ms) with the CLI, and waits (20 s at most, `what`)
/// until it completes.
fn cli_job_completes(root: &Path, storage: &[&str], n: u64, what: &str) {
    let id = enqueue_sleepy(root, storage, n, 1);
    wait_until(what, Duration::from_secs(20), || job_status(root, storage, &id) == "completed");
}

/// Enqueues a job of the `sleepy` task with the CLI; its id.
fn enqueue_sleepy(root: &Path, storage: &[&str], n: u64, ms: u64) -> String {
    let input = json!({"n": n, "ms": ms}).to_string();
    let enqueued = cli_on(root, storage, &["jobs", "enqueue", "sleepy", "--input-json", &input]);
    enqueued["id"].as_str().unwrap().to_owned()
}

/// Job `id`'s status, as `jobs show` gives it.
fn job_status(root: &Path, storage: &[&str], id: &str) -> Value {
    cli_on(root, storage, &["jobs", "show", id])["status"].clone()
}

/// The attempts (`jobs show`) of each job among `jobs` that ran more than once.
fn attempts_of_retried(root: &Path, storage: &[&str], jobs: &[Value]) -> Vec<Vec<Value>> {
    jobs.iter()
        .filter(|job| job["attempt"].as_u64() > Some(1))
        .map(|job| {
            let shown = cli_on(root, storage, &["jobs", "show", job["id"].as_str().unwrap()]);
            shown["attempts"].as_array().unwrap().clone()
        })
        .collect()
}

/// The outcome of each of `attempts`.
fn outcomes(attempts: &[Value]) -> Vec<&str> {
    attempts.iter().map(|a| a["outcome"].as_str().unwrap()).collect()
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_enqueued_from_the_cli_runs_and_is_recorded() {
    let root = tempfile::tempdir().unwrap();
    tasks_dir(root.path());
    let node = Node::start(root.path(), &[]);
    let (status, body) = get(node.port, "/ready").unwrap();
    assert_eq!(status, 200, "{body}");

    let job = cli(root.path(), &["jobs", "enqueue", "sleepy", "--input-json", r#"{"n": 7, "ms": 10}"#]);
    assert_eq!((job["status"].as_str(), job["created"].as_bool()), (Some("queued"), Some(true)));
    let id = job["id"].as_str().unwrap().to_owned();
    wait_until("the job to complete", Duration::from_secs(20), || {
        cli(root.path(), &["jobs", "show", &id])["status"] == "completed"
    });
    let shown = cli(root.path(), &["jobs", "show", &id]);
    assert_eq!(shown["output"], json!({"n": 7}));
    assert_eq!(shown["attempts"][0]["outcome"], "completed");
    let executions = cli(root.path(), &["executions", "list", "--job", &id]);
    assert_eq!(executions["items"][0]["status"], "success");
    let execution = cli(root.path(), &["executions", "show", executions["items"][0]["id"].as_str().unwrap()]);
    assert_eq!(execution["input"], json!({"n": 7, "ms": 10}));

    let again = cli(
        root.path(),
        &["jobs", "enqueue", "sleepy", "--input-json", r#"{"n": 1, "ms": 1}"#, "--idempotency-key", "k"],
    );
    let same = cli(
        root.path(),
        &["jobs", "enqueue", "sleepy", "--input-json", r#"{"n": 1, "ms": 1}"#, "--idempotency-key", "k"],
    );
    assert_eq!((again["id"].clone(), same["created"].clone()), (same["id"].clone(), json!(false)));

    let bad = ratchet_in(
        root.path(),
        &["jobs", "enqueue", "sleepy", "--input-json", "{}", "--data-dir", "data", "--tasks", "tasks"],
        &[],
    );
    assert!(!bad.success() && bad.stderr.contains("does not match the input schema"), "{bad:?}");
    let stderr = node.stop(Duration::from_secs(20));
    assert!(stderr.contains("stopped cleanly"), "{stderr}");
}

#[test]
fn kill_9_mid_way_loses_no_job_and_completes_none_twice() {
    on_sqlite(kill_9_case);
}

/// The same on PostgreSQL (over its Unix socket when there is one: see the README on sqlx and
/// TCP_NODELAY).
#[test]
fn kill_9_mid_way_on_postgres_loses_no_job_and_completes_none_twice() {
    on_postgres(kill_9_case);
}

/// docs/reliability.md J2: 500 jobs, `kill -9` of the node mid-way, a restart: every job reaches a
/// final state, none is completed twice. `storage` selects the database.
fn kill_9_case(root: &Path, storage: &[&str]) {
    const JOBS: usize = 500;
    tasks_dir(root);
    let env = [("RATCHET_QUEUE__LEASE_SECS", "2"), ("RATCHET_WORKERS__COUNT", "2")];
    // Enqueue through the library (500 CLI processes would only test process start-up).
    enqueue_many(storage, &root.join("tasks"), JOBS, 20);
    let completed = || jobs_in(root, storage, "completed");

    let node = Node::start_with(root, storage, &env);
    wait_until("some jobs to complete", Duration::from_secs(60), || completed() >= 50);
    node.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = node.wait(Duration::from_secs(10));
    let at_kill = completed();
    assert!(at_kill < JOBS, "the node finished everything before the kill; make the jobs slower");

    let node = Node::start_with(root, storage, &env);
    wait_until("every job to finish", Duration::from_secs(120), || completed() == JOBS);
    node.stop(Duration::from_secs(30));

    let jobs = cli_on(root, storage, &["jobs", "list", "--all"]);
    let jobs = jobs["items"].as_array().unwrap();
    assert_eq!(jobs.len(), JOBS);
    assert!(jobs.iter().all(|j| j["status"] == "completed"), "every job reaches a final state");
    let rescued = attempts_of_retried(root, storage, jobs);
    assert!(!rescued.is_empty(), "jobs running at the kill were rescued and retried");
    for attempts in &rescued {
        let outcomes = outcomes(attempts);
        assert_eq!(outcomes.iter().filter(|o| **o == "completed").count(), 1, "{outcomes:?}");
        assert!(outcomes.contains(&"expired"), "{outcomes:?}");
    }
}

#[test]
fn sigterm_lets_running_jobs_finish_or_releases_them_after_the_grace_period() {
    on_sqlite(sigterm_case);
}

#[test]
fn sigterm_on_postgres_lets_running_jobs_finish_or_releases_them() {
    on_postgres(sigterm_case);
}

/// Runs `case` with a new SQLite database in a scratch folder.
fn on_sqlite(case: impl FnOnce(&Path, &[&str])) {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    case(root.path(), &["--data-dir", data.to_str().unwrap()]);
}

/// Runs `case` against a fresh PostgreSQL database (its Unix socket when there is one), then
/// drops the database, also when the case fails.
fn on_postgres(case: impl FnOnce(&Path, &[&str]) + std::panic::UnwindSafe) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let database = runtime.block_on(tests::databases::PostgresDatabase::create());
    let mut url = url::Url::parse(&database.url).unwrap();
    if std::path::Path::new("/var/run/postgresql").is_dir() {
        url.set_host(Some("localhost")).unwrap();
        url.query_pairs_mut().append_pair("host", "/var/run/postgresql");
    }
    let root = tempfile::tempdir().unwrap();
    let outcome = std::panic::catch_unwind(|| case(root.path(), &["--database-url", url.as_str()]));
    runtime.block_on(database.drop());
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// docs/reliability.md J8: SIGTERM lets a running job finish within the grace period, or releases
/// it to the queue without using up an attempt.
fn sigterm_case(root: &Path, storage: &[&str]) {
    tasks_dir(root);
    for (grace, ms, expected) in [("10", 800, "completed"), ("0.2", 5000, "retrying")] {
        let node = Node::start_with(root, storage, &[("RATCHET_SERVER__SHUTDOWN_GRACE_SECS", grace)]);
        let id = enqueue_sleepy(root, storage, 1, ms);
        wait_until("the job to start", Duration::from_secs(20), || {
            job_status(root, storage, &id) == "running"
        });
        node.stop(Duration::from_secs(20));
        let job = cli_on(root, storage, &["jobs", "show", &id]);
        assert_eq!(job["status"], expected, "grace {grace}s: {job:#}");
        if expected == "retrying" {
            assert_eq!(job["attempts"][0]["outcome"], "released", "{job:#}");
            assert_eq!(job["max_attempts"], 4, "a released attempt does not use up the budget");
        }
    }
}

#[test]
fn sigterm_mid_drain_gives_back_the_jobs_claimed_ahead() {
    on_sqlite(drain_stop_case);
}

#[test]
fn sigterm_mid_drain_on_postgres_gives_back_the_jobs_claimed_ahead() {
    on_postgres(drain_stop_case);
}

/// docs/reliability.md J8: a node stopped in the middle of a drain of short jobs (for which it
/// claims ahead) gives back every job it claimed and did not start: none stays leased to it
/// until its lease expires, and a restart completes every job exactly once.
fn drain_stop_case(root: &Path, storage: &[&str]) {
    const JOBS: usize = 300;
    tasks_dir(root);
    let env = [("RATCHET_WORKERS__COUNT", "2")];
    enqueue_many(storage, &root.join("tasks"), JOBS, 20);
    let count = |status: &str| jobs_in(root, storage, status);
    let node = Node::start_with(root, storage, &env);
    wait_until("some jobs to complete", Duration::from_secs(60), || count("completed") >= 30);
    let stderr = node.stop(Duration::from_secs(30));
    assert_eq!(count("running"), 0, "the stopped node still holds jobs; its log:\n{stderr}");
    assert!(count("completed") < JOBS, "the node finished everything before the stop; make the jobs slower");

    let node = Node::start_with(root, storage, &env);
    wait_until("every job to finish", Duration::from_secs(120), || count("completed") == JOBS);
    node.stop(Duration::from_secs(30));
    let jobs = cli_on(root, storage, &["jobs", "list", "--all"]);
    for attempts in attempts_of_retried(root, storage, jobs["items"].as_array().unwrap()) {
        let outcomes = outcomes(&attempts);
        assert_eq!(outcomes.iter().filter(|o| **o == "completed").count(), 1, "{outcomes:?}");
        assert!(outcomes.iter().all(|o| ["released", "completed"].contains(o)), "{outcomes:?}");
    }
}

/// docs/reliability.md J21: a node that claimed ahead while its jobs were short, then meets long
/// ones, gives back the jobs that wait too long for its worker (for any node to run) and stops
/// claiming ahead; every job still completes exactly once.
#[test]
fn jobs_claimed_ahead_that_wait_too_long_go_back_to_the_queue() {
    on_sqlite(claimed_ahead_case);
}

fn claimed_ahead_case(root: &Path, storage: &[&str]) {
    tasks_dir(root);
    let env = [("RATCHET_WORKERS__COUNT", "1"), ("RATCHET_QUEUE__CONCURRENCY", "1")];
    let count = |status: &str| jobs_in(root, storage, status);
    let node = Node::start_with(root, storage, &env);
    // Short runs first: the node learns to claim ahead.
    enqueue_many(storage, &root.join("tasks"), 40, 1);
    wait_until("the short jobs to complete", Duration::from_secs(60), || count("completed") == 40);
    enqueue_many(storage, &root.join("tasks"), 5, 1500);
    wait_until("every job to complete", Duration::from_secs(120), || count("completed") == 45);
    let stderr = node.stop(Duration::from_secs(30));
    let jobs = cli_on(root, storage, &["jobs", "list", "--all"]);
    let mut given_back = 0;
    for attempts in attempts_of_retried(root, storage, jobs["items"].as_array().unwrap()) {
        let completed = attempts.iter().filter(|a| a["outcome"] == "completed").count();
        assert_eq!(completed, 1, "{attempts:#?}");
        given_back += attempts
            .iter()
            .filter(|a| {
                a["outcome"] == "released" && a["error"].as_str().is_some_and(|e| e.contains("given back"))
            })
            .count();
    }
    assert!(given_back >= 1, "no long job claimed ahead went back to the queue; the node's log:\n{stderr}");
}

#[test]
fn a_schedule_added_from_the_cli_fires_on_the_server_and_the_node_reports_itself() {
    let root = tempfile::tempdir().unwrap();
    tasks_dir(root.path());
    let node = Node::start(root.path(), &[]);
    let input = json!({"n": 1, "ms": 1}).to_string();
    let added = cli(
        root.path(),
        &[
            "schedules",
            "add",
            "sleepy",
            "--cron",
            "* * * * * *",
            "--name",
            "every-second",
            "--input-json",
            &input,
        ],
    );
    assert_eq!((added["name"].as_str(), added["enabled"].as_bool()), (Some("every-second"), Some(true)));
    let key_prefix = format!("schedule:{}:", added["id"].as_str().unwrap());
    let fired = |root: &Path| -> Vec<Value> {
        let jobs = cli(root, &["jobs", "list", "--status", "completed", "--all"]);
        jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["idempotency_key"].as_str().is_some_and(|k| k.starts_with(&key_prefix)))
            .cloned()
            .collect()
    };
    wait_until("three fire times to run", Duration::from_secs(30), || fired(root.path()).len() >= 3);

    let next = cli(root.path(), &["schedules", "next", "every-second", "-n", "3"]);
    assert_eq!(next.as_array().map(Vec::len), Some(3), "{next}");
    let listed = cli(root.path(), &["schedules", "list"]);
    assert!(listed[0]["last_job_id"].is_string(), "{listed}");

    let nodes = cli(root.path(), &["nodes"]);
    assert_eq!(nodes[0]["status"], "running", "{nodes}");
    assert_eq!(nodes[0]["workers"].as_array().map(Vec::len), Some(2), "{nodes}");
    let tasks = cli(root.path(), &["tasks"]);
    assert_eq!(tasks[0]["name"], "sleepy", "{tasks}");
    assert_eq!(tasks[0]["digest"].as_str().map(str::len), Some(64), "{tasks}");

    cli(root.path(), &["schedules", "remove", "every-second"]);
    std::thread::sleep(Duration::from_millis(1500));
    let settled = cli(root.path(), &["jobs", "list"])["total"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(2000));
    assert_eq!(
        cli(root.path(), &["jobs", "list"])["total"].as_u64().unwrap(),
        settled,
        "removed: no more fires"
    );

    node.stop(Duration::from_secs(20));
    assert_eq!(cli(root.path(), &["nodes"])[0]["status"], "stopped");
}

/// J9: PostgreSQL reached through a proxy that the test cuts for a while.
#[test]
fn the_server_survives_an_unreachable_database_and_loses_no_queued_work() {
    let root = tempfile::tempdir().unwrap();
    let tasks = tasks_dir(root.path());
    let proxy = tests::proxy::Proxy::start("127.0.0.1:5432".parse().unwrap());
    let database = proxy.block_on(tests::databases::PostgresDatabase::create());
    let mut through_proxy = url::Url::parse(&database.url).unwrap();
    through_proxy.set_port(Some(proxy.port)).unwrap();
    let direct = database.url.clone();
    let enqueue = |n: usize| {
        let input = json!({"n": n, "ms": 1}).to_string();
        let args =
            ["jobs", "enqueue", "sleepy", "--input-json", &input, "--database-url", &direct, "--tasks"];
        let mut all: Vec<&str> = args.to_vec();
        all.push(tasks.to_str().unwrap());
        let run = ratchet_in(root.path(), &all, &[]);
        assert!(run.success(), "{run:?}");
    };
    let count_completed = || -> usize {
        let run = ratchet_in(
            root.path(),
            &["jobs", "list", "--status", "completed", "--database-url", &direct, "--format", "json"],
            &[],
        );
        run.json()["total"].as_u64().map_or(0, |n| n as usize)
    };

    let mut node = Node::start_with(root.path(), &["--database-url", through_proxy.as_str()], &[]);
    for n in 0..3 {
        enqueue(n);
    }
    wait_until("the first jobs", Duration::from_secs(30), || count_completed() == 3);

    proxy.cut();
    wait_until("/ready to report the database", Duration::from_secs(20), || {
        get(node.port, "/ready")
            .is_some_and(|(status, body)| status == 503 && !body.contains(r#""database":"ok""#))
    });
    assert_eq!(get(node.port, "/health").map(|(status, _)| status), Some(200));
    for n in 3..10 {
        enqueue(n);
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(node.is_running(), "the server stays up while the database is away");
    assert_eq!(count_completed(), 3, "nothing ran while the node could not reach the database");

    proxy.restore();
    wait_until("the queued jobs after recovery", Duration::from_secs(60), || count_completed() == 10);
    wait_until("/ready again", Duration::from_secs(20), || {
        get(node.port, "/ready").is_some_and(|(s, _)| s == 200)
    });
    node.stop(Duration::from_secs(30));
    proxy.block_on(database.drop());
}

/// Enqueues `count` short jobs through the library into the database `storage` names.
fn enqueue_many(storage: &[&str], tasks: &Path, count: usize, ms: u64) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let config = ratchet_core::Config::default();
        let store = match storage {
            ["--data-dir", dir] => ratchet_storage::Store::open_data_dir(Path::new(dir)).await.unwrap(),
            ["--database-url", url] => ratchet_storage::Store::connect(url).await.unwrap(),
            other => panic!("not a storage choice: {other:?}"),
        };
        let (registry, _) = ratchet_service::TaskRegistry::load(&[tasks.to_owned()], &config.limits).unwrap();
        for n in 0..count {
            let input = json!({"n": n, "ms": ms});
            ratchet_service::enqueue(&store, &registry, &config.queue, "sleepy", input, Default::default())
                .await
                .unwrap();
        }
        store.close().await;
    });
}

#[test]
fn sinks_receive_the_events_of_real_runs() {
    let root = tempfile::tempdir().unwrap();
    tasks_dir(root.path());
    let events = root.path().join("events");
    let jsonl = tests::workspace_root().join("target/plugins/jsonl-sink.wasm");
    assert!(jsonl.is_file(), "run `cargo xtask build-plugins` first");
    let config = root.path().join("ratchet.yaml");
    let patterns = tests::workspace_root().join("target/plugins/error-patterns.wasm");
    std::fs::write(
        &config,
        format!(
            "plugins:\n  - name: events\n    kind: sink\n    source: {}\n    grants: {{dir: {}}}\n  \
             - name: patterns\n    kind: error-pattern\n    source: {}\n    config:\n      patterns:\n        \
             - {{id: asked, category: testing, any_text: [asked to fail], suggestions: [Do not ask it to fail]}}\n",
            jsonl.display(),
            events.display(),
            patterns.display()
        ),
    )
    .unwrap();
    let data = root.path().join("data");
    let node = Node::start_with(
        root.path(),
        &["--data-dir", data.to_str().unwrap(), "--config", config.to_str().unwrap()],
        &[],
    );
    let ok = cli(root.path(), &["jobs", "enqueue", "sleepy", "--input-json", r#"{"n": 1, "ms": 1}"#]);
    let failing = cli(
        root.path(),
        &[
            "jobs",
            "enqueue",
            "sleepy",
            "--input-json",
            r#"{"n": 2, "ms": 1, "fail": true}"#,
            "--max-attempts",
            "1",
        ],
    );
    for job in [&ok, &failing] {
        let id = job["id"].as_str().unwrap().to_owned();
        wait_until("the job to finish", Duration::from_secs(20), || {
            matches!(
                cli(root.path(), &["jobs", "show", &id])["status"].as_str(),
                Some("completed" | "failed")
            )
        });
    }
    node.stop(Duration::from_secs(20));
    let text = std::fs::read_to_string(events.join("events.jsonl")).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"task.loaded".to_owned()), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "execution.started").count(), 2, "{kinds:?}");
    assert!(kinds.contains(&"execution.succeeded".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"execution.failed".to_owned()), "{kinds:?}");

    // The failure was classified by the error-pattern plugin, in the history and the event.
    let failed_id = failing["id"].as_str().unwrap();
    let executions = cli(root.path(), &["executions", "list", "--job", failed_id]);
    let shown = cli(root.path(), &["executions", "show", executions["items"][0]["id"].as_str().unwrap()]);
    let classification = &shown["error"]["classification"][0];
    assert_eq!(classification["pattern"], "asked", "{shown:#}");
    assert_eq!(classification["plugin"], "patterns");
    assert_eq!(classification["suggestions"][0], "Do not ask it to fail");
    assert!(text.contains(r#""classification""#), "{text}");
}

/// The `ratchet-worker` processes whose parent is `parent`.
fn worker_pids(parent: u32) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(") ") else { continue };
        let comm = head.split_once(" (").map_or("", |(_, c)| c);
        let ppid: u32 = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        if comm.starts_with("ratchet-worker") && ppid == parent {
            pids.extend(head.split_once(' ').and_then(|(p, _)| p.parse::<i32>().ok()));
        }
    }
    pids
}

/// J1: a worker killed with SIGKILL under a running job fails that attempt, naming the signal;
/// the job retries and completes once.
#[test]
fn a_worker_killed_under_a_job_fails_the_attempt_and_the_job_retries() {
    let root = tempfile::tempdir().unwrap();
    tasks_dir(root.path());
    let env = [("RATCHET_WORKERS__COUNT", "1"), ("RATCHET_QUEUE__BACKOFF_BASE_SECS", "0.1")];
    let node = Node::start(root.path(), &env);
    let job = cli(root.path(), &["jobs", "enqueue", "sleepy", "--input-json", r#"{"n": 5, "ms": 3000}"#]);
    let id = job["id"].as_str().unwrap().to_owned();
    wait_until("the job to start", Duration::from_secs(20), || {
        cli(root.path(), &["jobs", "show", &id])["status"] == "running"
    });
    std::thread::sleep(Duration::from_millis(300));
    let workers = worker_pids(node.child.id());
    assert_eq!(workers.len(), 1, "one worker under the node: {workers:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(workers[0]), nix::sys::signal::Signal::SIGKILL)
        .unwrap();

    wait_until("the job to complete on its second attempt", Duration::from_secs(30), || {
        cli(root.path(), &["jobs", "show", &id])["status"] == "completed"
    });
    let shown = cli(root.path(), &["jobs", "show", &id]);
    let attempts = shown["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{shown:#}");
    assert_eq!(attempts[0]["outcome"], "failed");
    assert!(attempts[0]["error"].as_str().unwrap().contains("SIGKILL"), "{shown:#}");
    assert_eq!(attempts[1]["outcome"], "completed");
    assert_eq!(shown["output"], json!({"n": 5}));
    // The built-in error patterns (on with no configuration) read the crash for what it is.
    let executions = cli(root.path(), &["executions", "list", "--job", &id]);
    let crashed = executions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["status"] == "failure")
        .unwrap_or_else(|| panic!("{executions:#}"));
    assert_eq!(crashed["error"]["kind"], "worker_crashed", "{crashed:#}");
    assert_eq!(crashed["error"]["classification"][0]["pattern"], "worker-crashed", "{crashed:#}");
    node.stop(Duration::from_secs(20));
}

/// Whether process `pid` has ended (gone, or a zombie waiting to be reaped).
fn ended(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

/// J16: a node killed with SIGKILL while a task spins in a loop leaves no worker behind: each
/// worker notices that the kernel which started it is gone, and exits.
#[test]
fn a_node_killed_with_sigkill_leaves_no_worker_behind() {
    let root = tempfile::tempdir().unwrap();
    tasks_dir(root.path());
    let spin = root.path().join("tasks/spin");
    std::fs::create_dir_all(&spin).unwrap();
    std::fs::write(spin.join("metadata.json"), r#"{"name": "spin", "version": "1.0.0", "timeout": 600}"#)
        .unwrap();
    std::fs::write(spin.join("input.schema.json"), "{}").unwrap();
    std::fs::write(spin.join("output.schema.json"), "{}").unwrap();
    std::fs::write(spin.join("main.js"), "function main() { while (true) {} }").unwrap();
    let mut node = Node::start(root.path(), &[("RATCHET_WORKERS__COUNT", "2")]);
    let job = cli(root.path(), &["jobs", "enqueue", "spin"]);
    let id = job["id"].as_str().unwrap().to_owned();
    wait_until("the spinning job to start", Duration::from_secs(20), || {
        cli(root.path(), &["jobs", "show", &id])["status"] == "running"
    });
    let workers = worker_pids(node.child.id());
    assert_eq!(workers.len(), 2, "{workers:?}");
    node.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = node.child.wait();
    wait_until("the orphaned workers to exit", Duration::from_secs(30), || {
        workers.iter().all(|&pid| ended(pid))
    });
}

#[test]
fn concurrency_limits_hold_across_three_nodes() {
    on_sqlite(limits_case);
}

/// docs/reliability.md J18: nodes started at the same instant on a new database all come up
/// (they migrate it one at a time; before, the losers of the race exited with "table jobs
/// already exists").
#[test]
fn nodes_started_together_on_a_new_database_all_come_up() {
    on_sqlite(started_together);
}

#[test]
fn nodes_started_together_on_a_new_postgres_database_all_come_up() {
    on_postgres(started_together);
}

fn started_together(root: &Path, storage: &[&str]) {
    tasks_dir(root);
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::spawn_with(root, storage, &[])).collect();
    for node in &mut nodes {
        node.wait_until_up();
    }
    for node in &mut nodes {
        assert!(node.is_running());
    }
}

#[test]
fn concurrency_limits_hold_across_three_nodes_on_postgres() {
    on_postgres(limits_case);
}

/// docs/reliability.md J17, through three real nodes on one database: a task limited to one run
/// at a time never has two runs overlap; a task limited to one run per key never overlaps two
/// runs of a key, while runs of another key go on beside them.
fn limits_case(root: &Path, storage: &[&str]) {
    let tasks = tasks_dir(root);
    for (name, concurrency) in [("serial", "1"), ("keyed", r#"{"per_key": 1}"#)] {
        let dir = tasks.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for file in ["input.schema.json", "output.schema.json", "main.js"] {
            std::fs::copy(tasks.join("sleepy").join(file), dir.join(file)).unwrap();
        }
        let metadata = format!(r#"{{"name": "{name}", "version": "1.0.0", "concurrency": {concurrency}}}"#);
        std::fs::write(dir.join("metadata.json"), metadata).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let store = runtime.block_on(async {
        match storage {
            ["--data-dir", dir] => ratchet_storage::Store::open_data_dir(Path::new(dir)).await.unwrap(),
            ["--database-url", url] => ratchet_storage::Store::connect(url).await.unwrap(),
            other => panic!("not a storage choice: {other:?}"),
        }
    });
    let config = ratchet_core::Config::default();
    let (registry, _) =
        ratchet_service::TaskRegistry::load(std::slice::from_ref(&tasks), &config.limits).unwrap();
    let enqueue = |task: &str, input: Value, key: Option<&str>| {
        let options =
            ratchet_service::EnqueueOptions { concurrency_key: key.map(Into::into), ..Default::default() };
        runtime
            .block_on(ratchet_service::enqueue(&store, &registry, &config.queue, task, input, options))
            .unwrap();
    };
    for n in 0..6 {
        enqueue("serial", json!({"n": n, "ms": 150}), None);
        let key = ["a", "b"][n % 2];
        enqueue("keyed", json!({"n": n, "ms": 400, "key": key}), Some(key));
    }
    // A key the task does not limit is refused, naming the fix.
    let options = ratchet_service::EnqueueOptions { concurrency_key: Some("a".into()), ..Default::default() };
    let refused = runtime
        .block_on(ratchet_service::enqueue(
            &store,
            &registry,
            &config.queue,
            "sleepy",
            json!({"n": 1, "ms": 1}),
            options,
        ))
        .unwrap_err();
    assert!(refused.to_string().contains("has no per-key limit"), "{refused}");

    // The queue before any node runs: the jobs wait for a worker, none for a limit yet.
    let listed = cli_on(root, storage, &["jobs", "list", "--all"]);
    assert!(listed["items"].as_array().unwrap().iter().all(|j| j["waiting"].is_null()), "{listed:#}");

    let env = [("RATCHET_WORKERS__COUNT", "2")];
    let nodes: Vec<Node> = (0..3).map(|_| Node::start_with(root, storage, &env)).collect();
    // While they run, the jobs held back say why.
    let mut seen_waiting = false;
    wait_until("every job to complete", Duration::from_secs(120), || {
        let listed = cli_on(root, storage, &["jobs", "list", "--all"]);
        let items = listed["items"].as_array().unwrap().clone();
        seen_waiting |= items.iter().any(|j| j["waiting"] == "concurrency");
        items.iter().all(|j| j["status"] == "completed")
    });
    drop(nodes);
    assert!(seen_waiting, "jobs held back by a limit are listed as waiting: concurrency");

    let records = runtime.block_on(store.executions(None, 100)).unwrap();
    assert_eq!(records.len(), 12, "one run per job");
    let spans = |task: &str, key: Option<&str>| -> Vec<(i64, i64)> {
        let mut spans: Vec<(i64, i64)> = records
            .iter()
            .filter(|r| r.task == task && key.is_none_or(|key| r.input["key"] == key))
            .map(|r| (r.started_at, r.finished_at))
            .collect();
        spans.sort_unstable();
        spans
    };
    let no_overlap = |spans: &[(i64, i64)]| spans.windows(2).all(|pair| pair[0].1 <= pair[1].0);
    assert!(no_overlap(&spans("serial", None)), "serial runs overlapped: {:?}", spans("serial", None));
    for key in ["a", "b"] {
        assert!(no_overlap(&spans("keyed", Some(key))), "key {key}: {:?}", spans("keyed", Some(key)));
    }
    let (a, b) = (spans("keyed", Some("a")), spans("keyed", Some("b")));
    let beside = a.iter().any(|x| b.iter().any(|y| x.0 < y.1 && y.0 < x.1));
    assert!(beside, "runs of key b went on beside runs of key a: {a:?} {b:?}");
    runtime.block_on(store.close());
}

/// docs/reliability.md J22: readiness asks the database a question that takes the same time
/// whatever it holds. It used to count every job kept, which outlasted the probe's 2 s on a
/// table that was locked or held months of history, and the node was reported not ready.
#[test]
fn readiness_does_not_wait_for_a_scan_of_the_jobs() {
    on_postgres(|root, storage| {
        use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
        tasks_dir(root);
        let node = Node::start_with(root, storage, &[]);
        let ["--database-url", url] = storage else { panic!("a PostgreSQL URL: {storage:?}") };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The connection is dropped within the runtime, also when an assertion fails.
        let _entered = runtime.enter();
        // Whoever reads the jobs table now waits until the lock goes.
        let lock = runtime.block_on(async {
            let database = sea_orm::Database::connect(*url).await.unwrap();
            let locked = database.begin().await.unwrap();
            locked.execute_unprepared("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE").await.unwrap();
            (database, locked)
        });
        let (status, body) = get(node.port, "/ready").unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.contains(r#""database":"ok""#), "{body}");
        runtime.block_on(lock.1.rollback()).unwrap();
        node.stop(Duration::from_secs(20));
    });
}

/// docs/reliability.md J26: on PostgreSQL the database wakes idle nodes, for the jobs the CLI
/// writes straight into the database (no node heard the request).
#[test]
fn postgres_wakes_an_idle_node_for_jobs_and_resumes_from_elsewhere() {
    on_postgres(|root, storage| {
        an_idle_node_wakes_for_jobs_and_resumes_from_the_cli(root, storage).stop(Duration::from_secs(20));
    });
}

/// docs/reliability.md J26: on SQLite the CLI rings the doorbell beside the database, which
/// the node watches; a doorbell removed while the node runs is made and watched again.
#[test]
fn sqlite_wakes_an_idle_node_for_jobs_and_resumes_from_the_cli() {
    on_sqlite(|root, storage| {
        let node = an_idle_node_wakes_for_jobs_and_resumes_from_the_cli(root, storage);
        let doorbell = root.join("data").join("ratchet.db-wake");
        std::fs::remove_file(&doorbell).unwrap();
        // No CLI runs meanwhile (it would make the file itself): the node makes it again.
        wait_until("the node to make the removed doorbell again", Duration::from_secs(30), || {
            doorbell.is_file()
        });
        cli_job_completes(root, storage, 5, "the job rung on the new doorbell to complete");
        node.stop(Duration::from_secs(20));
    });
}

/// docs/reliability.md J26: nodes that share one SQLite file ring its doorbell for each other.
/// A job added through the API of a node that cannot take it (its one consumer holds a long
/// job) starts on an idle node whose poll is ten minutes away. The busy node rings for the idle
/// one from the moment the idle one announced itself, not from the busy node's next heartbeat.
#[test]
fn sqlite_nodes_sharing_a_file_ring_for_each_other() {
    on_sqlite(|root, storage| {
        let tasks = tasks_dir(root);
        // The long job must outlast the test (sleepy's own timeout is 30 s).
        let metadata = r#"{"name": "sleepy", "version": "1.0.0", "timeout": 900}"#;
        std::fs::write(tasks.join("sleepy/metadata.json"), metadata).unwrap();
        let slow_poll = ("RATCHET_QUEUE__POLL_INTERVAL_MS", "600000");
        let busy_env = [
            slow_poll,
            ("RATCHET_WORKERS__COUNT", "1"),
            ("RATCHET_QUEUE__CONCURRENCY", "1"),
            ("RATCHET_LOG", "warn,ratchet_service::node=info"),
        ];
        let busy = Node::start_with(root, storage, &busy_env);
        let long = enqueue_sleepy(root, storage, 0, 600_000);
        wait_until("the busy node to start its long job", Duration::from_secs(20), || {
            job_status(root, storage, &long) == "running"
        });
        let idle = Node::start_with(root, storage, &[slow_poll]);
        // The busy node hears the announcement a moment after the idle node is up: jobs go in
        // until one ran.
        let mut added = 0;
        wait_until(
            "a job added through the busy node to complete on the idle one",
            Duration::from_secs(20),
            || {
                added += 1;
                let job = json!({"task": "sleepy", "input": {"n": added, "ms": 1}});
                let (status, body) = post(busy.port, "/api/v1/jobs", &job);
                assert_eq!(status, 201, "{body}");
                jobs_in(root, storage, "completed") > 0
            },
        );
        assert_eq!(job_status(root, storage, &long), "running", "the busy node's long job ended");
        idle.stop(Duration::from_secs(20));
        busy.signal(nix::sys::signal::Signal::SIGKILL);
        let (_, log) = busy.wait(Duration::from_secs(20));
        // Its heartbeat (every 10 s) would also have counted the idle node, but later; it can
        // only come first in the moment between the idle node's record and its announcement.
        assert!(
            log.contains("other nodes run on this database (counted when another process rang): ringing"),
            "the busy node did not start ringing when the idle one announced itself: {log}"
        );
    });
}

/// Starts a node whose poll (`queue.poll_interval_ms`) is `poll_ms` away, and waits until it
/// hears the other nodes' channels (at once on SQLite).
fn listening_node(root: &Path, storage: &[&str], poll_ms: &str) -> Node {
    let node = Node::start_with(root, storage, &[("RATCHET_QUEUE__POLL_INTERVAL_MS", poll_ms)]);
    wait_until("the node to hear the other nodes' channels", Duration::from_secs(20), || {
        get(node.port, "/ready").is_some_and(|(_, body)| body.contains(r#""other_nodes":"ok""#))
    });
    node
}

/// docs/reliability.md J26: jobs added with a due time ahead wake no idle node before they
/// are due: neither the node whose API added them (SQLite and PostgreSQL) nor, on PostgreSQL,
/// the nodes the database tells of jobs the CLI added. A woken node would claim at once and
/// find nothing (a committed step); instead it sets an alarm for the due time. A job due in two
/// seconds then starts on a node whose poll is ten minutes away.
#[test]
fn jobs_due_ahead_wake_no_idle_node_before_their_time() {
    on_sqlite(due_ahead_case);
}

/// [`jobs_due_ahead_wake_no_idle_node_before_their_time`] on PostgreSQL.
#[test]
fn jobs_due_ahead_wake_no_idle_node_before_their_time_on_postgres() {
    on_postgres(due_ahead_case);
}

fn due_ahead_case(root: &Path, storage: &[&str]) {
    use ratchet_core::time::{format, now_ms};
    tasks_dir(root);
    let node = listening_node(root, storage, "600000");
    // The claims a node makes as it starts (and as it starts watching for wake-ups) are done.
    let steps_before = settled_commit_steps(node.port);

    let job_at =
        |n: u64, at: i64| json!({"task": "sleepy", "input": {"n": n, "ms": 1}, "run_at": format(at)});
    let in_an_hour = now_ms() + 3_600_000;
    for n in 0..5 {
        let (status, body) = post(node.port, "/api/v1/jobs", &job_at(n, in_an_hour));
        assert_eq!(status, 201, "{body}");
    }
    let on_postgres = storage[0] == "--database-url";
    if on_postgres {
        let input = json!({"n": 5, "ms": 1}).to_string();
        cli_on(root, storage, &["jobs", "enqueue", "sleepy", "--input-json", &input, "--run-at", "1h"]);
    }
    // A wake-up reaches the claimer within milliseconds; a second is generous.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        commit_steps(node.port),
        steps_before,
        "the idle node claimed for jobs due in an hour (postgres: {on_postgres})"
    );

    let (status, body) = post(node.port, "/api/v1/jobs", &job_at(6, now_ms() + 2_000));
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
    wait_until("the job due in two seconds to complete", Duration::from_secs(30), || {
        job_status(root, storage, &id) == "completed"
    });
    assert_eq!(
        jobs_in(root, storage, "queued"),
        if on_postgres { 6 } else { 5 },
        "the jobs due in an hour wait"
    );
    node.stop(Duration::from_secs(20));
}

/// docs/reliability.md J26: a schedule added elsewhere reaches a node's scheduler at once: the
/// node's poll (`queue.poll_interval_ms`, which also bounds how long its scheduler goes without
/// looking) is ten minutes away, yet a schedule firing every second that the CLI adds (the
/// doorbell on SQLite, the database's notification on PostgreSQL) runs within seconds, and so
/// does one added through the node's API and one the CLI resumes.
#[test]
fn schedules_added_elsewhere_fire_on_a_node_with_a_long_poll() {
    on_sqlite(schedules_elsewhere_case);
}

/// [`schedules_added_elsewhere_fire_on_a_node_with_a_long_poll`] on PostgreSQL.
#[test]
fn schedules_added_elsewhere_fire_on_a_node_with_a_long_poll_on_postgres() {
    on_postgres(schedules_elsewhere_case);
}

fn schedules_elsewhere_case(root: &Path, storage: &[&str]) {
    tasks_dir(root);
    let node = listening_node(root, storage, "600000");
    let input = json!({"n": 1, "ms": 1});
    let fired = |name: &str| -> usize {
        let id = cli_on(root, storage, &["schedules", "show", name])["id"].as_str().unwrap().to_owned();
        let jobs = cli_on(root, storage, &["jobs", "list", "--all"]);
        let prefix = format!("schedule:{id}:");
        jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["idempotency_key"].as_str().is_some_and(|k| k.starts_with(&prefix)))
            .count()
    };
    // Far sooner than the ten minutes' look, and generous for a busy machine.
    let soon = Duration::from_secs(20);

    let every_second = ["--cron", "* * * * * *", "--input-json"];
    let add = |name: &str| {
        let mut args = vec!["schedules", "add", "sleepy", "--name", name];
        args.extend(every_second);
        let input = input.to_string();
        args.push(&input);
        cli_on(root, storage, &args);
    };
    add("from-the-cli");
    wait_until("the CLI's schedule to fire", soon, || fired("from-the-cli") > 0);
    cli_on(root, storage, &["schedules", "pause", "from-the-cli"]);

    let api = json!({"name": "from-the-api", "task": "sleepy", "cron": "* * * * * *", "input": input});
    let (status, body) = post(node.port, "/api/v1/schedules", &api);
    assert_eq!(status, 201, "{body}");
    wait_until("the API's schedule to fire", soon, || fired("from-the-api") > 0);
    cli_on(root, storage, &["schedules", "remove", "from-the-api"]);

    let before = fired("from-the-cli");
    cli_on(root, storage, &["schedules", "resume", "from-the-cli"]);
    wait_until("the resumed schedule to fire", soon, || fired("from-the-cli") > before);
    node.stop(Duration::from_secs(20));
}

/// docs/reliability.md J27: a node whose listening connection is cut (PostgreSQL restarted, an
/// administrator's `pg_terminate_backend`, a proxy that closes idle connections) knows it may
/// have missed what the others said meanwhile, although the connection is made again at once:
/// its idle claimer looks for jobs (its poll is ten minutes away), and followers of
/// `/api/v1/events` get a `lagged` event, which tells them to read the database again. It then
/// hears the others as before: a job the CLI adds starts at once.
#[test]
fn a_node_whose_listening_connection_is_cut_catches_up_on_postgres() {
    on_postgres(|root, storage| {
        tasks_dir(root);
        let node = listening_node(root, storage, "600000");
        let steps_before = settled_commit_steps(node.port);
        let mut events = EventStream::open(node.port, "/api/v1/events");

        let cut = cut_listening_connections(storage[1]);
        assert!(cut > 0, "the node has no listening connection to cut");
        events.wait_for("event: lagged", Duration::from_secs(30));
        wait_until("a claim after the cut", Duration::from_secs(20), || {
            commit_steps(node.port) > steps_before
        });

        cli_job_completes(root, storage, 1, "the job the CLI added to complete");
        node.stop(Duration::from_secs(20));
    });
}

/// docs/reliability.md J27: an idle node on PostgreSQL that hears the database's wake-ups does
/// not poll at `queue.poll_interval_ms` (200 ms here, the default): the database tells it of
/// every job that becomes claimable, so it looks only every 5 s. A job the CLI adds still
/// starts.
#[test]
fn an_idle_node_that_hears_the_database_rarely_polls_on_postgres() {
    on_postgres(|root, storage| {
        tasks_dir(root);
        let node = listening_node(root, storage, "200");
        let before = settled_commit_steps(node.port);
        std::thread::sleep(Duration::from_secs(3));
        let claims = commit_steps(node.port) - before;
        assert!(claims <= 1, "an idle node that hears the database claimed {claims} times in 3 s");

        cli_job_completes(root, storage, 1, "the job the CLI added to complete");
        node.stop(Duration::from_secs(20));
    });
}

/// docs/reliability.md J26: an idle node claims once for each job its API adds: the
/// database's wake-up for the jobs names the node, which woke its own claimer as it added them
/// and ignores it, and a claim that finds fewer jobs than it asked for is the last until the
/// claimer is woken again. Ten jobs added one at a time, each run before the next, cost two
/// queue steps each (the claim and the end); a node that claimed again after a short claim
/// took three, and on PostgreSQL four when it heard its own wake-up.
#[test]
fn a_node_claims_once_for_each_job_its_api_adds() {
    on_sqlite(claims_once_case);
}

/// [`a_node_claims_once_for_each_job_its_api_adds`] on PostgreSQL.
#[test]
fn a_node_claims_once_for_each_job_its_api_adds_on_postgres() {
    on_postgres(claims_once_case);
}

fn claims_once_case(root: &Path, storage: &[&str]) {
    tasks_dir(root);
    let node = listening_node(root, storage, "600000");
    let before = settled_commit_steps(node.port);
    let jobs = 10;
    for n in 0..jobs {
        let (status, body) =
            post(node.port, "/api/v1/jobs", &json!({"task": "sleepy", "input": {"n": n, "ms": 1}}));
        assert_eq!(status, 201, "{body}");
        let id = serde_json::from_str::<Value>(&body).unwrap()["id"].as_str().unwrap().to_owned();
        wait_until("the job to complete", Duration::from_secs(20), || {
            get(node.port, &format!("/api/v1/jobs/{id}"))
                .is_some_and(|(_, job)| job.contains(r#""status":"completed""#))
        });
    }
    // A wake-up reaches the claimer within milliseconds; a second is generous.
    std::thread::sleep(Duration::from_secs(1));
    let steps = commit_steps(node.port) - before;
    assert!(steps <= 2 * jobs + 2, "{steps} queue steps for {jobs} jobs added one at a time");
    node.stop(Duration::from_secs(20));
}

/// Cuts every connection that listens for notifications on the PostgreSQL database at `url`,
/// as `pg_terminate_backend` does; how many it cut.
fn cut_listening_connections(url: &str) -> usize {
    use sea_orm::ConnectionTrait;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let db = sea_orm::Database::connect(url).await.unwrap();
        let sql = "SELECT pg_terminate_backend(pid) AS cut FROM pg_stat_activity \
                   WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'";
        let cut = db
            .query_all_raw(sea_orm::Statement::from_string(sea_orm::DbBackend::Postgres, sql))
            .await
            .unwrap();
        db.close().await.unwrap();
        cut.len()
    })
}

/// A follower of a node's server-sent events, read as text.
struct EventStream {
    stream: std::net::TcpStream,
    received: String,
}

impl EventStream {
    fn open(port: u16, path: &str) -> EventStream {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
            .unwrap();
        let mut events = EventStream { stream, received: String::new() };
        events.wait_for("text/event-stream", Duration::from_secs(20));
        events
    }

    /// Reads until what was received holds `needle`; panics after `limit`.
    fn wait_for(&mut self, needle: &str, limit: Duration) {
        let started = Instant::now();
        let mut buffer = [0u8; 4096];
        while !self.received.contains(needle) {
            let left = limit
                .checked_sub(started.elapsed())
                .unwrap_or_else(|| panic!("no {needle:?} within {limit:?}; received:\n{}", self.received));
            self.stream.set_read_timeout(Some(left.max(Duration::from_millis(10)))).unwrap();
            match self.stream.read(&mut buffer) {
                Ok(0) => panic!("the stream ended before {needle:?}; received:\n{}", self.received),
                Ok(n) => self.received.push_str(&String::from_utf8_lossy(&buffer[..n])),
                Err(error)
                    if matches!(
                        error.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(error) => panic!("reading the events: {error}"),
            }
        }
    }
}

/// docs/reliability.md J26, the part both stores share: a node whose poll is a minute away
/// starts the jobs the CLI adds (one, then a file of them) and resumes the queue when the CLI
/// lifts its pause, within seconds: the database's notification (PostgreSQL) or the doorbell
/// file (SQLite) wakes it. Returns the node, still running.
fn an_idle_node_wakes_for_jobs_and_resumes_from_the_cli(root: &Path, storage: &[&str]) -> Node {
    tasks_dir(root);
    let node = listening_node(root, storage, "60000");
    let enqueue = |n: u64| enqueue_sleepy(root, storage, n, 1);
    let status = |id: &str| job_status(root, storage, id);
    // Far sooner than the minute's poll, and generous for a busy machine.
    let soon = Duration::from_secs(20);

    let id = enqueue(1);
    wait_until("the CLI's job to complete", soon, || status(&id) == "completed");

    let file = root.join("batch.jsonl");
    std::fs::write(&file, "{\"n\": 2, \"ms\": 1}\n{\"n\": 3, \"ms\": 1}\n").unwrap();
    cli_on(root, storage, &["jobs", "enqueue", "sleepy", "--input-file", file.to_str().unwrap()]);
    wait_until("the CLI's file of jobs to complete", soon, || jobs_in(root, storage, "completed") == 3);

    cli_on(root, storage, &["queue", "pause"]);
    let steps_before = commit_steps(node.port);
    let id = enqueue(4);
    // The node woke for the job (a claim is a committed step), found the queue paused, and
    // went back to its poll.
    wait_until("the node to claim after the enqueue", soon, || commit_steps(node.port) > steps_before);
    assert_eq!(status(&id), "queued", "a job ran while the queue was paused");
    cli_on(root, storage, &["queue", "resume"]);
    wait_until("the resumed job to complete", soon, || status(&id) == "completed");
    node
}
