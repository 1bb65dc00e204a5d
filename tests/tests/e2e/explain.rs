//! `ratchet explain` and the failure report over REST and GraphQL: a real failing task
//! through `ratchet serve`, its report read from the CLI, with its code, pattern, logs and
//! HTTP calls, and none of the secrets the run saw.

use serde_json::{Value, json};
use tests::api::ApiServer;
use tests::server::TestServer;

const SECRET: &str = "s3cret-key-4242";

fn write_task(root: &std::path::Path, name: &str, code: &str) {
    let folder = root.join("tasks").join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("metadata.json"), json!({"name": name, "version": "1.2.0"}).to_string())
        .unwrap();
    std::fs::write(folder.join("main.js"), code).unwrap();
    std::fs::write(folder.join("input.schema.json"), "{}").unwrap();
    std::fs::write(folder.join("output.schema.json"), "{}").unwrap();
}

/// `ratchet explain` with the server's configuration and database.
fn explain(server: &ApiServer, id: &str, format: &str) -> tests::Run {
    let data = server.root.path().join("data");
    let config = server.root.path().join("ratchet.yaml");
    tests::ratchet(&[
        "--config",
        config.to_str().unwrap(),
        "explain",
        id,
        "--format",
        format,
        "--data-dir",
        data.to_str().unwrap(),
    ])
}

/// docs/reliability.md F3: a report names the failing line and the pattern, and never holds a
/// secret the run saw (in its URL, headers, logs or input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_reports_the_failing_line_the_pattern_and_no_secret() {
    let remote = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    // The secret comes in the input, as a caller would pass it, and goes out in a query
    // parameter, a header and a log line.
    write_task(
        root.path(),
        "thrower",
        "function helper(x) {\n  return x.missing.field;\n}\n\n\
         async function main(input) {\n  console.log('calling the billing API');\n  \
         const url = input.base + '?api_key=' + input.token;\n  \
         const answer = await fetch(url, {headers: {Authorization: 'Bearer ' + input.token}});\n  \
         console.log('billing answered ' + answer.status + ' to ' + url);\n  \
         return helper(input);\n}\n",
    );
    let config = format!(
        "egress:\n  allow_hosts: [\"{}\"]\nqueue:\n  backoff_base_secs: 0.05\n  backoff_max_secs: 0.1\n",
        remote.host()
    );
    let server = ApiServer::start_in(root, &config);
    let input = json!({"user": "ada", "token": SECRET, "base": remote.url("/status/401")});
    let run = server.post("/api/v1/tasks/thrower/run", &json!({"input": input})).await;
    assert_eq!(run.json["status"], "failure", "{run:?}");
    let id = run.json["id"].as_str().unwrap().to_owned();

    let shown = explain(&server, &id, "text");
    assert!(shown.success(), "{shown:?}");
    let markdown = shown.stdout;
    for expected in [
        "## Summary",
        "| error | task_error |",
        "| name | TypeError |",
        "## Error details",
        "at helper (main.js:2",
        "## Execution context",
        "version 1.2.0",
        "## Pattern analysis",
        "**undefined-value** (javascript",
        "## Code",
        ">   2 |   return x.missing.field;",
        "## System state at the failure (",
        "- in flight on the node: 0 job(s), 1 synchronous run(s)",
        "- node memory (resident): ",
        "## System state now",
        "## Suggested prompts",
        "main.js line 2",
        "calling the billing API",
        "GET http://",
        "-> 401",
    ] {
        assert!(markdown.contains(expected), "the report lacks `{expected}`:\n{markdown}");
    }
    assert!(!markdown.contains(SECRET), "a secret reached the report:\n{markdown}");

    // The same as data, from the CLI and from REST; Markdown when asked for.
    let data = explain(&server, &id, "json");
    let data = data.json();
    assert_eq!(data["summary"]["error_kind"], "task_error");
    assert_eq!(data["code"]["line"], 2);
    assert_eq!(data["context"]["code_source"], "the version that ran", "a synchronous run keeps its version");
    assert_eq!(data["classification"][0]["pattern"], "undefined-value");
    assert_eq!(data["context"]["input"]["token"], "***");
    assert_eq!(data["context"]["input"]["user"], "ada");
    let then = &data["system"]["at_failure"];
    assert_eq!(then["runs_in_flight"], 1, "the failing run itself: {then}");
    assert_eq!(then["workers"].as_array().map(Vec::len), Some(2), "{then}");
    assert!(then["rss_kib"].as_u64().is_some_and(|kib| kib > 1024), "{then}");
    assert!(then["queue"].is_object(), "counted at start-up: {then}");
    assert!(!data.to_string().contains(SECRET), "{data}");
    let rest = server.get(&format!("/api/v1/executions/{id}/report")).await;
    assert_eq!(rest.status, 200);
    assert_eq!(rest.json["summary"]["execution_id"], id.as_str());
    let as_text = server
        .send(
            server
                .client
                .get(server.url(&format!("/api/v1/executions/{id}/report")))
                .header("accept", "text/markdown"),
        )
        .await;
    assert!(as_text.header("content-type").is_some_and(|t| t.starts_with("text/markdown")), "{as_text:?}");
    assert!(as_text.text.starts_with("# Failure report: thrower"), "{}", as_text.text);
    let query = json!({"query": format!("{{ executionReport(id: \"{id}\") {{ markdown data }} }}")});
    let graphql = server.post("/graphql", &query).await;
    assert!(
        graphql.json["data"]["executionReport"]["markdown"].as_str().unwrap_or_default().contains("## Code"),
        "{graphql:?}"
    );
    server.get("/api/v1/executions/nope/report").await.assert_error(404, "not_found");

    // A job: one report per attempt, each with the attempts before it.
    let job =
        server.post("/api/v1/jobs", &json!({"task": "thrower", "input": input, "max_attempts": 2})).await;
    let job_id = job.json["id"].as_str().unwrap().to_owned();
    server
        .wait_until("the job fails twice", || async {
            server.get(&format!("/api/v1/jobs/{job_id}")).await.json["status"] == "failed"
        })
        .await;
    let reports = explain(&server, &job_id, "json").json();
    let reports = reports.as_array().unwrap_or_else(|| panic!("{reports}"));
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert_eq!(reports[1]["context"]["attempt"], 2);
    assert_eq!(reports[1]["context"]["job_id"], job_id.as_str());
    assert_eq!(reports[1]["context"]["code_source"], "the version that ran");
    assert!(explain(&server, &job_id, "text").stdout.contains("attempt 2 of 2"));
    let unknown = explain(&server, "no-such-id", "text");
    assert!(!unknown.success() && unknown.stderr.contains("no execution or job has the id"), "{unknown:?}");
}

/// A long log is trimmed to `llm_export.max_context_tokens`, oldest lines first, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_run_is_trimmed_to_the_token_budget() {
    let root = tempfile::tempdir().unwrap();
    write_task(
        root.path(),
        "chatty",
        "(input) => { for (let i = 0; i < 2000; i++) console.log(`line ${i} of a long story`); \
         throw new Error('gave up'); }",
    );
    let server = ApiServer::start_in(root, "llm_export:\n  max_context_tokens: 1000\n");
    let run = server.post("/api/v1/tasks/chatty/run", &json!({"input": {}})).await;
    let id = run.json["id"].as_str().unwrap().to_owned();
    let report: Value = explain(&server, &id, "json").json();
    assert!(report["trimmed"].as_u64().unwrap() > 1000, "{}", report["trimmed"]);
    let markdown = explain(&server, &id, "text").stdout;
    assert!(markdown.contains("line 1999 of a long story"), "the end of the run is kept");
    assert!(!markdown.contains("line 0 of a long story"));
    assert!(markdown.contains("earlier entries left out: llm_export.max_context_tokens"));
    assert!(markdown.len() <= 1000 * 4, "{} characters:\n{markdown}", markdown.len());
}

/// docs/reliability.md F5: the logs of recorded runs are searchable (task, level, text) from
/// the CLI and REST, `--follow` shows new runs' lines as they are recorded, and trends count
/// failures by task and pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_searchable_followed_and_trended() {
    let root = tempfile::tempdir().unwrap();
    write_task(
        root.path(),
        "chatter",
        "(input) => { console.debug('dbg ' + input.n); console.info('hello ' + input.n); \
         console.warn('careful: needle ' + input.n); console.error('bad ' + input.n); return {}; }",
    );
    write_task(root.path(), "fails", "(input) => { while (true) {} }");
    std::fs::write(
        root.path().join("tasks/fails/metadata.json"),
        json!({"name": "fails", "version": "1.0.0", "timeout": 1}).to_string(),
    )
    .unwrap();
    let server = ApiServer::start_in(root, "");
    for n in 0..3 {
        let run = server.post("/api/v1/tasks/chatter/run", &json!({"input": {"n": n}})).await;
        assert_eq!(run.json["status"], "success", "{run:?}");
    }
    for _ in 0..2 {
        server.post("/api/v1/tasks/fails/run", &json!({"input": {}})).await;
    }
    let data = server.root.path().join("data");
    let data = data.to_str().unwrap();

    let warned = tests::ratchet(&[
        "logs",
        "--task",
        "chatter",
        "--level",
        "warn",
        "--format",
        "json",
        "--data-dir",
        data,
    ]);
    assert!(warned.success(), "{warned:?}");
    let items = warned.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 6, "warn and error lines of 3 runs: {items:?}");
    assert!(items.iter().all(|l| l["level"] == "warn" || l["level"] == "error"));
    assert_eq!(items[0]["message"], "careful: needle 0", "oldest first");
    let text = tests::ratchet(&["logs", "--grep", "NEEDLE 2", "--since", "1h", "--data-dir", data]);
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{text:?}");
    assert!(lines[0].contains("chatter") && lines[0].contains("careful: needle 2"), "{text:?}");

    let rest = server.get("/api/v1/logs?task=chatter&level=error&limit=2").await;
    assert_eq!(rest.status, 200, "{rest:?}");
    let messages: Vec<&str> =
        rest.json["items"].as_array().unwrap().iter().map(|l| l["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["bad 1", "bad 2"], "the newest lines within the limit");
    assert_eq!(rest.json["truncated"], true);
    server.get("/api/v1/logs?since=soon").await.assert_error(422, "invalid_input");
    server.get("/api/v1/logs?level=loud").await.assert_error(400, "bad_request");
    assert_eq!(
        server.get("/api/v1/logs?since=&task=chatter").await.status,
        200,
        "an empty since is no filter"
    );

    let trends = server.get("/api/v1/logs/trends?since=1h&bucket=1h").await;
    assert_eq!(trends.status, 200, "{trends:?}");
    let buckets = trends.json["buckets"].as_array().unwrap();
    let failures: u64 = buckets.iter().map(|b| b["failures"].as_u64().unwrap()).sum();
    let runs: u64 = buckets.iter().map(|b| b["runs"].as_u64().unwrap()).sum();
    assert_eq!((runs, failures), (5, 2), "{trends:?}");
    let by_pattern: u64 = buckets.iter().filter_map(|b| b["by_pattern"]["task-timeout"].as_u64()).sum();
    assert_eq!(by_pattern, 2, "{trends:?}");
    server.get("/api/v1/logs/trends?bucket=1s").await.assert_error(422, "invalid_input");

    // --follow: a run recorded after it started shows up.
    let mut follower = std::process::Command::new(tests::ratchet_bin())
        .args([
            "logs",
            "--follow",
            "--task",
            "chatter",
            "--grep",
            "needle 42",
            "--format",
            "json",
            "--data-dir",
            data,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = follower.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                return;
            }
        }
    });
    server.post("/api/v1/tasks/chatter/run", &json!({"input": {"n": 42}})).await;
    let line = seen.recv_timeout(std::time::Duration::from_secs(30));
    let _ = follower.kill();
    let _ = follower.wait();
    let line: Value = serde_json::from_str(&line.expect("--follow printed the new run's line")).unwrap();
    assert_eq!(line["message"], "careful: needle 42");
}

/// A random W3C trace id.
fn trace_id() -> String {
    ratchet_core::trace::TraceContext::root().trace_id().to_owned()
}

/// docs/reliability.md F6: one trace id finds the request, its job, the job's runs, their log
/// lines and events, and the HTTP requests the task made (which carry it as `traceparent`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_links_the_request_its_job_its_runs_and_their_requests() {
    let echo = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    write_task(
        root.path(),
        "traced",
        "async (input) => {\n  const answer = await fetch(input.url, {method: 'POST', body: 'hi'});\n  \
         const echoed = await answer.json();\n  console.info('sent traceparent ' + echoed.traceparent);\n  \
         return {traceparent: echoed.traceparent};\n}",
    );
    let config = format!(
        "logging:\n  format: json\negress:\n  allow_hosts: [\"{}\"]\n\
         plugins:\n  - {{name: console, kind: sink, source: \"builtin:console-sink\"}}\n",
        echo.host()
    );
    let server = ApiServer::start_in(root, &config);
    let client = reqwest::Client::new();
    let trace = trace_id();
    let traceparent = format!("00-{trace}-00f067aa0ba902b7-01");
    let input = json!({"url": echo.url("/echo")});

    // A job enqueued with a traceparent runs on that trace.
    let enqueued = server
        .send(
            client
                .post(server.url("/api/v1/jobs"))
                .header("traceparent", &traceparent)
                .json(&json!({"task": "traced", "input": input})),
        )
        .await;
    assert_eq!(enqueued.status, 201, "{enqueued:?}");
    assert_eq!(enqueued.headers["x-trace-id"], trace.as_str());
    assert_eq!(enqueued.json["trace_id"], trace.as_str());
    let job = enqueued.json["id"].as_str().unwrap().to_owned();
    server
        .wait_until("the traced job completes", || async {
            server.get(&format!("/api/v1/jobs/{job}")).await.json["status"] == "completed"
        })
        .await;
    let runs = server.get(&format!("/api/v1/executions?trace_id={trace}")).await;
    let items = runs.json["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{runs:?}");
    assert_eq!(items[0]["job_id"], job.as_str());
    assert_eq!(items[0]["trace_id"], trace.as_str());
    let execution = server.get(&format!("/api/v1/executions/{}", items[0]["id"].as_str().unwrap())).await;
    // The task's request carried the trace, under a span of its own.
    let sent = execution.json["output"]["traceparent"].as_str().unwrap().to_owned();
    assert!(sent.starts_with(&format!("00-{trace}-")) && sent.ends_with("-01"), "{sent}");
    assert_ne!(sent, traceparent, "a new span for the outgoing request");
    let recorded: Vec<&Value> = execution.json["http"]["log"]["entries"][0]["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["name"] == "traceparent")
        .collect();
    assert_eq!(recorded.len(), 1, "the recording shows the header: {execution:?}");

    // The CLI finds the run's lines by the trace.
    let data = server.root.path().join("data");
    let lines = tests::ratchet(&[
        "logs",
        "--trace",
        &trace,
        "--format",
        "json",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert!(lines.success(), "{lines:?}");
    let items = lines.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{lines:?}");
    assert_eq!(items[0]["trace_id"], trace.as_str());
    assert_eq!(items[0]["message"], format!("sent traceparent {sent}"));

    // A synchronous run takes the request's trace too; a request without one gets a new trace.
    let other = trace_id();
    let run = server
        .send(
            client
                .post(server.url("/api/v1/tasks/traced/run"))
                .header("traceparent", format!("00-{other}-00f067aa0ba902b7-00"))
                .json(&json!({"input": input})),
        )
        .await;
    assert_eq!(run.json["trace_id"], other.as_str(), "{run:?}");
    assert!(run.json["output"]["traceparent"].as_str().unwrap().ends_with("-00"), "the sampled flag is kept");
    let untraced = server.post("/api/v1/jobs", &json!({"task": "traced", "input": input})).await;
    let fresh = untraced.headers["x-trace-id"].to_str().unwrap().to_owned();
    assert_eq!(fresh.len(), 32, "{untraced:?}");
    assert_eq!(untraced.json["trace_id"], fresh.as_str());
    let invalid = server
        .send(
            client
                .post(server.url("/api/v1/jobs"))
                .header("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01")
                .json(&json!({"task": "traced", "input": input})),
        )
        .await;
    assert_ne!(
        invalid.json["trace_id"], "00000000000000000000000000000000",
        "an invalid header starts a new trace"
    );

    // The node's log is JSON lines, the console sink's events among them, with the trace.
    server
        .wait_until("the console sink logs the traced job's end", || async {
            server.log().contains("execution.succeeded")
        })
        .await;
    let log = server.log();
    let events: Vec<Value> = log
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .filter(|line: &Value| line["target"] == "ratchet::event")
        .collect();
    assert!(!log.contains("[event]"), "{log}");
    let ended = events
        .iter()
        .find(|e| {
            e["fields"]["message"] == "execution.succeeded" && e["fields"]["trace_id"] == trace.as_str()
        })
        .unwrap_or_else(|| panic!("no traced execution.succeeded event: {log}"));
    assert_eq!(ended["fields"]["data"]["job"], job.as_str());
}

/// docs/reliability.md F7: `ratchet logs --follow` shows a run's lines while it runs, from the
/// node's live stream (`GET /api/v1/logs/live`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_shows_lines_while_the_run_is_going() {
    let root = tempfile::tempdir().unwrap();
    write_task(root.path(), "holds", "(input) => { console.warn('holding ' + input.n); while (true) {} }");
    let server = ApiServer::start_in(root, "server:\n  rate_limit_per_second: 0\n");
    let data = server.root.path().join("data");
    let trace = trace_id();
    let mut follower = std::process::Command::new(tests::ratchet_bin())
        .args(["logs", "--follow", "--trace", &trace, "--format", "json", "--server", &server.url("")])
        .args(["--data-dir", data.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (said, heard) = std::sync::mpsc::channel();
    for (stream, out) in [
        (Box::new(follower.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>, "stdout"),
        (Box::new(follower.stderr.take().unwrap()), "stderr"),
    ] {
        let said = said.clone();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
                if said.send((out, line)).is_err() {
                    return;
                }
            }
        });
    }
    let wait_for = |wanted: &str| loop {
        match heard.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok((out, line)) if out == wanted.split(':').next().unwrap() && line.contains(&wanted[7..]) => {
                return line;
            }
            Ok(_) => {}
            Err(error) => panic!("the follower never said {wanted}: {error}"),
        }
    };
    wait_for("stderr:(following");
    let client = reqwest::Client::new();
    let enqueued = server
        .send(
            client
                .post(server.url("/api/v1/jobs"))
                .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
                .json(&json!({"task": "holds", "input": {"n": 7}, "timeout_secs": 120})),
        )
        .await;
    let job = enqueued.json["id"].as_str().unwrap().to_owned();
    let line: Value = serde_json::from_str(&wait_for("stdout:holding 7")).unwrap();
    // The run is still going: the line came live, not from its record.
    let now = server.get(&format!("/api/v1/jobs/{job}")).await;
    assert_eq!(now.json["status"], "running", "{now:?}");
    assert_eq!(line["trace_id"], trace.as_str());
    assert_eq!(line["level"], "warn");
    server.post(&format!("/api/v1/jobs/{job}/cancel"), &json!({})).await;
    let _ = follower.kill();
    let _ = follower.wait();

    // The stream itself: filters are checked, and a viewer reads it as server-sent events.
    server.get("/api/v1/logs/live?level=loud").await.assert_error(400, "bad_request");
}
