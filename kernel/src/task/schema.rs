//! JSON Schema checks of a task's input and output.

use std::fmt;

use serde_json::Value;

/// How many violations one check reports at most.
const MAX_VIOLATIONS: usize = 20;

/// A compiled schema and the document it came from.
pub struct Schema {
    validator: jsonschema::Validator,
    pub document: Value,
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
        let validator = jsonschema::validator_for(&document).map_err(|e| e.to_string())?;
        Ok(Schema { validator, document })
    }

    /// Every violation (up to a cap), in the validator's order. Empty when the instance is valid.
    pub fn violations(&self, instance: &Value) -> Vec<SchemaViolation> {
        self.validator
            .iter_errors(instance)
            .take(MAX_VIOLATIONS)
            .map(|error| SchemaViolation {
                pointer: error.instance_path().to_string(),
                rule: error.kind().keyword().to_owned(),
                value: error.instance().clone().into_owned(),
                message: error.to_string(),
            })
            .collect()
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
    fn bad_schema_is_refused() {
        assert!(Schema::compile(json!({"type": "nonsense"})).is_err());
        assert!(Schema::compile(json!([1])).is_err());
    }
}
