//! The CLI as a user drives it: the sample tasks, output streams, exit codes.

use serde_json::json;
use tests::{example_task, ratchet, ratchet_in, task};

const SAMPLES: [&str; 5] = ["addition", "string-processing", "async-delay", "validate-order", "github-user"];

#[test]
fn every_sample_task_passes_its_tests() {
    for sample in SAMPLES {
        let path = example_task(sample);
        let run = ratchet(&["test", "--from-fs", path.to_str().unwrap()]);
        assert!(run.success(), "{sample}: {run:?}");
        let summary = run.stdout.lines().last().unwrap();
        assert!(summary.ends_with(" passed, 0 failed"), "{sample}: {summary}");
        assert!(!summary.starts_with("0 passed"), "{sample} has no cases");
    }
}

#[test]
fn every_sample_task_validates() {
    for sample in SAMPLES {
        let run = ratchet(&["validate", "--from-fs", example_task(sample).to_str().unwrap()]);
        assert!(run.success(), "{sample}: {run:?}");
        assert!(run.stdout.starts_with(&format!("ok: {sample} 1.0.0")), "{}", run.stdout);
    }
}

#[test]
fn run_once_prints_the_output_alone_and_logs_on_stderr() {
    let path = example_task("string-processing");
    let run =
        ratchet(&["run-once", "--from-fs", path.to_str().unwrap(), "--input-json", r#"{"text":"a b"}"#]);
    assert!(run.success(), "{run:?}");
    let output: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(output, json!({"text": "a b", "words": 2, "characters": 3, "slug": "a-b"}));
    assert!(run.stderr.contains("[info] processed 2 words"), "{}", run.stderr);
}

#[test]
fn run_once_reads_input_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input.json");
    std::fs::write(&input, r#"{"num1": 2, "num2": 3}"#).unwrap();
    let path = example_task("addition");
    let run =
        ratchet(&["run-once", "--from-fs", path.to_str().unwrap(), "--input-file", input.to_str().unwrap()]);
    assert_eq!(run.stdout.trim(), r#"{"sum":5}"#, "{run:?}");
}

#[test]
fn run_once_failure_exits_non_zero_with_the_typed_error_on_stderr() {
    let path = example_task("validate-order");
    let input = r#"{"lines":[{"sku":"A","quantity":0,"price":1}],"total":0}"#;
    let run = ratchet(&["run-once", "--from-fs", path.to_str().unwrap(), "--input-json", input]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.contains("error [task_error]: DataError: line 0 (A): quantity must be positive"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("main.js:4"), "the stack names main.js: {}", run.stderr);
}

#[test]
fn json_format_is_a_full_envelope() {
    let path = example_task("async-delay");
    let run = ratchet(&[
        "run-once",
        "--from-fs",
        path.to_str().unwrap(),
        "--input-json",
        r#"{"delays":[5]}"#,
        "--format",
        "json",
    ]);
    let envelope = run.json();
    assert_eq!(envelope["status"], "success");
    assert_eq!(envelope["output"], json!({"order": [0], "total": 5}));
    assert_eq!(envelope["logs"][0]["level"], "info");
    assert!(envelope["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(envelope["worker"]["peak_rss_kib"].as_u64().unwrap() > 0);
    assert!(envelope["kernel"]["peak_rss_kib"].as_u64().unwrap() > 0);
}

#[test]
fn bad_input_json_is_a_clear_error() {
    let path = example_task("addition");
    let run = ratchet(&["run-once", "--from-fs", path.to_str().unwrap(), "--input-json", "{num1: 1}"]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("--input-json is not valid JSON"), "{}", run.stderr);
}

#[test]
fn test_command_reports_failing_cases_and_exits_non_zero() {
    let task = task("(function (input) { return input.n * 2; })");
    task.write("tests/doubles.json", r#"{"input": {"n": 2}, "expected_output": 4}"#)
        .write("tests/wrong.json", r#"{"input": {"n": 2}, "expected_output": 5}"#)
        .write("tests/expects-error.json", r#"{"input": {"n": 2}, "expected_error": "DataError"}"#);
    let run = ratchet(&["test", "--from-fs", task.path().to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stdout.contains("ok   doubles"), "{}", run.stdout);
    assert!(
        run.stdout.contains("FAIL wrong") && run.stdout.contains("expected output 5, got 4"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("FAIL expects-error"), "{}", run.stdout);
    assert!(run.stdout.ends_with("1 passed, 2 failed\n"), "{}", run.stdout);
}

#[test]
fn generated_task_passes_its_own_tests() {
    let dir = tempfile::tempdir().unwrap();
    let run = ratchet_in(dir.path(), &["generate", "task", "greeter"], &[]);
    assert!(run.success(), "{run:?}");
    let run = ratchet_in(dir.path(), &["test", "--from-fs", "greeter"], &[]);
    assert!(run.success(), "{run:?}");
    assert!(run.stdout.ends_with("2 passed, 0 failed\n"), "{}", run.stdout);
    let again = ratchet_in(dir.path(), &["generate", "task", "greeter"], &[]);
    assert!(!again.success() && again.stderr.contains("already exists"), "{again:?}");
    let bad = ratchet_in(dir.path(), &["generate", "task", "../escape"], &[]);
    assert!(!bad.success() && bad.stderr.contains("not a usable task name"), "{bad:?}");
}

#[test]
fn configuration_sets_defaults_and_rejects_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let task = task("(function () { while (true) {} })");
    task.write("metadata.json", r#"{"version": "1.0.0"}"#);
    std::fs::write(dir.path().join("ratchet.yaml"), "limits:\n  timeout_secs: 0.5\n").unwrap();
    let path = task.path();
    let args = ["run-once", "--from-fs", path.to_str().unwrap(), "--format", "json"];
    let run = ratchet_in(dir.path(), &args, &[]);
    assert_eq!(run.json()["error"]["kind"], "timeout", "{run:?}");
    assert!(run.json()["error"]["message"].as_str().unwrap().contains("0.5s"), "{run:?}");

    std::fs::write(dir.path().join("ratchet.yaml"), "limits:\n  timeout: 3\n").unwrap();
    let run = ratchet_in(dir.path(), &args, &[]);
    assert!(
        !run.success() && run.stderr.contains("unknown field") && run.stderr.contains("timeout"),
        "{run:?}"
    );

    std::fs::remove_file(dir.path().join("ratchet.yaml")).unwrap();
    let run = ratchet_in(dir.path(), &args, &[("RATCHET_LIMITS__MEMORY_LIMIT", "lots")]);
    assert!(!run.success() && run.stderr.contains("`lots` is not a size"), "{run:?}");
}

#[test]
fn config_show_masks_secrets_and_config_check_names_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("RATCHET_STORAGE__URL", "postgres://ratchet:hunter2@db.internal/ratchet")];
    let shown = ratchet_in(dir.path(), &["config", "show", "--format", "json"], &env);
    assert!(shown.success(), "{shown:?}");
    assert!(!shown.stdout.contains("hunter2"), "{}", shown.stdout);
    assert_eq!(shown.json()["storage"]["url"], "postgres://ratchet:***@db.internal/ratchet");
    let yaml = ratchet_in(dir.path(), &["config", "show"], &[]);
    assert!(yaml.stdout.contains("max_age_days: 30.0"), "{}", yaml.stdout);

    // Defaults in an empty folder: no database yet (the check creates none), the task folder
    // does not exist.
    let checked = ratchet_in(dir.path(), &["config", "check"], &[]);
    assert!(!checked.success(), "{checked:?}");
    assert!(
        checked
            .stdout
            .contains("ok    database: none yet at ratchet-data/ratchet.db; `ratchet serve` creates it"),
        "{}",
        checked.stdout
    );
    assert!(!dir.path().join("ratchet-data").exists());
    assert!(
        checked.stdout.contains("error server.tasks: cannot read the task folder examples/tasks"),
        "{}",
        checked.stdout
    );

    let data = [("RATCHET_STORAGE__DATA_DIR", dir.path().to_str().unwrap())];
    let pruned = ratchet_in(dir.path(), &["executions", "prune", "--older-than", "1d"], &data);
    assert!(pruned.success() && pruned.stderr.contains("created the database"), "{pruned:?}");
    let good = ratchet_in(&tests::workspace_root(), &["config", "check"], &data);
    assert!(good.success(), "{good:?}");
    assert!(good.stdout.contains("ok    database (sqlite) reachable and migrated"), "{}", good.stdout);
    assert!(good.stdout.contains("ok    5 task(s) load from examples/tasks"), "{}", good.stdout);

    let bad = ratchet_in(dir.path(), &["config", "check"], &[("RATCHET_QUEUE__MAX_ATTEMPTS", "0")]);
    assert!(!bad.success() && bad.stderr.contains("queue.max_attempts must be at least 1"), "{bad:?}");

    std::fs::write(
        dir.path().join("ratchet.yaml"),
        "server:\n  trusted_proxies: [10.0.0.0/8, proxy.internal]\n",
    )
    .unwrap();
    let proxy = ratchet_in(dir.path(), &["config", "check"], &[]);
    assert!(
        !proxy.success()
            && proxy.stderr.contains(
                "server.trusted_proxies: `proxy.internal` is neither an IP address nor a CIDR range"
            ),
        "{proxy:?}"
    );
}
