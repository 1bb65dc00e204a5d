//! `ratchet mcp`: the tasks as tools for an LLM agent, over stdio. The agent's host starts it
//! (`"command": "ratchet", "args": ["mcp"]`); stdout carries nothing but protocol messages,
//! everything else goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use ratchet_core::Config;

use crate::serve::Node;

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Folder whose subfolders are tasks (repeatable; default: server.tasks, `examples/tasks`).
    #[arg(long = "tasks", value_name = "DIR")]
    tasks: Vec<PathBuf>,
    #[command(flatten)]
    storage: super::StorageArgs,
}

pub async fn mcp(mut config: Config, args: McpArgs) -> anyhow::Result<ExitCode> {
    if !args.tasks.is_empty() {
        config.server.tasks = args.tasks;
    }
    args.storage.apply(&mut config);
    let max_sync_runs = config.server.max_sync_runs.max(1);
    // A node like `serve`'s without its HTTP listener: jobs an agent enqueues run here too,
    // and task edits reach the agent as a changed tool list.
    let node = Node::start(config).await?;
    crate::say!(
        "ratchet mcp: serving {} task(s) on stdio; node {}",
        node.service.task_count(),
        node.service.node
    );
    let handler = ratchet_mcp::RatchetMcp::new(
        Arc::clone(&node.service),
        Arc::new(tokio::sync::Semaphore::new(max_sync_runs)),
        max_sync_runs,
    );
    let served = tokio::select! {
        served = ratchet_mcp::serve_stdio(handler, node.shutdown.clone()) => served,
        () = crate::serve::wait_for_signal() => Ok(()),
    };
    node.stop().await;
    served?;
    crate::say!("ratchet mcp: the client closed the session");
    Ok(ExitCode::SUCCESS)
}
