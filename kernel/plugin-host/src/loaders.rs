//! Task loaders: where tasks come from. The built-in `builtin:fs-loader` lists task folders
//! (and ZIPs) under configured paths; it is also how the kernel reads `server.tasks`, so the
//! built-in has no private path. WASM loaders list task folders as files, which the kernel
//! loads with exactly the checks a folder gets.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::wasm::WasmLoader;
use super::{LoadError, PluginInfo};
use ratchet_core::config::PluginConfig;

/// One task a loader found.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSource {
    /// A task folder or ZIP on disk.
    Path(PathBuf),
    /// A task's files in memory, keyed by relative path; `origin` names it in messages.
    Files { origin: String, files: BTreeMap<String, Vec<u8>> },
}

/// A source of tasks.
pub trait TaskLoader: Send {
    /// Every task the source holds now.
    fn list(&mut self) -> Result<Vec<TaskSource>, String>;
}

/// The tasks of each of `paths`: a task folder, a ZIP, or a folder of them ([`candidates`]).
pub struct FsLoader {
    paths: Vec<PathBuf>,
}

impl FsLoader {
    pub fn new(paths: Vec<PathBuf>) -> FsLoader {
        FsLoader { paths }
    }

    /// `builtin:fs-loader` with its config `{"paths": ["DIR", ...]}`.
    pub fn from_config(config: &PluginConfig) -> Result<(PluginInfo, FsLoader), LoadError> {
        let bad = |message: String| LoadError::Start { name: config.name.clone(), message };
        let paths = config.config.get("paths").and_then(|p| p.as_array()).ok_or_else(|| {
            bad("the fs-loader needs `config: {paths: [DIR, ...]}`: the folders whose subfolders are tasks".into())
        })?;
        let paths = paths
            .iter()
            .map(|p| {
                p.as_str().map(PathBuf::from).ok_or_else(|| bad(format!("config.paths: {p} is not a path")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(missing) = paths.iter().find(|p| !p.is_dir() && !is_task(p)) {
            return Err(bad(format!(
                "config.paths: {} is neither a folder nor a task ZIP",
                missing.display()
            )));
        }
        let info = PluginInfo {
            name: config.name.clone(),
            plugin: "fs-loader".into(),
            kind: plugin_api::PluginKind::Loader,
            source: config.source.clone(),
            interface: "native".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "task folders and ZIPs under configured paths".into(),
            requested: Vec::new(),
            granted: Vec::new(),
        };
        Ok((info, FsLoader::new(paths)))
    }
}

/// How the built-in loader shows when it reads `server.tasks` (`paths`): the tasks every node
/// serves without any plugin configured.
pub fn server_tasks_info(paths: &[PathBuf]) -> PluginInfo {
    let paths: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    PluginInfo {
        name: "server-tasks".into(),
        plugin: "fs-loader".into(),
        kind: plugin_api::PluginKind::Loader,
        source: "builtin:fs-loader".into(),
        interface: "native".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        description: format!("task folders and ZIPs under server.tasks: {}", paths.join(", ")),
        requested: Vec::new(),
        granted: Vec::new(),
    }
}

impl TaskLoader for FsLoader {
    fn list(&mut self) -> Result<Vec<TaskSource>, String> {
        let mut found = Vec::new();
        for path in &self.paths {
            found.extend(candidates(path)?.into_iter().map(TaskSource::Path));
        }
        Ok(found)
    }
}

/// The tasks a file source holds: the source itself when it is a task folder (it has a
/// `metadata.json`) or a ZIP; otherwise the task folders and ZIPs directly inside it (a
/// collection). Hidden entries (editors' and tools' temporary files) are never tasks.
pub fn candidates(root: &Path) -> Result<Vec<PathBuf>, String> {
    if is_task(root) {
        return Ok(vec![root.to_owned()]);
    }
    let entries = std::fs::read_dir(root)
        .map_err(|e| format!("cannot read the task folder {}: {e}", root.display()))?;
    let mut found: Vec<PathBuf> =
        entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| is_task(p) && !is_hidden(p)).collect();
    found.sort();
    Ok(found)
}

/// Whether `path` is a task folder or a ZIP of one (by its name; its content is checked when
/// it loads).
pub fn is_task(path: &Path) -> bool {
    path.join("metadata.json").is_file() || (path.extension().is_some_and(|x| x == "zip") && path.is_file())
}

/// Whether the file name of `path` is hidden (`.name`), as editors' swap and temporary files
/// are.
pub fn is_hidden(path: &Path) -> bool {
    path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'))
}

/// A WASM loader plugin.
pub struct WasmTaskLoader {
    pub name: String,
    pub plugin: WasmLoader,
}

impl TaskLoader for WasmTaskLoader {
    fn list(&mut self) -> Result<Vec<TaskSource>, String> {
        let tasks = self.plugin.list_tasks()?;
        Ok(tasks
            .into_iter()
            .map(|(task, files)| TaskSource::Files { origin: format!("plugin:{}/{task}", self.name), files })
            .collect())
    }
}
