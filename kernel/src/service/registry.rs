//! The tasks a node knows: every task folder found under the configured task folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::LimitConfig;
use crate::task::{Task, TaskError};

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
    /// Loads every subfolder (or ZIP) holding a task under each of `roots`. Tasks that fail
    /// to load are returned, not fatal: one broken task must not stop a server.
    pub fn load(roots: &[PathBuf], limits: &LimitConfig) -> Result<(TaskRegistry, Vec<Rejected>), String> {
        let mut registry = TaskRegistry::default();
        let mut rejected = Vec::new();
        for root in roots {
            for candidate in candidates(root)? {
                match crate::task::load(&candidate, limits) {
                    Ok(task) => registry.insert(task),
                    Err(error) => rejected.push(Rejected { path: candidate, error }),
                }
            }
        }
        Ok((registry, rejected))
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

fn candidates(root: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(root)
        .map_err(|e| format!("cannot read the task folder {}: {e}", root.display()))?;
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("metadata.json").is_file() || p.extension().is_some_and(|x| x == "zip"))
        .collect();
    found.sort();
    Ok(found)
}
