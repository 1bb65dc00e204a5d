//! `cargo xtask`: Ratchet's automation, in Rust so it runs wherever cargo does.
//!
//! - `cargo xtask ci`: formatting, clippy with warnings denied, the whole test suite.
//! - `cargo xtask bench`: release build, then cold `run-once` and warm-pool figures.
//! - `cargo xtask build-plugins`: the WASM plugins, for wasm32-wasip2.
//! - `cargo xtask foreign-plugins`: the Python and JavaScript plugins, and their toolchains.

mod bench;
mod ci;
mod codegen;
mod deps;
mod foreign;
mod fuzz;
mod plugins;
mod python;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

const HELP: &str = "\
usage: cargo xtask <command>

commands:
  ci               fmt check, clippy (-D warnings), build, every test
  bench [--quick]  cold run-once (median of 20) and warm pool (1,000 runs) in release mode
  deps             check the architecture's dependency rules (docs/architecture.md)
  codegen [--check]
                   write docs/openapi.json and docs/schema.graphql from the code; --check
                   fails when the checked-in files drifted instead
  fuzz-api         schemathesis (pinned, from PyPI) against a real `ratchet serve`
  mcp-clients      the Python MCP clients (2.x and 1.x, from PyPI) the MCP tests drive
  build-plugins    the WASM plugins (plugins/wasm) for wasm32-wasip2, into target/plugins
  freeze-wit       print the digest line of each WIT version folder, for wit/FROZEN
  man [--out DIR]  the manual pages of every `ratchet` command (default: target/man);
                   read one with `man -l target/man/ratchet-jobs-list.1`
  foreign-plugins  the Python and JavaScript plugins (plugins/python, plugins/js), each built
                   with its own one-line build (componentize-py from PyPI, componentize-js
                   from npm), into target/plugins; and the pinned toolchains the tests use
  new-plugin NAME --kind sink|error-pattern|auth|api-surface|loader [--lang rust|python|js] [--path DIR]
                   scaffold a plugin that builds, loads and passes `ratchet plugins test`
";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(),
        Some("bench") => bench::run(args.iter().any(|a| a == "--quick")),
        Some("deps") => deps::check(),
        Some("codegen") => codegen::run(args.iter().any(|a| a == "--check")),
        Some("fuzz-api") => fuzz::run(),
        Some("mcp-clients") => python::mcp_clients(),
        Some("build-plugins") => plugins::build().map(|_| ()),
        Some("foreign-plugins") => {
            foreign::toolchains()?;
            foreign::build_examples().map(|_| ())
        }
        Some("man") => man(&args[1..]),
        Some("new-plugin") => plugins::scaffold(&args[1..]),
        Some("freeze-wit") => {
            for entry in std::fs::read_dir(root().join("wit/ratchet-plugin"))? {
                let folder = entry?.path();
                let name = folder.strip_prefix(root().join("wit"))?.display().to_string();
                println!("{name} {}", plugins::folder_digest(&folder)?);
            }
            Ok(())
        }
        Some("help" | "--help" | "-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => bail!("unknown command `{other}`\n\n{HELP}"),
    }
}

/// `cargo xtask man [--out DIR]`: the pages come from the CLI's own definition (`ratchet man`),
/// so they cannot drift from `--help`.
pub fn man(args: &[String]) -> anyhow::Result<()> {
    let out = match args {
        [] => root().join("target/man"),
        [flag, dir] if flag == "--out" => std::env::current_dir()?.join(dir),
        _ => bail!("usage: cargo xtask man [--out DIR]"),
    };
    let out = out.to_str().context("the output folder must be UTF-8")?.to_owned();
    cargo(&["run", "--quiet", "-p", "ratchet-cli", "--bin", "ratchet-full", "--", "man", "--out", &out])
}

/// The workspace root: xtask lives one folder below it.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_owned()
}

/// Runs `cargo ARGS` in the workspace root, echoing the command; fails on a non-zero exit.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    println!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("cannot run {cargo}"))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}
