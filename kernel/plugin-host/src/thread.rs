//! A plugin that answers requests on a thread of its own: WASM calls are synchronous, and
//! WASI's synchronous bindings refuse to block the async runtime's threads. Async callers
//! send a request and await the answer for a bounded time.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

type Request<In, Out> = (In, tokio::sync::oneshot::Sender<Out>);

/// Why no answer came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// The thread is gone.
    Stopped,
    /// No answer within the wait.
    Late(Duration),
}

pub struct PluginThread<In, Out> {
    requests: Option<mpsc::Sender<Request<In, Out>>>,
    thread: Option<JoinHandle<()>>,
}

impl<In: Send + 'static, Out: Send + 'static> PluginThread<In, Out> {
    /// Starts thread `name`, answering each request with `answer(&mut state, request)`.
    pub fn start<S: Send + 'static>(
        name: &str,
        mut state: S,
        mut answer: impl FnMut(&mut S, In) -> Out + Send + 'static,
    ) -> PluginThread<In, Out> {
        let (requests, incoming) = mpsc::channel::<Request<In, Out>>();
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                while let Ok((input, reply)) = incoming.recv() {
                    let _ = reply.send(answer(&mut state, input));
                }
            })
            .ok();
        PluginThread { requests: Some(requests), thread }
    }

    /// Asks, and waits at most `wait` for the answer.
    pub async fn ask(&self, input: In, wait: Duration) -> Result<Out, Unanswered> {
        let requests = self.requests.as_ref().ok_or(Unanswered::Stopped)?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        requests.send((input, reply)).map_err(|_| Unanswered::Stopped)?;
        match tokio::time::timeout(wait, answer).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(_)) => Err(Unanswered::Stopped),
            Err(_) => Err(Unanswered::Late(wait)),
        }
    }
}

impl<In, Out> Drop for PluginThread<In, Out> {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
