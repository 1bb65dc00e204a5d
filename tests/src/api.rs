//! `ratchet serve` with a configuration of the test's, and an HTTP client for its APIs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ratchet_bin;

/// A running `ratchet serve`, killed on drop.
pub struct ApiServer {
    child: Child,
    pub port: u16,
    pub root: tempfile::TempDir,
    pub client: reqwest::Client,
}

/// A response: status, headers and the body as JSON (or `Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts this is an error in the one shape with `status` and `code`, its request id
    /// the one in the `x-request-id` header.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "expected {status} {code}, got {self:?}");
        let error = &self.json["error"];
        assert_eq!(error["code"], code, "{self:?}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{self:?}");
        assert!(error.get("details").is_some(), "{self:?}");
        let id = error["request_id"].as_str().unwrap_or_default();
        assert!(!id.is_empty() && Some(id) == self.header("x-request-id"), "request id: {self:?}");
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A client that never uses a proxy from the environment.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(30)).build().unwrap()
}

impl ApiServer {
    /// Starts a server on a free loopback port over `tasks` (task folders to copy in), with
    /// `config` (YAML) as its configuration file.
    pub fn start(tasks: &[&Path], config: &str) -> ApiServer {
        let root = tempfile::tempdir().unwrap();
        let task_root = root.path().join("tasks");
        std::fs::create_dir_all(&task_root).unwrap();
        for task in tasks {
            copy_dir(task, &task_root.join(task.file_name().unwrap()));
        }
        ApiServer::start_in(root, config)
    }

    /// Starts a server over the task folders already in `ROOT/tasks`, as they are (symlinks
    /// included).
    pub fn start_in(root: tempfile::TempDir, config: &str) -> ApiServer {
        let port = free_port();
        let (child, _) = spawn(root.path(), config, &format!("127.0.0.1:{port}"));
        let mut server = ApiServer { child, port, root, client: client() };
        server.wait_until_up();
        server
    }

    /// Waits for `/health` to answer; fails with the server's log when it exits first.
    fn wait_until_up(&mut self) {
        use std::io::{Read, Write};
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = std::fs::read_to_string(self.root.path().join("serve.log")).unwrap_or_default();
                panic!("ratchet serve exited ({status}) before answering:\n{log}");
            }
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let mut answer = String::new();
                let asked = stream.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_ok();
                if asked
                    && stream.read_to_string(&mut answer).is_ok()
                    && answer.split_whitespace().nth(1) == Some("200")
                {
                    return;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(30), "ratchet serve did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Kills the server (SIGKILL) and starts it again on the same port, data and tasks.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let config = std::fs::read_to_string(self.root.path().join("ratchet.yaml")).unwrap();
        let (child, _) = spawn(self.root.path(), &config, &format!("127.0.0.1:{}", self.port));
        self.child = child;
        self.wait_until_up();
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("serve.log")).unwrap_or_default()
    }

    /// Waits until `check` holds, polling; fails naming `what`, with the server's log, after a
    /// deadline generous enough for a busy 2-core machine.
    pub async fn wait_until<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        const DEADLINE: Duration = Duration::from_secs(30);
        let started = Instant::now();
        while !check().await {
            assert!(
                started.elapsed() < DEADLINE,
                "{what}: not within {DEADLINE:?}; the server's log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `v` of the output of a synchronous run of `name` with `{}` as input (the tasks of
    /// [`crate::write_task_returning`]), or `None` while it does not run.
    pub async fn run_v(&self, name: &str) -> Option<Value> {
        let answer = self.post(&format!("/api/v1/tasks/{name}/run"), &serde_json::json!({"input": {}})).await;
        (answer.status == 200).then(|| answer.json["output"]["v"].clone())
    }

    /// The server's process id, to read its memory from /proc.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(self.client.delete(self.url(path))).await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        answer(request.send().await.unwrap()).await
    }
}

pub async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Answer { status, headers, text, json }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `ratchet --config ROOT/ratchet.yaml serve` on `bind` with its data and tasks in
/// `root`, its stderr in `ROOT/serve.log`; returns the child and the config path.
pub fn spawn(root: &Path, config: &str, bind: &str) -> (Child, PathBuf) {
    let config_path = root.join("ratchet.yaml");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(ratchet_bin())
        .arg("--config")
        .arg(&config_path)
        .args(["serve", "--bind", bind, "--data-dir"])
        .arg(root.join("data"))
        .arg("--tasks")
        .arg(root.join("tasks"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(root.join("serve.log")).unwrap()))
        .spawn()
        .unwrap();
    (child, config_path)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
