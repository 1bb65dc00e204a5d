//! Native plugins: shared libraries loaded by the kernel with `libloading`.
//!
//! Rust has no stable ABI, so a native plugin must be built with the same compiler and the same
//! `plugin-api` as the kernel. The library answers three C functions, in this order:
//! `ratchet_plugin_abi_version` (must equal [`NATIVE_ABI_VERSION`](crate::NATIVE_ABI_VERSION)),
//! `ratchet_plugin_api_fingerprint` (must equal [`API_FINGERPRINT`]), and only then
//! `ratchet_plugin_create_sink`. The kernel refuses a mismatch before touching anything else.
//! [`export_native_sink!`](crate::export_native_sink) writes all three and keeps panics
//! from crossing the boundary: a panic in `write` becomes a `PluginError::Failed`.
//!
//! ```text
//! struct Counter(u64);
//!
//! impl plugin_api::native::NativeSink for Counter {
//!     fn manifest(&self) -> plugin_api::Manifest {
//!         plugin_api::Manifest::new("counter", "0.1.0", "counts events")
//!     }
//!     fn write(&mut self, events: &[plugin_api::Event]) -> Result<(), plugin_api::PluginError> {
//!         self.0 += events.len() as u64;
//!         Ok(())
//!     }
//! }
//!
//! plugin_api::export_native_sink!(|_config: &str| Ok(Counter(0)));
//! ```

use crate::{Classification, Event, Failure, Manifest, PluginError, Principal, Request, Response, TaskFiles};

/// `plugin-api`'s version and the compiler's: what a native plugin and the kernel must share.
pub const API_FINGERPRINT: &str =
    concat!("plugin-api ", env!("CARGO_PKG_VERSION"), "; ", env!("RATCHET_RUSTC_VERSION"));

/// The same, NUL-terminated, for the C entry point.
#[doc(hidden)]
pub const API_FINGERPRINT_C: &str =
    concat!("plugin-api ", env!("CARGO_PKG_VERSION"), "; ", env!("RATCHET_RUSTC_VERSION"), "\0");

/// A sink implemented natively.
pub trait NativeSink: Send {
    fn manifest(&self) -> Manifest;
    fn write(&mut self, events: &[Event]) -> Result<(), PluginError>;
    /// How many calls panicked (counted by the export macros' guard; leave the default).
    #[doc(hidden)]
    fn panics(&self) -> u64 {
        0
    }
}

/// An error-pattern plugin implemented natively.
pub trait NativeErrorPattern: Send {
    fn manifest(&self) -> Manifest;
    fn classify(&mut self, failure: &Failure) -> Vec<Classification>;
    /// How many calls panicked (counted by the export macros' guard; leave the default).
    #[doc(hidden)]
    fn panics(&self) -> u64 {
        0
    }
}

/// An auth plugin implemented natively. Refusing is `Err(PluginError::Denied(why))`.
pub trait NativeAuth: Send {
    fn manifest(&self) -> Manifest;
    fn authenticate(&mut self, headers: &[(String, String)]) -> Result<Principal, PluginError>;
    /// How many calls panicked (counted by the export macros' guard; leave the default).
    #[doc(hidden)]
    fn panics(&self) -> u64 {
        0
    }
}

/// A task loader implemented natively.
pub trait NativeLoader: Send {
    fn manifest(&self) -> Manifest;
    fn list_tasks(&mut self) -> Result<Vec<TaskFiles>, PluginError>;
    /// How many calls panicked (counted by the export macros' guard; leave the default).
    #[doc(hidden)]
    fn panics(&self) -> u64 {
        0
    }
}

/// An API surface implemented natively.
pub trait NativeApiSurface: Send {
    fn manifest(&self) -> Manifest;
    fn handle(&mut self, request: Request) -> Response;
    /// How many calls panicked (counted by the export macros' guard; leave the default).
    #[doc(hidden)]
    fn panics(&self) -> u64 {
        0
    }
}

/// The result of `ratchet_plugin_create_sink`: the sink, or why it could not be made.
pub type Created = Result<Box<dyn NativeSink>, PluginError>;
/// The result of `ratchet_plugin_create_error_pattern`.
pub type CreatedErrorPattern = Result<Box<dyn NativeErrorPattern>, PluginError>;
/// The result of `ratchet_plugin_create_auth`.
pub type CreatedAuth = Result<Box<dyn NativeAuth>, PluginError>;
/// The result of `ratchet_plugin_create_loader`.
pub type CreatedLoader = Result<Box<dyn NativeLoader>, PluginError>;
/// The result of `ratchet_plugin_create_api_surface`.
pub type CreatedApiSurface = Result<Box<dyn NativeApiSurface>, PluginError>;

/// Wraps a plugin so a panic in it becomes an error instead of unwinding into the kernel,
/// and counts those panics (the kernel reads the count through `panics`, for `/metrics`).
#[doc(hidden)]
pub struct PanicGuard<P> {
    plugin: P,
    panics: u64,
}

impl<P> PanicGuard<P> {
    pub fn new(plugin: P) -> PanicGuard<P> {
        PanicGuard { plugin, panics: 0 }
    }

    /// Runs `call` on the plugin, turning a panic into `Err(PluginError::Failed)`.
    fn guarded<T>(&mut self, call: impl FnOnce(&mut P) -> Result<T, PluginError>) -> Result<T, PluginError> {
        let plugin = &mut self.plugin;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| call(plugin))).unwrap_or_else(|panic| {
            self.panics += 1;
            Err(PluginError::Failed(format!("the plugin panicked: {}", panic_message(&panic))))
        })
    }

    fn manifest_of(&self, manifest: impl FnOnce(&P) -> Manifest) -> Manifest {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| manifest(&self.plugin)))
            .unwrap_or_else(|_| Manifest::new("unknown", "0.0.0", "its manifest panicked"))
    }
}

impl<S: NativeSink> NativeSink for PanicGuard<S> {
    fn manifest(&self) -> Manifest {
        self.manifest_of(S::manifest)
    }

    fn write(&mut self, events: &[Event]) -> Result<(), PluginError> {
        self.guarded(|sink| sink.write(events))
    }

    fn panics(&self) -> u64 {
        self.panics
    }
}

impl<P: NativeErrorPattern> NativeErrorPattern for PanicGuard<P> {
    fn manifest(&self) -> Manifest {
        self.manifest_of(P::manifest)
    }

    /// A panic classifies nothing.
    fn classify(&mut self, failure: &Failure) -> Vec<Classification> {
        self.guarded(|pattern| Ok(pattern.classify(failure))).unwrap_or_default()
    }

    fn panics(&self) -> u64 {
        self.panics
    }
}

impl<P: NativeAuth> NativeAuth for PanicGuard<P> {
    fn manifest(&self) -> Manifest {
        self.manifest_of(P::manifest)
    }

    fn authenticate(&mut self, headers: &[(String, String)]) -> Result<Principal, PluginError> {
        self.guarded(|auth| auth.authenticate(headers))
    }

    fn panics(&self) -> u64 {
        self.panics
    }
}

impl<P: NativeLoader> NativeLoader for PanicGuard<P> {
    fn manifest(&self) -> Manifest {
        self.manifest_of(P::manifest)
    }

    fn list_tasks(&mut self) -> Result<Vec<TaskFiles>, PluginError> {
        self.guarded(P::list_tasks)
    }

    fn panics(&self) -> u64 {
        self.panics
    }
}

impl<P: NativeApiSurface> NativeApiSurface for PanicGuard<P> {
    fn manifest(&self) -> Manifest {
        self.manifest_of(P::manifest)
    }

    /// A panic answers 500.
    fn handle(&mut self, request: Request) -> Response {
        self.guarded(|surface| Ok(surface.handle(request))).unwrap_or_else(|error| {
            let body = format!(
                r#"{{"error": {{"code": "internal", "message": {:?}, "details": null}}}}"#,
                error.to_string()
            );
            Response::json(500, &body)
        })
    }

    fn panics(&self) -> u64 {
        self.panics
    }
}

#[doc(hidden)]
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Exports a native sink. The argument is a constructor `|config: &str| -> Result<S, PluginError>`
/// taking the plugin's `config` block as JSON text.
#[macro_export]
macro_rules! export_native_sink {
    ($constructor:expr) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn ratchet_plugin_abi_version() -> u32 {
            $crate::NATIVE_ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn ratchet_plugin_api_fingerprint() -> *const ::std::ffi::c_char {
            $crate::native::API_FINGERPRINT_C.as_ptr().cast()
        }

        /// # Safety
        /// `config` must point to `config_len` bytes of UTF-8, valid for the call.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn ratchet_plugin_create_sink(
            config: *const u8,
            config_len: usize,
        ) -> *mut $crate::native::Created {
            let created = ::std::panic::catch_unwind(|| {
                // SAFETY: the kernel passes a live UTF-8 buffer of this length.
                let bytes = unsafe { ::std::slice::from_raw_parts(config, config_len) };
                let config = ::std::str::from_utf8(bytes)
                    .map_err(|e| $crate::PluginError::InvalidInput(format!("config is not UTF-8: {e}")))?;
                let sink = ($constructor)(config)?;
                Ok(Box::new($crate::native::PanicGuard::new(sink)) as Box<dyn $crate::native::NativeSink>)
            })
            .unwrap_or_else(|panic| {
                Err($crate::PluginError::Failed(format!(
                    "the plugin panicked while starting: {}",
                    $crate::native::panic_message(&panic)
                )))
            });
            Box::into_raw(Box::new(created))
        }
    };
}

/// Exports the two functions every native plugin answers first: its ABI version and its
/// `plugin-api` fingerprint. `export_native_sink!` includes them; a library exporting the other
/// kinds (`export_native!`) calls this once.
#[macro_export]
macro_rules! export_native_abi {
    () => {
        #[unsafe(no_mangle)]
        pub extern "C" fn ratchet_plugin_abi_version() -> u32 {
            $crate::NATIVE_ABI_VERSION
        }

        #[unsafe(no_mangle)]
        pub extern "C" fn ratchet_plugin_api_fingerprint() -> *const ::std::ffi::c_char {
            $crate::native::API_FINGERPRINT_C.as_ptr().cast()
        }
    };
}

/// Exports a native plugin of one kind: `export_native!(KIND, CONSTRUCTOR)` where KIND is
/// `error_pattern`, `auth`, `loader` or `api_surface` and the constructor is
/// `|config: &str| -> Result<T, PluginError>` for a `T` implementing that kind's trait
/// (`NativeErrorPattern`, `NativeAuth`, `NativeLoader`, `NativeApiSurface`). One library may
/// export several kinds; call `export_native_abi!()` once beside them. Panics never cross.
#[macro_export]
macro_rules! export_native {
    (error_pattern, $constructor:expr) => {
        $crate::__native_create!(ratchet_plugin_create_error_pattern, NativeErrorPattern, $constructor);
    };
    (auth, $constructor:expr) => {
        $crate::__native_create!(ratchet_plugin_create_auth, NativeAuth, $constructor);
    };
    (loader, $constructor:expr) => {
        $crate::__native_create!(ratchet_plugin_create_loader, NativeLoader, $constructor);
    };
    (api_surface, $constructor:expr) => {
        $crate::__native_create!(ratchet_plugin_create_api_surface, NativeApiSurface, $constructor);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __native_create {
    ($symbol:ident, $trait:ident, $constructor:expr) => {
        /// # Safety
        /// `config` must point to `config_len` bytes of UTF-8, valid for the call.
        #[unsafe(no_mangle)]
        pub unsafe extern "C" fn $symbol(
            config: *const u8,
            config_len: usize,
        ) -> *mut Result<Box<dyn $crate::native::$trait>, $crate::PluginError> {
            let created = ::std::panic::catch_unwind(|| {
                // SAFETY: the kernel passes a live UTF-8 buffer of this length.
                let bytes = unsafe { ::std::slice::from_raw_parts(config, config_len) };
                let config = ::std::str::from_utf8(bytes)
                    .map_err(|e| $crate::PluginError::InvalidInput(format!("config is not UTF-8: {e}")))?;
                let plugin = ($constructor)(config)?;
                Ok(Box::new($crate::native::PanicGuard::new(plugin)) as Box<dyn $crate::native::$trait>)
            })
            .unwrap_or_else(|panic| {
                Err($crate::PluginError::Failed(format!(
                    "the plugin panicked while starting: {}",
                    $crate::native::panic_message(&panic)
                )))
            });
            Box::into_raw(Box::new(created))
        }
    };
}
