//! `ratchet jobs ...` and `ratchet executions ...`: the queue and the run history, through the
//! service layer, against the configured database whether or not a server runs.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use ratchet_core::Config;
use ratchet_core::trace::TraceContext;
use ratchet_service::EnqueueOptions;
use ratchet_storage::{
    ExecutionFilter, ExecutionRecord, Job, JobFilter, JobStatus, Listed, Page, Store, now_ms,
};
use serde_json::{Value, json};

use super::Format;

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Queue a run of TASK (a task name or uuid).
    Enqueue(EnqueueArgs),
    /// List jobs, newest first.
    List {
        /// Only jobs in this state: queued, running, retrying, completed, failed, cancelled.
        #[arg(long)]
        status: Option<JobStatus>,
        #[command(flatten)]
        range: TimeRange,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        common: Common,
    },
    /// Show a job and how each of its attempts ended.
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Cancel a job that has not finished.
    Cancel {
        id: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// List executions, newest first.
    List {
        /// Only the executions of this job.
        #[arg(long)]
        job: Option<String>,
        #[command(flatten)]
        range: TimeRange,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        common: Common,
    },
    /// Show one execution: input, output or error, logs, HTTP.
    Show {
        id: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete finished executions and jobs older than a cutoff, and give the space back.
    Prune {
        /// Age of the oldest history kept, e.g. 7d or 12h (default: retention.max_age_days).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        older_than: Option<std::time::Duration>,
        #[command(flatten)]
        common: Common,
    },
}

/// Which part of a long list to show, newest first.
#[derive(Debug, Args)]
pub struct Paging {
    /// How many items to show (1 to 500).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=500))]
    limit: u64,
    /// How many of the newest items to skip.
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Every item, however many.
    #[arg(long, conflicts_with_all = ["limit", "offset"])]
    all: bool,
}

/// The size of the pages `--all` reads.
const ALL_PAGE: u64 = 500;

impl Paging {
    /// Every page `read` gives, from this paging's offset: one, or with `--all` until the end.
    async fn read<T, F, Fut>(&self, sort: &'static str, mut read: F) -> anyhow::Result<Listed<T>>
    where
        F: FnMut(Page) -> Fut,
        Fut: std::future::Future<Output = Result<Listed<T>, ratchet_storage::QueueError>>,
    {
        let limit = if self.all { ALL_PAGE } else { self.limit };
        let mut page = Page { limit, offset: self.offset, sort, descending: true };
        let mut listed = read(page).await?;
        while self.all && (listed.items.len() as u64) < listed.total.saturating_sub(self.offset) {
            page.offset += ALL_PAGE;
            let next = read(page).await?;
            if next.items.is_empty() {
                break;
            }
            listed.items.extend(next.items);
            listed.total = next.total;
        }
        Ok(listed)
    }

    /// `{items, total, limit, offset}`, as the REST API pages a list.
    fn json<T>(&self, listed: &Listed<T>, item: impl Fn(&T) -> Value) -> Value {
        let limit = if self.all { listed.items.len() as u64 } else { self.limit };
        json!({"items": listed.items.iter().map(item).collect::<Vec<_>>(), "total": listed.total, "limit": limit, "offset": self.offset})
    }

    /// The last line of a text list when it does not show everything.
    fn footer<T>(&self, listed: &Listed<T>) {
        let shown = listed.items.len() as u64;
        if shown < listed.total {
            println!("{shown} of {} shown (--limit, --offset, or --all)", listed.total);
        }
    }
}

#[derive(Debug, Args)]
pub struct Common {
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub storage: super::StorageArgs,
}

#[derive(Debug, Args)]
pub struct EnqueueArgs {
    task: String,
    /// The input, as JSON text.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    input_json: String,
    /// One job per line of FILE (JSON lines: each line an input; `-` reads stdin), enqueued
    /// together: all, or none when a line fails its checks (each such line is named).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input_json", "idempotency_key"])]
    input_file: Option<PathBuf>,
    /// Higher runs first.
    #[arg(long, default_value_t = 0)]
    priority: i32,
    /// Enqueueing the same key again returns the existing job.
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Jobs of TASK sharing this key (a customer id, an account) run at most the task's
    /// `per_key` concurrency limit at once; the task must declare one.
    #[arg(long, value_name = "KEY")]
    concurrency_key: Option<String>,
    /// When to run: an RFC 3339 time (2026-11-26T09:00:00Z) or a delay (30s, 5m).
    #[arg(long, value_name = "TIME")]
    run_at: Option<String>,
    /// Attempts before the job fails for good (default: queue.max_attempts).
    #[arg(long)]
    max_attempts: Option<u32>,
    /// How long each attempt may run (30s, 5m), replacing the task's timeout; at most
    /// limits.max_timeout_secs.
    #[arg(long, value_name = "DURATION")]
    timeout: Option<humantime::Duration>,
    /// Check TASK against these task sources (repeatable); by default against the version the
    /// nodes serve (as recorded in the database), else server.tasks.
    #[arg(long = "tasks", value_name = "DIR")]
    tasks: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

pub async fn jobs(mut config: Config, command: JobsCommand) -> anyhow::Result<ExitCode> {
    match command {
        JobsCommand::Enqueue(args) => enqueue(config, args).await,
        JobsCommand::List { status, range, paging, common } => {
            let (since, until) = range.bounds()?;
            let store = open_existing(&mut config, &common).await?;
            let filter = JobFilter { status, task: None, since, until };
            let mut listed = paging.read("created_at", |page| store.list_jobs(&filter, page)).await?;
            mark_waiting(&config, &store, &mut listed.items).await?;
            match common.format {
                Format::Json => println!("{}", paging.json(&listed, job_json)),
                Format::Text => {
                    print_jobs(&listed.items);
                    paging.footer(&listed);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Show { id, common } => {
            let store = open_existing(&mut config, &common).await?;
            let mut job = store.job(&id).await?;
            mark_waiting(&config, &store, std::slice::from_mut(&mut job)).await?;
            let attempts = store.attempts(&id).await?;
            let mut document = job_json(&job);
            document["attempts"] = attempts
                .iter()
                .map(|a| ratchet_views::json(&ratchet_views::AttemptView::from(a.clone())))
                .collect();
            match common.format {
                Format::Json => println!("{document}"),
                Format::Text => println!("{}", serde_json::to_string_pretty(&document)?),
            }
            Ok(ExitCode::SUCCESS)
        }
        JobsCommand::Cancel { id, common } => {
            let store = open(&mut config, &common).await?;
            let job = store.cancel(&id, now_ms()).await?;
            match common.format {
                Format::Json => println!("{}", job_json(&job)),
                Format::Text => println!("cancelled job {}", job.id),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn enqueue(mut config: Config, args: EnqueueArgs) -> anyhow::Result<ExitCode> {
    let inputs = match &args.input_file {
        Some(file) => Some(read_inputs(file)?),
        None => None,
    };
    let input: Value = match inputs {
        Some(_) => Value::Null,
        None => serde_json::from_str(&args.input_json).context("--input-json is not valid JSON")?,
    };
    let run_at = args.run_at.as_deref().map(parse_time).transpose()?;
    if !args.tasks.is_empty() {
        config.server.tasks = args.tasks.clone();
    }
    let store = open(&mut config, &args.common).await?;
    let registry = super::registry_for(&config, &store, &args.task, !args.tasks.is_empty()).await?;
    let timeout = args
        .timeout
        .map(|t| ratchet_service::job_timeout(t.as_secs_f64(), config.limits.max_timeout_secs))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--timeout: {e}"))?;
    let options = EnqueueOptions {
        priority: args.priority,
        run_at,
        max_attempts: args.max_attempts,
        idempotency_key: args.idempotency_key.clone(),
        timeout,
        // A pipeline that traces its steps passes its trace in `TRACEPARENT`.
        trace: std::env::var("TRACEPARENT").ok().as_deref().and_then(TraceContext::parse),
        concurrency_key: args.concurrency_key.clone(),
    };
    if let (Some(inputs), Some(file)) = (inputs, &args.input_file) {
        return enqueue_file(&store, &registry, &config, &args, file, inputs, options).await;
    }
    // A running server polls the database and picks the job up.
    let enqueued =
        ratchet_service::enqueue(&store, &registry, &config.queue, &args.task, input, options).await?;
    match args.common.format {
        Format::Json => {
            let mut document = job_json(&enqueued.job);
            document["created"] = json!(enqueued.created);
            println!("{document}");
        }
        Format::Text if enqueued.created => println!("{}", enqueued.job.id),
        Format::Text => {
            println!("{}", enqueued.job.id);
            eprintln!("(the idempotency key matched this existing job; nothing new was queued)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The inputs of a JSON-lines file (`-`: stdin), each with its line number; blank lines are
/// skipped, and the first line that is not JSON stops the command, naming it.
fn read_inputs(file: &std::path::Path) -> anyhow::Result<Vec<(usize, Value)>> {
    let text = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read the inputs from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let mut inputs = Vec::new();
    for (number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line.trim())) {
        if line.is_empty() {
            continue;
        }
        let input = serde_json::from_str(line)
            .with_context(|| format!("{} line {number} is not JSON (one input per line)", file.display()))?;
        inputs.push((number, input));
    }
    if inputs.is_empty() {
        anyhow::bail!("{} holds no inputs (one JSON document per line)", file.display());
    }
    Ok(inputs)
}

/// Enqueues one job per input of `file`, all in one transaction, with a progress bar on a
/// terminal; a refused batch names each refused line.
async fn enqueue_file(
    store: &ratchet_storage::Store,
    registry: &ratchet_service::TaskRegistry,
    config: &Config,
    args: &EnqueueArgs,
    file: &std::path::Path,
    inputs: Vec<(usize, Value)>,
    options: EnqueueOptions,
) -> anyhow::Result<ExitCode> {
    let lines: Vec<usize> = inputs.iter().map(|(line, _)| *line).collect();
    let jobs = inputs
        .into_iter()
        .map(|(_, input)| ratchet_service::BatchJob {
            task: args.task.clone(),
            input,
            options: options.clone(),
        })
        .collect::<Vec<_>>();
    let bar = super::progress::bar(args.common.format, jobs.len() as u64, "jobs");
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let written =
        ratchet_service::enqueue_batch(store, registry, &config.queue, jobs, |n| bar.set_position(n as u64))
            .await;
    bar.finish_and_clear();
    let written = match written {
        Ok(written) => written,
        Err(ratchet_service::ServiceError::InvalidBatch { problems, total }) => {
            for problem in &problems {
                let line = lines.get(problem.index).copied().unwrap_or(0);
                eprintln!("{} line {line}: {}", file.display(), problem.message);
            }
            if total > problems.len() {
                eprintln!("... and {} more", total - problems.len());
            }
            anyhow::bail!("{total} of {} lines cannot be enqueued, so none was", lines.len());
        }
        Err(error) => return Err(error.into()),
    };
    match args.common.format {
        Format::Json => {
            let ids: Vec<&str> = written.iter().map(|(id, _)| id.as_str()).collect();
            println!("{}", json!({"ids": ids, "created": written.len()}));
        }
        Format::Text => println!("enqueued {} jobs of {}", written.len(), args.task),
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn executions(mut config: Config, command: ExecutionsCommand) -> anyhow::Result<ExitCode> {
    match command {
        ExecutionsCommand::List { job, range, paging, common } => {
            let (since, until) = range.bounds()?;
            let store = open_existing(&mut config, &common).await?;
            let filter = ExecutionFilter { job_id: job, since, until, ..Default::default() };
            let listed = paging.read("started_at", |page| store.list_executions(&filter, page)).await?;
            let executions = &listed.items;
            match common.format {
                Format::Json => println!("{}", paging.json(&listed, execution_json)),
                Format::Text => {
                    println!(
                        "{:<36}  {:<20}  {:<8}  {:>3}  {:>9}  STARTED",
                        "ID", "TASK", "STATUS", "TRY", "MS"
                    );
                    for e in executions {
                        let ms = e.duration_us as f64 / 1000.0;
                        println!(
                            "{:<36}  {:<20}  {:<8}  {:>3}  {ms:>9.1}  {}",
                            e.id,
                            e.task,
                            e.status,
                            e.attempt,
                            time(e.started_at)
                        );
                    }
                    paging.footer(&listed);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::Prune { older_than, common } => {
            let age = match older_than {
                Some(age) => age,
                None if config.retention.max_age_days > 0.0 => {
                    std::time::Duration::from_secs_f64(config.retention.max_age_days * 86_400.0)
                }
                None => {
                    bail!("retention.max_age_days is 0 (keep forever); pass --older-than to prune anyway")
                }
            };
            let store = open(&mut config, &common).await?;
            let age_text = humantime::format_duration(age);
            let progress =
                crate::progress::spinner(common.format, format!("pruning what finished over {age_text} ago"));
            let pruned = store.prune(now_ms() - age.as_millis() as i64).await;
            progress.finish_and_clear();
            let pruned = pruned?;
            match common.format {
                Format::Json => println!(
                    "{}",
                    json!({"executions": pruned.executions, "jobs": pruned.jobs, "nodes": pruned.nodes})
                ),
                Format::Text => println!(
                    "pruned {} execution(s), {} job(s) and {} stopped node(s) older than {}",
                    pruned.executions, pruned.jobs, pruned.nodes, age_text
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        ExecutionsCommand::Show { id, common } => {
            let store = open_existing(&mut config, &common).await?;
            let execution = execution_json(&store.execution(&id).await?);
            match common.format {
                Format::Json => println!("{execution}"),
                Format::Text => println!("{}", serde_json::to_string_pretty(&execution)?),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The configured database, for a command that writes (created when missing, saying so).
pub async fn open(config: &mut Config, common: &Common) -> anyhow::Result<Store> {
    common.storage.apply(config);
    super::open_store(config).await
}

/// The configured database, for a command that only reads: a database that does not exist
/// is an error naming it, not a new empty one.
pub async fn open_existing(config: &mut Config, common: &Common) -> anyhow::Result<Store> {
    common.storage.apply(config);
    super::open_existing_store(config).await
}

fn print_jobs(jobs: &[Job]) {
    println!("{:<36}  {:<20}  {:<9}  {:>7}  {:<11}  UPDATED", "ID", "TASK", "STATUS", "ATTEMPT", "WAITING");
    for job in jobs {
        let attempts = format!("{}/{}", job.attempt, job.max_attempts);
        println!(
            "{:<36}  {:<20}  {:<9}  {attempts:>7}  {:<11}  {}",
            job.id,
            job.task,
            job.status.as_str(),
            job.waiting.map_or("", |waiting| waiting.as_str()),
            time(job.updated_at)
        );
    }
}

/// Says why each waiting job of `jobs` waits, with the concurrency limits of the task versions
/// the nodes recorded (and `queue.limits` of the configuration), as a node's claim sees them.
async fn mark_waiting(config: &Config, store: &Store, jobs: &mut [Job]) -> anyhow::Result<()> {
    let tasks: std::collections::BTreeSet<&str> = jobs.iter().map(|job| job.task.as_str()).collect();
    let mut limits = Vec::new();
    for task in tasks {
        let Some(version) = store.stored_task(task, None).await? else { continue };
        let Ok(loaded) = ratchet_service::task_from_version(&version, &config.limits) else { continue };
        if let Some(concurrency) = ratchet_service::task_concurrency(&config.queue, &loaded) {
            let limit = ratchet_storage::TaskLimit { limit: concurrency.limit, per_key: concurrency.per_key };
            limits.push((task.to_owned(), limit));
        }
    }
    store.set_concurrency_limits(ratchet_storage::ConcurrencyLimits::new(limits));
    store.mark_waiting(jobs, now_ms()).await?;
    Ok(())
}

fn job_json(job: &Job) -> Value {
    ratchet_views::json(&ratchet_views::JobView::from(job))
}

fn execution_json(e: &ExecutionRecord) -> Value {
    ratchet_views::json(&ratchet_views::ExecutionDetail::from(e.clone()))
}

pub fn time(ms: i64) -> String {
    ratchet_core::time::format(ms)
}

/// A list's time filter: jobs created, or executions started, within it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TimeRange {
    /// Only since this time: an RFC 3339 time, or a duration ago (30m, 1h, 7d).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only before this time: an RFC 3339 time, or a duration ago.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
}

impl TimeRange {
    fn bounds(&self) -> anyhow::Result<(Option<i64>, Option<i64>)> {
        use ratchet_core::time::RangeError;
        match ratchet_core::time::parse_range(self.since.as_deref(), self.until.as_deref(), now_ms()) {
            Ok(bounds) => Ok(bounds),
            Err(RangeError::Empty { since, until }) => {
                bail!("--since ({}) must be before --until ({})", time(since), time(until))
            }
            Err(error) => bail!("--{error}"),
        }
    }
}

/// An RFC 3339 time, or a delay from now such as `30s` or `5m`; within Ratchet's time range.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    use ratchet_core::time::TimeError;
    let parsed = match humantime::parse_duration(text) {
        Ok(delay) => ratchet_core::time::after(now_ms(), delay),
        Err(_) => ratchet_core::time::parse_rfc3339(text),
    };
    match parsed {
        Ok(ms) => Ok(ms),
        Err(TimeError::NotRfc3339(_)) => bail!(
            "--run-at `{text}` is neither an RFC 3339 time (2026-11-26T09:00:00Z) nor a delay (30s, 5m)"
        ),
        Err(error) => bail!("--run-at: {error}"),
    }
}
