//! Hearing the other processes on SQLite: a node watches its database's doorbell (the file
//! `Store::doorbell` names, which the CLI, and nodes that share the file with others, write
//! after adding jobs, lifting a pause or giving a job back) and wakes its idle claimer when
//! another process rang it, as PostgreSQL's notification does
//! (see [`job_feed`](crate::job_feed)). Without the watch, such jobs wait for the node's poll
//! (`queue.poll_interval_ms`).
//!
//! A watch follows a file, not a name: should the doorbell be removed or replaced (a cleanup,
//! a restored backup), the CLI rings a new file that the old watch never hears. So the node
//! checks every [`RECHECK`] that it still watches the file beside the database, and watches it
//! again (making it when missing) when it does not.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Service;

/// How often a node checks that it watches the doorbell beside its database.
const RECHECK: Duration = Duration::from_secs(5);

/// Watches the doorbell until `stop`; nothing on PostgreSQL or an in-memory database. A watch
/// that cannot start (the system's limit on watches, a file system without events) is
/// reported, left to the poll, and tried again at each [`RECHECK`].
pub(crate) fn start(service: &Arc<Service>, mut stop: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
    let path = service.store.doorbell()?.to_owned();
    let mut bell = Bell { path, node: Arc::downgrade(service), watching: None };
    bell.watch(true);
    Some(tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.wait_for(|stopped| *stopped) => return,
                () = tokio::time::sleep(RECHECK) => bell.recheck(),
            }
        }
    }))
}

/// The doorbell a node watches.
struct Bell {
    path: PathBuf,
    node: Weak<Service>,
    /// The watch, and the file (inode) it follows; `None` while it cannot be watched.
    watching: Option<(notify::RecommendedWatcher, u64)>,
}

impl Bell {
    /// Watches the file at the doorbell's path, made when missing; says so when it cannot and
    /// `report` (not again at every recheck that fails the same way).
    fn watch(&mut self, report: bool) {
        let watched = watch_file(&self.path, self.node.clone());
        if let (Err(error), true) = (&watched, report) {
            tracing::warn!(
                "cannot watch {} ({error}): jobs other processes add start at this node's next poll",
                self.path.display()
            );
        }
        self.watching = watched.ok();
    }

    /// Watches the doorbell again when the watched file is no longer the one at its path (or
    /// none was watched), and wakes the claimer, as rings may have been missed meanwhile.
    fn recheck(&mut self) {
        let now = std::fs::metadata(&self.path).map(|file| file.ino()).ok();
        let watched = self.watching.as_ref().map(|(_, inode)| *inode);
        if now.is_some() && now == watched {
            return;
        }
        let was_watching = watched.is_some();
        self.watching = None;
        self.watch(was_watching);
        if self.watching.is_some() {
            if was_watching {
                tracing::warn!(
                    "the doorbell {} was removed or replaced; watching it again",
                    self.path.display()
                );
            }
            if let Some(service) = self.node.upgrade() {
                service.wake.notify_one();
            }
        }
    }
}

/// A watch of the file at `path` (made when missing) that wakes `node`'s idle claimer, and the
/// file's inode.
fn watch_file(path: &Path, node: Weak<Service>) -> Result<(notify::RecommendedWatcher, u64), String> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path);
    let inode = file.and_then(|file| file.metadata()).map_err(|e| e.to_string())?.ino();
    let mut watcher =
        notify::RecommendedWatcher::new(move |event| hear(&node, event), notify::Config::default())
            .map_err(|e| e.to_string())?;
    watcher.watch(path, RecursiveMode::NonRecursive).map_err(|e| e.to_string())?;
    Ok((watcher, inode))
}

/// Wakes the idle claimer for another process's ring of the doorbell (and for an error, which
/// may hide one). The node's own rings (made while other nodes share its database) are not
/// for it: it woke its claimer in-process when it made the jobs.
fn hear(node: &Weak<Service>, event: notify::Result<notify::Event>) {
    let Some(service) = node.upgrade() else { return };
    match event {
        // Opening and closing the file ring nothing.
        Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
        Ok(_) => {
            if service.store.doorbell_rung_by_another() {
                service.wake.notify_one();
                // Perhaps a schedule added or changed: the scheduler looks again (two reads).
                service.schedules_changed.notify_one();
                // Perhaps a node that just started: ring for it if so.
                if !service.store.rings_doorbell() {
                    service.peers_changed.notify_one();
                }
            }
        }
        Err(error) => {
            tracing::warn!("watching the doorbell: {error}");
            service.wake.notify_one();
        }
    }
}
