//! The tasks a node knows: every task folder found under the configured task folders.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use ratchet_core::config::LimitConfig;
use ratchet_core::task::{Task, TaskError};
use ratchet_plugin_host::loaders::{FsLoader, TaskLoader, TaskSource};

#[derive(Debug, Default)]
pub struct TaskRegistry {
    by_name: BTreeMap<String, Arc<Task>>,
    by_id: BTreeMap<String, Arc<Task>>,
}

/// A folder that looked like a task but did not load.
#[derive(Debug)]
pub struct Rejected {
    pub path: PathBuf,
    pub error: TaskError,
}

impl TaskRegistry {
    /// Loads every subfolder (or ZIP) holding a task under each of `roots`, through the
    /// built-in fs loader. Tasks that fail to load are returned, not fatal: one broken task
    /// must not stop a server.
    pub fn load(roots: &[PathBuf], limits: &LimitConfig) -> Result<(TaskRegistry, Vec<Rejected>), String> {
        let mut registry = TaskRegistry::default();
        let sources = FsLoader::new(roots.to_vec()).list()?;
        let rejected = registry.add(sources, limits);
        Ok((registry, rejected))
    }

    /// Loads and adds the tasks a loader found; returns those that did not load, and those
    /// whose name an earlier task already holds.
    pub fn add(&mut self, sources: Vec<TaskSource>, limits: &LimitConfig) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        for source in sources {
            let (path, loaded) = match source {
                TaskSource::Path(path) => {
                    let loaded = ratchet_core::task::load(&path, limits);
                    (path, loaded)
                }
                TaskSource::Files { origin, files } => {
                    let loaded = ratchet_core::task::load_files(&origin, files, limits);
                    (PathBuf::from(origin), loaded)
                }
            };
            match loaded {
                Ok(task) if self.by_name.contains_key(task.name()) => {
                    let first = self.by_name[task.name()].origin.display().to_string();
                    let error = TaskError::BadMetadata {
                        file: path.join("metadata.json").display().to_string(),
                        message: format!(
                            "a task named `{}` is already loaded from {first}; rename one",
                            task.name()
                        ),
                    };
                    rejected.push(Rejected { path, error });
                }
                Ok(task) => {
                    for warning in &task.warnings {
                        tracing::warn!("task {}: {warning}", task.name());
                    }
                    self.insert(task);
                }
                Err(error) => rejected.push(Rejected { path, error }),
            }
        }
        rejected
    }

    pub fn insert(&mut self, task: Task) {
        let task = Arc::new(task);
        if let Some(id) = &task.metadata.uuid {
            self.by_id.insert(id.clone(), Arc::clone(&task));
        }
        self.by_name.insert(task.name().to_owned(), task);
    }

    /// A task by name or uuid.
    pub fn get(&self, reference: &str) -> Option<Arc<Task>> {
        self.by_name.get(reference).or_else(|| self.by_id.get(reference)).cloned()
    }

    /// Every task, by name.
    pub fn tasks(&self) -> impl Iterator<Item = Arc<Task>> + '_ {
        self.by_name.values().cloned()
    }

    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}
