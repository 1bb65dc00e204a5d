//! Regressions found while reshaping the kernel: each test is named after what was wrong.

use serde_json::{Value, json};
use tests::api::ApiServer;

async fn wait_for_job(server: &ApiServer, id: &str, status: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let job = server.get(&format!("/api/v1/jobs/{id}")).await;
        if job.json["status"] == status {
            return job.json;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "job {id} never became {status}: {job:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `context.attempt` was always 1, even on a job's third attempt; and a job's own timeout was
/// stored but never enforced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_sees_its_attempt_and_a_job_timeout_is_enforced() {
    let task = tests::task(
        "async function main(input, context) { \
           if (input.sleep) { await new Promise(r => setTimeout(r, input.sleep)); return {}; } \
           if (context.attempt < 3) throw new Error('attempt ' + context.attempt); \
           return {attempt: context.attempt}; }",
    );
    task.write("metadata.json", r#"{"name": "third-time", "version": "1.0.0", "timeout": 60}"#);
    let config = "server:\n  rate_limit_per_second: 0\nqueue:\n  backoff_base_secs: 0.01\n  backoff_max_secs: 0.05\n  poll_interval_ms: 20\n";
    let server = ApiServer::start(&[&task.path()], config);
    let enqueued =
        server.post("/api/v1/jobs", &json!({"task": "third-time", "input": {}, "max_attempts": 3})).await;
    assert_eq!(enqueued.status, 201, "{enqueued:?}");
    let job = wait_for_job(&server, enqueued.json["id"].as_str().unwrap(), "completed").await;
    assert_eq!(job["output"], json!({"attempt": 3}), "{job}");

    let slow = json!({"task": "third-time", "input": {"sleep": 30000}, "max_attempts": 1, "timeout_secs": 1});
    let enqueued = server.post("/api/v1/jobs", &slow).await;
    assert_eq!(enqueued.json["timeout_secs"], 1.0, "{enqueued:?}");
    let job = wait_for_job(&server, enqueued.json["id"].as_str().unwrap(), "failed").await;
    assert!(job.to_string().contains("timeout of 1s"), "{job}");
    let too_long = json!({"task": "third-time", "input": {}, "timeout_secs": 1e9});
    server.post("/api/v1/jobs", &too_long).await.assert_error(422, "invalid_input");
}

/// Every package was version 0.0.0 (in `--version`, recordings, `/api/v1/plugins`);
/// `ratchet plugins list` omitted the built-in loader of `server.tasks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_project_has_a_version_and_plugins_list_shows_the_built_in_loader() {
    let version = tests::ratchet(&["--version"]);
    let printed = version.stdout.trim().strip_prefix("ratchet ").unwrap_or_default().to_owned();
    assert!(!printed.is_empty() && printed != "0.0.0", "{version:?}");
    let listed = tests::ratchet(&["plugins", "list", "--format", "json"]);
    let plugins: Value = serde_json::from_str(&listed.stdout).unwrap();
    let loader = plugins.as_array().unwrap().iter().find(|p| p["name"] == "server-tasks").cloned();
    assert_eq!(loader.as_ref().map(|l| l["kind"].clone()), Some(json!("loader")), "{plugins}");
    let text = tests::ratchet(&["plugins", "list"]);
    assert!(
        text.stdout.lines().any(|l| l.starts_with("server-tasks") && l.contains("builtin:fs-loader")),
        "{text:?}"
    );
    assert!(
        text.stdout
            .lines()
            .all(|l| !l.contains("builtin:graphql") || l.trim_end().ends_with("builtin:graphql")),
        "{text:?}"
    );

    let server =
        ApiServer::start(&[&tests::example_task("addition")], "server:\n  rate_limit_per_second: 0\n");
    assert_eq!(server.get("/health").await.json["version"], json!(printed));
    let run = server.post("/api/v1/tasks/addition/run", &json!({"input": {"num1": 1, "num2": 2}})).await;
    assert_eq!(run.json["http"]["log"]["creator"]["version"], json!(printed), "{run:?}");
    let plugins = server.get("/api/v1/plugins").await;
    assert!(plugins.json.as_array().unwrap().iter().all(|p| p["version"] != "0.0.0"), "{plugins:?}");
}

/// `lowerCamel` to `snake_case`, for GraphQL field names.
fn snake(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The GraphQL answer of `field(id: ID)` with every field of `type_name`, keys in snake_case.
async fn graphql_object(
    server: &ApiServer,
    type_name: &str,
    field: &str,
    id: &str,
) -> serde_json::Map<String, Value> {
    let fields = server
        .post(
            "/graphql",
            &json!({"query": format!("{{ __type(name: \"{type_name}\") {{ fields {{ name }} }} }}")}),
        )
        .await;
    let names: Vec<String> = fields.json["data"]["__type"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    let query = format!("{{ {field}(id: \"{id}\") {{ {} }} }}", names.join(" "));
    let answer = server.post("/graphql", &json!({"query": query})).await;
    answer.json["data"][field]
        .as_object()
        .unwrap_or_else(|| panic!("{answer:?}"))
        .iter()
        .map(|(k, v)| (snake(k), v.clone()))
        .collect()
}

/// Job, execution and schedule were written out three times by hand (REST, GraphQL, the CLI)
/// and had drifted: the CLI had `updated_at`, GraphQL lacked `catch_up`, `overlap`,
/// `created_at`. One view per entity now; read through all three, each has the same fields and
/// values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entity_reads_the_same_through_rest_graphql_and_the_cli() {
    let server =
        ApiServer::start(&[&tests::example_task("addition")], "server:\n  rate_limit_per_second: 0\n");
    let data = server.root.path().join("data");
    let data = data.to_str().unwrap();
    let job =
        server.post("/api/v1/jobs", &json!({"task": "addition", "input": {"num1": 1, "num2": 2}})).await;
    let job_id = job.json["id"].as_str().unwrap().to_owned();
    let done = wait_for_job(&server, &job_id, "completed").await;
    let execution_id =
        server.get(&format!("/api/v1/executions?job_id={job_id}")).await.json["items"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    let schedule = server
        .post(
            "/api/v1/schedules",
            &json!({"task": "addition", "cron": "0 0 * * *", "input": {"num1": 1, "num2": 1}}),
        )
        .await;
    let schedule_id = schedule.json["id"].as_str().unwrap().to_owned();
    let cases = [
        ("JobView", "job", job_id.clone(), format!("/api/v1/jobs/{job_id}"), vec!["jobs", "show"]),
        (
            "ExecutionDetail",
            "execution",
            execution_id.clone(),
            format!("/api/v1/executions/{execution_id}"),
            vec!["executions", "show"],
        ),
        (
            "ScheduleView",
            "schedule",
            schedule_id.clone(),
            format!("/api/v1/schedules/{schedule_id}"),
            vec!["schedules", "show"],
        ),
    ];
    for (type_name, field, id, path, command) in cases {
        let rest = server.get(&path).await.json;
        let graphql = graphql_object(&server, type_name, field, &id).await;
        let mut args = command.clone();
        args.extend([id.as_str(), "--data-dir", data, "--format", "json"]);
        let cli = tests::ratchet(&args);
        assert!(cli.success(), "{args:?}: {cli:?}");
        let cli: Value = serde_json::from_str(&cli.stdout).unwrap();
        for (key, value) in &graphql {
            assert_eq!(rest.get(key), Some(value), "{type_name}.{key}: REST {rest} vs GraphQL {value}");
            assert_eq!(cli.get(key), Some(value), "{type_name}.{key}: CLI {cli} vs GraphQL {value}");
        }
        for key in rest.as_object().unwrap().keys().filter(|k| *k != "attempts" && *k != "versions") {
            assert!(graphql.contains_key(key), "{type_name}: GraphQL lacks {key}");
        }
    }
    assert_eq!(done["output"], json!({"sum": 3}));
}

/// GraphQL errors said only a message; they carry the REST error's `code` (and `details`)
/// in their extensions now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_errors_carry_the_rest_error_code() {
    let server =
        ApiServer::start(&[&tests::example_task("addition")], "server:\n  rate_limit_per_second: 0\n");
    let missing = server.post("/graphql", &json!({"query": "{ job(id: \"nope\") { id } }"})).await;
    let rest = server.get("/api/v1/jobs/nope").await;
    assert_eq!(missing.json["errors"][0]["extensions"]["code"], rest.json["error"]["code"], "{missing:?}");
    let bad = "mutation { enqueue(task: \"addition\", input: {num1: \"x\", num2: 1}) { id } }";
    let refused = server.post("/graphql", &json!({"query": bad})).await;
    let extensions = &refused.json["errors"][0]["extensions"];
    assert_eq!(extensions["code"], "invalid_input", "{refused:?}");
    assert_eq!(extensions["details"]["violations"][0]["pointer"], "/num1", "{refused:?}");
}

/// The built-in console sink implements plugin-api's `NativeSink` and runs through the same
/// adapter as a shared-library sink: a real run's events reach the server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_console_sink_writes_the_events_of_runs() {
    let config = "server:\n  rate_limit_per_second: 0\nplugins:\n  - name: console\n    kind: sink\n    source: builtin:console-sink\n";
    let server = ApiServer::start(&[&tests::example_task("addition")], config);
    let run = server.post("/api/v1/tasks/addition/run", &json!({"input": {"num1": 1, "num2": 2}})).await;
    let id = run.json["id"].as_str().unwrap().to_owned();
    let log_path = server.root.path().join("serve.log");
    let started = std::time::Instant::now();
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let event = log
            .lines()
            .filter_map(|l| l.strip_prefix("[event] "))
            .find(|l| l.contains(&id) && l.contains("execution.succeeded"));
        if let Some(event) = event {
            let event: Value = serde_json::from_str(event).unwrap();
            assert_eq!(event["task"], "addition", "{event}");
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no console event for {id}:\n{log}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let plugins = server.get("/api/v1/plugins").await;
    let console = plugins.json.as_array().unwrap().iter().find(|p| p["name"] == "console").cloned().unwrap();
    assert_eq!((console["plugin"].as_str(), console["kind"].as_str()), (Some("console-sink"), Some("sink")));
}
