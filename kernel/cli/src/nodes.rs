//! `ratchet nodes` and `ratchet tasks`: what runs against this database and what it loaded.

use std::process::ExitCode;

use ratchet_core::Config;
use ratchet_service::NODE_STALE_AFTER_MS;
use ratchet_storage::now_ms;
use serde_json::{Value, json};

use super::Format;
use super::jobs::{Common, open_existing, time};

/// Nodes with their workers.
pub async fn nodes(mut config: Config, common: Common) -> anyhow::Result<ExitCode> {
    let store = open_existing(&mut config, &common).await?;
    let nodes = store.nodes(now_ms(), NODE_STALE_AFTER_MS).await?;
    let workers = store.workers().await?;
    match common.format {
        Format::Json => {
            let list: Vec<Value> = nodes
                .iter()
                .map(|n| {
                    let mut node = ratchet_views::json(&ratchet_views::NodeView::from(n.clone()));
                    node["workers"] = workers
                        .iter()
                        .filter(|w| w.node == n.id)
                        .map(|w| ratchet_views::json(&ratchet_views::WorkerView::from(w.clone())))
                        .collect();
                    node
                })
                .collect();
            println!("{}", Value::Array(list));
        }
        Format::Text => {
            println!("{:<32}  {:<8}  {:<7}  LAST SEEN", "NODE", "STATUS", "WORKERS");
            for n in &nodes {
                let count = workers.iter().filter(|w| w.node == n.id).count();
                println!("{:<32}  {:<8}  {count:<7}  {}", n.id, n.status, time(n.heartbeat_at));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Tasks recorded by nodes, with how many versions were seen.
pub async fn tasks(mut config: Config, common: Common) -> anyhow::Result<ExitCode> {
    let store = open_existing(&mut config, &common).await?;
    let tasks = store.tasks().await?;
    match common.format {
        Format::Json => {
            let list: Vec<Value> = tasks
                .iter()
                .map(|t| {
                    json!({"name": t.name, "uuid": t.uuid, "version": t.version, "digest": t.digest,
                           "origin": t.origin, "source": t.source, "load_error": t.load_error,
                           "versions": t.versions, "updated_at": time(t.updated_at)})
                })
                .collect();
            println!("{}", Value::Array(list));
        }
        Format::Text => {
            println!(
                "{:<24}  {:<10}  {:<12}  {:>8}  {:<14}  ORIGIN",
                "TASK", "VERSION", "DIGEST", "VERSIONS", "SOURCE"
            );
            for t in &tasks {
                let digest = &t.digest[..t.digest.len().min(12)];
                let source = t.source.as_deref().unwrap_or("-");
                println!(
                    "{:<24}  {:<10}  {digest:<12}  {:>8}  {source:<14}  {}",
                    t.name, t.version, t.versions, t.origin
                );
                if let Some(error) = &t.load_error {
                    println!("    load error (this version keeps serving): {error}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
