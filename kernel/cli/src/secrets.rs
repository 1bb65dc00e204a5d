//! `ratchet secrets`: set, list and remove the secrets tasks read, and make a key. Values are
//! read from standard input (never from the command line, where `ps` and shell history see
//! them) and never printed.

use std::io::{IsTerminal as _, Read as _};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Subcommand;
use ratchet_core::Config;
use ratchet_service::secrets::{SecretKey, Secrets};
use serde_json::json;

use super::Format;
use super::jobs::{Common, open, open_existing};

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Seal and store the secret NAME; its value is read from standard input (one line when
    /// typed, all of it when piped: `ratchet secrets set GITHUB_TOKEN < token.txt`).
    Set {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// The secrets' names and when they were set (never their values).
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Remove the secret NAME.
    Remove {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Print a new random key (64 hex digits) for RATCHET_SECRETS_KEY or secrets.key_file.
    Keygen,
}

pub async fn secrets(mut config: Config, command: SecretsCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretsCommand::Set { name, common } => {
            ratchet_service::secrets::check_name(&name)?;
            let value = read_value(&name)?;
            let store = open(&mut config, &common).await?;
            let secrets = opened(&config, store).await?;
            let created = secrets.set(&name, &value).await?;
            match common.format {
                Format::Json => println!("{}", json!({"name": name, "created": created})),
                Format::Text if created => println!("set the secret {name}"),
                Format::Text => println!("replaced the value of the secret {name}"),
            }
        }
        SecretsCommand::List { common } => {
            let store = open_existing(&mut config, &common).await?;
            let listed = Secrets::none(store).list().await?;
            match common.format {
                Format::Json => {
                    let items: Vec<_> = listed
                        .iter()
                        .map(|s| {
                            json!({"name": s.name, "created_at": super::jobs::time(s.created_at),
                                   "updated_at": super::jobs::time(s.updated_at)})
                        })
                        .collect();
                    println!("{}", json!(items));
                }
                Format::Text if listed.is_empty() => {
                    println!("no secrets (ratchet secrets set NAME adds one)")
                }
                Format::Text => {
                    println!("{:<40}  UPDATED", "NAME");
                    for secret in listed {
                        println!("{:<40}  {}", secret.name, super::jobs::time(secret.updated_at));
                    }
                }
            }
        }
        SecretsCommand::Remove { name, common } => {
            let store = open_existing(&mut config, &common).await?;
            Secrets::none(store).remove(&name).await?;
            match common.format {
                Format::Json => println!("{}", json!({"removed": name})),
                Format::Text => println!("removed the secret {name}"),
            }
        }
        SecretsCommand::Keygen => println!("{}", SecretKey::generate()?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The secrets of `store` under this configuration's key, refused as a node would refuse them.
async fn opened(config: &Config, store: ratchet_storage::Store) -> anyhow::Result<Secrets> {
    let key = SecretKey::load(config)?;
    Ok(Secrets::open(store, key).await?)
}

/// The value from standard input: the first line on a terminal (without echo is the shell's
/// business: `read -s`), everything when piped, without the final line break.
fn read_value(name: &str) -> anyhow::Result<String> {
    let mut stdin = std::io::stdin();
    let mut value = String::new();
    if stdin.is_terminal() {
        eprint!("value of {name}: ");
        stdin.read_line(&mut value).context("cannot read the value from standard input")?;
    } else {
        stdin.read_to_string(&mut value).context("cannot read the value from standard input")?;
    }
    let value = value.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&value);
    if value.is_empty() {
        bail!(
            "no value on standard input for the secret {name}; pipe it in: ratchet secrets set {name} < file"
        );
    }
    Ok(value.to_owned())
}
