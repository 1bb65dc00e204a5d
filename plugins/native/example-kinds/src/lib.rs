//! Example native plugins of four kinds in one library (the kernel picks the constructor by
//! the configured `kind`). Native plugins run in the kernel's process with its privileges:
//! these exist to show and test the contract, not as production plugins.
//!
//! - `error-pattern`: a failure whose message holds `config.needle` is classified
//!   `native-needle`;
//! - `auth`: `x-api-key` looked up in `config.keys` (`{"KEY": "role"}`, in clear: an example);
//! - `loader`: one task, `native-hello`;
//! - `api-surface`: `GET /` answers `{"native": true}`; `GET /panic` panics (answered 500).

use plugin_api::native::{NativeApiSurface, NativeAuth, NativeErrorPattern, NativeLoader};
use plugin_api::{Classification, Failure, Manifest, PluginError, Principal, Request, Response, TaskFiles};
use serde_json::Value;

fn settings(config: &str) -> Result<Value, PluginError> {
    serde_json::from_str(config).map_err(|e| PluginError::InvalidInput(format!("config is not JSON: {e}")))
}

struct Needle(String);

impl NativeErrorPattern for Needle {
    fn manifest(&self) -> Manifest {
        Manifest::new("native-needle", env!("CARGO_PKG_VERSION"), "classifies failures mentioning a word")
    }

    fn classify(&mut self, failure: &Failure) -> Vec<Classification> {
        if self.0.is_empty() || !failure.message.contains(&self.0) {
            return Vec::new();
        }
        vec![Classification {
            pattern: "native-needle".into(),
            category: "javascript".into(),
            confidence: 0.9,
            suggestions: vec![format!("the message mentions `{}`", self.0)],
        }]
    }
}

struct Keys(serde_json::Map<String, Value>);

impl NativeAuth for Keys {
    fn manifest(&self) -> Manifest {
        Manifest::new("native-keys", env!("CARGO_PKG_VERSION"), "API keys from the config (example)")
    }

    fn authenticate(&mut self, headers: &[(String, String)]) -> Result<Principal, PluginError> {
        let key = headers.iter().find(|(name, _)| name == "x-api-key").map(|(_, value)| value.as_str());
        match key.and_then(|key| self.0.get(key)).and_then(Value::as_str) {
            Some(role) => Ok(Principal { id: format!("{role}-user"), roles: vec![role.to_owned()] }),
            None => Err(PluginError::Denied("no known x-api-key".into())),
        }
    }
}

struct OneTask;

impl NativeLoader for OneTask {
    fn manifest(&self) -> Manifest {
        Manifest::new("native-loader", env!("CARGO_PKG_VERSION"), "one built-in task")
    }

    fn list_tasks(&mut self) -> Result<Vec<TaskFiles>, PluginError> {
        let file = |path: &str, text: &str| (path.to_owned(), text.as_bytes().to_vec());
        Ok(vec![TaskFiles {
            name: "native-hello".into(),
            files: vec![
                file("metadata.json", r#"{"version": "1.0.0"}"#),
                file("input.schema.json", r#"{"type": "object"}"#),
                file("output.schema.json", r#"{"type": "object"}"#),
                file("main.js", "function main(input) { return { hello: 'from a native loader' }; }"),
            ],
        }])
    }
}

struct Routes;

impl NativeApiSurface for Routes {
    fn manifest(&self) -> Manifest {
        Manifest::new("native-routes", env!("CARGO_PKG_VERSION"), "GET / and a route that panics")
    }

    fn handle(&mut self, request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => Response::json(200, r#"{"native": true}"#),
            ("GET", "/panic") => panic!("asked to panic"),
            _ => Response::json(
                404,
                r#"{"error": {"code": "not_found", "message": "no such route", "details": null}}"#,
            ),
        }
    }
}

plugin_api::export_native_abi!();
plugin_api::export_native!(error_pattern, |config: &str| {
    Ok::<_, PluginError>(Needle(settings(config)?["needle"].as_str().unwrap_or_default().to_owned()))
});
plugin_api::export_native!(auth, |config: &str| {
    Ok::<_, PluginError>(Keys(settings(config)?["keys"].as_object().cloned().unwrap_or_default()))
});
plugin_api::export_native!(loader, |_config: &str| Ok::<_, PluginError>(OneTask));
plugin_api::export_native!(api_surface, |_config: &str| Ok::<_, PluginError>(Routes));
