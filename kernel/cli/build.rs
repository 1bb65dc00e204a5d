//! Packs the relative relocations (DT_RELR) of the `ratchet` and `ratchet-full` binaries when
//! they are built for the machine that builds them and that machine's glibc loads them (2.36
//! and later).
//!
//! The binaries are position-independent: without RELR the loader reads about 2.5 MiB of
//! `ratchet-full`'s relocation entries at every start (109,000 of them), once most of the
//! difference between a cold `run-once` under and over 15 MiB of peak memory. A binary with
//! RELR does not start on an older glibc, so it is only packed for the glibc that will run it;
//! cross builds and other targets are left as they are (docs/dependencies.md).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RATCHET_NO_RELR");
    let env = |name: &str| std::env::var(name).unwrap_or_default();
    let native_x86_64_gnu = env("HOST") == env("TARGET") && env("TARGET") == "x86_64-unknown-linux-gnu";
    if !native_x86_64_gnu || std::env::var_os("RATCHET_NO_RELR").is_some() {
        return;
    }
    if host_glibc().is_some_and(|(major, minor)| (major, minor) >= (2, 36)) {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// The version of the glibc this build script runs on.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn host_glibc() -> Option<(u32, u32)> {
    // SAFETY: gnu_get_libc_version returns a pointer to a static, NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }.to_str().ok()?;
    let mut parts = version.split('.').map(|part| part.parse::<u32>().ok());
    Some((parts.next()??, parts.next()??))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn host_glibc() -> Option<(u32, u32)> {
    None
}
