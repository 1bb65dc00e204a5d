//! Holes found by attacking a release build, each closed and proven here through the real
//! binary (docs/reliability.md, section "Hardening").

use serde_json::{Value, json};
use tests::api::ApiServer;
use tests::{component, example_task, sha256};

/// `api-key-auth` with a viewer and a runner key, and the `hello-api` surface.
fn guarded_config(extra: &str) -> String {
    format!(
        "server:\n  rate_limit_per_second: 0\n  cors_origins: [\"https://ops.example.com\"]\n{extra}\
         plugins:\n  - name: keys\n    kind: auth\n    source: {}\n    config:\n      keys:\n{}\
         \x20 - name: hello\n    kind: api-surface\n    source: {}\n",
        component("api-key-auth").display(),
        ["viewer", "runner"]
            .iter()
            .map(|role| format!(
                "        - {{id: {role}, sha256: {}, role: {role}}}\n",
                sha256(&format!("{role}-key"))
            ))
            .collect::<String>(),
        component("hello-api").display(),
    )
}

/// A concrete path for a route-table pattern.
fn concrete(pattern: &str) -> String {
    pattern
        .replace("{name}", "addition")
        .replace("{id}", "nothing-here")
        .replace("{plugin}", "hello")
        .replace("{*path}", "hello")
        .replace("{file}", "graphiql.css")
        .replace("{*rest}", "index.css")
}

/// Item 1: no method reaches a handler or a plugin before authentication. Every path of the
/// route table, with HEAD, OPTIONS (not a preflight), TRACE, PROPFIND and an invented method:
/// without a key 401 (public paths excepted); with one, HEAD answers as its GET and the rest
/// 405 naming the methods the path takes. A preflight from an allowed origin is the one
/// exception; from another origin it is just an unauthenticated OPTIONS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_method_reaches_a_route_or_plugin_without_credentials() {
    use ratchet_server::routes::{Access, OPERATIONS, PLUGIN_SURFACES};
    let server = ApiServer::start(&[&example_task("addition")], &guarded_config(""));
    let routes: Vec<_> =
        [OPERATIONS, PLUGIN_SURFACES, ratchet_rest::ROUTES, ratchet_graphql::ROUTES].concat();
    let mut paths: Vec<&str> = routes.iter().map(|r| r.path).collect();
    paths.dedup();
    for pattern in paths {
        let path = concrete(pattern);
        let public = routes.iter().filter(|r| r.path == pattern).all(|r| r.access == Access::Public);
        let get = routes.iter().find(|r| r.path == pattern && r.method == "GET");
        for method in ["HEAD", "OPTIONS", "TRACE", "PROPFIND", "FROBNICATE"] {
            let call = |key: Option<&str>| {
                let mut request = server.client.request(method.parse().unwrap(), server.url(&path));
                if let Some(key) = key {
                    request = request.header("x-api-key", key.to_owned());
                }
                request
            };
            let anonymous = server.send(call(None)).await;
            let keyed = server.send(call(Some("runner-key"))).await;
            if let (Some(get), "HEAD") = (get, method) {
                let expected = if get.access == Access::Public { keyed.status } else { 401 };
                assert_eq!(anonymous.status, expected, "HEAD {path} without a key: {anonymous:?}");
                // A runner's key: an admin's GET (the secrets) is forbidden to it, as its GET is.
                if get.access == Access::Needs(ratchet_server::Role::Admin) {
                    assert_eq!(keyed.status, 403, "HEAD {path} with a runner's key: {keyed:?}");
                } else {
                    assert!(![401, 403, 405].contains(&keyed.status), "HEAD {path} with a key: {keyed:?}");
                }
                continue;
            }
            let expected = if public { 405 } else { 401 };
            assert_eq!(
                (anonymous.status, keyed.status),
                (expected, 405),
                "{method} {path}: {anonymous:?} {keyed:?}"
            );
            if method != "HEAD" {
                let code = if public { "method_not_allowed" } else { "unauthenticated" };
                anonymous.assert_error(expected, code);
                keyed.assert_error(405, "method_not_allowed");
            }
            let allow = keyed.header("allow").unwrap_or_default();
            assert!(!allow.is_empty() && !allow.contains(method), "{method} {path}: allow {allow}");
        }
    }
    // HEAD of a job id reveals nothing without a key (it used to answer 200 or 404).
    let head = server.send(server.client.head(server.url("/api/v1/jobs/nothing-here"))).await;
    assert_eq!(head.status, 401);
    // An unknown path is a 404 only to a known caller.
    server.get("/no/such/route").await.assert_error(401, "unauthenticated");
    let keyed = server.client.get(server.url("/no/such/route")).header("x-api-key", "viewer-key");
    server.send(keyed).await.assert_error(404, "not_found");
    // CORS preflight: honoured for an allowed origin, an unauthenticated OPTIONS otherwise.
    let preflight = |origin: &'static str| {
        server
            .client
            .request(reqwest::Method::OPTIONS, server.url("/plugins/hello/echo"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
    };
    let allowed = server.send(preflight("https://ops.example.com")).await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://ops.example.com"));
    server.send(preflight("https://evil.example.net")).await.assert_error(401, "unauthenticated");
}

/// Item 13: an API-surface plugin never sees the caller's credentials; it gets the principal
/// the auth plugin identified, in headers only the server sets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_surface_plugins_get_the_principal_not_the_credentials() {
    let server = ApiServer::start(&[&example_task("addition")], &guarded_config(""));
    for credential in [("authorization", "Bearer viewer-key"), ("x-api-key", "viewer-key")] {
        let request = server
            .client
            .get(server.url("/plugins/hello/headers"))
            .header(credential.0, credential.1)
            .header("cookie", "session=s3cret")
            .header("proxy-authorization", "Basic c2VjcmV0")
            .header("x-ratchet-principal", "admin")
            .header("x-ratchet-role", "admin")
            .header("x-trace", "kept");
        let seen = server.send(request).await;
        assert_eq!(seen.status, 200, "{seen:?}");
        let headers = seen.json.as_object().unwrap();
        for withheld in ["authorization", "x-api-key", "cookie", "proxy-authorization"] {
            assert!(!headers.contains_key(withheld), "{withheld} reached the plugin: {headers:?}");
        }
        assert_eq!(seen.json["x-ratchet-principal"], json!("viewer"), "{headers:?}");
        assert_eq!(seen.json["x-ratchet-role"], json!("viewer"), "{headers:?}");
        assert_eq!(seen.json["x-trace"], Value::String("kept".into()));
        assert!(!seen.text.contains("viewer-key") && !seen.text.contains("s3cret"), "{seen:?}");
    }
}

/// Sends `POST path` with a chunked JSON body of `total` bytes (a GraphQL query padded with
/// spaces); returns what the server answered (empty when it closed the connection first).
fn chunked_post(port: u16, path: &str, total: usize, extra_headers: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_write_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(30))).unwrap();
    let mut reader = stream.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut response = Vec::new();
        let _ = reader.read_to_end(&mut response);
        String::from_utf8_lossy(&response).into_owned()
    });
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra_headers}\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let start = r#"{"query": "{ __typename }", "variables": {}}"#;
    let mut body = Vec::with_capacity(total);
    body.extend_from_slice(start.as_bytes());
    body.resize(total, b' ');
    let mut ok = stream.write_all(head.as_bytes()).is_ok();
    for piece in body.chunks(64 * 1024) {
        ok = ok && stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).is_ok();
        ok = ok && stream.write_all(piece).is_ok() && stream.write_all(b"\r\n").is_ok();
    }
    if ok {
        let _ = stream.write_all(b"0\r\n\r\n");
    }
    // `Connection: close`: the server closes once it answered (a half-close would end the
    // exchange before the answer).
    reading.join().unwrap()
}

/// Item 4: `server.max_body_bytes` holds for chunked bodies on every surface: GraphQL (which
/// used to read and execute 200 MB), REST, and an API-surface plugin; a chunked body under the
/// limit still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_bodies_stop_at_the_limit_on_every_surface() {
    let config = format!(
        "server:\n  rate_limit_per_second: 0\n  max_body_bytes: 65536\n\
         plugins:\n  - name: hello\n    kind: api-surface\n    source: {}\n",
        component("hello-api").display()
    );
    let server = ApiServer::start(&[&example_task("addition")], &config);
    for path in ["/graphql", "/api/v1/jobs", "/plugins/hello/echo"] {
        let answer = chunked_post(server.port, path, 3 * 1024 * 1024, "");
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
        assert!(answer.contains(r#""code":"payload_too_large""#), "{path}: {answer}");
    }
    let small = chunked_post(server.port, "/graphql", 1000, "");
    assert!(small.starts_with("HTTP/1.1 200") && small.contains("__typename"), "{small}");
    assert_eq!(server.get("/health").await.status, 200);
}

/// Item 5: idle and half-sent connections are closed after `server.header_read_timeout_secs`,
/// connections past `server.max_connections` are closed at once (and the log says so), so a
/// crowd of idle sockets cannot keep the server unreachable; and the server raised its soft
/// open-file limit to the hard one (started here with the soft limit lowered to 512).
#[test]
fn idle_connections_are_closed_and_capped() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("tasks")).unwrap();
    let config = root.path().join("ratchet.yaml");
    std::fs::write(
        &config,
        "server:\n  rate_limit_per_second: 0\n  header_read_timeout_secs: 1\n  max_connections: 20\n",
    )
    .unwrap();
    let port = tests::api::free_port();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -S -n 512 && exec \"$0\" \"$@\"")
        .arg(tests::ratchet_bin())
        .arg("--config")
        .arg(&config)
        .args(["serve", "--bind", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(root.path().join("data"))
        .arg("--tasks")
        .arg(root.path().join("tasks"))
        .stderr(std::fs::File::create(root.path().join("serve.log")).unwrap())
        .spawn()
        .unwrap();
    let health = || -> Option<String> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    };
    let until = |what: &str, ok: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !ok() {
            assert!(started.elapsed() < Duration::from_secs(60), "{what} never happened");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    until("the server answering", &|| health().is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap().to_owned();
    let numbers: Vec<&str> = files.split_whitespace().skip(3).take(2).collect();
    assert_eq!(numbers[0], numbers[1], "the soft limit was not raised: {files}");

    // 40 idle connections, and one that sends half a request head and stops.
    let mut idle: Vec<std::net::TcpStream> =
        (0..40).map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap()).collect();
    let mut half = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").unwrap();
    idle.push(half);
    // Every one of them is closed by the server: at once past the cap, the rest after the
    // header-read timeout.
    for stream in &mut idle {
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut buffer = [0; 1024];
        let started = Instant::now();
        let read = stream.read(&mut buffer);
        let timed_out = read.as_ref().is_err_and(|e| {
            matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
        });
        assert!(!timed_out, "a connection stayed open: {read:?}");
        assert!(started.elapsed() < Duration::from_secs(50), "a connection stayed open");
    }
    until("the server answering again", &|| health().is_some_and(|a| a.starts_with("HTTP/1.1 200")));
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(root.path().join("serve.log")).unwrap();
    assert!(log.contains("server.max_connections"), "no warning about the cap: {log}");
}

/// A task whose input `text` must match `pattern`.
fn pattern_task(pattern: &str) -> tests::TaskDir {
    let schema = json!({"type": "object", "properties": {"text": {"type": "string", "pattern": pattern}}});
    let task = tests::task_with("function main(input) { return {}; }", schema, json!({}));
    task.write("metadata.json", r#"{"name": "patterned", "version": "1.0.0", "timeout": 5}"#);
    task
}

/// Item 2: schema patterns cannot freeze the server. A pattern with nested quantifiers runs on
/// the linear engine; one with lookaround is bounded. Several 200 KB inputs at once are
/// refused `invalid_input` naming the `pattern` rule while `/health` keeps answering;
/// `run-once` refuses a 1 MB input the same way; `ratchet validate` warns about the pattern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_patterns_cannot_freeze_validation() {
    let nested = pattern_task("^(a+)+$");
    // Each repetition scans the rest of the string: quadratic, minutes on 200 KB before.
    let lookaround = pattern_task("^(?:(?=.*a)a)*$");
    let long = format!("{}!", "a".repeat(200 * 1024));
    for task in [&nested, &lookaround] {
        let server = ApiServer::start(&[&task.path()], "server:\n  rate_limit_per_second: 0\n");
        let runs: Vec<_> = (0..4)
            .map(|_| {
                let request = server
                    .client
                    .post(server.url("/api/v1/tasks/patterned/run"))
                    .json(&json!({"input": {"text": long}}));
                tokio::spawn(async move { tests::api::answer(request.send().await.unwrap()).await })
            })
            .collect();
        assert_eq!(server.get("/health").await.status, 200);
        for run in runs {
            let answer = run.await.unwrap();
            answer.assert_error(422, "invalid_input");
            let violation = &answer.json["error"]["details"]["violations"][0];
            assert_eq!(
                (violation["pointer"].as_str(), violation["rule"].as_str()),
                (Some("/text"), Some("pattern"))
            );
        }
        let enqueued =
            server.post("/api/v1/jobs", &json!({"task": "patterned", "input": {"text": long}})).await;
        enqueued.assert_error(422, "invalid_input");
        let fine = server.post("/api/v1/tasks/patterned/run", &json!({"input": {"text": "aaaa"}})).await;
        assert_eq!(fine.status, 200, "{fine:?}");
    }
    // run-once with 1 MB of input.
    let input = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(input.path(), json!({"text": format!("{}!", "a".repeat(1 << 20))}).to_string()).unwrap();
    let run = tests::ratchet(&[
        "run-once",
        "--from-fs",
        lookaround.path().to_str().unwrap(),
        "--input-file",
        input.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    let envelope = run.json();
    assert_eq!(envelope["error"]["kind"], "invalid_input", "{envelope}");
    assert!(envelope["error"]["message"].as_str().unwrap().contains("needs backtracking"), "{envelope}");
    let validated = tests::ratchet(&["validate", "--from-fs", lookaround.path().to_str().unwrap()]);
    assert!(validated.success(), "{validated:?}");
    assert!(validated.stderr.contains("needs backtracking (lookaround or backreferences)"), "{validated:?}");
    let plain = tests::ratchet(&["validate", "--from-fs", nested.path().to_str().unwrap()]);
    assert!(plain.success() && !plain.stderr.contains("warning"), "{plain:?}");
}

/// `VmRSS` and `VmHWM` (peak) of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Item 3: one hostile run cannot grow the kernel. It logs 64 MiB (1,000 lines of 64 KiB),
/// fetches 12 responses of 7 MB, and sends 60 denied requests with 1 MiB bodies: the kernel's
/// peak RSS stays under 100 MB above idle; the record keeps `recording.max_log_bytes` of log
/// and ends with a line counting what was dropped; bodies past `recording.max_http_bytes` are
/// recorded as truncated, with their size and SHA-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_run_cannot_grow_the_kernel() {
    let upstream = tests::server::TestServer::start();
    let task = tests::task(
        "async function main(input) { \
           const line = 'x'.repeat(65536); \
           for (let i = 0; i < input.lines; i++) console.log(line); \
           for (let i = 0; i < input.big; i++) { await fetch(input.url); } \
           const body = 'y'.repeat(1 << 20); \
           for (let i = 0; i < input.denied; i++) { \
             try { fetch('http://10.1.2.3/upload', {method: 'POST'}, body); } catch (e) {} } \
           return {done: true}; }",
    );
    task.write(
        "metadata.json",
        r#"{"name": "hostile", "version": "1.0.0", "timeout": 300, "memory_limit": "900MB"}"#,
    );
    let config = format!(
        "server:\n  rate_limit_per_second: 0\n  run_wait_secs: 300\n  request_timeout_secs: 300\n\
         egress:\n  allow_hosts: [\"{}\"]\n",
        upstream.host()
    );
    let server = ApiServer::start(&[&task.path()], &config);
    let pid = server.pid();
    let small = json!({"input": {"lines": 1, "big": 1, "denied": 1, "url": upstream.url("/huge/1000")}});
    assert_eq!(server.post("/api/v1/tasks/hostile/run", &small).await.json["status"], "success");
    let (idle, _) = memory_kib(pid);
    let hostile =
        json!({"input": {"lines": 1000, "big": 12, "denied": 60, "url": upstream.url("/huge/7000000")}});
    // Moving 200 MB through the worker's pipe takes a while on a busy machine.
    let request = server.client.post(server.url("/api/v1/tasks/hostile/run")).json(&hostile);
    let run = server.send(request.timeout(std::time::Duration::from_secs(300))).await;
    let (_, peak) = memory_kib(pid);
    assert_eq!(run.json["status"], "success", "{}", run.text.chars().take(2000).collect::<String>());
    eprintln!("kernel RSS: {idle} KiB idle, {peak} KiB at its peak");
    assert!(peak < idle + 100 * 1024, "the kernel grew from {idle} KiB to a peak of {peak} KiB");

    let logs = run.json["logs"].as_array().unwrap();
    let kept: usize = logs.iter().map(|l| l["message"].as_str().unwrap().len()).sum();
    assert!(kept <= 2 * 1024 * 1024 + 1024, "{kept} bytes of log kept");
    let last = logs.last().unwrap()["message"].as_str().unwrap();
    assert!(last.contains("log line(s)") && last.contains("recording.max_log_bytes"), "{last}");
    let entries = run.json["http"]["log"]["entries"].as_array().unwrap();
    let truncated: Vec<&Value> = entries
        .iter()
        .filter_map(|e| e["_ratchet"]["truncated"]["response_body"].as_object().map(|_| e))
        .collect();
    assert!(!truncated.is_empty(), "no truncated body among {} entries", entries.len());
    let whole = &truncated[0]["_ratchet"]["truncated"]["response_body"];
    assert_eq!(whole["size"], 7_000_000);
    assert_eq!(whole["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(truncated[0]["response"]["content"]["size"], 7_000_000);
    assert!(run.text.len() < 12 * 1024 * 1024, "the record is {} bytes", run.text.len());
    assert_eq!(server.get("/health").await.status, 200);
}

/// Item 6: secrets in URLs (user-part passwords, signed-URL and OAuth parameters), in headers
/// (by name, and names the operator adds), in the kernel's own error messages and in what the
/// task logs or throws never reach the result envelope, the recording or the stored execution.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_masked_everywhere_a_run_is_written() {
    let upstream = tests::server::TestServer::start();
    let secrets = [
        "PW-1", "KEY-2", "CS-3", "RT-4", "SIG-5", "AUTH-6", "GOOG-7", "APIM-8", "TENANT-9", "LOG-10",
        "THROW-11", "CRED-12",
    ];
    let base = format!("http://127.0.0.1:{}", upstream.port());
    let code = format!(
        "async function main() {{ \
           await fetch('http://user:PW-1@127.0.0.1:{port}/json'); \
           try {{ await fetch('http://10.1.2.3/x?api_key=KEY-2&client_secret=CS-3'); }} catch (e) {{ console.log(e.message); }} \
           await fetch('{base}/json?refresh_token=RT-4&X-Amz-Signature=SIG-5&auth=AUTH-6&X-Amz-Credential=CRED-12&page=2', \
             {{headers: {{'X-Goog-Api-Key': 'GOOG-7', 'Ocp-Apim-Subscription-Key': 'APIM-8', 'X-Tenant': 'TENANT-9'}}}}); \
           console.log('calling https://api.example.com/v1?token=LOG-10 next'); \
           throw new Error('gave up on https://api.example.com/v1?session_id=THROW-11'); }}",
        port = upstream.port()
    );
    let task = tests::task(&code);
    task.write("metadata.json", r#"{"name": "leaky", "version": "1.0.0", "timeout": 20}"#);
    let scratch = tempfile::tempdir().unwrap();
    let config = scratch.path().join("ratchet.yaml");
    std::fs::write(&config, "recording:\n  mask_names: [X-Tenant]\n").unwrap();
    let record = scratch.path().join("recording");
    let run = tests::ratchet(&[
        "--config",
        config.to_str().unwrap(),
        "run-once",
        "--from-fs",
        task.path().to_str().unwrap(),
        "--allow-host",
        &upstream.host(),
        "--format",
        "json",
        "--record",
        record.to_str().unwrap(),
    ]);
    let envelope = run.json();
    assert_eq!(envelope["error"]["name"], "Error", "{envelope:#}");
    let mut written = format!("{}{}", run.stdout, run.stderr);
    // The recording's files but the copy of the task (whose code holds the secrets as written).
    for entry in std::fs::read_dir(&record).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            written.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
    for secret in secrets {
        assert!(!written.contains(secret), "{secret} leaked:\n{written}");
    }
    assert!(written.contains("user:***@127.0.0.1"), "{written}");
    assert!(written.contains("page=2"), "a plain parameter was masked too: {written}");

    // The same run through a server: the stored execution holds no secret either.
    let server_config = format!(
        "server:\n  rate_limit_per_second: 0\negress:\n  allow_hosts: [\"{}\"]\nrecording:\n  mask_names: [X-Tenant]\n",
        upstream.host()
    );
    let server = ApiServer::start(&[&task.path()], &server_config);
    let answer = server.post("/api/v1/tasks/leaky/run", &json!({"input": {}})).await;
    assert_eq!(answer.json["status"], "failure", "{answer:?}");
    let stored = server.get(&format!("/api/v1/executions/{}", answer.json["id"].as_str().unwrap())).await;
    for secret in secrets {
        assert!(
            !answer.text.contains(secret) && !stored.text.contains(secret),
            "{secret} leaked: {}",
            stored.text
        );
    }
    let _ = base;
}

/// Item 10: `setTimeout` takes any delay, as browsers do: not a number, negative, infinite or
/// past 2^31-1 ms fires at once (1e300 used to panic the worker).
#[test]
fn timer_delays_of_any_size_fire_like_in_browsers() {
    tests::check_task(
        "async function main() { let fired = 0; \
           await Promise.all([1e300, -5, NaN, Infinity, 2 ** 31, -Infinity, '7', 10].map(d => \
             new Promise(r => setTimeout(() => { fired++; r(); }, d)))); \
           return {fired}; }",
        json!({}),
        Ok(json!({"fired": 8})),
    );
}

/// Item 12: a task file that is a symlink leading out of the task folder, or that is not a
/// regular file (a FIFO used to hang `validate`), is refused naming the file; a symlink within
/// the folder still works; the server does not serve such a task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_files_outside_the_folder_or_not_plain_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.js");
    std::fs::write(&secret, "function main() { return {stolen: true}; }").unwrap();

    let escaping = tests::task("unused");
    escaping.remove("main.js");
    escaping.write("metadata.json", r#"{"name": "escaping", "version": "1.0.0"}"#);
    std::os::unix::fs::symlink(&secret, escaping.path().join("main.js")).unwrap();
    let refused = tests::ratchet(&["validate", "--from-fs", escaping.path().to_str().unwrap()]);
    assert!(!refused.success(), "{refused:?}");
    assert!(
        refused.stderr.contains("main.js") && refused.stderr.contains("outside the task folder"),
        "{refused:?}"
    );

    let fifo = tests::task("unused");
    fifo.remove("main.js");
    let made = std::process::Command::new("mkfifo").arg(fifo.path().join("main.js")).status().unwrap();
    assert!(made.success());
    let started = std::time::Instant::now();
    let refused = tests::ratchet(&["validate", "--from-fs", fifo.path().to_str().unwrap()]);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "validate hung on a FIFO");
    assert!(!refused.success() && refused.stderr.contains("named pipe (FIFO)"), "{refused:?}");

    let escaping_case = tests::task("function main() { return {}; }");
    std::fs::create_dir_all(escaping_case.path().join("tests")).unwrap();
    std::os::unix::fs::symlink(&secret, escaping_case.path().join("tests/leak.json")).unwrap();
    let refused = tests::ratchet(&["validate", "--from-fs", escaping_case.path().to_str().unwrap()]);
    assert!(!refused.success() && refused.stderr.contains("tests/leak.json"), "{refused:?}");

    let inside = tests::task("function main() { return {ok: true}; }");
    std::fs::create_dir_all(inside.path().join("schemas")).unwrap();
    std::fs::rename(inside.path().join("input.schema.json"), inside.path().join("schemas/in.json")).unwrap();
    std::os::unix::fs::symlink("schemas/in.json", inside.path().join("input.schema.json")).unwrap();
    let (run, envelope) = tests::run_once(&inside.path(), &json!({}));
    assert!(run.success(), "{envelope}");

    let root = tempfile::tempdir().unwrap();
    let served = root.path().join("tasks/escaping");
    std::fs::create_dir_all(&served).unwrap();
    for file in ["metadata.json", "input.schema.json", "output.schema.json"] {
        std::fs::copy(escaping.path().join(file), served.join(file)).unwrap();
    }
    std::os::unix::fs::symlink(&secret, served.join("main.js")).unwrap();
    let server = ApiServer::start_in(root, "server:\n  rate_limit_per_second: 0\n");
    server.get("/api/v1/tasks/escaping").await.assert_error(404, "not_found");
    let tasks = server.get("/api/v1/tasks").await;
    assert!(!tasks.text.contains("stolen"), "{tasks:?}");
}

/// The introspection query GraphiQL 3 sends (graphql-js 16's `getIntrospectionQuery`: nine
/// `ofType` levels, about 15 fields deep), as Apollo, Postman and graphql-codegen send it too.
const INTROSPECTION_QUERY: &str = "query IntrospectionQuery {
  __schema {
    queryType { name } mutationType { name } subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description args { ...InputValue } type { ...TypeRef } isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
  kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}";

/// Item 15: the standard introspection query is answered (it was refused "nested too deep"),
/// while data queries keep the depth limit and an introspection query that multiplies the
/// schema by itself is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphql_answers_the_standard_introspection_query() {
    let server = ApiServer::start(&[&example_task("addition")], "server:\n  rate_limit_per_second: 0\n");
    let answer = server.post("/graphql", &json!({"query": INTROSPECTION_QUERY})).await;
    assert_eq!(answer.json["errors"], Value::Null, "{}", answer.text.chars().take(500).collect::<String>());
    let types = answer.json["data"]["__schema"]["types"].as_array().unwrap();
    assert!(types.iter().any(|t| t["name"] == "Query") && types.len() > 20, "{} types", types.len());
    let deep_data = "{ jobs { items { id } } }".replace("id", &"attempts { job { ".repeat(12));
    let refused = server.post("/graphql", &json!({"query": deep_data})).await;
    assert!(refused.text.contains("error"), "{refused:?}");
    let nested = "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }";
    let multiplied = server.post("/graphql", &json!({"query": nested})).await;
    assert!(
        multiplied.json["errors"][0]["message"].as_str().unwrap_or_default().contains("nest"),
        "{multiplied:?}"
    );
}

/// Item 9: the output's depth is checked while it is serialised, so `toJSON` and getters that
/// return a 100,000-deep value fail the run with a typed error naming the limit (they used to
/// overflow the worker's stack: `worker_crashed`); logging or sending such a value is bounded
/// the same way.
#[test]
fn deep_values_from_to_json_and_getters_are_refused_while_serialising() {
    let deep = "function deep() { let v = {}; for (let i = 0; i < 100000; i++) v = {v}; return v; }";
    for output in [
        "({ toJSON() { return deep(); } })",
        "({ get x() { return deep(); } })",
        "[1, { toJSON: () => [deep()] }]",
    ] {
        let envelope = tests::check_task(
            &format!("{deep} function main() {{ return {output}; }}"),
            json!({}),
            Err(("task_error", "DataError")),
        );
        let message = envelope["error"]["message"].as_str().unwrap();
        assert!(message.contains("deeper than 100 levels"), "{output}: {envelope}");
    }
    let logged = tests::check_task(
        &format!("{deep} function main() {{ console.log({{ toJSON: deep }}); return {{ok: true}}; }}"),
        json!({}),
        Ok(json!({"ok": true})),
    );
    assert!(logged["logs"][0]["message"].as_str().unwrap().contains("nested deeper than 100"), "{logged}");
    // A value 100 levels deep is still fine.
    tests::check_task(
        "function main() { let v = 1; for (let i = 0; i < 99; i++) v = {v}; return { toJSON: () => ({ d: v }) }; }",
        json!({}),
        Ok({
            let mut v = json!(1);
            for _ in 0..99 {
                v = json!({"v": v});
            }
            json!({"d": v})
        }),
    );
}

/// Item 11: one set of size limits, the smaller checked first with typed errors. A 9 MB
/// response, input and output work (they used to kill the worker or fail as `protocol_error`
/// at its 8 MiB frame); a response or request body, an input or an output too large for a frame
/// fails that one payload naming `workers.max_frame_bytes`, and the worker lives on.
#[test]
fn payloads_fail_by_their_own_limits_and_the_worker_lives() {
    let upstream = tests::server::TestServer::start();
    let task = tests::task(
        "function main(input) { \
           if (input.echo) return {length: input.echo.length}; \
           if (input.output) return {text: 'o'.repeat(input.output)}; \
           const seen = []; \
           for (const path of input.paths) { \
             try { const r = fetch(input.base + path); seen.push(typeof r.body === 'string' ? r.body.length : r.status); } \
             catch (e) { seen.push(e.name + ': ' + e.message); } } \
           try { fetch(input.base + '/echo', {method: 'POST'}, '\\u0001'.repeat(3000000)); seen.push('sent'); } \
           catch (e) { seen.push(e.name + ': ' + e.message); } \
           return {seen}; }",
    );
    task.write(
        "metadata.json",
        r#"{"name": "sizes", "version": "1.0.0", "timeout": 120, "memory_limit": "600MB"}"#,
    );
    let allow = ["--allow-host", &upstream.host()];
    let base = format!("http://{}", upstream.host());
    let input = json!({"base": base, "paths": ["/huge/9000000", "/control/3000000", "/json"]});
    let (run, envelope) = tests::run_once_with(&task.path(), &input, &allow, &[]);
    assert!(run.success(), "{envelope}");
    let seen = envelope["output"]["seen"].as_array().unwrap();
    assert_eq!(seen[0], 9_000_000, "{seen:?}");
    for refused in [&seen[1], &seen[3]] {
        let text = refused.as_str().unwrap_or_default();
        assert!(text.starts_with("NetworkError") && text.contains("workers.max_frame_bytes"), "{seen:?}");
    }
    assert_eq!(seen[2], 200, "the worker kept serving the run: {seen:?}");

    let (run, envelope) = tests::run_once_with(&task.path(), &json!({"output": 9_000_000}), &[], &[]);
    assert!(run.success(), "a 9 MB output: {}", envelope["error"]);
    let (_, envelope) = tests::run_once_with(&task.path(), &json!({"output": 17_000_000}), &[], &[]);
    assert_eq!(envelope["error"]["kind"], "invalid_output", "{}", envelope["error"]);
    assert!(envelope["error"]["message"].as_str().unwrap().contains("workers.max_frame_bytes"));

    for (length, kind) in [(9_000_000, None), (17_000_000, Some("invalid_input"))] {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), json!({"echo": "e".repeat(length)}).to_string()).unwrap();
        let path = file.path().to_str().unwrap();
        let run = tests::ratchet(&[
            "run-once",
            "--from-fs",
            task.path().to_str().unwrap(),
            "--input-file",
            path,
            "--format",
            "json",
        ]);
        let envelope = run.json();
        match kind {
            None => assert_eq!(envelope["output"]["length"], length, "{}", envelope["error"]),
            Some(kind) => {
                assert_eq!(envelope["error"]["kind"], kind, "{}", envelope["error"]);
                assert!(envelope["error"]["message"].as_str().unwrap().contains("workers.max_frame_bytes"));
            }
        }
    }
}

/// Item 8: times are bounded at every entry point to one range (1970 to 9999), and readers
/// show any stored value: a job stored far past it (as an older version could) is listed by
/// REST (which answered 500) and by `jobs list --format json` (which panicked), its time
/// clamped; `schedules next -n` is capped like REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_are_bounded_on_the_way_in_and_any_stored_time_can_be_read() {
    use ratchet_storage::{Backoff, NewJob, Store};
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let data_arg = data.to_str().unwrap().to_owned();
    let tasks = example_task("addition").parent().unwrap().to_str().unwrap().to_owned();
    let input = r#"{"num1": 1, "num2": 2}"#;
    for run_at in ["500000y", "18446744073709551615s", "1969-12-31T23:59:59Z"] {
        let refused = tests::ratchet(&[
            "jobs",
            "enqueue",
            "addition",
            "--tasks",
            &tasks,
            "--data-dir",
            &data_arg,
            "--input-json",
            input,
            "--run-at",
            run_at,
        ]);
        assert!(!refused.success(), "{run_at}: {refused:?}");
        assert!(refused.stderr.contains("1970-01-01T00:00:00Z to 9999-12-31"), "{run_at}: {refused:?}");
    }
    let store = Store::open_data_dir(&data).await.unwrap();
    let far = NewJob {
        task: "addition".into(),
        input: json!({"num1": 1, "num2": 2}),
        priority: 0,
        run_at: Some(i64::MAX),
        max_attempts: 1,
        backoff: Backoff { base: std::time::Duration::from_secs(1), max: std::time::Duration::from_secs(1) },
        timeout: None,
        idempotency_key: None,
        task_digest: None,
        trace_id: None,
        concurrency_key: None,
    };
    store.enqueue(far, ratchet_storage::now_ms()).await.unwrap();
    store.close().await;
    let listed = tests::ratchet(&["jobs", "list", "--data-dir", &data_arg, "--format", "json"]);
    assert!(listed.success(), "{listed:?}");
    assert!(listed.stdout.contains("9999-12-31T23:59:59.999Z"), "{listed:?}");

    std::fs::create_dir_all(root.path().join("tasks")).unwrap();
    let server = ApiServer::start_in(root, "server:\n  rate_limit_per_second: 0\n");
    let jobs = server.get("/api/v1/jobs").await;
    assert_eq!(jobs.status, 200, "{jobs:?}");
    assert_eq!(jobs.json["items"][0]["run_at"], "9999-12-31T23:59:59.999Z");
    let refused = server
        .post("/api/v1/jobs", &json!({"task": "addition", "input": {}, "run_at": "1969-01-01T00:00:00Z"}))
        .await;
    refused.assert_error(422, "invalid_input");

    let capped = tests::ratchet(&["schedules", "next", "--cron", "* * * * *", "-n", "18446744073709551615"]);
    assert!(!capped.success() && capped.stderr.contains("1..=100"), "{capped:?}");
    let fine = tests::ratchet(&["schedules", "next", "--cron", "* * * * *", "-n", "100"]);
    assert!(fine.success() && fine.stdout.lines().count() >= 100, "{fine:?}");
}

/// A tmpfs of `size` mounted on `dir` for as long as it lives (the test runs as root, as CI
/// does here).
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            mounted.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root: {}",
            String::from_utf8_lossy(&mounted.stderr)
        );
        SmallDisk(dir.to_owned())
    }

    /// Writes a file until the file system is full.
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while filler.write_all(&chunk).is_ok() {}
        let _ = filler.sync_all();
    }

    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Item 7: with the data folder on a full file system, a synchronous run is never answered as
/// recorded when its record was refused (503 `not_recorded`, the result in the details), a run
/// answered 200 can be read back, and `/ready` names the write failure after every refusal;
/// once space is freed the node takes writes again without a restart, and a restart works, on
/// a full disk too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_never_acknowledges_an_unrecorded_run() {
    let root = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(&root.path().join("data"), "6m");
    let task = root.path().join("tasks/padded");
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(task.join("metadata.json"), r#"{"name": "padded", "version": "1.0.0"}"#).unwrap();
    std::fs::write(task.join("input.schema.json"), "{}").unwrap();
    std::fs::write(task.join("output.schema.json"), "{}").unwrap();
    std::fs::write(task.join("main.js"), "function main(input) { return {echo: input.pad.length}; }")
        .unwrap();
    let mut server = ApiServer::start_in(root, "server:\n  rate_limit_per_second: 0\n");
    let padded = json!({"input": {"pad": "p".repeat(100_000)}});
    let run = |server: &ApiServer| {
        let request = server.client.post(server.url("/api/v1/tasks/padded/run")).json(&padded);
        async move { tests::api::answer(request.send().await.unwrap()).await }
    };
    assert_eq!(run(&server).await.status, 200);

    disk.fill();
    let mut refused = 0;
    for _ in 0..20 {
        let answer = run(&server).await;
        match answer.status {
            200 => {
                let id = answer.json["id"].as_str().unwrap();
                let stored = server.get(&format!("/api/v1/executions/{id}")).await;
                assert_eq!(stored.status, 200, "run {id} was answered 200 but not stored");
            }
            503 => {
                answer.assert_error(503, "not_recorded");
                assert_eq!(answer.json["error"]["details"]["execution"]["output"]["echo"], 100_000);
                refused += 1;
                // A heartbeat's small write may still fit; readiness must not take that
                // for writes working again.
                let ready = server.get("/ready").await;
                assert_eq!(ready.status, 503, "ready right after a refused record: {ready:?}");
                assert!(ready.json["database"].as_str().unwrap().contains("cannot write"), "{ready:?}");
            }
            other => panic!("unexpected {other}: {answer:?}"),
        }
    }
    assert!(refused > 0, "the disk never filled up");

    // Restarting on the full disk works: the node serves, not ready.
    server.restart();
    assert_eq!(server.get("/health").await.status, 200);

    disk.free();
    let started = std::time::Instant::now();
    while server.get("/ready").await.status != 200 {
        assert!(started.elapsed() < std::time::Duration::from_secs(60), "never ready again");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let answer = run(&server).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let stored = server.get(&format!("/api/v1/executions/{}", answer.json["id"].as_str().unwrap())).await;
    assert_eq!(stored.status, 200);
    server.restart();
    assert_eq!(run(&server).await.status, 200);
    drop(server);
    drop(disk);
}
