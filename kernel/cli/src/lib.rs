//! The command line, and the composition root of `ratchet serve`: parsing and dispatch live
//! here, each command in a module of its own.
//!
//! Two binaries share it. `ratchet-full` (src/full.rs) runs every command. `ratchet`
//! (src/main.rs, [`front`]) parses the same command line, runs `run-once` itself on the core
//! alone, and hands every other command to `ratchet-full` by `exec`: a one-off run then loads a
//! binary that holds no database, HTTP server or plugin host (docs/architecture.md, "Two
//! binaries").

mod config;
mod explain;
pub mod front;
mod generate;
mod jobs;
mod logs;
mod mcp;
mod nodes;
mod plugins;
mod progress;
mod queue;
mod registry;
mod replay;
mod run;
mod schedules;
mod secrets;
mod serve;
mod tasks;

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};
use ratchet_core::Config;
use ratchet_core::config::LogFormat;

#[derive(Debug, Parser)]
#[command(name = "ratchet", version, about = "Run JavaScript tasks in supervised, isolated workers")]
pub struct Cli {
    /// Configuration file (default: ./ratchet.yaml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Colour in logs: auto (when stderr is a terminal and NO_COLOR is unset), always, never.
    #[arg(long, global = true, value_enum, value_name = "WHEN", default_value_t)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a task once and print its output.
    RunOnce(run::RunOnceArgs),
    /// Check a task (files, schemas, script) without running it.
    Validate(TaskArg),
    /// Run the cases in a task's tests/ folder.
    Test(TestArgs),
    /// Run a recorded task again, offline, and compare with the recording.
    Replay(replay::ReplayArgs),
    /// Create new things from templates.
    #[command(subcommand)]
    Generate(Generate),
    /// Run the node: task registry, worker pool, job consumers, scheduler, and the REST and
    /// GraphQL APIs (docs at /docs and /graphql/playground).
    Serve(serve::ServeArgs),
    /// Serve the tasks as tools for an LLM agent over the Model Context Protocol on stdio (the
    /// agent's host starts it; `ratchet serve` also answers at /mcp).
    Mcp(mcp::McpArgs),
    /// Queue runs and inspect or cancel them.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The history of runs.
    #[command(subcommand)]
    Executions(jobs::ExecutionsCommand),
    /// Search the log lines of recorded runs (by task, level, time, text); --follow watches new
    /// runs as they are recorded.
    Logs(logs::LogsArgs),
    /// Why a run failed: a Markdown report (error, code, patterns, attempts, logs, HTTP calls,
    /// prompts for an assistant) of an execution, or of every attempt of a job.
    Explain(explain::ExplainArgs),
    /// Pause and resume the queue, one task's jobs or every job.
    #[command(subcommand)]
    Queue(queue::QueueCommand),
    /// Secrets tasks read (`context.secrets`), sealed in the database with a key it never holds.
    #[command(subcommand)]
    Secrets(secrets::SecretsCommand),
    /// Run tasks on cron schedules.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// The nodes (`ratchet serve` processes) using this database, with their workers.
    Nodes(jobs::Common),
    /// The tasks nodes loaded, with every version seen.
    Tasks(jobs::Common),
    /// Publish tasks as a signed HTTPS registry that nodes poll (`registry.sources`).
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Check or print the effective configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// The plugins the configuration enables, and the conformance check for plugin authors.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Print the API contracts: the OpenAPI document or the GraphQL schema.
    #[command(subcommand)]
    Api(ApiCommand),
    /// Print a shell completion script: `source <(ratchet completions bash)`, or save it where
    /// your shell loads completions from.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the manual pages (ratchet.1, ratchet-jobs-list.1, ...) to a folder; `cargo xtask
    /// man` calls it.
    #[command(hide = true)]
    Man {
        /// The folder to write the pages to (created when missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// When to colour what the CLI writes for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ColorChoice {
    /// When the stream is a terminal and `NO_COLOR` is unset or empty.
    #[default]
    Auto,
    Always,
    Never,
}

impl ColorChoice {
    /// Whether to colour stderr.
    fn stderr(self) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
enum ApiCommand {
    /// The OpenAPI 3.1 document of the REST API (as served at /api/v1/openapi.json).
    Openapi,
    /// The GraphQL schema in SDL.
    GraphqlSchema,
}

/// The built-in API surfaces `names` (server.surfaces) picks, mounted by the server through
/// the same contract as any API surface.
pub fn builtin_surfaces(names: &[String]) -> Result<Vec<Box<dyn ratchet_server::ApiSurface>>, String> {
    names
        .iter()
        .map(|name| match name.as_str() {
            "rest" => Ok(Box::new(ratchet_rest::RestSurface) as Box<dyn ratchet_server::ApiSurface>),
            "graphql" => Ok(Box::new(ratchet_graphql::GraphQlSurface) as Box<dyn ratchet_server::ApiSurface>),
            // The dashboard draws everything from the REST API.
            "dashboard" if !names.iter().any(|n| n == "rest") => {
                Err("server.surfaces: `dashboard` reads the REST API; add `rest` to server.surfaces"
                    .to_owned())
            }
            "dashboard" => {
                Ok(Box::new(ratchet_dashboard::DashboardSurface) as Box<dyn ratchet_server::ApiSurface>)
            }
            other => Err(format!(
                "server.surfaces: `{other}` is not a built-in API surface; use rest, graphql and/or dashboard"
            )),
        })
        .collect()
}

/// Which database to use.
#[derive(Debug, Args)]
pub struct StorageArgs {
    /// Folder of the embedded SQLite database (default: storage.data_dir, ./ratchet-data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A postgres:// URL instead of the embedded SQLite (default: storage.url).
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

impl StorageArgs {
    pub fn apply(&self, config: &mut Config) {
        if let Some(dir) = &self.data_dir {
            config.storage.data_dir = dir.clone();
        }
        if let Some(url) = &self.database_url {
            config.storage.url = Some(url.clone());
        }
    }
}

/// The configured database, migrated; the embedded one is created when missing, and the
/// first time says so.
pub async fn open_store(config: &Config) -> anyhow::Result<ratchet_storage::Store> {
    open_store_with(config, ratchet_storage::StoreOptions::default()).await
}

/// [`open_store`] with `options` (`serve` keeps the reserve file of the data folder).
pub async fn open_store_with(
    config: &Config,
    options: ratchet_storage::StoreOptions,
) -> anyhow::Result<ratchet_storage::Store> {
    if let Some(url) = &config.storage.url {
        return Ok(ratchet_storage::Store::connect_with(url, options).await?);
    }
    let file = config.storage.data_dir.join(ratchet_storage::SQLITE_FILE);
    let new = !file.exists();
    let store = ratchet_storage::Store::open_data_dir_with(&config.storage.data_dir, options).await?;
    if new {
        say!("created the database {}", file.display());
    }
    Ok(store)
}

/// The configured database for a command that only reads: an embedded database that does not
/// exist is an error naming it (a mistyped `--data-dir` would otherwise show an empty queue).
pub async fn open_existing_store(config: &Config) -> anyhow::Result<ratchet_storage::Store> {
    if config.storage.url.is_none() {
        let file = config.storage.data_dir.join(ratchet_storage::SQLITE_FILE);
        if !file.is_file() {
            anyhow::bail!(
                "there is no database at {} (storage.data_dir / --data-dir {}); check the path, or start \
                 `ratchet serve` or a command that writes (jobs enqueue, schedules add) there first",
                file.display(),
                config.storage.data_dir.display()
            );
        }
    }
    open_store(config).await
}

/// The tasks under `server.tasks`, then those of every loader plugin the configuration
/// enables (loaded for this alone).
pub fn load_registry(config: &Config) -> anyhow::Result<ratchet_service::TaskRegistry> {
    let loaders: Vec<_> = config
        .plugins
        .iter()
        .filter(|p| p.kind == ratchet_plugin_host::PluginKind::Loader)
        .cloned()
        .collect();
    let plugins = if loaders.is_empty() {
        ratchet_plugin_host::Plugins::none()
    } else {
        let cache = config.storage.data_dir.join("plugin-cache");
        ratchet_plugin_host::Plugins::load(&loaders, &config.egress, &cache)
            .context("loading the loader plugins")?
    };
    registry_with(config, &plugins)
}

/// The registry a command that enqueues checks `reference` against: with `--tasks`, those
/// folders alone; otherwise the version the nodes serve, as the last node to load the task
/// recorded it in the database, and failing that the configured sources.
pub async fn registry_for(
    config: &Config,
    store: &ratchet_storage::Store,
    reference: &str,
    explicit_tasks: bool,
) -> anyhow::Result<ratchet_service::TaskRegistry> {
    if !explicit_tasks && let Some(version) = store.stored_task(reference, None).await? {
        let task = ratchet_service::task_from_version(&version, &config.limits)
            .with_context(|| format!("the version of `{reference}` the nodes recorded does not load"))?;
        let mut registry = ratchet_service::TaskRegistry::default();
        registry.insert("database", task);
        return Ok(registry);
    }
    load_registry(config)
}

/// The tasks of the file sources (`server.tasks`, `registry.sources`), then those the loaders
/// among `plugins` list. A broken task is a warning; a loader that cannot list its tasks is an
/// error.
pub fn registry_with(
    config: &Config,
    plugins: &ratchet_plugin_host::Plugins,
) -> anyhow::Result<ratchet_service::TaskRegistry> {
    let sources = config.file_sources()?;
    let (mut registry, mut rejected) =
        ratchet_service::TaskRegistry::load_sources(&sources, &config.limits).map_err(anyhow::Error::msg)?;
    for (loader, listed) in plugins.list_tasks() {
        let sources =
            listed.map_err(|e| anyhow::anyhow!("the loader plugin {loader} cannot list its tasks: {e}"))?;
        rejected.extend(registry.add(&loader, sources, &config.limits));
    }
    for task in rejected {
        say!(warn: "warning: skipping the task at {}: {}", task.path.display(), task.error);
    }
    Ok(registry)
}

#[derive(Debug, Args)]
struct TaskArg {
    /// The task: a folder, or a ZIP archive of one.
    #[arg(long = "from-fs", value_name = "DIR_OR_ZIP")]
    from_fs: PathBuf,
}

#[derive(Debug, Args)]
struct TestArgs {
    #[command(flatten)]
    task: TaskArg,
    #[command(flatten)]
    egress: EgressArgs,
}

/// Widening the egress policy for one invocation.
#[derive(Debug, Args)]
pub struct EgressArgs {
    /// Let tasks reach HOST (or HOST:PORT) even at a loopback or private address. Repeatable.
    #[arg(long = "allow-host", value_name = "HOST[:PORT]")]
    allow_hosts: Vec<String>,
}

impl EgressArgs {
    /// Adds the hosts to the configuration's allow-list, checking each.
    pub fn apply(&self, config: &mut Config) -> anyhow::Result<()> {
        for host in &self.allow_hosts {
            ratchet_core::http::HostRule::parse(host).map_err(|e| anyhow::anyhow!("--allow-host: {e}"))?;
            config.egress.allow_hosts.push(host.clone());
        }
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
enum Generate {
    /// Scaffold a working task with schemas and tests.
    Task {
        /// Name of the task; also its folder name.
        name: String,
        /// Folder to create the task in.
        #[arg(long, default_value = ".")]
        path: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// Whether the kernel's log is JSON lines (`logging.format: json`), for [`say!`].
static JSON_LOG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

pub fn init_tracing(color: ColorChoice, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RATCHET_LOG")
        // Warnings, what a node says of itself (start, stop), which task versions it reloads
        // (one line per change), the compiles of large plugins (seconds each), and the audit
        // of MCP tool calls.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new(
                "warn,ratchet::node=info,ratchet_service::reload=info,ratchet::plugins=info,ratchet::audit=info",
            )
        });
    let json = format == LogFormat::Json;
    let _ = JSON_LOG.set(json);
    let subscriber = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        // A line logged during a run carries the run's span: its trace id, job and execution.
        subscriber.json().with_current_span(true).with_span_list(false).init();
    } else {
        subscriber.with_ansi(color.stderr()).init();
    }
}

/// A line for the operator on stderr: as it is in a text log, or as a JSON log line (target
/// `ratchet::node`) under `logging.format: json`, so a log shipper sees one format.
pub fn log_line(level: tracing::Level, text: &str) {
    if JSON_LOG.get() != Some(&true) {
        eprintln!("{text}");
        return;
    }
    let text = text.strip_prefix("warning: ").or_else(|| text.strip_prefix("error: ")).unwrap_or(text);
    match level {
        tracing::Level::ERROR => tracing::error!(target: "ratchet::node", "{text}"),
        tracing::Level::WARN => tracing::warn!(target: "ratchet::node", "{text}"),
        _ => tracing::info!(target: "ratchet::node", "{text}"),
    }
}

/// `eprintln!` for what a node says of itself, in the log's format ([`log_line`]).
#[macro_export]
macro_rules! say {
    (warn: $($arg:tt)*) => { $crate::log_line(tracing::Level::WARN, &format!($($arg)*)) };
    (error: $($arg:tt)*) => { $crate::log_line(tracing::Level::ERROR, &format!($($arg)*)) };
    ($($arg:tt)*) => { $crate::log_line(tracing::Level::INFO, &format!($($arg)*)) };
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let load_config = || Config::load(cli.config.as_deref()).context("loading configuration");
    match cli.command {
        Command::RunOnce(args) => run::run_once(load_config()?, args, run::secrets_from_store, None).await,
        Command::Validate(task) => tasks::validate(load_config()?, &task.from_fs).await,
        Command::Test(args) => {
            let mut config = load_config()?;
            args.egress.apply(&mut config)?;
            tasks::test(config, &args.task.from_fs).await
        }
        Command::Replay(args) => replay::replay(load_config()?, args).await,
        Command::Serve(args) => serve::serve(load_config()?, args).await,
        Command::Mcp(args) => mcp::mcp(load_config()?, args).await,
        Command::Jobs(command) => jobs::jobs(load_config()?, command).await,
        Command::Executions(command) => jobs::executions(load_config()?, command).await,
        Command::Explain(args) => explain::explain(load_config()?, args).await,
        Command::Logs(args) => logs::logs(load_config()?, args).await,
        Command::Queue(command) => queue::queue(load_config()?, command).await,
        Command::Secrets(command) => secrets::secrets(load_config()?, command).await,
        Command::Schedules(command) => schedules::schedules(load_config()?, command).await,
        Command::Nodes(common) => nodes::nodes(load_config()?, common).await,
        Command::Tasks(common) => nodes::tasks(load_config()?, common).await,
        Command::Registry(command) => registry::registry(load_config()?, command),
        Command::Config(command) => config::config(load_config()?, command).await,
        Command::Plugins(command) => plugins::plugins(load_config()?, command).await,
        Command::Api(ApiCommand::Openapi) => {
            print!("{}", ratchet_rest::openapi::document_json());
            Ok(ExitCode::SUCCESS)
        }
        Command::Api(ApiCommand::GraphqlSchema) => {
            print!("{}", ratchet_graphql::sdl());
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics when a write fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ratchet", &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)
                .context("writing the completion script")?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { out } => {
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            clap_mangen::generate_to(Cli::command(), &out)
                .with_context(|| format!("cannot write the manual pages to {}", out.display()))?;
            println!("wrote the manual pages to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(Generate::Task { name, path }) => {
            let dir = crate::generate::task(&path, &name)?;
            println!("created task {name} in {}", dir.display());
            println!("try it: ratchet test --from-fs {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The kernel's own peak resident memory, in KiB ([`worker_protocol::vm_hwm_kib`]).
fn kernel_peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    worker_protocol::vm_hwm_kib(&status).unwrap_or_else(|| {
        use nix::sys::resource::{UsageWho, getrusage};
        getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| u.max_rss().max(0) as u64)
    })
}

/// A reader that goes away (`ratchet jobs list | head`) ends the command quietly with the
/// status a shell gives a process killed by SIGPIPE (128 + 13), as `cat` or `ls` would, rather
/// than with a panic from `println!`. Rust ignores SIGPIPE, and the kernel keeps it ignored: a
/// worker that dies must not kill it through the pipe to its stdin.
const BROKEN_PIPE_STATUS: u8 = 141;

pub(crate) fn exit_quietly_on_broken_pipe() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // `print!` and `eprint!` panic with "failed printing to stdout: Broken pipe (os error 32)".
        if message.starts_with("failed printing to")
            && message
                .ends_with(&std::io::Error::from_raw_os_error(nix::errno::Errno::EPIPE as i32).to_string())
        {
            std::process::exit(i32::from(BROKEN_PIPE_STATUS));
        }
        report(info);
    }));
}

/// Whether `error` is a write to a reader that went away.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// `ratchet-full`: runs every command.
pub fn full_main() -> ExitCode {
    exit_quietly_on_broken_pipe();
    run_command(Cli::parse(), dispatch)
}

/// Runs a parsed command on a fresh runtime, with the configured log format, and reports its
/// error.
pub(crate) fn run_command<F>(args: Cli, dispatch: impl FnOnce(Cli) -> F) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    match new_runtime() {
        Ok(runtime) => run_command_on(&runtime, args, dispatch),
        Err(code) => code,
    }
}

/// The runtime commands run on. One tokio thread per core: under many concurrent API requests
/// a single thread is the bottleneck (about a fifth more synchronous runs per second with 16
/// clients on 2 cores). `run-once` needs a second thread too: its worker starts while the task
/// loads.
pub(crate) fn new_runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|error| {
        eprintln!("error: cannot start the async runtime: {error}");
        ExitCode::FAILURE
    })
}

/// [`run_command`] on `runtime`.
pub(crate) fn run_command_on<F>(
    runtime: &tokio::runtime::Runtime,
    args: Cli,
    dispatch: impl FnOnce(Cli) -> F,
) -> ExitCode
where
    F: std::future::Future<Output = anyhow::Result<ExitCode>>,
{
    // The log's format is the configuration's; a configuration that does not load is reported
    // by the command, in text. The command loads it again, so that what loading logs (which
    // file, if any) reaches the log set up here.
    let format = Config::load(args.config.as_deref()).map_or(LogFormat::Text, |config| config.logging.format);
    init_tracing(args.color, format);
    match runtime.block_on(dispatch(args)) {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::from(BROKEN_PIPE_STATUS),
        Err(error) => {
            say!(error: "error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
