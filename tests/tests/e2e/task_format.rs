//! The task format: folders and ZIPs, both file-name spellings, and one clear error per defect.

use serde_json::json;
use tests::{TaskDir, ratchet, run_once, task};

/// `ratchet validate` of a task changed by `edit` fails with a message containing each of `expect`.
#[track_caller]
fn check_invalid(edit: impl FnOnce(&TaskDir), expect: &[&str]) {
    let task = task("(function (input) { return input; })");
    edit(&task);
    let run = ratchet(&["validate", "--from-fs", task.path().to_str().unwrap()]);
    assert_eq!(run.code, Some(1), "{run:?}");
    let first_line = run.stderr.lines().next().unwrap_or_default();
    for part in expect {
        assert!(first_line.contains(part), "expected {part:?} in {first_line:?}");
    }
}

#[test]
fn each_defect_gets_one_clear_error() {
    check_invalid(
        |t| {
            t.remove("metadata.json");
        },
        &["metadata.json: missing"],
    );
    check_invalid(
        |t| {
            t.remove("main.js");
        },
        &["main.js: missing"],
    );
    check_invalid(
        |t| {
            t.remove("output.schema.json");
        },
        &["output.schema.json: missing"],
    );
    check_invalid(
        |t| {
            t.write("metadata.json", "{\n  \"version\": \"1\",\n  oops\n}");
        },
        &["metadata.json:3:3", "invalid JSON"],
    );
    check_invalid(
        |t| {
            t.write("input.schema.json", r#"{"type": "nonsense"}"#);
        },
        &["input.schema.json", "not a valid JSON Schema"],
    );
    check_invalid(
        |t| {
            t.write("main.js", "function main(input) {\n  return input +;\n}\n");
        },
        &["main.js", "SyntaxError", "line 2"],
    );
    check_invalid(
        |t| {
            t.write("main.js", "function main(input) {\n  return 1;\n");
        },
        &["main.js", "SyntaxError", "line 2"],
    );
    check_invalid(
        |t| {
            t.write("main.js", "const answer = 42;");
        },
        &["main.js", "TaskDefinitionError", "function main(input)"],
    );
    check_invalid(
        |t| {
            t.write("metadata.json", r#"{"memory_limit": "lots"}"#);
        },
        &["metadata.json", "`lots` is not a size"],
    );
    check_invalid(
        |t| {
            t.write("metadata.json", r#"{"memory_limit": "64GB"}"#);
        },
        &["metadata.json", "exceeds the configured ceiling"],
    );
    check_invalid(
        |t| {
            t.write("metadata.json", r#"{"timeout": -1}"#);
        },
        &["metadata.json", "timeout must be"],
    );
    check_invalid(
        |t| {
            t.write("tests/a.json", r#"{"input": 1}"#);
        },
        &["tests/a.json", "expected_output"],
    );
    check_invalid(
        |t| {
            t.write("tests/b.json", "[");
        },
        &["tests/b.json:1:1", "invalid JSON"],
    );
    check_invalid(
        |t| std::fs::write(t.path().join("main.js"), b"(function () {})\xff").unwrap(),
        &["main.js", "not UTF-8"],
    );
}

#[test]
fn a_missing_task_names_the_path() {
    let run = ratchet(&["validate", "--from-fs", "/nonexistent/task"]);
    assert!(run.stderr.contains("/nonexistent/task: no such task folder or ZIP archive"), "{run:?}");
}

#[test]
fn original_schema_file_names_are_accepted() {
    let task = task("(function (input) { return {n: input.n}; })");
    task.remove("input.schema.json").remove("output.schema.json");
    task.write("input.schema", r#"{"type": "object", "required": ["n"]}"#)
        .write("output.schema", r#"{"type": "object"}"#);
    let (run, envelope) = run_once(&task.path(), &json!({"n": 1}));
    assert!(run.success(), "{envelope}");
    let (_, envelope) = run_once(&task.path(), &json!({}));
    assert_eq!(envelope["error"]["violations"][0]["rule"], "required");
}

#[test]
fn a_zip_of_a_task_runs_and_tests_like_the_folder() {
    let task = task("(function (input) { return input.a * input.b; })");
    task.write("tests/product.json", r#"{"input": {"a": 6, "b": 7}, "expected_output": 42}"#);
    let archive = task.zip();
    let (run, envelope) = run_once(&archive, &json!({"a": 2, "b": 3}));
    assert!(run.success(), "{envelope}");
    assert_eq!(envelope["output"], 6);
    let run = ratchet(&["test", "--from-fs", archive.to_str().unwrap()]);
    assert!(run.stdout.ends_with("1 passed, 0 failed\n"), "{run:?}");
}

#[test]
fn a_file_that_is_not_a_zip_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("task.zip");
    std::fs::write(&path, "not a zip").unwrap();
    let run = ratchet(&["validate", "--from-fs", path.to_str().unwrap()]);
    assert!(run.stderr.contains("task.zip: not a task folder and not a readable ZIP archive"), "{run:?}");
}

#[test]
fn a_zip_without_metadata_is_named() {
    let task = task("(function () {})");
    task.remove("metadata.json");
    let archive = task.zip();
    let run = ratchet(&["validate", "--from-fs", archive.to_str().unwrap()]);
    assert!(run.stderr.contains("the archive has no metadata.json"), "{run:?}");
}
