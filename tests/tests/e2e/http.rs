//! `fetch` through the kernel against a real server on 127.0.0.1: both JS styles, limits,
//! the egress policy (docs/reliability.md S8), recording, replay and mocks.

use serde_json::{Value, json};
use tests::server::TestServer;
use tests::{ratchet, run_once_with, task};

/// A task that fetches `input.url` in the style named by `input.style` and reports what it saw.
const PROBE: &str = r#"
async function main(input) {
  try {
    if (input.style === 'sync') {
      const r = fetch(input.url, input.init || {}, input.body);
      return { ok: r.ok, status: r.status, statusText: r.statusText, body: r.body, type: r.headers.get('content-type') };
    }
    const r = await fetch(input.url, input.init || {});
    const text = await r.text();
    let body = text;
    try { body = JSON.parse(text); } catch (_) {}
    return { ok: r.ok, status: r.status, statusText: r.statusText, body, type: r.headers.get('Content-Type') };
  } catch (e) {
    return { error: e.name, message: e.message };
  }
}
"#;

/// Runs the probe with `input`, allow-listing `server`, and returns its output and the envelope.
fn probe(server: &TestServer, input: Value, extra: &[&str], env: &[(&str, &str)]) -> (Value, Value) {
    let task = task(PROBE);
    let host = server.host();
    let mut args = vec!["--allow-host", host.as_str()];
    args.extend_from_slice(extra);
    let (run, envelope) = run_once_with(&task.path(), &input, &args, env);
    assert!(run.success(), "{envelope:#}");
    (envelope["output"].clone(), envelope)
}

#[test]
fn json_text_and_error_statuses_in_both_styles() {
    let server = TestServer::start();
    for style in ["sync", "web"] {
        let (json_reply, _) = probe(&server, json!({"style": style, "url": server.url("/json")}), &[], &[]);
        assert_eq!(json_reply["ok"], true, "{style}");
        assert_eq!(json_reply["body"], json!({"message": "hello", "items": [1, 2, 3]}), "{style}");
        assert_eq!(json_reply["type"], "application/json", "{style}");

        let (text, _) = probe(&server, json!({"style": style, "url": server.url("/text")}), &[], &[]);
        assert_eq!((text["body"].as_str(), text["type"].as_str()), (Some("plain text"), Some("text/plain")));

        let (missing, _) =
            probe(&server, json!({"style": style, "url": server.url("/status/404")}), &[], &[]);
        assert_eq!(missing["ok"], false, "a 404 is a response, not an exception ({style})");
        assert_eq!(
            (missing["status"].as_u64(), missing["statusText"].as_str()),
            (Some(404), Some("Not Found"))
        );
        assert_eq!(missing["body"], json!({"status": 404}));
    }
}

#[test]
fn request_bodies_and_headers_reach_the_server() {
    let server = TestServer::start();
    let init = json!({"method": "POST", "headers": {"Content-Type": "application/json", "Authorization": "Bearer s3cret"}});
    let (sync, envelope) = probe(
        &server,
        json!({"style": "sync", "url": server.url("/echo"), "init": init, "body": {"a": 1}}),
        &[],
        &[],
    );
    assert_eq!(
        sync["body"],
        json!({"body": "{\"a\":1}", "content_type": "application/json", "authorization": "Bearer s3cret"})
    );
    assert_eq!(envelope["http"][0]["method"], "POST");
    assert_eq!(envelope["http"][0]["status"], 200);

    let init = json!({"method": "post", "body": "raw text"});
    let (web, _) =
        probe(&server, json!({"style": "web", "url": server.url("/echo"), "init": init}), &[], &[]);
    assert_eq!(web["body"]["body"], "raw text");
}

#[test]
fn redirect_chains_are_followed_and_capped() {
    let server = TestServer::start();
    for style in ["sync", "web"] {
        let (followed, envelope) =
            probe(&server, json!({"style": style, "url": server.url("/redirect/3")}), &[], &[]);
        assert_eq!(followed["body"]["message"], "hello", "{style}");
        assert_eq!(envelope["http"][0]["redirects"].as_array().unwrap().len(), 4, "{envelope:#}");

        let (capped, _) = probe(&server, json!({"style": style, "url": server.url("/redirect/9")}), &[], &[]);
        assert_eq!(capped["error"], "NetworkError", "{style}");
        assert!(capped["message"].as_str().unwrap().contains("more than 5 redirects"), "{capped}");
    }
}

#[test]
fn slow_responses_time_out_with_a_timeout_error() {
    let server = TestServer::start();
    let env = [("RATCHET_EGRESS__REQUEST_TIMEOUT_SECS", "0.3")];
    for style in ["sync", "web"] {
        let (slow, _) = probe(&server, json!({"style": style, "url": server.url("/slow/3000")}), &[], &env);
        assert_eq!(slow["error"], "TimeoutError", "{style}: {slow}");
        assert!(slow["message"].as_str().unwrap().contains("0.3s"), "{slow}");
        let (quick, _) = probe(&server, json!({"style": style, "url": server.url("/slow/10")}), &[], &env);
        assert_eq!(quick["body"], "slow", "{style}");
    }
}

#[test]
fn the_run_timeout_covers_time_spent_in_requests() {
    let server = TestServer::start();
    let task = task(PROBE);
    task.write("metadata.json", r#"{"version": "1.0.0", "timeout": 0.5}"#);
    let input = json!({"style": "sync", "url": server.url("/slow/5000")});
    let started = std::time::Instant::now();
    let (_, envelope) = run_once_with(&task.path(), &input, &["--allow-host", &server.host()], &[]);
    assert_eq!(envelope["error"]["kind"], "timeout", "{envelope:#}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
}

#[test]
fn huge_bodies_are_refused_at_the_limit() {
    let server = TestServer::start();
    let env = [("RATCHET_EGRESS__MAX_RESPONSE_BYTES", "64KB")];
    for style in ["sync", "web"] {
        let (huge, _) =
            probe(&server, json!({"style": style, "url": server.url("/huge/1000000")}), &[], &env);
        assert_eq!(huge["error"], "NetworkError", "{style}");
        assert!(huge["message"].as_str().unwrap().contains("exceeds the limit of 65536 bytes"), "{huge}");
        let (fits, _) = probe(&server, json!({"style": style, "url": server.url("/huge/1000")}), &[], &env);
        assert_eq!(fits["body"].as_str().unwrap().len(), 1000, "{style}");
    }
}

#[test]
fn by_default_inside_addresses_are_denied_and_the_server_sees_nothing() {
    let server = TestServer::start();
    let port = server.port();
    let task = task(PROBE);
    // Loopback only, in every spelling: private and link-local ranges are checked by the
    // policy's unit tests, which send nothing.
    for host in [
        "127.0.0.1".to_owned(),
        "127.1".into(),
        "2130706433".into(),
        "0x7f000001".into(),
        "0177.0.0.1".into(),
        "[::ffff:127.0.0.1]".into(),
        "localhost".into(),
        "0.0.0.0".into(),
        "[::1]".into(),
    ] {
        let url = format!("http://{host}:{port}/json");
        let (run, envelope) = run_once_with(&task.path(), &json!({"style": "sync", "url": url}), &[], &[]);
        assert!(run.success(), "{envelope:#}");
        assert_eq!(envelope["output"]["error"], "NetworkError", "{host}: {envelope:#}");
        assert!(
            envelope["output"]["message"].as_str().unwrap().contains("denied by the egress policy"),
            "{host}"
        );
        assert_eq!(envelope["http"][0]["denied"], true, "{host}");
    }
    assert_eq!(server.hits(), 0, "a denied request reached the server");
}

#[test]
fn a_redirect_into_a_host_that_is_not_allowed_is_denied() {
    let allowed = TestServer::start();
    let inside = TestServer::start();
    for target in [inside.url("/json"), format!("http://localhost:{}/json", inside.port())] {
        let url = format!("{}?url={target}", allowed.url("/redirect-to"));
        let (reply, _) = probe(&allowed, json!({"style": "web", "url": url}), &[], &[]);
        assert_eq!(reply["error"], "NetworkError", "{target}: {reply}");
        assert!(reply["message"].as_str().unwrap().contains("denied by the egress policy"), "{reply}");
    }
    assert_eq!(inside.hits(), 0, "the redirect reached a host that is not allowed");
    assert_eq!(allowed.hits(), 2);
}

#[test]
fn a_task_allow_list_narrows_the_policy() {
    let server = TestServer::start();
    let task = task(PROBE);
    task.write("metadata.json", r#"{"version": "1.0.0", "allowed_hosts": ["api.example.com"]}"#);
    let input = json!({"style": "sync", "url": server.url("/json")});
    let (_, envelope) = run_once_with(&task.path(), &input, &["--allow-host", &server.host()], &[]);
    assert!(
        envelope["output"]["message"].as_str().unwrap().contains("not in the task's allowed_hosts"),
        "{envelope:#}"
    );
    assert_eq!(server.hits(), 0);
}

#[test]
fn a_recorded_run_replays_offline_with_the_same_output() {
    let server = TestServer::start();
    let task = task(
        "async function main(input) {
            const a = fetch(input.base + '/json').body;
            const b = await fetch(input.base + '/status/404', { headers: { Authorization: 'Bearer s3cret', 'X-Api-Key': 'k3y' } });
            const c = await fetch(input.base + '/text?api_key=s3cret').then(r => r.text());
            return { items: a.items, missing: b.status, text: c };
        }",
    );
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("recording");
    let input = json!({"base": server.url("")});
    let args = ["--allow-host", &server.host(), "--record", recording.to_str().unwrap()];
    let (run, envelope) = run_once_with(&task.path(), &input, &args, &[]);
    assert!(run.success(), "{envelope:#}");
    server.stop();

    let har = std::fs::read_to_string(recording.join("requests.har")).unwrap();
    let har_json: Value = serde_json::from_str(&har).unwrap();
    assert_eq!(har_json["log"]["version"], "1.2");
    assert_eq!(har_json["log"]["entries"].as_array().unwrap().len(), 3);
    assert!(!har.contains("s3cret") && !har.contains("k3y"), "secrets leaked into the HAR");
    assert!(har.contains("Bearer ***"));

    let replay = ratchet(&["replay", recording.to_str().unwrap(), "--format", "json"]);
    let replayed = replay.json();
    assert!(replay.success(), "{replayed:#}");
    assert_eq!(replayed["matches"], true);
    assert_eq!(replayed["output"], envelope["output"]);

    // A task that now asks for something else is told which request has no recording.
    std::fs::write(
        recording.join("task/main.js"),
        "(function (input) { return fetch(input.base + '/other').status; })",
    )
    .unwrap();
    let replay = ratchet(&["replay", recording.to_str().unwrap()]);
    assert_eq!(replay.code, Some(1));
    assert!(
        replay.stderr.contains("no (further) response for GET") && replay.stderr.contains("/other"),
        "{replay:?}"
    );
}

#[test]
fn recording_into_a_non_empty_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), "precious").unwrap();
    let task = task("(function () { return 1; })");
    let run = ratchet(&[
        "run-once",
        "--from-fs",
        task.path().to_str().unwrap(),
        "--record",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!run.success() && run.stderr.contains("is not empty"), "{run:?}");
    assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "precious");
}

#[test]
fn mocked_test_cases_never_touch_the_network() {
    let task = task(
        "(function (input) {
            const r = fetch('https://api.example.invalid/users/' + input.id);
            if (r.status === 404) throw new NotFoundError('no user ' + input.id);
            return { name: r.body.name };
        })",
    );
    task.write(
        "tests/found.json",
        r#"{"input": {"id": 1}, "expected_output": {"name": "Ada"},
            "mock": {"http": {"url": "https://api.example.invalid/users/1", "method": "GET",
                               "response": {"status": 200, "body": {"name": "Ada"}}}}}"#,
    )
    .write(
        "tests/missing.json",
        r#"{"input": {"id": 2}, "expected_error": "NotFoundError",
            "mock": {"http": [{"url": "https://api.example.invalid/*", "response": {"status": 404}}]}}"#,
    )
    .write(
        "tests/unmocked-request.json",
        r#"{"input": {"id": 3}, "expected_error": {"name": "NetworkError", "message": "no mock matches GET https://api.example.invalid/users/3"},
            "mock": {"http": {"url": "https://api.example.invalid/users/1", "response": {"body": {}}}}}"#,
    );
    let run = ratchet(&["test", "--from-fs", task.path().to_str().unwrap()]);
    assert!(run.success(), "{run:?}");
    assert!(run.stdout.ends_with("3 passed, 0 failed\n"), "{}", run.stdout);
}

#[test]
fn the_response_object_serves_both_styles() {
    let server = TestServer::start();
    let task = task(
        "async function main(input) {
            const chained = await fetch(input.base + '/json').then(r => r.json());
            let notJson;
            try { await fetch(input.base + '/text').then(r => r.json()); } catch (e) { notJson = e.name; }
            const response = fetch(input.base + '/json');
            const awaited = await response;
            return {
                chained: chained.message,
                notJson,
                keys: Object.keys(response),
                awaitedIsThenable: typeof awaited.then,
                header: [response.headers.get('CONTENT-TYPE'), response.headers.get('x-missing')],
                text: await awaited.text(),
            };
        }",
    );
    let input = json!({"base": server.url("")});
    let (run, envelope) = run_once_with(&task.path(), &input, &["--allow-host", &server.host()], &[]);
    assert!(run.success(), "{envelope:#}");
    assert_eq!(
        envelope["output"],
        json!({
            "chained": "hello",
            "notJson": "SyntaxError",
            "keys": ["ok", "status", "statusText", "url", "headers", "body"],
            "awaitedIsThenable": "undefined",
            "header": ["application/json", null],
            "text": "{\"items\":[1,2,3],\"message\":\"hello\"}",
        })
    );
}
