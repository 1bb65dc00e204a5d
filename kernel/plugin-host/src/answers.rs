//! What the host accepts back from a plugin, WASM or native, and the limits it runs plugins
//! under, each named once. A plugin's answer is cut to these sizes before the kernel uses it,
//! so a hostile or buggy plugin cannot grow a log line, an error or a response without bound.

use crate::wasm::host::truncate;
use crate::wasm::{Classification, Principal};

/// Classifications one failed run may get, and suggestions per classification.
pub const MAX_CLASSIFICATIONS: usize = 16;
pub const MAX_SUGGESTIONS: usize = 16;
/// Bytes of a pattern's name, a category and one suggestion.
pub const MAX_PATTERN_NAME_BYTES: usize = 128;
pub const MAX_CATEGORY_BYTES: usize = 64;
pub const MAX_SUGGESTION_BYTES: usize = 1024;
/// Bytes of a principal's id, roles per principal, and bytes of one role.
pub const MAX_PRINCIPAL_ID_BYTES: usize = 256;
pub const MAX_ROLES: usize = 16;
pub const MAX_ROLE_BYTES: usize = 64;
/// Bytes of a reason a plugin gives for refusing or failing.
pub const MAX_REASON_BYTES: usize = 1024;
/// Headers an API surface may answer with, and the largest body.
pub const MAX_RESPONSE_HEADERS: usize = 64;
pub const MAX_SURFACE_BODY: usize = 16 * 1024 * 1024;

/// WASM store limits: component instances, tables and linear memories per store (a plugin's
/// memory in bytes is its own `limits.memory`). Rust guests use one of each; the rest is room.
pub const MAX_INSTANCES: usize = 16;
pub const MAX_TABLES: usize = 64;
pub const MAX_MEMORIES: usize = 16;

/// Classifications as the kernel keeps them: at most [`MAX_CLASSIFICATIONS`], confidence
/// clamped to 0..=1, text cut to size.
pub fn classifications(found: impl IntoIterator<Item = Classification>) -> Vec<Classification> {
    found
        .into_iter()
        .take(MAX_CLASSIFICATIONS)
        .map(|c| Classification {
            pattern: truncate(c.pattern, MAX_PATTERN_NAME_BYTES),
            category: truncate(c.category, MAX_CATEGORY_BYTES),
            confidence: if c.confidence.is_finite() { c.confidence.clamp(0.0, 1.0) } else { 0.0 },
            suggestions: c
                .suggestions
                .into_iter()
                .take(MAX_SUGGESTIONS)
                .map(|s| truncate(s, MAX_SUGGESTION_BYTES))
                .collect(),
        })
        .collect()
}

/// A principal as the kernel keeps it: its id and roles cut to size.
pub fn principal(id: String, roles: Vec<String>) -> Principal {
    Principal {
        id: truncate(id, MAX_PRINCIPAL_ID_BYTES),
        roles: roles.into_iter().take(MAX_ROLES).map(|r| truncate(r, MAX_ROLE_BYTES)).collect(),
    }
}

/// A plugin's reason for refusing or failing, cut to size.
pub fn reason(text: String) -> String {
    truncate(text, MAX_REASON_BYTES)
}
