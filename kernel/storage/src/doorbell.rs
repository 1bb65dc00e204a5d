//! SQLite's counterpart of PostgreSQL's wake-up notification: a file beside the database
//! (`DATABASE-wake`) that a process writes after each commit that may have made jobs
//! claimable (jobs added, a pause lifted, a job given back, leases rescued) or changed a
//! schedule (added, changed, paused or resumed). A node watches the file (`ratchet-service`
//! does, with notify) and claims, and looks at the schedules, at once when another process
//! rang it, so jobs and schedules the CLI or another node adds do not wait for the node's poll.
//!
//! A ring writes the ringer's [`Token`] at the start of the file. The file changes for every
//! ring, the watcher's own included; the token lets a node tell the rings of its own store
//! (after which it has already woken its claimer in-process) from those of other processes.
//! Ringing is best-effort: a process that cannot write the file (a read-only folder, another
//! user's file) leaves the jobs to the nodes' polls, as before the bell existed.

use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Who rang: this process's id and the number of the store in it, unique among the processes
/// that share a database file on one machine.
type Token = [u8; 8];

/// The bell of one SQLite database file.
#[derive(Debug)]
pub(crate) struct Doorbell {
    path: PathBuf,
    token: Token,
    /// Whether this store rings: the CLI's always does; a node's while other nodes share its
    /// database (`Store::set_doorbell_ringing`).
    rings: AtomicBool,
}

impl Doorbell {
    /// The bell beside `database`; this store rings it when `rings`.
    pub(crate) fn beside(database: &Path, rings: bool) -> Doorbell {
        static STORES: AtomicU32 = AtomicU32::new(0);
        let mut name = database.as_os_str().to_owned();
        name.push("-wake");
        let mut token = [0; 8];
        token[..4].copy_from_slice(&std::process::id().to_be_bytes());
        token[4..].copy_from_slice(&STORES.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        Doorbell { path: PathBuf::from(name), token, rings: AtomicBool::new(rings) }
    }

    /// The file a node watches.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn set_ringing(&self, rings: bool) -> bool {
        self.rings.swap(rings, Ordering::Relaxed)
    }

    /// Writes this store's token into the file (made when missing), so that the nodes
    /// watching it wake. Opened by name at each ring: a file removed or replaced meanwhile
    /// (which watching nodes notice and watch again) is the one rung.
    pub(crate) fn ring(&self) {
        if self.rings() {
            self.ring_anyway();
        }
    }

    /// Whether this store rings after its commits.
    pub(crate) fn rings(&self) -> bool {
        self.rings.load(Ordering::Relaxed)
    }

    /// Rings whether or not this store rings after its commits: a node that starts tells the
    /// nodes already running that another shares their database.
    pub(crate) fn ring_anyway(&self) {
        let opened = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&self.path);
        if let Err(error) = opened.and_then(|file| file.write_all_at(&self.token, 0)) {
            tracing::debug!(
                "cannot ring {} (idle nodes find new jobs at their next poll): {error}",
                self.path.display()
            );
        }
    }

    /// Whether the last ring was another store's (or cannot be told from this store's: a file
    /// that cannot be read, or rung by a version that wrote one byte).
    pub(crate) fn rung_by_another(&self) -> bool {
        let mut last = Vec::with_capacity(self.token.len());
        let read = std::fs::File::open(&self.path)
            .and_then(|file| file.take(self.token.len() as u64).read_to_end(&mut last));
        read.is_err() || last != self.token
    }
}
