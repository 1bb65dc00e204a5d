//! Error-pattern plugins: asked to classify every failed run. They run on a thread of their
//! own (WASM calls are synchronous); the kernel waits for the answer at most [`WAIT`], and a
//! plugin that fails or traps simply contributes nothing.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use super::wasm::{Failure, WasmErrorPattern};

/// The longest the kernel waits for classifications of one failure.
pub const WAIT: Duration = Duration::from_secs(2);

/// One plugin's reading of a failure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    /// The plugin that said it.
    pub plugin: String,
    pub pattern: String,
    pub category: String,
    pub confidence: f32,
    pub suggestions: Vec<String>,
}

/// What a failed run looked like, for the plugins.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedRun {
    pub kind: String,
    pub name: Option<String>,
    pub message: String,
    pub task: String,
    pub logs: Vec<String>,
}

struct Request {
    failure: FailedRun,
    reply: tokio::sync::oneshot::Sender<Vec<Suggestion>>,
}

#[derive(Default)]
pub struct ErrorPatterns {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl ErrorPatterns {
    pub fn start(mut plugins: Vec<WasmErrorPattern>) -> ErrorPatterns {
        if plugins.is_empty() {
            return ErrorPatterns::default();
        }
        let (requests, incoming) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("error-patterns".into())
            .spawn(move || {
                while let Ok(request) = incoming.recv() {
                    let _ = request.reply.send(classify_all(&mut plugins, &request.failure));
                }
            })
            .ok();
        ErrorPatterns { requests: Some(requests), thread }
    }

    pub fn is_empty(&self) -> bool {
        self.requests.is_none()
    }

    /// Every plugin's classifications of `failure`, most confident first; empty when there are
    /// no plugins, or they do not answer within [`WAIT`].
    pub async fn classify(&self, failure: FailedRun) -> Vec<Suggestion> {
        let Some(requests) = &self.requests else { return Vec::new() };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if requests.send(Request { failure, reply }).is_err() {
            return Vec::new();
        }
        tokio::time::timeout(WAIT, answer).await.ok().and_then(Result::ok).unwrap_or_default()
    }
}

impl Drop for ErrorPatterns {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn classify_all(plugins: &mut [WasmErrorPattern], failure: &FailedRun) -> Vec<Suggestion> {
    let input = Failure {
        kind: failure.kind.clone(),
        name: failure.name.clone(),
        message: failure.message.clone(),
        task: failure.task.clone(),
        logs: failure.logs.clone(),
    };
    let mut found = Vec::new();
    for plugin in plugins.iter_mut() {
        match plugin.classify(&input) {
            Ok(classifications) => found.extend(classifications.into_iter().map(|c| Suggestion {
                plugin: plugin.info().name.clone(),
                pattern: c.pattern,
                category: c.category,
                confidence: c.confidence,
                suggestions: c.suggestions,
            })),
            Err(error) => tracing::warn!("error-pattern plugin: {error}"),
        }
    }
    found.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    found
}
