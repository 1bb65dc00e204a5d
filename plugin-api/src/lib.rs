//! The public Rust API for Ratchet plugin authors.
//!
//! This crate is the one versioned boundary between the kernel and its plugins (DESIGN.md §7).
//! It depends on nothing in the kernel. With the `guest` feature it is the SDK for WASM plugins
//! ([`guest`]); without it, the identifiers the kernel and native plugins agree on.

#[cfg(feature = "guest")]
pub mod guest;

/// Version of the native plugin ABI. A native plugin reporting another value is refused.
pub const NATIVE_ABI_VERSION: u32 = 1;

/// The WIT package this crate's guest SDK is written against.
pub const WIT_PACKAGE: &str = "ratchet:plugin@0.1.0";

/// The kinds of plugin the kernel hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginKind {
    /// Loads tasks from a source (folder, ZIP, registry).
    Loader,
    /// Receives logs and kernel events.
    Sink,
    /// Classifies a failed run and suggests fixes.
    ErrorPattern,
    /// Turns a request's credentials into a principal, or denies it.
    Auth,
    /// Mounts HTTP routes.
    ApiSurface,
}

impl PluginKind {
    /// The name used in configuration files and WIT world names.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Loader => "loader",
            PluginKind::Sink => "sink",
            PluginKind::ErrorPattern => "error-pattern",
            PluginKind::Auth => "auth",
            PluginKind::ApiSurface => "api-surface",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PluginKind;

    #[test]
    fn kind_names_match_the_wit_worlds() {
        let names: Vec<_> = [
            PluginKind::Loader,
            PluginKind::Sink,
            PluginKind::ErrorPattern,
            PluginKind::Auth,
            PluginKind::ApiSurface,
        ]
        .iter()
        .map(|k| k.as_str())
        .collect();
        assert_eq!(names, ["loader", "sink", "error-pattern", "auth", "api-surface"]);
    }
}
