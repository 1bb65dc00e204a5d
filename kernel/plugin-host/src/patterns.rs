//! Error-pattern plugins: asked to classify every failed run, on a thread of their own
//! (`thread::PluginThread`); the kernel waits for the answer at most [`WAIT`], and a
//! plugin that fails or traps simply contributes nothing.

use std::time::Duration;

use serde::Serialize;

use super::thread::PluginThread;
use super::wasm::{Classification, Failure, WasmErrorPattern};

/// An error-pattern plugin, WASM or native.
pub trait PatternPlugin: Send {
    fn name(&self) -> &str;
    fn classify(&mut self, failure: &Failure) -> Result<Vec<Classification>, String>;
}

impl PatternPlugin for WasmErrorPattern {
    fn name(&self) -> &str {
        &self.info().name
    }

    fn classify(&mut self, failure: &Failure) -> Result<Vec<Classification>, String> {
        WasmErrorPattern::classify(self, failure).map_err(|e| e.to_string())
    }
}

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

#[derive(Default)]
pub struct ErrorPatterns {
    thread: Option<PluginThread<FailedRun, Vec<Suggestion>>>,
}

impl ErrorPatterns {
    pub fn start(plugins: Vec<Box<dyn PatternPlugin>>) -> ErrorPatterns {
        if plugins.is_empty() {
            return ErrorPatterns::default();
        }
        let thread = PluginThread::start("error-patterns", plugins, |plugins, failure: FailedRun| {
            classify_all(plugins, &failure)
        });
        ErrorPatterns { thread: Some(thread) }
    }

    pub fn is_empty(&self) -> bool {
        self.thread.is_none()
    }

    /// Every plugin's classifications of `failure`, most confident first; empty when there are
    /// no plugins, or they do not answer within [`WAIT`].
    pub async fn classify(&self, failure: FailedRun) -> Vec<Suggestion> {
        match &self.thread {
            Some(thread) => thread.ask(failure, WAIT).await.unwrap_or_default(),
            None => Vec::new(),
        }
    }
}

fn classify_all(plugins: &mut [Box<dyn PatternPlugin>], failure: &FailedRun) -> Vec<Suggestion> {
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
                plugin: plugin.name().to_owned(),
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
