//! The WASM plugin host (wasmtime 48).
//!
//! - One `Engine` with epoch interruption: a ticker thread advances the epoch every
//!   [`TICK`]; each call gets a deadline of its plugin's `call_timeout_ms`.
//! - Per plugin: a `Store` with a memory limit, a WASI context that grants nothing unless the
//!   operator granted it (a preopened folder; never environment, network sockets or stdio),
//!   and a pre-instantiated template from which instances are created.
//! - A trap (deadline, memory, stack overflow, panic, a value the host rejects) fails that call
//!   with a typed error and discards the instance; the next call instantiates afresh. After
//!   [`QUARANTINE_AFTER`] traps in a row the plugin rests, doubling each time up to a minute.
//! - Compiled components are cached on disk, keyed by the file's SHA-256 and the engine's
//!   compatibility hash, so a restart loads them in a fraction of a millisecond.

pub(crate) mod host;
mod wit;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use plugin_api::{Capability, PluginKind};
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, StoreLimitsBuilder};
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use self::host::{HostState, KvStore, MAX_MESSAGE, PluginHttp, truncate};
use self::wit::latest::{
    self, ApiSurfacePlugin, ApiSurfacePluginPre, AuthPlugin, AuthPluginPre, ErrorPatternPlugin,
    ErrorPatternPluginPre, LoaderPlugin, LoaderPluginPre, SinkPlugin, SinkPluginPre, types,
};
pub use self::wit::latest::{
    Classification, Failure, INTERFACE as WIT_INTERFACE, Principal, SurfaceRequest, SurfaceResponse,
};
use super::sinks::Sink;
use super::{Event, LoadError, PluginError, PluginInfo};
use ratchet_core::config::{EgressConfig, PluginConfig};
use ratchet_core::http::{Egress, HostRule};

/// How often the epoch advances: the granularity of call deadlines.
pub const TICK: Duration = Duration::from_millis(5);
/// Traps in a row after which a plugin is quarantined.
pub const QUARANTINE_AFTER: u32 = 3;
const MAX_QUARANTINE: Duration = Duration::from_secs(60);
/// Components at least this large are announced when they compile: they take seconds.
const LARGE_COMPONENT: usize = 4 * 1024 * 1024;

/// What the host needs from one WIT world's generated bindings.
pub trait World: Sized + Send + 'static {
    type Pre: Send;
    /// The plugin kind this world serves.
    const KIND: PluginKind;
    fn prepare(linker: &mut Linker<HostState>, component: &Component) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
    fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<types::Manifest>;
}

/// The `World` impl of one generated world: its template type, its kind, and the exported
/// interface that holds `describe`.
macro_rules! world {
    ($world:ident, $pre:ident, $kind:expr, $interface:ident) => {
        impl World for $world {
            type Pre = $pre<HostState>;
            const KIND: PluginKind = $kind;

            fn prepare(linker: &mut Linker<HostState>, component: &Component) -> wasmtime::Result<Self::Pre> {
                $world::add_to_linker::<_, wasmtime::component::HasSelf<_>>(linker, |s| s)?;
                $pre::new(linker.instantiate_pre(component)?)
            }

            fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
                pre.instantiate(store)
            }

            fn describe(&self, store: &mut Store<HostState>) -> wasmtime::Result<types::Manifest> {
                self.$interface().call_describe(store)
            }
        }
    };
}

world!(SinkPlugin, SinkPluginPre, PluginKind::Sink, ratchet_plugin_sink);
world!(ErrorPatternPlugin, ErrorPatternPluginPre, PluginKind::ErrorPattern, ratchet_plugin_error_pattern);
world!(AuthPlugin, AuthPluginPre, PluginKind::Auth, ratchet_plugin_auth);
world!(ApiSurfacePlugin, ApiSurfacePluginPre, PluginKind::ApiSurface, ratchet_plugin_api_surface);
world!(LoaderPlugin, LoaderPluginPre, PluginKind::Loader, ratchet_plugin_loader);

pub struct WasmHost {
    engine: Engine,
    cache_dir: PathBuf,
    egress: EgressConfig,
    /// The async runtime HTTP grants run their requests on, when there is one.
    runtime: Option<tokio::runtime::Handle>,
    ticking: Arc<AtomicBool>,
    /// Calls and traps of every plugin loaded, WASM or native, for `/metrics`.
    counters: Mutex<Vec<(String, Arc<PluginCounters>)>>,
}

/// How often a plugin was called and how often a call trapped (WASM) or panicked (native).
#[derive(Debug, Default)]
pub struct PluginCounters {
    pub calls: std::sync::atomic::AtomicU64,
    pub traps: std::sync::atomic::AtomicU64,
}

impl WasmHost {
    /// The call and trap counters of every plugin loaded through this host.
    pub fn counters(&self) -> Vec<(String, Arc<PluginCounters>)> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// New counters for plugin `name` (WASM or native), listed by `counters`.
    pub(crate) fn new_counters(&self, name: &str) -> Arc<PluginCounters> {
        let counters = Arc::new(PluginCounters::default());
        if let Ok(mut all) = self.counters.lock() {
            all.push((name.to_owned(), Arc::clone(&counters)));
        }
        counters
    }

    pub fn new(cache_dir: &Path, egress: &EgressConfig) -> Result<WasmHost, String> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true).max_wasm_stack(512 * 1024).concurrency_support(false);
        let engine = Engine::new(&config).map_err(|e| format!("cannot start wasmtime: {e}"))?;
        let ticking = Arc::new(AtomicBool::new(true));
        let (ticker_engine, running) = (engine.clone(), Arc::clone(&ticking));
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                while running.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    ticker_engine.increment_epoch();
                }
            })
            .map_err(|e| format!("cannot start the epoch ticker: {e}"))?;
        Ok(WasmHost {
            engine,
            cache_dir: cache_dir.to_owned(),
            egress: egress.clone(),
            runtime: tokio::runtime::Handle::try_current().ok(),
            counters: Mutex::new(Vec::new()),
            ticking,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component, from the compiled cache when it holds this exact file for this
    /// engine, else compiling it and filling the cache. Returns whether the cache was used.
    pub fn component(&self, name: &str, path: &Path) -> Result<(Component, bool), LoadError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| LoadError::Read {
            name: name.into(),
            path: shown.clone(),
            message: e.to_string(),
        })?;
        let cached = self.cache_dir.join(format!("{}.cwasm", self.cache_key(&bytes)));
        if cached.is_file() {
            // SAFETY: the file was written by `Component::serialize` of an engine with the same
            // compatibility hash (part of its name), into the kernel's own data folder.
            #[allow(unsafe_code)]
            let loaded = unsafe { Component::deserialize_file(&self.engine, &cached) };
            match loaded {
                Ok(component) => return Ok((component, true)),
                Err(error) => tracing::warn!("ignoring the compiled cache {}: {error}", cached.display()),
            }
        }
        // Seconds for a component that carries an interpreter (Python, JavaScript): say so,
        // so a start-up that waits on it does not look hung.
        let started = Instant::now();
        let large = bytes.len() >= LARGE_COMPONENT;
        if large {
            tracing::info!(
                target: "ratchet::plugins",
                "compiling plugin {name} ({:.1} MB, not in the compile cache yet)",
                bytes.len() as f64 / 1e6
            );
        }
        let component = Component::new(&self.engine, &bytes).map_err(|e| LoadError::Compile {
            name: name.into(),
            path: shown,
            message: format!("{e:#}"),
        })?;
        if large {
            let took = started.elapsed().as_secs_f64();
            tracing::info!(target: "ratchet::plugins", "compiled plugin {name} in {took:.1} s");
        }
        if let Ok(serialized) = component.serialize() {
            let temporary = cached.with_extension("tmp");
            let written = std::fs::create_dir_all(&self.cache_dir)
                .and_then(|()| std::fs::write(&temporary, serialized))
                .and_then(|()| std::fs::rename(&temporary, &cached));
            if let Err(error) = written {
                tracing::warn!("cannot cache the compiled plugin {name} in {}: {error}", cached.display());
            }
        }
        Ok((component, false))
    }

    fn cache_key(&self, bytes: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut hasher);
        let digest: String = Sha256::digest(bytes).iter().take(16).map(|b| format!("{b:02x}")).collect();
        format!("{digest}-{:016x}", hasher.finish())
    }

    /// The kind of plugin the component at `path` is, from its exports.
    pub fn kind_of(&self, path: &Path) -> Result<Option<PluginKind>, LoadError> {
        let (component, _) = self.component("(inspected)", path)?;
        Ok(self.exported_kind(&component))
    }

    /// The kind a component is, from the interfaces it exports.
    fn exported_kind(&self, component: &Component) -> Option<PluginKind> {
        let exports: Vec<String> =
            component.component_type().exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        PluginKind::ALL.into_iter().find(|kind| exports.contains(&latest::export(*kind)))
    }

    /// Loads a sink plugin: checks its kind, instantiates it once and asks for its manifest.
    pub fn load_sink(&self, config: &PluginConfig) -> Result<WasmSink, LoadError> {
        self.load::<SinkPlugin>(config)
    }

    /// Loads an error-pattern plugin.
    pub fn load_error_pattern(&self, config: &PluginConfig) -> Result<WasmErrorPattern, LoadError> {
        self.load::<ErrorPatternPlugin>(config)
    }

    /// Loads a loader plugin.
    pub fn load_loader(&self, config: &PluginConfig) -> Result<WasmLoader, LoadError> {
        self.load::<LoaderPlugin>(config)
    }

    /// Loads an API-surface plugin.
    pub fn load_api_surface(&self, config: &PluginConfig) -> Result<WasmApiSurface, LoadError> {
        self.load::<ApiSurfacePlugin>(config)
    }

    /// Loads an auth plugin.
    pub fn load_auth(&self, config: &PluginConfig) -> Result<WasmAuth, LoadError> {
        self.load::<AuthPlugin>(config)
    }

    fn load<W: World>(&self, config: &PluginConfig) -> Result<WasmPlugin<W>, LoadError> {
        let name = config.name.clone();
        let path = PathBuf::from(&config.source);
        let (component, _) = self.component(&name, &path)?;
        let found = self.exported_kind(&component);
        if config.kind != W::KIND || found != Some(W::KIND) {
            return Err(match found {
                Some(kind) => LoadError::WrongKind {
                    name,
                    configured: config.kind.to_string(),
                    found: format!("the {kind} interface ({})", latest::export(kind)),
                    path: config.source.clone(),
                },
                None => LoadError::WrongKind {
                    name,
                    configured: config.kind.to_string(),
                    found: format!("no {} interface", latest::INTERFACE),
                    path: config.source.clone(),
                },
            });
        }
        let mut linker: Linker<HostState> = Linker::new(&self.engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| LoadError::Start { name: name.clone(), message: format!("{e:#}") })?;
        let pre = W::prepare(&mut linker, &component).map_err(|e| LoadError::Compile {
            name: name.clone(),
            path: config.source.clone(),
            message: format!("{e:#}"),
        })?;
        let grants = Grants::from_config(config, &self.egress, self.runtime.as_ref())?;
        let counters = self.new_counters(&name);
        let mut plugin = WasmPlugin::<W> {
            counters,
            name: name.clone(),
            pre,
            engine: self.engine.clone(),
            config: config.clone(),
            grants,
            kv: Arc::new(Mutex::new(HashMap::new())),
            instance: None,
            traps_in_a_row: 0,
            resting_until: None,
            quarantines: 0,
            info: PluginInfo {
                name: name.clone(),
                plugin: String::new(),
                kind: W::KIND,
                source: config.source.clone(),
                interface: latest::INTERFACE.into(),
                version: String::new(),
                description: String::new(),
                requested: Vec::new(),
                granted: Vec::new(),
            },
        };
        let manifest = plugin
            .call(|store, instance| instance.describe(store))
            .map_err(|e| LoadError::Start { name: name.clone(), message: e.to_string() })?;
        plugin.apply_manifest(manifest)?;
        Ok(plugin)
    }
}

impl Drop for WasmHost {
    fn drop(&mut self) {
        self.ticking.store(false, Ordering::Relaxed);
    }
}

/// What the operator granted one plugin, ready to build its stores from.
#[derive(Clone)]
struct Grants {
    dir: Option<PathBuf>,
    http: Option<Arc<PluginHttp>>,
    kv: bool,
    /// Variables (name, value) the plugin sees.
    env: Vec<(String, String)>,
}

impl Grants {
    fn from_config(
        config: &PluginConfig,
        egress: &EgressConfig,
        runtime: Option<&tokio::runtime::Handle>,
    ) -> Result<Grants, LoadError> {
        let grant_error = |message: String| LoadError::Grant { name: config.name.clone(), message };
        if let Some(dir) = &config.grants.dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| grant_error(format!("grants.dir {}: {e}", dir.display())))?;
        }
        let http = if config.grants.http_hosts.is_empty() {
            None
        } else {
            let rules: Vec<HostRule> = config
                .grants
                .http_hosts
                .iter()
                .map(|h| HostRule::parse(h))
                .collect::<Result<_, _>>()
                .map_err(|e| grant_error(format!("grants.http_hosts: {e}")))?;
            let scoped = EgressConfig { allow_hosts: config.grants.http_hosts.clone(), ..egress.clone() };
            let client = Egress::new(&scoped).map_err(grant_error)?;
            let runtime = runtime
                .cloned()
                .ok_or_else(|| grant_error("HTTP grants need the kernel's async runtime".into()))?;
            let policy = client.policy_for(rules);
            Some(Arc::new(PluginHttp { egress: Arc::new(client), policy, runtime }))
        };
        let env = config
            .grants
            .env
            .iter()
            .map(|name| match std::env::var(name) {
                Ok(value) => Ok((name.clone(), value)),
                Err(_) => Err(grant_error(format!(
                    "grants.env: {name} is not set (or not UTF-8) in the kernel's environment; set it or remove it"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Grants { dir: config.grants.dir.clone(), http, kv: config.grants.kv, env })
    }
}

/// A loaded WASM sink.
pub type WasmSink = WasmPlugin<SinkPlugin>;
/// A loaded WASM error-pattern plugin.
pub type WasmErrorPattern = WasmPlugin<ErrorPatternPlugin>;
/// A loaded WASM auth plugin.
pub type WasmAuth = WasmPlugin<AuthPlugin>;
/// A loaded WASM API-surface plugin.
pub type WasmApiSurface = WasmPlugin<ApiSurfacePlugin>;

/// A loaded WASM loader plugin.
pub type WasmLoader = WasmPlugin<LoaderPlugin>;

/// A task folder a loader listed: its name and its files by relative path.
pub type ListedTask = (String, std::collections::BTreeMap<String, Vec<u8>>);

/// Most tasks one loader may list.
pub const MAX_LISTED_TASKS: usize = 10_000;

impl WasmPlugin<LoaderPlugin> {
    /// The task folders the plugin lists, each as its name and its files by relative path.
    /// A trap, a refusal, too many tasks, or a file path that is absolute or climbs out of its
    /// folder is an error.
    pub fn list_tasks(&mut self) -> Result<Vec<ListedTask>, String> {
        let listed = match self
            .call(|store, instance| instance.ratchet_plugin_loader().call_list_tasks(store))
        {
            Ok(Ok(listed)) => listed,
            Ok(Err(error)) => return Err(format!("the loader refused: {}", describe_plugin_error(error))),
            Err(error) => return Err(error.to_string()),
        };
        let listed = listed
            .into_iter()
            .map(|task| plugin_api::TaskFiles {
                name: task.name,
                files: task.files.into_iter().map(|f| (f.path, f.contents)).collect(),
            })
            .collect();
        check_listing(listed)
    }
}

/// A loader's listing, checked: at most [`MAX_LISTED_TASKS`] tasks, plain folder names, file
/// paths relative, `/`-separated and never climbing out of their folder.
pub fn check_listing(listed: Vec<plugin_api::TaskFiles>) -> Result<Vec<ListedTask>, String> {
    if listed.len() > MAX_LISTED_TASKS {
        return Err(format!("the loader listed {} tasks; at most {MAX_LISTED_TASKS}", listed.len()));
    }
    let mut tasks = Vec::with_capacity(listed.len());
    for plugin_api::TaskFiles { name, files } in listed {
        let name_ok = !name.is_empty() && !name.contains(['/', '\\']) && name != ".." && name.len() <= 128;
        if !name_ok {
            return Err(format!(
                "the loader listed a task named {:?}; use a plain folder name",
                truncate(name, 64)
            ));
        }
        let mut checked = std::collections::BTreeMap::new();
        for (path, contents) in files {
            let climbs = path.split('/').any(|part| part == ".." || part.is_empty());
            if climbs || path.starts_with('/') || path.contains('\\') {
                return Err(format!(
                    "task {name}: the file path {:?} must be relative, `/`-separated, without `..`",
                    truncate(path, 256)
                ));
            }
            checked.insert(path, contents);
        }
        tasks.push((name, checked));
    }
    Ok(tasks)
}

fn describe_plugin_error(error: types::PluginError) -> String {
    match error {
        types::PluginError::Denied(m) => format!("denied: {}", truncate(m, MAX_MESSAGE)),
        types::PluginError::InvalidInput(m) | types::PluginError::Failed(m) => truncate(m, MAX_MESSAGE),
    }
}

/// An API surface's answer, checked: a status from 100 to 599, at most
/// [`MAX_RESPONSE_HEADERS`] headers, a body of at most [`MAX_SURFACE_BODY`].
pub fn check_response(response: &SurfaceResponse) -> Result<(), String> {
    if !(100..=599).contains(&response.status) {
        return Err(format!("the plugin answered status {}, which is not an HTTP status", response.status));
    }
    if response.headers.len() > MAX_RESPONSE_HEADERS {
        return Err(format!(
            "the plugin answered {} headers; at most {MAX_RESPONSE_HEADERS} are accepted",
            response.headers.len()
        ));
    }
    if response.body.len() > MAX_SURFACE_BODY {
        return Err(format!(
            "the plugin answered a body of {} bytes; at most {MAX_SURFACE_BODY}",
            response.body.len()
        ));
    }
    Ok(())
}

pub use crate::answers::{MAX_RESPONSE_HEADERS, MAX_SURFACE_BODY};

impl WasmPlugin<ApiSurfacePlugin> {
    /// The plugin's answer to `request`, checked: a status from 100 to 599, at most
    /// [`MAX_RESPONSE_HEADERS`] headers
    /// with valid names and values, a body of at most [`MAX_SURFACE_BODY`]. A trap, a
    /// deadline or an answer that fails the checks is an error.
    pub fn handle(&mut self, request: SurfaceRequest) -> Result<SurfaceResponse, String> {
        let response = self
            .call(|store, instance| instance.ratchet_plugin_api_surface().call_handle(store, &request))
            .map_err(|e| e.to_string())?;
        check_response(&response)?;
        Ok(response)
    }
}

/// A loaded WASM plugin of world `W`: its template, its grants, and the live instance.
pub struct WasmPlugin<W: World> {
    name: String,
    pre: W::Pre,
    engine: Engine,
    config: PluginConfig,
    grants: Grants,
    kv: KvStore,
    instance: Option<(Store<HostState>, W)>,
    counters: Arc<PluginCounters>,
    traps_in_a_row: u32,
    resting_until: Option<Instant>,
    quarantines: u32,
    info: PluginInfo,
}

impl<W: World> WasmPlugin<W> {
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    fn store(&self) -> Store<HostState> {
        let mut wasi = WasiCtxBuilder::new();
        for (name, value) in &self.grants.env {
            wasi.env(name, value);
        }
        if let Some(dir) = &self.grants.dir {
            // Checked to exist at load; a failure here leaves the plugin without the folder.
            if let Err(error) = wasi.preopened_dir(dir, "/", FsPerms::ReadWrite) {
                tracing::warn!(plugin = %self.name, "cannot open grants.dir {}: {error}", dir.display());
            }
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(self.config.limits.memory.0).unwrap_or(usize::MAX))
            .instances(crate::answers::MAX_INSTANCES)
            .tables(crate::answers::MAX_TABLES)
            .memories(crate::answers::MAX_MEMORIES)
            .build();
        let state = HostState {
            plugin: self.name.clone(),
            config_json: self.config.config.to_string(),
            kv: self.grants.kv.then(|| Arc::clone(&self.kv)),
            http: self.grants.http.clone(),
            wasi: wasi.build(),
            table: wasmtime::component::ResourceTable::new(),
            limits,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store
    }

    /// Runs `call` on a live instance (instantiated from the template when needed) under the
    /// plugin's deadline. A trap discards the instance.
    fn call<R>(
        &mut self,
        call: impl FnOnce(&mut Store<HostState>, &W) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        if let Some(until) = self.resting_until {
            let now = Instant::now();
            if now < until {
                return Err(PluginError::Quarantined {
                    plugin: self.name.clone(),
                    traps: self.traps_in_a_row,
                    remaining_ms: (until - now).as_millis() as u64,
                });
            }
            self.resting_until = None;
        }
        self.counters.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.instance.is_none() {
            self.instantiate()?;
        }
        let ticks = self.deadline_ticks();
        let Some((store, instance)) = self.instance.as_mut() else {
            return Err(PluginError::Trapped { plugin: self.name.clone(), message: "no instance".into() });
        };
        store.set_epoch_deadline(ticks);
        match call(store, instance) {
            Ok(result) => {
                self.traps_in_a_row = 0;
                self.quarantines = 0;
                Ok(result)
            }
            Err(error) => {
                self.instance = None;
                Err(self.trapped(&error))
            }
        }
    }

    /// A fresh instance from the template, in a fresh store.
    fn instantiate(&mut self) -> Result<(), PluginError> {
        let mut store = self.store();
        store.set_epoch_deadline(self.deadline_ticks());
        store.epoch_deadline_trap();
        let instance = W::instantiate(&self.pre, &mut store).map_err(|e| self.trapped(&e))?;
        self.instance = Some((store, instance));
        Ok(())
    }

    fn deadline_ticks(&self) -> u64 {
        (self.config.limits.call_timeout_ms / TICK.as_millis() as u64).max(1)
    }

    fn trapped(&mut self, error: &wasmtime::Error) -> PluginError {
        self.traps_in_a_row += 1;
        self.counters.traps.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.traps_in_a_row >= QUARANTINE_AFTER {
            let rest =
                Duration::from_secs(1).saturating_mul(1 << self.quarantines.min(6)).min(MAX_QUARANTINE);
            self.quarantines += 1;
            self.resting_until = Some(Instant::now() + rest);
            tracing::warn!(plugin = %self.name, "quarantined for {rest:?} after {} traps in a row", self.traps_in_a_row);
        }
        PluginError::Trapped { plugin: self.name.clone(), message: describe_trap(error, &self.config) }
    }

    fn apply_manifest(&mut self, manifest: types::Manifest) -> Result<(), LoadError> {
        // The names cross WIT as text; past this point they are `Capability`.
        let requested = manifest
            .capabilities
            .into_iter()
            .map(|name| {
                Capability::from_name(&name).ok_or_else(|| LoadError::Start {
                    name: self.name.clone(),
                    message: format!(
                        "its manifest asks for the unknown capability `{}` (known: {})",
                        truncate(name, 64),
                        Capability::ALL.map(Capability::as_str).join(", ")
                    ),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Two-sided grants: what the plugin did not ask for, it does not get.
        let asked = |capability| requested.contains(&capability);
        if !asked(Capability::Http) {
            self.grants.http = None;
        }
        if !asked(Capability::Kv) {
            self.grants.kv = false;
        }
        if !asked(Capability::Env) {
            self.grants.env.clear();
        }
        if !asked(Capability::Fs) {
            self.grants.dir = None;
        }
        let grants = &self.grants;
        self.info.granted = requested
            .iter()
            .copied()
            .filter(|capability| match capability {
                Capability::Fs => grants.dir.is_some(),
                Capability::Http => grants.http.is_some(),
                Capability::Kv => grants.kv,
                Capability::Env => !grants.env.is_empty(),
                _ => false,
            })
            .collect();
        self.info.requested = requested;
        self.info.plugin = truncate(manifest.name, 64);
        self.info.version = truncate(manifest.version, 64);
        self.info.description = truncate(manifest.description, 256);
        Ok(())
    }
}

/// Calling a sink directly (conformance checks, tests, benches), outside the delivery threads.
pub trait SinkCalls {
    fn write_events(&mut self, events: &[Event]) -> Result<(), PluginError>;
    /// Drops the instance and creates a new one from the template, timing it.
    fn fresh_instance_time(&mut self) -> Result<Duration, PluginError>;
}

impl SinkCalls for WasmSink {
    fn write_events(&mut self, events: &[Event]) -> Result<(), PluginError> {
        Sink::write(self, events)
    }

    fn fresh_instance_time(&mut self) -> Result<Duration, PluginError> {
        self.instance = None;
        let started = Instant::now();
        self.instantiate()?;
        Ok(started.elapsed())
    }
}

impl Sink for WasmSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, events: &[Event]) -> Result<(), PluginError> {
        let events: Vec<types::Event> = events
            .iter()
            .map(|e| types::Event {
                kind: e.kind.clone(),
                at_ms: e.at_ms,
                task: e.task.clone(),
                execution_id: e.execution_id.clone(),
                data: e.data.to_string(),
            })
            .collect();
        let name = self.name.clone();
        self.call(|store, instance| instance.ratchet_plugin_sink().call_write(store, &events))?.map_err(
            |error| {
                let message = match error {
                    types::PluginError::Denied(m) => format!("denied: {m}"),
                    types::PluginError::InvalidInput(m) => format!("invalid input: {m}"),
                    types::PluginError::Failed(m) => m,
                };
                PluginError::Returned { plugin: name, message: truncate(message, MAX_MESSAGE) }
            },
        )
    }
}

impl WasmErrorPattern {
    /// Asks the plugin what `failure` is. Classifications come back sanitised: at most 16,
    /// confidence clamped to 0..=1, text cut to size.
    pub fn classify(&mut self, failure: &Failure) -> Result<Vec<Classification>, PluginError> {
        let found = self
            .call(|store, instance| instance.ratchet_plugin_error_pattern().call_classify(store, failure))?;
        Ok(crate::answers::classifications(found))
    }
}

impl WasmAuth {
    /// The principal `headers` authenticate as. Fails closed: a refusal, an error and a trap
    /// all deny, with the reason.
    pub fn authenticate(&mut self, headers: &[(String, String)]) -> Result<Principal, String> {
        let headers: Vec<(String, String)> = headers.to_vec();
        match self.call(|store, instance| instance.ratchet_plugin_auth().call_authenticate(store, &headers)) {
            Ok(Ok(principal)) => Ok(crate::answers::principal(principal.id, principal.roles)),
            Ok(Err(types::PluginError::Denied(reason))) => Err(crate::answers::reason(reason)),
            Ok(Err(types::PluginError::InvalidInput(reason) | types::PluginError::Failed(reason))) => {
                Err(format!("the auth plugin failed: {}", crate::answers::reason(reason)))
            }
            Err(error) => Err(format!("the auth plugin failed: {error}")),
        }
    }
}

/// A trap, in words an operator can act on.
fn describe_trap(error: &wasmtime::Error, config: &PluginConfig) -> String {
    let text = format!("{error:#}");
    let cause = match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "interrupted at its deadline of {} ms (limits.call_timeout_ms)",
            config.limits.call_timeout_ms
        ),
        Some(wasmtime::Trap::StackOverflow) => "overflowed its stack".into(),
        // A Rust guest's stack lives in linear memory: overflowing it runs off the bottom.
        Some(wasmtime::Trap::MemoryOutOfBounds) => {
            "accessed memory out of bounds (a stack overflow in the plugin, or a bug)".into()
        }
        Some(wasmtime::Trap::UnreachableCodeReached) if text.contains("memory") || text.contains("alloc") => {
            format!("ran out of memory (limits.memory: {})", config.limits.memory)
        }
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            "aborted (a panic, or an allocation refused at limits.memory)".into()
        }
        Some(trap) => trap.to_string(),
        None => "failed".into(),
    };
    truncate(format!("{cause}: {text}"), MAX_MESSAGE)
}
