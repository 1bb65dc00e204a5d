//! The host imports every plugin gets (`ratchet:plugin/host`), and the store state behind
//! them. Each call checks the plugin's grants; a denied call returns a typed `denied` error,
//! never a trap, and nothing here panics on the plugin's input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::wit::latest::{host, types};
use ratchet_core::http::{Egress, EgressPolicy, FetchFailure};

/// Longest log line or error message kept from a plugin.
pub const MAX_MESSAGE: usize = 16 * 1024;
/// Largest key-value store per plugin.
pub const MAX_KV_BYTES: usize = 16 * 1024 * 1024;

/// A plugin's private key-value store, shared by its successive instances.
pub type KvStore = Arc<Mutex<HashMap<String, Vec<u8>>>>;

/// HTTP as granted to one plugin.
pub struct PluginHttp {
    pub egress: Arc<Egress>,
    pub policy: EgressPolicy,
    pub runtime: tokio::runtime::Handle,
}

pub struct HostState {
    pub plugin: String,
    pub config_json: String,
    pub kv: Option<KvStore>,
    pub http: Option<Arc<PluginHttp>>,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(" [truncated]");
    }
    text
}

fn denied(plugin: &str, what: &str, grant: &str) -> types::PluginError {
    types::PluginError::Denied(format!(
        "plugin {plugin} was not granted {what}; the operator can add `{grant}` to its grants"
    ))
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) {
        let message = truncate(message, MAX_MESSAGE);
        let plugin = self.plugin.as_str();
        match level {
            host::Level::Trace => tracing::trace!(plugin, "{message}"),
            host::Level::Debug => tracing::debug!(plugin, "{message}"),
            host::Level::Info => tracing::info!(plugin, "{message}"),
            host::Level::Warn => tracing::warn!(plugin, "{message}"),
            host::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }

    fn config(&mut self) -> String {
        self.config_json.clone()
    }

    fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, types::PluginError> {
        let Some(kv) = &self.kv else { return Err(denied(&self.plugin, "a key-value store", "kv: true")) };
        let kv =
            kv.lock().map_err(|_| types::PluginError::Failed("the key-value store is unavailable".into()))?;
        Ok(kv.get(&key).cloned())
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>) -> Result<(), types::PluginError> {
        let Some(kv) = &self.kv else { return Err(denied(&self.plugin, "a key-value store", "kv: true")) };
        let mut kv =
            kv.lock().map_err(|_| types::PluginError::Failed("the key-value store is unavailable".into()))?;
        let used: usize = kv.iter().filter(|(k, _)| **k != key).map(|(k, v)| k.len() + v.len()).sum();
        if used + key.len() + value.len() > MAX_KV_BYTES {
            return Err(types::PluginError::InvalidInput(format!(
                "the key-value store is limited to {MAX_KV_BYTES} bytes per plugin"
            )));
        }
        kv.insert(key, value);
        Ok(())
    }

    fn http(&mut self, request: types::HttpRequest) -> Result<types::HttpResponse, types::PluginError> {
        let Some(http) = &self.http else {
            return Err(denied(&self.plugin, "HTTP", "http_hosts: [HOST]"));
        };
        let fetch = worker_protocol::FetchRequest {
            correlation_id: 0,
            request_id: 0,
            method: request.method,
            url: request.url,
            headers: request.headers,
            body: (!request.body.is_empty()).then(|| String::from_utf8_lossy(&request.body).into_owned()),
        };
        // Sinks and other plugins run on their own threads, outside the async runtime.
        let result = http.runtime.block_on(http.egress.fetch(&fetch, &http.policy));
        match result {
            Ok(response) => Ok(types::HttpResponse {
                status: response.status,
                headers: response.headers,
                body: response.body.into_bytes(),
            }),
            Err(FetchFailure::Denied(denial)) => Err(types::PluginError::Denied(denial.to_string())),
            Err(FetchFailure::Network(message)) => Err(types::PluginError::Failed(message)),
            Err(FetchFailure::Timeout(after)) => {
                Err(types::PluginError::Failed(format!("no response within {after:?}")))
            }
        }
    }
}
