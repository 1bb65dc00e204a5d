//! Whether writes work: the last write that failed, and the probe that shows they work again.
//!
//! Reads keep working when writes fail (a full disk, a read-only file system), so readiness
//! needs more than a query. A node notes how each write that matters went: a run's record,
//! a secret, a pause. A small write that fits proves little on a nearly full disk (a
//! heartbeat rewrites one page of a log that already has room), so heartbeats only ever note
//! a failure; what clears one is a run's record or the probe, which commits [`PROBE_BYTES`],
//! the size of a large run record, and deletes them again.

use sea_orm::{ConnectionTrait, Value as SqlValue};

use super::queue::QueueError;
use super::{Store, now_ms};

/// What the write probe commits: room for this much means a large run's record fits.
pub const PROBE_BYTES: usize = 256 * 1024;

/// A write the database refused, and since when writes fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFailure {
    pub message: String,
    pub since_ms: i64,
}

impl Store {
    /// Notes how a write that matters went: a failure is kept (with the time writes started
    /// failing) until one succeeds.
    pub fn note_write<T, E: std::fmt::Display>(&self, result: &Result<T, E>) {
        let Ok(mut failure) = self.write_failure.lock() else { return };
        match result {
            Ok(_) => *failure = None,
            Err(error) => {
                let since_ms = failure.as_ref().map_or_else(now_ms, |f| f.since_ms);
                *failure = Some(WriteFailure { message: error.to_string(), since_ms });
            }
        }
    }

    /// Notes a small write's failure; its success clears nothing (see the module docs).
    pub(crate) fn note_small_write<T, E: std::fmt::Display>(&self, result: &Result<T, E>) {
        if result.is_err() {
            self.note_write(result);
        }
    }

    /// Why writes fail, while they do.
    pub fn write_failure(&self) -> Option<WriteFailure> {
        self.write_failure.lock().ok().and_then(|failure| failure.clone())
    }

    /// Commits [`PROBE_BYTES`] in a row of `write_probes` keyed by `node`, then deletes it,
    /// and notes how that went.
    pub async fn probe_writes(&self, node: &str) -> Result<(), QueueError> {
        let probed = self.write_probe(node).await;
        self.note_write(&probed);
        probed
    }

    async fn write_probe(&self, node: &str) -> Result<(), QueueError> {
        // Not all one byte: PostgreSQL would compress that to almost nothing.
        let padding: String = std::iter::repeat_with(fastrand::alphanumeric).take(PROBE_BYTES).collect();
        let write = "INSERT INTO write_probes (node, padding, written_at) VALUES (?, ?, ?) \
                     ON CONFLICT (node) DO UPDATE SET padding = excluded.padding, written_at = excluded.written_at";
        let values: Vec<SqlValue> = vec![node.into(), padding.into(), now_ms().into()];
        self.writer().execute_raw(self.statement(write, values)).await?;
        let delete = "DELETE FROM write_probes WHERE node = ?";
        self.writer().execute_raw(self.statement(delete, vec![node.into()])).await?;
        Ok(())
    }
}
