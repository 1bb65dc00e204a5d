//! Python tools from PyPI, each pinned in a virtualenv of its own under `target/tools`: made
//! when missing or pinned to another release, so CI on a clean clone installs them and a
//! developer's second run does not.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::root;

/// The MCP clients the end-to-end tests drive Ratchet with (tests/tests/e2e/mcp.rs): the
/// current line, and the 1.x line for the previous protocol version.
pub const MCP_CLIENTS: [(&str, &str); 2] = [("mcp2", "mcp==2.3.0"), ("mcp1", "mcp==1.30.0")];

/// The virtualenv `target/tools/NAME` holding `requirement`, made when missing.
pub fn venv(name: &str, requirement: &str) -> anyhow::Result<PathBuf> {
    let venv = root().join("target/tools").join(name);
    let pinned = venv.join(".pinned");
    if venv.join("bin/python").is_file() && std::fs::read_to_string(&pinned).is_ok_and(|p| p == requirement) {
        return Ok(venv);
    }
    println!("$ python3 -m venv {} && pip install {requirement}", venv.display());
    let made =
        Command::new("python3").args(["-m", "venv"]).arg(&venv).status().context("python3 is missing")?;
    if !made.success() {
        bail!("`python3 -m venv` failed: install Python 3 with the venv module");
    }
    let installed = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", requirement])
        .status()
        .context("cannot run pip")?;
    if !installed.success() {
        bail!("`pip install {requirement}` failed: PyPI must be reachable");
    }
    std::fs::write(&pinned, requirement)?;
    Ok(venv)
}

/// Both MCP clients, for the end-to-end tests.
pub fn mcp_clients() -> anyhow::Result<()> {
    for (name, requirement) in MCP_CLIENTS {
        venv(name, requirement)?;
    }
    Ok(())
}
