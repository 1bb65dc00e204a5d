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
    use kernel::api::routes::{Access, ROUTES};
    let server = ApiServer::start(&[&example_task("addition")], &guarded_config(""));
    let mut paths: Vec<&str> = ROUTES.iter().map(|r| r.path).collect();
    paths.dedup();
    for pattern in paths {
        let path = concrete(pattern);
        let public = ROUTES.iter().filter(|r| r.path == pattern).all(|r| r.access == Access::Public);
        let get = ROUTES.iter().find(|r| r.path == pattern && r.method == "GET");
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
                assert!(![401, 403, 405].contains(&keyed.status), "HEAD {path} with a key: {keyed:?}");
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
            assert_eq!((violation["pointer"].as_str(), violation["rule"].as_str()), (Some("/text"), Some("pattern")));
        }
        let enqueued = server.post("/api/v1/jobs", &json!({"task": "patterned", "input": {"text": long}})).await;
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
