//! Plugins written in Python and JavaScript (docs/plugins.md, "Python" and "JavaScript"): the
//! examples under `plugins/python` and `plugins/js`, built with their own one-line builds by
//! `cargo xtask foreign-plugins`, in a real `ratchet serve`; and fresh scaffolds of every kind
//! in both languages, built with the pinned toolchains that command installs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::api::ApiServer;

/// A pinned toolchain folder under `target/tools`, made by `cargo xtask foreign-plugins`.
fn toolchain(relative: &str) -> PathBuf {
    let path = tests::workspace_root().join("target/tools").join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask foreign-plugins` (cargo xtask ci does)",
        path.display()
    );
    path
}

/// `ratchet plugins test FILE` with the data folder `data`, asserting it passes.
fn conformance(data: &Path, file: &Path) -> String {
    let data = data.to_str().unwrap();
    let tested = tests::ratchet_in(
        data.as_ref(),
        &["plugins", "test", file.to_str().unwrap()],
        &[("RATCHET_STORAGE__DATA_DIR", data)],
    );
    assert!(
        tested.success() && tested.stdout.contains("conformance: passed"),
        "{}: {tested:?}",
        file.display()
    );
    tested.stdout
}

/// docs/reliability.md P9: a Python sink and a JavaScript error-pattern plugin, built as their
/// READMEs say, pass the conformance checks, fill the compile cache `ratchet serve` then loads
/// them from, and do their work on real runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_javascript_plugins_serve_real_runs_from_the_compile_cache() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let (csv, patterns) = (tests::component("csv-sink"), tests::component("http-status-patterns"));
    for file in [&csv, &patterns] {
        let first = conformance(&data, file);
        assert!(first.contains("ok    compiles in"), "{first}");
        let second = conformance(&data, file);
        assert!(
            second.contains("ok    loads from the compile cache"),
            "the second test reuses the cache: {second}"
        );
    }

    let task = root.path().join("tasks/billing");
    std::fs::create_dir_all(&task).unwrap();
    std::fs::write(
        task.join("main.js"),
        "(input) => { throw new Error('HTTP 429 Too Many Requests from the billing API'); }",
    )
    .unwrap();
    std::fs::write(task.join("metadata.json"), r#"{"name": "billing", "version": "1.0.0"}"#).unwrap();
    std::fs::write(task.join("input.schema.json"), "{}").unwrap();
    std::fs::write(task.join("output.schema.json"), "{}").unwrap();
    let events = root.path().join("events");
    let config = format!(
        "plugins:\n  - name: runs-csv\n    kind: sink\n    source: {}\n    config: {{file: runs.csv}}\n    grants: {{dir: {}}}\n  - name: http-statuses\n    kind: error-pattern\n    source: {}\n",
        csv.display(),
        events.display(),
        patterns.display()
    );
    let server = ApiServer::start_in(root, &config);
    assert!(!server.log().contains("compiling plugin"), "serve loaded both from the cache: {}", server.log());

    let run = server.post("/api/v1/tasks/billing/run", &json!({"input": {}})).await;
    assert_eq!(run.json["status"], "failure", "{run:?}");
    let id = run.json["id"].as_str().unwrap();
    let stored = server.get(&format!("/api/v1/executions/{id}")).await.json;
    let found: Vec<&Value> = stored["error"]["classification"]
        .as_array()
        .unwrap_or_else(|| panic!("not classified: {stored}"))
        .iter()
        .filter(|c| c["plugin"] == "http-statuses")
        .collect();
    assert_eq!(found.len(), 1, "the JavaScript plugin classified the failure: {stored}");
    assert_eq!(
        (found[0]["pattern"].as_str(), found[0]["category"].as_str()),
        (Some("rate-limited"), Some("network"))
    );
    assert!(!found[0]["suggestions"].as_array().unwrap().is_empty(), "{}", found[0]);

    // The Python sink wrote the run's events as CSV rows under its granted folder.
    let file = events.join("runs.csv");
    let deadline = Instant::now() + Duration::from_secs(30);
    let rows = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if text.contains("execution.failed") || Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut lines = rows.lines();
    assert_eq!(lines.next(), Some("at_ms,kind,task,execution_id,data"), "{rows}");
    let failed = lines.find(|l| l.contains("execution.failed")).unwrap_or_else(|| panic!("{rows}"));
    assert!(failed.contains(",billing,") && failed.contains(id), "{failed}");
}

/// docs/reliability.md P9: a bad configuration of a Python plugin stops start-up naming the
/// plugin and the setting, as a Rust plugin's does.
#[test]
fn a_python_sink_refuses_a_bad_configuration_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "plugins:\n  - name: runs-csv\n    kind: sink\n    source: {}\n    config: {{file: ../escape.csv}}\n    grants: {{dir: {}}}\n",
        tests::component("csv-sink").display(),
        dir.path().join("events").display()
    );
    std::fs::write(dir.path().join("ratchet.yaml"), config).unwrap();
    let checked = tests::ratchet_in(dir.path(), &["config", "check"], &[]);
    assert!(!checked.success(), "{checked:?}");
    let said = format!("{}{}", checked.stdout, checked.stderr);
    assert!(said.contains("runs-csv") && said.contains("config.file"), "{said}");
    // A large component's compile is announced, so a slow start does not look hung.
    assert!(said.contains("compiling plugin runs-csv ("), "{said}");
    assert!(said.contains("compiled plugin runs-csv in"), "{said}");
}

/// Scaffolds `name` of `kind` in `lang` into `dir`, builds it with the pinned toolchain and
/// runs its conformance checks.
fn scaffold_build_and_test(dir: &Path, lang: &str, kind: &str) {
    let name = format!("my-{lang}-{kind}");
    let folder = dir.join(&name);
    let made = Command::new(tests::bin_dir().join("xtask"))
        .args(["new-plugin", &name, "--kind", kind, "--lang", lang, "--path"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(made.status.success(), "{lang} {kind}: {}", String::from_utf8_lossy(&made.stderr));
    let said = String::from_utf8_lossy(&made.stdout).into_owned();
    let hint =
        said.lines().find_map(|l| l.strip_prefix("check it:  ratchet plugins test ")).unwrap_or_default();
    let wasm = folder.join(format!("{name}.wasm"));
    assert_eq!(Path::new(hint), wasm, "{said}");
    assert!(folder.join("wit/package.wit").is_file(), "a standalone plugin carries its WIT");
    let built = match lang {
        // build.sh takes componentize-py from PATH when it is there.
        "python" => {
            let path =
                format!("{}:{}", toolchain("componentize-py/bin").display(), std::env::var("PATH").unwrap());
            Command::new("sh").arg("build.sh").env("PATH", path).current_dir(&folder).output().unwrap()
        }
        _ => {
            std::os::unix::fs::symlink(
                toolchain("componentize-js/node_modules"),
                folder.join("node_modules"),
            )
            .unwrap();
            Command::new("npm").args(["run", "build"]).current_dir(&folder).output().unwrap()
        }
    };
    assert!(
        built.status.success(),
        "{lang} {kind}: {}{}",
        String::from_utf8_lossy(&built.stdout),
        String::from_utf8_lossy(&built.stderr)
    );
    let tested = conformance(dir, &wasm);
    assert!(tested.contains(&format!("{name} 0.1.0")), "{tested}");
}

#[test]
fn python_scaffolds_of_every_kind_build_and_pass_the_conformance_checks() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["sink", "error-pattern", "auth", "api-surface", "loader"] {
        scaffold_build_and_test(dir.path(), "python", kind);
    }
}

#[test]
fn javascript_scaffolds_of_every_kind_build_and_pass_the_conformance_checks() {
    let dir = tempfile::tempdir().unwrap();
    for kind in ["sink", "error-pattern", "auth", "api-surface", "loader"] {
        scaffold_build_and_test(dir.path(), "js", kind);
    }
    let other = Command::new(tests::bin_dir().join("xtask"))
        .args(["new-plugin", "feed", "--kind", "sink", "--lang", "cobol", "--path"])
        .arg(dir.path().join("feed"))
        .output()
        .unwrap();
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("--lang cobol"), "{other:?}");
}
