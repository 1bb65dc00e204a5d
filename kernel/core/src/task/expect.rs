//! What a test case may assert, parsed when the task loads so that a bad case is a load error;
//! judging runs against cases is `ratchet-testing`'s work. `assertions` entries are
//! `{"path", "operator", "expected"}`: paths are dotted, with array indices (`items.0.id` or
//! `items[0].id`) and `.length`; operators `equals`, `not_equals`, `contains`,
//! `greater_than`, `less_than`, `exists`, `matches` (a regular expression, linear-time).

use serde_json::Value;

/// The longest regular expression a test case may hold, in bytes, compiled on a linear-time
/// engine with this memory limit.
const MAX_REGEX_BYTES: usize = 1 << 20;

/// Compiles a test case's regular expression on the linear-time engine, or says why not.
pub fn compile_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .map_err(|e| format!("`{pattern}` is not a regular expression this runner can use (no lookaround or backreferences): {e}"))
}

/// JSON equality where `3` and `3.0` are the same number, as they are in JavaScript.
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// One check of an `assertions` list.
#[derive(Debug, Clone, PartialEq)]
pub struct Assertion {
    pub path: String,
    pub operator: Operator,
    pub expected: Value,
}

/// How an assertion compares the value at its path with `expected`.
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
            compile_regex(pattern)?;
        }
        Ok(Assertion { path, operator, expected })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_compare_as_javascript_does() {
        assert!(json_eq(&json!({"a": [3, 1.5]}), &json!({"a": [3.0, 1.5]})));
        assert!(!json_eq(&json!({"a": 3}), &json!({"a": 3, "b": null})));
        assert!(!json_eq(&json!("3"), &json!(3)));
    }

    #[test]
    fn assertions_parse_or_say_why_not() {
        let parsed = Assertion::parse(&json!({"path": "results.length", "expected": 3})).unwrap();
        assert_eq!(parsed.operator, Operator::Equals);
        assert_eq!(
            Assertion::parse(&json!({"path": "x", "operator": "exists"})).unwrap().expected,
            json!(true)
        );
        let unknown = Assertion::parse(&json!({"path": "x", "operator": "resembles"})).unwrap_err();
        assert!(unknown.contains("not an assertion operator") && unknown.contains("not_equals"), "{unknown}");
        let lookaround = Assertion::parse(&json!({"path": "x", "operator": "matches", "expected": "(?=x)"}));
        assert!(lookaround.unwrap_err().contains("no lookaround"));
        assert!(Assertion::parse(&json!({"operator": "equals"})).unwrap_err().contains("`path`"));
        assert!(Assertion::parse(&json!("results.length")).is_err());
    }
}
