//! HTTPS task registries through `ratchet serve`, against a registry published with
//! `ratchet registry sign` and served from a local file server (plain HTTP is allowed to
//! loopback only): a good index, an update, 304s, a rollback, a bad signature, a tampered
//! ZIP, and a restart with the registry unreachable.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::Digest as _;
use tests::api::ApiServer;
use tests::ratchet_in;

/// A static file server over `root` with ETags, counting what it answered.
struct FileServer {
    port: u16,
    answered: Arc<Mutex<Vec<(String, u16)>>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Site {
    root: Arc<PathBuf>,
    answered: Arc<Mutex<Vec<(String, u16)>>>,
}

async fn serve_file(State(site): State<Site>, headers: HeaderMap, request: Request) -> Response {
    let path = request.uri().path().trim_start_matches('/').to_owned();
    let answer = match std::fs::read(site.root.join(&path)) {
        Ok(bytes) => {
            let etag = format!("\"{}\"", hex(&sha2::Sha256::digest(&bytes)));
            if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response()
            } else {
                (StatusCode::OK, [(header::ETAG, etag)], bytes).into_response()
            }
        }
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    };
    site.answered.lock().unwrap().push((path, answer.status().as_u16()));
    answer
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl FileServer {
    async fn start(root: &Path, port: u16) -> FileServer {
        let answered = Arc::new(Mutex::new(Vec::new()));
        let site = Site { root: Arc::new(root.to_owned()), answered: Arc::clone(&answered) };
        let app = axum::Router::new().fallback(serve_file).with_state(site);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FileServer { port, answered, task }
    }

    fn count(&self, path: &str, status: u16) -> usize {
        self.answered.lock().unwrap().iter().filter(|(p, s)| p == path && *s == status).count()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A publisher's folder: keys, the tasks to publish, and the published site.
struct Publisher {
    dir: tempfile::TempDir,
}

impl Publisher {
    fn new() -> Publisher {
        let publisher = Publisher { dir: tempfile::tempdir().unwrap() };
        let keygen = ratchet_in(publisher.dir.path(), &["registry", "keygen", "--out", "keys"], &[]);
        assert!(keygen.success(), "{keygen:?}");
        let other = ratchet_in(publisher.dir.path(), &["registry", "keygen", "--out", "other-keys"], &[]);
        assert!(other.success(), "{other:?}");
        publisher
    }

    fn public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("keys/ratchet-registry.pub")).unwrap().trim().to_owned()
    }

    fn site(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    fn write_task(&self, name: &str, version: u32) {
        let folder = self.dir.path().join("tasks").join(name);
        tests::write_task_returning(&folder, name, &format!("1.0.{version}"), version);
    }

    /// `ratchet registry sign` with the publisher's key (or the other one) and `serial`.
    fn sign(&self, serial: u64, other_key: bool) {
        let key = if other_key { "other-keys/ratchet-registry.key" } else { "keys/ratchet-registry.key" };
        let serial = serial.to_string();
        let signed = ratchet_in(
            self.dir.path(),
            &["registry", "sign", "tasks", "--key", key, "--out", "site", "--serial", &serial],
            &[],
        );
        assert!(signed.success(), "{signed:?}");
    }

    fn config(&self, port: u16) -> String {
        format!(
            "workers: {{count: 1}}\nregistry:\n  sources:\n    - name: hub\n      uri: http://127.0.0.1:{port}/index.json\n      \
             public_keys: [\"{}\"]\n      poll_secs: 1\n",
            self.public_key()
        )
    }
}

async fn wait_for_log(server: &ApiServer, text: &str) {
    server.wait_until(&format!("the log says `{text}`"), || async { server.log().contains(text) }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_registry_updates_refuses_rollbacks_and_forgeries_and_restarts_offline() {
    let publisher = Publisher::new();
    publisher.write_task("alpha", 1);
    publisher.write_task("beta", 1);
    publisher.sign(10, false);
    let site = FileServer::start(&publisher.site(), 0).await;
    let mut server = ApiServer::start(&[], &publisher.config(site.port));

    server
        .wait_until("alpha serves from the registry", || async {
            server.run_v("alpha").await == Some(json!(1))
        })
        .await;
    let alpha = server.get("/api/v1/tasks/alpha").await.json;
    assert_eq!(alpha["source"], "hub", "{alpha}");
    assert_eq!(server.run_v("beta").await, Some(json!(1)));

    // Unchanged: the next polls are answered 304.
    server.wait_until("a poll is answered 304", || async { site.count("index.json", 304) >= 1 }).await;

    // A new version is published: it serves; beta is unpublished: it goes.
    publisher.write_task("alpha", 2);
    std::fs::remove_dir_all(publisher.dir.path().join("tasks/beta")).unwrap();
    publisher.sign(11, false);
    server.wait_until("alpha 1.0.2 serves", || async { server.run_v("alpha").await == Some(json!(2)) }).await;
    server
        .wait_until("beta is gone", || async { server.get("/api/v1/tasks/beta").await.status == 404 })
        .await;

    // A rollback to an older serial is refused.
    publisher.write_task("alpha", 3);
    publisher.sign(9, false);
    wait_for_log(&server, "refusing a rollback").await;
    assert_eq!(server.run_v("alpha").await, Some(json!(2)));

    // An index signed by another key is refused.
    publisher.write_task("alpha", 4);
    publisher.sign(12, true);
    wait_for_log(&server, "does not verify").await;
    assert_eq!(server.run_v("alpha").await, Some(json!(2)));

    // The registry goes away; the node restarts and serves what it accepted last.
    drop(site);
    server.restart();
    server
        .wait_until("alpha serves offline", || async { server.run_v("alpha").await == Some(json!(2)) })
        .await;
    assert!(server.log().contains("serving the index kept from before (serial 11)"), "{}", server.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_zip_is_refused_and_the_rest_of_the_index_serves() {
    let publisher = Publisher::new();
    publisher.write_task("alpha", 1);
    publisher.write_task("beta", 1);
    publisher.sign(1, false);
    let zip = std::fs::read_dir(publisher.site())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with("alpha-"))
        .unwrap();
    let mut bytes = std::fs::read(&zip).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&zip, bytes).unwrap();
    let site = FileServer::start(&publisher.site(), 0).await;
    let server = ApiServer::start(&[], &publisher.config(site.port));

    server.wait_until("beta serves", || async { server.run_v("beta").await == Some(json!(1)) }).await;
    wait_for_log(&server, "refusing it").await;
    assert_eq!(server.get("/api/v1/tasks/alpha").await.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_needs_https_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let config = "registry:\n  sources:\n    - {name: hub, uri: \"http://tasks.example.com/index.json\", public_keys: [\"x\"]}\n";
    std::fs::write(dir.path().join("ratchet.yaml"), config).unwrap();
    let checked = ratchet_in(dir.path(), &["config", "check"], &[]);
    assert!(!checked.success());
    assert!(checked.stderr.contains("over HTTPS") || checked.stdout.contains("over HTTPS"), "{checked:?}");
}
