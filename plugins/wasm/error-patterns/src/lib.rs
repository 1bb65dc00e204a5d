//! The error patterns as a WASM plugin: the same patterns as the kernel's built-in
//! `builtin:error-patterns` (the `ratchet-error-patterns` crate), for deployments that turn
//! the built-in off and load this component instead, and as the example of an error-pattern
//! plugin. Its configuration is the built-in's: `{"builtin", "patterns", "match_threshold"}`.

use std::sync::OnceLock;

use plugin_api::guest::{Classification, ErrorPattern, Failure, Manifest};
use ratchet_error_patterns::Patterns;

struct Guest;

/// Built once per instance from the plugin's configuration; a configuration the patterns
/// refuse leaves the built-in set (the host checks configurations when it loads plugins).
fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        Patterns::from_config(&plugin_api::guest::config()).unwrap_or_else(|_| Patterns::builtin())
    })
}

impl ErrorPattern for Guest {
    fn manifest() -> Manifest {
        ratchet_error_patterns::manifest()
    }

    fn classify(failure: Failure) -> Vec<Classification> {
        patterns().classify(&failure)
    }
}

plugin_api::export_error_pattern!(Guest);
