//! Configuration: built-in defaults, then a YAML file, then `RATCHET_*` environment variables.
//!
//! Nested keys in the environment are joined with `__` (`RATCHET_WORKERS__COUNT=4`). Unknown
//! keys and malformed values are errors that name the key.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use plugin_api::PluginKind;
use serde::{Deserialize, Serialize};

/// The file read from the working directory when no `--config` is given.
pub const DEFAULT_CONFIG_FILE: &str = "ratchet.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub workers: WorkerConfig,
    pub limits: LimitConfig,
    pub egress: EgressConfig,
    pub storage: StorageConfig,
    pub queue: QueueConfig,
    pub server: ServerConfig,
    pub retention: RetentionConfig,
    pub recording: RecordingConfig,
    pub registry: RegistryConfig,
    pub mcp: McpConfig,
    pub error_patterns: ErrorPatternsConfig,
    pub llm_export: LlmExportConfig,
    pub logging: LoggingConfig,
    pub secrets: SecretsConfig,
    /// Plugins to load, in order.
    pub plugins: Vec<PluginConfig>,
}

/// Where the key that seals the secrets is. The `RATCHET_SECRETS_KEY` variable, when set,
/// is the key itself and wins. The key is never stored in the database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// A file holding the key: 64 hex digits (`ratchet secrets keygen` writes one).
    pub key_file: Option<PathBuf>,
}

/// What the record of a run keeps: per-run budgets for its logs and HTTP exchanges (so one run
/// cannot grow the kernel's memory or the database without bound), and the names whose values
/// are masked wherever a run's data leaves the process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordingConfig {
    /// Log bytes kept per run; past it lines are dropped and counted, and a last line says so.
    pub max_log_bytes: ByteSize,
    /// Bytes of HTTP exchanges (URLs, headers, bodies) recorded per run; past it bodies are
    /// recorded as truncated, with their size and SHA-256.
    pub max_http_bytes: ByteSize,
    /// Header and query-parameter names masked besides the built-in ones (case-insensitive;
    /// names containing secret, token, key, password, signature, credential or session are
    /// always masked).
    pub mask_names: Vec<String>,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            max_log_bytes: ByteSize(2 * MIB),
            max_http_bytes: ByteSize(8 * MIB),
            mask_names: Vec::new(),
        }
    }
}

/// The built-in error patterns (`builtin:error-patterns`), which classify every failed run with
/// a confidence and suggestions: on unless `builtin` is false and no `patterns` are given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorPatternsConfig {
    /// Use the built-in patterns.
    pub builtin: bool,
    /// Patterns of your own, checked before the built-in ones (one with a built-in's id
    /// replaces it): `{id, category, kinds, names, any_text, suggestions, confidence}`.
    pub patterns: Vec<serde_json::Value>,
    /// Matches below this confidence (0 to 1) are not reported.
    pub match_threshold: f64,
}

impl Default for ErrorPatternsConfig {
    fn default() -> Self {
        ErrorPatternsConfig { builtin: true, patterns: Vec::new(), match_threshold: 0.0 }
    }
}

/// The kernel's own log, on stderr (which lines: `RATCHET_LOG`, an env-filter directive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    pub format: LogFormat,
}

/// `text` (coloured on a terminal) or `json` (one JSON object per line, for log shippers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Failure reports (`ratchet explain`) as an LLM reads them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmExportConfig {
    /// The most a report may take, in tokens (about 4 characters each): past it the oldest
    /// log lines, then the earliest HTTP exchanges, are left out, and the report says so.
    pub max_context_tokens: usize,
}

impl Default for LlmExportConfig {
    fn default() -> Self {
        LlmExportConfig { max_context_tokens: 8000 }
    }
}

/// The name of the plugin `error_patterns` adds, unless a configured plugin has it already.
pub const BUILTIN_PATTERNS: &str = "error-patterns";

impl Config {
    /// `plugins`, and the built-in error patterns when `error_patterns` asks for them and no
    /// configured plugin is `builtin:error-patterns` already.
    pub fn effective_plugins(&self) -> Vec<PluginConfig> {
        let mut plugins = self.plugins.clone();
        // The console sink writes in the log's format unless told otherwise.
        for plugin in plugins.iter_mut().filter(|p| p.source == "builtin:console-sink") {
            if plugin.config.is_null() {
                plugin.config = serde_json::json!({});
            }
            if let Some(config) = plugin.config.as_object_mut() {
                config.entry("format").or_insert_with(|| serde_json::json!(self.logging.format));
            }
        }
        let wanted = self.error_patterns.builtin || !self.error_patterns.patterns.is_empty();
        let configured = plugins.iter().any(|p| p.source == "builtin:error-patterns");
        if wanted && !configured {
            let name = if plugins.iter().any(|p| p.name == BUILTIN_PATTERNS) {
                format!("builtin-{BUILTIN_PATTERNS}")
            } else {
                BUILTIN_PATTERNS.to_owned()
            };
            plugins.push(PluginConfig {
                name,
                kind: PluginKind::ErrorPattern,
                source: "builtin:error-patterns".into(),
                config: serde_json::json!({
                    "builtin": self.error_patterns.builtin,
                    "patterns": self.error_patterns.patterns,
                    "match_threshold": self.error_patterns.match_threshold,
                }),
                grants: PluginGrants::default(),
                limits: PluginLimits::default(),
            });
        }
        plugins
    }
}

/// Tasks as tools for LLM agents over the Model Context Protocol: `ratchet mcp` (stdio) and
/// `/mcp` on `ratchet serve` (streamable HTTP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct McpConfig {
    /// Mount `/mcp` on `ratchet serve`.
    pub enabled: bool,
    /// Tasks exposed as tools, by name globs (`*`, `?`, `[a-z]`); empty: every task (unless
    /// `tags` narrows it).
    pub tools: Vec<String>,
    /// Tasks exposed as tools, by tag; a task matching `tools` or `tags` is exposed.
    pub tags: Vec<String>,
    /// Hide every tool that changes anything (runs, enqueues, cancels): agents only read.
    pub read_only: bool,
    /// Longest a tool call waits for its run, in seconds; a run still going then is answered
    /// with its execution id to poll (`ratchet_get_execution`).
    pub call_wait_secs: f64,
    /// `Host` names `/mcp` answers (DNS rebinding protection); empty: loopback names only
    /// (`localhost`, `127.0.0.1`, `::1`). A server reached by another name must list it.
    pub allowed_hosts: Vec<String>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            enabled: true,
            tools: Vec::new(),
            tags: Vec::new(),
            read_only: false,
            call_wait_secs: 25.0,
            allowed_hosts: Vec::new(),
        }
    }
}

impl McpConfig {
    /// `tools`, compiled; a pattern that is not a glob is an error naming it.
    pub fn tool_patterns(&self) -> Result<Vec<glob::Pattern>, ConfigError> {
        self.tools
            .iter()
            .map(|pattern| {
                glob::Pattern::new(pattern).map_err(|error| {
                    ConfigError(format!(
                        "mcp.tools: `{pattern}` is not a glob ({error}); use task names with `*`, `?` or `[a-z]`"
                    ))
                })
            })
            .collect()
    }
}

/// Where tasks come from besides `server.tasks`, and how changes to them are picked up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Task sources, each a task folder, a ZIP, or a folder of them.
    pub sources: Vec<SourceConfig>,
    /// Whether `ratchet serve` watches the folders of `server.tasks` and reloads changed tasks.
    pub watch: bool,
    /// Milliseconds without a further change before a changed task is reloaded.
    pub debounce_ms: u64,
    /// Seconds between scans when the operating system cannot watch a folder (polling).
    pub poll_secs: f64,
    /// Scan the watched folders every `poll_secs` instead of asking the operating system for
    /// changes: for network file systems, where changes made elsewhere raise no events.
    pub polling: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig { sources: Vec::new(), watch: true, debounce_ms: 500, poll_secs: 2.0, polling: false }
    }
}

/// One task source of `registry.sources`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// How tasks, logs and the API name the source.
    pub name: String,
    /// `file://PATH` (or a plain path): a task folder, a ZIP, or a folder of them.
    pub uri: String,
    /// Whether `ratchet serve` reloads its tasks when they change (file sources).
    #[serde(default = "yes")]
    pub watch: bool,
    /// An HTTPS registry's minisign public keys (base64, as `ratchet registry keygen` prints
    /// them): its index must verify with one of them.
    #[serde(default)]
    pub public_keys: Vec<String>,
    /// Seconds between polls of an HTTPS registry.
    #[serde(default = "sixty")]
    pub poll_secs: f64,
}

fn sixty() -> f64 {
    60.0
}

/// An HTTPS task registry as a node reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSource {
    pub name: String,
    /// The URL of its `index.json`.
    pub url: String,
    pub public_keys: Vec<String>,
    pub poll: std::time::Duration,
}

/// Whether `url` may be fetched: HTTPS, or plain HTTP to a loopback host (for tests and
/// local mirrors).
pub fn registry_url_allowed(url: &url::Url) -> bool {
    match url.scheme() {
        "https" => true,
        "http" => match url.host() {
            Some(url::Host::Domain(host)) => host == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

fn yes() -> bool {
    true
}

impl SourceConfig {
    /// Whether the source is an HTTP(S) registry rather than files.
    pub fn is_remote(&self) -> bool {
        let uri = self.uri.trim();
        uri.starts_with("https://") || uri.starts_with("http://")
    }

    /// The folder or ZIP of a file source; other schemes are an error naming the source.
    pub fn path(&self) -> Result<PathBuf, ConfigError> {
        let uri = self.uri.trim();
        if let Some(path) = uri.strip_prefix("file://") {
            return Ok(PathBuf::from(path));
        }
        if uri.contains("://") {
            return Err(ConfigError(format!(
                "registry.sources `{}`: `{uri}` is not a source Ratchet reads; use file://PATH \
                 (a task folder, a ZIP, or a folder of them) or https://HOST/index.json",
                self.name
            )));
        }
        Ok(PathBuf::from(uri))
    }

    /// An HTTPS registry, checked: its URL, at least one public key, a sane poll interval.
    pub fn remote(&self) -> Result<RemoteSource, ConfigError> {
        let bad = |why: String| ConfigError(format!("registry.sources `{}`: {why}", self.name));
        let url =
            url::Url::parse(self.uri.trim()).map_err(|e| bad(format!("`{}` is not a URL: {e}", self.uri)))?;
        if !registry_url_allowed(&url) {
            return Err(bad(format!(
                "`{url}`: a registry is fetched over HTTPS (plain HTTP only from a loopback address)"
            )));
        }
        if self.public_keys.is_empty() {
            return Err(bad(
                "an HTTPS registry needs `public_keys` (minisign, as `ratchet registry keygen` prints them)"
                    .into(),
            ));
        }
        if !(self.poll_secs >= 1.0 && self.poll_secs <= MAX_SECONDS) {
            return Err(bad(format!("poll_secs must be between 1 and {MAX_SECONDS}")));
        }
        Ok(RemoteSource {
            name: self.name.clone(),
            url: url.to_string(),
            public_keys: self.public_keys.clone(),
            poll: std::time::Duration::from_secs_f64(self.poll_secs),
        })
    }
}

/// A file source as a node reads it: `server.tasks` and `registry.sources` alike.
#[derive(Debug, Clone, PartialEq)]
pub struct FileSource {
    pub name: String,
    pub path: PathBuf,
    pub watch: bool,
}

impl Config {
    /// Every file source: the folders of `server.tasks` (as the source `server.tasks`), then
    /// `registry.sources`.
    pub fn file_sources(&self) -> Result<Vec<FileSource>, ConfigError> {
        let shorthand = self.server.tasks.iter().map(|path| FileSource {
            name: SERVER_TASKS.to_owned(),
            path: path.clone(),
            watch: self.registry.watch,
        });
        let named = self.registry.sources.iter().filter(|s| !s.is_remote()).map(|source| {
            Ok(FileSource { name: source.name.clone(), path: source.path()?, watch: source.watch })
        });
        shorthand.map(Ok).chain(named).collect()
    }

    /// Every HTTPS registry of `registry.sources`.
    pub fn remote_sources(&self) -> Result<Vec<RemoteSource>, ConfigError> {
        self.registry.sources.iter().filter(|s| s.is_remote()).map(SourceConfig::remote).collect()
    }
}

/// The source name of the tasks of `server.tasks`.
pub const SERVER_TASKS: &str = "server.tasks";

/// One plugin the operator enabled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Unique name: how logs and `ratchet plugins` refer to it.
    pub name: String,
    /// What it must be: `sink`, `loader`, `error-pattern`, `auth` or `api-surface`. Checked
    /// against what the plugin exports.
    #[serde(with = "plugin_kind")]
    pub kind: PluginKind,
    /// A WebAssembly component (`.wasm`), or `builtin:NAME` for a first-party native plugin.
    pub source: String,
    /// The plugin's own settings, handed to it as JSON.
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    /// Capabilities the operator grants; the plugin gets what it asks for and is granted.
    #[serde(default)]
    pub grants: PluginGrants,
    #[serde(default)]
    pub limits: PluginLimits,
}

/// A plugin kind in configuration files: its name (`sink`, `error-pattern`...).
mod plugin_kind {
    use plugin_api::PluginKind;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(kind: &PluginKind, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(kind.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PluginKind, D::Error> {
        let name = String::deserialize(deserializer)?;
        PluginKind::from_name(&name).ok_or_else(|| {
            let known: Vec<&str> = PluginKind::ALL.iter().map(|k| k.as_str()).collect();
            serde::de::Error::custom(format!(
                "`{name}` is not a plugin kind; use one of {}",
                known.join(", ")
            ))
        })
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// What a plugin may reach. Nothing by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PluginGrants {
    /// A folder the plugin sees as `/` (read and write).
    pub dir: Option<PathBuf>,
    /// Hosts (`host` or `host:port`) the plugin may call through the host's HTTP import;
    /// like `egress.allow_hosts`, they may be loopback or private.
    pub http_hosts: Vec<String>,
    /// A key-value store private to the plugin.
    pub kv: bool,
    /// Environment variables of the kernel the plugin may read (capability `env`), by name;
    /// each must be set when the plugin loads. Nothing else of the environment is visible.
    pub env: Vec<String>,
}

/// Per-plugin limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginLimits {
    /// Linear memory the plugin may grow to.
    pub memory: ByteSize,
    /// Milliseconds one call may run before it is interrupted.
    pub call_timeout_ms: u64,
}

impl Default for PluginLimits {
    fn default() -> Self {
        PluginLimits { memory: ByteSize(64 * MIB), call_timeout_ms: 1000 }
    }
}

/// How long the history is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days finished executions and jobs are kept; 0 keeps them forever.
    pub max_age_days: f64,
    /// Seconds between prunes by `ratchet serve`.
    pub interval_secs: f64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { max_age_days: 30.0, interval_secs: 3600.0 }
    }
}

/// Where Ratchet keeps its data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Folder of the embedded SQLite database (`ratchet.db`).
    pub data_dir: PathBuf,
    /// A `postgres://` URL to use PostgreSQL instead (several nodes may share it).
    pub url: Option<String>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_dir: PathBuf::from("ratchet-data"), url: None }
    }
}

/// How a node consumes jobs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Consumers: jobs this node runs or hands to its workers at once; 0 means two per worker
    /// (`2 * workers.count`). For short jobs the node also claims ahead what its workers start
    /// within 100 ms (at most 32 per worker).
    pub concurrency: usize,
    /// Seconds a claimed job is leased for; renewed by heartbeat every third of it.
    pub lease_secs: f64,
    /// Milliseconds between polls for jobs other processes enqueued; the scheduler also looks
    /// again at least this often (and at most once a second) for schedules others changed.
    /// Both are woken sooner by the database's notifications (PostgreSQL) or the doorbell file
    /// (SQLite); the poll catches what those missed.
    pub poll_interval_ms: u64,
    /// Defaults of `ratchet jobs enqueue`.
    pub max_attempts: u32,
    pub backoff_base_secs: f64,
    pub backoff_max_secs: f64,
    /// Concurrency limits by task name, over every node; each replaces the task's own
    /// `concurrency` from its metadata.
    pub limits: std::collections::BTreeMap<String, Concurrency>,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            concurrency: 0,
            lease_secs: 30.0,
            poll_interval_ms: 200,
            max_attempts: 3,
            backoff_base_secs: 1.0,
            backoff_max_secs: 600.0,
            limits: std::collections::BTreeMap::new(),
        }
    }
}

/// `ratchet serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub bind: String,
    /// Tasks: each a folder of task folders and ZIPs, one task folder, or one ZIP (the
    /// source [`SERVER_TASKS`]).
    pub tasks: Vec<PathBuf>,
    /// Seconds running jobs get to finish after SIGTERM before they are released.
    pub shutdown_grace_secs: f64,
    /// The built-in API surfaces to mount: `rest` (with its docs), `graphql`, and `dashboard`
    /// (the web dashboard at `/`, which reads the REST API).
    pub surfaces: Vec<String>,
    /// With no auth plugin the server refuses a non-loopback `bind` unless this is true.
    pub allow_unauthenticated_remote: bool,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Seconds a request may take before it is answered 503.
    pub request_timeout_secs: f64,
    /// Longest a synchronous run is awaited, in seconds; a run still going then is answered
    /// 202 with its execution id.
    pub run_wait_secs: f64,
    /// Synchronous runs in progress at once; more are answered 503 with Retry-After.
    pub max_sync_runs: usize,
    /// Requests per second each client address may make (0: unlimited), and the burst.
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    /// Reverse proxies in front of the server (addresses or CIDR ranges): a request from one
    /// of them comes from the client its `X-Forwarded-For` header names. Empty: every request
    /// comes from its peer address, and the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Origins browsers may call the API from (CORS); empty: same origin only.
    pub cors_origins: Vec<String>,
    /// Seconds a connection has to send a complete request head, counted from when it opened
    /// or answered its previous request; an idle keep-alive connection is closed after it.
    pub header_read_timeout_secs: f64,
    /// Connections open at once; past it new ones are closed at once (with a warning) until
    /// some end. Capped below the process's open-file limit.
    pub max_connections: usize,
}

impl ServerConfig {
    /// `trusted_proxies` parsed; an entry that is neither an address nor a CIDR range is an
    /// error naming it.
    pub fn trusted_proxy_ranges(&self) -> Result<Vec<ipnet::IpNet>, ConfigError> {
        self.trusted_proxies
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<std::net::IpAddr>().map(Into::into))
                    .map_err(|_| {
                        ConfigError(format!(
                            "server.trusted_proxies: `{entry}` is neither an IP address nor a CIDR range \
                             (such as 10.0.0.5 or 10.0.0.0/8)"
                        ))
                    })
            })
            .collect()
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: "127.0.0.1:8000".into(),
            tasks: vec![PathBuf::from("examples/tasks")],
            shutdown_grace_secs: 30.0,
            surfaces: vec!["rest".into(), "graphql".into(), "dashboard".into()],
            allow_unauthenticated_remote: false,
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 60.0,
            run_wait_secs: 30.0,
            max_sync_runs: 256,
            rate_limit_per_second: 100,
            rate_limit_burst: 200,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            header_read_timeout_secs: 10.0,
            max_connections: 1024,
        }
    }
}

/// The JavaScript worker pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerConfig {
    /// Worker processes kept by a long-running kernel (`serve`, `test`).
    pub count: usize,
    /// Runs after which a worker is replaced by a fresh process.
    pub max_runs: u32,
    /// Path of the `ratchet-worker` binary; by default found next to `ratchet`.
    pub binary: Option<PathBuf>,
    /// Largest protocol frame accepted from a worker, in bytes.
    pub max_frame_bytes: usize,
    /// Seconds between health pings of an idle worker.
    pub ping_interval_secs: u64,
    /// Seconds a new worker has to complete its handshake.
    pub start_timeout_secs: u64,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            count: 2,
            max_runs: 1000,
            binary: None,
            max_frame_bytes: worker_protocol::DEFAULT_MAX_FRAME_BYTES,
            ping_interval_secs: 30,
            start_timeout_secs: 10,
        }
    }
}

/// Defaults for tasks whose metadata sets no limits, and the ceilings metadata may not pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    /// Wall-clock seconds a run may take.
    pub timeout_secs: f64,
    /// Heap a run may use, e.g. `"128MB"`.
    pub memory_limit: ByteSize,
    /// The most a task's own `timeout` may ask for.
    pub max_timeout_secs: f64,
    /// The most a task's own `memory_limit` may ask for; also caps each worker's address space.
    pub max_memory_limit: ByteSize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            timeout_secs: 30.0,
            memory_limit: ByteSize(128 * MIB),
            max_timeout_secs: 3600.0,
            max_memory_limit: ByteSize(1024 * MIB),
        }
    }
}

/// HTTP for tasks: what `fetch` may reach, and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EgressConfig {
    /// Hosts (`host` or `host:port`) tasks may reach even at loopback, private or link-local
    /// addresses. Everything else must resolve to public addresses.
    pub allow_hosts: Vec<String>,
    /// Redirects followed per request; each hop is checked like the first.
    pub max_redirects: u32,
    /// Seconds one request (all its redirects included) may take.
    pub request_timeout_secs: f64,
    pub max_request_bytes: ByteSize,
    pub max_response_bytes: ByteSize,
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            allow_hosts: Vec::new(),
            max_redirects: 5,
            request_timeout_secs: 30.0,
            max_request_bytes: ByteSize(MIB),
            max_response_bytes: ByteSize(10 * MIB),
        }
    }
}

impl EgressConfig {
    /// `allow_hosts`, parsed. Errors name the entry.
    pub fn allow_rules(&self) -> Result<Vec<crate::http::HostRule>, String> {
        self.allow_hosts
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                crate::http::HostRule::parse(rule).map_err(|e| format!("egress.allow_hosts[{i}]: {e}"))
            })
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Every payload that crosses the pipe to a worker must fit in one frame with room to
    /// spare: the smaller limits are checked first (each naming itself), the frame is the last
    /// backstop.
    fn check_payload_limits(&self) -> Result<(), ConfigError> {
        let room = self.workers.max_frame_bytes.saturating_sub(worker_protocol::FRAME_HEADROOM) as u64;
        for (key, value) in [
            ("egress.max_response_bytes", self.egress.max_response_bytes.0),
            ("egress.max_request_bytes", self.egress.max_request_bytes.0),
            ("server.max_body_bytes", self.server.max_body_bytes as u64),
        ] {
            if value > room {
                return Err(ConfigError(format!(
                    "{key} ({value} bytes) does not fit in a worker frame: workers.max_frame_bytes ({}) must be at \
                     least {} bytes more; raise workers.max_frame_bytes or lower {key}",
                    self.workers.max_frame_bytes,
                    worker_protocol::FRAME_HEADROOM
                )));
            }
        }
        Ok(())
    }

    /// Loads the configuration: `file` if given (it must exist), else `ratchet.yaml` if present.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(path) if !path.is_file() => {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            Some(path) => {
                tracing::debug!("configuration from {}", path.display());
                figment = figment.merge(Yaml::file_exact(path));
            }
            // Optional: a missing `ratchet.yaml` leaves the defaults in place.
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                tracing::debug!("configuration from ./{DEFAULT_CONFIG_FILE}");
                figment = figment.merge(Yaml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => tracing::debug!("no configuration file: the defaults and RATCHET_* variables"),
        }
        let env = Env::prefixed("RATCHET_").split("__").filter(|key| key.as_str().contains('.'));
        let config: Config = figment.merge(env).extract().map_err(|e| ConfigError(e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check_sources(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::from([SERVER_TASKS]);
        for source in &self.registry.sources {
            if source.name.trim().is_empty() || !names.insert(source.name.as_str()) {
                return Err(ConfigError(format!(
                    "registry.sources: `{}` is not a unique source name (`{SERVER_TASKS}` is taken by server.tasks)",
                    source.name
                )));
            }
            if source.is_remote() {
                source.remote()?;
            } else {
                source.path()?;
            }
        }
        if !(50..=60_000).contains(&self.registry.debounce_ms) {
            return Err(ConfigError("registry.debounce_ms must be between 50 and 60000".into()));
        }
        if !(self.registry.poll_secs >= 0.1 && self.registry.poll_secs <= 3600.0) {
            return Err(ConfigError("registry.poll_secs must be between 0.1 and 3600".into()));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.workers.count == 0 {
            return Err(ConfigError("workers.count must be at least 1".into()));
        }
        if self.workers.max_runs == 0 {
            return Err(ConfigError("workers.max_runs must be at least 1".into()));
        }
        let limits = &self.limits;
        if limits.max_timeout_secs.is_nan() || limits.max_timeout_secs > MAX_SECONDS {
            return Err(ConfigError(format!(
                "limits.max_timeout_secs must be at most {MAX_SECONDS} (a week)"
            )));
        }
        if !(limits.timeout_secs > 0.0 && limits.timeout_secs <= limits.max_timeout_secs) {
            return Err(ConfigError(format!(
                "limits.timeout_secs must be above 0 and at most limits.max_timeout_secs ({})",
                limits.max_timeout_secs
            )));
        }
        if limits.memory_limit > limits.max_memory_limit {
            return Err(ConfigError(format!(
                "limits.memory_limit ({}) exceeds limits.max_memory_limit ({})",
                limits.memory_limit, limits.max_memory_limit
            )));
        }
        self.egress.allow_rules().map_err(ConfigError)?;
        self.server.trusted_proxy_ranges()?;
        self.check_payload_limits()?;
        self.check_sources()?;
        self.mcp.tool_patterns()?;
        if !(self.mcp.call_wait_secs >= 0.0 && self.mcp.call_wait_secs <= MAX_SECONDS) {
            return Err(ConfigError(format!("mcp.call_wait_secs must be between 0 and {MAX_SECONDS}")));
        }
        for (key, value) in [
            ("queue.lease_secs", self.queue.lease_secs),
            ("queue.backoff_base_secs", self.queue.backoff_base_secs),
            ("queue.backoff_max_secs", self.queue.backoff_max_secs),
            ("server.shutdown_grace_secs", self.server.shutdown_grace_secs),
            ("retention.interval_secs", self.retention.interval_secs),
        ] {
            if value.is_nan() || value <= 0.0 || value > MAX_SECONDS {
                return Err(ConfigError(format!("{key} must be above 0 and at most {MAX_SECONDS}")));
            }
        }
        if !(self.retention.max_age_days >= 0.0 && self.retention.max_age_days <= 36_500.0) {
            return Err(ConfigError(
                "retention.max_age_days must be between 0 (keep forever) and 36500".into(),
            ));
        }
        let mut names = std::collections::HashSet::new();
        for (i, plugin) in self.plugins.iter().enumerate() {
            if plugin.name.is_empty() || !names.insert(plugin.name.as_str()) {
                return Err(ConfigError(format!(
                    "plugins[{i}].name `{}` must be non-empty and unique",
                    plugin.name
                )));
            }
            if plugin.limits.call_timeout_ms == 0 || plugin.limits.memory.0 < MIB {
                return Err(ConfigError(format!(
                    "plugins[{i}] ({}): limits.call_timeout_ms must be above 0 and limits.memory at least 1MB",
                    plugin.name
                )));
            }
            for (j, host) in plugin.grants.http_hosts.iter().enumerate() {
                crate::http::HostRule::parse(host)
                    .map_err(|e| ConfigError(format!("plugins[{i}].grants.http_hosts[{j}]: {e}")))?;
            }
        }
        if self.queue.max_attempts == 0 {
            return Err(ConfigError("queue.max_attempts must be at least 1".into()));
        }
        let request_timeout = self.egress.request_timeout_secs;
        if request_timeout.is_nan() || request_timeout <= 0.0 || request_timeout > MAX_SECONDS {
            return Err(ConfigError(format!(
                "egress.request_timeout_secs must be above 0 and at most {MAX_SECONDS}"
            )));
        }
        Ok(())
    }
}

/// The longest any configured duration may be: a week.
const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// How many jobs of a task run at once, over every node: a number (`2`), or
/// `{"limit": 2, "per_key": 1}` where `per_key` bounds the running jobs that share one
/// concurrency key (given on enqueue, e.g. a customer id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "ConcurrencyRepr", into = "ConcurrencyRepr")]
pub struct Concurrency {
    /// Running jobs of the task, every key together.
    pub limit: Option<u32>,
    /// Running jobs of the task that share a concurrency key.
    pub per_key: Option<u32>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum ConcurrencyRepr {
    Total(u32),
    Limits {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        per_key: Option<u32>,
    },
    Other(serde_json::Value),
}

impl TryFrom<ConcurrencyRepr> for Concurrency {
    type Error = String;
    fn try_from(repr: ConcurrencyRepr) -> Result<Self, String> {
        let concurrency = match repr {
            ConcurrencyRepr::Total(limit) => Concurrency { limit: Some(limit), per_key: None },
            ConcurrencyRepr::Limits { limit, per_key } if limit.is_some() || per_key.is_some() => {
                Concurrency { limit, per_key }
            }
            ConcurrencyRepr::Limits { .. } => {
                return Err(
                    "concurrency names neither `limit` nor `per_key`; write a number of runs at once (2) or \
                     {\"limit\": 2, \"per_key\": 1}"
                        .into(),
                );
            }
            ConcurrencyRepr::Other(other) => {
                return Err(format!(
                    "concurrency is a number of runs at once (2) or {{\"limit\": 2, \"per_key\": 1}}, not {other}"
                ));
            }
        };
        if concurrency.limit == Some(0) || concurrency.per_key == Some(0) {
            return Err("a concurrency limit must be at least 1 (pause the queue to run none)".into());
        }
        Ok(concurrency)
    }
}

impl From<Concurrency> for ConcurrencyRepr {
    fn from(concurrency: Concurrency) -> ConcurrencyRepr {
        match concurrency {
            Concurrency { limit: Some(limit), per_key: None } => ConcurrencyRepr::Total(limit),
            Concurrency { limit, per_key } => ConcurrencyRepr::Limits { limit, per_key },
        }
    }
}

/// A size in bytes, written as in the original Ratchet's metadata: `"128MB"`, `"1GB"`, `"512KB"`
/// or a plain number of bytes. Units are binary (1 MB = 1024 KB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "ByteSizeRepr", into = "String")]
pub struct ByteSize(pub u64);

#[derive(Deserialize)]
#[serde(untagged)]
enum ByteSizeRepr {
    Number(u64),
    Text(String),
}

impl TryFrom<ByteSizeRepr> for ByteSize {
    type Error = String;
    fn try_from(repr: ByteSizeRepr) -> Result<Self, String> {
        match repr {
            ByteSizeRepr::Number(bytes) => Ok(ByteSize(bytes)),
            ByteSizeRepr::Text(text) => text.parse(),
        }
    }
}

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let number: u64 = digits.parse().map_err(|_| size_error(text))?;
        let unit = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 1,
            "K" | "KB" | "KIB" => KIB,
            "M" | "MB" | "MIB" => MIB,
            "G" | "GB" | "GIB" => GIB,
            _ => return Err(size_error(text)),
        };
        number.checked_mul(unit).map(ByteSize).ok_or_else(|| size_error(text))
    }
}

fn size_error(text: &str) -> String {
    format!("`{text}` is not a size; write it as a number with KB, MB or GB, e.g. \"128MB\"")
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes = self.0;
        match bytes {
            b if b >= GIB && b % GIB == 0 => write!(f, "{}GB", b / GIB),
            b if b >= MIB && b % MIB == 0 => write!(f, "{}MB", b / MIB),
            b if b >= KIB && b % KIB == 0 => write!(f, "{}KB", b / KIB),
            b => write!(f, "{b}B"),
        }
    }
}

impl From<ByteSize> for String {
    fn from(size: ByteSize) -> String {
        size.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_a_number_or_limits_and_never_zero() {
        let parse = |text: &str| serde_json::from_str::<Concurrency>(text).map_err(|e| e.to_string());
        assert_eq!(parse("2"), Ok(Concurrency { limit: Some(2), per_key: None }));
        assert_eq!(parse(r#"{"per_key": 1}"#), Ok(Concurrency { limit: None, per_key: Some(1) }));
        assert_eq!(
            parse(r#"{"limit": 4, "per_key": 1}"#),
            Ok(Concurrency { limit: Some(4), per_key: Some(1) })
        );
        assert!(parse("0").unwrap_err().contains("at least 1"));
        assert!(parse(r#"{"per_key": 0}"#).unwrap_err().contains("at least 1"));
        for bad in [r#""two""#, r#"{"perkey": 1}"#, "-1"] {
            assert!(parse(bad).unwrap_err().contains(r#"or {"limit": 2, "per_key": 1}"#), "{bad}");
        }
        for written in ["3", r#"{"limit":4,"per_key":1}"#, r#"{"per_key":1}"#] {
            let read: Concurrency = serde_json::from_str(written).unwrap();
            assert_eq!(serde_json::to_string(&read).unwrap(), written);
        }
    }

    #[test]
    fn sizes_parse_like_the_original_metadata() {
        let check =
            |text: &str, bytes: u64| assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        check("128MB", 128 * MIB);
        check("1GB", GIB);
        check("512kb", 512 * KIB);
        check("64 MiB", 64 * MIB);
        check("1000", 1000);
        for bad in ["", "MB", "12XB", "-1MB", "99999999999999999999GB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert_eq!(ByteSize(128 * MIB).to_string(), "128MB");
    }

    #[test]
    fn the_example_file_documents_the_defaults() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/ratchet.example.yaml");
        assert_eq!(Config::load(Some(&example)).unwrap(), Config::default());
    }

    #[test]
    fn durations_out_of_range_are_refused() {
        let mut config = Config::default();
        config.egress.request_timeout_secs = f64::NAN;
        assert!(config.check().unwrap_err().to_string().contains("egress.request_timeout_secs"));
        let mut config = Config::default();
        config.limits.max_timeout_secs = 1e300;
        assert!(config.check().unwrap_err().to_string().contains("limits.max_timeout_secs"));
        let mut config = Config::default();
        config.egress.allow_hosts = vec!["http://nope/".into()];
        assert!(config.check().unwrap_err().to_string().contains("egress.allow_hosts[0]"));
    }

    #[test]
    fn task_sources_are_files_with_unique_names() {
        let mut config = Config::default();
        config.registry.sources = vec![SourceConfig {
            name: "shared".into(),
            uri: "file:///srv/tasks".into(),
            watch: false,
            public_keys: Vec::new(),
            poll_secs: 60.0,
        }];
        let sources = config.file_sources().unwrap();
        assert_eq!(sources[0].name, SERVER_TASKS);
        assert_eq!(sources[1], FileSource { name: "shared".into(), path: "/srv/tasks".into(), watch: false });
        config.check().unwrap();

        config.registry.sources[0].uri = "ftp://tasks.example.com/".into();
        let error = config.check().unwrap_err().to_string();
        assert!(error.contains("`shared`") && error.contains("file://PATH"), "{error}");
        config.registry.sources[0].uri = "https://tasks.example.com/index.json".into();
        assert!(config.check().unwrap_err().to_string().contains("public_keys"));
        config.registry.sources[0].public_keys = vec!["RWQ...".into()];
        assert_eq!(config.remote_sources().unwrap()[0].url, "https://tasks.example.com/index.json");
        assert_eq!(config.file_sources().unwrap().len(), 1);
        config.registry.sources[0].uri = "http://tasks.example.com/index.json".into();
        assert!(config.check().unwrap_err().to_string().contains("loopback"));
        config.registry.sources[0].uri = "http://127.0.0.1:9/index.json".into();
        config.check().unwrap();

        config.registry.sources[0].uri = "./tasks".into();
        config.registry.sources[0].name = SERVER_TASKS.into();
        assert!(config.check().unwrap_err().to_string().contains("not a unique source name"));

        let mut config = Config::default();
        config.registry.debounce_ms = 0;
        assert!(config.check().unwrap_err().to_string().contains("registry.debounce_ms"));
    }

    #[test]
    fn a_missing_named_file_is_an_error() {
        let error = Config::load(Some(Path::new("/nonexistent/ratchet.yaml"))).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ratchet.yaml does not exist"), "{error}");
    }
}
