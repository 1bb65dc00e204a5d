//! WASM API-surface plugins: each on a thread of its own, asked to answer the requests the
//! server routes to `/plugins/{name}/...`. A trap, a deadline or a malformed answer fails that
//! request (502); the instance is re-created for the next.

use std::time::Duration;

use super::thread::{PluginThread, Unanswered};
use super::wasm::{SurfaceRequest, SurfaceResponse, WasmApiSurface};

/// An API-surface plugin, WASM or native: its checked answer to a request.
pub trait SurfacePlugin: Send {
    fn handle(&mut self, request: SurfaceRequest) -> Result<SurfaceResponse, String>;
}

impl SurfacePlugin for WasmApiSurface {
    fn handle(&mut self, request: SurfaceRequest) -> Result<SurfaceResponse, String> {
        WasmApiSurface::handle(self, request)
    }
}

/// The longest a request waits for a surface (its own deadline is usually shorter).
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Surface {
    pub name: String,
    thread: PluginThread<SurfaceRequest, Result<SurfaceResponse, String>>,
}

impl Surface {
    pub fn start(name: String, plugin: Box<dyn SurfacePlugin>) -> Surface {
        let thread = PluginThread::start("api-surface", plugin, |plugin, request: SurfaceRequest| {
            plugin.handle(request)
        });
        Surface { name, thread }
    }

    /// The plugin's answer to `request`, or why there is none.
    pub async fn handle(&self, request: SurfaceRequest) -> Result<SurfaceResponse, String> {
        match self.thread.ask(request, WAIT).await {
            Ok(answer) => answer,
            Err(Unanswered::Stopped) => Err(format!("the api-surface plugin {} stopped", self.name)),
            Err(Unanswered::Late(wait)) => {
                Err(format!("the api-surface plugin {} did not answer within {wait:?}", self.name))
            }
        }
    }
}
