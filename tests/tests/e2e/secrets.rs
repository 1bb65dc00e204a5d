//! Secrets through the real server and CLI (docs/reliability.md S15, S16): a task reads the
//! secrets it declares and no other; a secret's value is masked in everything a run leaves
//! behind, even when the task logs it, returns it, throws it or sends it; a node without the
//! key, or with another key, refuses to start.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::{Value, json};
use tests::api::ApiServer;
use tests::ratchet_bin;
use tests::server::TestServer;

const TOKEN: &str = "tok-4f9c2e7a91";
const OTHER: &str = "other-secret-value";

/// `ratchet secrets set NAME` with `value` on standard input.
fn set_secret(root: &Path, name: &str, value: &str) -> tests::Run {
    let mut child = Command::new(ratchet_bin())
        .arg("--config")
        .arg(root.join("ratchet.yaml"))
        .args(["secrets", "set", name, "--data-dir"])
        .arg(root.join("data"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{value}\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    tests::Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write_task(root: &Path, upstream: &str) {
    let dir = root.join("tasks/secretive");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("metadata.json"), r#"{"name": "secretive", "secrets": ["API_TOKEN"]}"#).unwrap();
    std::fs::write(dir.join("input.schema.json"), r#"{"type": "object"}"#).unwrap();
    std::fs::write(dir.join("output.schema.json"), r#"{"type": "object"}"#).unwrap();
    let code = format!(
        r#"async function main(input, context) {{
            const token = context.secrets.API_TOKEN;
            console.log("using " + token);
            const answer = await fetch("{upstream}?q=" + token, {{
                method: "POST", headers: {{"X-Note": token}}, body: JSON.stringify({{token}})
            }});
            if (input.fail) throw new Error("refused with " + token);
            return {{seen: token, names: Object.keys(context.secrets), other: context.secrets.OTHER_TOKEN ?? null,
                     status: answer.status}};
        }}"#
    );
    std::fs::write(dir.join("main.js"), code).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_reads_only_its_declared_secrets_and_their_values_are_masked_everywhere() {
    let upstream = TestServer::start();
    let root = tempfile::tempdir().unwrap();
    let key = tests::ratchet(&["secrets", "keygen"]);
    assert!(key.success() && key.stdout.trim().len() == 64, "{key:?}");
    std::fs::write(root.path().join("secrets.key"), &key.stdout).unwrap();
    let config = format!(
        "workers:\n  count: 2\nserver:\n  rate_limit_per_second: 0\nsecrets:\n  key_file: {}\negress:\n  allow_hosts: [\"{}\"]\n",
        root.path().join("secrets.key").display(),
        upstream.host()
    );
    std::fs::write(root.path().join("ratchet.yaml"), &config).unwrap();
    write_task(root.path(), &upstream.url("/echo"));
    for (name, value) in [("API_TOKEN", TOKEN), ("OTHER_TOKEN", OTHER)] {
        let set = set_secret(root.path(), name, value);
        assert!(set.success() && set.stdout.contains(&format!("set the secret {name}")), "{set:?}");
    }
    let short = set_secret(root.path(), "SHORT", "abc");
    assert!(!short.success() && short.stderr.contains("4 characters"), "{short:?}");

    let root_path = root.path().to_owned();
    let server = ApiServer::start_in(root, &config);
    let run = server.post("/api/v1/tasks/secretive/run", &json!({"input": {}})).await;
    assert_eq!((run.status, &run.json["status"]), (200, &json!("success")), "{run:?}");
    // The task saw its secret (its output shows it masked, as everything does) and no other.
    assert_eq!(run.json["output"]["seen"], "***", "{run:?}");
    assert_eq!(run.json["output"]["names"], json!(["API_TOKEN"]));
    assert_eq!(run.json["output"]["other"], Value::Null);
    assert_eq!(run.json["output"]["status"], 200);
    let failed = server.post("/api/v1/tasks/secretive/run", &json!({"input": {"fail": true}})).await;
    assert_eq!(failed.json["status"], "failure", "{failed:?}");
    assert!(failed.json["error"]["message"].as_str().unwrap().contains("refused with ***"), "{failed:?}");

    // A replay is given no secret: each declared one reads as the mask, as recorded, so the
    // replayed request and output match the recording.
    let replayed = server
        .post(&format!("/api/v1/executions/{}/replay", run.json["id"].as_str().unwrap()), &json!({}))
        .await;
    assert_eq!(replayed.json["matches"], true, "{replayed:?}");

    // Nothing the runs left behind holds the value: answers, records, reports, HAR, logs.
    let mut seen = vec![run.text.clone(), failed.text.clone()];
    for id in [&run.json["id"], &failed.json["id"]] {
        let id = id.as_str().unwrap();
        let record = server.get(&format!("/api/v1/executions/{id}")).await;
        assert!(record.text.contains("using ***"), "{record:?}");
        assert!(record.text.contains("q=***"), "the HAR's URL is masked: {record:?}");
        seen.push(record.text);
        seen.push(server.get(&format!("/api/v1/executions/{id}/report")).await.text);
    }
    seen.push(server.get("/api/v1/logs?grep=using").await.text);
    for text in &seen {
        assert!(!text.contains(TOKEN) && !text.contains(OTHER), "a value leaked: {text}");
    }
    // The database holds the values sealed only.
    for file in ["ratchet.db", "ratchet.db-wal"] {
        let bytes = std::fs::read(root_path.join("data").join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(TOKEN) && !text.contains(OTHER), "{file} holds a value in the clear");
    }

    // The API lists names, never values; sets and removes (admin; roles are checked for
    // every route by api::every_route_checks_credentials_and_roles).
    let listed = server.get("/api/v1/secrets").await;
    let names: Vec<&str> =
        listed.json.as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["API_TOKEN", "OTHER_TOKEN"], "{listed:?}");
    assert!(!listed.text.contains(TOKEN));
    let put = |value: &str| {
        server
            .send(server.client.put(server.url("/api/v1/secrets/THIRD_TOKEN")).json(&json!({"value": value})))
    };
    assert_eq!(put("third-value").await.status, 201);
    let replaced = put("third-value-2").await;
    assert_eq!(replaced.status, 200, "{replaced:?}");
    assert!(!replaced.text.contains("third-value"), "{replaced:?}");
    put("ab").await.assert_error(422, "invalid_input");
    let bad_name = server.send(
        server.client.put(server.url("/api/v1/secrets/not-a-name")).json(&json!({"value": "long enough"})),
    );
    bad_name.await.assert_error(422, "invalid_input");
    assert_eq!(server.delete("/api/v1/secrets/THIRD_TOKEN").await.status, 204);
    server.delete("/api/v1/secrets/THIRD_TOKEN").await.assert_error(404, "not_found");
    let graphql = server.post("/graphql", &json!({"query": "{ secrets { name updatedAt } }"})).await;
    assert_eq!(graphql.json["data"]["secrets"][0]["name"], "API_TOKEN", "{graphql:?}");

    // A node without the key, or with another, refuses to start and says why (the server
    // above keeps running: it holds the folder).
    let (data, tasks) = (root_path.join("data"), root_path.join("tasks"));
    let serve = [
        "serve",
        "--data-dir",
        data.to_str().unwrap(),
        "--tasks",
        tasks.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
    ];
    let without = tests::ratchet(&serve);
    assert!(!without.success() && without.stderr.contains("has no key to open them"), "{without:?}");
    let other_key = tests::ratchet(&["secrets", "keygen"]).stdout;
    let wrong = tests::ratchet_in(&root_path, &serve, &[("RATCHET_SECRETS_KEY", other_key.trim())]);
    assert!(!wrong.success() && wrong.stderr.contains("sealed with the key"), "{wrong:?}");
    // `ratchet run-once` gives the task its secrets from the configured database and key.
    let once = tests::ratchet_in(
        &root_path,
        &[
            "run-once",
            "--from-fs",
            tasks.join("secretive").to_str().unwrap(),
            "--input-json",
            "{}",
            "--format",
            "json",
        ],
        &[("RATCHET_STORAGE__DATA_DIR", data.to_str().unwrap())],
    );
    assert!(once.success(), "{once:?}");
    assert_eq!(once.json()["output"]["names"], json!(["API_TOKEN"]), "{once:?}");
    assert!(!once.stdout.contains(TOKEN) && once.stdout.contains("using ***"), "{once:?}");
    let listed = tests::ratchet(&["secrets", "list", "--data-dir", data.to_str().unwrap()]);
    assert!(
        listed.success() && listed.stdout.contains("OTHER_TOKEN"),
        "listing names needs no key: {listed:?}"
    );
    let garbled = tests::ratchet_in(&root_path, &serve, &[("RATCHET_SECRETS_KEY", "nope")]);
    assert!(!garbled.success() && garbled.stderr.contains("64 hex digits"), "{garbled:?}");
}
