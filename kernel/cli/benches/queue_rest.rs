//! The queue seen from outside, as a user sees it: release `ratchet serve` nodes (2 workers
//! each, every execution recorded) driven over REST, on SQLite and on PostgreSQL, with one
//! node and with three nodes on one database. Run through `cargo xtask bench`.
//!
//! 1. Drain: the queue is paused, JOBS jobs of the `addition` sample go in through
//!    `POST /api/v1/jobs/batch`, and the queue is resumed: every job is due at that instant.
//!    Timed from the resume to the `finished_at` of the last execution recorded.
//! 2. Add-to-start (one node, idle): `POST /api/v1/jobs` of one job, then its execution's
//!    `started_at` minus the job's `created_at` (the node's clock, in milliseconds).
//! 3. Due-to-start (one node, idle): a job enqueued with `run_at` 50 ms ahead; its execution's
//!    `started_at` minus the job's `run_at`.
//!
//! Each drain also reports the CPU time the whole machine spent per job (servers, workers,
//! PostgreSQL and this client, from `/proc/stat`): on 2 cores the drain is CPU-bound, so this
//! is the figure that moves the ceiling, and it is steadier than the wall time of a busy VM.
//! It is split by role from `/proc` ([`CpuSplit`]): the workers (Boa), the nodes (SQLite's
//! writes included) and PostgreSQL; the rest is the client and the system. Several nodes on
//! PostgreSQL also report how the drain spread over them ([`spread_over_nodes`]).
//!
//! `-- [JOBS [SINGLES]] [sqlite|postgres] [1|3] [pairs=N]` (`sqlite`/`postgres` and `1`/`3`
//! keep one store or one cluster size; `pairs=N` drains with one node and with three, N times
//! interleaved, and reports the ratio of each pair: see [`Bench::pairs`]); RATCHET_TEST_POSTGRES names the PostgreSQL server (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), whose `psql` creates and drops the database.
//! `postgres://postgres@localhost/postgres?host=/var/run/postgresql` measures the Unix socket
//! the README recommends for a local server: no TCP and no TLS (sqlx's default `sslmode` is
//! `prefer`, so a server with `ssl = on` encrypts even loopback traffic).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ratchet_core::time::{format, now_ms, parse_rfc3339};
use serde_json::{Value, json};

/// Jobs per `POST /api/v1/jobs/batch` (the endpoint takes at most 10,000).
const BATCH: usize = 1_000;
/// How long a drain may take before the bench gives up.
const DRAIN_DEADLINE: Duration = Duration::from_secs(300);
/// How often a drain asks whether it is over. `GET /api/v1/queue` counts every job kept (a scan
/// of the table, reused for ten times its cost: `ratchet_service::shared_count`), and before
/// that reuse a poll every 20 ms took CPU from the drain it measured. The drain's time comes
/// from the last execution's `finished_at`, not from when the bench notices, so asking less
/// often changes only the bench's own load.
const DRAIN_POLL: Duration = Duration::from_millis(250);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let numbers: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let jobs = numbers.first().copied().unwrap_or(2_000);
    let singles = numbers.get(1).copied().unwrap_or(200);
    let sizes: Vec<usize> = match numbers.get(2) {
        Some(&nodes) => vec![nodes],
        None => vec![1, 3],
    };
    let pairs = args.iter().find_map(|a| a.strip_prefix("pairs=")).map(|n| {
        n.parse::<usize>().ok().filter(|&n| n > 0).unwrap_or_else(|| panic!("pairs={n}: expected a count"))
    });
    let stores: Vec<Store> = [Store::Sqlite, Store::Postgres]
        .into_iter()
        .filter(|store| {
            !args.iter().any(|a| a == "sqlite" || a == "postgres") || args.iter().any(|a| a == store.arg())
        })
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ratchet =
        std::env::var("RATCHET_BIN").map_or_else(|_| root.join("target/release/ratchet"), PathBuf::from);
    let bench = Bench { ratchet, root, jobs };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!("queue over REST: {jobs} jobs per drain, {singles} single jobs, 2 workers per node");
    match pairs {
        None => {
            for nodes in sizes {
                for &store in &stores {
                    runtime.block_on(bench.run(store, nodes, singles));
                }
            }
        }
        Some(pairs) => {
            for &store in &stores {
                runtime.block_on(bench.pairs(store, pairs));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    fn arg(self) -> &'static str {
        match self {
            Store::Sqlite => "sqlite",
            Store::Postgres => "postgres",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Store::Sqlite => "SQLite",
            Store::Postgres => "PostgreSQL",
        }
    }
}

struct Bench {
    ratchet: PathBuf,
    root: PathBuf,
    jobs: usize,
}

impl Bench {
    /// Starts `nodes` nodes on a new database of `store`, measures them, and stops them: the
    /// drain's jobs per second, or `None` when PostgreSQL cannot be reached.
    async fn run(&self, store: Store, nodes: usize, singles: usize) -> Option<f64> {
        let dir = std::env::temp_dir().join(format!(
            "ratchet-bench-queue-rest-{}-{}-{nodes}",
            store.arg(),
            std::process::id()
        ));
        let data = dir.join("data");
        let (database, storage) = match store {
            Store::Sqlite => (None, vec!["--data-dir".to_owned(), data.to_string_lossy().into_owned()]),
            Store::Postgres => {
                let database = Postgres::create(nodes)?;
                let url = database.url.clone();
                (Some(database), vec!["--database-url".to_owned(), url])
            }
        };
        let storage: Vec<&str> = storage.iter().map(String::as_str).collect();
        let cluster = Cluster::start(&self.ratchet, &self.root, &dir, &storage, nodes);
        let url = database.as_ref().map(|database| database.url.as_str());
        let rate = measure(&cluster, store.label(), url, self.jobs, singles).await;
        drop(cluster);
        drop(database);
        let _ = std::fs::remove_dir_all(&dir);
        Some(rate)
    }

    /// One node against three, `pairs` times, interleaved (the order swaps every pair), each
    /// on a new database: a busy VM changes speed by more than the difference measured, so
    /// only drains taken side by side compare. Prints each pair's ratio and the medians.
    async fn pairs(&self, store: Store, pairs: usize) {
        let (mut one, mut three, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for pair in 0..pairs {
            let order = if pair % 2 == 0 { [1, 3] } else { [3, 1] };
            let mut rates = [0.0; 2];
            for nodes in order {
                let Some(rate) = self.run(store, nodes, 0).await else { return };
                rates[usize::from(nodes == 3)] = rate;
            }
            println!("  {}, pair {}: 3 nodes / 1 node = {:.2}", store.label(), pair + 1, rates[1] / rates[0]);
            one.push(rates[0]);
            three.push(rates[1]);
            ratios.push(rates[1] / rates[0]);
        }
        println!(
            "  {}: {pairs} interleaved pairs: 1 node {}, 3 nodes {} jobs/s; 3 nodes / 1 node: median {:.2}, {} of \
             {pairs} pairs at or above 1",
            store.label(),
            spread(&one),
            spread(&three),
            median(&ratios),
            ratios.iter().filter(|&&r| r >= 1.0).count(),
        );
    }
}

/// "median M (min-max)" of jobs per second.
fn spread(rates: &[f64]) -> String {
    let low = rates.iter().copied().fold(f64::INFINITY, f64::min);
    let high = rates.iter().copied().fold(0.0, f64::max);
    format!("median {:.0} ({low:.0}-{high:.0})", median(rates))
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The drain's jobs per second (and prints what it measured); `database` is PostgreSQL's URL.
async fn measure(cluster: &Cluster, store: &str, database: Option<&str>, jobs: usize, singles: usize) -> f64 {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for port in &cluster.ports {
        common::wait_until_ready(&client, *port, Duration::from_secs(60)).await;
    }
    let api = Api { client, base: format!("http://127.0.0.1:{}/api/v1", cluster.ports[0]) };
    let label =
        format!("{store}, {} node{}", cluster.ports.len(), if cluster.ports.len() == 1 { "" } else { "s" });
    drain(&api, &cluster.pids(), 200).await; // warm-up: workers, connections, pages
    let commits_before = commit_steps(&api.client, &cluster.ports).await;
    let Drained { resumed, seconds, rate, cpu, split } = drain(&api, &cluster.pids(), jobs).await;
    let (steps, commits) = commit_steps(&api.client, &cluster.ports).await;
    let per_commit = (steps - commits_before.0) / (commits - commits_before.1).max(1.0);
    let per_job = |cpu: Duration| cpu.as_secs_f64() * 1000.0 / jobs as f64;
    println!(
        "  {label}: drain of {jobs} jobs: {seconds:.2} s, {rate:.0} jobs/s ({per_commit:.1} consumer steps per \
         commit; {:.2} ms of CPU per job, whole machine: workers {:.2}, nodes {:.2}, PostgreSQL {:.2})",
        per_job(cpu),
        per_job(split.workers),
        per_job(split.nodes),
        per_job(split.postgres),
    );
    if let (Some(url), true) = (database, cluster.ports.len() > 1) {
        println!("  {label}: {}", spread_over_nodes(url, resumed));
    }
    // SINGLES = 0 measures the drain alone.
    if cluster.ports.len() == 1 && singles > 0 {
        let mut latencies = Vec::with_capacity(singles);
        for _ in 0..singles {
            latencies.push(api.one_job(None).await);
        }
        println!("  {label}: add-to-start: {}", summary(&latencies));
        let mut latencies = Vec::with_capacity(singles / 4);
        for _ in 0..(singles / 4).max(1) {
            latencies.push(api.one_job(Some(0.05)).await);
        }
        println!("  {label}: due-to-start (jobs delayed 50 ms): {}", summary(&latencies));
    }
    rate
}

/// What one drain measured.
struct Drained {
    /// When the queue was resumed (this machine's clock, milliseconds).
    resumed: i64,
    /// From the resume to the last execution's `finished_at`.
    seconds: f64,
    /// Jobs per second.
    rate: f64,
    /// The CPU time the machine spent from the resume until the last job was seen completed,
    /// in all and by role.
    cpu: Duration,
    split: CpuSplit,
}

/// Enqueues `jobs` jobs on a paused queue, resumes it, and waits for the last execution
/// (`nodes` are the nodes' process ids).
async fn drain(api: &Api, nodes: &[u32], jobs: usize) -> Drained {
    let before = api.completed().await;
    api.post("/queue/pause", json!({})).await;
    let mut left = jobs;
    while left > 0 {
        let n = left.min(BATCH);
        let batch: Vec<Value> =
            (0..n).map(|i| json!({"task": "addition", "input": {"num1": i, "num2": 1}})).collect();
        api.post("/jobs/batch", json!({ "jobs": batch })).await;
        left -= n;
    }
    let resumed = now_ms();
    let (cpu_before, split_before) = (machine_cpu(), CpuSplit::now(nodes));
    api.post("/queue/resume", json!({})).await;
    let started = Instant::now();
    while api.completed().await < before + jobs as u64 {
        assert!(started.elapsed() < DRAIN_DEADLINE, "the drain did not end within {DRAIN_DEADLINE:?}");
        tokio::time::sleep(DRAIN_POLL).await;
    }
    let (cpu, split) = (machine_cpu().saturating_sub(cpu_before), CpuSplit::now(nodes).since(&split_before));
    let last = api.get("/executions?sort=-finished_at&limit=1").await;
    let finished = time_of(&last["items"][0], "finished_at");
    let seconds = (finished - resumed).max(1) as f64 / 1000.0;
    Drained { resumed, seconds, rate: jobs as f64 / seconds, cpu, split }
}

/// The CPU time every core of the machine has spent busy since boot (`/proc/stat`: user,
/// nice, system, irq and softirq; not idle, I/O wait or steal).
fn machine_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("the first line of /proc/stat");
    let ticks: Vec<u64> = line.split_whitespace().skip(1).filter_map(|n| n.parse().ok()).collect();
    clock_ticks([0, 1, 2, 5, 6].iter().filter_map(|&i| ticks.get(i)).sum())
}

/// `/proc`'s CPU times are in USER_HZ, which the kernel fixes at 100 for user space on every
/// architecture Linux runs this on (`sysconf(_SC_CLK_TCK)`).
fn clock_ticks(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}

/// CPU time (user and system) by role, from `/proc`: the nodes' own (SQLite's thread included),
/// their workers' (the live ones, and those the nodes recycled and reaped), and every process
/// named `postgres` (the server this bench drives; on a shared server, others' load too).
/// Sampled when [`machine_cpu`] is, so it spans the drain and the bench's polls.
#[derive(Default)]
struct CpuSplit {
    nodes: Duration,
    workers: Duration,
    postgres: Duration,
}

impl CpuSplit {
    fn now(nodes: &[u32]) -> CpuSplit {
        let mut split = CpuSplit::default();
        let Ok(processes) = std::fs::read_dir("/proc") else { return split };
        for process in processes.flatten() {
            let Some(pid) = process.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
                continue;
            };
            let Some(stat) = ProcStat::read(pid) else { continue };
            if nodes.contains(&pid) {
                split.nodes += stat.own;
                split.workers += stat.reaped_children;
            } else if nodes.contains(&stat.parent) {
                split.workers += stat.own;
            } else if stat.name == "postgres" {
                split.postgres += stat.own;
            }
        }
        split
    }

    fn since(&self, before: &CpuSplit) -> CpuSplit {
        CpuSplit {
            nodes: self.nodes.saturating_sub(before.nodes),
            workers: self.workers.saturating_sub(before.workers),
            postgres: self.postgres.saturating_sub(before.postgres),
        }
    }
}

/// What `/proc/PID/stat` says of a process's CPU time.
struct ProcStat {
    name: String,
    parent: u32,
    own: Duration,
    reaped_children: Duration,
}

impl ProcStat {
    fn read(pid: u32) -> Option<ProcStat> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The name is in parentheses and may hold spaces; the fields after it are plain.
        let (open, close) = (stat.find('(')?, stat.rfind(')')?);
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let tick = |index: usize| fields.get(index).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
        // After the name: state (0), ppid (1), ... utime (11), stime (12), cutime (13), cstime (14).
        Some(ProcStat {
            name: stat[open + 1..close].to_owned(),
            parent: u32::try_from(tick(1)).ok()?,
            own: clock_ticks(tick(11) + tick(12)),
            reaped_children: clock_ticks(tick(13) + tick(14)),
        })
    }
}

/// The consumers' steps and commits so far, over every node (`ratchet_queue_commit_steps`).
async fn commit_steps(client: &reqwest::Client, ports: &[u16]) -> (f64, f64) {
    let mut total = (0.0, 0.0);
    for port in ports {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let text = client.get(&url).send().await.unwrap().text().await.unwrap();
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {url}"))
        };
        total.0 += value("ratchet_queue_commit_steps_sum ");
        total.1 += value("ratchet_queue_commit_steps_count ");
    }
    total
}

fn time_of(value: &Value, field: &str) -> i64 {
    let text = value[field].as_str().unwrap_or_else(|| panic!("no {field} in {value}"));
    parse_rfc3339(text).unwrap_or_else(|e| panic!("{field} {text}: {e}"))
}

fn summary(latencies: &[i64]) -> String {
    let mut sorted: Vec<Duration> =
        latencies.iter().map(|ms| Duration::from_millis(u64::try_from(*ms).unwrap_or(0))).collect();
    sorted.sort_unstable();
    let at = |q: f64| common::quantile_ms(&sorted, q);
    format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (server clock, 1 ms resolution)",
        at(0.5),
        at(0.99),
        at(1.0)
    )
}

struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> Value {
        let response = self.client.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {answer}");
        answer
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "GET {path}: {status} {answer}");
        answer
    }

    async fn completed(&self) -> u64 {
        self.get("/queue").await["counts"]["completed"].as_u64().unwrap_or(0)
    }

    /// Enqueues one job (delayed by `delay_secs`), waits for its execution, and answers how
    /// many milliseconds after its due time (its creation, or its `run_at`) it started.
    async fn one_job(&self, delay_secs: Option<f64>) -> i64 {
        let mut request = json!({"task": "addition", "input": {"num1": 1, "num2": 2}});
        if let Some(delay) = delay_secs {
            request["run_at"] = json!(format(now_ms() + (delay * 1000.0) as i64));
        }
        let job = self.post("/jobs", request).await;
        let id = job["id"].as_str().expect("the job's id").to_owned();
        let started = Instant::now();
        loop {
            let executions = self.get(&format!("/executions?job_id={id}")).await;
            if let Some(execution) = executions["items"].as_array().and_then(|items| items.first()) {
                let due =
                    if delay_secs.is_some() { time_of(&job, "run_at") } else { time_of(&job, "created_at") };
                return time_of(execution, "started_at") - due;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "job {id} did not run within 30 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// `ratchet serve` nodes on one database, stopped when dropped.
struct Cluster {
    nodes: Vec<Child>,
    ports: Vec<u16>,
}

impl Cluster {
    fn start(ratchet: &Path, root: &Path, dir: &Path, storage: &[&str], nodes: usize) -> Cluster {
        std::fs::create_dir_all(dir).unwrap();
        // One client sends everything: no per-client rate limit.
        let config = dir.join("ratchet.yaml");
        std::fs::write(&config, "server:\n  rate_limit_per_second: 0\n").unwrap();
        let mut cluster = Cluster { nodes: Vec::new(), ports: Vec::new() };
        for _ in 0..nodes {
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let node = Command::new(ratchet)
                .arg("--config")
                .arg(&config)
                .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
                .args(storage)
                .arg("--tasks")
                .arg(root.join("examples/tasks"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", ratchet.display()));
            cluster.nodes.push(node);
            cluster.ports.push(port);
        }
        cluster
    }
}

impl Cluster {
    fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(Child::id).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
    }
}

/// A database of its own on the PostgreSQL server, dropped with it.
struct Postgres {
    admin: String,
    name: String,
    url: String,
}

impl Postgres {
    fn create(nodes: usize) -> Option<Postgres> {
        let admin = std::env::var("RATCHET_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("ratchet_bench_rest_{}_{nodes}", std::process::id());
        if let Err(problem) = psql(&admin, &format!("CREATE DATABASE {name}")) {
            println!("  PostgreSQL: skipped, cannot create a database on {admin}: {problem}");
            return None;
        }
        let mut url = url::Url::parse(&admin).expect("RATCHET_TEST_POSTGRES is a URL");
        url.set_path(&name);
        Some(Postgres { admin, name, url: url.to_string() })
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Err(problem) = psql(&self.admin, &format!("DROP DATABASE {} WITH (FORCE)", self.name)) {
            eprintln!("cannot drop the bench's database {}: {problem}", self.name);
        }
    }
}

/// How the drain resumed at `since` spread over the nodes: each node's share of its
/// executions, when its first started after the resume and how long before the drain's last
/// end its own last ended (a node that ran dry early idles while the others finish).
fn spread_over_nodes(url: &str, since: i64) -> String {
    let sql = format!(
        "SELECT count(*), min(started_at) - {since}, \
         (SELECT max(finished_at) FROM executions WHERE started_at >= {since}) - max(finished_at) \
         FROM executions WHERE started_at >= {since} GROUP BY node ORDER BY node"
    );
    let rows = match psql(url, &sql) {
        Ok(rows) => rows,
        Err(problem) => return format!("no spread over nodes: {problem}"),
    };
    let nodes: Vec<String> = rows
        .lines()
        .map(|line| match line.split(' ').collect::<Vec<_>>()[..] {
            [runs, first, idle] => format!("{runs} runs, first at {first} ms, idle {idle} ms at the end"),
            _ => line.to_owned(),
        })
        .collect();
    format!("per node: {}", nodes.join("; "))
}

/// Runs `sql` on `url`: its rows, unaligned, columns separated by a space.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let output = Command::new("psql")
        .args([url, "-q", "-At", "-F", " ", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}
