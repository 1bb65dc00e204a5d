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

/// A task and test suite in the original Ratchet's style, unchanged: a timeout in milliseconds,
/// mocks whose URL the request merely contains, named cases with descriptions, matcher strings
/// in `expected_output` (compared as a subset beside assertions) and assertions of every
/// operator, on the output and on the failure's message. A failing assertion names the path,
/// the operator, the expected and the actual value.
#[test]
fn an_original_ratchet_suite_passes_unchanged() {
    let task = tests::task(
        "(function(input) {
           const r = fetch('https://api.openweathermap.org/data/2.5/weather?q=' + input.city + '&units=metric');
           if (!r.ok) throw new Error('Simulated error: the weather service answered ' + r.status);
           return { city: input.city, temperatures: r.body.temps, summary: r.body.summary, fetched: true,
                    source: 'owm', count: r.body.temps.length, tags: ['mild', 'dry'] };
         })",
    );
    task.write("metadata.json", r#"{"name": "weather", "version": "1.0.0", "timeout": 30000}"#);
    task.write(
        "input.schema.json",
        r#"{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}"#,
    );
    let mock = r#"{"http": {"url": "api.openweathermap.org/data/2.5/weather", "method": "GET",
                 "response": {"status": 200, "body": {"temps": [11, 12.5, 14], "summary": "Mild and dry"}}}}"#;
    task.write(
        "tests/test_paris.json",
        &format!(
            r#"{{"name": "Current weather in Paris", "description": "three readings, summarised",
                "input": {{"city": "Paris"}}, "mock": {mock},
                "expected_output": {{"city": "Paris", "temperatures": "array_length:3", "summary": "regex:^Mild",
                                     "fetched": "type:boolean", "source": "any", "count": "type:integer"}},
                "assertions": [
                  {{"path": "temperatures.length", "operator": "equals", "expected": 3}},
                  {{"path": "temperatures[1]", "operator": "equals", "expected": 12.5}},
                  {{"path": "city", "operator": "not_equals", "expected": "Oslo"}},
                  {{"path": "summary", "operator": "contains", "expected": "dry"}},
                  {{"path": "tags", "operator": "contains", "expected": "mild"}},
                  {{"path": "count", "operator": "greater_than", "expected": 2}},
                  {{"path": "temperatures.0", "operator": "less_than", "expected": 12}},
                  {{"path": "source", "operator": "exists", "expected": true}},
                  {{"path": "missing", "operator": "exists", "expected": false}},
                  {{"path": "summary", "operator": "matches", "expected": "^[A-Z][a-z]+ and dry$"}}
                ]}}"#
        ),
    );
    task.write(
        "tests/test_failure.json",
        r#"{"name": "The service is down", "input": {"city": "Paris"},
            "mock": {"http": {"url": "api.openweathermap.org", "response": {"status": 500, "body": {"message": "down"}}}},
            "assertions": [{"path": "error", "operator": "contains", "expected": "Simulated error"}]}"#,
    );
    let path = task.path();
    let validated = tests::ratchet(&["validate", "--from-fs", path.to_str().unwrap()]);
    assert!(validated.success(), "{validated:?}");
    assert!(validated.stderr.contains("read as milliseconds: 30 s"), "{validated:?}");
    let run = tests::ratchet(&["test", "--from-fs", path.to_str().unwrap()]);
    assert!(run.success(), "{run:?}");
    assert!(
        run.stdout.contains("ok   Current weather in Paris")
            && run.stdout.contains("ok   The service is down"),
        "{run:?}"
    );
    assert!(run.stdout.contains("2 passed, 0 failed"), "{run:?}");

    task.write(
        "tests/test_wrong.json",
        &format!(
            r#"{{"name": "A wrong expectation", "input": {{"city": "Paris"}}, "mock": {mock},
                "assertions": [{{"path": "temperatures.length", "operator": "greater_than", "expected": 5}}]}}"#
        ),
    );
    task.write(
        "tests/test_wrong_matcher.json",
        &format!(
            r#"{{"name": "A wrong matcher", "input": {{"city": "Paris"}}, "mock": {mock},
                "expected_output": {{"temperatures": "array_length:4"}}, "assertions": []}}"#
        ),
    );
    let run = tests::ratchet(&["test", "--from-fs", path.to_str().unwrap()]);
    assert!(!run.success(), "{run:?}");
    let failed = run.stdout.lines().find(|l| l.starts_with("FAIL A wrong expectation")).unwrap_or_default();
    assert!(failed.contains("`temperatures.length` greater_than 5; actual: 3"), "{run:?}");
    let matcher = run.stdout.lines().find(|l| l.starts_with("FAIL A wrong matcher")).unwrap_or_default();
    assert!(
        matcher.contains("$.temperatures")
            && matcher.contains("array_length:4")
            && matcher.contains("3 items"),
        "{run:?}"
    );
}
