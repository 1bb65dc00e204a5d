//! The auth plugin (at most one): asked who each request is, on a thread of its own; the
//! answer is awaited at most [`WAIT`]. Auth fails closed: no answer, an error or a trap is a
//! denial.

use std::time::Duration;

use super::thread::{PluginThread, Unanswered};
use super::wasm::{Principal, WasmAuth};

/// An auth plugin, WASM or native: the principal the headers authenticate as, or why not.
pub trait AuthPlugin: Send {
    fn authenticate(&mut self, headers: &[(String, String)]) -> Result<Principal, String>;
}

impl AuthPlugin for WasmAuth {
    fn authenticate(&mut self, headers: &[(String, String)]) -> Result<Principal, String> {
        WasmAuth::authenticate(self, headers)
    }
}

/// The longest a request waits for the auth plugin.
pub const WAIT: Duration = Duration::from_secs(2);

pub struct Authenticator {
    thread: PluginThread<Vec<(String, String)>, Result<Principal, String>>,
}

impl Authenticator {
    pub fn start(plugin: Box<dyn AuthPlugin>) -> Authenticator {
        let thread = PluginThread::start("auth", plugin, |plugin, headers: Vec<(String, String)>| {
            plugin.authenticate(&headers)
        });
        Authenticator { thread }
    }

    /// The principal the request's `headers` authenticate as, or why not.
    pub async fn authenticate(&self, headers: Vec<(String, String)>) -> Result<Principal, String> {
        match self.thread.ask(headers, WAIT).await {
            Ok(result) => result,
            Err(Unanswered::Stopped) => Err("the auth plugin stopped".into()),
            Err(Unanswered::Late(wait)) => Err(format!("the auth plugin did not answer within {wait:?}")),
        }
    }
}
