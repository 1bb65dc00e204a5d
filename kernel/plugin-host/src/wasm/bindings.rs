//! The one place that runs `bindgen!` over the WIT package, so a wasmtime upgrade or a new
//! WIT version touches this file. Each frozen version gets its own module.

#![allow(missing_docs, clippy::all)]

/// `ratchet:plugin@0.1.0`.
pub mod v0_1_0 {
    pub mod sink {
        wasmtime::component::bindgen!({
            world: "sink-plugin",
            path: "../../wit/ratchet-plugin/0.1.0",
        });
    }

    pub mod error_pattern {
        wasmtime::component::bindgen!({
            world: "error-pattern-plugin",
            path: "../../wit/ratchet-plugin/0.1.0",
            with: {
                "ratchet:plugin/types": super::sink::ratchet::plugin::types,
                "ratchet:plugin/host": super::sink::ratchet::plugin::host,
            },
        });
    }

    pub mod loader {
        wasmtime::component::bindgen!({
            world: "loader-plugin",
            path: "../../wit/ratchet-plugin/0.1.0",
            with: {
                "ratchet:plugin/types": super::sink::ratchet::plugin::types,
                "ratchet:plugin/host": super::sink::ratchet::plugin::host,
            },
        });
    }

    pub mod api_surface {
        wasmtime::component::bindgen!({
            world: "api-surface-plugin",
            path: "../../wit/ratchet-plugin/0.1.0",
            with: {
                "ratchet:plugin/types": super::sink::ratchet::plugin::types,
                "ratchet:plugin/host": super::sink::ratchet::plugin::host,
            },
        });
    }

    pub mod auth {
        wasmtime::component::bindgen!({
            world: "auth-plugin",
            path: "../../wit/ratchet-plugin/0.1.0",
            with: {
                "ratchet:plugin/types": super::sink::ratchet::plugin::types,
                "ratchet:plugin/host": super::sink::ratchet::plugin::host,
            },
        });
    }
}

pub use v0_1_0::api_surface::exports::ratchet::plugin::api_surface::{
    Request as SurfaceRequest, Response as SurfaceResponse,
};
pub use v0_1_0::api_surface::{ApiSurfacePlugin, ApiSurfacePluginPre};
pub use v0_1_0::auth::exports::ratchet::plugin::auth::Principal;
pub use v0_1_0::auth::{AuthPlugin, AuthPluginPre};
pub use v0_1_0::error_pattern::exports::ratchet::plugin::error_pattern::{Classification, Failure};
pub use v0_1_0::error_pattern::{ErrorPatternPlugin, ErrorPatternPluginPre};
pub use v0_1_0::loader::{LoaderPlugin, LoaderPluginPre};

/// The current version's types, for the host.
pub use v0_1_0::sink::ratchet::plugin::{host, types};
pub use v0_1_0::sink::{SinkPlugin, SinkPluginPre};

/// The interface names a 0.1.0 component exports, by plugin kind.
pub const EXPORTS_V0_1_0: [(&str, &str); 5] = [
    ("sink", "ratchet:plugin/sink@0.1.0"),
    ("loader", "ratchet:plugin/loader@0.1.0"),
    ("error-pattern", "ratchet:plugin/error-pattern@0.1.0"),
    ("auth", "ratchet:plugin/auth@0.1.0"),
    ("api-surface", "ratchet:plugin/api-surface@0.1.0"),
];

pub const INTERFACE_V0_1_0: &str = "ratchet:plugin@0.1.0";
