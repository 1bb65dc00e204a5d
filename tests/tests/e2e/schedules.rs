//! Schedules on SQLite and on PostgreSQL with an injected clock (docs/reliability.md J6): two
//! schedulers on one database enqueue each fire time once; catch-up after downtime follows
//! each policy; the overlap policy waits for the previous run; retention gives space back;
//! PostgreSQL tells the nodes' schedulers when a schedule changes (J26).

use std::collections::BTreeMap;
use std::time::Duration;

use ratchet_core::config::QueueConfig;
use ratchet_core::schedule::{CatchUp, CronSpec, Overlap};
use ratchet_service::scheduler::tick;
use ratchet_storage::{ExecutionRecord, JobStatus, NewSchedule, Store, fire_key};
use serde_json::json;
use tests::databases::{on_each_backend, on_each_database};

/// 2027-01-15T08:00:00Z (a minute boundary, as the catch-up arithmetic assumes).
const T0: i64 = 1_800_000_000_000;
const LEASE: Duration = Duration::from_secs(30);

fn schedule(name: &str, cron: &str, catch_up: CatchUp, window: Duration, overlap: Overlap) -> NewSchedule {
    NewSchedule {
        name: name.into(),
        task: "tick".into(),
        cron: cron.into(),
        timezone: "UTC".into(),
        input: json!({"from": name}),
        catch_up,
        catch_up_window: window,
        overlap,
    }
}

async fn add(store: &Store, new: NewSchedule, now: i64) -> ratchet_storage::Schedule {
    let first = CronSpec::parse(&new.cron, &new.timezone).unwrap().next_after(now);
    store.add_schedule(new, first, now).await.unwrap()
}

/// Jobs per idempotency key.
async fn jobs_by_key(store: &Store) -> BTreeMap<String, usize> {
    let mut keys = BTreeMap::new();
    for job in store.jobs(None, 100_000).await.unwrap() {
        *keys.entry(job.idempotency_key.unwrap_or_default()).or_insert(0) += 1;
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_schedulers_on_one_database_enqueue_each_fire_time_once() {
    on_each_database(|url, backend| async move {
        let node_a = Store::connect(&url).await.unwrap();
        let node_b = Store::connect(&url).await.unwrap();
        let every_second =
            schedule("every-second", "* * * * * *", CatchUp::All, Duration::from_secs(60), Overlap::Allow);
        let added = add(&node_a, every_second, T0).await;
        let queue = QueueConfig::default();
        // Both nodes tick every 250 ms of injected time, at the same instants, for 20 s.
        for step in 1..=80 {
            let now = T0 + step * 250;
            let (a, b) = tokio::join!(tick(&node_a, &queue, now), tick(&node_b, &queue, now));
            a.unwrap();
            b.unwrap();
        }
        let keys = jobs_by_key(&node_a).await;
        let expected: Vec<String> = (1..=20).map(|s| fire_key(&added.id, T0 + s * 1000)).collect();
        assert_eq!(keys.keys().cloned().collect::<Vec<_>>(), expected, "{backend}");
        assert!(keys.values().all(|&n| n == 1), "{backend}: {keys:?}");
        let after = node_b.schedule("every-second").await.unwrap();
        assert_eq!(after.next_fire_at, Some(T0 + 21_000), "{backend}");
        assert_eq!(after.last_fire_at, Some(T0 + 20_000), "{backend}");
        node_a.close().await;
        node_b.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_downtime_follows_each_policy() {
    on_each_backend(|store, backend| async move {
        let minutely = "0 * * * * *";
        let hour = Duration::from_secs(3600);
        add(&store, schedule("skip", minutely, CatchUp::Skip, Duration::from_secs(10), Overlap::Allow), T0)
            .await;
        add(&store, schedule("latest", minutely, CatchUp::Latest, Duration::ZERO, Overlap::Allow), T0).await;
        add(&store, schedule("all", minutely, CatchUp::All, Duration::from_secs(600), Overlap::Allow), T0)
            .await;
        add(&store, schedule("all-one-run", minutely, CatchUp::All, hour, Overlap::Skip), T0).await;
        // The server was down for an hour; it comes back 30 s after a fire time.
        let back = T0 + 3_600_000 + 30_000;
        let report = tick(&store, &QueueConfig::default(), back).await.unwrap();
        let fired = |name: &str| -> Vec<i64> {
            report.enqueued.iter().filter(|f| f.schedule == *name).map(|f| f.at).collect()
        };
        assert_eq!(
            fired("skip"),
            Vec::<i64>::new(),
            "{backend}: the last fire time is 30 s old, window 10 s"
        );
        assert_eq!(fired("latest"), vec![T0 + 3_600_000], "{backend}");
        let all = fired("all");
        assert_eq!(all, (0..10).map(|m| T0 + 3_060_000 + m * 60_000).collect::<Vec<_>>(), "{backend}");
        assert_eq!(fired("all-one-run"), vec![T0 + 3_600_000], "{backend}: overlap skip runs one");
        assert_eq!(report.skipped_for_overlap, 59, "{backend}");
        for name in ["skip", "latest", "all", "all-one-run"] {
            let s = store.schedule(name).await.unwrap();
            assert_eq!(s.next_fire_at, Some(T0 + 3_660_000), "{backend}: {name} moves past the downtime");
        }
        // The same instant again fires nothing new.
        let again = tick(&store, &QueueConfig::default(), back).await.unwrap();
        assert!(again.enqueued.is_empty(), "{backend}: {again:?}");
        let job =
            store.jobs(None, 100).await.unwrap().into_iter().find(|j| j.run_at == T0 + 3_600_000).unwrap();
        assert_eq!(job.task, "tick");
        assert_eq!(job.status, JobStatus::Queued);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_waits_for_the_previous_run_and_pause_is_not_caught_up() {
    on_each_backend(|store, backend| async move {
        let queue = QueueConfig::default();
        add(
            &store,
            schedule("slow", "*/10 * * * * *", CatchUp::Skip, Duration::from_secs(5), Overlap::Skip),
            T0,
        )
        .await;
        let first = tick(&store, &queue, T0 + 10_000).await.unwrap();
        assert_eq!(first.enqueued.len(), 1, "{backend}");
        let job = store.claim("node", LEASE, T0 + 10_001).await.unwrap().unwrap();
        // Still running at the next fire time: skipped.
        let second = tick(&store, &queue, T0 + 20_000).await.unwrap();
        assert_eq!((second.enqueued.len(), second.skipped_for_overlap), (0, 1), "{backend}");
        store.complete(&job.id, job.attempt, &json!({}), T0 + 25_000).await.unwrap();
        let third = tick(&store, &queue, T0 + 30_000).await.unwrap();
        assert_eq!(third.enqueued.len(), 1, "{backend}");

        // Paused for a minute, resumed: the paused fire times are not caught up.
        let paused =
            ratchet_service::scheduler::set_enabled(&store, "slow", false, T0 + 31_000).await.unwrap();
        assert!(!paused.enabled);
        assert!(tick(&store, &queue, T0 + 60_000).await.unwrap().enqueued.is_empty(), "{backend}");
        let resumed =
            ratchet_service::scheduler::set_enabled(&store, "slow", true, T0 + 95_000).await.unwrap();
        assert_eq!(resumed.next_fire_at, Some(T0 + 100_000), "{backend}");
        let removed = store.remove_schedule(&resumed.id).await.unwrap();
        assert_eq!(removed.name, "slow");
        assert!(store.schedules().await.unwrap().is_empty());
        // A name is unique.
        add(&store, schedule("dup", "* * * * *", CatchUp::Skip, Duration::ZERO, Overlap::Skip), T0).await;
        let first = CronSpec::parse("* * * * *", "UTC").unwrap().next_after(T0);
        let error = store
            .add_schedule(
                schedule("dup", "* * * * *", CatchUp::Skip, Duration::ZERO, Overlap::Skip),
                first,
                T0,
            )
            .await
            .unwrap_err();
        assert!(error.to_string().contains("a schedule named `dup` exists"), "{backend}: {error}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_deletes_old_history_keeps_live_work_and_gives_space_back() {
    on_each_database(|url, backend| async move {
        let store = Store::connect(&url).await.unwrap();
        let old = ratchet_storage::NewJob::new("tick", json!({}));
        let finished = store.enqueue(old.clone(), T0).await.unwrap().job;
        let claimed = store.claim("node", LEASE, T0).await.unwrap().unwrap();
        store.complete(&claimed.id, claimed.attempt, &json!({}), T0 + 1).await.unwrap();
        let waiting = store.enqueue(old, T0).await.unwrap().job;
        // Big rows on SQLite, to see the file shrink. Small ones on PostgreSQL: over TCP, sqlx 0.9.0
        // stalls ~40 ms on each large statement (it no longer sets TCP_NODELAY; docs/architecture.md).
        let padding = "x".repeat(if backend == "sqlite" { 64 * 1024 } else { 100 });
        for n in 0..300 {
            let at = if n < 280 { T0 } else { T0 + 10 * 86_400_000 };
            store.record_execution(&execution(n, at, &padding)).await.unwrap();
        }
        let size_before = database_size(&url);
        let pruned = store.prune(T0 + 86_400_000).await.unwrap();
        assert_eq!((pruned.executions, pruned.jobs), (280, 1), "{backend}");
        assert_eq!(store.executions(None, 10_000).await.unwrap().len(), 20, "{backend}");
        assert!(matches!(store.job(&finished.id).await, Err(ratchet_storage::QueueError::NotFound(_))));
        assert_eq!(
            store.job(&waiting.id).await.unwrap().status,
            JobStatus::Queued,
            "{backend}: live work stays"
        );
        if let (Some(before), Some(after)) = (size_before, database_size(&url)) {
            assert!(after * 4 < before, "{backend}: the file shrank from {before} to {after} bytes");
        }
        store.close().await;
    })
    .await;
}

/// SQLite's write-ahead log is checkpointed in the background, not by whichever write fills
/// it: once the background task has run (woken by the test rather than by its interval, so a
/// busy machine cannot change when), the log is reused from its start instead of growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_write_ahead_log_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    // The checkpointer runs when the test wakes it: an interval could fire mid-batch on a busy
    // machine and reuse the log before the first size is read.
    let options =
        ratchet_storage::StoreOptions { checkpoint_every: Duration::from_secs(3600), ..Default::default() };
    let store = Store::open_data_dir_with(dir.path(), options).await.unwrap();
    let wal = dir.path().join(format!("{}-wal", ratchet_storage::SQLITE_FILE));
    let wal_size = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    // 150 rows of 64 KiB: about 10 MB of log, well under the 40 MB at which a write would
    // checkpoint inline, so only the background task can have checkpointed it.
    let padding = "x".repeat(64 * 1024);
    for n in 0..150 {
        store.record_execution(&execution(n, T0, &padding)).await.unwrap();
    }
    let first = wal_size();
    assert!(first > 8_000_000, "the log holds the first batch: {first} bytes");
    store.checkpoint_in_background().await;
    for n in 150..300 {
        store.record_execution(&execution(n, T0, &padding)).await.unwrap();
    }
    let second = wal_size();
    assert!(
        second < first + first / 2,
        "the log grew from {first} to {second} bytes instead of being reused"
    );
    store.close().await;
}

fn execution(n: usize, finished_at: i64, padding: &str) -> ExecutionRecord {
    ExecutionRecord {
        id: format!("execution-{n}"),
        job_id: None,
        attempt: 1,
        task: "tick".into(),
        status: ratchet_core::RunStatus::Success,
        input: json!({"padding": padding}),
        output: Some(json!({})),
        error: None,
        logs: json!([]),
        http: json!({}),
        started_at: finished_at,
        finished_at,
        duration_us: 1,
        worker: None,
        node: None,
        caused_by: None,
        trace_id: None,
    }
}

/// The size of a SQLite database with its WAL; `None` for PostgreSQL.
fn database_size(url: &str) -> Option<u64> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    let size = |p: String| std::fs::metadata(p).map_or(0, |m| m.len());
    Some(size(path.to_owned()) + size(format!("{path}-wal")))
}

/// docs/reliability.md J13 on both backends: the claim passes over a paused task's jobs to
/// the jobs behind them; a pause of the whole queue holds every job; a paused task's schedules
/// keep enqueueing unless the pause says to skip their fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_passes_over_paused_tasks_and_schedules_follow_the_pause() {
    on_each_backend(|store, backend| async move {
        let queue = QueueConfig::default();
        let new = |task: &str, priority: i32| ratchet_storage::NewJob {
            priority,
            ..ratchet_storage::NewJob::new(task, json!({}))
        };
        let held = store.enqueue(new("tick", 10), T0).await.unwrap().job;
        let other = store.enqueue(new("other", 0), T0).await.unwrap().job;
        store.pause("tick", false, Some("test"), T0).await.unwrap();
        let claimed = store.claim("node", LEASE, T0 + 1).await.unwrap().unwrap();
        assert_eq!(claimed.id, other.id, "{backend}: the paused job at the head is passed over");
        assert!(store.claim("node", LEASE, T0 + 2).await.unwrap().is_none(), "{backend}");

        add(&store, schedule("every10", "*/10 * * * * *", CatchUp::Skip, Duration::ZERO, Overlap::Allow), T0)
            .await;
        let kept = tick(&store, &queue, T0 + 10_000).await.unwrap();
        assert_eq!(
            (kept.enqueued.len(), kept.skipped_for_pause),
            (1, 0),
            "{backend}: schedules keep enqueueing"
        );
        let pause = store.pause("tick", true, Some("test"), T0 + 11_000).await.unwrap();
        assert!(pause.skip_schedules && pause.paused_at == T0, "{backend}: {pause:?}");
        let skipped = tick(&store, &queue, T0 + 20_000).await.unwrap();
        assert_eq!((skipped.enqueued.len(), skipped.skipped_for_pause), (0, 1), "{backend}");

        // The whole queue's pause holds the task after its own is lifted.
        store.pause(ratchet_storage::WHOLE_QUEUE, false, None, T0 + 21_000).await.unwrap();
        assert!(store.resume("tick").await.unwrap());
        assert!(!store.resume("tick").await.unwrap(), "{backend}: not paused any more");
        assert!(store.claim("node", LEASE, T0 + 22_000).await.unwrap().is_none(), "{backend}");
        let scopes: Vec<String> = store.pauses().await.unwrap().into_iter().map(|p| p.scope).collect();
        assert_eq!(scopes, ["*"], "{backend}");
        assert!(store.resume(ratchet_storage::WHOLE_QUEUE).await.unwrap());
        let next = store.claim("node", LEASE, T0 + 23_000).await.unwrap().unwrap();
        assert_eq!(next.id, held.id, "{backend}: resumed, the most urgent job first");
    })
    .await;
}

/// docs/reliability.md J26: on PostgreSQL the database tells every node's scheduler, on the job
/// feed's channel, when a schedule is added, changed, paused or resumed (its first fire time
/// may come before the scheduler's next look); a fire, which moves only the next fire time,
/// says nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_the_schedulers_when_schedules_change() {
    tests::databases::on_postgres(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        let mut listener = store.listen(ratchet_storage::JOBS_CHANNEL).await.unwrap().unwrap();
        let told = Some(ratchet_storage::SCHEDULES_PAYLOAD.to_owned());
        // Generous for a busy machine: a notification arrives within milliseconds of its commit.
        let (soon, quiet) = (Duration::from_secs(30), Duration::from_millis(300));

        let every_minute = schedule("m", "0 * * * * *", CatchUp::Skip, Duration::ZERO, Overlap::Allow);
        let added = add(&store, every_minute.clone(), T0).await;
        assert_eq!(heard(&mut listener, soon).await, told, "add");
        let changed = NewSchedule { cron: "30 * * * * *".into(), ..every_minute };
        store.update_schedule(&added.id, changed, Some(T0 + 30_000), T0).await.unwrap();
        assert_eq!(heard(&mut listener, soon).await, told, "change");
        store.set_schedule_enabled(&added.id, false, None, T0).await.unwrap();
        assert_eq!(heard(&mut listener, soon).await, told, "pause");
        store.set_schedule_enabled(&added.id, true, Some(T0 + 30_000), T0).await.unwrap();
        assert_eq!(heard(&mut listener, soon).await, told, "resume");

        let report = tick(&store, &QueueConfig::default(), T0 + 30_000).await.unwrap();
        assert_eq!(report.enqueued.len(), 1);
        // The fire's job wakes the nodes, as any job added does; the fire itself says nothing.
        let woke = heard(&mut listener, soon).await.unwrap();
        assert!(woke.contains(r#""wake":true"#), "{woke}");
        assert_eq!(heard(&mut listener, quiet).await, None, "a fire");
        drop(listener);
        store.close().await;
    })
    .await;
}

/// The next notification `listener` hears within `within`.
async fn heard(listener: &mut ratchet_storage::Listener, within: Duration) -> Option<String> {
    let heard = tokio::time::timeout(within, listener.next()).await.ok()?;
    Some(heard.unwrap().expect("the listening connection was lost"))
}
