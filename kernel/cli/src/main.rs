//! `ratchet`: the command-line entry point, and the composition root of `ratchet serve`.
//! Parsing and dispatch live here; each command in a module of its own.

mod config;
mod generate;
mod jobs;
mod nodes;
mod plugins;
mod replay;
mod run;
mod schedules;
mod serve;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use ratchet_core::Config;

#[derive(Debug, Parser)]
#[command(name = "ratchet", version, about = "Run JavaScript tasks in supervised, isolated workers")]
pub struct Cli {
    /// Configuration file (default: ./ratchet.yaml if present).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Queue runs and inspect or cancel them.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// The history of runs.
    #[command(subcommand)]
    Executions(jobs::ExecutionsCommand),
    /// Run tasks on cron schedules.
    #[command(subcommand)]
    Schedules(schedules::SchedulesCommand),
    /// The nodes (`ratchet serve` processes) using this database, with their workers.
    Nodes(jobs::Common),
    /// The tasks nodes loaded, with every version seen.
    Tasks(jobs::Common),
    /// Check or print the effective configuration.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// The plugins the configuration enables, and the conformance check for plugin authors.
    #[command(subcommand)]
    Plugins(plugins::PluginsCommand),
    /// Print the API contracts: the OpenAPI document or the GraphQL schema.
    #[command(subcommand)]
    Api(ApiCommand),
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
            other => Err(format!(
                "server.surfaces: `{other}` is not a built-in API surface; use rest and/or graphql"
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

/// The configured database, migrated.
pub async fn open_store(config: &Config) -> anyhow::Result<ratchet_storage::Store> {
    Ok(match &config.storage.url {
        Some(url) => ratchet_storage::Store::connect(url).await?,
        None => ratchet_storage::Store::open_data_dir(&config.storage.data_dir).await?,
    })
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

/// The tasks under `server.tasks`, then those the loaders among `plugins` list. A broken task
/// is a warning; a loader that cannot list its tasks is an error.
pub fn registry_with(
    config: &Config,
    plugins: &ratchet_plugin_host::Plugins,
) -> anyhow::Result<ratchet_service::TaskRegistry> {
    let (mut registry, mut rejected) =
        ratchet_service::TaskRegistry::load(&config.server.tasks, &config.limits)
            .map_err(anyhow::Error::msg)?;
    for (loader, listed) in plugins.list_tasks() {
        let sources =
            listed.map_err(|e| anyhow::anyhow!("the loader plugin {loader} cannot list its tasks: {e}"))?;
        rejected.extend(registry.add(sources, &config.limits));
    }
    for task in rejected {
        eprintln!("warning: skipping the task at {}: {}", task.path.display(), task.error);
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

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RATCHET_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

pub async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let load_config = || Config::load(cli.config.as_deref()).context("loading configuration");
    match cli.command {
        Command::RunOnce(args) => run::run_once(load_config()?, args).await,
        Command::Validate(task) => tasks::validate(load_config()?, &task.from_fs).await,
        Command::Test(args) => {
            let mut config = load_config()?;
            args.egress.apply(&mut config)?;
            tasks::test(config, &args.task.from_fs).await
        }
        Command::Replay(args) => replay::replay(load_config()?, args).await,
        Command::Serve(args) => serve::serve(load_config()?, args).await,
        Command::Jobs(command) => jobs::jobs(load_config()?, command).await,
        Command::Executions(command) => jobs::executions(load_config()?, command).await,
        Command::Schedules(command) => schedules::schedules(load_config()?, command).await,
        Command::Nodes(common) => nodes::nodes(load_config()?, common).await,
        Command::Tasks(common) => nodes::tasks(load_config()?, common).await,
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
        Command::Generate(Generate::Task { name, path }) => {
            let dir = crate::generate::task(&path, &name)?;
            println!("created task {name} in {}", dir.display());
            println!("try it: ratchet test --from-fs {}", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The kernel's own peak resident memory, in KiB.
fn kernel_peak_rss_kib() -> u64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| u.max_rss().max(0) as u64)
}

fn main() -> ExitCode {
    let args = Cli::parse();
    init_tracing();
    // One tokio thread per core: under many concurrent API requests a single thread is the
    // bottleneck (about a fifth more synchronous runs per second with 16 clients on 2 cores).
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(args)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
