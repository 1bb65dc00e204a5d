//! The built-in error patterns, on with no plugin configured: real failing tasks through
//! `ratchet serve`, each classified in its execution record with suggestions.

use serde_json::{Value, json};
use tests::api::ApiServer;
use tests::server::TestServer;

fn write_task(root: &std::path::Path, name: &str, code: &str, metadata: Value, output: Value) {
    let folder = root.join("tasks").join(name);
    std::fs::create_dir_all(&folder).unwrap();
    let mut meta = json!({"name": name, "version": "1.0.0"});
    meta.as_object_mut().unwrap().extend(metadata.as_object().unwrap().clone());
    std::fs::write(folder.join("metadata.json"), meta.to_string()).unwrap();
    std::fs::write(folder.join("main.js"), code).unwrap();
    std::fs::write(folder.join("input.schema.json"), "{}").unwrap();
    std::fs::write(folder.join("output.schema.json"), output.to_string()).unwrap();
}

/// The patterns the record of a synchronous run of `task` was classified with, and the run.
async fn classified(server: &ApiServer, task: &str) -> (Vec<String>, Value) {
    let run = server.post(&format!("/api/v1/tasks/{task}/run"), &json!({"input": {}})).await;
    assert_eq!(run.status, 200, "{task}: {run:?}");
    assert_eq!(run.json["status"], "failure", "{task}: {}", run.json);
    let stored = server.get(&format!("/api/v1/executions/{}", run.json["id"].as_str().unwrap())).await.json;
    let patterns = stored["error"]["classification"]
        .as_array()
        .unwrap_or_else(|| panic!("{task} was not classified: {stored}"))
        .iter()
        .map(|c| c["pattern"].as_str().unwrap().to_owned())
        .collect();
    (patterns, stored)
}

/// docs/reliability.md F1: a node with no plugin configured classifies every failed run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_node_classifies_real_failures_with_the_built_in_patterns() {
    let remote = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let any = json!({});
    write_task(root.path(), "endless", "(input) => { while (true) {} }", json!({"timeout": 1}), any.clone());
    write_task(
        root.path(),
        "hog",
        "(input) => { const keep = []; while (true) keep.push(new Array(100000).fill(7)); }",
        json!({"memory_limit": "16MB", "timeout": 20}),
        any.clone(),
    );
    write_task(
        root.path(),
        "outsider",
        "async function main() { await fetch('http://10.0.0.1/metadata'); return {}; }",
        json!({}),
        any.clone(),
    );
    write_task(
        root.path(),
        "liar",
        "(input) => ({wrong: 1})",
        json!({}),
        json!({"type": "object", "required": ["right"]}),
    );
    write_task(
        root.path(),
        "deep",
        "(input) => { let o = {}; for (let i = 0; i < 100000; i++) o = {o}; return o; }",
        json!({}),
        any.clone(),
    );
    write_task(
        root.path(),
        "caller",
        &format!(
            "async function main() {{ const r = await fetch('{}'); \
             if (!r.ok) throw new Error(`HTTP ${{r.status}} from the billing API`); return {{}}; }}",
            remote.url("/status/401")
        ),
        json!({}),
        any,
    );
    // The one setting: the local server may be called (the egress policy denies loopback).
    let config = format!("egress:\n  allow_hosts: [\"{}\"]\n", remote.host());
    let server = ApiServer::start_in(root, &config);

    for (task, expected, category) in [
        ("endless", "task-timeout", "resources"),
        ("hog", "memory-limit", "resources"),
        ("outsider", "egress-denied", "network"),
        ("liar", "schema-violation", "validation"),
        ("deep", "data-too-large", "validation"),
        ("caller", "authentication", "authentication"),
    ] {
        let (patterns, stored) = classified(&server, task).await;
        assert_eq!(patterns.first().map(String::as_str), Some(expected), "{task}: {patterns:?}\n{stored}");
        let first = &stored["error"]["classification"][0];
        assert_eq!(first["category"], category, "{task}: {first}");
        assert_eq!(first["plugin"], "error-patterns");
        assert!(first["confidence"].as_f64().unwrap() > 0.5, "{first}");
        assert!(!first["suggestions"].as_array().unwrap().is_empty(), "{first}");
    }
    let plugins = server.get("/api/v1/plugins").await.json;
    assert!(
        plugins.as_array().unwrap().iter().any(|p| p["source"] == "builtin:error-patterns"),
        "the built-in patterns show as a plugin: {plugins}"
    );
}

/// docs/reliability.md F2: operators add patterns, set a threshold, or turn the built-ins off;
/// a pattern that cannot match anything stops start-up naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_add_patterns_or_turn_the_built_ins_off() {
    let root = tempfile::tempdir().unwrap();
    write_task(
        root.path(),
        "billing",
        "(input) => { throw new Error('billing ledger is closed for the month'); }",
        json!({}),
        json!({}),
    );
    let config = "error_patterns:\n  patterns:\n    - {id: ledger-closed, category: business, any_text: [ledger is closed], \
                  suggestions: [Retry on the 1st], confidence: 0.99}\n";
    let server = ApiServer::start_in(root, config);
    let (patterns, stored) = classified(&server, "billing").await;
    assert_eq!(patterns.first().map(String::as_str), Some("ledger-closed"), "{stored}");
    assert_eq!(stored["error"]["classification"][0]["suggestions"], json!(["Retry on the 1st"]));
    drop(server);

    let root = tempfile::tempdir().unwrap();
    write_task(root.path(), "endless", "(input) => { while (true) {} }", json!({"timeout": 1}), json!({}));
    let server = ApiServer::start_in(root, "error_patterns: {builtin: false}\n");
    let run = server.post("/api/v1/tasks/endless/run", &json!({"input": {}})).await;
    assert_eq!(run.json["error"]["kind"], "timeout");
    assert_eq!(
        run.json["error"]["classification"],
        Value::Null,
        "no patterns, no classification: {}",
        run.json
    );

    let bad = tempfile::tempdir().unwrap();
    let config_path = bad.path().join("ratchet.yaml");
    std::fs::write(&config_path, "error_patterns:\n  patterns:\n    - {id: vague}\n").unwrap();
    let checked = tests::ratchet(&["--config", config_path.to_str().unwrap(), "config", "check"]);
    assert!(!checked.success());
    let said = format!("{}{}", checked.stdout, checked.stderr);
    assert!(said.contains("`vague`") && said.contains("no condition"), "{said}");
}
