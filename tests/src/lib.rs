//! Helpers for Ratchet's end-to-end tests: locate the real binaries, write tasks, run them.

pub mod api;
pub mod databases;
pub mod proxy;
pub mod server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

/// The folder holding the workspace's built binaries (`target/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary knows its path");
    // target/debug/deps/e2e-<hash> -> target/debug
    let dir = exe.parent().and_then(Path::parent).expect("test binaries live in target/<profile>/deps");
    for binary in ["ratchet", "ratchet-full", "ratchet-worker"] {
        assert!(
            dir.join(binary).is_file(),
            "{binary} is not built in {}; run the suite with `cargo xtask ci` or build first with \
             `cargo build -p ratchet-front -p ratchet-cli -p boa-worker`",
            dir.display()
        );
    }
    dir.to_owned()
}

pub fn ratchet_bin() -> PathBuf {
    bin_dir().join("ratchet")
}

pub fn worker_bin() -> PathBuf {
    bin_dir().join("ratchet-worker")
}

/// Asserts that process `pid` runs under an address-space cap (`RLIMIT_AS`) of `bytes`, soft
/// and hard.
pub fn assert_address_space_cap(pid: u32, bytes: u64) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("the process's limits");
    let line = limits.lines().find(|l| l.starts_with("Max address space")).expect("its address-space line");
    let expected = bytes.to_string();
    assert_eq!(line.split_whitespace().filter(|w| *w == expected).count(), 2, "{line}");
}

/// The workspace root, for the sample tasks.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace").to_owned()
}

pub fn example_task(name: &str) -> PathBuf {
    workspace_root().join("examples/tasks").join(name)
}

/// A task written to a temporary folder.
pub struct TaskDir {
    dir: tempfile::TempDir,
}

impl TaskDir {
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("task")
    }

    /// Writes (or overwrites) a file of the task.
    pub fn write(&self, name: &str, content: &str) -> &Self {
        let path = self.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        self
    }

    pub fn remove(&self, name: &str) -> &Self {
        std::fs::remove_file(self.path().join(name)).unwrap();
        self
    }

    /// Zips the task folder (inside a top-level `task/` folder) and returns the archive path.
    pub fn zip(&self) -> PathBuf {
        let archive = self.dir.path().join("task.zip");
        let mut writer = zip::ZipWriter::new(std::fs::File::create(&archive).unwrap());
        let options = zip::write::SimpleFileOptions::default();
        for entry in walk(&self.path()) {
            let name = format!("task/{}", entry.strip_prefix(self.path()).unwrap().display());
            writer.start_file(name, options).unwrap();
            std::io::Write::write_all(&mut writer, &std::fs::read(&entry).unwrap()).unwrap();
        }
        writer.finish().unwrap();
        archive
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files.sort();
    files
}

/// Writes the task `name` (at `version`) into `folder`: permissive schemas, and a script
/// that returns `{v}`, so a run shows which edit serves.
pub fn write_task_returning(folder: &Path, name: &str, version: &str, v: u32) {
    std::fs::create_dir_all(folder).unwrap();
    let metadata = json!({"name": name, "version": version}).to_string();
    std::fs::write(folder.join("metadata.json"), metadata).unwrap();
    std::fs::write(folder.join("input.schema.json"), "{}").unwrap();
    std::fs::write(folder.join("output.schema.json"), "{}").unwrap();
    std::fs::write(folder.join("main.js"), format!("(input) => ({{v: {v}}})")).unwrap();
}

/// A task with permissive schemas and `code` as its `main.js`.
pub fn task(code: &str) -> TaskDir {
    task_with(code, json!({}), json!({}))
}

/// A task with the given schemas and `code` as its `main.js`.
pub fn task_with(code: &str, input_schema: Value, output_schema: Value) -> TaskDir {
    let task = TaskDir { dir: tempfile::tempdir().unwrap() };
    task.write("metadata.json", &json!({"uuid": "test-task", "version": "1.0.0", "timeout": 5}).to_string())
        .write("input.schema.json", &input_schema.to_string())
        .write("output.schema.json", &output_schema.to_string())
        .write("main.js", code);
    task
}

/// What a `ratchet` invocation did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }
}

/// Runs `ratchet ARGS` in `cwd` (a temporary folder by default) with a clean environment.
pub fn ratchet(args: &[&str]) -> Run {
    ratchet_in(&std::env::temp_dir(), args, &[])
}

pub fn ratchet_in(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let output: Output = Command::new(ratchet_bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("RATCHET_LOG")
        .envs(env.iter().copied())
        .output()
        .expect("ratchet runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `ratchet run-once --format json` of `task` with `input`: the result envelope.
pub fn run_once(task: &Path, input: &Value) -> (Run, Value) {
    let input = input.to_string();
    let run = ratchet(&[
        "run-once",
        "--from-fs",
        task.to_str().unwrap(),
        "--input-json",
        &input,
        "--format",
        "json",
    ]);
    let envelope = run.json();
    (run, envelope)
}

/// Runs `code` once with `input` and checks the envelope: `Ok(output)` or `Err((kind, name))`.
#[track_caller]
pub fn check_task(code: &str, input: Value, expect: Result<Value, (&str, &str)>) -> Value {
    let task = task(code);
    let (run, envelope) = run_once(&task.path(), &input);
    match expect {
        Ok(output) => {
            assert!(run.success(), "expected success, got {envelope:#}");
            assert_eq!(envelope["output"], output, "{envelope:#}");
        }
        Err((kind, name)) => {
            assert!(!run.success(), "expected failure, got {envelope:#}");
            assert_eq!(envelope["error"]["kind"], kind, "{envelope:#}");
            assert_eq!(envelope["error"]["name"], name, "{envelope:#}");
        }
    }
    envelope
}

/// Configuration for an in-process kernel that uses the built worker binary.
pub fn kernel_config() -> ratchet_core::Config {
    let mut config = ratchet_core::Config::default();
    config.workers.binary = Some(worker_bin());
    config
}

/// Loads a task for an in-process kernel.
pub fn load(task: &TaskDir, config: &ratchet_core::Config) -> ratchet_core::Task {
    ratchet_core::task::load(&task.path(), &config.limits).expect("the test task loads")
}

/// Writes an executable shell script posing as a worker, for protocol fault tests.
pub fn fake_worker(dir: &Path, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("fake-worker.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// The handshake line a fake worker prints.
pub const FAKE_HANDSHAKE: &str = r#"{"protocol_version":2,"timestamp":0,"message":{"type":"WorkerReady","worker_id":"fake","protocol_version":2,"capabilities":[]}}"#;

/// Resident memory of this process, in KiB.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Runs `code` once with `input` and returns the result envelope, whatever the outcome.
pub fn run_code(code: &str, input: Value) -> Value {
    run_once(&task(code).path(), &input).1
}

/// `ratchet run-once --format json` with extra arguments and environment.
pub fn run_once_with(task: &Path, input: &Value, args: &[&str], env: &[(&str, &str)]) -> (Run, Value) {
    let input = input.to_string();
    let mut all =
        vec!["run-once", "--from-fs", task.to_str().unwrap(), "--input-json", &input, "--format", "json"];
    all.extend_from_slice(args);
    let run = ratchet_in(&std::env::temp_dir(), &all, env);
    let envelope = run.json();
    (run, envelope)
}

/// A WASM plugin built by `cargo xtask build-plugins` (Rust) or `cargo xtask foreign-plugins`
/// (Python, JavaScript), by name.
pub fn component(name: &str) -> PathBuf {
    let path = workspace_root().join("target/plugins").join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask build-plugins` and `cargo xtask foreign-plugins` (cargo xtask ci does)",
        path.display()
    );
    path
}

/// The SHA-256 of `text` in lower-case hex, as API keys are configured.
pub fn sha256(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
