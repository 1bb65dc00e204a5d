//! A real HTTP server on 127.0.0.1 for `fetch` tests. It counts every request it sees, so a
//! test can prove a denied request never reached it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;

pub struct TestServer {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    /// Bodies POSTed to `/collect`, in order.
    collected: Arc<std::sync::Mutex<Vec<String>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on a free port of 127.0.0.1, on its own thread and runtime.
    pub fn start() -> TestServer {
        let hits = Arc::new(AtomicUsize::new(0));
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, addr) = std::sync::mpsc::channel();
        let counter = Arc::clone(&hits);
        let collected: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
        let collector = Arc::clone(&collected);
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready.send(listener.local_addr().unwrap()).unwrap();
                let collect = post(move |body: String| async move {
                    collector.lock().unwrap().push(body);
                    StatusCode::NO_CONTENT
                });
                let app = routes().route("/collect", collect).layer(middleware::from_fn(
                    move |request: Request, next: Next| {
                        counter.fetch_add(1, Ordering::SeqCst);
                        next.run(request)
                    },
                ));
                axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr.recv().expect("the test server starts");
        TestServer { addr, hits, collected, shutdown: Some(shutdown), thread: Some(thread) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `127.0.0.1:PORT`, for `--allow-host`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Bodies POSTed to `/collect` so far.
    pub fn collected(&self) -> Vec<String> {
        self.collected.lock().unwrap().clone()
    }

    /// Requests seen so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Stops the server and waits until its port is closed.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.halt();
    }
}

fn routes() -> Router {
    Router::new()
        .route("/json", get(|| async { axum::Json(json!({"message": "hello", "items": [1, 2, 3]})) }))
        .route("/text", get(|| async { ([(header::CONTENT_TYPE, "text/plain")], "plain text") }))
        .route("/status/{code}", get(status))
        .route("/slow/{ms}", get(slow))
        .route("/redirect/{n}", get(redirect_chain))
        .route("/redirect-to", get(redirect_to))
        .route("/huge/{bytes}", get(|Path(bytes): Path<usize>| async move { "x".repeat(bytes) }))
        // Control characters: six bytes each once escaped into a JSON frame.
        .route("/control/{bytes}", get(|Path(bytes): Path<usize>| async move { "\u{1}".repeat(bytes) }))
        .route("/echo", post(echo))
}

async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({"status": code}))).into_response()
}

async fn slow(Path(ms): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    "slow"
}

async fn redirect_chain(Path(n): Path<u32>) -> Redirect {
    if n == 0 { Redirect::to("/json") } else { Redirect::to(&format!("/redirect/{}", n - 1)) }
}

async fn redirect_to(Query(query): Query<std::collections::HashMap<String, String>>) -> Redirect {
    Redirect::to(query.get("url").map_or("/json", String::as_str))
}

async fn echo(headers: HeaderMap, body: String) -> axum::Json<serde_json::Value> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut echoed = json!({
        "body": body,
        "content_type": header("content-type"),
        "authorization": header("authorization"),
    });
    // Only when sent: a traced run's requests carry one.
    if headers.contains_key("traceparent") {
        echoed["traceparent"] = json!(header("traceparent"));
    }
    axum::Json(echoed)
}
