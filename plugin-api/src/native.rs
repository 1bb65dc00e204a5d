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

use crate::{Event, Manifest, PluginError};

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
}

/// The result of `ratchet_plugin_create_sink`: the sink, or why it could not be made.
pub type Created = Result<Box<dyn NativeSink>, PluginError>;

/// Wraps a sink so a panic in it becomes an error instead of unwinding into the kernel.
#[doc(hidden)]
pub struct PanicGuard<S>(pub S);

impl<S: NativeSink> NativeSink for PanicGuard<S> {
    fn manifest(&self) -> Manifest {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.manifest()))
            .unwrap_or_else(|_| Manifest::new("unknown", "0.0.0", "its manifest panicked"))
    }

    fn write(&mut self, events: &[Event]) -> Result<(), PluginError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.0.write(events))).unwrap_or_else(
            |panic| Err(PluginError::Failed(format!("the plugin panicked: {}", panic_message(&panic)))),
        )
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
                Ok(Box::new($crate::native::PanicGuard(sink)) as Box<dyn $crate::native::NativeSink>)
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
