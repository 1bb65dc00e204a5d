//! The bindings of `ratchet:plugin@0.1.0` (`wit/ratchet-plugin/0.1.0`, frozen): the one place
//! that runs `bindgen!` over it.

#![allow(missing_docs, clippy::all)]

use plugin_api::PluginKind;

/// This version, as its WIT package names it.
pub const VERSION: &str = "0.1.0";
/// The package with its version, as components and messages name it.
pub const INTERFACE: &str = "ratchet:plugin@0.1.0";

/// The interface a component of `kind` exports in this version.
pub fn export(kind: PluginKind) -> String {
    format!("ratchet:plugin/{kind}@{VERSION}")
}

mod generated {
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

pub use generated::api_surface::exports::ratchet::plugin::api_surface::{
    Request as SurfaceRequest, Response as SurfaceResponse,
};
pub use generated::api_surface::{ApiSurfacePlugin, ApiSurfacePluginPre};
pub use generated::auth::exports::ratchet::plugin::auth::Principal;
pub use generated::auth::{AuthPlugin, AuthPluginPre};
pub use generated::error_pattern::exports::ratchet::plugin::error_pattern::{Classification, Failure};
pub use generated::error_pattern::{ErrorPatternPlugin, ErrorPatternPluginPre};
pub use generated::loader::{LoaderPlugin, LoaderPluginPre};

/// The current version's types, for the host.
pub use generated::sink::ratchet::plugin::{host, types};
pub use generated::sink::{SinkPlugin, SinkPluginPre};
