//! `cargo xtask ci`: what CI runs, and what a developer runs before pushing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cargo;

pub fn run() -> anyhow::Result<()> {
    ensure_components(&["rustfmt", "clippy"])?;
    ensure_postgres()?;
    ensure_browsers()?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    crate::deps::check()?;
    crate::plugins::check_frozen()?;
    // The plugin host's tests load the real WASM plugins; they are linted like the rest.
    crate::plugins::build()?;
    cargo(&["fmt", "--manifest-path", "plugins/wasm/Cargo.toml", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--manifest-path",
        "plugins/wasm/Cargo.toml",
        "--workspace",
        "--target",
        crate::plugins::TARGET,
        "--target-dir",
        "target/wasm",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    // The end-to-end tests drive the real `ratchet` and `ratchet-worker` binaries, and load
    // the native plugin libraries.
    cargo(&["build", "--workspace"])?;
    crate::codegen::run(true)?;
    crate::man(&[])?;
    // The MCP tests drive Ratchet with the official Python clients.
    crate::python::mcp_clients()?;
    // The plugin tests load the Python and JavaScript examples and build fresh scaffolds in
    // both languages with the pinned toolchains.
    ensure_node()?;
    crate::foreign::toolchains()?;
    crate::foreign::build_examples()?;
    cargo(&["test", "--workspace"])?;
    crate::fuzz::run()?;
    println!("xtask ci: all checks passed");
    Ok(())
}

/// Installs missing rustup components, failing loudly when that is impossible.
fn ensure_components(components: &[&str]) -> anyhow::Result<()> {
    for component in components {
        let subcommand = if *component == "rustfmt" { "fmt" } else { component };
        let present =
            Command::new("cargo").args([subcommand, "--version"]).output().is_ok_and(|o| o.status.success());
        if present {
            continue;
        }
        println!("$ rustup component add {component}");
        let status = Command::new("rustup")
            .args(["component", "add", component])
            .status()
            .with_context(|| format!("`{component}` is missing and rustup is not available to install it"))?;
        if !status.success() {
            bail!("`{component}` is missing and `rustup component add {component}` failed");
        }
    }
    Ok(())
}

/// Node.js and npm build the JavaScript plugins; Debian's packages provide them when missing.
fn ensure_node() -> anyhow::Result<()> {
    let present = |tool: &str| Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if present("node") && present("npm") {
        return Ok(());
    }
    println!("$ apt-get install -y nodejs npm");
    let installed = Command::new("apt-get")
        .args(["install", "-y", "-q", "nodejs", "npm"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status();
    if !installed.is_ok_and(|s| s.success()) || !present("npm") {
        bail!(
            "Node.js and npm are needed to build the JavaScript plugins: install them (apt-get install nodejs npm)"
        );
    }
    Ok(())
}

/// The storage suite runs against the local PostgreSQL server; start it when it is down.
fn ensure_postgres() -> anyhow::Result<()> {
    let ready = || {
        Command::new("pg_isready")
            .args(["-h", "127.0.0.1", "-p", "5432", "-q"])
            .status()
            .is_ok_and(|s| s.success())
    };
    if std::env::var_os("RATCHET_TEST_POSTGRES").is_some() || ready() {
        return Ok(());
    }
    let versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
        .context("PostgreSQL is not running and /etc/postgresql is missing: install PostgreSQL or set RATCHET_TEST_POSTGRES")?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    for version in &versions {
        println!("$ pg_ctlcluster --skip-systemctl-redirect {version} main start");
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", version, "main", "start"])
            .status();
    }
    for _ in 0..30 {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    bail!(
        "PostgreSQL on 127.0.0.1:5432 did not start (tried clusters {versions:?}); the storage tests need it"
    )
}

/// The browser tests load /docs, /graphql/playground and the dashboard in Debian's Chromium,
/// and the dashboard in Firefox too.
fn ensure_browsers() -> anyhow::Result<()> {
    ensure_browser("chromium", "/usr/bin/chromium", "RATCHET_CHROMIUM")?;
    ensure_browser("firefox-esr", "/usr/bin/firefox-esr", "RATCHET_FIREFOX")
}

/// Installs Debian's `package` unless `binary` exists or `variable` names another one.
fn ensure_browser(package: &str, binary: &str, variable: &str) -> anyhow::Result<()> {
    if std::env::var_os(variable).is_some() || std::path::Path::new(binary).is_file() {
        return Ok(());
    }
    println!("$ apt-get install -y --no-install-recommends {package}");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if install() {
        return Ok(());
    }
    let _ = Command::new("apt-get").arg("update").status();
    if install() {
        return Ok(());
    }
    bail!(
        "{binary} is missing and `apt-get install {package}` failed: install it, or point {variable} at the browser"
    )
}
