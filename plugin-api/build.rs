//! Records the compiler version: native plugins must be built by the same compiler as the
//! kernel (Rust has no stable ABI), and the fingerprint they report includes it.

fn main() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = std::process::Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown rustc".into());
    println!("cargo:rustc-env=RATCHET_RUSTC_VERSION={version}");
    println!("cargo:rerun-if-env-changed=RUSTC");
}
