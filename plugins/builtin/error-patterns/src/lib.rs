//! Error patterns: what a failed run most likely means, with a confidence and what to do.
//!
//! A pattern matches when every condition it sets holds: the error `kinds` (Ratchet's
//! `error.kind`), the error `names` (the JavaScript error's name), and at least one of
//! `any_text` found, case-insensitive, in the message or the run's logs. The built-in set
//! covers the failures tasks meet most (network, HTTP, databases, JavaScript, validation,
//! resources, authentication) and every error kind of Ratchet's own; operators add theirs in
//! the same shape, and may turn the built-ins off.
//!
//! This crate is linked into the kernel as the `builtin:error-patterns` plugin (on by default:
//! `error_patterns` in the configuration) and built into the `error-patterns` WASM plugin, so
//! both classify alike.

use plugin_api::native::NativeErrorPattern;
use plugin_api::{Classification, Failure, Manifest};
use serde::Deserialize;

mod builtin;

/// One pattern.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pattern {
    pub id: String,
    #[serde(default = "custom")]
    pub category: String,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub any_text: Vec<String>,
    #[serde(default)]
    pub suggestions: Vec<String>,
    #[serde(default = "default_confidence")]
    pub confidence: f32,
}

fn custom() -> String {
    "custom".into()
}

fn default_confidence() -> f32 {
    0.9
}

/// The configuration: `{"builtin": true, "patterns": [...], "match_threshold": 0.0}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default = "yes")]
    builtin: bool,
    #[serde(default)]
    patterns: Vec<Pattern>,
    #[serde(default)]
    match_threshold: f32,
}

fn yes() -> bool {
    true
}

/// A set of patterns, ready to classify.
#[derive(Debug, Clone)]
pub struct Patterns {
    /// The operator's first, then the built-in ones.
    patterns: Vec<Pattern>,
    /// Matches below this confidence are not reported.
    threshold: f32,
    /// `any_text` of each pattern, lowercased once.
    lowered: Vec<Vec<String>>,
}

impl Patterns {
    /// The built-in patterns alone.
    pub fn builtin() -> Patterns {
        Patterns::new(builtin::patterns(), 0.0)
    }

    /// From the plugin's configuration (JSON text; empty means the defaults). A pattern that
    /// sets no condition, or a confidence outside 0 to 1, is an error naming it.
    pub fn from_config(config: &str) -> Result<Patterns, String> {
        let settings: Settings = if matches!(config.trim(), "" | "null") {
            Settings { builtin: true, patterns: Vec::new(), match_threshold: 0.0 }
        } else {
            serde_json::from_str(config).map_err(|error| {
                format!(
                    "error patterns: {error}; the configuration is {{builtin, patterns, match_threshold}}"
                )
            })?
        };
        for pattern in &settings.patterns {
            if pattern.kinds.is_empty() && pattern.names.is_empty() && pattern.any_text.is_empty() {
                return Err(format!(
                    "error pattern `{}` sets no condition: give it kinds, names or any_text",
                    pattern.id
                ));
            }
            if !(0.0..=1.0).contains(&pattern.confidence) {
                return Err(format!("error pattern `{}`: confidence must be between 0 and 1", pattern.id));
            }
        }
        if !(0.0..=1.0).contains(&settings.match_threshold) {
            return Err("error patterns: match_threshold must be between 0 and 1".into());
        }
        let mut patterns = settings.patterns;
        if settings.builtin {
            patterns.extend(builtin::patterns());
        }
        Ok(Patterns::new(patterns, settings.match_threshold))
    }

    fn new(patterns: Vec<Pattern>, threshold: f32) -> Patterns {
        let lowered =
            patterns.iter().map(|p| p.any_text.iter().map(|t| t.to_lowercase()).collect()).collect();
        Patterns { patterns, threshold, lowered }
    }

    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Every pattern `failure` matches at or above the threshold, most confident first, one
    /// answer per pattern id (an operator's pattern replaces a built-in one of the same id).
    pub fn classify(&self, failure: &Failure) -> Vec<Classification> {
        let mut text = failure.message.to_lowercase();
        for line in &failure.logs {
            text.push('\n');
            text.push_str(&line.to_lowercase());
        }
        let mut seen = Vec::new();
        let mut found: Vec<Classification> = Vec::new();
        for (pattern, lowered) in self.patterns.iter().zip(&self.lowered) {
            if pattern.confidence < self.threshold || seen.contains(&pattern.id.as_str()) {
                continue;
            }
            if matches(pattern, lowered, failure, &text) {
                seen.push(pattern.id.as_str());
                found.push(Classification {
                    pattern: pattern.id.clone(),
                    category: pattern.category.clone(),
                    confidence: pattern.confidence,
                    suggestions: pattern.suggestions.clone(),
                });
            }
        }
        found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
        found
    }
}

fn matches(pattern: &Pattern, lowered: &[String], failure: &Failure, text: &str) -> bool {
    let kind_ok = pattern.kinds.is_empty() || pattern.kinds.contains(&failure.kind);
    let name_ok =
        pattern.names.is_empty() || failure.name.as_ref().is_some_and(|n| pattern.names.contains(n));
    let text_ok = lowered.is_empty() || lowered.iter().any(|t| text.contains(t.as_str()));
    let conditions = !(pattern.kinds.is_empty() && pattern.names.is_empty() && lowered.is_empty());
    conditions && kind_ok && name_ok && text_ok
}

/// `builtin:error-patterns`: the patterns as a native plugin.
pub struct BuiltinPatterns {
    patterns: Patterns,
}

impl BuiltinPatterns {
    /// From the plugin's configuration (JSON text).
    pub fn new(config: &str) -> Result<BuiltinPatterns, String> {
        Ok(BuiltinPatterns { patterns: Patterns::from_config(config)? })
    }
}

/// What the plugin calls itself.
pub fn manifest() -> Manifest {
    Manifest::new("error-patterns", env!("CARGO_PKG_VERSION"), "classifies failed runs and suggests fixes")
}

impl NativeErrorPattern for BuiltinPatterns {
    fn manifest(&self) -> Manifest {
        manifest()
    }

    fn classify(&mut self, failure: &Failure) -> Vec<Classification> {
        self.patterns.classify(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(kind: &str, name: Option<&str>, message: &str, logs: &[&str]) -> Failure {
        Failure {
            kind: kind.into(),
            name: name.map(Into::into),
            message: message.into(),
            task: "t".into(),
            logs: logs.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    fn ids(found: &[Classification]) -> Vec<&str> {
        found.iter().map(|c| c.pattern.as_str()).collect()
    }

    #[test]
    fn each_of_ratchets_error_kinds_has_a_pattern() {
        let patterns = Patterns::builtin();
        for (kind, name, expected) in [
            ("timeout", "TimeoutError", "task-timeout"),
            ("memory_limit", "MemoryLimitError", "memory-limit"),
            ("invalid_input", "ValidationError", "schema-violation"),
            ("invalid_output", "ValidationError", "schema-violation"),
            ("worker_crashed", "WorkerCrashedError", "worker-crashed"),
            ("protocol_error", "ProtocolError", "worker-crashed"),
            ("worker_unavailable", "WorkerUnavailableError", "no-worker"),
            ("cancelled", "CancelledError", "cancelled"),
        ] {
            let found = patterns.classify(&failure(kind, Some(name), "", &[]));
            assert!(ids(&found).contains(&expected), "{kind}: {found:?}");
        }
    }

    #[test]
    fn text_in_the_message_or_the_logs_matches_case_insensitively() {
        let patterns = Patterns::builtin();
        let found =
            patterns.classify(&failure("task_error", Some("Error"), "boom", &["ECONNREFUSED 10.0.0.5:5432"]));
        assert!(ids(&found).contains(&"connection-refused"), "{found:?}");
        let found =
            patterns.classify(&failure("task_error", Some("Error"), "HTTP 401 from api.example.com", &[]));
        assert_eq!(found[0].category, "authentication", "{found:?}");
        let denied = "fetch to 10.0.0.1 denied by the egress policy";
        let found = patterns.classify(&failure("task_error", Some("NetworkError"), denied, &[]));
        assert_eq!(ids(&found)[0], "egress-denied", "the most confident first: {found:?}");
    }

    #[test]
    fn operators_add_patterns_replace_built_ins_and_set_a_threshold() {
        let config = r#"{"patterns": [
            {"id": "billing-down", "category": "dependency", "any_text": ["billing"], "suggestions": ["page billing"], "confidence": 0.99},
            {"id": "task-timeout", "kinds": ["timeout"], "suggestions": ["ours"], "confidence": 0.5}
        ], "match_threshold": 0.3}"#;
        let patterns = Patterns::from_config(config).unwrap();
        let found = patterns.classify(&failure("task_error", Some("Error"), "billing API down", &[]));
        assert_eq!(found[0].pattern, "billing-down");
        let found = patterns.classify(&failure("timeout", Some("TimeoutError"), "", &[]));
        let timeout = found.iter().find(|c| c.pattern == "task-timeout").unwrap();
        assert_eq!(timeout.suggestions, ["ours"], "the operator's pattern of that id wins");

        let strict = Patterns::from_config(r#"{"match_threshold": 0.96}"#).unwrap();
        assert!(strict.classify(&failure("timeout", None, "", &[])).is_empty());
        let none = Patterns::from_config(r#"{"builtin": false}"#).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn bad_configuration_is_refused_naming_the_pattern() {
        let error = Patterns::from_config(r#"{"patterns": [{"id": "vague"}]}"#).unwrap_err();
        assert!(error.contains("`vague`") && error.contains("no condition"), "{error}");
        let error =
            Patterns::from_config(r#"{"patterns": [{"id": "x", "kinds": ["timeout"], "colour": 1}]}"#)
                .unwrap_err();
        assert!(error.contains("colour"), "{error}");
        assert!(Patterns::from_config(r#"{"match_threshold": 2}"#).is_err());
    }
}
