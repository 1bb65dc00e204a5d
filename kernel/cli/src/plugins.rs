//! `ratchet plugins list|inspect|test`: what the configuration loads, and the conformance
//! check a plugin author runs on a component.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use ratchet_core::Config;
use ratchet_plugin_host::{PluginInfo, Plugins};
use serde_json::{Value, json};

use super::Format;

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Load the configured plugins and list them: kind, source, interface version, grants.
    List {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Show one configured plugin in full.
    Inspect {
        name: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Run the conformance checks of its kind against a plugin component.
    Test {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

pub async fn plugins(config: Config, command: PluginsCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginsCommand::List { format } => {
            let loaded = load(&config)?;
            // The configured plugins, then the built-in ones `serve` runs: the loader of
            // server.tasks and the API surfaces.
            let mut all: Vec<PluginInfo> = loaded.list().to_vec();
            all.push(ratchet_plugin_host::loaders::server_tasks_info(&config.server.tasks));
            let surfaces = crate::builtin_surfaces(&config.server.surfaces).map_err(anyhow::Error::msg)?;
            all.extend(surfaces.iter().map(|s| s.info()));
            if config.mcp.enabled {
                use ratchet_server::ApiSurface as _;
                all.push(ratchet_mcp::McpSurface::new(Default::default()).info());
            }
            match format {
                Format::Json => println!("{}", Value::Array(all.iter().map(info_json).collect())),
                Format::Text => {
                    println!(
                        "{:<16}  {:<13}  {:<22}  {:<10}  SOURCE",
                        "NAME", "KIND", "INTERFACE", "GRANTED"
                    );
                    for p in &all {
                        let granted = if p.granted.is_empty() {
                            "-".into()
                        } else {
                            p.granted.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(",")
                        };
                        println!(
                            "{:<16}  {:<13}  {:<22}  {granted:<10}  {}",
                            p.name, p.kind, p.interface, p.source
                        );
                    }
                    if config.plugins.is_empty() {
                        println!(
                            "\n{} built-in plugins; none configured (see `plugins:` in config/ratchet.example.yaml)",
                            all.len()
                        );
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginsCommand::Inspect { name, format } => {
            let loaded = load(&config)?;
            let Some(info) = loaded.list().iter().find(|p| p.name == name) else {
                let names: Vec<&str> = loaded.list().iter().map(|p| p.name.as_str()).collect();
                anyhow::bail!("no plugin named `{name}` is configured; configured: {}", names.join(", "));
            };
            let effective = config.effective_plugins();
            let configured = effective.iter().find(|p| p.name == name);
            let mut document = info_json(info);
            document["config"] = configured.map(|c| c.config.clone()).unwrap_or(Value::Null);
            document["limits"] = configured.map_or(Value::Null, |c| {
                json!({"memory": c.limits.memory.to_string(), "call_timeout_ms": c.limits.call_timeout_ms})
            });
            match format {
                Format::Json => println!("{document}"),
                Format::Text => println!("{}", serde_json::to_string_pretty(&document)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        // WASI's synchronous bindings must not run on the async runtime's threads.
        PluginsCommand::Test { file } => {
            std::thread::scope(|scope| scope.spawn(|| conformance(&config, file)).join())
                .map_err(|_| anyhow::anyhow!("the conformance check panicked"))?
        }
    }
}

fn load(config: &Config) -> anyhow::Result<Plugins> {
    let cache = config.storage.data_dir.join("plugin-cache");
    Plugins::load(&config.effective_plugins(), &config.egress, &cache)
        .context("loading the configured plugins")
}

fn info_json(p: &PluginInfo) -> Value {
    ratchet_views::json(&ratchet_views::PluginView::from(p))
}

/// Runs the conformance checks of the plugin's kind against `file`. The compiled component
/// goes into the data folder's compile cache, the one `ratchet serve` reads: testing a plugin
/// before a deploy spares the node its compile (seconds for a Python or JavaScript plugin).
fn conformance(config: &Config, file: PathBuf) -> anyhow::Result<ExitCode> {
    let cache = config.storage.data_dir.join("plugin-cache");
    let host =
        ratchet_plugin_host::wasm::WasmHost::new(&cache, &config.egress).map_err(anyhow::Error::msg)?;
    let started = std::time::Instant::now();
    // A file that does not compile is reported by the checks themselves.
    if let Ok((_, cached)) = host.component("under-test", &file) {
        let took = started.elapsed();
        if cached {
            println!("ok    loads from the compile cache in {} ms", took.as_millis());
        } else {
            println!(
                "ok    compiles in {:.1} s (cached in {} for the next load)",
                took.as_secs_f64(),
                cache.display()
            );
        }
    }
    let checks = ratchet_plugin_host::conformance::run(&host, &file);
    let mut failures = 0;
    for check in &checks {
        match &check.outcome {
            Ok(detail) => println!("ok    {}{detail}", check.what),
            Err(why) => {
                failures += 1;
                println!("FAIL  {}: {why}", check.what);
            }
        }
    }
    println!("{}", if failures == 0 { "conformance: passed" } else { "conformance: FAILED" });
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
