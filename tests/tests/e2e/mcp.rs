//! The MCP server, driven by the official Python SDK as an agent's host would (the 2.x line
//! speaks the current protocol, 2026-07-28; the 1.x line the previous one): over stdio
//! (`ratchet mcp`) and streamable HTTP (`/mcp` on `ratchet serve`). The SDKs come from PyPI
//! into `target/tools` (`cargo xtask mcp-clients`; `cargo xtask ci` installs them).

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tests::api::{ApiServer, client};
use tests::{component, ratchet_bin, sha256, workspace_root};

/// Each SDK line and the protocol version it should settle on with Ratchet.
const SDKS: [(&str, &str); 2] = [("mcp2", "2026-07-28"), ("mcp1", "2025-11-25")];

/// The platform's own tools, which every runner sees.
const PLATFORM_TOOLS: [&str; 6] = [
    "ratchet_enqueue_job",
    "ratchet_get_job",
    "ratchet_get_execution",
    "ratchet_explain_execution",
    "ratchet_list_executions",
    "ratchet_cancel_job",
];
const READ_TOOLS: [&str; 4] =
    ["ratchet_get_job", "ratchet_get_execution", "ratchet_explain_execution", "ratchet_list_executions"];

fn python(sdk: &str) -> PathBuf {
    let python = workspace_root().join("target/tools").join(sdk).join("bin/python");
    assert!(
        python.is_file(),
        "the Python MCP client `{sdk}` is missing at {}: run `cargo xtask mcp-clients` (`cargo xtask ci` does)",
        python.display()
    );
    python
}

/// Runs tests/mcp/client.py with `sdk` over `transport` (its arguments), through `steps`, and
/// returns its report.
async fn drive(sdk: &str, transport: &[String], steps: &[&str], env: &[(&str, &str)]) -> Value {
    let mut command = tokio::process::Command::new(python(sdk));
    command
        .arg(workspace_root().join("tests/mcp/client.py"))
        .args(transport)
        .arg("--")
        .args(steps)
        .envs(env.iter().copied())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output())
        .await
        .expect("the MCP client finished within 3 minutes")
        .expect("the MCP client ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|_| panic!("the client printed no report\nstdout: {stdout}\nstderr: {stderr}"))
}

fn steps_of(report: &Value) -> &Vec<Value> {
    report["steps"].as_array().unwrap_or_else(|| panic!("the client did not get through: {report}"))
}

/// The tasks of [`write_tasks`] that load, and the platform's tools, are all listed.
fn assert_lists_every_tool(sdk: &str, names: &[String]) {
    for expected in ["addition", "slow", "noisy"].iter().chain(&PLATFORM_TOOLS) {
        assert!(names.iter().any(|n| n == expected), "{sdk}: {expected} missing from {names:?}");
    }
}

fn tool_names(list: &Value) -> Vec<String> {
    list["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_owned()).collect()
}

/// The JSON a result's text carries.
fn text_json(step: &Value) -> Value {
    serde_json::from_str(step["text"].as_str().unwrap_or_else(|| panic!("no text in {step}"))).unwrap()
}

/// Tasks for the agents: `addition` (the sample), `slow` (a log line per step), `noisy` (logs
/// a lot, to stdout's neighbours), and a folder that does not load, so the kernel warns.
fn write_tasks(root: &Path) -> PathBuf {
    let tasks = root.join("tasks");
    copy_dir(&tests::example_task("addition"), &tasks.join("addition"));
    write_task(
        &tasks.join("slow"),
        json!({"name": "slow", "version": "1.0.0", "timeout": 120, "tags": ["demo"]}),
        "const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));\n\
         async function main(input) {\n\
           for (let i = 0; i < input.steps; i++) { console.info(`step ${i}`); await sleep(input.ms); }\n\
           return { done: input.steps };\n\
         }\n",
        json!({"type": "object", "required": ["steps", "ms"],
               "properties": {"steps": {"type": "integer"}, "ms": {"type": "integer"}}}),
        json!({"type": "object", "required": ["done"], "properties": {"done": {"type": "integer"}}}),
    );
    write_task(
        &tasks.join("noisy"),
        json!({"name": "noisy", "version": "1.0.0"}),
        "(input) => { for (let i = 0; i < 200; i++) { console.log(`line ${i} {\"jsonrpc\": \"2.0\"}`); } \
         console.error('an error line'); return 'quiet now'; }",
        json!({"type": "object"}),
        json!({"type": "string"}),
    );
    std::fs::create_dir_all(tasks.join("broken")).unwrap();
    std::fs::write(tasks.join("broken/metadata.json"), "{\"name\": ").unwrap();
    tasks
}

fn write_task(folder: &Path, metadata: Value, code: &str, input: Value, output: Value) {
    std::fs::create_dir_all(folder).unwrap();
    std::fs::write(folder.join("metadata.json"), metadata.to_string()).unwrap();
    std::fs::write(folder.join("main.js"), code).unwrap();
    std::fs::write(folder.join("input.schema.json"), input.to_string()).unwrap();
    std::fs::write(folder.join("output.schema.json"), output.to_string()).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `ratchet [--config CONFIG] mcp` over `tasks`, as the client's transport arguments.
fn stdio(root: &Path, config: Option<&str>) -> Vec<String> {
    let mut args = vec!["stdio".to_owned(), ratchet_bin().display().to_string()];
    if let Some(config) = config {
        let path = root.join("ratchet.yaml");
        std::fs::write(&path, config).unwrap();
        args.extend(["--config".to_owned(), path.display().to_string()]);
    }
    args.extend(["mcp", "--tasks"].map(str::to_owned));
    args.push(root.join("tasks").display().to_string());
    args.push("--data-dir".into());
    args.push(root.join("data").display().to_string());
    args
}

fn http(server: &ApiServer, key: Option<&str>) -> Vec<String> {
    let mut args = vec!["http".to_owned(), server.url("/mcp")];
    if let Some(key) = key {
        args.extend(["--key".to_owned(), key.to_owned()]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_stdio_each_task_is_a_tool_with_its_schemas_and_runs() {
    let root = tempfile::tempdir().unwrap();
    let tasks = write_tasks(root.path());
    for (sdk, protocol) in SDKS {
        let report = drive(
            sdk,
            &stdio(root.path(), None),
            &[
                "list",
                r#"call:addition:{"num1": 2, "num2": 3}"#,
                r#"call:addition:{"num1": "x"}"#,
                "call:noisy:{}",
            ],
            &[],
        )
        .await;
        assert_eq!(report["protocol"], protocol, "{sdk}: {report}");
        let steps = steps_of(&report);
        let names = tool_names(&steps[0]);
        assert_lists_every_tool(sdk, &names);
        assert!(!names.iter().any(|n| n == "broken"), "{names:?}");
        let addition =
            steps[0]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "addition").unwrap();
        assert_eq!(addition["input_schema"], read_json(&tasks.join("addition/input.schema.json")));
        assert_eq!(addition["output_schema"], read_json(&tasks.join("addition/output.schema.json")));
        assert_eq!(addition["description"], "Adds two numbers");
        // A task whose output is not an object has no output schema, and takes its input whole.
        let noisy = steps[0]["tools"].as_array().unwrap().iter().find(|t| t["name"] == "noisy").unwrap();
        assert_eq!(noisy["output_schema"], Value::Null, "{noisy}");

        assert_eq!(steps[1]["is_error"], false, "{sdk}: {}", steps[1]);
        assert_eq!(steps[1]["structured"], json!({"sum": 5}));
        assert_eq!(text_json(&steps[1]), json!({"sum": 5}), "the same JSON as text for old clients");

        let refused = &steps[2];
        assert_eq!(refused["is_error"], true, "{refused}");
        let error = &text_json(refused)["error"];
        assert_eq!(error["kind"], "invalid_input");
        let pointers: Vec<&str> =
            error["violations"].as_array().unwrap().iter().map(|v| v["pointer"].as_str().unwrap()).collect();
        assert!(pointers.contains(&"/num1"), "{error}");

        assert_eq!(steps[3]["is_error"], false, "{}", steps[3]);
        assert_eq!(text_json(&steps[3]), json!("quiet now"));
    }
}

/// docs/reliability.md M1: whatever tasks log and the kernel warns, the stdio server's stdout
/// carries protocol messages only.
#[test]
fn the_stdio_server_writes_nothing_but_protocol_to_stdout() {
    let root = tempfile::tempdir().unwrap();
    write_tasks(root.path());
    let config = "plugins:\n  - {name: console, kind: sink, source: \"builtin:console-sink\"}\n";
    let args = stdio(root.path(), Some(config));
    let mut server = Command::new(&args[1])
        .args(&args[2..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut send = |message: Value| {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
    };
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}}));
    let mut lines = Vec::new();
    let mut read_until_id = |id: u64, lines: &mut Vec<String>| loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "stdout closed early: {lines:?}");
        let message: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("stdout carried something that is not JSON-RPC: {line:?}"));
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        lines.push(line);
        if message["id"] == id {
            return message;
        }
    };
    read_until_id(1, &mut lines);
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "noisy", "arguments": {}}}),
    );
    let answer = read_until_id(2, &mut lines);
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    send(
        json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "addition", "arguments": {}}}),
    );
    assert_eq!(read_until_id(3, &mut lines)["result"]["isError"], true);
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    for line in rest.lines().filter(|l| !l.trim().is_empty()) {
        let message: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON-RPC: {line:?}"));
        assert_eq!(message["jsonrpc"], "2.0");
    }
    let status = server.wait().unwrap();
    assert!(status.success(), "ratchet mcp exits cleanly when the client closes stdin: {status}");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut server.stderr.take().unwrap(), &mut stderr).unwrap();
    // Everything else went to stderr: the kernel's warning about the broken task, the sink's
    // events and the audit of each call.
    assert!(stderr.contains("broken"), "{stderr}");
    assert!(stderr.contains("[event] {\"kind\":\"mcp.tool_called\""), "{stderr}");
    assert!(stderr.contains("ratchet::audit") && stderr.contains("tool=noisy"), "{stderr}");
}

fn auth_config(extra: &str) -> String {
    format!(
        "server:\n  rate_limit_per_second: 0\nmcp:\n  call_wait_secs: 10\n{extra}plugins:\n  \
         - {{name: console, kind: sink, source: \"builtin:console-sink\"}}\n  \
         - name: keys\n    kind: auth\n    source: {}\n    config:\n      keys:\n{}",
        component("api-key-auth").display(),
        ["viewer", "runner"]
            .iter()
            .map(|role| format!(
                "        - {{id: {role}, sha256: {}, role: {role}}}\n",
                sha256(&format!("{role}-key"))
            ))
            .collect::<String>()
    )
}

fn start_with_tasks(config: &str) -> ApiServer {
    let root = tempfile::tempdir().unwrap();
    write_tasks(root.path());
    ApiServer::start_in(root, config)
}

/// `GET path` as the runner (the server of [`auth_config`] wants a key).
async fn get_as_runner(server: &ApiServer, path: &str) -> Value {
    server.send(client().get(server.url(path)).header("x-api-key", "runner-key")).await.json
}

/// The recorded executions of `task`.
async fn executions(server: &ApiServer, task: &str) -> Vec<Value> {
    let listed = get_as_runner(server, &format!("/api/v1/executions?task={task}&limit=100")).await;
    listed["items"].as_array().cloned().unwrap_or_default()
}

fn cancelled(executions: &[Value]) -> usize {
    executions.iter().filter(|e| e["error"]["kind"] == "cancelled").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_http_keys_roles_progress_hand_off_and_cancel_work_for_both_protocol_versions() {
    let server = start_with_tasks(&auth_config(""));
    for (round, (sdk, protocol)) in SDKS.into_iter().enumerate() {
        let report = drive(
            sdk,
            &http(&server, Some("runner-key")),
            &[
                "list",
                r#"call:addition:{"num1": 2, "num2": 3}"#,
                r#"call:addition:{"num1": "x", "num2": 1}"#,
                // 12 s against a 10 s wait: handed off. The abandon below comes 1.5 s into a
                // call that would wait 10 s, so its cancel has time to arrive on a busy machine.
                r#"progress:slow:{"steps": 12, "ms": 1000}"#,
                r#"abandon:slow:{"steps": 400, "ms": 100}:1.5"#,
            ],
            &[],
        )
        .await;
        assert_eq!(report["protocol"], protocol, "{sdk}: {report}");
        let steps = steps_of(&report);
        let names = tool_names(&steps[0]);
        assert_lists_every_tool(sdk, &names);
        assert_eq!(steps[1]["structured"], json!({"sum": 5}), "{sdk}: {}", steps[1]);
        assert_eq!(steps[2]["is_error"], true);
        assert_eq!(text_json(&steps[2])["error"]["violations"][0]["pointer"], "/num1", "{}", steps[2]);

        // A run longer than mcp.call_wait_secs: progress while waiting, then its id to poll.
        let long = &steps[3];
        let handed_off = text_json(long);
        assert_eq!(handed_off["status"], "running", "{sdk}: {long}");
        assert_eq!(handed_off["error"]["kind"], "still_running");
        let progress = long["progress"].as_array().unwrap();
        assert!(
            progress.iter().any(|p| p["message"] == "step 0"),
            "{sdk}: the run's log lines arrive as progress: {progress:?}"
        );
        let id = handed_off["execution_id"].as_str().unwrap().to_owned();
        server
            .wait_until("the handed-off run ends", || async {
                get_as_runner(&server, &format!("/api/v1/executions/{id}")).await["output"]
                    == json!({"done": 12})
            })
            .await;

        // A call the client gives up on stops its run.
        assert_eq!(steps[4]["finished"], false, "{}", steps[4]);
        server
            .wait_until("the abandoned run is stopped and recorded as cancelled", || async {
                cancelled(&executions(&server, "slow").await) > round
            })
            .await;

        let stopped = executions(&server, "slow").await;
        let stopped = stopped.iter().find(|e| e["error"]["kind"] == "cancelled").unwrap()["id"].clone();
        let stopped = stopped.as_str().unwrap();

        // The run's log and HTTP calls, as resources; the platform's tools poll and explain.
        let report = drive(
            sdk,
            &http(&server, Some("runner-key")),
            &[
                &format!("read:ratchet://executions/{id}/logs"),
                &format!("read:ratchet://executions/{id}/har"),
                &format!(r#"call:ratchet_get_execution:{{"id": "{id}"}}"#),
                r#"call:ratchet_enqueue_job:{"task": "addition", "input": {"num1": 1, "num2": 1}}"#,
                &format!(r#"call:ratchet_explain_execution:{{"id": "{stopped}"}}"#),
            ],
            &[],
        )
        .await;
        let steps = steps_of(&report);
        let explained = &steps[4];
        assert!(
            explained["text"].as_str().unwrap_or_default().starts_with("# Failure report: slow"),
            "{explained}"
        );
        assert_eq!(explained["structured"]["summary"]["error_kind"], "cancelled", "{explained}");
        assert_eq!(explained["structured"]["classification"][0]["pattern"], "cancelled");
        let logs = steps[0]["contents"][0].as_str().unwrap_or_else(|| panic!("{}", steps[0]));
        assert!(logs.contains("info step 0") && logs.contains("info step 11"), "{logs}");
        let har: Value = serde_json::from_str(steps[1]["contents"][0].as_str().unwrap()).unwrap();
        assert_eq!(har["log"]["version"], "1.2", "{har}");
        assert_eq!(steps[2]["structured"]["output"], json!({"done": 12}), "{}", steps[2]);
        let job = &steps[3]["structured"];
        assert_eq!(job["task"], "addition", "{}", steps[3]);
        let job_id = job["id"].as_str().unwrap().to_owned();
        server
            .wait_until("the enqueued job completes", || async {
                get_as_runner(&server, &format!("/api/v1/jobs/{job_id}")).await["status"] == "completed"
            })
            .await;

        // A viewer sees and calls only the read tools.
        let report = drive(
            sdk,
            &http(&server, Some("viewer-key")),
            &["list", r#"call:addition:{"num1": 1, "num2": 1}"#, r#"call:ratchet_cancel_job:{"id": "x"}"#],
            &[],
        )
        .await;
        let steps = steps_of(&report);
        let mut names = tool_names(&steps[0]);
        names.sort();
        let mut expected = READ_TOOLS.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected, "{sdk}");
        for refused in &steps[1..] {
            assert_eq!(refused["is_error"], true, "{refused}");
            assert_eq!(text_json(refused)["error"]["kind"], "forbidden", "{refused}");
        }

        // No key: the server refuses before the SDK sees the request (401, checked below on the
        // wire; the 2.x client reports a generic error for a body that is not JSON-RPC).
        let report = drive(sdk, &http(&server, None), &["list"], &[]).await;
        assert!(report["exception"].is_string() && report["steps"].is_null(), "{sdk}: {report}");
    }

    // Raw HTTP: a browser page from a foreign origin is refused, and so is a request without a
    // key; the audit names who called what.
    let initialize = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}});
    let post = || {
        client()
            .post(server.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize)
    };
    let foreign = server
        .send(post().header("authorization", "Bearer runner-key").header("origin", "http://evil.example"))
        .await;
    assert_eq!(foreign.status, 403, "{}", foreign.text);
    assert_eq!(server.send(post()).await.status, 401);
    let log = server.log();
    let audited: Vec<Value> = log
        .lines()
        .filter_map(|l| l.strip_prefix("[event] "))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["kind"] == "mcp.tool_called")
        .collect();
    let call = audited
        .iter()
        .find(|e| e["data"]["tool"] == "addition" && e["data"]["outcome"] == "ok")
        .unwrap_or_else(|| panic!("no audit of the addition call:\n{log}"));
    assert_eq!(call["data"]["principal"], "runner");
    assert_eq!(call["data"]["arguments_sha256"].as_str().map(str::len), Some(64));
    assert!(call["execution_id"].is_string(), "the audit names the run it caused: {call}");
    assert!(
        audited.iter().any(|e| e["data"]["principal"] == "viewer" && e["data"]["outcome"] == "refused"),
        "{audited:?}"
    );
    assert!(
        audited.iter().any(|e| e["data"]["tool"] == "ratchet_enqueue_job" && e["data"]["job_id"].is_string()),
        "the audit of an enqueue names its job: {audited:?}"
    );
    // The record of a run an agent caused says who caused it, and how.
    let runs = executions(&server, "addition").await;
    let caused = runs
        .iter()
        .find_map(|run| run["caused_by"].as_object())
        .unwrap_or_else(|| panic!("no run of addition says what caused it: {runs:?}"));
    assert_eq!(caused["surface"], "mcp");
    assert_eq!(caused["principal"], "runner");
    assert_eq!(caused["role"], "runner");
    assert_eq!(caused["tool"], "addition");
    assert_eq!(caused["arguments_sha256"], call["data"]["arguments_sha256"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_and_tool_filters_narrow_what_agents_see() {
    let root = tempfile::tempdir().unwrap();
    write_tasks(root.path());
    let steps_for = |config: &'static str| {
        let args = stdio(root.path(), Some(config));
        async move { drive("mcp2", &args, &["list", r#"call:addition:{"num1": 1, "num2": 2}"#], &[]).await }
    };

    let report = steps_for("mcp: {read_only: true}\n").await;
    let steps = steps_of(&report);
    let mut names = tool_names(&steps[0]);
    names.sort();
    assert_eq!(
        names,
        ["ratchet_explain_execution", "ratchet_get_execution", "ratchet_get_job", "ratchet_list_executions"]
    );
    assert_eq!(text_json(&steps[1])["error"]["kind"], "read_only", "{}", steps[1]);

    let args = stdio(root.path(), Some("mcp: {tools: [\"add*\"], tags: [demo]}\n"));
    let report = drive(
        "mcp2",
        &args,
        &[
            "list",
            r#"call:addition:{"num1": 1, "num2": 2}"#,
            r#"call:ratchet_enqueue_job:{"task": "noisy", "input": {}}"#,
        ],
        &[],
    )
    .await;
    let steps = steps_of(&report);
    let names = tool_names(&steps[0]);
    let tasks: Vec<&String> = names.iter().filter(|n| !n.starts_with("ratchet_")).collect();
    assert_eq!(tasks, ["addition", "slow"], "by glob, and by tag");
    assert_eq!(steps[1]["structured"], json!({"sum": 3}));
    assert_eq!(
        text_json(&steps[2])["error"]["kind"],
        "not_exposed",
        "a task agents do not see cannot be queued either"
    );

    let bad = root.path().join("bad.yaml");
    std::fs::write(&bad, "mcp: {tools: [\"[oops\"]}\n").unwrap();
    let checked = tests::ratchet(&["--config", bad.to_str().unwrap(), "config", "check"]);
    assert!(!checked.success());
    assert!(checked.stderr.contains("mcp.tools") && checked.stderr.contains("[oops"), "{}", checked.stderr);
}

/// docs/reliability.md M2: an edited task reaches connected agents as a changed tool list,
/// on both transports and both protocol versions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edited_tasks_reach_agents_as_a_changed_tool_list() {
    let config = "registry: {debounce_ms: 100}\n";
    let root = tempfile::tempdir().unwrap();
    let tasks = write_tasks(root.path());
    let touch = tasks.join("slow/main.js").display().to_string();
    for (sdk, _) in SDKS {
        let report = drive(
            sdk,
            &stdio(root.path(), Some(config)),
            &["list", "wait-changed:60"],
            &[("RATCHET_TOUCH", touch.as_str())],
        )
        .await;
        assert_eq!(steps_of(&report)[1]["changed"], true, "{sdk} over stdio: {report}");
    }
    let server = start_with_tasks(config);
    let touch = server.root.path().join("tasks/slow/main.js").display().to_string();
    for (sdk, _) in SDKS {
        let report = drive(
            sdk,
            &http(&server, None),
            &["list", "wait-changed:60"],
            &[("RATCHET_TOUCH", touch.as_str())],
        )
        .await;
        assert_eq!(steps_of(&report)[1]["changed"], true, "{sdk} over HTTP: {report}\n{}", server.log());
    }
}
