//! Task versions a job is pinned to. A job runs the version of its task it was enqueued
//! against (its digest), even when the task's files changed since: the current version when
//! the digests agree, otherwise the version's files as `task_versions` keeps them, loaded with
//! the same checks as a folder. A task that is gone from the node fails the job, naming it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ratchet_core::Task;
use ratchet_core::config::LimitConfig;
use ratchet_core::task::TaskError;
use ratchet_storage::{Job, TaskVersion};

use crate::Service;

/// Older versions kept loaded at once; past it the cache starts over.
pub(crate) const MAX_PINNED_VERSIONS: usize = 64;

/// Older task versions loaded from the database, by digest.
#[derive(Debug, Default)]
pub(crate) struct PinnedVersions(Mutex<HashMap<String, Arc<Task>>>);

impl Service {
    /// The task version `job` runs, or why it cannot run.
    pub(crate) async fn task_for(&self, job: &Job) -> Result<Arc<Task>, String> {
        let current = self.registry().get(&job.task).ok_or_else(|| {
            format!("this node has no task named `{}` (removed from its sources?)", job.task)
        })?;
        let Some(digest) = job.task_digest.as_deref().filter(|d| *d != current.digest) else {
            return Ok(current);
        };
        if let Some(task) = self.pinned.get(digest) {
            return Ok(task);
        }
        let stored = self.store.stored_task(&job.task, Some(digest)).await.map_err(|e| e.to_string())?;
        let stored = stored.ok_or_else(|| {
            format!(
                "the version {} of task `{}` this job was enqueued for is not in the database any more",
                short(digest),
                job.task
            )
        })?;
        let task = task_from_version(&stored, &self.kernel.config().limits).map_err(|e| {
            format!("the version {} of task `{}` no longer loads: {e}", short(digest), job.task)
        })?;
        Ok(self.pinned.insert(task))
    }
}

impl PinnedVersions {
    fn get(&self, digest: &str) -> Option<Arc<Task>> {
        self.0.lock().ok()?.get(digest).cloned()
    }

    fn insert(&self, task: Task) -> Arc<Task> {
        let task = Arc::new(task);
        if let Ok(mut pinned) = self.0.lock() {
            if pinned.len() >= MAX_PINNED_VERSIONS {
                pinned.clear();
            }
            pinned.insert(task.digest.clone(), Arc::clone(&task));
        }
        task
    }
}

/// A task version from its stored files, with the checks a folder gets.
pub fn task_from_version(version: &TaskVersion, limits: &LimitConfig) -> Result<Task, TaskError> {
    let files = BTreeMap::from([
        ("metadata.json".to_owned(), version.metadata.to_string().into_bytes()),
        ("input.schema.json".to_owned(), version.input_schema.to_string().into_bytes()),
        ("output.schema.json".to_owned(), version.output_schema.to_string().into_bytes()),
        ("main.js".to_owned(), version.code.clone().into_bytes()),
    ]);
    // The folder's name is the task's name when its metadata gives none.
    let origin = PathBuf::from(format!("stored-version-{}", short(&version.digest))).join(&version.task);
    let mut task = ratchet_core::task::load_files(&origin.display().to_string(), files, limits)?;
    // The digest covers the documents as the node parsed them, so it comes out the same; the
    // stored one is the version's identity either way.
    task.digest.clone_from(&version.digest);
    Ok(task)
}

/// The first 12 digits of a digest, as logs and messages show it.
pub(crate) fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}
