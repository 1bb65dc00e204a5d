//! `ratchet-full`: every command of the `ratchet` command line. The `ratchet` binary hands it
//! the commands it does not run itself (see `ratchet_cli::front`).
//!
//! The node keeps the system allocator, although mimalloc took a sixth off its CPU per queued
//! job: native plugins are shared libraries whose values (their sink, their manifest, their
//! errors) the kernel drops, and a library's Rust code allocates with the system allocator, so
//! the kernel must free with it too (with mimalloc here, `ratchet serve` with a native plugin
//! died with SIGSEGV).

fn main() -> std::process::ExitCode {
    ratchet_cli::full_main()
}
