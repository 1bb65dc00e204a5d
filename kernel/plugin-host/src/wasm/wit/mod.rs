//! The WIT versions the host speaks, the way Zed's extension host keeps them: host code uses
//! only [`latest`]; each frozen version of `wit/ratchet-plugin/` has a module of its own with its
//! bindings (`v0_1_0`). When a new version is frozen, it becomes a new module and `latest`
//! points to it; the previous module stays, with conversions of its types into the new ones,
//! so components built against it keep loading. A new WIT version is one new module here.

pub mod v0_1_0;

/// The newest WIT version: what the host speaks.
pub mod latest {
    pub use super::v0_1_0::*;
}

#[cfg(test)]
mod tests {
    /// The host speaks the version the guest SDK writes plugins against.
    #[test]
    fn the_host_speaks_the_sdks_version() {
        assert_eq!(super::latest::INTERFACE, plugin_api::WIT_PACKAGE);
        assert_eq!(
            super::latest::export(plugin_api::PluginKind::ErrorPattern),
            "ratchet:plugin/error-pattern@0.1.0"
        );
    }
}
