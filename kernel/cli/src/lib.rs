//! The command line, and the composition root of `ratchet serve`: parsing and dispatch live
//! here, each command in a module of its own.
//!
//! It builds `ratchet-full` (src/full.rs), which runs every command. The `ratchet` binary is
//! the crate `ratchet-front` (kernel/front): it runs `run-once` itself on the core alone and
//! hands every other command to `ratchet-full` by `exec`, so a one-off run loads a binary that
//! holds no database, HTTP server or plugin host (docs/architecture.md, "Two binaries").
//! What both binaries share (the global options, `run-once`, logging, how a command reports
//! its error) lives there, and this crate re-exports it.

mod config;
mod explain;
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

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, Parser, Subcommand};
use ratchet_core::Config;
pub use ratchet_front::{EgressArgs, Format, GlobalArgs, log_line};

#[derive(Debug, Parser)]
#[command(name = "ratchet", version, about = ratchet_front::ABOUT)]
pub struct Cli {
    #[command(flatten)]
    globals: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    #[command(about = ratchet_front::RUN_ONCE_ABOUT)]
    RunOnce(ratchet_front::run::RunOnceArgs),
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

/// `eprintln!` for what a node says of itself, in the log's format ([`log_line`]).
#[macro_export]
macro_rules! say {
    (warn: $($arg:tt)*) => { $crate::log_line(tracing::Level::WARN, &format!($($arg)*)) };
    (error: $($arg:tt)*) => { $crate::log_line(tracing::Level::ERROR, &format!($($arg)*)) };
    ($($arg:tt)*) => { $crate::log_line(tracing::Level::INFO, &format!($($arg)*)) };
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let load_config = || Config::load(cli.globals.config.as_deref()).context("loading configuration");
    match cli.command {
        Command::RunOnce(args) => {
            ratchet_front::run::run_once(load_config()?, args, run::secrets_from_store, None).await
        }
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

/// `ratchet-full`: runs every command.
pub fn full_main() -> ExitCode {
    ratchet_front::exit_quietly_on_broken_pipe();
    let cli = Cli::parse();
    match ratchet_front::new_runtime() {
        Ok(runtime) => {
            let globals = cli.globals.clone();
            ratchet_front::run_on(&runtime, &globals, dispatch(cli))
        }
        Err(code) => code,
    }
}
