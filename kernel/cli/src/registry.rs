//! `ratchet registry`: keys and signed indexes for publishing tasks as an HTTPS registry.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use ratchet_core::config::Config;
use ratchet_service::remote::index;

/// The environment variable holding the password of an encrypted secret key.
const PASSWORD_VARIABLE: &str = "RATCHET_REGISTRY_KEY_PASSWORD";

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Make a signing key pair: DIR/ratchet-registry.key (secret: keep it like a password) and
    /// DIR/ratchet-registry.pub; prints the public key for `registry.sources[].public_keys`.
    Keygen {
        /// The folder to write the keys to.
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
    },
    /// Publish a folder of tasks as a registry: a ZIP per task, index.json and its signature,
    /// ready to serve from any HTTPS file server.
    Sign {
        /// The tasks: a folder of task folders and ZIPs.
        tasks: PathBuf,
        /// A minisign secret key (`ratchet registry keygen`, or the minisign tool's; an
        /// encrypted one reads its password from RATCHET_REGISTRY_KEY_PASSWORD).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// The folder to write the registry to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The index's serial; nodes refuse a lower one than they accepted. Default: the
        /// current Unix time in seconds, which only grows.
        #[arg(long)]
        serial: Option<u64>,
        /// Days until nodes refuse the index (republish before then).
        #[arg(long, default_value_t = 30)]
        expires_days: u32,
    },
}

pub fn registry(config: Config, command: RegistryCommand) -> anyhow::Result<ExitCode> {
    match command {
        RegistryCommand::Keygen { out } => {
            let (secret, public) = index::generate_keys().map_err(anyhow::Error::msg)?;
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            let secret_path = out.join("ratchet-registry.key");
            if secret_path.exists() {
                anyhow::bail!(
                    "{} exists; move it away first (a new key cannot sign for the old one)",
                    secret_path.display()
                );
            }
            write_secret(&secret_path, &secret)?;
            std::fs::write(out.join("ratchet-registry.pub"), format!("{public}\n"))?;
            eprintln!("wrote {} (secret) and ratchet-registry.pub", secret_path.display());
            println!("{public}");
            Ok(ExitCode::SUCCESS)
        }
        RegistryCommand::Sign { tasks, key, out, serial, expires_days } => {
            let secret = std::fs::read_to_string(&key)
                .with_context(|| format!("cannot read the secret key {}", key.display()))?;
            let password = std::env::var(PASSWORD_VARIABLE).ok();
            let serial = serial.unwrap_or_else(|| ratchet_storage::now_ms().max(0) as u64 / 1000);
            let expires = ratchet_core::time::format(
                ratchet_storage::now_ms() + i64::from(expires_days) * 24 * 3600 * 1000,
            );
            let published = index::publish(&tasks, &out, &secret, password, serial, &expires, &config.limits)
                .map_err(anyhow::Error::msg)?;
            for (path, error) in &published.skipped {
                eprintln!("warning: skipping {}: {error}", path.display());
            }
            for entry in &published.index.tasks {
                println!("{} {} {} ({} bytes)", entry.name, entry.version, entry.url, entry.size);
            }
            eprintln!(
                "wrote {} with {} task(s), serial {serial}, expiring {expires}; serve the folder over HTTPS",
                out.join("index.json").display(),
                published.index.tasks.len()
            );
            Ok(if published.skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}

/// Writes the secret key readable by its owner only.
fn write_secret(path: &std::path::Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    Ok(())
}
