//! SQLite's counterpart of PostgreSQL's wake-up notification: a file beside the database
//! (`DATABASE-wake`) that a process writes one byte into after each commit that may have made
//! jobs claimable (jobs added, a pause lifted, a job given back, leases rescued). A node
//! watches the file (`ratchet-service` does, with notify) and claims at once when it changes,
//! so jobs the CLI adds while a node runs start without waiting for the node's poll.
//!
//! The file holds one byte; only its changes matter. Ringing is best-effort: a process that
//! cannot write the file (a read-only folder, another user's file) leaves the jobs to the
//! node's poll, as before the bell existed.

use std::path::{Path, PathBuf};

/// The bell of one SQLite database file.
#[derive(Debug)]
pub(crate) struct Doorbell {
    path: PathBuf,
    /// Kept open, so that a ring is one system call. `None` in a process that does not ring
    /// (a node wakes its own claimer in-process: see `StoreOptions::ring_doorbell`), or when
    /// the file could not be opened.
    file: Option<std::fs::File>,
}

impl Doorbell {
    /// The bell beside `database`; opened (made when missing) when this process `rings` it.
    /// A node only watches it, and makes it itself (`ratchet-service`'s `doorbell`).
    pub(crate) fn beside(database: &Path, rings: bool) -> Doorbell {
        let mut name = database.as_os_str().to_owned();
        name.push("-wake");
        let path = PathBuf::from(name);
        let file = if rings { open(&path) } else { None };
        Doorbell { path, file }
    }

    /// The file a node watches.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the file (one byte, in place), so that a node watching it wakes.
    pub(crate) fn ring(&self) {
        use std::os::unix::fs::FileExt as _;
        let Some(file) = &self.file else { return };
        if let Err(error) = file.write_at(b"1", 0) {
            tracing::debug!(
                "cannot ring {} (idle nodes find new jobs at their next poll): {error}",
                self.path.display()
            );
        }
    }
}

/// The file at `path` for writing, made when missing; `None` (said at debug level) when it
/// cannot be opened.
fn open(path: &Path) -> Option<std::fs::File> {
    let opened = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path);
    opened
        .map_err(|error| {
            tracing::debug!(
                "cannot open {} (idle nodes find new jobs at their next poll): {error}",
                path.display()
            )
        })
        .ok()
}
