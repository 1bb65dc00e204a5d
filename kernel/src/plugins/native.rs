//! Native plugins: shared libraries (`.so`) loaded with `libloading`. Before anything else
//! the library must report the native ABI version and the `plugin-api` fingerprint (crate
//! version and compiler) this kernel was built with; a mismatch is refused with the fix.
//! Panics are caught inside the plugin by `plugin_api::export_native_sink!`.

use std::ffi::{CStr, c_char};
use std::mem::ManuallyDrop;

use libloading::{Library, Symbol};
use plugin_api::native::{API_FINGERPRINT, Created, NativeSink};

use super::sinks::Sink;
use super::{Event, LoadError, PluginError, PluginInfo};
use crate::config::PluginConfig;

/// A native sink and the library its code lives in (dropped after the sink).
struct LoadedSink {
    name: String,
    sink: ManuallyDrop<Box<dyn NativeSink>>,
    _library: Library,
}

impl Drop for LoadedSink {
    fn drop(&mut self) {
        // SAFETY: the sink is dropped exactly once, here, while its library is still loaded.
        #[allow(unsafe_code)]
        unsafe {
            ManuallyDrop::drop(&mut self.sink);
        }
    }
}

impl Sink for LoadedSink {
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
        self.sink
            .write(&events)
            .map_err(|error| PluginError::Returned { plugin: self.name.clone(), message: error.to_string() })
    }
}

pub fn load(config: &PluginConfig) -> Result<(PluginInfo, Box<dyn Sink>), LoadError> {
    let name = config.name.clone();
    let path = config.source.clone();
    let refuse = |message: String| LoadError::Start { name: name.clone(), message };
    if config.kind != "sink" {
        return Err(LoadError::Unsupported {
            name,
            message: format!("native {} plugins are not hosted yet; only sinks are", config.kind),
        });
    }
    // SAFETY: loading a library runs its initialisers. Native plugins are trusted code, like
    // the kernel itself: the operator names each one in the configuration.
    #[allow(unsafe_code)]
    let library = unsafe { Library::new(&path) }.map_err(|e| LoadError::Read {
        name: name.clone(),
        path: path.clone(),
        message: e.to_string(),
    })?;
    // SAFETY (for each symbol): the signatures are those `export_native_sink!` writes; the ABI
    // version is checked first, so later symbols are only read from libraries that agree.
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
    #[allow(unsafe_code)]
    let create: Symbol<'_, unsafe extern "C" fn(*const u8, usize) -> *mut Created> =
        unsafe { library.get(b"ratchet_plugin_create_sink\0") }
            .map_err(|_| refuse(format!("{path} exports no sink (ratchet_plugin_create_sink)")))?;
    let settings = config.config.to_string();
    // SAFETY: the buffer outlives the call; the returned pointer is a `Box<Created>` the
    // plugin made with `Box::into_raw`, owned by us from here.
    #[allow(unsafe_code)]
    let created = unsafe { Box::from_raw(create(settings.as_ptr(), settings.len())) };
    let sink = (*created).map_err(|error| refuse(format!("did not start: {error}")))?;
    let manifest = sink.manifest();
    let info = PluginInfo {
        name: name.clone(),
        plugin: manifest.name,
        kind: "sink".into(),
        source: path,
        interface: format!("native ABI {}", plugin_api::NATIVE_ABI_VERSION),
        version: manifest.version,
        description: manifest.description,
        requested: manifest.capabilities,
        granted: Vec::new(),
    };
    Ok((info, Box::new(LoadedSink { name, sink: ManuallyDrop::new(sink), _library: library })))
}
