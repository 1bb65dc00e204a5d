//! `cargo xtask codegen [--check]`: the API contracts generated from the code and checked in,
//! `docs/openapi.json` (from `ratchet api openapi`) and `docs/schema.graphql` (from
//! `ratchet api graphql-schema`). With `--check` nothing is written and a drift fails.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::root;

const CONTRACTS: [(&str, &str); 2] =
    [("openapi", "docs/openapi.json"), ("graphql-schema", "docs/schema.graphql")];

pub fn run(check: bool) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut drifted = Vec::new();
    for (command, file) in CONTRACTS {
        println!("$ cargo run -q -p ratchet-cli --bin ratchet-full -- api {command}");
        let output = Command::new(&cargo)
            .args(["run", "-q", "-p", "ratchet-cli", "--bin", "ratchet-full", "--", "api", command])
            .current_dir(root())
            .output()
            .with_context(|| format!("cannot run {cargo}"))?;
        if !output.status.success() {
            bail!("`ratchet api {command}` failed:\n{}", String::from_utf8_lossy(&output.stderr));
        }
        let path = root().join(file);
        let current = std::fs::read(&path).unwrap_or_default();
        if current == output.stdout {
            println!("{file} is up to date");
        } else if check {
            drifted.push(file);
        } else {
            std::fs::write(&path, &output.stdout).with_context(|| format!("cannot write {file}"))?;
            println!("wrote {file}");
        }
    }
    if !drifted.is_empty() {
        bail!(
            "{} drifted from the code: run `cargo xtask codegen` and commit the result",
            drifted.join(" and ")
        );
    }
    Ok(())
}
