//! The WASM plugin host with real components built by `cargo xtask build-plugins`:
//! the JSON-lines sink, and a hostile sink for the fault rows (docs/reliability.md P1-P5).

use std::path::{Path, PathBuf};

use ratchet_core::config::{ByteSize, EgressConfig, PluginConfig, PluginGrants, PluginLimits};
use ratchet_plugin_host::wasm::{SinkCalls, WasmHost};
use ratchet_plugin_host::{Capability, Event, LoadError, PluginError, Plugins};
use serde_json::{Value, json};
use tests::{component, sha256};

fn plugin(name: &str, file: &str) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        kind: ratchet_plugin_host::PluginKind::Sink,
        source: component(file).display().to_string(),
        config: json!({}),
        grants: PluginGrants::default(),
        limits: PluginLimits::default(),
    }
}

/// `count` events of `kind`; the hostile plugin reads its argument from `task`.
fn events(kind: &str, count: usize, argument: &str) -> Vec<Event> {
    (0..count)
        .map(|n| Event {
            kind: kind.into(),
            at_ms: 1_800_000_000_000 + n as i64,
            task: Some(argument.into()),
            execution_id: Some(format!("run-{n}")),
            data: json!({"n": n}),
        })
        .collect()
}

fn host(cache: &Path) -> WasmHost {
    WasmHost::new(cache, &EgressConfig::default()).unwrap()
}

#[test]
fn the_jsonl_sink_writes_every_event_and_rotates_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let events_dir = dir.path().join("events");
    let mut config = plugin("events", "jsonl-sink");
    config.config = json!({"file": "events.jsonl", "max_bytes": 4000, "keep": 2});
    config.grants.dir = Some(events_dir.clone());
    let mut plugins = Plugins::load(&[config], &EgressConfig::default(), &dir.path().join("cache")).unwrap();
    let info = &plugins.list()[0];
    assert_eq!((info.kind.as_str(), info.interface.as_str()), ("sink", "ratchet:plugin@0.1.0"));
    assert_eq!((info.plugin.as_str(), info.version.as_str()), ("jsonl-sink", "0.1.0"));
    for event in events("execution.succeeded", 150, "ok") {
        plugins.sinks.emit(event);
    }
    plugins.sinks.close();

    let mut lines = Vec::new();
    for name in ["events.jsonl.2", "events.jsonl.1", "events.jsonl"] {
        let text = std::fs::read_to_string(events_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(text.len() <= 4000 + 200, "{name} holds {} bytes", text.len());
        lines.extend(text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()));
    }
    assert!(!events_dir.join("events.jsonl.3").exists(), "keep: 2 keeps two rotated files");
    let last = lines.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["execution_id"].as_str()),
        (Some("execution.succeeded"), Some("run-149"))
    );
    // Rotation dropped the oldest; what is kept is in order and complete at the end.
    let ids: Vec<u64> =
        lines.iter().map(|l| l["execution_id"].as_str().unwrap()[4..].parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[1] == w[0] + 1), "{ids:?}");
    assert!(ids[0] > 0, "the oldest file was rotated away");
}

#[test]
fn a_plugin_gets_no_folder_no_network_and_no_files_unless_granted() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(&dir.path().join("cache"));
    // The JSON-lines sink without grants.dir: a typed denial, not a trap.
    let mut sink = host.load_sink(&plugin("events", "jsonl-sink")).unwrap();
    let error = sink.write_events(&events("x", 1, "")).unwrap_err();
    assert!(matches!(&error, PluginError::Returned { message, .. } if message.contains("denied")), "{error}");

    let mut hostile = host.load_sink(&plugin("hostile", "test-programs")).unwrap();
    assert_eq!(hostile.info().requested, [Capability::Http]);
    assert!(hostile.info().granted.is_empty(), "asked for http, granted nothing");
    let error = hostile.write_events(&events("read-file", 1, "/etc/passwd")).unwrap_err();
    assert!(matches!(&error, PluginError::Returned { message, .. } if message.contains("denied")), "{error}");
    let error = hostile.write_events(&events("http", 1, "http://127.0.0.1:9/")).unwrap_err();
    assert!(
        matches!(&error, PluginError::Returned { message, .. } if message.contains("not granted HTTP")),
        "{error}"
    );
}

#[test]
fn granted_http_goes_through_the_egress_policy_to_the_granted_host_only() {
    let server = tests::server::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The kernel's runtime, which the plugin's HTTP calls run on.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let host = {
        let _inside = runtime.enter();
        host(&dir.path().join("cache"))
    };
    let mut config = plugin("hostile", "test-programs");
    config.grants.http_hosts = vec![format!("127.0.0.1:{}", server.port())];
    let mut sink = host.load_sink(&config).unwrap();
    assert_eq!(sink.info().granted, [Capability::Http]);
    let allowed = format!("http://127.0.0.1:{}/json", server.port());
    sink.write_events(&events("http", 1, &allowed)).unwrap();
    assert_eq!(server.hits(), 1);
    let other = "http://localhost:9/".to_owned();
    let error = sink.write_events(&events("http", 1, &other)).unwrap_err();
    assert!(matches!(&error, PluginError::Returned { message, .. } if message.contains("denied")), "{error}");
}

#[test]
fn the_webhook_sink_posts_batches_to_the_granted_host() {
    let server = tests::server::TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = plugin("hook", "webhook-sink");
    config.config = json!({"url": server.url("/collect"), "headers": {"x-token": "t0ken"}});
    config.grants.http_hosts = vec![server.host()];
    let mut plugins = {
        let _inside = runtime.enter();
        Plugins::load(&[config.clone()], &EgressConfig::default(), &dir.path().join("cache")).unwrap()
    };
    assert_eq!(plugins.list()[0].granted, [Capability::Http]);
    for event in events("execution.succeeded", 5, "addition") {
        plugins.sinks.emit(event);
    }
    plugins.sinks.close();
    let posted: Vec<Value> = server
        .collected()
        .iter()
        .flat_map(|body| serde_json::from_str::<Vec<Value>>(body).unwrap())
        .collect();
    assert_eq!(posted.len(), 5, "{posted:?}");
    assert_eq!(posted[4]["execution_id"], "run-4");
    assert_eq!(posted[0]["data"], json!({"n": 0}));

    // Without the grant the sink is refused by the host, and the server sees nothing.
    let before = server.hits();
    config.grants.http_hosts.clear();
    let host = host(&dir.path().join("cache"));
    let mut ungranted = host.load_sink(&config).unwrap();
    let error = ungranted.write_events(&events("x", 1, "")).unwrap_err();
    assert!(error.to_string().contains("not granted HTTP"), "{error}");
    assert_eq!(server.hits(), before);
}

#[test]
fn traps_fail_one_call_and_the_next_call_gets_a_fresh_instance() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(&dir.path().join("cache"));
    let mut config = plugin("hostile", "test-programs");
    config.limits = PluginLimits { memory: ByteSize(32 * 1024 * 1024), call_timeout_ms: 200 };
    let mut sink = host.load_sink(&config).unwrap();
    for (kind, expected) in [
        ("loop", "deadline of 200 ms"),
        ("grow", ""),
        ("recurse", "out of bounds"),
        ("panic", ""),
        ("huge-error", ""),
    ] {
        let started = std::time::Instant::now();
        let error = sink.write_events(&events(kind, 1, "")).unwrap_err();
        assert!(matches!(error, PluginError::Trapped { .. }), "{kind}: {error}");
        assert!(error.to_string().contains(expected), "{kind}: {error}");
        assert!(started.elapsed().as_secs() < 5, "{kind} took {:?}", started.elapsed());
        sink.write_events(&events("fine", 1, "")).unwrap_or_else(|e| panic!("after {kind}: {e}"));
    }
    // Three traps in a row: quarantined, failing fast.
    for _ in 0..3 {
        let _ = sink.write_events(&events("panic", 1, ""));
    }
    let error = sink.write_events(&events("fine", 1, "")).unwrap_err();
    assert!(matches!(error, PluginError::Quarantined { traps: 3, .. }), "{error}");
}

#[test]
fn bad_plugins_are_refused_at_load_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(&dir.path().join("cache"));
    let mut wrong_kind = plugin("events", "jsonl-sink");
    wrong_kind.kind = ratchet_plugin_host::PluginKind::Auth;
    let error = host.load_sink(&wrong_kind).err().unwrap().to_string();
    assert!(error.contains("configured as `auth`") && error.contains("sink interface"), "{error}");

    let not_wasm = dir.path().join("plugin.wasm");
    std::fs::write(&not_wasm, "not a component").unwrap();
    let mut bad = plugin("bad", "jsonl-sink");
    bad.source = not_wasm.display().to_string();
    let error = host.load_sink(&bad).err().unwrap();
    assert!(matches!(error, LoadError::Compile { .. }), "{error}");
    assert!(error.to_string().contains("plugin.wasm"), "{error}");

    let mut missing = plugin("gone", "jsonl-sink");
    missing.source = "/nowhere/plugin.wasm".into();
    assert!(host.load_sink(&missing).err().unwrap().to_string().contains("cannot read /nowhere/plugin.wasm"));

    let mut builtin = plugin("nope", "jsonl-sink");
    builtin.source = "builtin:teletype".into();
    let error = Plugins::load(&[builtin], &EgressConfig::default(), dir.path()).err().unwrap().to_string();
    assert!(error.contains("no built-in plugin `teletype`") && error.contains("console-sink"), "{error}");

    let mut unset = plugin("env", "jsonl-sink");
    unset.grants.env = vec!["RATCHET_TEST_SURELY_UNSET".into()];
    let error = host.load_sink(&unset).err().unwrap().to_string();
    assert!(error.contains("grants.env: RATCHET_TEST_SURELY_UNSET is not set"), "{error}");
}

#[test]
fn compiled_components_are_cached_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let path = component("jsonl-sink");
    let (_, cached) = host(&cache).component("events", &path).unwrap();
    assert!(!cached, "the first load compiles");
    let (_, cached) = host(&cache).component("events", &path).unwrap();
    assert!(cached, "a second host loads the compiled cache");
}

#[test]
fn plugins_list_and_test_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "plugins:\n  - name: events\n    kind: sink\n    source: {}\n    grants: {{dir: {}}}\n  - name: console\n    kind: sink\n    source: builtin:console-sink\n",
        component("jsonl-sink").display(),
        dir.path().join("events").display()
    );
    std::fs::write(dir.path().join("ratchet.yaml"), config).unwrap();
    let listed = tests::ratchet_in(dir.path(), &["plugins", "list", "--format", "json"], &[]);
    assert!(listed.success(), "{listed:?}");
    let listed = listed.json();
    assert_eq!(listed[0]["name"], "events");
    assert_eq!(listed[0]["interface"], "ratchet:plugin@0.1.0");
    assert_eq!(listed[1]["interface"], "native");
    let sources: Vec<&str> =
        listed.as_array().unwrap().iter().map(|p| p["source"].as_str().unwrap()).collect();
    assert!(
        sources.ends_with(&["builtin:rest", "builtin:graphql", "builtin:dashboard", "builtin:mcp"]),
        "{sources:?}"
    );
    assert!(sources.contains(&"builtin:error-patterns"), "the built-in patterns are on: {sources:?}");
    let inspected = tests::ratchet_in(dir.path(), &["plugins", "inspect", "events", "--format", "json"], &[]);
    assert_eq!(inspected.json()["limits"]["call_timeout_ms"], 1000, "{inspected:?}");

    let passed =
        tests::ratchet_in(dir.path(), &["plugins", "test", component("jsonl-sink").to_str().unwrap()], &[]);
    assert!(passed.success() && passed.stdout.contains("conformance: passed"), "{passed:?}");
    let not_a_plugin = dir.path().join("ratchet.yaml");
    let failed = tests::ratchet_in(dir.path(), &["plugins", "test", not_a_plugin.to_str().unwrap()], &[]);
    assert!(!failed.success() && failed.stdout.contains("FAIL"), "{failed:?}");
}

#[test]
fn a_scaffolded_plugin_builds_loads_and_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("my-sink");
    let xtask = tests::bin_dir().join("xtask");
    let target = tests::workspace_root().join("target/wasm-scaffold");
    let made = std::process::Command::new(&xtask)
        .args(["new-plugin", "my-sink", "--kind", "sink", "--path"])
        .arg(&path)
        .env("CARGO_TARGET_DIR", &target)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    // The hint names the file the build writes.
    let said = String::from_utf8_lossy(&made.stdout).into_owned();
    let hint =
        said.lines().find_map(|l| l.strip_prefix("check it:  ratchet plugins test ")).unwrap_or_default();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = std::process::Command::new(cargo)
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(&path)
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
    let wasm = target.join("wasm32-wasip2/release/my_sink.wasm");
    assert_eq!(std::path::Path::new(hint), wasm, "{said}");
    let tested = tests::ratchet_in(dir.path(), &["plugins", "test", wasm.to_str().unwrap()], &[]);
    assert!(tested.success() && tested.stdout.contains("conformance: passed"), "{tested:?}");
    assert!(tested.stdout.contains("my-sink 0.1.0"), "{tested:?}");

    // The other hosted kinds scaffold too, and pass their checks as generated.
    for (name, kind) in [
        ("my-patterns", "error-pattern"),
        ("my-gate", "auth"),
        ("my-routes", "api-surface"),
        ("my-source", "loader"),
    ] {
        let made = std::process::Command::new(&xtask)
            .args(["new-plugin", name, "--kind", kind, "--path"])
            .arg(dir.path().join(name))
            .output()
            .unwrap();
        assert!(made.status.success(), "{kind}: {}", String::from_utf8_lossy(&made.stderr));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let built = std::process::Command::new(cargo)
            .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(dir.path().join(name))
            .output()
            .unwrap();
        assert!(built.status.success(), "{kind}: {}", String::from_utf8_lossy(&built.stderr));
        let wasm = target.join(format!("wasm32-wasip2/release/{}.wasm", name.replace('-', "_")));
        let tested = tests::ratchet_in(dir.path(), &["plugins", "test", wasm.to_str().unwrap()], &[]);
        assert!(tested.success() && tested.stdout.contains("conformance: passed"), "{kind}: {tested:?}");
    }
    let other = std::process::Command::new(&xtask)
        .args(["new-plugin", "feed", "--kind", "teapot", "--path"])
        .arg(dir.path().join("feed"))
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("--kind teapot"), "{other:?}");
}

fn native_library(name: &str) -> PathBuf {
    let path = tests::bin_dir().join(format!("lib{}.so", name.replace('-', "_")));
    assert!(
        path.is_file(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

#[test]
fn native_plugins_are_checked_for_abi_first_and_their_panics_stay_inside() {
    let dir = tempfile::tempdir().unwrap();
    let lines = dir.path().join("events.txt");
    let mut config = plugin("native", "jsonl-sink");
    config.source = native_library("example-sink").display().to_string();
    config.config = json!({"file": lines});
    let mut plugins = Plugins::load(&[config.clone()], &EgressConfig::default(), dir.path()).unwrap();
    let info = &plugins.list()[0];
    assert_eq!((info.plugin.as_str(), info.interface.as_str()), ("example-sink", "native ABI 1"));
    for event in events("execution.succeeded", 2, "addition") {
        plugins.sinks.emit(event);
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    plugins.sinks.emit(events("panic", 1, "addition").remove(0));
    let started = std::time::Instant::now();
    while plugins.sinks.stats()[0].2 == 0 && started.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_, delivered, failed, dropped) = plugins.sinks.stats()[0].clone();
    assert_eq!((delivered, failed, dropped), (2, 1, 0), "the panicking batch failed alone");
    plugins.sinks.emit(events("execution.failed", 1, "after-the-panic").remove(0));
    plugins.sinks.close();
    // The panicking batch failed alone; the sink kept working after it.
    let written = std::fs::read_to_string(&lines).unwrap();
    assert_eq!(
        written,
        "execution.succeeded addition\nexecution.succeeded addition\nexecution.failed after-the-panic\n"
    );

    let mut wrong = config.clone();
    wrong.source = native_library("wrong-abi").display().to_string();
    let error = Plugins::load(&[wrong], &EgressConfig::default(), dir.path()).err().unwrap().to_string();
    assert!(error.contains("native plugin ABI 999") && error.contains("speaks 1"), "{error}");

    let mut missing_config = config;
    missing_config.config = json!({});
    let error =
        Plugins::load(&[missing_config], &EgressConfig::default(), dir.path()).err().unwrap().to_string();
    assert!(error.contains("config.file is required"), "{error}");
}

fn failure(kind: &str, name: Option<&str>, message: &str) -> ratchet_plugin_host::wasm::Failure {
    ratchet_plugin_host::wasm::Failure {
        kind: kind.into(),
        name: name.map(str::to_owned),
        message: message.into(),
        task: "t".into(),
        logs: vec!["[info] starting".into()],
    }
}

#[test]
fn the_error_pattern_plugin_classifies_failures_with_built_in_and_configured_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(&dir.path().join("cache"));
    let mut config = plugin("patterns", "error-patterns");
    config.kind = ratchet_plugin_host::PluginKind::ErrorPattern;
    config.config = json!({"patterns": [
        {"id": "quota", "category": "billing", "any_text": ["quota exceeded"], "suggestions": ["Raise the quota"]}
    ]});
    let mut patterns = host.load_error_pattern(&config).unwrap();
    assert_eq!(patterns.info().kind, ratchet_plugin_host::PluginKind::ErrorPattern);
    let first = |found: Vec<ratchet_plugin_host::wasm::Classification>| {
        found.first().map(|c| (c.pattern.clone(), c.category.clone(), c.suggestions.len()))
    };
    let timeout =
        patterns.classify(&failure("timeout", Some("TimeoutError"), "the run took longer than 5s")).unwrap();
    assert_eq!(first(timeout).map(|f| f.0), Some("task-timeout".to_owned()));
    let denied = patterns
        .classify(&failure(
            "task_error",
            Some("NetworkError"),
            "127.0.0.1 is a loopback address; allow-list `127.0.0.1:80` (egress.allow_hosts or --allow-host) to reach it",
        ))
        .unwrap();
    let (pattern, category, suggestions) = first(denied.clone()).unwrap();
    assert_eq!((pattern.as_str(), category.as_str()), ("egress-denied", "network"));
    assert!(suggestions >= 1);
    assert!(denied.iter().any(|c| c.pattern == "network-error"), "{denied:?}");
    let quota =
        patterns.classify(&failure("task_error", Some("Error"), "Quota exceeded for project 7")).unwrap();
    assert_eq!(first(quota), Some(("quota".to_owned(), "billing".to_owned(), 1)));
    let reference =
        patterns.classify(&failure("task_error", Some("ReferenceError"), "x is not defined")).unwrap();
    assert_eq!(first(reference).map(|f| f.1), Some("javascript".to_owned()));
    let nothing = patterns.classify(&failure("task_error", Some("Error"), "the answer was 41")).unwrap();
    assert!(nothing.is_empty(), "{nothing:?}");

    // A sink is not an error-pattern plugin.
    let mut wrong = plugin("patterns", "jsonl-sink");
    wrong.kind = ratchet_plugin_host::PluginKind::ErrorPattern;
    let error = host.load_error_pattern(&wrong).err().unwrap().to_string();
    assert!(error.contains("configured as `error-pattern`") && error.contains("sink interface"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_auth_plugin_checks_hashed_keys_and_fails_closed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = plugin("keys", "api-key-auth");
    config.kind = ratchet_plugin_host::PluginKind::Auth;
    config.config = json!({"keys": [
        {"id": "ci", "sha256": sha256("runner-key-1"), "role": "runner"},
        {"id": "ops", "sha256": sha256("admin-key-2").to_uppercase(), "role": "admin"},
        {"id": "odd", "sha256": sha256("odd-key-3"), "role": "superuser"},
    ]});
    let plugins = Plugins::load(&[config], &EgressConfig::default(), &dir.path().join("cache")).unwrap();
    assert_eq!(plugins.list()[0].kind, ratchet_plugin_host::PluginKind::Auth);
    let auth = plugins.auth.as_ref().expect("the auth plugin is running");
    let headers = |name: &str, value: &str| vec![(name.to_owned(), value.to_owned())];

    let runner = auth.authenticate(headers("Authorization", "Bearer runner-key-1")).await.unwrap();
    assert_eq!(
        (runner.id.as_str(), runner.roles.clone()),
        ("ci", vec!["viewer".to_owned(), "runner".to_owned()])
    );
    let admin = auth.authenticate(headers("x-api-key", "admin-key-2")).await.unwrap();
    assert_eq!(admin.roles, vec!["viewer", "runner", "admin"]);

    let none = auth.authenticate(Vec::new()).await.unwrap_err();
    assert!(none.contains("no API key"), "{none}");
    let wrong = auth.authenticate(headers("Authorization", "Bearer runner-key-2")).await.unwrap_err();
    assert_eq!(wrong, "unknown API key");
    let odd = auth.authenticate(headers("X-API-Key", "odd-key-3")).await.unwrap_err();
    assert!(odd.contains("failed") && odd.contains("superuser"), "{odd}");
    // The configuration holds hashes only: the keys themselves are nowhere in it.
    let listed = format!("{:?}", plugins.list());
    assert!(!listed.contains("runner-key-1"));
}

#[test]
fn every_first_party_plugin_passes_the_conformance_checks() {
    let dir = tempfile::tempdir().unwrap();
    let host = host(&dir.path().join("cache"));
    for name in ["jsonl-sink", "webhook-sink", "error-patterns", "api-key-auth", "hello-api", "inline-loader"]
    {
        let checks = ratchet_plugin_host::conformance::run(&host, &component(name));
        assert!(checks.len() >= 4, "{name}: {checks:?}");
        let failed: Vec<_> = checks.iter().filter(|c| c.outcome.is_err()).collect();
        assert!(failed.is_empty(), "{name}: {failed:#?}");
    }
    // The hostile plugin misbehaves only on its trigger kinds, so the plain checks pass.
    let checks = ratchet_plugin_host::conformance::run(&host, &component("test-programs"));
    assert!(checks.iter().all(|c| c.outcome.is_ok()), "plain events do not trigger it: {checks:?}");
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, "nope").unwrap();
    let checks = ratchet_plugin_host::conformance::run(&host, &not_wasm);
    assert!(checks[0].outcome.is_err(), "{checks:?}");
}
