//! schemathesis (from PyPI, in a virtualenv under `target/tools`) against a real
//! `ratchet serve` (docs/reliability.md H6): every check, with auth on, must pass: no server error,
//! every response in the documented status codes, content types and schemas.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::root;

/// The schemathesis release the run is pinned to.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The key `tests/schemathesis/ratchet.yaml` holds the hash of.
const KEY: &str = "schemathesis-admin-key";

pub fn run() -> anyhow::Result<()> {
    let st = install()?;
    let data = tempfile_dir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Server(start(&data, port)?);
    wait_for_health(&mut server.0, port)?;
    let url = format!("http://127.0.0.1:{port}/api/v1/openapi.json");
    println!(
        "$ st run {url} --checks all --exclude-path /api/v1/logs/live --exclude-path /api/v1/events (config tests/schemathesis/schemathesis.toml)"
    );
    let status = Command::new(&st)
        .args(["--config-file", "tests/schemathesis/schemathesis.toml", "--no-color", "run", &url])
        .args(["--checks", "all", "--header", &format!("x-api-key: {KEY}"), "--max-examples", "30"])
        // The live streams never end by design; e2e tests cover them (explain.rs, api.rs).
        .args(["--exclude-path", "/api/v1/logs/live", "--exclude-path", "/api/v1/events"])
        .current_dir(root())
        .status()
        .context("cannot run schemathesis")?;
    drop(server);
    let log = std::fs::read_to_string(data.join("serve.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&data);
    if !status.success() {
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        eprintln!(
            "last lines of the server's log:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
        bail!("schemathesis found problems in the REST API (see above; `st replay ID` reproduces one)");
    }
    Ok(())
}

/// Kills the server however the run ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `st` of a virtualenv holding the pinned schemathesis, made when missing.
fn install() -> anyhow::Result<PathBuf> {
    Ok(crate::python::venv("schemathesis", SCHEMATHESIS)?.join("bin/st"))
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = root().join(format!("target/tools/fuzz-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

fn start(data: &Path, port: u16) -> anyhow::Result<Child> {
    let log = std::fs::File::create(data.join("serve.log"))?;
    Command::new(root().join("target/debug/ratchet"))
        .args([
            "--config",
            "tests/schemathesis/ratchet.yaml",
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(data)
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .context("cannot start target/debug/ratchet (run `cargo build --workspace` first)")
}

fn wait_for_health(server: &mut Child, port: u16) -> anyhow::Result<()> {
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.try_wait()? {
            bail!("ratchet serve exited ({status}) before answering");
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("ratchet serve did not answer within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}
