//! The guest SDK: write a WASM plugin in plain Rust. Implement a kind's trait, export it with
//! that kind's macro, build for `wasm32-wasip2`. The WIT package (`ratchet:plugin@0.1.0`)
//! stays hidden inside this module.
//!
//! ```text
//! use plugin_api::guest::{Event, Manifest, PluginError, Sink};
//!
//! struct Counter;
//!
//! impl Sink for Counter {
//!     fn manifest() -> Manifest {
//!         Manifest::new("counter", "0.1.0", "counts events")
//!     }
//!     fn write(events: Vec<Event>) -> Result<(), PluginError> {
//!         plugin_api::guest::log::info(&format!("{} event(s)", events.len()));
//!         Ok(())
//!     }
//! }
//!
//! plugin_api::export_sink!(Counter);
//! ```

#[doc(hidden)]
pub mod sink_world {
    wit_bindgen::generate!({
        world: "sink-plugin",
        path: "../wit/ratchet-plugin/0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_sink_world",
        default_bindings_module: "plugin_api::guest::sink_world",
    });
}

#[doc(hidden)]
pub mod error_pattern_world {
    wit_bindgen::generate!({
        world: "error-pattern-plugin",
        path: "../wit/ratchet-plugin/0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_error_pattern_world",
        default_bindings_module: "plugin_api::guest::error_pattern_world",
        with: {
            "ratchet:plugin/types@0.1.0": crate::guest::sink_world::ratchet::plugin::types,
            "ratchet:plugin/host@0.1.0": crate::guest::sink_world::ratchet::plugin::host,
        },
    });
}

#[doc(hidden)]
pub mod auth_world {
    wit_bindgen::generate!({
        world: "auth-plugin",
        path: "../wit/ratchet-plugin/0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_auth_world",
        default_bindings_module: "plugin_api::guest::auth_world",
        with: {
            "ratchet:plugin/types@0.1.0": crate::guest::sink_world::ratchet::plugin::types,
            "ratchet:plugin/host@0.1.0": crate::guest::sink_world::ratchet::plugin::host,
        },
    });
}

pub mod loader_world {
    wit_bindgen::generate!({
        world: "loader-plugin",
        path: "../wit/ratchet-plugin/0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_loader_world",
        default_bindings_module: "plugin_api::guest::loader_world",
        with: {
            "ratchet:plugin/types@0.1.0": crate::guest::sink_world::ratchet::plugin::types,
            "ratchet:plugin/host@0.1.0": crate::guest::sink_world::ratchet::plugin::host,
        },
    });
}

pub mod api_surface_world {
    wit_bindgen::generate!({
        world: "api-surface-plugin",
        path: "../wit/ratchet-plugin/0.1.0",
        pub_export_macro: true,
        export_macro_name: "export_api_surface_world",
        default_bindings_module: "plugin_api::guest::api_surface_world",
        with: {
            "ratchet:plugin/types@0.1.0": crate::guest::sink_world::ratchet::plugin::types,
            "ratchet:plugin/host@0.1.0": crate::guest::sink_world::ratchet::plugin::host,
        },
    });
}

use sink_world::ratchet::plugin::{host, types};

pub use crate::{
    Capability, Classification, Event, Failure, Manifest, PluginError, Principal, Request, Response,
    TaskFiles,
};

/// A sink receives the kernel's events in batches, in order.
///
/// The host calls `write` with an empty batch once when it loads the plugin: check the
/// configuration ([`config`]) there and return [`PluginError::InvalidInput`] naming the
/// setting, so the operator sees the mistake when `ratchet serve` or `ratchet config check`
/// starts rather than as a warning on every batch.
pub trait Sink {
    fn manifest() -> Manifest;
    fn write(events: Vec<Event>) -> Result<(), PluginError>;
}

/// Classifies failed runs and suggests fixes.
pub trait ErrorPattern {
    fn manifest() -> Manifest;
    fn classify(failure: Failure) -> Vec<Classification>;
}

/// Turns a request's headers into a principal, or refuses (`PluginError::Denied`). The kernel
/// fails closed: an error or a trap is a refusal.
pub trait Auth {
    fn manifest() -> Manifest;
    fn authenticate(headers: Vec<(String, String)>) -> Result<Principal, PluginError>;
}

/// A source of tasks. The kernel loads what it lists with the same checks as a folder on disk.
pub trait Loader {
    fn manifest() -> Manifest;
    fn list_tasks() -> Result<Vec<TaskFiles>, PluginError>;
}

/// Serves HTTP routes mounted under `/plugins/{name}/`. The kernel has already checked the
/// caller's credentials and role before a request arrives.
pub trait ApiSurface {
    fn manifest() -> Manifest;
    fn handle(request: Request) -> Response;
}

/// The kernel's log, tagged with the plugin's name.
pub mod log {
    use super::host::{Level, log};

    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's `config` block from the operator's configuration, as JSON text.
pub fn config() -> String {
    host::config()
}

/// The plugin's private key-value store (needs the `kv` capability).
pub fn kv_get(key: &str) -> Result<Option<Vec<u8>>, PluginError> {
    host::kv_get(key).map_err(from_wit)
}

pub fn kv_set(key: &str, value: &[u8]) -> Result<(), PluginError> {
    host::kv_set(key, value).map_err(from_wit)
}

/// An HTTP response, from [`http`].
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// An HTTP request through the kernel's egress policy (needs the `http` capability and the
/// host granted to this plugin).
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, PluginError> {
    let request = types::HttpRequest {
        method: method.into(),
        url: url.into(),
        headers: headers.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        body: body.to_vec(),
    };
    host::http(&request)
        .map(|r| HttpResponse { status: r.status, headers: r.headers, body: r.body })
        .map_err(from_wit)
}

fn from_wit(error: types::PluginError) -> PluginError {
    match error {
        types::PluginError::Denied(m) => PluginError::Denied(m),
        types::PluginError::InvalidInput(m) => PluginError::InvalidInput(m),
        types::PluginError::Failed(m) => PluginError::Failed(m),
    }
}

#[doc(hidden)]
pub fn to_wit(error: PluginError) -> types::PluginError {
    match error {
        PluginError::Denied(m) => types::PluginError::Denied(m),
        PluginError::InvalidInput(m) => types::PluginError::InvalidInput(m),
        PluginError::Failed(m) => types::PluginError::Failed(m),
    }
}

#[doc(hidden)]
pub fn manifest_to_wit(manifest: Manifest) -> types::Manifest {
    types::Manifest {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        capabilities: manifest.capabilities.iter().map(|c| c.as_str().to_owned()).collect(),
    }
}

#[doc(hidden)]
pub fn event_from_wit(event: types::Event) -> Event {
    Event {
        kind: event.kind,
        at_ms: event.at_ms,
        task: event.task,
        execution_id: event.execution_id,
        data: event.data,
    }
}

/// Exports a [`Sink`] implementation as this component's sink.
#[macro_export]
macro_rules! export_sink {
    ($ty:ty) => {
        const _: () = {
            struct __RatchetSink;
            impl $crate::guest::sink_world::exports::ratchet::plugin::sink::Guest for __RatchetSink {
                fn describe() -> $crate::guest::sink_world::ratchet::plugin::types::Manifest {
                    $crate::guest::manifest_to_wit(<$ty as $crate::guest::Sink>::manifest())
                }

                fn write(
                    events: ::std::vec::Vec<$crate::guest::sink_world::ratchet::plugin::types::Event>,
                ) -> ::core::result::Result<(), $crate::guest::sink_world::ratchet::plugin::types::PluginError> {
                    let events = events.into_iter().map($crate::guest::event_from_wit).collect();
                    <$ty as $crate::guest::Sink>::write(events).map_err($crate::guest::to_wit)
                }
            }
            $crate::guest::sink_world::export_sink_world!(__RatchetSink);
        };
    };
}

/// Exports an [`ErrorPattern`] implementation as this component's error-pattern interface.
#[macro_export]
macro_rules! export_error_pattern {
    ($ty:ty) => {
        const _: () = {
            use $crate::guest::error_pattern_world::exports::ratchet::plugin::error_pattern as wit;
            struct __RatchetErrorPattern;
            impl wit::Guest for __RatchetErrorPattern {
                fn describe() -> $crate::guest::sink_world::ratchet::plugin::types::Manifest {
                    $crate::guest::manifest_to_wit(<$ty as $crate::guest::ErrorPattern>::manifest())
                }

                fn classify(failure: wit::Failure) -> ::std::vec::Vec<wit::Classification> {
                    let failure = $crate::guest::Failure {
                        kind: failure.kind,
                        name: failure.name,
                        message: failure.message,
                        task: failure.task,
                        logs: failure.logs,
                    };
                    <$ty as $crate::guest::ErrorPattern>::classify(failure)
                        .into_iter()
                        .map(|c| wit::Classification {
                            pattern: c.pattern,
                            category: c.category,
                            confidence: c.confidence,
                            suggestions: c.suggestions,
                        })
                        .collect()
                }
            }
            $crate::guest::error_pattern_world::export_error_pattern_world!(__RatchetErrorPattern);
        };
    };
}

/// Exports an [`Auth`] implementation as this component's auth interface.
#[macro_export]
macro_rules! export_auth {
    ($ty:ty) => {
        const _: () = {
            use $crate::guest::auth_world::exports::ratchet::plugin::auth as wit;
            struct __RatchetAuth;
            impl wit::Guest for __RatchetAuth {
                fn describe() -> $crate::guest::sink_world::ratchet::plugin::types::Manifest {
                    $crate::guest::manifest_to_wit(<$ty as $crate::guest::Auth>::manifest())
                }

                fn authenticate(
                    headers: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<
                    wit::Principal,
                    $crate::guest::sink_world::ratchet::plugin::types::PluginError,
                > {
                    <$ty as $crate::guest::Auth>::authenticate(headers)
                        .map(|p| wit::Principal { id: p.id, roles: p.roles })
                        .map_err($crate::guest::to_wit)
                }
            }
            $crate::guest::auth_world::export_auth_world!(__RatchetAuth);
        };
    };
}

/// Exports an [`ApiSurface`] implementation as this component's api-surface interface.
#[macro_export]
macro_rules! export_api_surface {
    ($ty:ty) => {
        const _: () = {
            use $crate::guest::api_surface_world::exports::ratchet::plugin::api_surface as wit;
            struct __RatchetApiSurface;
            impl wit::Guest for __RatchetApiSurface {
                fn describe() -> $crate::guest::sink_world::ratchet::plugin::types::Manifest {
                    $crate::guest::manifest_to_wit(<$ty as $crate::guest::ApiSurface>::manifest())
                }

                fn handle(request: wit::Request) -> wit::Response {
                    let request = $crate::guest::Request {
                        method: request.method,
                        path: request.path,
                        query: request.query,
                        headers: request.headers,
                        body: request.body,
                    };
                    let response = <$ty as $crate::guest::ApiSurface>::handle(request);
                    wit::Response { status: response.status, headers: response.headers, body: response.body }
                }
            }
            $crate::guest::api_surface_world::export_api_surface_world!(__RatchetApiSurface);
        };
    };
}

/// Exports a [`Loader`] implementation as this component's loader interface.
#[macro_export]
macro_rules! export_loader {
    ($ty:ty) => {
        const _: () = {
            use $crate::guest::loader_world::exports::ratchet::plugin::loader as wit;
            struct __RatchetLoader;
            impl wit::Guest for __RatchetLoader {
                fn describe() -> $crate::guest::sink_world::ratchet::plugin::types::Manifest {
                    $crate::guest::manifest_to_wit(<$ty as $crate::guest::Loader>::manifest())
                }

                fn list_tasks() -> ::core::result::Result<
                    ::std::vec::Vec<wit::TaskFiles>,
                    $crate::guest::sink_world::ratchet::plugin::types::PluginError,
                > {
                    <$ty as $crate::guest::Loader>::list_tasks()
                        .map(|tasks| {
                            tasks
                                .into_iter()
                                .map(|task| wit::TaskFiles {
                                    name: task.name,
                                    files: task
                                        .files
                                        .into_iter()
                                        .map(|(path, contents)| wit::File { path, contents })
                                        .collect(),
                                })
                                .collect()
                        })
                        .map_err($crate::guest::to_wit)
                }
            }
            $crate::guest::loader_world::export_loader_world!(__RatchetLoader);
        };
    };
}
