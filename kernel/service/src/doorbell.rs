//! Hearing the other processes on SQLite: a node watches its database's doorbell (the file
//! `Store::doorbell` names, which the CLI writes after adding jobs, lifting a pause or giving a
//! job back) and wakes its idle claimer when it changes, as PostgreSQL's notification does
//! (see [`job_feed`](crate::job_feed)). Without the watch, such jobs wait for the node's poll
//! (`queue.poll_interval_ms`).

use std::sync::{Arc, Weak};

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Service;

/// Watches the doorbell until `stop`; nothing on PostgreSQL or an in-memory database. A watch
/// that cannot start (the system's limit on watches, a file system without events) is
/// reported and left to the poll.
pub(crate) fn start(service: &Arc<Service>, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let path = service.store.doorbell()?.to_owned();
    let node = Arc::downgrade(service);
    let watched = notify::RecommendedWatcher::new(move |event| hear(&node, event), notify::Config::default())
        .and_then(|mut watcher| watcher.watch(&path, RecursiveMode::NonRecursive).map(|()| watcher));
    match watched {
        Ok(watcher) => Some(tokio::spawn(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
            drop(watcher);
        })),
        Err(error) => {
            tracing::warn!(
                "cannot watch {} ({error}): jobs other processes add start at this node's next poll",
                path.display()
            );
            None
        }
    }
}

/// Wakes the idle claimer for a change of the doorbell (and for an error, which may hide one).
fn hear(node: &Weak<Service>, event: notify::Result<notify::Event>) {
    let Some(service) = node.upgrade() else { return };
    match event {
        // Opening and closing the file ring nothing.
        Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
        Ok(event) if matches!(event.kind, EventKind::Remove(_)) => tracing::warn!(
            "the doorbell {} was removed: until this node restarts, jobs other processes add start at its next poll",
            event.paths.first().map_or_else(String::new, |path| path.display().to_string())
        ),
        Ok(_) => service.wake.notify_one(),
        Err(error) => {
            tracing::warn!("watching the doorbell: {error}");
            service.wake.notify_one();
        }
    }
}
