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
        "## System state",
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
    assert_eq!(data["classification"][0]["pattern"], "undefined-value");
    assert_eq!(data["context"]["input"]["token"], "***");
    assert_eq!(data["context"]["input"]["user"], "ada");
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
    assert_eq!(reports[1]["context"]["code_source"], "the version the job was enqueued for");
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
