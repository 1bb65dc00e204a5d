//! The auth plugin (at most one): asked who each request is. It runs on a thread of its own
//! (WASM calls are synchronous); the answer is awaited at most [`WAIT`]. Auth fails closed:
//! no answer, an error or a trap is a denial.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::wasm::{Principal, WasmAuth};

/// The longest a request waits for the auth plugin.
pub const WAIT: Duration = Duration::from_secs(2);

type Reply = tokio::sync::oneshot::Sender<Result<Principal, String>>;
/// A request's headers, and where to send the answer.
type Request = (Vec<(String, String)>, Reply);

pub struct Authenticator {
    requests: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

impl Authenticator {
    pub fn start(mut plugin: WasmAuth) -> Authenticator {
        let (requests, incoming) = mpsc::channel::<Request>();
        let thread = std::thread::Builder::new()
            .name("auth".into())
            .spawn(move || {
                while let Ok((headers, reply)) = incoming.recv() {
                    let _ = reply.send(plugin.authenticate(&headers));
                }
            })
            .ok();
        Authenticator { requests: Some(requests), thread }
    }

    /// The principal the request's `headers` authenticate as, or why not.
    pub async fn authenticate(&self, headers: Vec<(String, String)>) -> Result<Principal, String> {
        let Some(requests) = &self.requests else { return Err("the auth plugin stopped".into()) };
        let (reply, answer) = tokio::sync::oneshot::channel();
        requests.send((headers, reply)).map_err(|_| "the auth plugin stopped".to_owned())?;
        match tokio::time::timeout(WAIT, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err("the auth plugin stopped".into()),
            Err(_) => Err(format!("the auth plugin did not answer within {WAIT:?}")),
        }
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
