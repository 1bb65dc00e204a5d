//! Reading a task's files from a folder or from a ZIP archive, behind one interface.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::load::TaskError;

/// Largest file a task may contain, and largest archive content in total.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
const MAX_ARCHIVE_BYTES: u64 = 64 * 1024 * 1024;

pub(super) enum TaskFiles {
    Dir(PathBuf),
    /// Entries under the task's root inside the archive, keyed by path relative to that root.
    Zip {
        archive: PathBuf,
        entries: BTreeMap<String, Vec<u8>>,
    },
}

impl TaskFiles {
    pub(super) fn open(path: &Path) -> Result<TaskFiles, TaskError> {
        if path.is_dir() {
            return Ok(TaskFiles::Dir(path.to_owned()));
        }
        if path.is_file() {
            return read_zip(path);
        }
        Err(TaskError::NotFound { path: path.to_owned() })
    }

    /// Files held in memory, checked against the same size limits as an archive.
    pub(super) fn memory(origin: &Path, entries: BTreeMap<String, Vec<u8>>) -> Result<TaskFiles, TaskError> {
        let too_big = |message: String| TaskError::Io { file: origin.display().to_string(), message };
        if let Some((name, bytes)) = entries.iter().find(|(_, bytes)| bytes.len() as u64 > MAX_FILE_BYTES) {
            return Err(too_big(format!(
                "{name} is {} bytes; a task file may hold {MAX_FILE_BYTES}",
                bytes.len()
            )));
        }
        let total: u64 = entries.values().map(|bytes| bytes.len() as u64).sum();
        if total > MAX_ARCHIVE_BYTES {
            return Err(too_big(format!("the task holds {total} bytes; at most {MAX_ARCHIVE_BYTES}")));
        }
        Ok(TaskFiles::Zip { archive: origin.to_owned(), entries })
    }

    /// How a file of the task is named in messages.
    pub(super) fn display(&self, name: &str) -> String {
        match self {
            TaskFiles::Dir(dir) => dir.join(name).display().to_string(),
            TaskFiles::Zip { archive, .. } => format!("{}!/{name}", archive.display()),
        }
    }

    pub(super) fn read(&self, name: &str) -> Result<Option<Vec<u8>>, TaskError> {
        match self {
            TaskFiles::Dir(dir) => read_file(dir, name, &self.display(name)),
            TaskFiles::Zip { entries, .. } => Ok(entries.get(name).cloned()),
        }
    }

    /// `tests/*.json`, sorted by name.
    pub(super) fn tests(&self) -> Result<Vec<(String, Vec<u8>)>, TaskError> {
        let names: Vec<String> = match self {
            TaskFiles::Dir(dir) => list_json(&dir.join("tests"))?,
            TaskFiles::Zip { entries, .. } => entries
                .keys()
                .filter_map(|k| k.strip_prefix("tests/"))
                .filter(|k| k.ends_with(".json") && !k.contains('/'))
                .map(str::to_owned)
                .collect(),
        };
        let mut cases = Vec::with_capacity(names.len());
        for name in names {
            let path = format!("tests/{name}");
            if let Some(bytes) = self.read(&path)? {
                cases.push((path, bytes));
            }
        }
        cases.sort();
        Ok(cases)
    }
}

/// Reads `name` of the task folder `dir`: a regular file inside the folder (a symlink may
/// point elsewhere in it, not out of it). Opened without blocking and checked once open, so a
/// FIFO cannot hang the load and nothing swapped in between check and read is read.
fn read_file(dir: &Path, name: &str, shown: &str) -> Result<Option<Vec<u8>>, TaskError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |e: std::io::Error| TaskError::Io { file: shown.to_owned(), message: e.to_string() };
    let refuse = |reason: String| TaskError::NotAPlainFile { file: shown.to_owned(), reason };
    let target = match dir.join(name).canonicalize() {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    let root = dir.canonicalize().map_err(io)?;
    if !target.starts_with(&root) {
        return Err(refuse(format!(
            "is a symlink to {}, outside the task folder; copy the file into the folder instead",
            target.display()
        )));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(&target)
        .map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        return Err(refuse(format!(
            "is {}, not a regular file; a task holds plain files only",
            describe(kind)
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(TaskError::TooLarge { file: shown.to_owned(), limit: MAX_FILE_BYTES });
    }
    Ok(Some(bytes))
}

fn describe(kind: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if kind.is_dir() {
        "a folder"
    } else if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

fn list_json(dir: &Path) -> Result<Vec<String>, TaskError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(TaskError::Io { file: dir.display().to_string(), message: e.to_string() });
        }
    };
    Ok(entries
        .filter_map(Result::ok)
        .filter(|e| !e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(".json"))
        .collect())
}

fn read_zip(path: &Path) -> Result<TaskFiles, TaskError> {
    let zip_error = |message: String| TaskError::Archive { archive: path.to_owned(), message };
    let file = std::fs::File::open(path).map_err(|e| zip_error(e.to_string()))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| zip_error(format!("not a task folder and not a readable ZIP archive ({e})")))?;
    let names: Vec<String> = archive.file_names().filter_map(Result::ok).map(|n| n.into_owned()).collect();
    let root = archive_root(names.iter().map(String::as_str)).map_err(zip_error)?;
    let mut entries = BTreeMap::new();
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index).map_err(|e| zip_error(e.to_string()))?;
        let Some(name) = entry.enclosed_name().and_then(|p| p.to_str().map(str::to_owned)) else {
            let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
            return Err(zip_error(format!("entry `{name}` escapes the archive")));
        };
        let Some(relative) = name.strip_prefix(&root) else {
            continue;
        };
        if entry.is_dir() || relative.is_empty() {
            continue;
        }
        let mut bytes = Vec::new();
        (&mut entry)
            .take(MAX_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| zip_error(e.to_string()))?;
        total += bytes.len() as u64;
        if bytes.len() as u64 > MAX_FILE_BYTES || total > MAX_ARCHIVE_BYTES {
            return Err(TaskError::TooLarge {
                file: format!("{}!/{name}", path.display()),
                limit: MAX_FILE_BYTES,
            });
        }
        entries.insert(relative.to_owned(), bytes);
    }
    Ok(TaskFiles::Zip { archive: path.to_owned(), entries })
}

/// The folder inside the archive holding `metadata.json`: the archive's root, or its one
/// top-level folder (as `zip -r task.zip task/` makes).
fn archive_root<'a>(names: impl Iterator<Item = &'a str>) -> Result<String, String> {
    let mut roots: Vec<String> = names
        .filter_map(|n| n.strip_suffix("metadata.json"))
        .filter(|prefix| prefix.is_empty() || (prefix.ends_with('/') && prefix.matches('/').count() == 1))
        .map(str::to_owned)
        .collect();
    roots.sort();
    match roots.as_slice() {
        [root] => Ok(root.clone()),
        [] => Err("the archive has no metadata.json at its root or in one top-level folder".into()),
        _ => Err(format!("the archive holds several tasks ({}); put one task per archive", roots.join(", "))),
    }
}
