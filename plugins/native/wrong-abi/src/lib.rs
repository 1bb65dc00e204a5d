//! Reports native plugin ABI 999 and nothing else: the kernel must refuse it before looking
//! for any other symbol (docs/reliability.md P6).

#[allow(unsafe_code, reason = "the exported C entry point")]
#[unsafe(no_mangle)]
pub extern "C" fn ratchet_plugin_abi_version() -> u32 {
    999
}
