//! The `assertions` of a test case, checked against a run's output or its failure's message.

use ratchet_core::task::expect::compile_regex;
use ratchet_core::task::{Assertion, Operator};
use serde_json::Value;

use crate::compare::{Comparison, compare};

/// Checks `assertion` against a run: its output, or its failure's message (`error`).
pub fn check(assertion: &Assertion, output: Option<&Value>, error: Option<&str>) -> Result<(), String> {
    let actual = resolve(&assertion.path, output, error);
    let holds = match assertion.operator {
        Operator::Exists => actual.is_some() == assertion.expected.as_bool().unwrap_or(true),
        Operator::Equals => {
            actual.as_ref().is_some_and(|a| compare(&assertion.expected, a, Comparison::Exact).is_ok())
        }
        Operator::NotEquals => {
            actual.as_ref().is_none_or(|a| compare(&assertion.expected, a, Comparison::Exact).is_err())
        }
        Operator::Contains => actual.as_ref().is_some_and(|a| contains(a, &assertion.expected)),
        Operator::GreaterThan => numbers(actual.as_ref(), &assertion.expected).is_some_and(|(a, e)| a > e),
        Operator::LessThan => numbers(actual.as_ref(), &assertion.expected).is_some_and(|(a, e)| a < e),
        Operator::Matches => {
            let pattern = assertion.expected.as_str().unwrap_or_default();
            actual
                .as_ref()
                .and_then(Value::as_str)
                .is_some_and(|text| compile_regex(pattern).is_ok_and(|r| r.is_match(text)))
        }
    };
    if holds {
        return Ok(());
    }
    let shown = actual.map_or_else(|| "nothing (the path does not exist)".to_owned(), |a| a.to_string());
    Err(format!(
        "assertion failed: `{}` {} {}; actual: {shown}",
        assertion.path,
        assertion.operator.as_str(),
        assertion.expected
    ))
}

fn contains(actual: &Value, expected: &Value) -> bool {
    match (actual, expected) {
        (Value::String(text), Value::String(part)) => text.contains(part.as_str()),
        (Value::Array(items), wanted) => {
            items.iter().any(|item| compare(wanted, item, Comparison::Exact).is_ok())
        }
        (Value::Object(map), Value::String(key)) => map.contains_key(key),
        _ => false,
    }
}

fn numbers(actual: Option<&Value>, expected: &Value) -> Option<(f64, f64)> {
    Some((actual?.as_f64()?, expected.as_f64()?))
}

/// The value at `path`: in the output, or for a path starting with `error`, in the failure's
/// message (`error` itself, or `error.length`).
fn resolve(path: &str, output: Option<&Value>, error: Option<&str>) -> Option<Value> {
    let segments = segments(path);
    if let (Some(message), Some("error")) = (error, segments.first().map(String::as_str)) {
        return walk(&Value::String(message.to_owned()), &segments[1..]);
    }
    walk(output?, &segments)
}

/// `a.b[0].c` and `a.b.0.c` alike, as segments.
fn segments(path: &str) -> Vec<String> {
    path.replace('[', ".")
        .replace(']', "")
        .split('.')
        .filter(|s| !s.is_empty() && *s != "$")
        .map(str::to_owned)
        .collect()
}

fn walk(root: &Value, segments: &[String]) -> Option<Value> {
    let mut current = root.clone();
    for segment in segments {
        current = match (&current, segment.as_str()) {
            (Value::Array(items), "length") => Value::from(items.len()),
            (Value::String(text), "length") => Value::from(text.chars().count()),
            (Value::Array(items), index) => items.get(index.parse::<usize>().ok()?)?.clone(),
            (Value::Object(map), key) => map.get(key)?.clone(),
            _ => return None,
        };
    }
    Some(current)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn assertion(path: &str, operator: &str, expected: Value) -> Assertion {
        Assertion::parse(&json!({"path": path, "operator": operator, "expected": expected})).unwrap()
    }

    #[test]
    fn every_operator() {
        let output = json!({"results": [{"id": 7}, {"id": 9}], "title": "Hello world", "count": 5});
        let on_output = |path: &str, operator: &str, expected: Value| {
            check(&assertion(path, operator, expected), Some(&output), None)
        };
        assert_eq!(on_output("results.length", "equals", json!(2)), Ok(()));
        assert_eq!(on_output("results[1].id", "equals", json!(9)), Ok(()));
        assert_eq!(on_output("results.0.id", "not_equals", json!(9)), Ok(()));
        assert_eq!(on_output("title", "contains", json!("world")), Ok(()));
        assert_eq!(on_output("results", "contains", json!({"id": 7})), Ok(()));
        assert_eq!(on_output("count", "greater_than", json!(4)), Ok(()));
        assert_eq!(on_output("count", "less_than", json!(6)), Ok(()));
        assert_eq!(on_output("title", "exists", json!(true)), Ok(()));
        assert_eq!(on_output("missing", "exists", json!(false)), Ok(()));
        assert_eq!(on_output("title", "matches", json!("^Hello \\w+$")), Ok(()));
        let failed = on_output("count", "greater_than", json!(10)).unwrap_err();
        assert!(failed.contains("`count` greater_than 10; actual: 5"), "{failed}");
        assert!(on_output("results.length", "equals", json!(3)).is_err());
        assert!(on_output("title", "matches", json!("^world")).is_err());
    }

    #[test]
    fn the_error_path_reads_the_failure_message() {
        let contains = assertion("error", "contains", json!("Simulated"));
        assert_eq!(check(&contains, None, Some("Simulated error in the API")), Ok(()));
        assert!(check(&contains, None, Some("Real error")).is_err());
        assert_eq!(check(&assertion("error.length", "equals", json!(4)), None, Some("boom")), Ok(()));
    }
}
