//! JSON Schema checks of a task's input and output, bounded in time.
//!
//! A schema's `pattern` runs on a linear-time engine (the `regex` crate) whenever it can;
//! only a pattern that needs backtracking (lookaround, backreferences) runs on `fancy-regex`,
//! and then with three bounds: a backtracking limit per match, a longest string it is matched
//! against, and a wall-clock budget for the whole check, looked at before every match. A check
//! that runs out of budget fails with a violation of the `pattern` rule saying so.
//!
//! [`Schema::check`] runs a check on a blocking thread unless it is small: no backtracking
//! pattern, no `uniqueItems`, and the schema's size times the instance's at most
//! [`INLINE_WORK`]. A queued job is checked twice (its input, its output), and handing each
//! small check to a blocking thread and back cost more than the check itself (in a PostgreSQL
//! drain, the blocking pool's wake-ups were a tenth of the node's CPU and 10,000 context
//! switches a second).

use std::cell::Cell;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonschema::{Keyword, PatternOptions, ValidationError};
use serde_json::{Map, Value};

/// How many violations one check reports at most.
const MAX_VIOLATIONS: usize = 20;

/// Wall-clock time one check of one instance may take, for schemas whose patterns need
/// backtracking (checks on the linear engine are bounded by the input size).
pub const VALIDATION_BUDGET: Duration = Duration::from_secs(1);

/// Most work a check may do on the async executor's thread, as the schema's size (its JSON
/// values) times the instance's ([`weight`]): a few thousand keyword evaluations, tens
/// of microseconds. Anything bigger runs on a blocking thread.
pub const INLINE_WORK: usize = 4_096;

/// Backtracking steps one match of a backtracking pattern may take.
const BACKTRACK_LIMIT: usize = 10_000;

/// Longest string (in bytes) a backtracking pattern is matched against: each backtracking step
/// may scan the string once, so this and `BACKTRACK_LIMIT` bound one match (a lookahead
/// inside a repetition makes a match quadratic in the length of the string).
pub const MAX_BACKTRACKING_SUBJECT: usize = 4 * 1024;

thread_local! {
    /// When the check running on this thread must stop matching backtracking patterns.
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// A compiled schema and the document it came from.
pub struct Schema {
    validator: Arc<jsonschema::Validator>,
    pub document: Value,
    /// Patterns of this schema that need a backtracking engine.
    backtracking: Vec<String>,
    /// How much an instance may weigh ([`weight`]) to be checked inline; `None` when no check
    /// of this schema is ([`inline_budget`]).
    inline_budget: Option<usize>,
}

impl fmt::Debug for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schema").field("document", &self.document).finish_non_exhaustive()
    }
}

/// One way an instance breaks a schema.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaViolation {
    /// JSON pointer of the offending value (`""` is the whole document).
    pub pointer: String,
    /// The schema keyword that failed, e.g. `type`, `required`, `minimum`.
    pub rule: String,
    pub value: Value,
    pub message: String,
}

impl Schema {
    pub fn compile(document: Value) -> Result<Schema, String> {
        if !(document.is_object() || document.is_boolean()) {
            return Err("a JSON Schema must be an object or a boolean".into());
        }
        let backtracking = Arc::new(Mutex::new(Vec::new()));
        let found = Arc::clone(&backtracking);
        let options = move || {
            let found = Arc::clone(&found);
            jsonschema::options().with_keyword("pattern", move |_: &Map<String, Value>, value: &Value, _| {
                let pattern = BoundedPattern::compile(value)?;
                if let Engine::Backtracking(regex) = &pattern.engine
                    && let Ok(mut found) = found.lock()
                {
                    found.push(regex.as_str().to_owned());
                }
                Ok(Box::new(pattern) as Box<dyn for<'i> Keyword<'i>>)
            })
        };
        // `patternProperties` and the like use the linear engine too when every such pattern
        // allows it; otherwise a backtracking engine with a step limit per match.
        let validator = options()
            .with_pattern_options(PatternOptions::regex())
            .build(&document)
            .or_else(|_| {
                options()
                    .with_pattern_options(PatternOptions::fancy_regex().backtrack_limit(BACKTRACK_LIMIT))
                    .build(&document)
            })
            .map_err(|e| e.to_string())?;
        let mut backtracking = backtracking.lock().map(|found| found.clone()).unwrap_or_default();
        backtracking.sort();
        backtracking.dedup();
        let inline_budget = inline_budget(&document, &backtracking);
        Ok(Schema { validator: Arc::new(validator), document, backtracking, inline_budget })
    }

    /// The schema's `pattern`s that need a backtracking engine (lookaround, backreferences):
    /// `ratchet validate` warns about them.
    pub fn backtracking_patterns(&self) -> &[String] {
        &self.backtracking
    }

    /// Every violation (up to a cap), in the validator's order. Empty when the instance is
    /// valid. Blocks for up to [`VALIDATION_BUDGET`]: async code calls [`Schema::check`].
    pub fn violations(&self, instance: &Value) -> Vec<SchemaViolation> {
        violations_of(&self.validator, instance)
    }

    /// Whether [`Schema::check`] checks `instance` on the calling thread: no backtracking
    /// pattern, no `uniqueItems`, and at most `INLINE_WORK` of work.
    pub fn checks_inline(&self, instance: &Value) -> bool {
        self.inline_budget.is_some_and(|budget| weight(instance, budget + 1) <= budget)
    }

    /// [`Schema::violations`], on a blocking thread unless the check is small
    /// ([`Schema::checks_inline`]); hands the instance back.
    pub async fn check(&self, instance: Value) -> (Value, Vec<SchemaViolation>) {
        if self.checks_inline(&instance) {
            let violations = violations_of(&self.validator, &instance);
            return (instance, violations);
        }
        let validator = Arc::clone(&self.validator);
        let checked = tokio::task::spawn_blocking(move || {
            let violations = violations_of(&validator, &instance);
            (instance, violations)
        });
        match checked.await {
            Ok(checked) => checked,
            Err(error) => (
                Value::Null,
                vec![SchemaViolation {
                    pointer: String::new(),
                    rule: "schema".into(),
                    value: Value::Null,
                    message: format!("the schema check failed: {error}"),
                }],
            ),
        }
    }
}

/// The heaviest instance ([`weight`]) that a check of `document` may run inline on:
/// [`INLINE_WORK`] divided by the document's size. `None` when no check of it may: a pattern
/// needs backtracking (`backtracking`), the document uses `uniqueItems` (whose check compares
/// every pair of items), or it is bigger than [`INLINE_WORK`] itself.
fn inline_budget(document: &Value, backtracking: &[String]) -> Option<usize> {
    if !backtracking.is_empty() || uses_keyword(document, "uniqueItems") {
        return None;
    }
    let size = weight(document, INLINE_WORK);
    (size <= INLINE_WORK).then(|| INLINE_WORK / size)
}

/// Whether `keyword` is a key anywhere in the schema `document`.
fn uses_keyword(document: &Value, keyword: &str) -> bool {
    match document {
        Value::Object(fields) => {
            fields.contains_key(keyword) || fields.values().any(|value| uses_keyword(value, keyword))
        }
        Value::Array(items) => items.iter().any(|item| uses_keyword(item, keyword)),
        _ => false,
    }
}

/// How much `value` weighs for a check: its JSON values, plus one per 64 bytes of each string
/// and key (a pattern or a format reads the whole string); counted up to `cap`.
fn weight(value: &Value, cap: usize) -> usize {
    // Each value is counted when it is found, so a huge array stops the count before its
    // elements are visited.
    let mut total = 1;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) => total += text.len() / 64,
            Value::Array(items) => {
                total += items.len();
                if total <= cap {
                    pending.extend(items);
                }
            }
            Value::Object(fields) => {
                total += fields.len() + fields.keys().map(|key| key.len() / 64).sum::<usize>();
                if total <= cap {
                    pending.extend(fields.values());
                }
            }
            _ => {}
        }
        if total > cap {
            return total;
        }
    }
    total
}

fn violations_of(validator: &jsonschema::Validator, instance: &Value) -> Vec<SchemaViolation> {
    DEADLINE.with(|deadline| deadline.set(Some(Instant::now() + VALIDATION_BUDGET)));
    let violations = validator
        .iter_errors(instance)
        .take(MAX_VIOLATIONS)
        .map(|error| SchemaViolation {
            pointer: error.instance_path().to_string(),
            rule: error.kind().keyword().to_owned(),
            value: error.instance().clone().into_owned(),
            message: error.to_string(),
        })
        .collect();
    DEADLINE.with(|deadline| deadline.set(None));
    violations
}

/// `pattern`, on the linear engine when the pattern allows it.
struct BoundedPattern {
    source: String,
    engine: Engine,
}

enum Engine {
    Linear(regex::Regex),
    Backtracking(fancy_regex::Regex),
}

/// Why a string was not found to match.
enum Mismatch {
    NoMatch,
    OverBudget(String),
}

impl BoundedPattern {
    fn compile(value: &Value) -> Result<BoundedPattern, ValidationError<'static>> {
        let Some(source) = value.as_str() else {
            return Err(ValidationError::schema(format!("`pattern` must be a string, not {value}")));
        };
        let translated = jsonschema_regex::to_rust_regex(source)
            .map_err(|()| ValidationError::schema(format!("`{source}` is not a valid regular expression")))?;
        let engine = match regex::Regex::new(&translated) {
            Ok(regex) => Engine::Linear(regex),
            Err(_) => Engine::Backtracking(
                fancy_regex::RegexBuilder::new(&translated)
                    .backtrack_limit(BACKTRACK_LIMIT)
                    .build()
                    .map_err(|e| {
                        ValidationError::schema(format!("`{source}` is not a valid regular expression: {e}"))
                    })?,
            ),
        };
        Ok(BoundedPattern { source: source.to_owned(), engine })
    }

    fn test(&self, text: &str) -> Result<(), Mismatch> {
        let matched = match &self.engine {
            Engine::Linear(regex) => regex.is_match(text),
            Engine::Backtracking(regex) => {
                if text.len() > MAX_BACKTRACKING_SUBJECT {
                    return Err(Mismatch::OverBudget(format!(
                        "the string is {} bytes long; the pattern `{}` needs backtracking (lookaround or \
                         backreferences), which Ratchet matches against at most {MAX_BACKTRACKING_SUBJECT} \
                         bytes: shorten the value or use a pattern without lookaround",
                        text.len(),
                        self.source
                    )));
                }
                let late = DEADLINE.with(Cell::get).is_some_and(|deadline| Instant::now() > deadline);
                match (late, regex.is_match(text)) {
                    (false, Ok(matched)) => matched,
                    _ => {
                        return Err(Mismatch::OverBudget(format!(
                            "matching the pattern `{}` ran out of the validation budget ({} ms per check, \
                             {BACKTRACK_LIMIT} backtracking steps per match): the pattern needs \
                             backtracking (lookaround or backreferences); use a pattern without it",
                            self.source,
                            VALIDATION_BUDGET.as_millis()
                        )));
                    }
                }
            }
        };
        if matched { Ok(()) } else { Err(Mismatch::NoMatch) }
    }
}

impl<'i> Keyword<'i> for BoundedPattern {
    fn validate(&self, instance: &'i Value) -> Result<(), ValidationError<'i>> {
        let Some(text) = instance.as_str() else { return Ok(()) };
        match self.test(text) {
            Ok(()) => Ok(()),
            Err(Mismatch::NoMatch) => {
                Err(ValidationError::custom(format!("does not match the pattern `{}`", self.source)))
            }
            Err(Mismatch::OverBudget(message)) => Err(ValidationError::custom(message)),
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        instance.as_str().is_none_or(|text| self.test(text).is_ok())
    }
}

impl fmt::Display for SchemaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pointer = if self.pointer.is_empty() { "/" } else { &self.pointer };
        let mut value = self.value.to_string();
        if value.len() > 80 {
            let mut cut = 77;
            while !value.is_char_boundary(cut) {
                cut -= 1;
            }
            value.truncate(cut);
            value.push_str("...");
        }
        write!(f, "at `{pointer}`: {} (rule `{}`, value {value})", self.message, self.rule)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Schema;

    #[test]
    fn small_checks_run_inline_and_big_or_backtracking_ones_do_not() {
        let schema = Schema::compile(json!({
            "type": "object",
            "properties": {"num1": {"type": "number"}, "num2": {"type": "number"}},
            "required": ["num1", "num2"]
        }))
        .unwrap();
        assert!(schema.checks_inline(&json!({"num1": 1, "num2": 2})));
        assert!(!schema.checks_inline(&json!({"num1": vec![0; super::INLINE_WORK]})));
        assert!(!schema.checks_inline(&json!({"num1": "x".repeat(64 * super::INLINE_WORK)})));
        let backtracking = Schema::compile(json!({"type": "string", "pattern": "^(?=a)a$"})).unwrap();
        assert!(!backtracking.checks_inline(&json!("a")));
        let properties: serde_json::Map<String, serde_json::Value> =
            (0..super::INLINE_WORK).map(|i| (format!("p{i}"), json!({"type": "number"}))).collect();
        let huge = Schema::compile(json!({"type": "object", "properties": properties})).unwrap();
        assert!(!huge.checks_inline(&json!({})));
        let pairs =
            Schema::compile(json!({"type": "object", "properties": {"ids": {"uniqueItems": true}}})).unwrap();
        assert!(!pairs.checks_inline(&json!({"ids": [1, 2]})), "uniqueItems compares every pair");
    }

    #[tokio::test]
    async fn a_check_finds_the_same_violations_inline_and_on_a_blocking_thread() {
        let schema =
            Schema::compile(json!({"type": "array", "items": {"type": "number", "minimum": 0}})).unwrap();
        let small = json!([1, -2]);
        let big =
            json!((0..super::INLINE_WORK as i64).map(|i| if i == 7 { -1 } else { i }).collect::<Vec<_>>());
        assert!(schema.checks_inline(&small) && !schema.checks_inline(&big));
        let (back, inline) = schema.check(small.clone()).await;
        assert_eq!((back, inline.len(), inline[0].pointer.as_str()), (small, 1, "/1"));
        let (_, blocking) = schema.check(big).await;
        assert_eq!((blocking.len(), blocking[0].pointer.as_str()), (1, "/7"));
    }

    #[test]
    fn violation_names_pointer_rule_and_value() {
        let schema = Schema::compile(json!({
            "type": "object",
            "properties": {"items": {"type": "array", "items": {"type": "number", "minimum": 0}}},
            "required": ["items"]
        }))
        .unwrap();
        let violations = schema.violations(&json!({"items": [1, -2]}));
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].pointer, "/items/1");
        assert_eq!(violations[0].rule, "minimum");
        assert_eq!(violations[0].value, json!(-2));
        assert!(violations[0].to_string().starts_with("at `/items/1`:"), "{}", violations[0]);
        let missing = schema.violations(&json!({}));
        assert_eq!((missing[0].pointer.as_str(), missing[0].rule.as_str()), ("", "required"));
    }

    #[test]
    fn patterns_run_on_the_linear_engine_unless_they_need_backtracking() {
        let linear = Schema::compile(json!({"type": "string", "pattern": "^(a+)+$"})).unwrap();
        assert!(linear.backtracking_patterns().is_empty());
        let long = format!("{}b", "a".repeat(200_000));
        let violations = linear.violations(&json!(long));
        assert_eq!(violations[0].rule, "pattern");
        assert!(violations[0].message.contains("does not match the pattern"), "{:?}", violations[0]);

        let lookahead = Schema::compile(json!({"type": "string", "pattern": "^(?=a)(a|aa)+$"})).unwrap();
        assert_eq!(lookahead.backtracking_patterns(), ["^(?=a)(a|aa)+$"]);
        assert!(lookahead.violations(&json!("aaaa")).is_empty());
        let too_long = lookahead.violations(&json!(long));
        assert_eq!(too_long[0].rule, "pattern");
        assert!(too_long[0].message.contains("at most 4096 bytes"), "{:?}", too_long[0]);
    }

    #[test]
    fn bad_schema_is_refused() {
        assert!(Schema::compile(json!({"type": "nonsense"})).is_err());
        assert!(Schema::compile(json!([1])).is_err());
    }
}
