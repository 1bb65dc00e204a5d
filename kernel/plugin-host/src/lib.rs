//! Plugins: what the operator enables in `plugins:` of the configuration, loaded at start-up
//! and fed by the kernel.
//!
//! WASM plugins are components built against `ratchet:plugin@0.1.0` (see `wit/`), run by
//! [`wasm::WasmHost`] with per-plugin memory and time limits and no capability unless granted.
//! First-party native plugins (`builtin:NAME`) implement the same traits in Rust; other native
//! plugins are shared libraries (`.so`) checked for ABI and `plugin-api` fingerprint first.
//!
//! Every kind is checked as it loads: its manifest, the grants it asks for, and for sinks the
//! configuration (an empty batch), so a mistake stops start-up rather than a later call.

pub mod answers;
pub mod auth;
pub mod conformance;
mod console;
pub mod loaders;
mod native;
pub mod patterns;
mod sinks;
pub mod surfaces;
mod thread;
pub mod wasm;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

pub use patterns::{ErrorPatterns, FailedRun, Suggestion};
pub use sinks::{Sink, SinkSet};

pub use plugin_api::{Capability, PluginKind};
use ratchet_core::config::PluginConfig;

/// Something that happened in the kernel, for sinks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `execution.started`, `execution.succeeded`, `execution.failed`, `worker.crashed`,
    /// `task.loaded`.
    pub kind: String,
    pub at_ms: i64,
    pub task: Option<String>,
    pub execution_id: Option<String>,
    pub data: Value,
}

impl Event {
    pub fn new(kind: &str, task: Option<&str>, execution_id: Option<&str>, data: Value) -> Event {
        Event {
            kind: kind.to_owned(),
            at_ms: ratchet_core::time::now_ms(),
            task: task.map(str::to_owned),
            execution_id: execution_id.map(str::to_owned),
            data,
        }
    }

    /// The event with the trace it belongs to, as `data.trace_id` (so every sink, whatever
    /// version of the plugin interface it speaks, sees it).
    pub fn traced(mut self, trace_id: &str) -> Event {
        if let Value::Object(data) = &mut self.data {
            data.insert("trace_id".into(), Value::from(trace_id));
        }
        self
    }
}

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin returned an error.
    #[error("plugin {plugin}: {message}")]
    Returned { plugin: String, message: String },
    /// The plugin trapped (deadline, memory, stack, panic, bad value): the instance was
    /// discarded and will be re-created for the next call.
    #[error("plugin {plugin} trapped: {message}")]
    Trapped { plugin: String, message: String },
    /// The plugin kept trapping and is resting; calls fail fast until the time given.
    #[error("plugin {plugin} is quarantined for {remaining_ms} ms after {traps} traps in a row")]
    Quarantined { plugin: String, traps: u32, remaining_ms: u64 },
}

/// Why a plugin could not be loaded. Every variant names the plugin and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("plugin {name}: cannot read {path}: {message}")]
    Read { name: String, path: String, message: String },
    #[error("plugin {name}: {path} is not a usable WebAssembly component: {message}")]
    Compile { name: String, path: String, message: String },
    #[error(
        "plugin {name} is configured as `{configured}` but {path} exports {found}; fix `kind` in the config or pick the right file"
    )]
    WrongKind { name: String, configured: String, found: String, path: String },
    #[error("plugin {name}: {message}")]
    Unsupported { name: String, message: String },
    #[error("plugin {name}: {message}")]
    Grant { name: String, message: String },
    #[error("plugin {name} failed to start: {message}")]
    Start { name: String, message: String },
    #[error(
        "plugin {name} rejects its configuration: {message}; fix `config` of the plugin in the configuration"
    )]
    Config { name: String, message: String },
}

/// What `ratchet plugins list` shows about a loaded plugin.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginInfo {
    /// The name the operator gave it.
    pub name: String,
    /// The name the plugin gives itself (its manifest).
    pub plugin: String,
    #[serde(serialize_with = "kind_name")]
    pub kind: PluginKind,
    pub source: String,
    /// `ratchet:plugin@0.1.0` for WASM, `native` for built-ins.
    pub interface: String,
    pub version: String,
    pub description: String,
    /// Capabilities the plugin asked for.
    #[serde(serialize_with = "capability_names")]
    pub requested: Vec<Capability>,
    /// What it got: asked for and granted.
    #[serde(serialize_with = "capability_names")]
    pub granted: Vec<Capability>,
}

fn capability_names<S: serde::Serializer>(
    capabilities: &[Capability],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(capabilities.iter().map(|c| c.as_str()))
}

fn kind_name<S: serde::Serializer>(kind: &PluginKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.as_str())
}

impl fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {}, {}) from {}", self.name, self.kind, self.version, self.interface, self.source)
    }
}

/// The plugins a node runs.
pub struct Plugins {
    pub sinks: SinkSet,
    pub patterns: ErrorPatterns,
    /// The auth plugin, when one is enabled.
    pub auth: Option<auth::Authenticator>,
    /// Loader plugins, by name; `list_tasks` asks them all.
    loaders: std::sync::Mutex<Vec<(String, Box<dyn loaders::TaskLoader>)>>,
    /// API-surface plugins, mounted under `/plugins/{name}/`.
    pub surfaces: Vec<surfaces::Surface>,
    /// Calls, and traps (WASM) or panics (native), per plugin.
    pub counters: Vec<(String, Arc<wasm::PluginCounters>)>,
    infos: Vec<PluginInfo>,
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Plugins {
        Plugins {
            sinks: SinkSet::default(),
            patterns: ErrorPatterns::default(),
            auth: None,
            loaders: std::sync::Mutex::new(Vec::new()),
            surfaces: Vec::new(),
            counters: Vec::new(),
            infos: Vec::new(),
        }
    }

    /// Loads every configured plugin; the first that cannot load stops start-up with an error
    /// naming it. Compiled components are cached under `cache_dir`.
    pub fn load(
        configs: &[PluginConfig],
        egress: &ratchet_core::config::EgressConfig,
        cache_dir: &Path,
    ) -> Result<Plugins, LoadError> {
        let mut plugins = Plugins::none();
        if configs.is_empty() {
            return Ok(plugins);
        }
        let host = wasm::WasmHost::new(cache_dir, egress)
            .map_err(|message| LoadError::Start { name: "(wasm host)".into(), message })?;
        // Plugins run on threads of their own, outside the async runtime (WASI's synchronous
        // bindings refuse to block a runtime thread): so does loading them.
        let loaded = std::thread::scope(|scope| {
            scope.spawn(|| load_each(&host, configs)).join().unwrap_or_else(|_| {
                Err(LoadError::Start {
                    name: "(wasm host)".into(),
                    message: "the loader thread panicked".into(),
                })
            })
        })?;
        let mut patterns = Vec::new();
        for (info, plugin) in loaded {
            tracing::info!("loaded plugin {info}");
            match plugin {
                Loaded::Sink(sink) => plugins.sinks.add(sink),
                Loaded::ErrorPattern(pattern) => patterns.push(pattern),
                Loaded::Auth(plugin) if plugins.auth.is_none() => {
                    plugins.auth = Some(auth::Authenticator::start(plugin));
                }
                Loaded::Loader(loader) => {
                    plugins
                        .loaders
                        .get_mut()
                        .map_err(|_| LoadError::Start {
                            name: info.name.clone(),
                            message: "the loader list is poisoned".into(),
                        })?
                        .push((info.name.clone(), loader));
                }
                Loaded::ApiSurface(plugin) => {
                    plugins.surfaces.push(surfaces::Surface::start(info.name.clone(), plugin));
                }
                Loaded::Auth(_) => {
                    return Err(LoadError::Unsupported {
                        name: info.name,
                        message: "only one auth plugin may be enabled".into(),
                    });
                }
            }
            plugins.infos.push(info);
        }
        plugins.patterns = ErrorPatterns::start(patterns);
        plugins.counters = host.counters();
        Ok(plugins)
    }

    pub fn list(&self) -> &[PluginInfo] {
        &self.infos
    }

    /// Asks every loader plugin for its tasks, in order; on a thread of its own (WASM calls
    /// must not run on the async runtime's threads).
    pub fn list_tasks(&self) -> Vec<(String, Result<Vec<loaders::TaskSource>, String>)> {
        let Ok(mut guard) = self.loaders.lock() else { return Vec::new() };
        if guard.is_empty() {
            return Vec::new();
        }
        let loaders: &mut Vec<(String, Box<dyn loaders::TaskLoader>)> = &mut guard;
        std::thread::scope(|scope| {
            scope
                .spawn(|| loaders.iter_mut().map(|(name, loader)| (name.clone(), loader.list())).collect())
                .join()
                .unwrap_or_default()
        })
    }
}

/// A loaded plugin, by kind, behind the kernel's trait for that kind (WASM and native alike).
pub(crate) enum Loaded {
    Sink(Box<dyn sinks::Sink>),
    ErrorPattern(Box<dyn patterns::PatternPlugin>),
    Auth(Box<dyn auth::AuthPlugin>),
    ApiSurface(Box<dyn surfaces::SurfacePlugin>),
    Loader(Box<dyn loaders::TaskLoader>),
}

fn load_each(
    host: &wasm::WasmHost,
    configs: &[PluginConfig],
) -> Result<Vec<(PluginInfo, Loaded)>, LoadError> {
    let mut loaded = Vec::new();
    for config in configs {
        let native = Path::new(&config.source).extension().is_some_and(|e| e == "so" || e == "dylib");
        let (info, plugin) = match config.source.strip_prefix("builtin:") {
            Some("fs-loader") if config.kind == PluginKind::Loader => {
                let (info, loader) = loaders::FsLoader::from_config(config)?;
                (info, Loaded::Loader(Box::new(loader)))
            }
            Some("error-patterns") if config.kind == PluginKind::ErrorPattern => {
                let (info, patterns) = console::load_patterns(config, host.new_counters(&config.name))?;
                (info, Loaded::ErrorPattern(patterns))
            }
            Some(builtin) => {
                let (info, sink) = console::load(builtin, config, host.new_counters(&config.name))?;
                (info, Loaded::Sink(sink))
            }
            None if native => native::load(config, host.new_counters(&config.name))?,
            None if config.kind == PluginKind::ErrorPattern => {
                let pattern = host.load_error_pattern(config)?;
                (pattern.info().clone(), Loaded::ErrorPattern(Box::new(pattern)))
            }
            None if config.kind == PluginKind::Auth => {
                let plugin = host.load_auth(config)?;
                (plugin.info().clone(), Loaded::Auth(Box::new(plugin)))
            }
            None if config.kind == PluginKind::Loader => {
                let plugin = host.load_loader(config)?;
                let info = plugin.info().clone();
                (
                    info,
                    Loaded::Loader(Box::new(loaders::WasmTaskLoader { name: config.name.clone(), plugin })),
                )
            }
            None if config.kind == PluginKind::ApiSurface => {
                let plugin = host.load_api_surface(config)?;
                (plugin.info().clone(), Loaded::ApiSurface(Box::new(plugin)))
            }
            None if config.kind == PluginKind::Sink => {
                let mut sink = host.load_sink(config)?;
                check_sink_config(&mut sink, config)?;
                (sink.info().clone(), Loaded::Sink(Box::new(sink)))
            }
            None => {
                return Err(LoadError::Unsupported {
                    name: config.name.clone(),
                    message: format!("this version of Ratchet does not host {} plugins", config.kind),
                });
            }
        };
        loaded.push((info, plugin));
    }
    Ok(loaded)
}

/// A WASM sink reads its configuration when it first writes; an empty batch at load makes a
/// bad one stop start-up instead of dropping every batch later (the contract is on
/// plugin-api's `guest::Sink`). Native plugins check theirs in `start`.
fn check_sink_config(sink: &mut wasm::WasmSink, config: &PluginConfig) -> Result<(), LoadError> {
    use sinks::Sink as _;
    sink.write(&[]).map_err(|error| LoadError::Config {
        name: config.name.clone(),
        message: match error {
            PluginError::Returned { message, .. } => message,
            other => other.to_string(),
        },
    })
}
