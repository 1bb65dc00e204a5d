//! `expected_output` against a run's output: exactly, or as a subset, with the original
//! Ratchet's matcher strings standing for values (`any`, `array_length:N`, `type:T`,
//! `regex:PATTERN`).

use ratchet_core::task::expect::{compile_regex, json_eq};
use serde_json::Value;

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
        _ if json_eq(expected, actual) => Ok(()),
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
                Some(text) if compile_regex(pattern)?.is_match(text) => Ok(()),
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
}
