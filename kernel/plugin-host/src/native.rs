//! Native plugins: shared libraries (`.so`) loaded with `libloading`. Before anything else
//! the library must report the native ABI version and the `plugin-api` fingerprint (crate
//! version and compiler) this kernel was built with; a mismatch is refused with the fix. Then
//! the configured kind's constructor (`ratchet_plugin_create_<kind>`) makes the plugin, which
//! the kernel drives through the same trait as a WASM plugin of that kind. Panics are caught
//! inside the plugin by `plugin-api`'s export macros.

use std::ffi::{CStr, c_char};
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use libloading::{Library, Symbol};
use plugin_api::PluginKind;
use plugin_api::native::{
    API_FINGERPRINT, NativeApiSurface, NativeAuth, NativeErrorPattern, NativeLoader, NativeSink,
};

use super::auth::AuthPlugin;
use super::loaders::{TaskLoader, TaskSource};
use super::patterns::PatternPlugin;
use super::sinks::Sink;
use super::surfaces::SurfacePlugin;
use super::wasm::{Classification, Failure, PluginCounters, Principal, SurfaceRequest, SurfaceResponse};
use super::{Event, LoadError, Loaded, PluginError, PluginInfo};
use ratchet_core::config::PluginConfig;

/// A native plugin and the library its code lives in (dropped after the plugin); a built-in
/// one, linked into the kernel, has none.
pub(crate) struct Native<T: ?Sized> {
    name: String,
    plugin: ManuallyDrop<Box<T>>,
    counters: Arc<PluginCounters>,
    _library: Option<Library>,
}

impl<T: ?Sized> Native<T> {
    /// A plugin linked into the kernel, run through the same adapter as a loaded library's.
    pub(crate) fn builtin(name: String, plugin: Box<T>, counters: Arc<PluginCounters>) -> Native<T> {
        Native { name, plugin: ManuallyDrop::new(plugin), counters, _library: None }
    }
}

impl<T: ?Sized> Native<T> {
    /// Counts one call, and sets the panics to `panics`, the guard's count (`plugin-api`'s
    /// export macros catch every panic and count it).
    fn counted(&self, panics: u64) {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        self.counters.traps.store(panics, Ordering::Relaxed);
    }
}

impl<T: ?Sized> Drop for Native<T> {
    fn drop(&mut self) {
        // SAFETY: the plugin is dropped exactly once, here, while its library is still loaded.
        #[allow(unsafe_code)]
        unsafe {
            ManuallyDrop::drop(&mut self.plugin);
        }
    }
}

impl Sink for Native<dyn NativeSink> {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, events: &[Event]) -> Result<(), PluginError> {
        let events: Vec<plugin_api::Event> = events
            .iter()
            .map(|e| plugin_api::Event {
                kind: e.kind.clone(),
                at_ms: e.at_ms,
                task: e.task.clone(),
                execution_id: e.execution_id.clone(),
                data: e.data.to_string(),
            })
            .collect();
        let written = self.plugin.write(&events);
        self.counted(self.plugin.panics());
        written
            .map_err(|error| PluginError::Returned { plugin: self.name.clone(), message: error.to_string() })
    }
}

impl PatternPlugin for Native<dyn NativeErrorPattern> {
    fn name(&self) -> &str {
        &self.name
    }

    fn classify(&mut self, failure: &Failure) -> Result<Vec<Classification>, String> {
        let failure = plugin_api::Failure {
            kind: failure.kind.clone(),
            name: failure.name.clone(),
            message: failure.message.clone(),
            task: failure.task.clone(),
            logs: failure.logs.clone(),
        };
        let classified = self.plugin.classify(&failure);
        self.counted(self.plugin.panics());
        Ok(crate::answers::classifications(classified.into_iter().map(|c| Classification {
            pattern: c.pattern,
            category: c.category,
            confidence: c.confidence,
            suggestions: c.suggestions,
        })))
    }
}

impl AuthPlugin for Native<dyn NativeAuth> {
    fn authenticate(&mut self, headers: &[(String, String)]) -> Result<Principal, String> {
        let authenticated = self.plugin.authenticate(headers);
        self.counted(self.plugin.panics());
        match authenticated {
            Ok(principal) => Ok(crate::answers::principal(principal.id, principal.roles)),
            Err(plugin_api::PluginError::Denied(reason)) => Err(crate::answers::reason(reason)),
            Err(error) => Err(format!("the auth plugin failed: {error}")),
        }
    }
}

impl SurfacePlugin for Native<dyn NativeApiSurface> {
    fn handle(&mut self, request: SurfaceRequest) -> Result<SurfaceResponse, String> {
        let request = plugin_api::Request {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
        };
        let answer = self.plugin.handle(request);
        self.counted(self.plugin.panics());
        let response = SurfaceResponse { status: answer.status, headers: answer.headers, body: answer.body };
        super::wasm::check_response(&response)?;
        Ok(response)
    }
}

impl TaskLoader for Native<dyn NativeLoader> {
    fn list(&mut self) -> Result<Vec<TaskSource>, String> {
        let tasks = self.plugin.list_tasks();
        self.counted(self.plugin.panics());
        let tasks = tasks.map_err(|error| format!("the loader refused: {error}"))?;
        let listed = super::wasm::check_listing(tasks)?;
        Ok(listed
            .into_iter()
            .map(|(task, files)| TaskSource::Files { origin: format!("plugin:{}/{task}", self.name), files })
            .collect())
    }
}

/// Loads the library `config.source` and makes the plugin of `config.kind` it exports.
/// Its calls and panics are counted in `counters`.
pub(crate) fn load(
    config: &PluginConfig,
    counters: Arc<PluginCounters>,
) -> Result<(PluginInfo, Loaded), LoadError> {
    let library = open(config)?;
    let (manifest, loaded) = match config.kind {
        PluginKind::Sink => {
            let (manifest, plugin) =
                create::<dyn NativeSink>(library, config, &counters, b"ratchet_plugin_create_sink\0", |p| {
                    p.manifest()
                })?;
            (manifest, Loaded::Sink(Box::new(plugin)))
        }
        PluginKind::ErrorPattern => {
            let (manifest, plugin) = create::<dyn NativeErrorPattern>(
                library,
                config,
                &counters,
                b"ratchet_plugin_create_error_pattern\0",
                |p| p.manifest(),
            )?;
            (manifest, Loaded::ErrorPattern(Box::new(plugin)))
        }
        PluginKind::Auth => {
            let (manifest, plugin) =
                create::<dyn NativeAuth>(library, config, &counters, b"ratchet_plugin_create_auth\0", |p| {
                    p.manifest()
                })?;
            (manifest, Loaded::Auth(Box::new(plugin)))
        }
        PluginKind::Loader => {
            let (manifest, plugin) = create::<dyn NativeLoader>(
                library,
                config,
                &counters,
                b"ratchet_plugin_create_loader\0",
                |p| p.manifest(),
            )?;
            (manifest, Loaded::Loader(Box::new(plugin)))
        }
        PluginKind::ApiSurface => {
            let (manifest, plugin) = create::<dyn NativeApiSurface>(
                library,
                config,
                &counters,
                b"ratchet_plugin_create_api_surface\0",
                |p| p.manifest(),
            )?;
            (manifest, Loaded::ApiSurface(Box::new(plugin)))
        }
        other => {
            return Err(LoadError::Unsupported {
                name: config.name.clone(),
                message: format!("this version of Ratchet does not host native {other} plugins"),
            });
        }
    };
    let info = PluginInfo {
        name: config.name.clone(),
        plugin: manifest.name,
        kind: config.kind,
        source: config.source.clone(),
        interface: format!("native ABI {}", plugin_api::NATIVE_ABI_VERSION),
        version: manifest.version,
        description: manifest.description,
        requested: manifest.capabilities,
        granted: Vec::new(),
    };
    Ok((info, loaded))
}

/// Opens the library and checks its ABI version and `plugin-api` fingerprint.
fn open(config: &PluginConfig) -> Result<Library, LoadError> {
    let (name, path) = (&config.name, &config.source);
    let refuse = |message: String| LoadError::Start { name: name.clone(), message };
    // SAFETY: loading a library runs its initialisers. Native plugins are trusted code, like
    // the kernel itself: the operator names each one in the configuration.
    #[allow(unsafe_code)]
    let library = unsafe { Library::new(path) }.map_err(|e| LoadError::Read {
        name: name.clone(),
        path: path.clone(),
        message: e.to_string(),
    })?;
    // SAFETY (for each symbol): the signatures are those plugin-api's export macros write; the
    // ABI version is checked first, so later symbols are only read from libraries that agree.
    #[allow(unsafe_code)]
    let abi: Symbol<'_, extern "C" fn() -> u32> = unsafe { library.get(b"ratchet_plugin_abi_version\0") }
        .map_err(|_| {
            refuse(format!("{path} is not a Ratchet native plugin (no ratchet_plugin_abi_version)"))
        })?;
    let version = abi();
    if version != plugin_api::NATIVE_ABI_VERSION {
        return Err(refuse(format!(
            "{path} was built for native plugin ABI {version}, this kernel speaks {}; rebuild it against this \
             version of plugin-api",
            plugin_api::NATIVE_ABI_VERSION
        )));
    }
    #[allow(unsafe_code)]
    let fingerprint: Symbol<'_, extern "C" fn() -> *const c_char> =
        unsafe { library.get(b"ratchet_plugin_api_fingerprint\0") }
            .map_err(|_| refuse(format!("{path} does not report its plugin-api fingerprint")))?;
    // SAFETY: the pointer is to a NUL-terminated static string in the library.
    #[allow(unsafe_code)]
    let theirs = unsafe { CStr::from_ptr(fingerprint()) }.to_string_lossy().into_owned();
    if theirs != API_FINGERPRINT {
        return Err(refuse(format!(
            "{path} was built with {theirs}, this kernel with {API_FINGERPRINT}; rebuild the plugin with the \
             same compiler and plugin-api"
        )));
    }
    Ok(library)
}

/// Calls the constructor `symbol` with the plugin's config; the plugin and its manifest.
fn create<T: ?Sized>(
    library: Library,
    config: &PluginConfig,
    counters: &Arc<PluginCounters>,
    symbol: &[u8],
    manifest: impl FnOnce(&T) -> plugin_api::Manifest,
) -> Result<(plugin_api::Manifest, Native<T>), LoadError> {
    let (name, path) = (&config.name, &config.source);
    let refuse = |message: String| LoadError::Start { name: name.clone(), message };
    let shown = String::from_utf8_lossy(symbol.strip_suffix(b"\0").unwrap_or(symbol)).into_owned();
    #[allow(unsafe_code)]
    let create: Symbol<
        '_,
        unsafe extern "C" fn(*const u8, usize) -> *mut Result<Box<T>, plugin_api::PluginError>,
    > = unsafe { library.get(symbol) }
        .map_err(|_| refuse(format!("{path} exports no {} plugin ({shown})", config.kind)))?;
    let settings = config.config.to_string();
    // SAFETY: the buffer outlives the call; the returned pointer is a boxed result the plugin
    // made with `Box::into_raw`, owned by us from here.
    #[allow(unsafe_code)]
    let created = unsafe { Box::from_raw(create(settings.as_ptr(), settings.len())) };
    let plugin = (*created).map_err(|error| refuse(format!("did not start: {error}")))?;
    let manifest = manifest(&plugin);
    let counters = Arc::clone(counters);
    Ok((
        manifest,
        Native { name: name.clone(), plugin: ManuallyDrop::new(plugin), counters, _library: Some(library) },
    ))
}
