//! Queue throughput and latency, on SQLite and on PostgreSQL: trivial jobs enqueued in bulk,
//! then drained by one node with 2 workers, every execution recorded; then enqueue-to-start
//! latency of single jobs on an idle node, due-to-start latency of delayed jobs, and the rate
//! of a bulk enqueue. Run through `cargo xtask bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ratchet_core::{Config, Kernel};
use ratchet_service::{EnqueueOptions, Service, TaskRegistry};
use ratchet_storage::{JobStatus, Store};
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;
use tokio::sync::watch;

const WORKERS: usize = 2;

fn main() {
    let jobs: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(2000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = std::env::temp_dir().join(format!("ratchet-bench-queue-{}", std::process::id()));
        let sqlite = Store::open_data_dir(&dir).await.expect("SQLite opens");
        bench("SQLite (WAL, synchronous=NORMAL)", sqlite, jobs).await;
        let _ = std::fs::remove_dir_all(&dir);

        let admin = std::env::var("RATCHET_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("ratchet_bench_{}", std::process::id());
        match Database::connect(&admin).await {
            Ok(connection) => {
                connection.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
                let mut url = url::Url::parse(&admin).unwrap();
                url.set_path(&name);
                let postgres = Store::connect(url.as_str()).await.expect("PostgreSQL opens");
                bench("PostgreSQL", postgres, jobs).await;
                connection.execute_unprepared(&format!("DROP DATABASE {name} WITH (FORCE)")).await.unwrap();
            }
            Err(error) => {
                println!("queue on PostgreSQL: skipped, cannot connect to {admin}: {error}")
            }
        }
    });
}

async fn completed(store: &Store) -> usize {
    let counts = store.job_counts().await.unwrap();
    let count = |wanted: JobStatus| {
        counts.iter().find(|(status, _)| *status == wanted).map_or(0, |(_, n)| *n as usize)
    };
    // A drain waits for every job to complete: one that failed for good would make it wait forever.
    assert_eq!(count(JobStatus::Failed), 0, "a bench job failed: {counts:?}");
    count(JobStatus::Completed)
}

/// Waits until `jobs` more jobs than `before` have completed; panics after 5 minutes.
async fn wait_for_drain(store: &Store, before: usize, jobs: usize) {
    let started = Instant::now();
    while completed(store).await < before + jobs {
        assert!(started.elapsed() < Duration::from_secs(300), "the drain did not end in 5 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The database alone: claim and finish without running anything.
async fn database_only(label: &str, store: &Store, jobs: usize) {
    for _ in 0..jobs {
        store
            .enqueue(ratchet_storage::NewJob::new("db-only", json!({"n": 1})), ratchet_storage::now_ms())
            .await
            .unwrap();
    }
    let started = Instant::now();
    let mut done = 0;
    while let Some(job) =
        store.claim("bench", Duration::from_secs(30), ratchet_storage::now_ms()).await.unwrap()
    {
        store
            .finish(
                &job.id,
                job.attempt,
                ratchet_storage::Outcome::Completed(&json!(1)),
                None,
                ratchet_storage::now_ms(),
            )
            .await
            .unwrap();
        done += 1;
    }
    println!(
        "queue on {label}: database path alone (claim + finish, one client): {done} jobs in {:.2} s = {:.0}/s",
        started.elapsed().as_secs_f64(),
        done as f64 / started.elapsed().as_secs_f64()
    );
}

async fn bench(label: &str, store: Store, jobs: usize) {
    database_only(label, &store, jobs).await;
    let mut config = Config::default();
    if let Some(concurrency) = std::env::var("RATCHET_QUEUE__CONCURRENCY").ok().and_then(|c| c.parse().ok()) {
        config.queue.concurrency = concurrency;
    }
    let tasks = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/tasks");
    let (registry, _) = TaskRegistry::load(&[tasks.into()], &config.limits).unwrap();
    let kernel = Arc::new(Kernel::start(config, WORKERS).unwrap());
    let service = Arc::new(Service::new(store.clone(), Arc::clone(&kernel), Arc::new(registry)));
    let input = json!({"num1": 1, "num2": 2});

    let started = Instant::now();
    for _ in 0..jobs {
        service.enqueue("addition", input.clone(), EnqueueOptions::default()).await.unwrap();
    }
    let enqueue = started.elapsed();

    let before = completed(&store).await;
    let (stop, stopped) = watch::channel(false);
    let consumers = service.start(stopped);
    let started = Instant::now();
    wait_for_drain(&store, before, jobs).await;
    let drain = started.elapsed();
    let concurrency = service.concurrency();
    println!(
        "queue on {label}: enqueued {jobs} jobs in {:.2} s ({:.0}/s); drained by one node with {WORKERS} workers and {concurrency} job slots in {:.2} s = {:.0} completed jobs/s, every execution recorded",
        enqueue.as_secs_f64(),
        jobs as f64 / enqueue.as_secs_f64(),
        drain.as_secs_f64(),
        jobs as f64 / drain.as_secs_f64()
    );

    // The same drain with a per-task limit in force: one the drain never reaches (what
    // counting the running jobs in every claim costs), and one of as many runs at once as
    // there are workers (which also ends the overlap of one job's recording with the next run).
    // Last, the unlimited drain again: how far two drains with the same settings differ.
    for limit in [Some(1_000), Some(WORKERS as u32), None] {
        let limit = ratchet_storage::TaskLimit { limit, per_key: None };
        store.set_concurrency_limits(ratchet_storage::ConcurrencyLimits::new([(
            "addition".to_owned(),
            limit,
        )]));
        // The consumers run: the queue is paused while the jobs go in, so the drain starts whole.
        service.pause(None, false, "bench").await.unwrap();
        for _ in 0..jobs {
            service.enqueue("addition", input.clone(), EnqueueOptions::default()).await.unwrap();
        }
        let before = completed(&store).await;
        let started = Instant::now();
        service.resume(None).await.unwrap();
        wait_for_drain(&store, before, jobs).await;
        let limited = started.elapsed();
        let under = limit
            .limit
            .map_or_else(|| "again without a limit".into(), |n| format!("under a limit of {n} runs at once"));
        println!(
            "queue on {label}: drained {jobs} jobs {under} in {:.2} s = {:.0} completed jobs/s ({:+.0}% against the first unlimited drain)",
            limited.as_secs_f64(),
            jobs as f64 / limited.as_secs_f64(),
            (drain.as_secs_f64() / limited.as_secs_f64() - 1.0) * 100.0
        );
    }
    store.set_concurrency_limits(ratchet_storage::ConcurrencyLimits::default());

    // Idle node: one job at a time, enqueue to the start of its execution.
    let mut latencies = Vec::new();
    for _ in 0..200 {
        let job = service.enqueue("addition", input.clone(), EnqueueOptions::default()).await.unwrap().job;
        loop {
            let executions = store.executions(Some(&job.id), 1).await.unwrap();
            if let Some(execution) = executions.first() {
                latencies.push(execution.started_at - job.created_at);
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    latencies.sort();
    println!(
        "queue on {label}: enqueue-to-start on an idle node (200 jobs, ms resolution): p50 {} ms, p99 {} ms",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100]
    );
    // Delayed jobs on an idle node: from the due time to the start (the consumers sleep until
    // the next due time rather than a poll interval).
    let mut lateness = Vec::new();
    for _ in 0..100 {
        let due = ratchet_storage::now_ms() + 50;
        let options = EnqueueOptions { run_at: Some(due), ..EnqueueOptions::default() };
        let job = service.enqueue("addition", input.clone(), options).await.unwrap().job;
        loop {
            let executions = store.executions(Some(&job.id), 1).await.unwrap();
            if let Some(execution) = executions.first() {
                lateness.push(execution.started_at - due);
                break;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    lateness.sort();
    println!(
        "queue on {label}: due-to-start of delayed jobs on an idle node (100 jobs due 50 ms after enqueue, ms resolution): p50 {} ms, p99 {} ms, max {} ms",
        lateness[lateness.len() / 2],
        lateness[lateness.len() * 99 / 100],
        lateness[lateness.len() - 1]
    );
    let _ = stop.send(true);
    for consumer in consumers {
        let _ = consumer.await;
    }
    bulk(label, &store, &service, &input).await;
    kernel.shutdown().await;
    store.close().await;
}

/// Bulk enqueue (`POST /api/v1/jobs/batch`, `jobs enqueue --input-file`): 100,000 jobs in
/// one batch, each input checked against the task's schema, in one transaction.
async fn bulk(label: &str, store: &Store, service: &Service, input: &serde_json::Value) {
    const BULK: usize = 100_000;
    let registry = service.registry();
    let jobs: Vec<ratchet_service::BatchJob> = (0..BULK)
        .map(|_| ratchet_service::BatchJob {
            task: "addition".into(),
            input: input.clone(),
            options: EnqueueOptions::default(),
        })
        .collect();
    let started = Instant::now();
    let queue = ratchet_core::config::QueueConfig::default();
    let written = ratchet_service::enqueue_batch(store, &registry, &queue, jobs, |_| {}).await.unwrap();
    let elapsed = started.elapsed();
    assert_eq!(written.len(), BULK);
    println!(
        "queue on {label}: bulk enqueue of {BULK} jobs (schema-checked, one transaction): {:.2} s = {:.0} jobs/s",
        elapsed.as_secs_f64(),
        BULK as f64 / elapsed.as_secs_f64()
    );
}
