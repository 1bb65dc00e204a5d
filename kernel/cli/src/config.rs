//! `ratchet config check|show`: what the configuration resolves to, and whether it works.

use std::process::ExitCode;

use clap::Subcommand;
use ratchet_core::Config;

use super::Format;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration and what it points at: database, task folders, worker binary,
    /// listen address. Exits 1 when anything is wrong.
    Check,
    /// Print the effective configuration (defaults, file, environment merged), secrets masked.
    Show {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub async fn config(config: Config, command: ConfigCommand) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Show { format } => {
            let shown = masked(config);
            match format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&shown)?),
                Format::Text => print!("{}", serde_yaml::to_string(&shown)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        ConfigCommand::Check => check(config).await,
    }
}

fn masked(mut config: Config) -> Config {
    config.storage.url = config.storage.url.as_deref().map(ratchet_storage::redact);
    config
}

async fn check(config: Config) -> anyhow::Result<ExitCode> {
    println!("ok    configuration parsed (defaults, file, RATCHET_* environment)");
    let mut failures = 0;
    let mut report = |result: Result<String, String>| match result {
        Ok(line) => println!("ok    {line}"),
        Err(line) => {
            failures += 1;
            println!("error {line}");
        }
    };
    let file = config.storage.data_dir.join(ratchet_storage::SQLITE_FILE);
    let database = if config.storage.url.is_none() && !file.is_file() {
        Ok(None)
    } else {
        super::open_store(&config).await.map(Some)
    };
    report(match database {
        Ok(None) => Ok(format!("database: none yet at {}; `ratchet serve` creates it", file.display())),
        Ok(Some(store)) => {
            let backend = format!("{:?}", store.backend()).to_lowercase();
            store.close().await;
            Ok(format!("database ({backend}) reachable and migrated"))
        }
        Err(error) => Err(format!("database: {error:#}")),
    });
    let sources = config.file_sources().map_err(|e| e.to_string());
    report(match sources.and_then(|s| ratchet_service::TaskRegistry::load_sources(&s, &config.limits)) {
        Ok((registry, rejected)) if rejected.is_empty() => {
            Ok(format!("{} task(s) load from {}", registry.len(), folders(&config)))
        }
        Ok((registry, rejected)) => Err(format!(
            "{} task(s) load from {}, {} do not: {}",
            registry.len(),
            folders(&config),
            rejected.len(),
            rejected
                .iter()
                .map(|r| format!("{}: {}", r.path.display(), r.error))
                .collect::<Vec<_>>()
                .join("; ")
        )),
        Err(error) => Err(error),
    });
    report(match ratchet_core::execution::find_worker_binary(config.workers.binary.as_deref()) {
        Ok(path) if path.is_file() => Ok(format!("worker binary {}", path.display())),
        Ok(path) => Err(format!("workers.binary {} does not exist", path.display())),
        Err(error) => Err(error.to_string()),
    });
    let auth = config.plugins.iter().any(|p| p.kind == ratchet_plugin_host::PluginKind::Auth);
    report(match config.server.bind.parse::<std::net::SocketAddr>() {
        Ok(address) if address.ip().is_loopback() => Ok(format!("server.bind {address} (loopback only)")),
        Ok(address) => ratchet_server::check_exposure(&config.server, address, auth).map(|()| {
            let guard = if auth {
                "the auth plugin guards the API"
            } else {
                "NO auth: anyone who reaches it may run tasks"
            };
            format!("server.bind {address}: reachable from other machines; {guard}")
        }),
        Err(error) => Err(format!("server.bind `{}` is not an address: {error}", config.server.bind)),
    });
    report(plugins(&config));
    report(crate::builtin_surfaces(&config.server.surfaces).map(|surfaces| {
        let mut names: Vec<String> = surfaces.iter().map(|s| s.info().name).collect();
        if config.mcp.enabled {
            names.push("mcp".into());
        }
        format!("API surfaces: {}", names.join(", "))
    }));
    Ok(if failures == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Loads every configured plugin as `serve` would: each checks its grants and configuration.
fn plugins(config: &Config) -> Result<String, String> {
    let plugins = config.effective_plugins();
    if plugins.is_empty() {
        return Ok("plugins: none enabled".into());
    }
    let cache = config.storage.data_dir.join("plugin-cache");
    let loaded = ratchet_plugin_host::Plugins::load(&plugins, &config.egress, &cache)
        .map_err(|e| format!("plugins: {e}"))?;
    let names: Vec<String> = loaded.list().iter().map(|p| format!("{} ({})", p.name, p.kind)).collect();
    Ok(format!("{} plugin(s) load and accept their configuration: {}", names.len(), names.join(", ")))
}

fn folders(config: &Config) -> String {
    let sources = config.file_sources().unwrap_or_default();
    sources.iter().map(|s| s.path.display().to_string()).collect::<Vec<_>>().join(", ")
}
