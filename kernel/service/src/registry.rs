//! The tasks a node knows, by name and uuid, each with the source it came from and, after a
//! change that did not load, the error that keeps its previous version serving.
//!
//! A registry is a value: a reload builds the next one from the current one ([`Reload`]) and
//! the service swaps it in whole, so a reader never sees half a change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ratchet_core::config::{FileSource, LimitConfig};
use ratchet_core::task::{Task, TaskError};
use ratchet_plugin_host::loaders::{FsLoader, TaskLoader, TaskSource};

pub use ratchet_core::config::SERVER_TASKS;

#[derive(Debug, Default, Clone)]
pub struct TaskRegistry {
    by_name: BTreeMap<String, TaskEntry>,
    /// uuid to name.
    by_id: BTreeMap<String, String>,
    /// The folder or ZIP each task was loaded from, to its name: what a reload looks up.
    by_origin: BTreeMap<PathBuf, String>,
    /// Paths that hold no serving task: they never loaded, or their name is taken.
    problems: BTreeMap<PathBuf, Rejected>,
}

/// A task the node serves.
#[derive(Debug, Clone)]
pub struct TaskEntry {
    pub task: Arc<Task>,
    /// The name of the source it came from ([`SERVER_TASKS`], a `registry.sources` name, or
    /// a loader plugin's name).
    pub source: String,
    /// Why the task's files, changed since this version loaded, do not load: the version
    /// shown keeps serving until they do.
    pub load_error: Option<String>,
}

/// A folder that looked like a task but did not load.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub path: PathBuf,
    pub source: String,
    pub error: Arc<TaskError>,
}

/// What a reload of one path changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// A task appeared, or its files changed and loaded: the new version serves.
    Loaded { task: String, digest: String },
    /// The path holds the same version as before (a save without a change).
    Unchanged { task: String },
    /// The files did not load; `task` (when the path served one) keeps its previous version.
    Failed { task: Option<String>, path: PathBuf, error: String },
    /// The path is gone, and with it the task.
    Removed { task: String },
    /// Nothing was there, and nothing is.
    Nothing,
}

impl TaskRegistry {
    /// Loads every task of `roots` (task folders, ZIPs, or folders of them) through the
    /// built-in fs loader, as the source `source`. Tasks that fail to load are returned, not
    /// fatal: one broken task must not stop a server.
    pub fn load(roots: &[PathBuf], limits: &LimitConfig) -> Result<(TaskRegistry, Vec<Rejected>), String> {
        let mut registry = TaskRegistry::default();
        let rejected = registry.load_source(SERVER_TASKS, roots, limits)?;
        Ok((registry, rejected))
    }

    /// Loads every task of the file `sources`; returns those that did not load.
    pub fn load_sources(
        sources: &[FileSource],
        limits: &LimitConfig,
    ) -> Result<(TaskRegistry, Vec<Rejected>), String> {
        let mut registry = TaskRegistry::default();
        let mut rejected = Vec::new();
        for source in sources {
            let loaded = registry.load_source(&source.name, std::slice::from_ref(&source.path), limits);
            rejected.extend(loaded.map_err(|e| format!("{}: {e}", source.name))?);
        }
        Ok((registry, rejected))
    }

    /// Adds the tasks of the file source `source` (its `roots`); returns those that did not load.
    pub fn load_source(
        &mut self,
        source: &str,
        roots: &[PathBuf],
        limits: &LimitConfig,
    ) -> Result<Vec<Rejected>, String> {
        let found = FsLoader::new(roots.to_vec()).list()?;
        Ok(self.add(source, found, limits))
    }

    /// Loads and adds the tasks a loader found; returns those that did not load, and those
    /// whose name an earlier task already holds.
    pub fn add(&mut self, source: &str, found: Vec<TaskSource>, limits: &LimitConfig) -> Vec<Rejected> {
        let mut rejected = Vec::new();
        for found in found {
            let (path, loaded) = load(found, limits);
            match loaded {
                Ok(task) => {
                    if let Err(error) = self.admit(source, task) {
                        rejected.push(self.reject(source, path, error));
                    }
                }
                Err(error) => rejected.push(self.reject(source, path, error)),
            }
        }
        rejected
    }

    /// Reloads the task at `path` of the file source `source`: it appeared, changed or went.
    pub fn reload(&mut self, source: &str, path: &Path, limits: &LimitConfig) -> Reload {
        self.apply(source, path, load_path(path, limits))
    }

    /// Applies what `path` of the file source `source` holds now (`None`: no task) to the
    /// registry. A task that loaded replaces the version from the same path; files that do not
    /// load leave the previous version serving, with the error attached.
    pub fn apply(&mut self, source: &str, path: &Path, loaded: Option<Result<Task, TaskError>>) -> Reload {
        let serving = self.serving_from(path);
        let Some(loaded) = loaded else {
            self.problems.remove(path);
            return match serving {
                Some(name) => {
                    self.remove(&name);
                    Reload::Removed { task: name }
                }
                None => Reload::Nothing,
            };
        };
        let task = match loaded {
            Ok(task) => task,
            Err(error) => return self.failed(source, path, serving, error),
        };
        if let Some(name) = &serving
            && let Some(entry) = self.by_name.get_mut(name)
            && entry.task.digest == task.digest
        {
            entry.load_error = None;
            return Reload::Unchanged { task: name.clone() };
        }
        let (name, digest) = (task.name().to_owned(), task.digest.clone());
        if let Some(previous) = serving.filter(|previous| *previous != name) {
            self.remove(&previous);
        }
        match self.admit(source, task) {
            Ok(()) => {
                self.problems.remove(path);
                Reload::Loaded { task: name, digest }
            }
            Err(error) => self.failed(source, path, None, error),
        }
    }

    /// The version of the task loaded from `path`, if one is.
    pub fn serving_digest(&self, path: &Path) -> Option<String> {
        Some(self.by_name.get(self.by_origin.get(path)?)?.task.digest.clone())
    }

    fn failed(&mut self, source: &str, path: &Path, serving: Option<String>, error: TaskError) -> Reload {
        let message = error.to_string();
        match serving.as_ref().and_then(|name| self.by_name.get_mut(name)) {
            Some(entry) => entry.load_error = Some(message.clone()),
            None => {
                self.reject(source, path.to_owned(), error);
            }
        }
        Reload::Failed { task: serving, path: path.to_owned(), error: message }
    }

    /// Adds `task`, or replaces the version from the same place; a name another place holds
    /// is an error.
    fn admit(&mut self, source: &str, task: Task) -> Result<(), TaskError> {
        if let Some(holder) = self.by_name.get(task.name())
            && holder.task.origin != task.origin
        {
            return Err(TaskError::BadMetadata {
                file: task.origin.join("metadata.json").display().to_string(),
                message: format!(
                    "a task named `{}` is already loaded from {}; rename one",
                    task.name(),
                    holder.task.origin.display()
                ),
            });
        }
        for warning in &task.warnings {
            tracing::warn!("task {}: {warning}", task.name());
        }
        self.insert(source, task);
        Ok(())
    }

    fn reject(&mut self, source: &str, path: PathBuf, error: TaskError) -> Rejected {
        let rejected = Rejected { path: path.clone(), source: source.to_owned(), error: Arc::new(error) };
        self.problems.insert(path, rejected.clone());
        rejected
    }

    pub fn insert(&mut self, source: &str, task: Task) {
        let task = Arc::new(task);
        let name = task.name().to_owned();
        self.remove(&name);
        if let Some(id) = &task.metadata.uuid {
            self.by_id.insert(id.clone(), name.clone());
        }
        self.by_origin.insert(task.origin.clone(), name.clone());
        self.by_name.insert(name, TaskEntry { task, source: source.to_owned(), load_error: None });
    }

    fn remove(&mut self, name: &str) {
        let Some(entry) = self.by_name.remove(name) else { return };
        if let Some(id) = &entry.task.metadata.uuid {
            self.by_id.remove(id);
        }
        self.by_origin.remove(&entry.task.origin);
    }

    /// The name of the task loaded from `path`, if one is.
    fn serving_from(&self, path: &Path) -> Option<String> {
        self.by_origin.get(path).cloned()
    }

    /// Every path of the file source `source` that holds a task or a problem now.
    pub fn paths_of(&self, source: &str) -> Vec<PathBuf> {
        let serving = self.by_name.values().filter(|e| e.source == source).map(|e| e.task.origin.clone());
        let broken = self.problems.values().filter(|p| p.source == source).map(|p| p.path.clone());
        serving.chain(broken).collect()
    }

    /// A task by name or uuid.
    pub fn get(&self, reference: &str) -> Option<Arc<Task>> {
        self.entry(reference).map(|e| Arc::clone(&e.task))
    }

    /// A task by name or uuid, with where it came from.
    pub fn entry(&self, reference: &str) -> Option<&TaskEntry> {
        self.by_name.get(reference).or_else(|| self.by_name.get(self.by_id.get(reference)?))
    }

    /// Every task, by name.
    pub fn tasks(&self) -> impl Iterator<Item = Arc<Task>> + '_ {
        self.by_name.values().map(|e| Arc::clone(&e.task))
    }

    /// Every task with where it came from, by name.
    pub fn entries(&self) -> impl Iterator<Item = &TaskEntry> + '_ {
        self.by_name.values()
    }

    /// Paths that hold no serving task, and why.
    pub fn problems(&self) -> impl Iterator<Item = &Rejected> + '_ {
        self.problems.values()
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

/// What `path` holds now: `None` when it is no task folder or ZIP (any more).
pub fn load_path(path: &Path, limits: &LimitConfig) -> Option<Result<Task, TaskError>> {
    ratchet_plugin_host::loaders::is_task(path).then(|| ratchet_core::task::load(path, limits))
}

fn load(found: TaskSource, limits: &LimitConfig) -> (PathBuf, Result<Task, TaskError>) {
    match found {
        TaskSource::Path(path) => {
            let loaded = ratchet_core::task::load(&path, limits);
            (path, loaded)
        }
        TaskSource::Files { origin, files } => {
            let loaded = ratchet_core::task::load_files(&origin, files, limits);
            (PathBuf::from(origin), loaded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_task(dir: &Path, name: &str, code: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("metadata.json"), format!(r#"{{"name": "{name}", "version": "1.0.0"}}"#))
            .unwrap();
        std::fs::write(dir.join("input.schema.json"), r#"{"type": "object"}"#).unwrap();
        std::fs::write(dir.join("output.schema.json"), r#"{"type": "object"}"#).unwrap();
        std::fs::write(dir.join("main.js"), code).unwrap();
    }

    #[test]
    fn a_change_that_does_not_load_keeps_the_previous_version() {
        let root = tempfile::tempdir().unwrap();
        let folder = root.path().join("greet");
        write_task(&folder, "greet", "(input) => ({a: 1})");
        let limits = LimitConfig::default();
        let (mut registry, rejected) = TaskRegistry::load(&[root.path().to_owned()], &limits).unwrap();
        assert!(rejected.is_empty());
        let first = registry.get("greet").unwrap().digest.clone();

        std::fs::write(folder.join("metadata.json"), "{not json").unwrap();
        let reload = registry.reload(SERVER_TASKS, &folder, &limits);
        assert!(matches!(&reload, Reload::Failed { task: Some(t), .. } if t == "greet"), "{reload:?}");
        let entry = registry.entry("greet").unwrap();
        assert_eq!(entry.task.digest, first);
        assert!(entry.load_error.as_deref().unwrap().contains("metadata.json"), "{:?}", entry.load_error);

        write_task(&folder, "greet", "(input) => ({a: 2})");
        let reload = registry.reload(SERVER_TASKS, &folder, &limits);
        assert!(matches!(&reload, Reload::Loaded { task, .. } if task == "greet"), "{reload:?}");
        assert_ne!(registry.get("greet").unwrap().digest, first);
        assert_eq!(registry.entry("greet").unwrap().load_error, None);
        assert_eq!(
            registry.reload(SERVER_TASKS, &folder, &limits),
            Reload::Unchanged { task: "greet".into() }
        );

        std::fs::remove_dir_all(&folder).unwrap();
        assert_eq!(registry.reload(SERVER_TASKS, &folder, &limits), Reload::Removed { task: "greet".into() });
        assert!(registry.is_empty());
        assert_eq!(registry.reload(SERVER_TASKS, &folder, &limits), Reload::Nothing);
    }

    #[test]
    fn a_name_taken_elsewhere_is_a_problem_until_it_is_free() {
        let root = tempfile::tempdir().unwrap();
        write_task(&root.path().join("a"), "same", "(i) => ({})");
        let limits = LimitConfig::default();
        let (mut registry, _) = TaskRegistry::load(&[root.path().to_owned()], &limits).unwrap();
        let second = root.path().join("b");
        write_task(&second, "same", "(i) => ({b: 1})");
        let reload = registry.reload(SERVER_TASKS, &second, &limits);
        assert!(matches!(&reload, Reload::Failed { task: None, error, .. } if error.contains("rename one")));
        assert_eq!(registry.problems().count(), 1);
        assert_eq!(registry.get("same").unwrap().origin, root.path().join("a"));
        assert_eq!(registry.paths_of(SERVER_TASKS).len(), 2);

        std::fs::remove_dir_all(root.path().join("a")).unwrap();
        registry.reload(SERVER_TASKS, &root.path().join("a"), &limits);
        assert!(matches!(registry.reload(SERVER_TASKS, &second, &limits), Reload::Loaded { .. }));
        assert_eq!(registry.problems().count(), 0);
    }
}
