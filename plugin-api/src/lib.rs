//! The public Rust API for Ratchet plugin authors.
//!
//! This crate is the one versioned boundary between the kernel and its plugins (docs/plugins.md).
//! It depends on nothing in the kernel. With the `guest` feature it is the SDK for WASM plugins
//! ([`guest`]); [`native`] is the contract of native plugins (shared libraries).

#[cfg(feature = "guest")]
pub mod guest;
pub mod native;

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub description: String,
    /// Capabilities asked for; the operator grants each or not.
    pub capabilities: Vec<Capability>,
}

impl Manifest {
    pub fn new(name: &str, version: &str, description: &str) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            capabilities: Vec::new(),
        }
    }

    /// Asks for a capability; the operator decides whether to grant it.
    pub fn capability(mut self, capability: Capability) -> Manifest {
        self.capabilities.push(capability);
        self
    }
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum PluginError {
    /// A capability was not granted.
    Denied(String),
    /// The input was not acceptable.
    InvalidInput(String),
    /// The work failed.
    Failed(String),
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PluginError::Denied(m) => write!(f, "denied: {m}"),
            PluginError::InvalidInput(m) => write!(f, "invalid input: {m}"),
            PluginError::Failed(m) => f.write_str(m),
        }
    }
}

/// Something that happened in the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: String,
    pub at_ms: i64,
    pub task: Option<String>,
    pub execution_id: Option<String>,
    /// Details, as a JSON object's text.
    pub data: String,
}

/// A failed run, as an error-pattern plugin sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The error kind: `task_error`, `timeout`, `memory_limit`, `invalid_input`, ...
    pub kind: String,
    /// The JavaScript error name, when there is one (`NetworkError`, `TypeError`, ...).
    pub name: Option<String>,
    pub message: String,
    pub task: String,
    /// The run's log lines.
    pub logs: Vec<String>,
}

/// What a pattern says about a failure.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The pattern's id, e.g. `network-error`.
    pub pattern: String,
    /// `network`, `database`, `javascript`, `validation`, `resources`, `authentication`.
    pub category: String,
    /// 0.0 to 1.0.
    pub confidence: f32,
    /// What the user could do.
    pub suggestions: Vec<String>,
}

/// Who a request is, once authenticated.
#[derive(Debug, Clone, PartialEq)]
pub struct Principal {
    pub id: String,
    /// `viewer`, `runner`, `admin`.
    pub roles: Vec<String>,
}

/// One task folder a loader lists: its name and its files (`metadata.json`,
/// `input.schema.json`, `output.schema.json`, `main.js`, optionally `tests/*.json`), by path
/// relative to the folder, `/`-separated.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskFiles {
    pub name: String,
    pub files: Vec<(String, Vec<u8>)>,
}

/// A request to an API surface, below its mount point `/plugins/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    /// The path below the mount point, starting with `/`.
    pub path: String,
    pub query: Option<String>,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What an API surface answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response with `status`.
    pub fn json(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

/// Version of the native plugin ABI. A native plugin reporting another value is refused.
pub const NATIVE_ABI_VERSION: u32 = 1;

/// The WIT package this crate's guest SDK is written against.
pub const WIT_PACKAGE: &str = "ratchet:plugin@0.1.0";

/// What a plugin may ask the host for, beyond its own memory and the kernel's calls. The host
/// gives a capability only when the plugin asks for it and the operator grants it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Capability {
    /// Files under the folder the operator grants (`grants.dir`), seen as `/`.
    Fs,
    /// HTTP requests to the granted hosts, through the kernel's egress policy.
    Http,
    /// A key-value store of its own, kept for the life of the node.
    Kv,
    /// The environment variables the operator lists (`grants.env`).
    Env,
}

impl Capability {
    /// Every capability, in the order the documentation lists them.
    pub const ALL: [Capability; 4] = [Capability::Fs, Capability::Http, Capability::Kv, Capability::Env];

    /// The capability named `name` (as in manifests crossing WIT, and in `plugins list`).
    pub fn from_name(name: &str) -> Option<Capability> {
        Capability::ALL.into_iter().find(|capability| capability.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Fs => "fs",
            Capability::Http => "http",
            Capability::Kv => "kv",
            Capability::Env => "env",
        }
    }
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of plugin the kernel hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PluginKind {
    /// Loads tasks from a source (folder, ZIP, registry).
    Loader,
    /// Receives logs and kernel events.
    Sink,
    /// Classifies a failed run and suggests fixes.
    ErrorPattern,
    /// Turns a request's credentials into a principal, or denies it.
    Auth,
    /// Mounts HTTP routes.
    ApiSurface,
}

impl PluginKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [PluginKind; 5] = [
        PluginKind::Loader,
        PluginKind::Sink,
        PluginKind::ErrorPattern,
        PluginKind::Auth,
        PluginKind::ApiSurface,
    ];

    /// The kind named `name` (as in configuration files and WIT world names).
    pub fn from_name(name: &str) -> Option<PluginKind> {
        PluginKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The name used in configuration files and WIT world names.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Loader => "loader",
            PluginKind::Sink => "sink",
            PluginKind::ErrorPattern => "error-pattern",
            PluginKind::Auth => "auth",
            PluginKind::ApiSurface => "api-surface",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::{Capability, PluginKind};

    #[test]
    fn capability_names_round_trip() {
        for capability in Capability::ALL {
            assert_eq!(Capability::from_name(capability.as_str()), Some(capability));
        }
        assert_eq!(Capability::from_name("net"), None);
    }

    #[test]
    fn kind_names_match_the_wit_worlds() {
        let names: Vec<_> = [
            PluginKind::Loader,
            PluginKind::Sink,
            PluginKind::ErrorPattern,
            PluginKind::Auth,
            PluginKind::ApiSurface,
        ]
        .iter()
        .map(|k| k.as_str())
        .collect();
        assert_eq!(names, ["loader", "sink", "error-pattern", "auth", "api-surface"]);
        assert!(PluginKind::ALL.iter().all(|k| PluginKind::from_name(k.as_str()) == Some(*k)));
        assert_eq!(PluginKind::from_name("sinks"), None);
    }
}
