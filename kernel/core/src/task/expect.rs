//! What a test case expects of a run, in the original Ratchet's test-file format as well as
//! Ratchet's own:
//!
//! - `expected_output`: compared exactly, or, in a case that also has `assertions`, as a subset
//!   (each field it names must match; fields it does not name are ignored). Where a value is
//!   expected, a matcher string may stand for it: `any`, `array_length:N`, `type:T` (`string`,
//!   `number`, `integer`, `boolean`, `object`, `array`, `null`) or `regex:PATTERN`.
//! - `expected_error`: the run fails, with this error name and a message containing this text.
//! - `assertions`: `{"path", "operator", "expected"}` checks on the output (or, with the path
//!   `error`, on the failure's message). Paths are dotted, with array indices (`items.0.id` or
//!   `items[0].id`) and `.length`; operators `equals`, `not_equals`, `contains`,
//!   `greater_than`, `less_than`, `exists`, `matches` (a regular expression, linear-time).

use serde_json::Value;

/// The longest regular expression a test case may hold, in bytes, compiled on a linear-time
/// engine with this memory limit.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// How `expected_output` is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Same fields, same values.
    Exact,
    /// Each field the expectation names must match; others are ignored.
    Subset,
}

/// Where and why an expected value did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Dotted path of the value (`$` is the whole output).
    pub path: String,
    pub reason: String,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at `{}`: {}", self.path, self.reason)
    }
}

/// Whether `actual` matches `expected` under `comparison`; the first mismatch otherwise.
pub fn compare(expected: &Value, actual: &Value, comparison: Comparison) -> Result<(), Mismatch> {
    compare_at("$", expected, actual, comparison)
}

fn compare_at(path: &str, expected: &Value, actual: &Value, comparison: Comparison) -> Result<(), Mismatch> {
    let mismatch = |reason: String| Err(Mismatch { path: path.to_owned(), reason });
    if let Value::String(text) = expected
        && let Some(matcher) = Matcher::parse(text)
    {
        return matcher.check(actual).map_err(|reason| Mismatch { path: path.to_owned(), reason });
    }
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (key, value) in want {
                let at = format!("{path}.{key}");
                match got.get(key) {
                    Some(found) => compare_at(&at, value, found, comparison)?,
                    None => return Err(Mismatch { path: at, reason: "missing from the output".into() }),
                }
            }
            if comparison == Comparison::Exact
                && let Some(extra) = got.keys().find(|key| !want.contains_key(*key))
            {
                return mismatch(format!("has the field `{extra}`, which the expected output does not"));
            }
            Ok(())
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                return mismatch(format!("expected {} items, got {}", want.len(), got.len()));
            }
            for (index, (value, found)) in want.iter().zip(got).enumerate() {
                compare_at(&format!("{path}.{index}"), value, found, comparison)?;
            }
            Ok(())
        }
        _ if crate::testing::json_eq(expected, actual) => Ok(()),
        _ => mismatch(format!("expected {expected}, got {actual}")),
    }
}

/// A matcher string of the original Ratchet's test files.
#[derive(Debug, Clone, PartialEq)]
enum Matcher {
    Any,
    ArrayLength(usize),
    Type(String),
    Regex(String),
}

impl Matcher {
    fn parse(text: &str) -> Option<Matcher> {
        if text == "any" {
            return Some(Matcher::Any);
        }
        if let Some(n) = text.strip_prefix("array_length:") {
            return n.trim().parse().ok().map(Matcher::ArrayLength);
        }
        if let Some(kind) = text.strip_prefix("type:") {
            return Some(Matcher::Type(kind.trim().to_owned()));
        }
        text.strip_prefix("regex:").map(|pattern| Matcher::Regex(pattern.to_owned()))
    }

    fn check(&self, actual: &Value) -> Result<(), String> {
        match self {
            Matcher::Any => Ok(()),
            Matcher::ArrayLength(n) => match actual.as_array() {
                Some(items) if items.len() == *n => Ok(()),
                Some(items) => {
                    Err(format!("matcher `array_length:{n}`: the array has {} items", items.len()))
                }
                None => Err(format!("matcher `array_length:{n}`: {actual} is not an array")),
            },
            Matcher::Type(kind) => {
                let found = json_type(actual);
                let integer = kind == "integer" && actual.as_f64().is_some_and(|x| x.fract() == 0.0);
                if found == kind || integer {
                    Ok(())
                } else {
                    Err(format!("matcher `type:{kind}`: {actual} is {found}"))
                }
            }
            Matcher::Regex(pattern) => match actual.as_str() {
                Some(text) if regex(pattern)?.is_match(text) => Ok(()),
                Some(text) => Err(format!("matcher `regex:{pattern}`: {text:?} does not match")),
                None => Err(format!("matcher `regex:{pattern}`: {actual} is not a string")),
            },
        }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| format!("`{pattern}` is not a regular expression this runner can use (no lookaround or backreferences): {e}"))
}

/// One check of an `assertions` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    pub path: String,
    pub operator: Operator,
    pub expected: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Equals,
    NotEquals,
    Contains,
    GreaterThan,
    LessThan,
    Exists,
    Matches,
}

impl Operator {
    const ALL: [(Operator, &'static str); 7] = [
        (Operator::Equals, "equals"),
        (Operator::NotEquals, "not_equals"),
        (Operator::Contains, "contains"),
        (Operator::GreaterThan, "greater_than"),
        (Operator::LessThan, "less_than"),
        (Operator::Exists, "exists"),
        (Operator::Matches, "matches"),
    ];

    pub fn as_str(self) -> &'static str {
        Operator::ALL.iter().find(|(op, _)| *op == self).map_or("", |(_, name)| name)
    }

    fn parse(name: &str) -> Option<Operator> {
        Operator::ALL.iter().find(|(_, n)| *n == name).map(|(op, _)| *op)
    }
}

impl Assertion {
    /// Parses one entry of `assertions`.
    pub fn parse(value: &Value) -> Result<Assertion, String> {
        let object = value.as_object().ok_or_else(|| format!("an assertion is an object, not {value}"))?;
        let path = object
            .get("path")
            .and_then(Value::as_str)
            .ok_or("an assertion needs a `path` string, such as \"results.length\"")?
            .to_owned();
        let name = object.get("operator").and_then(Value::as_str).unwrap_or("equals");
        let operator = Operator::parse(name).ok_or_else(|| {
            let known: Vec<&str> = Operator::ALL.iter().map(|(_, n)| *n).collect();
            format!("`{name}` is not an assertion operator; use one of {}", known.join(", "))
        })?;
        let expected = object.get("expected").cloned().unwrap_or(Value::Bool(true));
        if operator == Operator::Matches {
            let pattern =
                expected.as_str().ok_or("`matches` needs a regular expression string as `expected`")?;
            regex(pattern)?;
        }
        Ok(Assertion { path, operator, expected })
    }

    /// Checks the assertion against a run: its output, or its failure's message (`error`).
    pub fn check(&self, output: Option<&Value>, error: Option<&str>) -> Result<(), String> {
        let actual = resolve(&self.path, output, error);
        let holds = match self.operator {
            Operator::Exists => actual.is_some() == self.expected.as_bool().unwrap_or(true),
            Operator::Equals => {
                actual.as_ref().is_some_and(|a| compare(&self.expected, a, Comparison::Exact).is_ok())
            }
            Operator::NotEquals => {
                actual.as_ref().is_none_or(|a| compare(&self.expected, a, Comparison::Exact).is_err())
            }
            Operator::Contains => actual.as_ref().is_some_and(|a| contains(a, &self.expected)),
            Operator::GreaterThan => numbers(actual.as_ref(), &self.expected).is_some_and(|(a, e)| a > e),
            Operator::LessThan => numbers(actual.as_ref(), &self.expected).is_some_and(|(a, e)| a < e),
            Operator::Matches => {
                let pattern = self.expected.as_str().unwrap_or_default();
                actual
                    .as_ref()
                    .and_then(Value::as_str)
                    .is_some_and(|text| regex(pattern).is_ok_and(|r| r.is_match(text)))
            }
        };
        if holds {
            return Ok(());
        }
        let shown = actual.map_or_else(|| "nothing (the path does not exist)".to_owned(), |a| a.to_string());
        Err(format!(
            "assertion failed: `{}` {} {}; actual: {shown}",
            self.path,
            self.operator.as_str(),
            self.expected
        ))
    }
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

    #[test]
    fn matchers_and_subsets() {
        let output = json!({"results": [1, 2, 3], "name": "Ada", "n": 2.0, "extra": true});
        let expected = json!({"results": "array_length:3", "name": "regex:^A", "n": "type:integer"});
        assert_eq!(compare(&expected, &output, Comparison::Subset), Ok(()));
        assert!(compare(&expected, &output, Comparison::Exact).unwrap_err().reason.contains("extra"));
        let wrong = compare(&json!({"results": "array_length:2"}), &output, Comparison::Subset).unwrap_err();
        assert_eq!(wrong.path, "$.results");
        assert!(wrong.reason.contains("array_length:2") && wrong.reason.contains("3 items"), "{wrong}");
        assert_eq!(compare(&json!({"name": "any"}), &output, Comparison::Subset), Ok(()));
    }

    #[test]
    fn every_operator() {
        let output = json!({"results": [{"id": 7}, {"id": 9}], "title": "Hello world", "count": 5});
        let check = |path: &str, operator: &str, expected: Value| {
            Assertion::parse(&json!({"path": path, "operator": operator, "expected": expected}))
                .unwrap()
                .check(Some(&output), None)
        };
        assert_eq!(check("results.length", "equals", json!(2)), Ok(()));
        assert_eq!(check("results[1].id", "equals", json!(9)), Ok(()));
        assert_eq!(check("results.0.id", "not_equals", json!(9)), Ok(()));
        assert_eq!(check("title", "contains", json!("world")), Ok(()));
        assert_eq!(check("results", "contains", json!({"id": 7})), Ok(()));
        assert_eq!(check("count", "greater_than", json!(4)), Ok(()));
        assert_eq!(check("count", "less_than", json!(6)), Ok(()));
        assert_eq!(check("title", "exists", json!(true)), Ok(()));
        assert_eq!(check("missing", "exists", json!(false)), Ok(()));
        assert_eq!(check("title", "matches", json!("^Hello \\w+$")), Ok(()));
        let failed = check("count", "greater_than", json!(10)).unwrap_err();
        assert!(failed.contains("`count` greater_than 10; actual: 5"), "{failed}");
        let error =
            Assertion::parse(&json!({"path": "error", "operator": "contains", "expected": "Simulated"}))
                .unwrap()
                .check(None, Some("Simulated error in the API"));
        assert_eq!(error, Ok(()));
        assert!(
            Assertion::parse(&json!({"path": "x", "operator": "resembles"}))
                .unwrap_err()
                .contains("not an assertion operator")
        );
        assert!(Assertion::parse(&json!({"path": "x", "operator": "matches", "expected": "(?=x)"})).is_err());
    }
}
