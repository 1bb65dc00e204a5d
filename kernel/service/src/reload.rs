//! Hot reload: the file sources a node serves are watched (inotify through `notify`, polling
//! where the system cannot watch), changes are debounced per task, and each changed task is
//! loaded, its script checked in a worker, and swapped in whole. A change that does not load
//! leaves the previous version serving, with the error in the API, the log and an event.
//!
//! Editors save in many ways (in place; a temporary file renamed over the original; vim's
//! backup and swap files; JetBrains' `___jb_tmp___` and `___jb_old___`): every event inside a
//! task folder marks the whole task, and the task is read only once its folder has been quiet
//! for the debounce interval, so whichever way the last save went, its result is what loads.
//! Events that touch only hidden or temporary files mark nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use ratchet_core::config::FileSource;
use ratchet_core::execution::ValidateError;
use ratchet_core::task::{Task, TaskError};
use ratchet_plugin_host::Event;
use ratchet_plugin_host::loaders::candidates;

use crate::node::task_version;
use crate::versions::short;
use crate::{Reload, Service, TaskRegistry, load_path, now_ms};

/// How long a stream of changes may hold back a reload: past this many debounce intervals the
/// pending tasks reload even if their files are still changing.
const MAX_HOLD_INTERVALS: u32 = 10;

/// What the watchers report.
#[derive(Debug)]
enum Signal {
    /// Something under this task path of source `source` (an index into the sources) changed.
    Changed { source: usize, path: PathBuf },
    /// Events were lost (the kernel's queue overflowed, or a watcher failed): scan everything.
    Rescan,
}

/// How the watching is set up: the debounce interval, the polling interval, and whether to
/// poll from the start rather than only when the system cannot watch.
#[derive(Debug, Clone, Copy)]
pub struct ReloadTiming {
    pub debounce: Duration,
    pub poll: Duration,
    pub polling: bool,
}

impl Service {
    /// Watches every source in `sources` whose `watch` is set and reloads what changes, until
    /// `stop` turns true. `None` when no source is watched.
    pub fn watch_tasks(
        self: &Arc<Self>,
        sources: Vec<FileSource>,
        timing: ReloadTiming,
        stop: watch::Receiver<bool>,
    ) -> Option<JoinHandle<()>> {
        if !sources.iter().any(|s| s.watch) {
            return None;
        }
        let (signals, received) = mpsc::unbounded_channel();
        let watchers = start_watchers(&sources, timing, &signals);
        let service = Arc::clone(self);
        Some(tokio::spawn(async move {
            // The watchers live as long as the loop.
            let _watchers = watchers;
            service.debounce(sources, timing.debounce, received, stop).await;
        }))
    }

    async fn debounce(
        &self,
        sources: Vec<FileSource>,
        debounce: Duration,
        mut received: mpsc::UnboundedReceiver<Signal>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut pending: BTreeMap<usize, BTreeSet<PathBuf>> = BTreeMap::new();
        let mut rescan = false;
        // When the pending changes reload: `debounce` after the last one, but no later than
        // `MAX_HOLD_INTERVALS` after the first.
        let mut due: Option<(Instant, Instant)> = None;
        loop {
            let wake = due.map(|(quiet, latest)| quiet.min(latest));
            tokio::select! {
                signal = received.recv() => {
                    let Some(signal) = signal else { return };
                    match signal {
                        Signal::Changed { source, path } => {
                            pending.entry(source).or_default().insert(path);
                        }
                        Signal::Rescan => rescan = true,
                    }
                    let now = Instant::now();
                    let latest = due.map_or(now + debounce * MAX_HOLD_INTERVALS, |(_, latest)| latest);
                    due = Some((now + debounce, latest));
                }
                () = sleep_until(wake) => {
                    due = None;
                    if std::mem::take(&mut rescan) {
                        pending.clear();
                        self.rescan(&sources).await;
                    }
                    for (source, paths) in std::mem::take(&mut pending) {
                        self.reload_paths(&sources[source].name, paths.into_iter().collect()).await;
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    /// Reloads every task of every watched source, and forgets those that are gone.
    pub async fn rescan(&self, sources: &[FileSource]) {
        for source in sources.iter().filter(|s| s.watch) {
            let mut paths: BTreeSet<PathBuf> = self.registry().paths_of(&source.name).into_iter().collect();
            match candidates(&source.path) {
                Ok(found) => paths.extend(found),
                Err(error) => tracing::warn!("rescanning the task source {}: {error}", source.name),
            }
            self.reload_paths(&source.name, paths.into_iter().collect()).await;
        }
    }

    /// Loads what each of `paths` (task folders or ZIPs of the source `source`) holds now,
    /// checks the scripts that changed in a worker, and swaps the result in whole. Returns
    /// what changed, also logged, recorded and sent to the sinks.
    pub async fn reload_paths(&self, source: &str, paths: Vec<PathBuf>) -> Vec<Reload> {
        let limits = self.kernel.config().limits.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            paths.into_iter().map(|path| (load_path(&path, &limits), path)).collect::<Vec<_>>()
        })
        .await;
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::warn!(
                    source,
                    "loading changed tasks failed ({error}); they reload on their next change"
                );
                return Vec::new();
            }
        };
        self.apply_loaded(source, loaded).await
    }

    /// Applies what each path of the source `source` holds now (`None`: nothing), in order:
    /// a changed script is compiled in a worker first; then the next registry is swapped in
    /// whole and every change reported.
    pub(crate) async fn apply_loaded(
        &self,
        source: &str,
        loaded: Vec<(Option<Result<Task, TaskError>>, PathBuf)>,
    ) -> Vec<Reload> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.registry();
        let mut checked = Vec::with_capacity(loaded.len());
        for (loaded, path) in loaded {
            let loaded = match loaded {
                Some(Ok(task)) if current.serving_digest(&path).as_deref() != Some(task.digest.as_str()) => {
                    Some(self.check_script(task).await)
                }
                other => other,
            };
            checked.push((loaded, path));
        }
        let mut next = (*current).clone();
        let reloads: Vec<Reload> =
            checked.into_iter().map(|(loaded, path)| next.apply(source, &path, loaded)).collect();
        let next = Arc::new(next);
        self.store.set_concurrency_limits(crate::concurrency_limits(&next, &self.queue));
        self.registry.send_replace(Arc::clone(&next));
        for reload in &reloads {
            self.report_reload(source, reload, &next).await;
        }
        reloads
    }

    /// The task, once a worker compiled its script; a script that does not compile is a load
    /// error. A worker that cannot answer is no verdict on the script: the task loads.
    async fn check_script(&self, task: Task) -> Result<Task, TaskError> {
        match self.kernel.validate(&task).await {
            Ok(()) => Ok(task),
            Err(ValidateError::Task(error)) => Err(error),
            Err(ValidateError::Execution(error)) => {
                tracing::warn!("task {}: its script could not be checked ({error}); loading it", task.name());
                Ok(task)
            }
        }
    }

    /// Logs, records and emits one change; `registry` is the one it made.
    async fn report_reload(&self, source: &str, reload: &Reload, registry: &TaskRegistry) {
        match (reload, reload_loaded(reload, registry)) {
            (Reload::Loaded { task: name, digest }, Some(task)) => {
                tracing::info!(task = %name, source, "loaded version {} ({})", task.metadata.version, short(digest));
                if let Err(error) =
                    self.store.record_task_version(&task_version(&task), source, now_ms()).await
                {
                    tracing::warn!(task = %name, "cannot record the new version: {error}");
                }
                self.emit(|| {
                    let detail =
                        json!({"version": task.metadata.version, "digest": digest, "source": source});
                    Event::new("task.loaded", Some(name), None, detail)
                });
            }
            (Reload::Failed { task, path, error }, _) => {
                match task {
                    Some(name) => {
                        tracing::warn!(task = %name, "{error}; the previous version keeps serving");
                        if let Err(failure) = self.store.note_task_load_error(name, error, now_ms()).await {
                            tracing::warn!(task = %name, "cannot record the load error: {failure}");
                        }
                    }
                    None => tracing::warn!(path = %path.display(), "{error}"),
                }
                self.emit(|| {
                    let detail =
                        json!({"path": path.display().to_string(), "error": error, "source": source});
                    Event::new("task.load_failed", task.as_deref(), None, detail)
                });
            }
            (Reload::Removed { task }, _) => {
                tracing::info!(task = %task, source, "removed: its folder or ZIP is gone");
                self.emit(|| Event::new("task.removed", Some(task), None, json!({"source": source})));
            }
            _ => {}
        }
    }
}

/// The task a `Loaded` change put in `registry`.
fn reload_loaded(reload: &Reload, registry: &TaskRegistry) -> Option<Arc<Task>> {
    match reload {
        Reload::Loaded { task, .. } => registry.get(task),
        _ => None,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// One watcher per watched source: inotify where it can, polling where it cannot (the
/// system's watch limit, a file system without events), with a warning.
fn start_watchers(
    sources: &[FileSource],
    timing: ReloadTiming,
    signals: &mpsc::UnboundedSender<Signal>,
) -> Vec<Box<dyn Watcher + Send>> {
    let poll = timing.poll;
    let mut watchers = Vec::new();
    for (index, source) in sources.iter().enumerate().filter(|(_, s)| s.watch) {
        let layout = Layout::of(&source.path);
        let native = if timing.polling {
            Err(notify::Error::generic("registry.polling is set"))
        } else {
            notify::RecommendedWatcher::new(forwarder(index, &layout, signals), notify::Config::default())
                .and_then(|mut watcher| layout.watch(&mut watcher).map(|()| watcher))
        };
        match native {
            Ok(watcher) => watchers.push(Box::new(watcher) as Box<dyn Watcher + Send>),
            Err(error) => {
                if !timing.polling {
                    tracing::warn!(
                        "cannot watch the task source {} at {} ({error}); polling it every {poll:?} instead",
                        source.name,
                        source.path.display()
                    );
                }
                // notify's poller compares modification times in whole seconds, which misses an
                // edit in the second after the last scan: compare contents (task files are small).
                let config = notify::Config::default().with_poll_interval(poll).with_compare_contents(true);
                match notify::PollWatcher::new(forwarder(index, &layout, signals), config)
                    .and_then(|mut watcher| layout.watch(&mut watcher).map(|()| watcher))
                {
                    Ok(watcher) => watchers.push(Box::new(watcher)),
                    Err(error) => tracing::warn!(
                        "cannot poll the task source {} either ({error}); its tasks reload only on restart",
                        source.name
                    ),
                }
            }
        }
    }
    watchers
}

/// The event handler of a watcher of source `source`: events become signals.
fn forwarder(
    source: usize,
    layout: &Layout,
    signals: &mpsc::UnboundedSender<Signal>,
) -> impl FnMut(notify::Result<notify::Event>) + Send + 'static {
    let (layout, signals) = (layout.clone(), signals.clone());
    move |event| forward(source, &layout, &signals, event)
}

fn forward(
    source: usize,
    layout: &Layout,
    signals: &mpsc::UnboundedSender<Signal>,
    event: notify::Result<notify::Event>,
) {
    match event {
        Ok(event) if event.need_rescan() => {
            let _ = signals.send(Signal::Rescan);
        }
        Ok(event) => {
            if matches!(event.kind, notify::EventKind::Access(_)) {
                return;
            }
            for path in event.paths.iter().filter_map(|p| layout.task_of(p)) {
                let _ = signals.send(Signal::Changed { source, path });
            }
        }
        Err(error) => {
            tracing::warn!("watching tasks: {error}; rescanning");
            let _ = signals.send(Signal::Rescan);
        }
    }
}

/// What a file source is, which decides what to watch and which task a changed path belongs to.
#[derive(Debug, Clone)]
enum Layout {
    /// One task folder: any change is a change of it.
    Task(PathBuf),
    /// One ZIP: watched through its folder, only its own name counts.
    Zip(PathBuf),
    /// A folder of task folders and ZIPs: a change belongs to the entry it is under.
    Collection(PathBuf),
}

impl Layout {
    fn of(path: &Path) -> Layout {
        if path.join("metadata.json").is_file() {
            Layout::Task(path.to_owned())
        } else if path.is_file() {
            Layout::Zip(path.to_owned())
        } else {
            Layout::Collection(path.to_owned())
        }
    }

    fn watch(&self, watcher: &mut impl Watcher) -> notify::Result<()> {
        match self {
            Layout::Task(root) | Layout::Collection(root) => watcher.watch(root, RecursiveMode::Recursive),
            Layout::Zip(zip) => {
                watcher.watch(zip.parent().unwrap_or(Path::new(".")), RecursiveMode::NonRecursive)
            }
        }
    }

    /// The task path a change at `changed` belongs to, unless it touched only a hidden or
    /// temporary file, or nothing that can be a task.
    fn task_of(&self, changed: &Path) -> Option<PathBuf> {
        match self {
            Layout::Task(root) => (changed.starts_with(root) && !is_scratch(changed)).then(|| root.clone()),
            Layout::Zip(zip) => (changed == zip).then(|| zip.clone()),
            Layout::Collection(root) => {
                let relative = changed.strip_prefix(root).ok()?;
                let first = relative.components().next()?;
                let entry = root.join(first);
                let hidden = first.as_os_str().to_str().is_none_or(|name| name.starts_with('.'));
                let scratch = entry != changed && is_scratch(changed);
                (!hidden && !scratch).then_some(entry)
            }
        }
    }
}

/// Whether the file at `path` is an editor's or a tool's scratch file: hidden (vim's
/// `.main.js.swp`), a backup (`main.js~`), vim's write test (`4913`), JetBrains' safe-write
/// files, or a `.tmp`/`.swp` file.
fn is_scratch(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return true };
    name.starts_with('.')
        || name.ends_with('~')
        || name == "4913"
        || name.contains("___jb_")
        || [".swp", ".swx", ".tmp", ".part", ".crdownload"].iter().any(|x| name.ends_with(x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_belong_to_their_task_and_scratch_files_to_none() {
        let root = PathBuf::from("/srv/tasks");
        let collection = Layout::Collection(root.clone());
        let of = |p: &str| collection.task_of(Path::new(p));
        assert_eq!(of("/srv/tasks/greet/main.js"), Some(root.join("greet")));
        assert_eq!(of("/srv/tasks/greet/tests/one.json"), Some(root.join("greet")));
        assert_eq!(of("/srv/tasks/greet"), Some(root.join("greet")));
        assert_eq!(of("/srv/tasks/bundle.zip"), Some(root.join("bundle.zip")));
        assert_eq!(of("/srv/tasks/greet/.main.js.swp"), None);
        assert_eq!(of("/srv/tasks/greet/main.js~"), None);
        assert_eq!(of("/srv/tasks/greet/4913"), None);
        assert_eq!(of("/srv/tasks/greet/main.js___jb_tmp___"), None);
        assert_eq!(of("/srv/tasks/.bundle.zip.part"), None);
        assert_eq!(of("/srv/tasks"), None);
        assert_eq!(of("/elsewhere/x"), None);

        let single = Layout::Task(root.join("greet"));
        assert_eq!(single.task_of(&root.join("greet/main.js")), Some(root.join("greet")));
        assert_eq!(single.task_of(&root.join("greet/.swp")), None);
        let zip = Layout::Zip(root.join("one.zip"));
        assert_eq!(zip.task_of(&root.join("one.zip")), Some(root.join("one.zip")));
        assert_eq!(zip.task_of(&root.join("two.zip")), None);
    }
}
