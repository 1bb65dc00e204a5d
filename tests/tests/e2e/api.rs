//! The REST and GraphQL APIs through a real `ratchet serve` (docs/reliability.md H1 to H5, H7, H8;
//! H6, schemathesis, runs in `cargo xtask ci`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::api::{ApiServer, answer};
use tests::{component, example_task, sha256};

/// A task that logs, sleeps `input.ms` (logging `input.ticks` times on the way), logs, then
/// returns `input.n` (or throws when `input.fail`).
pub(crate) fn sleepy(root: &Path) -> PathBuf {
    let dir = root.join("sleepy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metadata.json"), r#"{"name": "sleepy", "version": "1.0.0", "timeout": 30}"#)
        .unwrap();
    std::fs::write(
        dir.join("input.schema.json"),
        r#"{"type": "object", "required": ["n", "ms"], "properties": {"n": {"type": "integer"}, "ms": {"type": "integer"}}}"#,
    )
    .unwrap();
    std::fs::write(dir.join("output.schema.json"), r#"{"type": "object"}"#).unwrap();
    std::fs::write(
        dir.join("main.js"),
        "async function main(input) { console.log('sleeping', input.ms); \
         const ticks = input.ticks || 0; \
         for (let i = 0; i < ticks; i++) { \
           await new Promise(r => setTimeout(r, input.ms / ticks)); console.log('tick', i); } \
         if (!ticks) await new Promise(r => setTimeout(r, input.ms)); \
         console.log('woke'); \
         if (input.fail) throw new Error('asked to fail'); return { n: input.n }; }",
    )
    .unwrap();
    dir
}

fn server(config: &str) -> (ApiServer, tempfile::TempDir) {
    let scratch = tempfile::tempdir().unwrap();
    let sleepy = sleepy(scratch.path());
    let server = ApiServer::start(&[&example_task("addition"), &sleepy], config);
    (server, scratch)
}

const QUIET: &str = "workers:\n  count: 2\nserver:\n  rate_limit_per_second: 0\n";

async fn wait_for_job(server: &ApiServer, id: &str, status: &str) -> Value {
    for _ in 0..400 {
        let job = server.get(&format!("/api/v1/jobs/{id}")).await;
        if job.json["status"] == status {
            return job.json;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {id} never became {status}");
}

/// docs/reliability.md J12: cancelling a running job stops its attempt (the worker is killed at
/// the attempt's next heartbeat, a third of the lease), which frees its job slot and worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_running_job_is_stopped_and_frees_its_slot() {
    let config = "workers:\n  count: 1\nqueue:\n  concurrency: 1\n  lease_secs: 3\nserver:\n  rate_limit_per_second: 0\n";
    let (server, _scratch) = server(config);
    // 100 s unless stopped, far past the wait below.
    let long = json!({"task": "sleepy", "input": {"n": 1, "ms": 100000, "ticks": 1000}, "timeout_secs": 120});
    let long = server.post("/api/v1/jobs", &long).await;
    let id = long.json["id"].as_str().unwrap().to_owned();
    wait_for_job(&server, &id, "running").await;
    let cancelled = server.post(&format!("/api/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(cancelled.json["status"], "cancelled", "{cancelled:?}");
    // The one slot and the one worker are free again well before the 100 s.
    let next =
        server.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 1, "num2": 1}})).await;
    wait_for_job(&server, next.json["id"].as_str().unwrap(), "completed").await;
    assert_eq!(server.get(&format!("/api/v1/jobs/{id}")).await.json["status"], "cancelled");
    assert!(server.log().contains("stopping this attempt"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_run_synchronously_and_are_recorded() {
    let (server, _scratch) = server(QUIET);
    let tasks = server.get("/api/v1/tasks?limit=1").await;
    assert_eq!(tasks.status, 200);
    assert_eq!(tasks.json["total"], 2);
    assert_eq!(tasks.json["items"][0]["name"], "addition");
    assert_eq!(tasks.json["next_offset"], 1);
    let second = server.get("/api/v1/tasks?limit=1&offset=1").await;
    assert_eq!(second.json["items"][0]["name"], "sleepy");
    assert!(second.json.get("next_offset").is_none());
    assert_eq!(server.get("/api/v1/tasks?tag=math").await.json["total"], 1);

    let detail = server.get("/api/v1/tasks/addition").await;
    assert_eq!(detail.json["input_schema"]["type"], "object");
    assert_eq!(detail.json["versions"].as_array().unwrap().len(), 1);
    server.get("/api/v1/tasks/nope").await.assert_error(404, "not_found");

    let validated = server.post("/api/v1/tasks/addition/validate", &json!({"input": {"num1": "x"}})).await;
    assert_eq!(validated.status, 200, "{validated:?}");
    assert_eq!(validated.json["valid"], false);
    assert!(validated.json["script_error"].is_null());
    assert!(!validated.json["violations"].as_array().unwrap().is_empty());

    let run = server.post("/api/v1/tasks/addition/run", &json!({"input": {"num1": 2, "num2": 3}})).await;
    assert_eq!(run.status, 200, "{run:?}");
    assert_eq!(run.json["output"], json!({"sum": 5}));
    assert_eq!(run.json["status"], "success");
    let id = run.json["id"].as_str().unwrap();
    let recorded = server.get(&format!("/api/v1/executions/{id}")).await;
    assert_eq!(recorded.json["output"], json!({"sum": 5}));
    assert!(recorded.json["job_id"].is_null());

    // A failing run is a successful request that reports the failure.
    let failed =
        server.post("/api/v1/tasks/sleepy/run", &json!({"input": {"n": 1, "ms": 1, "fail": true}})).await;
    assert_eq!(failed.status, 200);
    assert_eq!(failed.json["status"], "failure");
    assert!(failed.json["error"]["message"].as_str().unwrap().contains("asked to fail"));
    assert_eq!(failed.json["logs"][0]["message"], "sleeping 1");

    // A run longer than the wait is answered 202 and goes on to be recorded.
    let slow = server
        .post("/api/v1/tasks/sleepy/run", &json!({"input": {"n": 7, "ms": 600}, "wait_secs": 0.05}))
        .await;
    assert_eq!(slow.status, 202, "{slow:?}");
    let location = slow.json["location"].as_str().unwrap().to_owned();
    assert_eq!(slow.header("location"), Some(location.as_str()));
    let mut finished = server.get(&location).await;
    for _ in 0..100 {
        if finished.status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        finished = server.get(&location).await;
    }
    assert_eq!(finished.json["output"], json!({"n": 7}), "{finished:?}");

    let replay = server.post(&format!("/api/v1/executions/{id}/replay"), &json!({})).await;
    assert_eq!(replay.status, 200, "{replay:?}");
    assert_eq!(replay.json["matches"], true);

    let executions = server.get("/api/v1/executions?task=sleepy&status=failure").await;
    assert_eq!(executions.json["total"], 1);
    server.get("/api/v1/executions?status=odd").await.assert_error(400, "bad_request");
    server.get("/api/v1/executions/nope").await.assert_error(404, "not_found");
}

/// docs/reliability.md J15: a job due later starts at its time, not at the next poll: an idle
/// node sleeps until the earliest due time it knows (here the poll interval is 30 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_job_starts_at_its_time_not_at_the_next_poll() {
    let config =
        "workers:\n  count: 1\nqueue:\n  poll_interval_ms: 30000\nserver:\n  rate_limit_per_second: 0\n";
    let (server, _scratch) = server(config);
    // Let the node settle into its idle sleep.
    let warm =
        server.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 1, "num2": 1}})).await;
    wait_for_job(&server, warm.json["id"].as_str().unwrap(), "completed").await;
    let due = ratchet_core::time::now_ms() + 1_500;
    let delayed = json!({"task": "addition", "input": {"num1": 2, "num2": 2}, "run_at": ratchet_core::time::format(due)});
    let id = server.post("/api/v1/jobs", &delayed).await.json["id"].as_str().unwrap().to_owned();
    wait_for_job(&server, &id, "completed").await;
    let runs = server.get(&format!("/api/v1/executions?job_id={id}")).await;
    let started =
        ratchet_core::time::parse_rfc3339(runs.json["items"][0]["started_at"].as_str().unwrap()).unwrap();
    // Never early; and far sooner than the 30 s poll (a generous bound for a busy machine).
    assert!(started >= due, "started {} ms before its time", due - started);
    assert!(started - due < 10_000, "started {} ms after its time", started - due);
}

/// docs/reliability.md J14: a batch is enqueued all or nothing (REST and GraphQL), and the CLI
/// enqueues a JSON-lines file of 100,000 inputs, naming the lines it refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_enqueued_all_or_nothing() {
    let (server, scratch) = server(QUIET);
    let job = |n: i64| json!({"task": "addition", "input": {"num1": n, "num2": 1}});
    let refused = server
        .post(
            "/api/v1/jobs/batch",
            &json!({"jobs": [job(1), {"task": "addition", "input": {"num1": "x"}}, job(3)]}),
        )
        .await;
    refused.assert_error(422, "invalid_input");
    assert_eq!(refused.json["error"]["details"]["problems"][0]["index"], 1, "{refused:?}");
    assert_eq!(refused.json["error"]["details"]["total"], 1);
    assert_eq!(server.get("/api/v1/jobs?task=addition").await.json["total"], 0, "nothing was enqueued");
    server.post("/api/v1/jobs/batch", &json!({"jobs": []})).await.assert_error(422, "invalid_input");
    let unknown =
        server.post("/api/v1/jobs/batch", &json!({"jobs": [job(1), {"task": "nope", "input": {}}]})).await;
    unknown.assert_error(422, "invalid_input");

    let keyed = |n: i64| json!({"task": "addition", "input": {"num1": n, "num2": 1}, "idempotency_key": format!("k{n}")});
    let batch = server.post("/api/v1/jobs/batch", &json!({"jobs": [keyed(1), keyed(2), job(3)]})).await;
    assert_eq!((batch.status, &batch.json["created"]), (201, &json!(3)), "{batch:?}");
    let ids: Vec<String> =
        batch.json["ids"].as_array().unwrap().iter().map(|id| id.as_str().unwrap().to_owned()).collect();
    for id in &ids {
        wait_for_job(&server, id, "completed").await;
    }
    assert_eq!(server.get(&format!("/api/v1/jobs/{}", ids[1])).await.json["output"]["sum"], 3);
    let again = server.post("/api/v1/jobs/batch", &json!({"jobs": [keyed(2), keyed(1)]})).await;
    assert_eq!((again.status, &again.json["created"]), (200, &json!(0)), "{again:?}");
    assert_eq!(again.json["ids"], json!([ids[1], ids[0]]), "the keys name the jobs they made");
    let query = json!({"query": "mutation { enqueueBatch(jobs: [{task: \"addition\", input: {num1: 5, num2: 5}}]) }"});
    let graphql = server.post("/graphql", &query).await;
    let id =
        graphql.json["data"]["enqueueBatch"][0].as_str().unwrap_or_else(|| panic!("{graphql:?}")).to_owned();
    wait_for_job(&server, &id, "completed").await;

    // 100,000 lines from a file, into a database of their own (no server drains them).
    let data = scratch.path().join("bulk");
    let file = scratch.path().join("inputs.jsonl");
    let lines: String = (0..100_000).map(|n| format!("{{\"num1\": {n}, \"num2\": 1}}\n")).collect();
    std::fs::write(&file, lines).unwrap();
    let tasks = example_task("addition");
    let tasks = tasks.parent().unwrap().to_str().unwrap();
    let (data, file_arg) = (data.to_str().unwrap(), file.to_str().unwrap());
    let enqueue_file = |format: &str| {
        let args =
            ["jobs", "enqueue", "addition", "--input-file", file_arg, "--tasks", tasks, "--data-dir", data];
        tests::ratchet(&[&args[..], &["--format", format]].concat())
    };
    let bulk = enqueue_file("json");
    assert!(bulk.success(), "{}", bulk.stderr);
    assert_eq!(bulk.json()["created"], 100_000);
    let status = tests::ratchet(&["queue", "status", "--data-dir", data, "--format", "json"]);
    assert_eq!(status.json()["counts"]["queued"], 100_000, "{status:?}");
    // A file with a line its schema refuses and one that is not JSON: named, nothing queued.
    std::fs::write(&file, "{\"num1\": 1, \"num2\": 1}\n\n{\"num1\": \"x\", \"num2\": 1}\n").unwrap();
    let bad = enqueue_file("text");
    assert!(!bad.success() && bad.stderr.contains("inputs.jsonl line 3: input does not match"), "{bad:?}");
    std::fs::write(&file, "{\"num1\": 1, \"num2\": 1}\nnot json\n").unwrap();
    let bad = enqueue_file("text");
    assert!(!bad.success() && bad.stderr.contains("inputs.jsonl line 2 is not JSON"), "{bad:?}");
    let status = tests::ratchet(&["queue", "status", "--data-dir", data, "--format", "json"]);
    assert_eq!(status.json()["counts"]["queued"], 100_000, "the refused files added nothing");
}

/// docs/reliability.md J13: a paused task's jobs stay queued while other tasks' jobs behind
/// them run; pausing the whole queue holds every job; resuming (REST or CLI) runs them; the
/// pauses are in the database, so the CLI and the server see the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_queue_holds_its_jobs_until_resumed() {
    let (server, _scratch) = server(QUIET);
    let paused = server.post("/api/v1/queue/pause", &json!({"task": "addition"})).await;
    assert_eq!((paused.status, &paused.json["task"]), (200, &json!("addition")), "{paused:?}");
    assert_eq!(paused.json["skip_schedules"], false);
    // At the head of the queue (priority 10), yet it waits while the job behind it runs.
    let held = json!({"task": "addition", "input": {"num1": 1, "num2": 2}, "priority": 10});
    let held = server.post("/api/v1/jobs", &held).await.json["id"].as_str().unwrap().to_owned();
    let other = server.post("/api/v1/jobs", &json!({"task": "sleepy", "input": {"n": 1, "ms": 1}})).await;
    wait_for_job(&server, other.json["id"].as_str().unwrap(), "completed").await;
    let shown = server.get(&format!("/api/v1/jobs/{held}")).await;
    assert_eq!(
        (&shown.json["status"], &shown.json["waiting"]),
        (&json!("queued"), &json!("paused")),
        "{shown:?}"
    );
    let state = server.get("/api/v1/queue").await;
    assert_eq!(state.json["pauses"][0]["task"], "addition", "{state:?}");
    assert_eq!(state.json["counts"]["queued"], 1, "{state:?}");

    // The whole queue: resuming the task alone leaves its job held by the whole queue's pause.
    assert_eq!(server.post("/api/v1/queue/pause", &json!({})).await.status, 200);
    let after = server.post("/api/v1/queue/resume", &json!({"task": "addition"})).await;
    assert_eq!(after.json["pauses"].as_array().map(Vec::len), Some(1), "{after:?}");
    assert_eq!(after.json["pauses"][0]["task"], Value::Null, "the whole queue's pause stays");
    let also = server.post("/api/v1/jobs", &json!({"task": "sleepy", "input": {"n": 2, "ms": 1}})).await;
    let also = also.json["id"].as_str().unwrap().to_owned();
    let data = server.root.path().join("data");
    let data = data.to_str().unwrap();
    let status = tests::ratchet(&["queue", "status", "--data-dir", data]);
    assert!(status.stdout.contains("paused: the whole queue"), "{status:?}");
    for id in [&held, &also] {
        assert_eq!(server.get(&format!("/api/v1/jobs/{id}")).await.json["status"], "queued", "{id}");
    }
    let resumed = tests::ratchet(&["queue", "resume", "--data-dir", data]);
    assert!(resumed.success() && resumed.stdout.contains("resumed the whole queue"), "{resumed:?}");
    wait_for_job(&server, &held, "completed").await;
    wait_for_job(&server, &also, "completed").await;

    // Mistakes are named: an unknown task, a queue that is not paused, a viewer-only key's
    // reach is covered by every_route_checks_credentials_and_roles.
    server.post("/api/v1/queue/pause", &json!({"task": "nope"})).await.assert_error(404, "not_found");
    server.post("/api/v1/queue/resume", &json!({})).await.assert_error(404, "not_found");
    server.post("/api/v1/queue/pause", &json!({"tsk": "addition"})).await.assert_error(422, "invalid_input");
    let again = tests::ratchet(&["queue", "resume", "addition", "--data-dir", data]);
    assert!(!again.success() && again.stderr.contains("task addition is not paused"), "{again:?}");
    let unknown = tests::ratchet(&["queue", "pause", "nope", "--data-dir", data]);
    assert!(!unknown.success(), "{unknown:?}");
    // A concurrency key for a task that limits no key would limit nothing: refused, naming the fix.
    let keyed = json!({"task": "addition", "input": {"num1": 1, "num2": 2}, "concurrency_key": "customer-7"});
    let refused = server.post("/api/v1/jobs", &keyed).await;
    refused.assert_error(422, "invalid_input");
    assert!(refused.json["error"]["message"].as_str().is_some_and(|m| m.contains("per_key")), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_enqueue_page_filter_cancel_and_retry() {
    let (server, _scratch) = server(QUIET);
    let first =
        server.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 1, "num2": 1}})).await;
    assert_eq!(first.status, 201, "{first:?}");
    let keyed = json!({"task": "addition", "input": {"num1": 2, "num2": 2}, "idempotency_key": "k1"});
    let created = server.post("/api/v1/jobs", &keyed).await;
    let again = server.post("/api/v1/jobs", &keyed).await;
    assert_eq!((created.status, again.status), (201, 200));
    assert_eq!(created.json["id"], again.json["id"]);
    wait_for_job(&server, first.json["id"].as_str().unwrap(), "completed").await;

    // A job far in the future stays queued: cancel it, then cancelling again conflicts.
    let later = json!({"task": "sleepy", "input": {"n": 1, "ms": 1}, "run_at": "2999-01-01T00:00:00Z", "priority": 5});
    let later = server.post("/api/v1/jobs", &later).await;
    assert_eq!(later.status, 201);
    let id = later.json["id"].as_str().unwrap();
    let cancelled = server.post(&format!("/api/v1/jobs/{id}/cancel"), &json!({})).await;
    assert_eq!(cancelled.json["status"], "cancelled");
    server.post(&format!("/api/v1/jobs/{id}/cancel"), &json!({})).await.assert_error(409, "conflict");
    let retried = server.post(&format!("/api/v1/jobs/{id}/retry"), &json!({})).await;
    assert_eq!(retried.status, 201);
    assert_ne!(retried.json["id"], later.json["id"]);
    let completed = first.json["id"].as_str().unwrap();
    server.post(&format!("/api/v1/jobs/{completed}/retry"), &json!({})).await.assert_error(409, "conflict");

    let page = server.get("/api/v1/jobs?limit=2&sort=-priority").await;
    assert_eq!(page.json["total"], 4, "{page:?}");
    assert_eq!(page.json["items"].as_array().unwrap().len(), 2);
    assert_eq!(page.json["items"][0]["priority"], 5);
    assert_eq!(page.json["next_offset"], 2);
    assert_eq!(server.get("/api/v1/jobs?status=cancelled").await.json["total"], 1);
    assert_eq!(server.get("/api/v1/jobs?task=sleepy").await.json["total"], 2);
    let job = server.get(&format!("/api/v1/jobs/{completed}")).await;
    assert_eq!(job.json["attempts"][0]["outcome"], "completed");

    // By time: created since a duration ago or an RFC 3339 time, and before one.
    assert_eq!(server.get("/api/v1/jobs?since=1h").await.json["total"], 4);
    assert_eq!(server.get("/api/v1/jobs?until=2000-01-01T00:00:00Z").await.json["total"], 0);
    assert_eq!(
        server.get("/api/v1/jobs?since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z").await.json["total"],
        4
    );
    let runs = server.get("/api/v1/executions?since=1h").await.json["total"].as_u64().unwrap();
    assert!(runs >= 2, "{runs}");
    assert_eq!(server.get("/api/v1/executions?since=1h&until=1h").await.status, 422);
    assert_eq!(server.get("/api/v1/executions?until=2000-01-01T00:00:00Z").await.json["total"], 0);
    let bad = server.get("/api/v1/jobs?since=yesterday").await;
    bad.assert_error(422, "invalid_input");
    assert!(bad.json["error"]["message"].as_str().unwrap().contains("since: `yesterday`"), "{bad:?}");
    let graphql = server
        .post("/graphql", &json!({"query": "{ a: jobs(since: \"1h\") { total } b: executions(until: \"2000-01-01T00:00:00Z\") { total } }"}))
        .await;
    assert_eq!(
        (graphql.json["data"]["a"]["total"].as_u64(), graphql.json["data"]["b"]["total"].as_u64()),
        (Some(4), Some(0)),
        "{graphql:?}"
    );
    let data = server.root.path().join("data");
    let data = data.to_str().unwrap();
    let listed = tests::ratchet(&["jobs", "list", "--since", "1h", "--format", "json", "--data-dir", data]);
    assert!(listed.success(), "{listed:?}");
    assert_eq!(serde_json::from_str::<Value>(&listed.stdout).unwrap()["total"], 4, "{listed:?}");
    let before = tests::ratchet(&[
        "executions",
        "list",
        "--until",
        "2000-01-01T00:00:00Z",
        "--format",
        "json",
        "--data-dir",
        data,
    ]);
    assert_eq!(serde_json::from_str::<Value>(&before.stdout).unwrap()["total"], 0, "{before:?}");
    let backwards = tests::ratchet(&["jobs", "list", "--since", "1m", "--until", "1h", "--data-dir", data]);
    assert!(!backwards.success() && backwards.stderr.contains("--since"), "{backwards:?}");

    server.get("/api/v1/jobs?status=nope").await.assert_error(400, "bad_request");
    server.get("/api/v1/jobs?limit=0").await.assert_error(400, "bad_request");
    server.get("/api/v1/jobs?sort=secret").await.assert_error(400, "bad_request");
    server.get("/api/v1/jobs/nope").await.assert_error(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_nodes_workers_and_plugins() {
    let (server, _scratch) = server(QUIET);
    let new = json!({"task": "addition", "cron": "0 0 * * * *", "timezone": "Europe/Paris",
                     "input": {"num1": 1, "num2": 2}, "name": "hourly"});
    let added = server.post("/api/v1/schedules", &new).await;
    assert_eq!(added.status, 201, "{added:?}");
    server.post("/api/v1/schedules", &new).await.assert_error(409, "conflict");
    let bad = json!({"task": "addition", "cron": "every day", "input": {"num1": 1, "num2": 2}});
    server.post("/api/v1/schedules", &bad).await.assert_error(422, "invalid_input");
    let next = server.get("/api/v1/schedules/hourly/next?count=3").await;
    assert_eq!(next.json["fire_times"].as_array().unwrap().len(), 3);
    assert_eq!(server.post("/api/v1/schedules/hourly/pause", &json!({})).await.json["enabled"], false);
    assert_eq!(server.get("/api/v1/schedules?enabled=false").await.json["total"], 1);
    assert_eq!(server.post("/api/v1/schedules/hourly/resume", &json!({})).await.json["enabled"], true);
    assert_eq!(server.get("/api/v1/schedules").await.json["items"][0]["timezone"], "Europe/Paris");
    let patch =
        |body: Value| server.send(server.client.patch(server.url("/api/v1/schedules/hourly")).json(&body));
    let changed = patch(json!({"cron": "30 15 * * *", "timezone": "UTC", "enabled": false})).await;
    assert_eq!(changed.status, 200, "{changed:?}");
    assert_eq!(
        (changed.json["cron"].as_str(), changed.json["enabled"].as_bool()),
        (Some("30 15 * * *"), Some(false))
    );
    assert!(changed.json["next_fire_at"].as_str().unwrap().ends_with("15:30:00.000Z"), "{changed:?}");
    assert_eq!(changed.json["input"], json!({"num1": 1, "num2": 2}), "fields left out keep their values");
    patch(json!({"input": {"num1": "x"}})).await.assert_error(422, "invalid_input");
    patch(json!({"cron": "soon"})).await.assert_error(422, "invalid_input");
    patch(json!({"colour": "red"})).await.assert_error(422, "invalid_input");
    assert_eq!(patch(json!({"enabled": true})).await.json["enabled"], true);
    assert_eq!(server.delete("/api/v1/schedules/hourly").await.status, 200);
    server.get("/api/v1/schedules/hourly").await.assert_error(404, "not_found");

    let nodes = server.get("/api/v1/nodes").await;
    assert_eq!(nodes.json[0]["status"], "running", "{nodes:?}");
    assert_eq!(server.get("/api/v1/workers").await.status, 200);
    let plugins = server.get("/api/v1/plugins").await;
    let kinds: Vec<&str> =
        plugins.json.as_array().unwrap().iter().map(|p| p["source"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "builtin:error-patterns",
            "builtin:fs-loader",
            "builtin:rest",
            "builtin:graphql",
            "builtin:dashboard",
            "builtin:mcp"
        ]
    );
}

/// docs/reliability.md H3 and H7: bad bodies in the one error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_fail_in_the_one_error_shape() {
    let (server, _scratch) = server(QUIET);
    let raw = |body: &'static str, kind: &'static str| {
        server.client.post(server.url("/api/v1/jobs")).header("content-type", kind).body(body)
    };
    server.send(raw("{not json", "application/json")).await.assert_error(400, "bad_request");
    server.send(raw("{}", "text/plain")).await.assert_error(415, "unsupported_media_type");
    server
        .send(raw(r#"{"task": 5, "input": {}}"#, "application/json"))
        .await
        .assert_error(422, "invalid_input");
    // Serde would read a struct from an array of its fields: a body is an object or refused.
    let array = server.post("/api/v1/tasks/addition/validate", &json!([{}])).await;
    array.assert_error(422, "invalid_input");
    assert!(array.json["error"]["message"].as_str().unwrap().contains("must be a JSON object"), "{array:?}");
    server.post("/api/v1/jobs", &json!(["addition", {}])).await.assert_error(422, "invalid_input");
    let wrong_input =
        server.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": "one"}})).await;
    wrong_input.assert_error(422, "invalid_input");
    assert!(!wrong_input.json["error"]["details"]["violations"].as_array().unwrap().is_empty());
    server.post("/api/v1/jobs", &json!({"task": "nope", "input": {}})).await.assert_error(404, "not_found");
    server.delete("/api/v1/jobs").await.assert_error(405, "method_not_allowed");
    server.get("/api/v2/everything").await.assert_error(404, "not_found");

    // 10 MB in one piece, then a chunked body that never ends: both stop at the limit.
    // A declared 10 MB body is refused from its length alone, before any of it is read.
    let refused = declared_body(server.port, 10 * 1024 * 1024);
    assert!(refused.starts_with("HTTP/1.1 413"), "{refused}");
    assert!(refused.contains(r#""code":"payload_too_large""#), "{refused}");
    let (sent, response) = endless_chunked_body(server.port);
    assert!(sent < 64 << 20, "the server read a 64 MiB body it should have refused");
    assert!(response.is_empty() || response.starts_with("HTTP/1.1 413"), "{response}");
    assert_eq!(server.get("/health").await.status, 200);
    // The caller's request id is kept.
    let tagged = server
        .send(server.client.get(server.url("/api/v1/jobs/nope")).header("x-request-id", "abc-123"))
        .await;
    assert_eq!(tagged.json["error"]["request_id"], "abc-123");
}

/// Sends a chunked body of up to 64 MiB to `POST /api/v1/jobs`; how much the server took
/// and what it answered (empty when it closed the connection first).
fn endless_chunked_body(port: u16) -> (usize, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut response = Vec::new();
        let _ = reader.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    });
    let head = "POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    let mut sent = 0;
    if stream.write_all(head.as_bytes()).is_ok() {
        let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
        while sent < 64 << 20 && stream.write_all(chunk.as_bytes()).is_ok() {
            sent += 64 * 1024;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    (sent, reading.join().unwrap())
}

/// Sends only the head of `POST /api/v1/jobs` declaring a body of `length` bytes; what the
/// server answers.
fn declared_body(port: u16, length: usize) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST /api/v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {length}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// docs/reliability.md H4: a flood from one client is limited; another client is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_client_gets_429_with_retry_after_and_others_are_unaffected() {
    let (server, _scratch) = server("server:\n  rate_limit_per_second: 2\n  rate_limit_burst: 5\n");
    let mut limited = None;
    for _ in 0..30 {
        let answer = server.get("/api/v1/tasks").await;
        if answer.status == 429 {
            limited = Some(answer);
            break;
        }
    }
    let limited = limited.expect("30 requests at once from one client were never limited");
    limited.assert_error(429, "rate_limited");
    assert!(
        limited.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s >= 1)),
        "{limited:?}"
    );
    // Health stays open to the prober.
    assert_eq!(server.get("/health").await.status, 200);
    // Another client address on the loopback network is its own client.
    let other =
        reqwest::Client::builder().no_proxy().local_address("127.0.0.2".parse().ok()).build().unwrap();
    let answer = answer(other.get(server.url("/api/v1/tasks")).send().await.unwrap()).await;
    assert_eq!(answer.status, 200, "{answer:?}");
}

/// Behind a trusted reverse proxy each forwarded client has its own limit; a client that is not
/// a trusted proxy cannot choose its bucket by sending `X-Forwarded-For` itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_client_is_limited_and_spoofing_is_not_believed() {
    let (server, _scratch) = server(
        "server:\n  rate_limit_per_second: 1\n  rate_limit_burst: 3\n  trusted_proxies: [127.0.0.1/32]\n",
    );
    let from = |client: &reqwest::Client, forwarded: &str| {
        client.get(server.url("/api/v1/tasks")).header("x-forwarded-for", forwarded)
    };
    let proxy = server.client.clone();
    let flood = |client: reqwest::Client, forwarded: &'static str| {
        let request = from(&client, forwarded);
        async move {
            for _ in 0..20 {
                let answer = answer(request.try_clone().unwrap().send().await.unwrap()).await;
                if answer.status == 429 {
                    return Some(answer);
                }
            }
            None
        }
    };
    let limited = flood(proxy.clone(), "198.51.100.1, 203.0.113.7")
        .await
        .expect("the forwarded client was never limited");
    limited.assert_error(429, "rate_limited");
    assert!(limited.text.contains("203.0.113.7"), "the message names the client: {limited:?}");
    // Another client behind the same proxy has its own limit.
    let other = answer(from(&proxy, "203.0.113.8").send().await.unwrap()).await;
    assert_eq!(other.status, 200, "{other:?}");
    // 127.0.0.2 is no trusted proxy: its header is ignored, so a new claim does not escape.
    let direct =
        reqwest::Client::builder().no_proxy().local_address("127.0.0.2".parse().ok()).build().unwrap();
    flood(direct.clone(), "203.0.113.9").await.expect("the direct client was never limited");
    let spoofed = answer(from(&direct, "203.0.113.10").send().await.unwrap()).await;
    spoofed.assert_error(429, "rate_limited");
    assert!(spoofed.text.contains("127.0.0.2"), "{spoofed:?}");
}

/// docs/reliability.md H8: with every sync-run slot taken, more runs get 503 and health answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturation_answers_503_with_retry_after_and_health_stays_up() {
    let (server, _scratch) =
        server("workers:\n  count: 1\nserver:\n  max_sync_runs: 2\n  rate_limit_per_second: 0\n");
    let slow = json!({"input": {"n": 1, "ms": 1500}});
    let mut runs = Vec::new();
    for _ in 0..2 {
        let request = server.client.post(server.url("/api/v1/tasks/sleepy/run")).json(&slow);
        runs.push(tokio::spawn(async move { answer(request.send().await.unwrap()).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refused = server.post("/api/v1/tasks/sleepy/run", &slow).await;
    refused.assert_error(503, "unavailable");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert_eq!(server.get("/health").await.status, 200);
    for run in runs {
        assert_eq!(run.await.unwrap().status, 200);
    }
}

/// docs/reliability.md H1: the auth matrix, from the route table in the OpenAPI document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_checks_credentials_and_roles() {
    let config = format!(
        "server:\n  rate_limit_per_second: 0\nplugins:\n  - name: keys\n    kind: auth\n    source: {}\n    config:\n      keys:\n{}",
        component("api-key-auth").display(),
        ["viewer", "runner", "admin"]
            .iter()
            .map(|role| format!(
                "        - {{id: {role}, sha256: {}, role: {role}}}\n",
                sha256(&format!("{role}-key"))
            ))
            .collect::<String>()
    );
    let (server, _scratch) = server(&config);
    let document = server.get("/api/v1/openapi.json").await;
    assert_eq!(document.status, 200, "the document is public");
    let mut routes: Vec<(String, String, String)> = vec![("POST".into(), "/graphql".into(), "viewer".into())];
    for (path, item) in document.json["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Some(role) = operation["security"][0]["api_key"][0].as_str() else {
                assert!(path == "/health" || path == "/ready", "{method} {path} has no role");
                continue;
            };
            routes.push((method.to_uppercase(), path.clone(), role.to_owned()));
        }
    }
    assert!(routes.len() >= 25, "{routes:?}");
    let rank = |role: &str| ["viewer", "runner", "admin"].iter().position(|r| *r == role).unwrap();
    for (method, path, role) in &routes {
        let concrete = path.replace("{name}", "addition").replace("{id}", "nothing-here");
        let call = |key: Option<String>| {
            let mut request = server
                .client
                .request(method.parse().unwrap(), server.url(&concrete))
                .header("content-type", "application/json")
                .body("{}");
            if let Some(key) = key {
                request = request.header("authorization", format!("Bearer {key}"));
            }
            request
        };
        server.send(call(None)).await.assert_error(401, "unauthenticated");
        server.send(call(Some("wrong-key".into()))).await.assert_error(401, "unauthenticated");
        if rank(role) > 0 {
            let below = ["viewer", "runner", "admin"][rank(role) - 1];
            server.send(call(Some(format!("{below}-key")))).await.assert_error(403, "forbidden");
        }
        let allowed = server.send(call(Some(format!("{role}-key")))).await;
        assert!(![401, 403].contains(&allowed.status), "{method} {path} as {role}: {allowed:?}");
    }
    // Subscriptions: the key in the `connection_init` payload, as browsers send it.
    let query = r#"subscription { jobStatus(id: "nothing-here") { status } }"#;
    let mut keyed = subscribe_with(server.port, query, json!({"x-api-key": "viewer-key"})).await;
    let answered = tokio::time::timeout(Duration::from_secs(10), next_frame(&mut keyed)).await.unwrap();
    assert!(answered.as_ref().is_some_and(|f| f.to_string().contains("no job nothing-here")), "{answered:?}");
    for init in [json!({}), json!({"x-api-key": "wrong-key"})] {
        let mut refused = subscribe_with(server.port, query, init.clone()).await;
        let closed = tokio::time::timeout(Duration::from_secs(10), next_frame(&mut refused)).await.unwrap();
        assert!(closed.is_none(), "{init}: {closed:?}");
    }
    // The documentation and health stay open.
    for open in ["/health", "/docs/", "/graphql/playground", "/api/v1/openapi.json"] {
        assert_eq!(server.get(open).await.status, 200, "{open}");
    }
}

/// docs/reliability.md H1, expired credentials: an `api-key-auth` key past its `expires` is refused
/// with a 401 naming the key and the instant; a key not yet expired works; a malformed
/// `expires` fails closed, naming the key and the format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_api_key_is_refused_saying_so() {
    let keys = |expires_old: &str| {
        format!(
            "server:\n  rate_limit_per_second: 0\nplugins:\n  - name: keys\n    kind: auth\n    source: {}\n    config:\n      keys:\n\
             \x20       - {{id: old, sha256: {}, role: admin, expires: \"{expires_old}\"}}\n\
             \x20       - {{id: current, sha256: {}, role: viewer, expires: \"2999-01-01T00:00:00Z\"}}\n",
            component("api-key-auth").display(),
            sha256("old-key"),
            sha256("current-key"),
        )
    };
    let (dated, _scratch) = server(&keys("2020-01-01T00:00:00Z"));
    let as_key = |key: &str| dated.client.get(dated.url("/api/v1/tasks")).header("x-api-key", key.to_owned());
    let expired = dated.send(as_key("old-key")).await;
    expired.assert_error(401, "unauthenticated");
    assert!(expired.text.contains("API key `old` expired at 2020-01-01T00:00:00Z"), "{expired:?}");
    assert_eq!(dated.send(as_key("current-key")).await.status, 200);

    let (malformed, _scratch) = server(&keys("next tuesday"));
    let asked = malformed.client.get(malformed.url("/api/v1/tasks")).header("x-api-key", "current-key");
    let refused = malformed.send(asked).await;
    refused.assert_error(401, "unauthenticated");
    assert!(refused.text.contains("key `old`: `expires` must be an RFC 3339 UTC time"), "{refused:?}");
}

/// docs/reliability.md H2.
#[test]
fn a_public_bind_without_auth_is_refused_unless_acknowledged() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("tasks")).unwrap();
    let port = tests::api::free_port();
    let (mut child, _) = tests::api::spawn(root.path(), "{}\n", &format!("0.0.0.0:{port}"));
    let status = child.wait().unwrap();
    assert!(!status.success());
    let log = std::fs::read_to_string(root.path().join("serve.log")).unwrap();
    assert!(
        log.contains("refusing to serve on 0.0.0.0") && log.contains("allow_unauthenticated_remote"),
        "{log}"
    );

    let acknowledged = "server:\n  allow_unauthenticated_remote: true\n";
    let (mut child, _) = tests::api::spawn(root.path(), acknowledged, &format!("0.0.0.0:{port}"));
    let started = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "{}",
            std::fs::read_to_string(root.path().join("serve.log")).unwrap()
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() {
    let (server, _scratch) = server(QUIET);
    server.post("/api/v1/tasks/addition/run", &json!({"input": {"num1": 1, "num2": 1}})).await;
    server.post("/api/v1/tasks/sleepy/run", &json!({"input": {"n": 1, "ms": 1, "fail": true}})).await;
    server.get("/api/v1/tasks").await;
    let metrics = server.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    let value = |name: &str, labels: &[(&str, &str)]| sample(&metrics.text, name, labels);
    assert_eq!(value("ratchet_runs_total", &[("task", "addition"), ("outcome", "success")]), Some(1.0));
    assert_eq!(value("ratchet_runs_total", &[("task", "sleepy"), ("outcome", "failure")]), Some(1.0));
    assert_eq!(value("ratchet_queue_jobs", &[("status", "queued")]), Some(0.0));
    assert_eq!(value("ratchet_queue_claimed_ahead", &[]), Some(0.0), "an idle node holds no job");
    assert!(value("ratchet_workers", &[]).is_some(), "{}", metrics.text);
    assert!(
        value("ratchet_http_requests_total", &[("route", "/api/v1/tasks"), ("status", "200")]) == Some(1.0),
        "{}",
        metrics.text
    );
    assert!(
        metrics.text.contains("ratchet_run_duration_seconds_count{task=\"addition\"} 1"),
        "{}",
        metrics.text
    );
}

/// The value of sample `name` with `labels` in Prometheus text `text`, parsed by a Prometheus
/// text parser.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    // (prometheus-parse misreads label values holding braces, such as route patterns; the
    // text is valid Prometheus, and the samples checked hold none.)
    let lines =
        text.lines().filter(|l| !l.contains("{name}") && !l.contains("{id}")).map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(_) | prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_queries_mutations_subscriptions_and_limits() {
    let (server, _scratch) = server(QUIET);
    let server = &server;
    let query = async |q: &str| server.post("/graphql", &json!({"query": q})).await;
    let tasks = query("{ tasks { name inputSchema } }").await;
    assert_eq!(tasks.json["data"]["tasks"][0]["name"], "addition", "{tasks:?}");

    let run =
        query(r#"mutation { runTask(name: "addition", input: {num1: 4, num2: 5}) { status output } }"#).await;
    assert_eq!(run.json["data"]["runTask"]["output"], json!({"sum": 9}), "{run:?}");
    let invalid = query(r#"mutation { enqueue(task: "addition", input: {num1: "x"}) { id } }"#).await;
    assert!(invalid.json["errors"][0]["message"].as_str().unwrap().contains("input schema"), "{invalid:?}");

    // Subscribe to a job's status over WebSocket (graphql-transport-ws), then enqueue it.
    let enqueued =
        query(r#"mutation { enqueue(task: "sleepy", input: {n: 3, ms: 1000}) { id status } }"#).await;
    let id = enqueued.json["data"]["enqueue"]["id"].as_str().unwrap().to_owned();
    let mut socket =
        subscribe(server.port, &format!(r#"subscription {{ jobStatus(id: "{id}") {{ status attempt }} }}"#))
            .await;
    let mut statuses = Vec::new();
    let reading = async {
        while let Some(payload) = next_payload(&mut socket).await {
            statuses.push(payload["data"]["jobStatus"]["status"].as_str().unwrap().to_owned());
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reading).await.expect("the subscription never completed");
    assert_eq!(statuses.last().map(String::as_str), Some("completed"), "{statuses:?}");
    assert!(statuses.contains(&"running".to_owned()) || statuses.len() >= 2, "{statuses:?}");

    // Live logs: lines arrive while the run is still going, before it is recorded; those
    // written before the subscription follow from the record; each exactly once.
    let ticking = json!({"input": {"n": 1, "ms": 1500, "ticks": 5}, "wait_secs": 0});
    let run = server.post("/api/v1/tasks/sleepy/run", &ticking).await;
    assert_eq!(run.status, 202, "{run:?}");
    let execution = run.json["execution_id"].as_str().unwrap().to_owned();
    let logs = format!(r#"subscription {{ executionLogs(id: "{execution}") {{ index message }} }}"#);
    let mut socket = subscribe(server.port, &logs).await;
    let (mut lines, mut live) = (Vec::new(), 0);
    while let Some(payload) =
        tokio::time::timeout(Duration::from_secs(10), next_payload(&mut socket)).await.unwrap()
    {
        let line = &payload["data"]["executionLogs"];
        lines.push((line["index"].as_u64().unwrap(), line["message"].as_str().unwrap().to_owned()));
        if server.get(&format!("/api/v1/executions/{execution}")).await.status == 404 {
            live += 1;
        }
    }
    assert!(live >= 1, "no line arrived before the run was recorded: {lines:?}");
    lines.sort();
    let expected: Vec<(u64, String)> = std::iter::once("sleeping 1500".to_owned())
        .chain((0..5).map(|i| format!("tick {i}")))
        .chain(std::iter::once("woke".to_owned()))
        .enumerate()
        .map(|(i, m)| (i as u64, m))
        .collect();
    assert_eq!(lines, expected);
    let mut unknown =
        subscribe(server.port, r#"subscription { executionLogs(id: "nope") { message } }"#).await;
    let refused = tokio::time::timeout(Duration::from_secs(10), next_error(&mut unknown)).await.unwrap();
    assert!(refused.contains("neither recorded nor running"), "{refused}");

    // Limits: depth (a query for data; introspection alone has limits of its own), complexity,
    // batch.
    let deep = format!(
        "{{ tasks {{ name }} __schema {{ types {{ {} }} }} }}",
        "fields { type { ofType { ".repeat(4) + "name " + &"} } } ".repeat(4)
    );
    let deep = query(&deep).await;
    assert!(deep.json["errors"][0]["message"].as_str().unwrap().contains("too deep"), "{deep:?}");
    let complex = query("{ jobs(limit: 500) { items { id task status attempt input output } } }").await;
    assert!(complex.json["errors"][0]["message"].as_str().unwrap().contains("too complex"), "{complex:?}");
    let batch: Vec<Value> = (0..11).map(|_| json!({"query": "{ tasks { name } }"})).collect();
    server.post("/graphql", &Value::Array(batch)).await.assert_error(400, "bad_request");
    let small: Vec<Value> = (0..2).map(|_| json!({"query": "{ tasks { name } }"})).collect();
    assert_eq!(server.post("/graphql", &Value::Array(small)).await.json.as_array().map(Vec::len), Some(2));
}

/// Hosts Chromium itself calls (component updates, sign-in, network time, autofill), not the
/// pages: the flags below quiet most such traffic but not all of it.
pub(crate) const BROWSER_SERVICES: [&str; 6] = [
    "update.googleapis.com",
    "accounts.google.com",
    "clients2.google.com",
    "content-autofill.googleapis.com",
    "optimizationguide-pa.googleapis.com",
    "safebrowsingohttpgateway.googleapis.com",
];

/// The pages the server offers work offline: Swagger UI at /docs renders the operations and
/// GraphiQL renders at /graphql/playground in headless Chromium, and neither page asks for
/// anything outside 127.0.0.1. Every non-loopback request goes through a proxy that only
/// records the host it was asked for.
#[test]
fn the_docs_and_graphiql_render_in_chromium_without_leaving_localhost() {
    let (server, scratch) = server(QUIET);
    let (proxy, asked) = recording_proxy();
    // The docs explorer lists the schema's types only once GraphiQL's introspection query
    // (nested past the data depth limit) was answered.
    for (page, rendered) in [
        ("/docs/", "opblock-summary-path"),
        ("/graphql/playground", "graphiql-container"),
        ("/graphql/playground?docs", "All Schema Types"),
    ] {
        let profile = scratch.path().join(format!("chromium-profile{}", page.replace(['/', '?'], "-")));
        let output = chromium(&server.url(page), &profile, proxy, &["--dump-dom"]);
        let dom = String::from_utf8_lossy(&output.stdout);
        let types = ["Query", "Mutation", "Subscription"];
        let listed = !page.ends_with("?docs") || types.iter().all(|t| dom.contains(&format!(">{t}<")));
        assert!(
            dom.contains(rendered) && listed,
            "{page} did not render ({} bytes of DOM): {}",
            dom.len(),
            String::from_utf8_lossy(&output.stderr).lines().rev().take(5).collect::<Vec<_>>().join("\n")
        );
    }
    let asked = asked.lock().unwrap().clone();
    let outside: Vec<&String> =
        asked.iter().filter(|host| !BROWSER_SERVICES.contains(&host.as_str())).collect();
    assert!(outside.is_empty(), "the pages reached outside 127.0.0.1: {outside:?}");
}

/// Headless Chromium at `url` with a profile of its own, every non-loopback request sent to
/// `proxy`, background services off, and `extra` arguments (`--dump-dom`, `--screenshot=...`).
pub(crate) fn chromium(
    url: &str,
    profile: &Path,
    proxy: std::net::SocketAddr,
    extra: &[&str],
) -> std::process::Output {
    chromium_command(profile, proxy).arg("--virtual-time-budget=15000").args(extra).arg(url).output().unwrap()
}

/// Headless Chromium with a fresh `profile`, every service of its own switched off, and its
/// traffic sent through `proxy` (loopback goes direct).
pub(crate) fn chromium_command(profile: &Path, proxy: std::net::SocketAddr) -> std::process::Command {
    let chromium = std::env::var("RATCHET_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).is_file(),
        "{chromium} is missing: install Debian's chromium package (cargo xtask ci does) or set RATCHET_CHROMIUM"
    );
    let mut command = std::process::Command::new(&chromium);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-client-side-phishing-detection",
            "--disable-domain-reliability",
            "--no-pings",
            "--metrics-recording-only",
            "--disable-breakpad",
            "--disable-features=NetworkTimeServiceQuerying,AutofillServerCommunication,OptimizationHints,Translate",
        ])
        .arg(format!("--proxy-server=http://{proxy}"))
        .arg(format!("--user-data-dir={}", profile.display()));
    command
}

/// A proxy that answers nothing and records the host of every request made through it.
pub(crate) fn recording_proxy() -> (std::net::SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = std::sync::Arc::clone(&asked);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut head = [0u8; 512];
            let n = stream.read(&mut head).unwrap_or(0);
            let line = String::from_utf8_lossy(&head[..n]).lines().next().unwrap_or_default().to_owned();
            // `CONNECT host:443 HTTP/1.1` or `GET http://host/path HTTP/1.1`.
            let target = line.split_whitespace().nth(1).unwrap_or_default();
            let host = target.trim_start_matches("http://").split(['/', ':']).next().unwrap_or_default();
            // A connection opened ahead of need (a preconnect) that asked for nothing sent nothing.
            if !host.is_empty() {
                record.lock().unwrap().push(host.to_owned());
            }
        }
    });
    (address, asked)
}

/// A WASM api-surface plugin answers under /plugins/{name}/, behind the same auth and roles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wasm_api_surface_answers_under_plugins_behind_auth() {
    let config = format!(
        "server:\n  rate_limit_per_second: 0\nplugins:\n  - name: keys\n    kind: auth\n    source: {}\n    config:\n      keys:\n{}\
         \x20 - name: hello\n    kind: api-surface\n    source: {}\n    config: {{greeting: hi}}\n\
         \x20   grants: {{env: [CARGO_PKG_NAME]}}\n",
        component("api-key-auth").display(),
        ["viewer", "runner"]
            .iter()
            .map(|role| format!(
                "        - {{id: {role}, sha256: {}, role: {role}}}\n",
                sha256(&format!("{role}-key"))
            ))
            .collect::<String>(),
        component("hello-api").display(),
    );
    let (server, _scratch) = server(&config);
    let call = |method: &str, path: &str, key: Option<&str>| {
        let mut request = server.client.request(method.parse().unwrap(), server.url(path)).body("{\"x\": 1}");
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request
    };
    let hello = server.send(call("GET", "/plugins/hello/hello?name=ratchet", Some("viewer-key"))).await;
    assert_eq!(hello.status, 200, "{hello:?}");
    assert_eq!(hello.json, json!({"greeting": "hi, ratchet"}));
    server.send(call("GET", "/plugins/hello/hello", None)).await.assert_error(401, "unauthenticated");
    server.send(call("POST", "/plugins/hello/echo", Some("viewer-key"))).await.assert_error(403, "forbidden");
    let echo = server.send(call("POST", "/plugins/hello/echo", Some("runner-key"))).await;
    assert_eq!(echo.json, json!({"bytes": 8, "body": "{\"x\": 1}"}), "{echo:?}");
    // The plugin's own answers pass through unchanged, its errors included.
    let missing = server.send(call("GET", "/plugins/hello/nothing", Some("viewer-key"))).await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.json["error"]["message"].as_str().unwrap().contains("hello-api has no route"),
        "{missing:?}"
    );
    server
        .send(call("GET", "/plugins/nobody/hello", Some("viewer-key")))
        .await
        .assert_error(404, "not_found");
    // It sees the one variable granted to it (set by cargo for the test, inherited by the
    // server), and nothing else of the environment.
    let granted = server.send(call("GET", "/plugins/hello/env/CARGO_PKG_NAME", Some("viewer-key"))).await;
    assert_eq!(granted.json["value"], "tests", "{granted:?}");
    let other = server.send(call("GET", "/plugins/hello/env/PATH", Some("viewer-key"))).await;
    assert_eq!(other.json["value"], Value::Null, "{other:?}");
    let plugins = server.send(call("GET", "/api/v1/plugins", Some("viewer-key"))).await;
    let hello = plugins.json.as_array().unwrap().iter().find(|p| p["name"] == "hello").unwrap().clone();
    assert_eq!(
        (hello["kind"].as_str(), hello["interface"].as_str()),
        (Some("api-surface"), Some("ratchet:plugin@0.1.0"))
    );
}

/// `jobLogs` across nodes (PostgreSQL): node B runs a job that logs a line every 150 ms; a
/// subscriber on node A, which does not run it, gets lines while the job still runs, every line
/// exactly once, and the stream ends with the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_logs_follow_an_attempt_another_node_runs() {
    tests::databases::on_postgres(|url| async move {
        const LINES: usize = 20;
        let task = tests::task(&format!(
            "async function main() {{ for (let i = 0; i < {LINES}; i++) {{ console.log(`line ${{i}}`); \
             await new Promise(r => setTimeout(r, 150)); }} return {{}}; }}"
        ));
        task.write("metadata.json", r#"{"name": "chatty", "version": "1.0.0", "timeout": 30}"#);
        let config = format!("storage:\n  url: {url}\nserver:\n  rate_limit_per_second: 0\n");
        let runner = ApiServer::start(&[&task.path()], &config);
        let job = runner.post("/api/v1/jobs", &json!({"task": "chatty", "input": {}})).await;
        let id = job.json["id"].as_str().unwrap_or_else(|| panic!("{job:?}")).to_owned();
        let started = Instant::now();
        while runner.get(&format!("/api/v1/jobs/{id}")).await.json["status"] != "running" {
            assert!(started.elapsed() < Duration::from_secs(20), "the job never started");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Started after the job was claimed: this node cannot run it.
        let follower = ApiServer::start(&[&task.path()], &config);
        let query =
            format!(r#"subscription {{ jobLogs(id: "{id}") {{ executionId index attempt message }} }}"#);
        let mut socket = subscribe(follower.port, &query).await;
        let mut received = Vec::new();
        let mut live_while_running = 0;
        let reading = async {
            while let Some(payload) = next_payload(&mut socket).await {
                let line = payload["data"]["jobLogs"].clone();
                if line["attempt"].is_null()
                    && follower.get(&format!("/api/v1/jobs/{id}")).await.json["status"] == "running"
                {
                    live_while_running += 1;
                }
                received.push(line);
            }
        };
        tokio::time::timeout(Duration::from_secs(30), reading)
            .await
            .expect("the subscription never completed");
        assert!(live_while_running >= 3, "{live_while_running} line(s) arrived live: {received:#?}");
        let mut indices: Vec<u64> = received.iter().map(|l| l["index"].as_u64().unwrap()).collect();
        indices.sort_unstable();
        assert_eq!(indices, (0..LINES as u64).collect::<Vec<_>>(), "{received:#?}");
        for line in &received {
            assert_eq!(line["message"], format!("line {}", line["index"]), "{line}");
        }
        let job = follower.get(&format!("/api/v1/jobs/{id}")).await;
        assert_eq!(job.json["status"], "completed", "{job:?}");
    })
    .await;
}

/// docs/reliability.md H12: `/api/v1/events` across nodes (PostgreSQL): a follower of node A
/// hears a job node B enqueues, as B announces it, and the job's start and end on whichever
/// node runs it (so does a `jobChanges` GraphQL subscriber); a follower of one job hears that
/// job only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_events_reach_followers_of_every_node() {
    tests::databases::on_postgres(|url| async move {
        let config = format!("storage:\n  url: {url}\nserver:\n  rate_limit_per_second: 0\n");
        let a = ApiServer::start(&[&example_task("addition")], &config);
        let b = ApiServer::start(&[&example_task("addition")], &config);
        // A node hears the others once it listens on their channels; /ready says when.
        for node in [&a, &b] {
            let hearing = || async { node.get("/ready").await.json["other_nodes"] == "ok" };
            node.wait_until("the node listens to the other nodes", hearing).await;
        }
        let mut everything = Events::open(&a, "/api/v1/events").await;
        let mut subscription = subscribe(a.port, "subscription { jobChanges { jobId status missed } }").await;
        let job = b.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 1, "num2": 2}})).await;
        let id = job.json["id"].as_str().unwrap_or_else(|| panic!("{job:?}")).to_owned();
        // Each node announces what it did, so the order may differ from the job's: node A may
        // start and end B's job before B's announcement of its enqueue (published at most 50 ms
        // later) arrives. Hence: until every state has been heard, in whatever order.
        let mut statuses = Vec::new();
        while !["queued", "running", "completed"].iter().all(|s| statuses.iter().any(|heard| heard == s)) {
            let event = everything.next_within(Duration::from_secs(30)).await;
            let event = event.unwrap_or_else(|| {
                panic!("job {id}: no event within 30 s, after {statuses:?}; node B's log:\n{}", b.log())
            });
            assert_eq!(event["task"], "addition", "{event}");
            if event["job_id"] == id.as_str() {
                statuses.push(event["status"].as_str().unwrap().to_owned());
            }
        }
        // The same over GraphQL (what the dashboard follows).
        let heard = async {
            while let Some(payload) = next_payload(&mut subscription).await {
                let change = &payload["data"]["jobChanges"];
                if change["jobId"] == id.as_str() && change["status"] == "completed" {
                    return;
                }
            }
            panic!("the jobChanges subscription ended");
        };
        tokio::time::timeout(Duration::from_secs(30), heard).await.expect("jobChanges never said completed");
        // A follower of one job hears nothing of another.
        let mut only_first = Events::open(&a, &format!("/api/v1/events?job_id={id}")).await;
        let other =
            b.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 2, "num2": 2}})).await;
        let other = other.json["id"].as_str().unwrap().to_owned();
        loop {
            let event = everything.next().await;
            if event["job_id"] == other.as_str() && event["status"] == "completed" {
                break;
            }
        }
        let heard = only_first.next_within(Duration::from_millis(500)).await;
        assert!(heard.is_none(), "a follower of job {id} heard {heard:?}");
    })
    .await;
}

/// A reader of server-sent `job` events.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(server: &ApiServer, path: &str) -> Events {
        // A client of its own: the servers' client gives up on a response after 30 s in all,
        // and a stream is read for as long as the test goes; each read has its deadline.
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let response = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/event-stream", "{path}");
        Events { response, buffer: String::new() }
    }

    /// The next `job` event's data; panics after 30 s without one.
    async fn next(&mut self) -> Value {
        self.next_within(Duration::from_secs(30)).await.expect("no job event within 30 s")
    }

    async fn next_within(&mut self, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let event: String = self.buffer.drain(..end + 2).collect();
                if !event.lines().any(|l| l == "event: job") {
                    continue;
                }
                let data = event.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                return Some(serde_json::from_str(data).unwrap());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let chunk = tokio::time::timeout(left, self.response.chunk()).await.ok()?.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A GraphQL subscription over WebSocket (graphql-transport-ws), subscribed to `query`.
async fn subscribe(port: u16, query: &str) -> Socket {
    subscribe_with(port, query, json!({})).await
}

/// The same, with `init` as the `connection_init` payload (where a browser puts its key).
async fn subscribe_with(port: u16, query: &str, init: Value) -> Socket {
    use tokio_tungstenite::tungstenite::Message;
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://127.0.0.1:{port}/graphql"),
    )
    .unwrap();
    request.headers_mut().insert("sec-websocket-protocol", "graphql-transport-ws".parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(json!({"type": "connection_init", "payload": init}).to_string()))
        .await
        .unwrap();
    let subscribe = json!({"id": "1", "type": "subscribe", "payload": {"query": query}});
    socket.send(Message::text(subscribe.to_string())).await.unwrap();
    socket
}

/// The next frame of the subscription that is not an acknowledgement.
async fn next_frame(socket: &mut Socket) -> Option<Value> {
    use tokio_tungstenite::tungstenite::Message;
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["type"] != "connection_ack" {
            return Some(frame);
        }
    }
    None
}

/// The next `next` payload of the subscription; `None` once it completes.
async fn next_payload(socket: &mut Socket) -> Option<Value> {
    let frame = next_frame(socket).await?;
    match frame["type"].as_str() {
        Some("next") => Some(frame["payload"].clone()),
        Some("complete") => None,
        _ => panic!("{frame}"),
    }
}

/// The error the subscription ends with.
async fn next_error(socket: &mut Socket) -> String {
    let frame = next_frame(socket).await.expect("an error frame");
    assert!(frame["type"] == "error" || frame["payload"]["errors"].is_array(), "{frame}");
    frame.to_string()
}

/// Loader plugins: the built-in fs loader and a WASM loader add tasks that run like any other;
/// a broken task from a loader is skipped with a warning; a loader listing a path outside its
/// task folder stops start-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loader_plugins_add_tasks_that_run_like_folders() {
    let extra = tempfile::tempdir().unwrap();
    let copied = extra.path().join("copied");
    std::fs::create_dir_all(&copied).unwrap();
    for file in ["metadata.json", "input.schema.json", "output.schema.json", "main.js"] {
        let text = std::fs::read_to_string(example_task("addition").join(file)).unwrap();
        let text = if file == "metadata.json" { text.replace("\"addition\"", "\"copied\"") } else { text };
        std::fs::write(copied.join(file), text).unwrap();
    }
    let inline = |name: &str, input_schema: &str, main: &str| {
        format!(
            "          - name: {name}\n            files:\n              metadata.json: '{{\"version\": \"2.0.0\"}}'\n\
             \x20             input.schema.json: '{input_schema}'\n\
             \x20             output.schema.json: '{{\"type\": \"object\"}}'\n              main.js: \"{main}\"\n"
        )
    };
    let config = format!(
        "server:\n  rate_limit_per_second: 0\nplugins:\n  - name: more\n    kind: loader\n    source: builtin:fs-loader\n\
         \x20   config: {{paths: [{}]}}\n  - name: inline\n    kind: loader\n    source: {}\n    config:\n      tasks:\n{}{}",
        extra.path().display(),
        component("inline-loader").display(),
        inline("greet", r#"{"type": "object"}"#, "function main(input) { return {hello: input.name}; }"),
        inline("broken", "{not json", "function main(input) { return input; }"),
    );
    let (server, _scratch) = server(&config);
    let names: Vec<String> = server.get("/api/v1/tasks").await.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(names.contains(&"copied".to_owned()) && names.contains(&"greet".to_owned()), "{names:?}");
    let greeted = server.post("/api/v1/tasks/greet/run", &json!({"input": {"name": "loader"}})).await;
    assert_eq!(greeted.json["output"], json!({"hello": "loader"}), "{greeted:?}");
    let copied = server.post("/api/v1/tasks/copied/run", &json!({"input": {"num1": 2, "num2": 2}})).await;
    assert_eq!(copied.json["output"], json!({"sum": 4}), "{copied:?}");
    // A task a loader lists is checked like a folder: the broken one is not served, and says why.
    server.post("/api/v1/tasks/broken/run", &json!({"input": {}})).await.assert_error(404, "not_found");
    let log = std::fs::read_to_string(server.root.path().join("serve.log")).unwrap();
    assert!(log.contains("plugin:inline/broken"), "{log}");

    let escaping = format!(
        "plugins:\n  - name: inline\n    kind: loader\n    source: {}\n    config:\n      tasks:\n\
         \x20       - name: sneaky\n          files:\n            ../../etc/passwd: x\n",
        component("inline-loader").display()
    );
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("tasks")).unwrap();
    let (mut child, _) =
        tests::api::spawn(root.path(), &escaping, &format!("127.0.0.1:{}", tests::api::free_port()));
    assert!(!child.wait().unwrap().success());
    let log = std::fs::read_to_string(root.path().join("serve.log")).unwrap();
    assert!(log.contains("must be relative") && log.contains("inline"), "{log}");
}

/// CORS: browsers may call the API from the configured origins only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_answers_the_configured_origins_only() {
    let (server, _scratch) = server("server:\n  cors_origins: [\"https://ops.example.com\"]\n");
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url("/api/v1/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,x-api-key")
    };
    let allowed = server.send(preflight("https://ops.example.com")).await;
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://ops.example.com"), "{allowed:?}");
    assert!(
        allowed.header("access-control-allow-methods").is_some_and(|m| m.contains("POST")),
        "{allowed:?}"
    );
    let refused = server.send(preflight("https://evil.example.net")).await;
    assert_eq!(refused.header("access-control-allow-origin"), None, "{refused:?}");
    let simple = server
        .send(server.client.get(server.url("/api/v1/tasks")).header("origin", "https://ops.example.com"))
        .await;
    assert_eq!(simple.header("access-control-allow-origin"), Some("https://ops.example.com"));
    assert!(simple.header("access-control-expose-headers").is_some_and(|h| h.contains("x-request-id")));
}

/// Native plugins of every kind but sink (one library, `plugins/native/example-kinds`): an
/// auth plugin guarding the API, an error pattern classifying a failed run, a loader adding a
/// task, an API surface answering (its panic answered 500, contained and counted in
/// `/metrics`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_plugins_of_every_kind_serve_like_wasm_ones() {
    let library = tests::bin_dir().join("libexample_kinds.so");
    assert!(library.is_file(), "{} is missing: cargo build --workspace", library.display());
    let library = library.display();
    let config = format!(
        "server:\n  rate_limit_per_second: 0\nplugins:\n\
         \x20 - {{name: keys, kind: auth, source: {library}, config: {{keys: {{admin-key: admin, viewer-key: viewer}}}}}}\n\
         \x20 - {{name: needle, kind: error-pattern, source: {library}, config: {{needle: asked to fail}}}}\n\
         \x20 - {{name: native-tasks, kind: loader, source: {library}}}\n\
         \x20 - {{name: routes, kind: api-surface, source: {library}}}\n"
    );
    let (server, _scratch) = server(&config);
    let as_key = |method: &str, path: &str, key: &str| {
        server.client.request(method.parse().unwrap(), server.url(path)).header("x-api-key", key.to_owned())
    };
    server.get("/api/v1/tasks").await.assert_error(401, "unauthenticated");
    let tasks = server.send(as_key("GET", "/api/v1/tasks", "viewer-key")).await;
    assert!(tasks.text.contains("native-hello"), "{tasks:?}");
    let body = json!({"input": {}});
    server
        .send(as_key("POST", "/api/v1/tasks/native-hello/run", "viewer-key").json(&body))
        .await
        .assert_error(403, "forbidden");
    let run = server.send(as_key("POST", "/api/v1/tasks/native-hello/run", "admin-key").json(&body)).await;
    assert_eq!(run.json["output"], json!({"hello": "from a native loader"}), "{run:?}");

    let failing = json!({"input": {"n": 1, "ms": 1, "fail": true}});
    let failed = server.send(as_key("POST", "/api/v1/tasks/sleepy/run", "admin-key").json(&failing)).await;
    assert_eq!(failed.json["error"]["classification"][0]["pattern"], "native-needle", "{failed:?}");
    assert_eq!(failed.json["error"]["classification"][0]["plugin"], "needle", "{failed:?}");

    let routed = server.send(as_key("GET", "/plugins/routes/", "viewer-key")).await;
    assert_eq!(routed.json, json!({"native": true}), "{routed:?}");
    let panicked = server.send(as_key("GET", "/plugins/routes/panic", "viewer-key")).await;
    assert_eq!(panicked.status, 500, "{panicked:?}");
    assert!(panicked.text.contains("panicked"), "{panicked:?}");
    let metrics = server.send(as_key("GET", "/metrics", "viewer-key")).await;
    let counted = |name: &str, plugin: &str| sample(&metrics.text, name, &[("plugin", plugin)]);
    assert_eq!(counted("ratchet_plugin_calls_total", "routes"), Some(2.0), "{}", metrics.text);
    assert_eq!(counted("ratchet_plugin_traps_total", "routes"), Some(1.0), "{}", metrics.text);
    assert!(counted("ratchet_plugin_calls_total", "keys").is_some_and(|n| n >= 5.0), "{}", metrics.text);
    assert_eq!(counted("ratchet_plugin_calls_total", "needle"), Some(1.0), "{}", metrics.text);
    assert_eq!(counted("ratchet_plugin_traps_total", "needle"), Some(0.0), "{}", metrics.text);
    let plugins = server.send(as_key("GET", "/api/v1/plugins", "viewer-key")).await;
    let native = plugins.json.as_array().unwrap().iter().filter(|p| p["interface"] == "native ABI 1").count();
    assert_eq!(native, 4, "{plugins:?}");
}
