//! Hot reload through `ratchet serve`: edits in each editor's save style reach the next run,
//! a broken edit keeps the previous version serving, task folders and ZIPs come and go, and a
//! burst of edits reloads a few times with the last one winning.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tests::api::ApiServer;
use tests::task;

const CONFIG: &str = "workers: {count: 1}\nregistry: {debounce_ms: 100}\n";

fn write_task(folder: &Path, name: &str, version: u32) {
    tests::write_task_returning(folder, name, "1.0.0", version);
}

fn code(version: u32) -> String {
    format!("(input) => ({{v: {version}}})")
}

fn tasks_dir(server: &ApiServer) -> PathBuf {
    server.root.path().join("tasks")
}

async fn wait_for_version(server: &ApiServer, name: &str, version: u32) {
    let what = format!("{name} runs version {version}");
    server.wait_until(&what, || async { server.run_v(name).await == Some(json!(version)) }).await;
}

async fn task_view(server: &ApiServer, name: &str) -> Value {
    server.get(&format!("/api/v1/tasks/{name}")).await.json
}

fn start_with(name: &str) -> ApiServer {
    let original = task("(input) => ({v: 1})");
    original.write("metadata.json", &json!({"name": name, "version": "1.0.0"}).to_string());
    ApiServer::start(&[&original.path()], CONFIG)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_in_every_save_style_reach_the_next_run() {
    let server = start_with("edited");
    let folder = tasks_dir(&server).join("task");
    assert_eq!(server.run_v("edited").await, Some(json!(1)));

    // In place.
    std::fs::write(folder.join("main.js"), code(2)).unwrap();
    wait_for_version(&server, "edited", 2).await;

    // A temporary file renamed over the original (most editors, `sed -i`).
    std::fs::write(folder.join(".main.js.tmp4f2"), code(3)).unwrap();
    std::fs::rename(folder.join(".main.js.tmp4f2"), folder.join("main.js")).unwrap();
    wait_for_version(&server, "edited", 3).await;

    // vim: a swap file, the write test, the original moved to a backup, a new file written.
    std::fs::write(folder.join(".main.js.swp"), "swap").unwrap();
    std::fs::write(folder.join("4913"), "").unwrap();
    std::fs::remove_file(folder.join("4913")).unwrap();
    std::fs::rename(folder.join("main.js"), folder.join("main.js~")).unwrap();
    std::fs::write(folder.join("main.js"), code(4)).unwrap();
    std::fs::remove_file(folder.join("main.js~")).unwrap();
    std::fs::remove_file(folder.join(".main.js.swp")).unwrap();
    wait_for_version(&server, "edited", 4).await;

    // JetBrains' safe write.
    std::fs::write(folder.join("main.js___jb_tmp___"), code(5)).unwrap();
    std::fs::rename(folder.join("main.js"), folder.join("main.js___jb_old___")).unwrap();
    std::fs::rename(folder.join("main.js___jb_tmp___"), folder.join("main.js")).unwrap();
    std::fs::remove_file(folder.join("main.js___jb_old___")).unwrap();
    wait_for_version(&server, "edited", 5).await;

    let view = task_view(&server, "edited").await;
    assert_eq!(view["load_error"], Value::Null, "{view}");
    assert_eq!(view["source"], "server.tasks", "{view}");
}

/// The polling watcher, which a node falls back to when the system cannot watch and which
/// `registry.polling` asks for on network file systems.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_picks_up_edits_additions_and_removals() {
    let original = task("(input) => ({v: 1})");
    original.write("metadata.json", &json!({"name": "polled", "version": "1.0.0"}).to_string());
    let config = "workers: {count: 1}\nregistry: {debounce_ms: 100, polling: true, poll_secs: 0.2}\n";
    let server = ApiServer::start(&[&original.path()], config);
    let tasks = tasks_dir(&server);
    std::fs::write(tasks.join("task/main.js"), code(2)).unwrap();
    wait_for_version(&server, "polled", 2).await;
    write_task(&tasks.join("added"), "added", 3);
    wait_for_version(&server, "added", 3).await;
    std::fs::remove_dir_all(tasks.join("added")).unwrap();
    server
        .wait_until("added is gone", || async { server.get("/api/v1/tasks/added").await.status == 404 })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_edit_keeps_the_previous_version_serving() {
    let original = task("(input) => ({v: 1})");
    original.write("metadata.json", &json!({"name": "sturdy", "version": "1.0.0"}).to_string());
    let config =
        format!("{CONFIG}plugins:\n  - {{name: console, kind: sink, source: \"builtin:console-sink\"}}\n");
    let server = ApiServer::start(&[&original.path()], &config);
    let folder = tasks_dir(&server).join("task");
    let first = task_view(&server, "sturdy").await["digest"].clone();

    // A syntax error: the script is checked in a worker before it may serve.
    std::fs::write(folder.join("main.js"), "(input) => {").unwrap();
    server
        .wait_until("the syntax error is reported", || async {
            task_view(&server, "sturdy").await["load_error"].as_str().is_some_and(|e| e.contains("main.js"))
        })
        .await;
    assert_eq!(server.run_v("sturdy").await, Some(json!(1)), "the previous version serves");
    assert_eq!(task_view(&server, "sturdy").await["digest"], first);

    // Metadata that is not JSON.
    std::fs::write(folder.join("main.js"), code(2)).unwrap();
    std::fs::write(folder.join("metadata.json"), "{\"name\": \"sturdy\",").unwrap();
    server
        .wait_until("the bad metadata is reported", || async {
            task_view(&server, "sturdy").await["load_error"]
                .as_str()
                .is_some_and(|e| e.contains("metadata.json"))
        })
        .await;
    assert_eq!(server.run_v("sturdy").await, Some(json!(1)));

    // Fixed: the new version serves and the error is gone.
    std::fs::write(folder.join("metadata.json"), json!({"name": "sturdy", "version": "1.0.1"}).to_string())
        .unwrap();
    wait_for_version(&server, "sturdy", 2).await;
    let view = task_view(&server, "sturdy").await;
    assert_eq!(view["load_error"], Value::Null, "{view}");
    assert_eq!(view["version"], "1.0.1");
    let log = std::fs::read_to_string(server.root.path().join("serve.log")).unwrap();
    assert!(log.contains("the previous version keeps serving"), "{log}");
    // The sinks heard of both: the failure, then the version that loaded.
    let events: Vec<Value> = log
        .lines()
        .filter_map(|l| l.strip_prefix("[event] "))
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|e: &Value| e["task"] == "sturdy")
        .collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let failed = kinds.iter().position(|k| *k == "task.load_failed");
    let loaded = kinds.iter().rposition(|k| *k == "task.loaded");
    assert!(failed.is_some() && loaded > failed, "{kinds:?}\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratchet_tasks_shows_the_source_and_the_load_error_nodes_recorded() {
    let server = start_with("listed");
    let data = server.root.path().join("data");
    let tasks =
        |format: &str| tests::ratchet(&["tasks", "--data-dir", data.to_str().unwrap(), "--format", format]);
    let listed = tasks("json").json();
    assert_eq!(listed[0]["source"], "server.tasks", "{listed}");
    assert_eq!(listed[0]["load_error"], Value::Null);

    std::fs::write(tasks_dir(&server).join("task/output.schema.json"), "{\"type\": 12}").unwrap();
    server
        .wait_until("the load error is recorded", || async {
            tasks("json").json()[0]["load_error"].as_str().is_some_and(|e| e.contains("output.schema.json"))
        })
        .await;
    let text = tasks("text");
    assert!(text.stdout.contains("load error (this version keeps serving)"), "{text:?}");
    assert_eq!(server.run_v("listed").await, Some(json!(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_folders_and_zips_come_and_go() {
    let server = start_with("first");
    let tasks = tasks_dir(&server);

    // A folder built elsewhere and moved in, and one written in place.
    let staged = server.root.path().join("staged");
    write_task(&staged, "moved", 7);
    std::fs::rename(&staged, tasks.join("moved")).unwrap();
    write_task(&tasks.join("written"), "written", 8);
    wait_for_version(&server, "moved", 7).await;
    wait_for_version(&server, "written", 8).await;

    // A ZIP, copied in under a temporary name and renamed when complete.
    let zipped = task("(input) => ({v: 9})");
    zipped.write("metadata.json", &json!({"name": "zipped", "version": "1.0.0"}).to_string());
    std::fs::copy(zipped.zip(), tasks.join(".zipped.zip.part")).unwrap();
    std::fs::rename(tasks.join(".zipped.zip.part"), tasks.join("zipped.zip")).unwrap();
    wait_for_version(&server, "zipped", 9).await;

    // Removed: the tasks disappear, the others stay.
    std::fs::remove_dir_all(tasks.join("moved")).unwrap();
    std::fs::remove_file(tasks.join("zipped.zip")).unwrap();
    server
        .wait_until("the removed tasks are gone", || async {
            server.get("/api/v1/tasks/moved").await.status == 404
                && server.get("/api/v1/tasks/zipped").await.status == 404
        })
        .await;
    assert_eq!(server.run_v("written").await, Some(json!(8)));
    assert_eq!(server.run_v("first").await, Some(json!(1)));
    let names: Vec<Value> = server.get("/api/v1/tasks").await.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("first"), json!("written")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_edits_reloads_a_few_times_and_the_last_one_wins() {
    let original = task("(input) => ({v: 0})");
    original.write("metadata.json", &json!({"name": "busy", "version": "1.0.0"}).to_string());
    let server = ApiServer::start(&[&original.path()], "workers: {count: 1}\nregistry: {debounce_ms: 300}\n");
    let main = tasks_dir(&server).join("task/main.js");
    for version in 1..=100 {
        std::fs::write(&main, code(version)).unwrap();
    }
    wait_for_version(&server, "busy", 100).await;
    // A reload after the last content serves finds the same digest and logs nothing.
    let log = std::fs::read_to_string(server.root.path().join("serve.log")).unwrap();
    let reloads = log.lines().filter(|l| l.contains("loaded version") && l.contains("busy")).count();
    assert!((1..=3).contains(&reloads), "{reloads} reloads for 100 edits:\n{log}");
}

/// A job that may start `secs` seconds from now, as REST takes it.
fn in_seconds(secs: i64) -> String {
    ratchet_core::time::format(ratchet_storage::now_ms() + secs * 1000)
}

async fn wait_for_job(server: &ApiServer, id: &str) -> Value {
    let finished = |job: &Value| matches!(job["status"].as_str(), Some("completed" | "failed"));
    server
        .wait_until(&format!("job {id} finishes"), || async {
            finished(&server.get(&format!("/api/v1/jobs/{id}")).await.json)
        })
        .await;
    server.get(&format!("/api/v1/jobs/{id}")).await.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_runs_the_version_it_was_enqueued_for() {
    let server = start_with("pinned");
    let tasks = tasks_dir(&server);
    write_task(&tasks.join("doomed"), "doomed", 1);
    wait_for_version(&server, "doomed", 1).await;
    let first = task_view(&server, "pinned").await["digest"].clone();

    // Both start a few seconds from now, after the edit and the removal below have loaded.
    let enqueue = |task: &'static str| {
        let body = json!({"task": task, "input": {}, "run_at": in_seconds(6), "max_attempts": 1});
        let server = &server;
        async move {
            let answer = server.post("/api/v1/jobs", &body).await;
            assert_eq!(answer.status, 201, "{}", answer.text);
            answer.json
        }
    };
    let pinned = enqueue("pinned").await;
    let doomed = enqueue("doomed").await;
    assert_eq!(pinned["task_digest"], first);

    std::fs::write(tasks.join("task/main.js"), code(2)).unwrap();
    std::fs::remove_dir_all(tasks.join("doomed")).unwrap();
    wait_for_version(&server, "pinned", 2).await;
    server
        .wait_until("doomed is gone", || async { server.get("/api/v1/tasks/doomed").await.status == 404 })
        .await;
    let still = server.get(&format!("/api/v1/jobs/{}", pinned["id"].as_str().unwrap())).await.json;
    assert_eq!(still["status"], "queued", "the job started before the edit loaded: {still}");

    let pinned = wait_for_job(&server, pinned["id"].as_str().unwrap()).await;
    assert_eq!(pinned["status"], "completed", "{pinned}");
    assert_eq!(pinned["output"], json!({"v": 1}), "the job ran the version it was enqueued for");
    let doomed = wait_for_job(&server, doomed["id"].as_str().unwrap()).await;
    assert_eq!(doomed["status"], "failed", "{doomed}");
    assert!(doomed["last_error"].as_str().unwrap().contains("no task named `doomed`"), "{doomed}");

    // Both versions are known; the node serves the second.
    let versions = server.get("/api/v1/tasks/pinned/versions").await.json;
    assert_eq!(versions["items"].as_array().unwrap().len(), 2, "{versions}");
    assert_ne!(versions["serving"], first);
    assert_eq!(server.run_v("pinned").await, Some(json!(2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_enqueues_a_task_only_the_server_knows() {
    let mine = tests::task_with(
        "(input) => ({v: input.n})",
        json!({"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}),
        json!({}),
    );
    mine.write("metadata.json", &json!({"name": "mine", "version": "1.0.0"}).to_string());
    let server = ApiServer::start(&[&mine.path()], CONFIG);
    let data = server.root.path().join("data");
    let data = data.to_str().unwrap();

    // From a folder with no tasks and no configuration: the database knows what nodes serve.
    let elsewhere = tempfile::tempdir().unwrap();
    let enqueue = |input: &str| {
        tests::ratchet_in(
            elsewhere.path(),
            &["jobs", "enqueue", "mine", "--input-json", input, "--data-dir", data, "--format", "json"],
            &[],
        )
    };
    let refused = enqueue(r#"{"n": "seven"}"#);
    assert!(!refused.success(), "{refused:?}");
    assert!(refused.stderr.contains("input schema of mine"), "{refused:?}");
    let queued = enqueue(r#"{"n": 7}"#);
    assert!(queued.success(), "{queued:?}");
    let job = wait_for_job(&server, queued.json()["id"].as_str().unwrap()).await;
    assert_eq!(job["output"], json!({"v": 7}), "{job}");

    let unknown = tests::ratchet_in(
        elsewhere.path(),
        &["jobs", "enqueue", "theirs", "--input-json", "{}", "--data-dir", data],
        &[],
    );
    assert!(!unknown.success(), "{unknown:?}");
}
