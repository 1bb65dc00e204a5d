//! Storage conformance: the same queue cases on SQLite and on PostgreSQL (docs/reliability.md J3,
//! J4, J5, J7, J17, J19, J24, J25, J26 and the rescue half of J1/J2), with an injected clock.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ratchet_storage::{
    Backoff, Claim, ConcurrencyLimits, ConsumerCommit, Ended, Ending, ExecutionRecord, Gather, JobStatus,
    NewJob, Outcome, QueueError, Step, Store, StoreOptions, TaskLimit, Waiting,
};
use sea_orm::ConnectionTrait;
use serde_json::json;
use tests::databases::{on_each_backend, on_each_database};

const T0: i64 = 1_800_000_000_000;
const LEASE: Duration = Duration::from_secs(30);

fn job(task: &str) -> NewJob {
    NewJob::new(task, json!({"n": 1}))
}

/// The record of a successful run of task `t`, of `job_id` when given.
fn execution(id: &str, job_id: Option<&str>) -> ExecutionRecord {
    ExecutionRecord {
        id: id.into(),
        job_id: job_id.map(Into::into),
        attempt: 1,
        task: "t".into(),
        status: ratchet_core::RunStatus::Success,
        input: json!({"n": 1}),
        output: Some(json!(2)),
        error: None,
        logs: json!([{"level": "info", "message": "hello"}]),
        http: json!({}),
        started_at: T0,
        finished_at: T0 + 1,
        duration_us: 1000,
        worker: Some("w0.1".into()),
        node: Some("node".into()),
        caused_by: None,
        trace_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_follow_priority_and_run_at_and_complete_records_the_attempt() {
    on_each_backend(|store, backend| async move {
        let low = store.enqueue(job("low"), T0).await.unwrap().job;
        let high = store.enqueue(NewJob { priority: 10, ..job("high") }, T0 + 1).await.unwrap().job;
        let later = store
            .enqueue(NewJob { run_at: Some(T0 + 60_000), priority: 99, ..job("later") }, T0)
            .await
            .unwrap()
            .job;
        assert_eq!(low.status, JobStatus::Queued, "{backend}");

        let first = store.claim("node-a", LEASE, T0 + 5).await.unwrap().unwrap();
        assert_eq!(
            (first.id.as_str(), first.attempt, first.status),
            (high.id.as_str(), 1, JobStatus::Running),
            "{backend}"
        );
        assert_eq!(first.lease_owner.as_deref(), Some("node-a"));
        assert_eq!(first.lease_expires_at, Some(T0 + 5 + 30_000));
        let second = store.claim("node-a", LEASE, T0 + 5).await.unwrap().unwrap();
        assert_eq!(second.id, low.id, "{backend}");
        assert!(
            store.claim("node-a", LEASE, T0 + 5).await.unwrap().is_none(),
            "{backend}: run_at in the future"
        );
        assert_eq!(store.claim("node-a", LEASE, T0 + 60_000).await.unwrap().unwrap().id, later.id);

        store.complete(&first.id, 1, &json!({"sum": 3}), T0 + 10).await.unwrap();
        // Every job, or only those waiting and running (readiness, heartbeats).
        let mut all = store.job_counts().await.unwrap();
        all.sort_by_key(|(status, _)| status.as_str());
        assert_eq!(all, vec![(JobStatus::Completed, 1), (JobStatus::Running, 2)], "{backend}");
        let live = store.live_job_counts().await.unwrap();
        assert_eq!(live, vec![(JobStatus::Running, 2)], "{backend}");
        let done = store.job(&first.id).await.unwrap();
        assert_eq!((done.status, done.output), (JobStatus::Completed, Some(json!({"sum": 3}))), "{backend}");
        assert_eq!(done.lease_owner, None);
        let attempts = store.attempts(&first.id).await.unwrap();
        assert_eq!((attempts.len(), attempts[0].outcome.as_str()), (1, "completed"), "{backend}");
        assert!(matches!(
            store.complete(&first.id, 1, &json!(0), T0 + 11).await,
            Err(QueueError::Fenced { .. })
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_pollers_claim_every_job_exactly_once() {
    on_each_backend(|store, backend| async move {
        const JOBS: usize = 200;
        for n in 0..JOBS {
            store.enqueue(NewJob { input: json!({"n": n}), ..job("race") }, T0).await.unwrap();
        }
        let mut pollers = Vec::new();
        for poller in 0..8 {
            let store = store.clone();
            pollers.push(tokio::spawn(async move {
                let mut claimed = Vec::new();
                while let Some(job) = store.claim(&format!("poller-{poller}"), LEASE, T0 + 1).await.unwrap() {
                    claimed.push(job.id);
                }
                claimed
            }));
        }
        let mut all = Vec::new();
        for poller in pollers {
            all.extend(poller.await.unwrap());
        }
        let unique: HashSet<_> = all.iter().collect();
        assert_eq!((all.len(), unique.len()), (JOBS, JOBS), "{backend}: every job claimed exactly once");
        let counts = store.job_counts().await.unwrap();
        assert_eq!(counts, vec![(JobStatus::Running, JOBS as u64)], "{backend}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_with_one_idempotency_key_make_one_job() {
    on_each_backend(|store, backend| async move {
        let store = Arc::new(store);
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let new = NewJob { idempotency_key: Some("order-42".into()), ..job("charge") };
                store.enqueue(new, T0).await.unwrap()
            }));
        }
        let mut ids = HashSet::new();
        let mut created = 0;
        for task in tasks {
            let enqueued = task.await.unwrap();
            ids.insert(enqueued.job.id);
            created += usize::from(enqueued.created);
        }
        assert_eq!((ids.len(), created), (1, 1), "{backend}");
        assert_eq!(store.jobs(None, 100).await.unwrap().len(), 1, "{backend}");
    })
    .await;
}

/// On PostgreSQL only the jobs that have an idempotency key are in its unique index: the
/// others (nearly all) would each write an entry on every change of status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_indexes_only_the_idempotency_keys_that_are_set() {
    tests::databases::on_postgres(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        let keyed = NewJob { idempotency_key: Some("order-7".into()), ..job("charge") };
        let first = store.enqueue(keyed.clone(), T0).await.unwrap();
        let again = store.enqueue(keyed, T0).await.unwrap();
        assert!(first.created && !again.created && first.job.id == again.job.id);
        let ids: Vec<String> = futures_ids(&store, (0..3).map(|_| job("charge"))).await;
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3, "jobs without a key are all added");

        let db = sea_orm::Database::connect(&url).await.unwrap();
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT indexdef FROM pg_indexes WHERE tablename = 'jobs' AND indexdef LIKE '%idempotency_key%'",
            ))
            .await
            .unwrap();
        let definitions: Vec<String> = rows.iter().map(|row| row.try_get("", "indexdef").unwrap()).collect();
        assert_eq!(definitions.len(), 1, "one index over the keys: {definitions:?}");
        assert!(
            definitions[0].contains("UNIQUE") && definitions[0].contains("WHERE (idempotency_key IS NOT NULL)"),
            "{definitions:?}"
        );
        db.close().await.unwrap();
        store.close().await;
    })
    .await;
}

/// docs/reliability.md J24: on PostgreSQL a claim walks `jobs_claim_order` even while the
/// table's statistics predict a few waiting jobs (a table never analyzed, then a burst): the
/// planner would otherwise sort every due job on each claim. Which index the claim read is
/// PostgreSQL's own count of index scans, which a backend reports within seconds of going idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_claims_in_index_order_when_statistics_predict_few_waiting_jobs() {
    tests::databases::on_postgres(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        let burst: Vec<NewJob> = (0..5_000).map(|_| job("burst")).collect();
        store.enqueue_batch(&burst, T0, |_| {}).await.unwrap();
        let db = sea_orm::Database::connect(&url).await.unwrap();
        let scans = || async {
            let rows = db
                .query_all_raw(sea_orm::Statement::from_string(
                    sea_orm::DbBackend::Postgres,
                    "SELECT indexrelname AS name, idx_scan AS scans FROM pg_stat_user_indexes \
                     WHERE indexrelname IN ('jobs_claim_order', 'jobs_waiting_due') ORDER BY indexrelname",
                ))
                .await
                .unwrap();
            rows.iter().map(|row| row.try_get::<i64>("", "scans").unwrap()).collect::<Vec<_>>()
        };
        let before = scans().await;
        assert_eq!(before.len(), 2, "both indexes exist");
        let claimed = store.claim_up_to("node", LEASE, T0 + 1, 10).await.unwrap();
        assert_eq!(claimed.len(), 10);
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut after = scans().await;
        while after == before {
            assert!(std::time::Instant::now() < deadline, "PostgreSQL never reported the claim's index scan");
            tokio::time::sleep(Duration::from_millis(200)).await;
            after = scans().await;
        }
        assert!(after[0] > before[0], "the claim walked jobs_claim_order: {before:?} -> {after:?}");
        assert_eq!(
            after[1], before[1],
            "the claim did not read jobs_waiting_due and sort: {before:?} -> {after:?}"
        );
        db.close().await.unwrap();
        store.close().await;
    })
    .await;
}

/// docs/reliability.md J23: an idle node's claim, committed on its own, does not wait for its
/// WAL flush on PostgreSQL, so a crash of the database can lose it: recovery leaves the job as
/// it was before the claim (queued, its earlier attempt). The run that started from the lost
/// claim is then fenced like a rescued one: its end changes nothing while the job waits, and
/// once the job is claimed again under the same attempt number, at most one of the two runs
/// completes it. The claims here go through the idle path; the loss is what recovery leaves,
/// written over the claim.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_lost_to_a_database_crash_runs_its_job_again_and_completes_it_once() {
    on_each_database(|url, backend| async move {
        let store = Store::connect(&url).await.unwrap();
        let db = sea_orm::Database::connect(&url).await.unwrap();
        let idle_claim = |owner: &str, now: i64| {
            let claim =
                Claim { owner: owner.into(), lease: LEASE, up_to: 1, idle: true, may_wait: Duration::ZERO };
            let store = store.clone();
            async move {
                let (ended, mut jobs) =
                    store.step(&Step { end: None, claim: Some(claim), now }).await.unwrap();
                assert!(ended.is_none());
                jobs.pop()
            }
        };
        let lose_claim = |id: String| {
            format!(
                "UPDATE jobs SET status = 'queued', attempt = 0, lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = '{id}'"
            )
        };

        // The lost run ends while its job waits: fenced, and the job runs again.
        let waits = store.enqueue(job("waits"), T0).await.unwrap().job.id;
        let lost = idle_claim("node-a", T0).await.expect("an idle claim takes the job");
        let running = store.job(&waits).await.unwrap();
        assert_eq!(
            (running.status, running.attempt, running.lease_owner.as_deref()),
            (JobStatus::Running, 1, Some("node-a")),
            "{backend}: an idle claim leases and fences like any other"
        );
        db.execute_unprepared(&lose_claim(waits.clone())).await.unwrap();
        let late = store.complete(&waits, lost.attempt, &json!("lost run"), T0 + 10).await;
        assert!(
            matches!(late, Err(QueueError::Fenced { status: JobStatus::Queued, current: 0, .. })),
            "{backend}: {late:?}"
        );
        let again = idle_claim("node-b", T0 + 20).await.expect("the job is claimable again");
        assert_eq!((again.id.as_str(), again.attempt), (waits.as_str(), 1), "{backend}");
        store.complete(&waits, again.attempt, &json!("second run"), T0 + 30).await.unwrap();
        let done = store.job(&waits).await.unwrap();
        assert_eq!(
            (done.status, done.output),
            (JobStatus::Completed, Some(json!("second run"))),
            "{backend}"
        );

        // The lost run ends after the job was claimed again: one of the two completes it.
        let raced = store.enqueue(job("raced"), T0).await.unwrap().job.id;
        let lost = idle_claim("node-a", T0 + 40).await.expect("an idle claim takes the job");
        db.execute_unprepared(&lose_claim(raced.clone())).await.unwrap();
        let again = store.claim("node-b", LEASE, T0 + 50).await.unwrap().unwrap();
        assert_eq!(again.attempt, lost.attempt, "{backend}: the same attempt number, claimed again");
        store.complete(&raced, lost.attempt, &json!("lost run"), T0 + 60).await.unwrap();
        let second = store.complete(&raced, again.attempt, &json!("second run"), T0 + 70).await;
        assert!(matches!(second, Err(QueueError::Fenced { .. })), "{backend}: {second:?}");
        let done = store.job(&raced).await.unwrap();
        assert_eq!((done.status, done.output), (JobStatus::Completed, Some(json!("lost run"))), "{backend}");
        assert!(idle_claim("node-c", T0 + 80).await.is_none(), "{backend}: nothing left");
        db.close().await.unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_rescued_and_late_results_are_fenced() {
    on_each_backend(|store, backend| async move {
        let id = store.enqueue(job("slow"), T0).await.unwrap().job.id;
        let first = store.claim("node-a", LEASE, T0).await.unwrap().unwrap();
        assert!(store.heartbeat(&id, 1, "node-a", T0 + 40_000, T0 + 10_000).await.unwrap());
        assert!(
            !store.heartbeat(&id, 1, "node-b", T0 + 40_000, T0 + 10_000).await.unwrap(),
            "only the owner renews"
        );
        assert_eq!(store.rescue_expired(T0 + 35_000).await.unwrap(), 0, "{backend}: the renewed lease holds");
        assert_eq!(store.rescue_expired(T0 + 41_000).await.unwrap(), 1, "{backend}");
        let rescued = store.job(&id).await.unwrap();
        assert_eq!((rescued.status, rescued.attempt, rescued.lease_owner), (JobStatus::Retrying, 1, None));

        let second = store.claim("node-b", LEASE, T0 + 41_000).await.unwrap().unwrap();
        assert_eq!((second.id.as_str(), second.attempt), (id.as_str(), 2), "{backend}");
        // The first attempt wakes up late: its heartbeat and its result are refused.
        assert!(!store.heartbeat(&id, first.attempt, "node-a", T0 + 90_000, T0 + 42_000).await.unwrap());
        let late = store.complete(&id, first.attempt, &json!("stale"), T0 + 42_000).await;
        assert!(
            matches!(late, Err(QueueError::Fenced { attempt: 1, current: 2, .. })),
            "{backend}: {late:?}"
        );
        assert!(matches!(
            store.fail(&id, 1, "late failure", T0 + 42_000).await,
            Err(QueueError::Fenced { .. })
        ));
        store.complete(&id, 2, &json!("fresh"), T0 + 43_000).await.unwrap();
        let done = store.job(&id).await.unwrap();
        assert_eq!((done.status, done.output), (JobStatus::Completed, Some(json!("fresh"))), "{backend}");
        let outcomes: Vec<_> = store.attempts(&id).await.unwrap().into_iter().map(|a| a.outcome).collect();
        assert_eq!(outcomes, ["expired", "completed"], "{backend}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_keeps_failing_backs_off_then_fails_with_every_error_kept() {
    on_each_backend(|store, backend| async move {
        let backoff = Backoff { base: Duration::from_secs(10), max: Duration::from_secs(60) };
        let id = store.enqueue(NewJob { max_attempts: 3, backoff, ..job("flaky") }, T0).await.unwrap().job.id;
        let mut now = T0;
        for attempt in 1..=3u32 {
            let claimed = store.claim("node", LEASE, now).await.unwrap().expect("the job is due");
            assert_eq!(claimed.attempt, attempt, "{backend}");
            let status = store.fail(&id, attempt, &format!("boom {attempt}"), now).await.unwrap();
            let job = store.job(&id).await.unwrap();
            if attempt < 3 {
                assert_eq!(status, JobStatus::Retrying, "{backend}");
                let delay = job.run_at - now;
                let full = 10_000 * (1 << (attempt - 1));
                assert!(delay >= full / 2 && delay <= full, "{backend}: attempt {attempt} waits {delay} ms");
                assert!(
                    store.claim("node", LEASE, job.run_at - 1).await.unwrap().is_none(),
                    "{backend}: not before its backoff"
                );
                now = job.run_at;
            } else {
                assert_eq!((status, job.status), (JobStatus::Failed, JobStatus::Failed), "{backend}");
                assert_eq!(job.last_error.as_deref(), Some("boom 3"));
            }
        }
        let errors: Vec<_> =
            store.attempts(&id).await.unwrap().into_iter().map(|a| a.error.unwrap()).collect();
        assert_eq!(errors, ["boom 1", "boom 2", "boom 3"], "{backend}");
        assert!(store.claim("node", LEASE, now + 3_600_000).await.unwrap().is_none());
    })
    .await;
}

/// The attempt that completes a job is read from the job's row, after the failed ones kept in
/// `job_attempts`, whichever path completed it; a row written for it by an older version is
/// read once, not twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_completing_attempt_follows_the_failed_ones_on_every_path() {
    on_each_database(|url, backend| async move {
        let store = Store::connect(&url).await.unwrap();
        let outcomes = |attempts: Vec<ratchet_storage::Attempt>| {
            attempts.into_iter().map(|a| (a.attempt, a.outcome, a.error, a.finished_at)).collect::<Vec<_>>()
        };
        let backoff = Backoff { base: Duration::from_millis(1), max: Duration::from_millis(1) };
        let flaky = store.enqueue(NewJob { backoff, ..job("flaky") }, T0).await.unwrap().job.id;
        store.claim("node", LEASE, T0).await.unwrap().unwrap();
        store.fail(&flaky, 1, "boom", T0 + 1).await.unwrap();
        assert_eq!(store.claim("node", LEASE, T0 + 10).await.unwrap().unwrap().id, flaky);
        let ended = Step { end: Some(end(&flaky, 2, Ended::Completed(json!(1)), "e-flaky")), claim: None, now: T0 + 20 };
        store.steps_together(&[ended]).await.unwrap().pop().unwrap().unwrap();
        assert_eq!(
            outcomes(store.attempts(&flaky).await.unwrap()),
            [(1, "failed".into(), Some("boom".into()), T0 + 1), (2, "completed".into(), None, T0 + 20)],
            "{backend}: the batch path"
        );

        let single = store.enqueue(job("single"), T0).await.unwrap().job.id;
        store.claim("node", LEASE, T0 + 30).await.unwrap().unwrap();
        store.complete(&single, 1, &json!(2), T0 + 40).await.unwrap();
        assert_eq!(
            outcomes(store.attempts(&single).await.unwrap()),
            [(1, "completed".into(), None, T0 + 40)],
            "{backend}: the single path"
        );
        let waiting = store.enqueue(job("waiting"), T0).await.unwrap().job.id;
        assert!(store.attempts(&waiting).await.unwrap().is_empty(), "{backend}");

        // The row an older version wrote for the completing attempt.
        let db = sea_orm::Database::connect(&url).await.unwrap();
        let sql = format!(
            "INSERT INTO job_attempts (job_id, attempt, outcome, error, finished_at) VALUES ('{single}', 1, 'completed', NULL, 7)"
        );
        db.execute_unprepared(&sql).await.unwrap();
        db.close().await.unwrap();
        assert_eq!(
            outcomes(store.attempts(&single).await.unwrap()),
            [(1, "completed".into(), None, 7)],
            "{backend}: an older row"
        );
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_last_attempt_fails_the_job() {
    on_each_backend(|store, backend| async move {
        let id = store.enqueue(NewJob { max_attempts: 1, ..job("once") }, T0).await.unwrap().job.id;
        store.claim("node", LEASE, T0).await.unwrap().unwrap();
        assert_eq!(store.rescue_expired(T0 + 31_000).await.unwrap(), 1);
        let job = store.job(&id).await.unwrap();
        assert_eq!(job.status, JobStatus::Failed, "{backend}");
        assert!(job.last_error.unwrap().contains("lease expired"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_queued_and_running_jobs_and_refuses_finished_ones() {
    on_each_backend(|store, backend| async move {
        let queued = store.enqueue(job("a"), T0).await.unwrap().job.id;
        assert_eq!(store.cancel(&queued, T0).await.unwrap().status, JobStatus::Cancelled, "{backend}");
        assert!(
            store.claim("node", LEASE, T0).await.unwrap().is_none(),
            "{backend}: a cancelled job is not claimed"
        );
        assert!(matches!(
            store.cancel(&queued, T0).await,
            Err(QueueError::Final { status: JobStatus::Cancelled, .. })
        ));

        let running = store.enqueue(job("b"), T0).await.unwrap().job.id;
        store.claim("node", LEASE, T0).await.unwrap().unwrap();
        store.cancel(&running, T0 + 1).await.unwrap();
        assert!(!store.heartbeat(&running, 1, "node", T0 + 60_000, T0 + 2).await.unwrap(), "{backend}");
        assert!(matches!(
            store.complete(&running, 1, &json!(1), T0 + 3).await,
            Err(QueueError::Fenced { .. })
        ));
        assert_eq!(store.job(&running).await.unwrap().status, JobStatus::Cancelled);
        assert!(matches!(store.cancel("no-such-job", T0).await, Err(QueueError::NotFound(_))));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finish_stores_the_execution_with_the_result_and_keeps_a_fenced_one() {
    use ratchet_storage::Outcome;
    on_each_backend(|store, backend| async move {
        let id = store.enqueue(job("t"), T0).await.unwrap().job.id;
        store.claim("node", LEASE, T0).await.unwrap().unwrap();
        let status = store
            .finish(&id, 1, Outcome::Completed(&json!(1)), Some(&execution("e1", Some(&id))), T0 + 1)
            .await
            .unwrap();
        assert_eq!(status, JobStatus::Completed, "{backend}");
        let late =
            store.finish(&id, 1, Outcome::Failed("late"), Some(&execution("e2", Some(&id))), T0 + 2).await;
        assert!(matches!(late, Err(QueueError::Fenced { .. })), "{backend}: {late:?}");
        let ids: Vec<_> = store.executions(Some(&id), 10).await.unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids.len(), 2, "{backend}: both runs are in the history");
        assert_eq!(
            store.job(&id).await.unwrap().status,
            JobStatus::Completed,
            "{backend}: the late failure changed nothing"
        );
    })
    .await;
}

/// Records of runs outside the queue that arrive together (committed together on SQLite) are
/// all stored; each caller gets its own verdict, and a record that cannot be stored (here a
/// duplicate id) fails alone without taking its batch with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_arriving_together_are_all_stored_and_a_bad_one_fails_alone() {
    on_each_backend(|store, backend| async move {
        for n in 0..5 {
            store.record_execution(&execution(&format!("early-{n}"), None)).await.unwrap();
        }
        let ids = (0..300).map(|n| format!("run-{n}")).chain((0..5).map(|n| format!("early-{n}")));
        let writes: Vec<_> = ids
            .map(|id| {
                let store = store.clone();
                let record = execution(&id, None);
                tokio::spawn(async move { (id, store.record_execution(&record).await) })
            })
            .collect();
        let mut refused = Vec::new();
        for write in writes {
            let (id, result) = write.await.unwrap();
            match result {
                Ok(()) => assert!(id.starts_with("run-"), "{backend}: {id} was stored twice"),
                Err(error) => refused.push((id, error.to_string())),
            }
        }
        let refused_ids: HashSet<_> = refused.iter().map(|(id, _)| id.as_str()).collect();
        let expected: HashSet<_> = (0..5).map(|n| format!("early-{n}")).collect();
        assert_eq!(refused_ids, expected.iter().map(String::as_str).collect(), "{backend}: {refused:?}");
        let stored = store.executions(None, 10_000).await.unwrap();
        assert_eq!(stored.len(), 305, "{backend}: every good record is stored, once");
        let run_7 = stored.iter().find(|e| e.id == "run-7").expect("run-7 is stored");
        assert_eq!(run_7, &execution("run-7", None), "{backend}: stored as sent");
    })
    .await;
}

/// A consumer ends one job and claims the next in one transaction; a fenced end claims nothing
/// and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finishing_a_job_can_claim_the_next_in_the_same_commit() {
    on_each_backend(|store, backend| async move {
        let a = store.enqueue(NewJob { priority: 5, ..job("a") }, T0).await.unwrap().job;
        let b = store.enqueue(job("b"), T0).await.unwrap().job;
        let first = store.claim("node-a", LEASE, T0 + 1).await.unwrap().unwrap();
        assert_eq!(first.id, a.id, "{backend}");
        let output = json!({"ok": true});
        let (status, next) = store
            .finish_then_claim(
                &first.id,
                1,
                ratchet_storage::Outcome::Completed(&output),
                None,
                Some(("node-a", LEASE, 1)),
                T0 + 2,
            )
            .await
            .unwrap();
        assert_eq!(status, JobStatus::Completed, "{backend}");
        let [next] = <[ratchet_storage::Job; 1]>::try_from(next)
            .expect("the next job is claimed with the end of the first");
        assert_eq!(
            (next.id.as_str(), next.attempt, next.status),
            (b.id.as_str(), 1, JobStatus::Running),
            "{backend}"
        );
        assert_eq!(next.lease_expires_at, Some(T0 + 2 + 30_000), "{backend}");
        assert_eq!(store.job(&a.id).await.unwrap().status, JobStatus::Completed, "{backend}");

        // Cancelled under its runner: the late end is fenced and claims nothing.
        let c = store.enqueue(job("c"), T0).await.unwrap().job;
        store.cancel(&next.id, T0 + 3).await.unwrap();
        let fenced = store
            .finish_then_claim(
                &next.id,
                1,
                ratchet_storage::Outcome::Completed(&output),
                None,
                Some(("node-a", LEASE, 1)),
                T0 + 4,
            )
            .await;
        assert!(matches!(fenced, Err(QueueError::Fenced { .. })), "{backend}: {fenced:?}");
        assert_eq!(
            store.job(&c.id).await.unwrap().status,
            JobStatus::Queued,
            "{backend}: nothing was claimed"
        );
    })
    .await;
}

fn limits(entries: &[(&str, Option<u32>, Option<u32>)]) -> ConcurrencyLimits {
    ConcurrencyLimits::new(
        entries.iter().map(|(task, limit, per_key)| {
            ((*task).to_owned(), TaskLimit { limit: *limit, per_key: *per_key })
        }),
    )
}

fn keyed(task: &str, key: &str) -> NewJob {
    NewJob { concurrency_key: Some(key.into()), ..job(task) }
}

/// docs/reliability.md J17: a task at its limit, or a key at its per-key limit, keeps its jobs
/// queued while jobs behind them (other tasks', other keys') are claimed; an end frees the slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_leave_full_tasks_and_keys_aside_without_blocking_the_rest() {
    on_each_backend(|store, backend| async move {
        store
            .set_concurrency_limits(limits(&[("serial", Some(1), None), ("per-customer", Some(3), Some(1))]));
        // Enqueued first and most urgent, so a claim that blocked at the head would show.
        let serial: Vec<_> =
            futures_ids(&store, (0..3).map(|_| NewJob { priority: 9, ..job("serial") })).await;
        let a: Vec<_> =
            futures_ids(&store, (0..2).map(|_| NewJob { priority: 5, ..keyed("per-customer", "a") })).await;
        let b = store.enqueue(keyed("per-customer", "b"), T0).await.unwrap().job.id;
        let free = store.enqueue(job("free"), T0).await.unwrap().job.id;

        let mut claimed = Vec::new();
        while let Some(job) = store.claim("node", LEASE, T0 + 1).await.unwrap() {
            claimed.push(job.id);
        }
        assert_eq!(claimed, vec![serial[0].clone(), a[0].clone(), b.clone(), free], "{backend}");

        let mut waiting = store.jobs(Some(JobStatus::Queued), 100).await.unwrap();
        store.mark_waiting(&mut waiting, T0 + 1).await.unwrap();
        assert_eq!(waiting.len(), 3, "{backend}");
        assert!(waiting.iter().all(|j| j.waiting == Some(Waiting::Concurrency)), "{backend}: {waiting:?}");

        // The ends free one slot each; the claim that ends a job takes the next in line.
        store.complete(&serial[0], 1, &json!({}), T0 + 2).await.unwrap();
        let output = json!({});
        let (_, next) = store
            .finish_then_claim(
                &a[0],
                1,
                ratchet_storage::Outcome::Completed(&output),
                None,
                Some(("node", LEASE, 1)),
                T0 + 3,
            )
            .await
            .unwrap();
        assert_eq!(ids(next), vec![serial[1].clone()], "{backend}: the most urgent job runs next");
        assert_eq!(
            store.claim("node", LEASE, T0 + 3).await.unwrap().map(|j| j.id),
            Some(a[1].clone()),
            "{backend}"
        );
        assert!(store.claim("node", LEASE, T0 + 3).await.unwrap().is_none(), "{backend}");

        // Without limits (a node whose tasks declare none) nothing is held back.
        store.set_concurrency_limits(ConcurrencyLimits::default());
        assert_eq!(
            store.claim("node", LEASE, T0 + 4).await.unwrap().map(|j| j.id),
            Some(serial[2].clone()),
            "{backend}"
        );
    })
    .await;
}

async fn futures_ids(store: &Store, jobs: impl Iterator<Item = NewJob>) -> Vec<String> {
    let mut ids = Vec::new();
    for new in jobs {
        ids.push(store.enqueue(new, T0).await.unwrap().job.id);
    }
    ids
}

/// docs/reliability.md J17: nodes claiming at the same instant on one database never run more
/// of a task than its limit, nor more of a key than its per-key limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_claiming_at_once_never_pass_a_limit() {
    on_each_database(|url, backend| async move {
        let mut nodes = Vec::new();
        for _ in 0..4 {
            let store = Store::connect(&url).await.expect("the database opens");
            store.set_concurrency_limits(limits(&[("limited", Some(2), None), ("keyed", None, Some(1))]));
            nodes.push(store);
        }
        for n in 0..20 {
            nodes[0].enqueue(NewJob { input: json!({"n": n}), ..job("limited") }, T0).await.unwrap();
            nodes[0]
                .enqueue(NewJob { input: json!({"n": n}), ..keyed("keyed", ["x", "y"][n % 2]) }, T0)
                .await
                .unwrap();
        }
        let mut claimers = Vec::new();
        for (index, store) in nodes.iter().enumerate() {
            for consumer in 0..4 {
                let store = store.clone();
                claimers.push(tokio::spawn(async move {
                    let owner = format!("node-{index}-{consumer}");
                    let mut claimed = Vec::new();
                    for _ in 0..3 {
                        if let Some(job) = store.claim(&owner, LEASE, T0 + 1).await.unwrap() {
                            claimed.push(job);
                        }
                    }
                    claimed
                }));
            }
        }
        let mut running = Vec::new();
        for claimer in claimers {
            running.extend(claimer.await.unwrap());
        }
        let count = |task: &str, key: Option<&str>| {
            running
                .iter()
                .filter(|j| j.task == task && (key.is_none() || j.concurrency_key.as_deref() == key))
                .count()
        };
        assert_eq!(count("limited", None), 2, "{backend}: {running:#?}");
        assert_eq!((count("keyed", Some("x")), count("keyed", Some("y"))), (1, 1), "{backend}");
        for store in nodes {
            store.close().await;
        }
    })
    .await;
}

fn end(id: &str, attempt: u32, outcome: Ended, execution_id: &str) -> Ending {
    Ending { job: id.into(), attempt, outcome, execution: Some(execution(execution_id, Some(id))) }
}

fn claim_as(owner: &str) -> Option<Claim> {
    claim_n(owner, 1)
}

fn claim_n(owner: &str, up_to: usize) -> Option<Claim> {
    Some(Claim { owner: owner.into(), lease: LEASE, up_to, idle: false, may_wait: Duration::ZERO })
}

fn ids(jobs: Vec<ratchet_storage::Job>) -> Vec<String> {
    jobs.into_iter().map(|job| job.id).collect()
}

/// docs/reliability.md J19: consumers' steps committed in one transaction do what each would
/// do alone: ends are fenced by their attempt (a fenced end changes nothing, keeps its
/// execution and claims nothing), a failure retries, and the claims take one job per step
/// that asks, the most urgent to the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_committed_together_end_fence_and_claim_as_each_would_alone() {
    on_each_backend(|store, backend| async move {
        let running = futures_ids(&store, (0..4).map(|_| NewJob { priority: 9, ..job("run") })).await;
        for _ in 0..4 {
            store.claim("node", LEASE, T0 + 1).await.unwrap().unwrap();
        }
        let low = store.enqueue(job("low"), T0).await.unwrap().job.id;
        let high = store.enqueue(NewJob { priority: 5, ..job("high") }, T0).await.unwrap().job.id;
        let middle = store.enqueue(NewJob { priority: 3, ..job("middle") }, T0).await.unwrap().job.id;
        let spare = store.enqueue(NewJob { priority: -1, ..job("spare") }, T0).await.unwrap().job.id;
        store.cancel(&running[2], T0 + 2).await.unwrap();

        let step = |end: Option<Ending>, claim: Option<Claim>| Step { end, claim, now: T0 + 3 };
        let steps = [
            step(Some(end(&running[0], 1, Ended::Completed(json!({"r": 0})), "x0")), claim_as("node")),
            step(Some(end(&running[1], 1, Ended::Failed("boom".into()), "x1")), None),
            step(Some(end(&running[2], 1, Ended::Completed(json!(2)), "x2")), claim_as("node")),
            step(None, claim_as("node")),
            step(Some(end(&running[3], 1, Ended::Completed(json!(3)), "x3")), claim_as("node")),
        ];
        let results = store.steps_together(&steps).await.unwrap();
        let summary: Vec<_> = results
            .iter()
            .map(|result| match result {
                Ok((status, next)) => Ok((*status, ids(next.clone()))),
                Err(QueueError::Fenced { .. }) => Err("fenced"),
                Err(error) => panic!("{backend}: {error}"),
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                Ok((Some(JobStatus::Completed), vec![high.clone()])),
                Ok((Some(JobStatus::Retrying), vec![])),
                Err("fenced"),
                Ok((None, vec![middle.clone()])),
                Ok((Some(JobStatus::Completed), vec![low.clone()])),
            ],
            "{backend}"
        );
        let status = |id: String| {
            let store = store.clone();
            async move { store.job(&id).await.unwrap().status }
        };
        assert_eq!(
            status(running[2].clone()).await,
            JobStatus::Cancelled,
            "{backend}: the fenced end changed nothing"
        );
        assert_eq!(status(spare.clone()).await, JobStatus::Queued, "{backend}: one job per step that asked");
        let done = store.job(&running[0]).await.unwrap();
        assert_eq!((done.output, done.lease_owner), (Some(json!({"r": 0})), None), "{backend}");
        let retrying = store.job(&running[1]).await.unwrap();
        assert_eq!(retrying.last_error.as_deref(), Some("boom"), "{backend}");
        assert!(retrying.run_at > T0 + 3, "{backend}: the retry waits for its backoff");
        let attempts = store.attempts(&running[1]).await.unwrap();
        assert_eq!((attempts.len(), attempts[0].outcome.as_str()), (1, "failed"), "{backend}");
        assert!(store.attempts(&running[2]).await.unwrap().is_empty(), "{backend}: no attempt ended there");
        for (n, id) in running.iter().enumerate() {
            let executions = store.executions(Some(id), 10).await.unwrap();
            assert_eq!(executions.len(), 1, "{backend}: the execution of step {n} is stored, fenced or not");
        }
    })
    .await;
}

/// docs/reliability.md J19: a batch of any size ends each of its jobs and stores each of its
/// executions once. Batches are written padded with rows of NULLs to a power of two (so that
/// PostgreSQL prepares a few statements, not one per size): 3 ends and 5 records are padded to
/// 4 and 8, and the padding must neither end a job nor store a record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_any_size_ends_its_jobs_and_stores_its_executions_once_each() {
    on_each_backend(|store, backend| async move {
        let jobs = futures_ids(&store, (0..8).map(|_| job("t"))).await;
        for _ in 0..8 {
            store.claim("node", LEASE, T0 + 1).await.unwrap().unwrap();
        }
        let mut stored = 0;
        for batch in [&jobs[..3], &jobs[3..8]] {
            let steps: Vec<Step> = batch
                .iter()
                .map(|id| Step {
                    end: Some(end(id, 1, Ended::Completed(json!({"of": id})), &format!("x-{id}"))),
                    claim: None,
                    now: T0 + 2,
                })
                .collect();
            for result in store.steps_together(&steps).await.unwrap() {
                assert_eq!(result.unwrap().0, Some(JobStatus::Completed), "{backend}");
            }
            stored += batch.len();
            let executions = store.executions(None, 100).await.unwrap();
            assert_eq!(executions.len(), stored, "{backend}: one record per end, none for the padding");
        }
        for id in &jobs {
            let done = store.job(id).await.unwrap();
            assert_eq!(
                (done.status, done.output),
                (JobStatus::Completed, Some(json!({"of": id}))),
                "{backend}"
            );
            let executions = store.executions(Some(id), 10).await.unwrap();
            assert_eq!(ids_of(&executions), vec![format!("x-{id}")], "{backend}");
        }
    })
    .await;
}

fn ids_of(executions: &[ExecutionRecord]) -> Vec<String> {
    executions.iter().map(|execution| execution.id.clone()).collect()
}

/// docs/reliability.md J19: the claims of one batch respect the concurrency limits, and a
/// batch asking for more jobs of a full task than its limit gets only what the limit leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_committed_together_claim_no_more_than_the_limits_allow() {
    on_each_backend(|store, backend| async move {
        store.set_concurrency_limits(limits(&[("serial", Some(2), None)]));
        futures_ids(&store, (0..5).map(|_| NewJob { priority: 9, ..job("serial") })).await;
        let free = store.enqueue(job("free"), T0).await.unwrap().job.id;
        let steps: Vec<_> =
            (0..4).map(|_| Step { end: None, claim: claim_as("node"), now: T0 + 1 }).collect();
        let results = store.steps_together(&steps).await.unwrap();
        let claimed: Vec<_> =
            results.into_iter().map(|result| result.unwrap().1.pop().map(|job| job.task)).collect();
        assert_eq!(
            claimed,
            vec![Some("serial".into()), Some("serial".into()), Some("free".into()), None],
            "{backend}: {free}"
        );
    })
    .await;
}

/// docs/reliability.md J19: one claim of several jobs (a node's intake) takes them most urgent
/// first, each leased and fenced on its own, within the concurrency limits, and leaves the rest
/// to other nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_of_several_jobs_takes_the_most_urgent_within_the_limits() {
    on_each_backend(|store, backend| async move {
        store.set_concurrency_limits(limits(&[("serial", Some(1), None)]));
        let serial = futures_ids(&store, (0..3).map(|_| NewJob { priority: 9, ..job("serial") })).await;
        let low = store.enqueue(job("low"), T0).await.unwrap().job.id;
        let high = store.enqueue(NewJob { priority: 5, ..job("high") }, T0).await.unwrap().job.id;
        let spare = store.enqueue(NewJob { priority: -1, ..job("spare") }, T0).await.unwrap().job.id;
        let step = Step { end: None, claim: claim_n("node-a", 3), now: T0 + 1 };
        let (_, claimed) = store.step(&step).await.unwrap();
        assert_eq!(ids(claimed.clone()), vec![serial[0].clone(), high, low], "{backend}");
        for job in &claimed {
            assert_eq!((job.attempt, job.status), (1, JobStatus::Running), "{backend}");
            assert_eq!(
                (job.lease_owner.as_deref(), job.lease_expires_at),
                (Some("node-a"), Some(T0 + 1 + 30_000)),
                "{backend}"
            );
        }
        let other = store.claim_up_to("node-b", LEASE, T0 + 1, 10).await.unwrap();
        assert_eq!(ids(other), vec![spare], "{backend}: another node gets the rest, the limit still held");
    })
    .await;
}

/// docs/reliability.md J25: a batch of ends waits for more (up to its fill), and so does a
/// claim that may wait, within its allowance; a lone end and a claim needed now commit at
/// once. The window is ten minutes, so a step held by it fails the test's one-minute wait.
#[tokio::test]
async fn a_batch_of_ends_waits_for_more_but_a_claim_needed_now_or_a_lone_end_does_not() {
    on_each_backend(|store, backend| async move {
        futures_ids(&store, (0..13).map(|_| job("run"))).await;
        let running = store.claim_up_to("node", LEASE, T0 + 1, 12).await.unwrap();
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sizes = Arc::clone(&batches);
        let observe = Box::new(move |n: usize| sizes.lock().unwrap().push(n));
        let gather = Gather { window: Duration::from_secs(600), fill: 4 };
        let commit = ConsumerCommit::gathering(store.clone(), gather, Some(observe));
        let ending = |n: usize| {
            let ending =
                end(&running[n].id, running[n].attempt, Ended::Completed(json!(n)), &format!("run-{n}"));
            Step { end: Some(ending), claim: None, now: T0 + 2 }
        };
        fn within<F: std::future::Future>(step: F) -> tokio::time::Timeout<F> {
            tokio::time::timeout(Duration::from_secs(60), step)
        }
        // Lets the commit task take what was sent (a current-thread runtime runs it here).
        let settle = || async {
            for _ in 0..20 {
                tokio::task::yield_now().await;
            }
        };

        let lone = within(commit.step(ending(0))).await.expect("a lone end is not held");
        assert_eq!(lone.unwrap().0, Some(JobStatus::Completed), "{backend}");

        let waiting = [commit.send(ending(1)), commit.send(ending(2))];
        settle().await;
        let filled = [commit.send(ending(3)), commit.send(ending(4))];
        for step in waiting.into_iter().chain(filled) {
            let stepped = within(step).await.expect("a full batch commits");
            assert_eq!(stepped.unwrap().0, Some(JobStatus::Completed), "{backend}");
        }
        assert_eq!(*batches.lock().unwrap(), vec![1, 4], "{backend}: two ends waited for two more");

        let waiting = commit.send(ending(5));
        let also = commit.send(ending(6));
        settle().await;
        let claim = within(commit.step(Step { end: None, claim: claim_as("node"), now: T0 + 3 }))
            .await
            .expect("a claim is not held");
        assert_eq!(claim.unwrap().1.len(), 1, "{backend}: the thirteenth job");
        for step in [waiting, also] {
            let stepped = within(step).await.expect("committed with the claim");
            assert_eq!(stepped.unwrap().0, Some(JobStatus::Completed), "{backend}");
        }
        assert_eq!(*batches.lock().unwrap(), vec![1, 4, 3], "{backend}: the claim joined the waiting ends");

        // A claim that may wait the whole window stays with the ends until the batch is full.
        let patient = |may_wait: Duration| Step {
            end: None,
            claim: claim_as("node").map(|claim| Claim { may_wait, ..claim }),
            now: T0 + 4,
        };
        let waiting = [commit.send(ending(7)), commit.send(ending(8))];
        settle().await;
        let claim = commit.send(patient(Duration::from_secs(600)));
        settle().await;
        let filled = commit.send(ending(9));
        let claimed = within(claim).await.expect("a full batch commits");
        assert!(claimed.unwrap().1.is_empty(), "{backend}: every job is claimed");
        for step in waiting.into_iter().chain([filled]) {
            let stepped = within(step).await.expect("committed with the claim");
            assert_eq!(stepped.unwrap().0, Some(JobStatus::Completed), "{backend}");
        }
        assert_eq!(*batches.lock().unwrap(), vec![1, 4, 3, 4], "{backend}: the claim waited for the fill");

        // A claim's allowance shortens the window: the batch commits once it has passed.
        let waiting = commit.send(ending(10));
        let also = commit.send(ending(11));
        settle().await;
        let claim = within(commit.step(patient(Duration::from_millis(20))))
            .await
            .expect("a claim is held no longer than it may wait");
        assert!(claim.unwrap().1.is_empty(), "{backend}");
        for step in [waiting, also] {
            let stepped = within(step).await.expect("committed with the claim");
            assert_eq!(stepped.unwrap().0, Some(JobStatus::Completed), "{backend}");
        }
        assert_eq!(*batches.lock().unwrap(), vec![1, 4, 3, 4, 3], "{backend}");
    })
    .await;
}

/// docs/reliability.md J19: eight consumers sharing one group commit run every job exactly
/// once, each execution stored, and never hold more jobs of a limited task than its limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_sharing_a_group_commit_run_every_job_once_within_the_limits() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    on_each_backend(|store, backend| async move {
        const JOBS: usize = 120;
        store.set_concurrency_limits(limits(&[("limited", Some(2), None)]));
        for n in 0..JOBS {
            let task = if n % 3 == 0 { "limited" } else { "free" };
            store.enqueue(NewJob { input: json!({"n": n}), ..job(task) }, T0).await.unwrap();
        }
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sizes = Arc::clone(&batches);
        let observe = Box::new(move |n: usize| sizes.lock().unwrap().push(n));
        let commit = ConsumerCommit::start(store.clone(), Some(observe));
        let held = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let consumers: Vec<_> = (0..8)
            .map(|consumer| {
                let (commit, held, most) = (commit.clone(), Arc::clone(&held), Arc::clone(&most));
                tokio::spawn(async move {
                    let mut ran = Vec::new();
                    let mut step = Step { end: None, claim: claim_as("node"), now: T0 + 1 };
                    loop {
                        let (_, next) = commit.step(step).await.expect("a step commits");
                        let Some(job) = next.into_iter().next() else { return ran };
                        if job.task == "limited" {
                            let now_held = held.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now_held, Ordering::SeqCst);
                            // Held across other consumers' turns, so that holds overlap.
                            for _ in 0..10 {
                                tokio::task::yield_now().await;
                            }
                            held.fetch_sub(1, Ordering::SeqCst);
                        }
                        let execution_id = format!("run-{consumer}-{}", ran.len());
                        let ending = end(&job.id, job.attempt, Ended::Completed(json!(1)), &execution_id);
                        ran.push(job.id);
                        step = Step { end: Some(ending), claim: claim_as("node"), now: T0 + 2 };
                    }
                })
            })
            .collect();
        let mut ran = Vec::new();
        for consumer in consumers {
            ran.extend(consumer.await.unwrap());
        }
        let unique: HashSet<_> = ran.iter().collect();
        assert_eq!((ran.len(), unique.len()), (JOBS, JOBS), "{backend}: every job ran exactly once");
        assert_eq!(store.job_counts().await.unwrap(), vec![(JobStatus::Completed, JOBS as u64)], "{backend}");
        assert_eq!(store.executions(None, 1_000).await.unwrap().len(), JOBS, "{backend}");
        assert!(
            most.load(Ordering::SeqCst) <= 2,
            "{backend}: {} limited jobs held at once",
            most.load(Ordering::SeqCst)
        );
    })
    .await;
}

/// docs/reliability.md J26: on PostgreSQL the database tells the nodes, on the job feed's
/// channel, each time jobs may have become claimable: jobs added (one statement of a batch is
/// one notification, which carries the earliest due time among them), a pause lifted, a
/// running job given back, an expired lease rescued. A claim, a completion, a pause and an
/// enqueue that adds nothing (its idempotency key's job exists) say nothing (a busy queue does
/// not wake idle nodes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wakes_the_nodes_whenever_jobs_may_have_become_claimable() {
    tests::databases::on_postgres(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        let mut listener = store.listen(ratchet_storage::JOBS_CHANNEL).await.unwrap().unwrap();
        // LEASE is generous for a busy machine: a notification arrives within milliseconds of
        // its commit.
        let quiet = Duration::from_millis(300);

        let keyed = NewJob { idempotency_key: Some("once".into()), ..job("t") };
        store.enqueue(keyed.clone(), T0).await.unwrap();
        woke_for_jobs(&mut listener, "enqueue", T0).await;
        store.enqueue(keyed, T0).await.unwrap();
        assert_eq!(heard(&mut listener, quiet).await, None, "an enqueue that added nothing");
        let later = |ms: i64| NewJob { run_at: Some(T0 + ms), ..job("t") };
        store.enqueue_batch(&[later(5_000), later(2_000), later(9_000)], T0, |_| {}).await.unwrap();
        woke_for_jobs(&mut listener, "batch", T0 + 2_000).await;
        assert_eq!(heard(&mut listener, quiet).await, None, "one notification for the batch");

        let first = store.claim("node-a", LEASE, T0 + 1).await.unwrap().unwrap();
        store.complete(&first.id, first.attempt, &json!(1), T0 + 2).await.unwrap();
        store.pause(ratchet_storage::WHOLE_QUEUE, false, None, T0 + 3).await.unwrap();
        assert_eq!(heard(&mut listener, quiet).await, None, "a claim, a completion and a pause");

        assert!(store.resume(ratchet_storage::WHOLE_QUEUE).await.unwrap());
        woke(&mut listener, "resume").await;

        // The batch's jobs are due from T0 + 2 s.
        let given_back = store.claim("node-a", LEASE, T0 + 9_004).await.unwrap().unwrap();
        assert_eq!(heard(&mut listener, quiet).await, None, "a claim");
        store.release(&given_back.id, given_back.attempt, T0 + 9_005).await.unwrap();
        woke(&mut listener, "release").await;

        store.claim("node-a", LEASE, T0 + 9_006).await.unwrap().unwrap();
        assert_eq!(store.rescue_expired(T0 + 9_006 + 31_000).await.unwrap(), 1);
        woke(&mut listener, "rescue").await;
        assert_eq!(store.rescue_expired(T0 + 9_006 + 32_000).await.unwrap(), 0);
        assert_eq!(heard(&mut listener, quiet).await, None, "a rescue of nothing");
        drop(listener);
        store.close().await;
    })
    .await;
}

/// docs/reliability.md J26: the wake-up for jobs added names the node whose store added them
/// (`StoreOptions::node`, JSON-escaped), so that it can ignore its own; a store that names no
/// node (the CLI's) sends an empty name, which every node hears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_wake_ups_for_jobs_added_name_the_node_that_added_them() {
    tests::databases::on_postgres(|url| async move {
        let node = r#"host-"7"\"#;
        let options = StoreOptions { node: Some(node.to_owned()), ..StoreOptions::default() };
        let named = Store::connect_with(&url, options).await.unwrap();
        assert_eq!(named.node(), Some(node));
        let cli = Store::connect(&url).await.unwrap();
        let mut listener = cli.listen(ratchet_storage::JOBS_CHANNEL).await.unwrap().unwrap();
        let signed = |due: i64| json!({"node": node, "wake": true, "due": due});

        named.enqueue(job("t"), T0).await.unwrap();
        let heard_json = |heard: Option<String>| {
            heard.map(|text| serde_json::from_str::<serde_json::Value>(&text).unwrap())
        };
        assert_eq!(heard_json(heard(&mut listener, LEASE).await), Some(signed(T0)), "the node's enqueue");
        let later = NewJob { run_at: Some(T0 + 5_000), ..job("t") };
        named.enqueue_batch(&[later, job("t")], T0 + 1, |_| {}).await.unwrap();
        assert_eq!(heard_json(heard(&mut listener, LEASE).await), Some(signed(T0 + 1)), "the node's batch");
        cli.enqueue(job("t"), T0 + 2).await.unwrap();
        woke_for_jobs(&mut listener, "the CLI's enqueue", T0 + 2).await;
        drop(listener);
        named.close().await;
        cli.close().await;
    })
    .await;
}

/// docs/reliability.md J26: on PostgreSQL the ends that make a job claimable tell the nodes
/// too, so that an idle node need not poll for them: a failed attempt with attempts left (its
/// retry time, for the nodes' alarms), and the end of a job whose task has a concurrency limit
/// (its slot is free: claim now), on the single path and in a group commit, and the cancel of
/// such a job. A freed slot says nothing when a claim in the same transaction took fewer jobs
/// than it asked for (none was left claimable). A completion of an unlimited task and a
/// failure with no attempt left say nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tells_the_nodes_of_retries_and_freed_concurrency_slots() {
    tests::databases::on_postgres(|url| async move {
        let store = Store::connect(&url).await.unwrap();
        let one = TaskLimit { limit: Some(1), per_key: None };
        store.set_concurrency_limits(ConcurrencyLimits::new([("limited".to_owned(), one)]));
        let mut listener = store.listen(ratchet_storage::JOBS_CHANNEL).await.unwrap().unwrap();
        let quiet = Duration::from_millis(300);
        // Claimed in this order (priority), one at a time.
        let jobs = [
            NewJob { priority: 10, max_attempts: 3, ..job("t") },
            NewJob { priority: 8, max_attempts: 1, ..job("t") },
            NewJob { priority: 7, ..job("limited") },
            NewJob { priority: 6, ..job("limited") },
            NewJob { priority: 5, ..job("limited") },
        ];
        store.enqueue_batch(&jobs, T0, |_| {}).await.unwrap();
        woke_for_jobs(&mut listener, "the batch", T0).await;

        let retried = store.claim("node-a", LEASE, T0 + 1).await.unwrap().unwrap();
        assert_eq!(store.fail(&retried.id, 1, "boom", T0 + 2).await.unwrap(), JobStatus::Retrying);
        let retry_at = store.job(&retried.id).await.unwrap().run_at;
        assert!(retry_at > T0 + 2, "the retry waits for its backoff: {retry_at}");
        woke_for_jobs(&mut listener, "a retry", retry_at).await;
        let failed = store.claim("node-a", LEASE, T0 + 3).await.unwrap().unwrap();
        assert_eq!(store.fail(&failed.id, 1, "boom", T0 + 4).await.unwrap(), JobStatus::Failed);
        assert_eq!(heard(&mut listener, quiet).await, None, "a failure with no attempt left");

        let first = store.claim("node-a", LEASE, T0 + 5).await.unwrap().unwrap();
        assert_eq!(first.task, "limited");
        store.complete(&first.id, first.attempt, &json!(1), T0 + 6).await.unwrap();
        woke(&mut listener, "the end of a limited task's job").await;
        // The next limited job's end claims in its transaction: it takes the last one (as many
        // as it asked for: more may wait, so the others are woken), whose end then claims and
        // finds nothing (none left: they are not).
        let second = store.claim("node-a", LEASE, T0 + 7).await.unwrap().unwrap();
        let claim = Some(("node-a", LEASE, 1));
        let (_, next) = store
            .finish_then_claim(&second.id, second.attempt, Outcome::Completed(&json!(2)), None, claim, T0 + 8)
            .await
            .unwrap();
        woke(&mut listener, "an end whose claim took all it asked for").await;
        let third = next.into_iter().next().expect("the third limited job");
        let (_, next) = store
            .finish_then_claim(&third.id, third.attempt, Outcome::Completed(&json!(3)), None, claim, T0 + 9)
            .await
            .unwrap();
        assert!(next.is_empty(), "{next:?}");
        assert_eq!(heard(&mut listener, quiet).await, None, "an end whose claim found nothing left");

        // A group commit: a limited task's end and a retry wake at once; a retry alone, at its time.
        let more = [NewJob { priority: 9, ..job("limited") }, NewJob { priority: 8, ..job("t") }];
        store.enqueue_batch(&more, T0 + 10, |_| {}).await.unwrap();
        woke_for_jobs(&mut listener, "the second batch", T0 + 10).await;
        let limited = store.claim("node-a", LEASE, T0 + 11).await.unwrap().unwrap();
        let plain = store.claim("node-a", LEASE, T0 + 11).await.unwrap().unwrap();
        let failing = |job: &ratchet_storage::Job, now: i64| Step {
            end: Some(end(&job.id, job.attempt, Ended::Failed("boom".into()), &format!("e-{}", job.id))),
            claim: None,
            now,
        };
        store.steps_together(&[failing(&limited, T0 + 12), failing(&plain, T0 + 12)]).await.unwrap();
        woke(&mut listener, "a group commit that freed a slot").await;
        // The first job (the most urgent), retried again: its third and last attempt is left.
        let again = store.claim("node-a", LEASE, T0 + 100_000).await.unwrap().unwrap();
        assert_eq!((again.id.as_str(), again.attempt), (retried.id.as_str(), 2));
        store.steps_together(&[failing(&again, T0 + 100_000)]).await.unwrap();
        let retry_at = store.job(&again.id).await.unwrap().run_at;
        woke_for_jobs(&mut listener, "a group commit with a retry", retry_at).await;

        let limited = store.claim("node-a", LEASE, T0 + 100_001).await.unwrap().unwrap();
        assert_eq!(limited.task, "limited");
        store.cancel(&limited.id, T0 + 100_002).await.unwrap();
        woke(&mut listener, "the cancel of a limited task's running job").await;
        drop(listener);
        store.close().await;
    })
    .await;
}

/// Asserts that `listener` hears the database's wake-up for jobs added, the earliest due at
/// `due` (within [`LEASE`]), after `what`.
async fn woke_for_jobs(listener: &mut ratchet_storage::Listener, what: &str, due: i64) {
    let expected = format!(r#"{{"node":"","wake":true,"due":{due}}}"#);
    assert_eq!(heard(listener, LEASE).await, Some(expected), "{what}");
}

/// Asserts that `listener` hears the database's wake-up (within [`LEASE`]) after `what`.
async fn woke(listener: &mut ratchet_storage::Listener, what: &str) {
    assert_eq!(heard(listener, LEASE).await.as_deref(), Some(ratchet_storage::WAKE_PAYLOAD), "{what}");
}

/// The next notification `listener` hears within `within`.
async fn heard(listener: &mut ratchet_storage::Listener, within: Duration) -> Option<String> {
    let heard = tokio::time::timeout(within, listener.next()).await.ok()?;
    Some(heard.unwrap().expect("the listening connection was lost"))
}
