//! `cargo xtask ci`: what CI runs, and what a developer runs before pushing.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cargo;

pub fn run() -> anyhow::Result<()> {
    ensure_components(&["rustfmt", "clippy"])?;
    cargo(&["fmt", "--all", "--", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    // The end-to-end tests drive the real `ratchet` and `ratchet-worker` binaries.
    cargo(&["build", "--workspace", "--bins"])?;
    cargo(&["test", "--workspace"])?;
    println!("xtask ci: all checks passed");
    Ok(())
}

/// Installs missing rustup components, failing loudly when that is impossible.
fn ensure_components(components: &[&str]) -> anyhow::Result<()> {
    for component in components {
        let subcommand = if *component == "rustfmt" {
            "fmt"
        } else {
            component
        };
        let present = Command::new("cargo")
            .args([subcommand, "--version"])
            .output()
            .is_ok_and(|o| o.status.success());
        if present {
            continue;
        }
        println!("$ rustup component add {component}");
        let status = Command::new("rustup")
            .args(["component", "add", component])
            .status()
            .with_context(|| {
                format!("`{component}` is missing and rustup is not available to install it")
            })?;
        if !status.success() {
            bail!("`{component}` is missing and `rustup component add {component}` failed");
        }
    }
    Ok(())
}
