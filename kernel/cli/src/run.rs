//! `ratchet run-once` in `ratchet-full`: the command itself is `ratchet_front::run`; this
//! gives it the secrets the task declares, from the database.

use std::collections::BTreeMap;

use anyhow::Context as _;
use ratchet_core::Config;

/// The secrets `task` declares, from the configured database and key, as a node would give
/// them; none when it declares none.
pub async fn secrets_from_store(
    config: &Config,
    task: &ratchet_core::Task,
) -> anyhow::Result<BTreeMap<String, String>> {
    if task.metadata.secrets.is_empty() {
        return Ok(BTreeMap::new());
    }
    let store = super::open_existing_store(config)
        .await
        .context("the task declares secrets, which are kept in the database")?;
    let key = ratchet_service::secrets::SecretKey::load(config)?;
    let secrets = ratchet_service::secrets::Secrets::open(store, key).await?;
    Ok(secrets.for_task(task).await?)
}
