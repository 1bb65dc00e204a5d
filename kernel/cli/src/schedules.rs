//! `ratchet schedules ...`: cron schedules, against the configured database whether or not a
//! server runs (a running server sees changes within a second).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use ratchet_core::Config;
use ratchet_core::schedule::{CatchUp, CronSpec, Overlap};
use ratchet_service::scheduler;
use ratchet_storage::{NewSchedule, Schedule, now_ms};
use serde_json::{Value, json};

use super::Format;
use super::jobs::{Common, time};

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Run TASK (a task name or uuid) on a cron schedule.
    Add(AddArgs),
    /// List schedules with their next fire time.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Show one schedule (by id or name).
    Show {
        schedule: String,
        #[command(flatten)]
        common: Common,
    },
    /// Show the next fire times of a schedule (by id or name), or of an expression.
    Next {
        /// A schedule's id or name; or use --cron.
        schedule: Option<String>,
        /// Preview an expression instead of a stored schedule.
        #[arg(long, conflicts_with = "schedule")]
        cron: Option<String>,
        #[arg(long, default_value = "UTC", requires = "cron")]
        tz: String,
        /// How many fire times (1 to 100).
        #[arg(long, short = 'n', default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=100))]
        count: u64,
        #[command(flatten)]
        common: Common,
    },
    /// Remove a schedule (by id or name); jobs it already queued stay.
    Remove {
        schedule: String,
        #[command(flatten)]
        common: Common,
    },
    /// Stop firing a schedule until it is resumed.
    Pause {
        schedule: String,
        #[command(flatten)]
        common: Common,
    },
    /// Fire a paused schedule again, from its next fire time (the pause is not caught up).
    Resume {
        schedule: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    task: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six with leading seconds.
    #[arg(long, value_name = "EXPR")]
    cron: String,
    /// IANA time zone the expression is read in.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    tz: String,
    /// The input of every run, as JSON text.
    #[arg(long, value_name = "JSON", default_value = "{}")]
    input_json: String,
    /// Unique name (default: the task's name).
    #[arg(long)]
    name: Option<String>,
    /// Fire times missed while no server ran: skip, latest (one), or all within the window.
    #[arg(long, value_name = "POLICY", default_value = "skip", value_parser = CatchUp::parse)]
    catch_up: CatchUp,
    /// How late a fire time may still run (skip) or how far back `all` catches up.
    #[arg(long, value_name = "DURATION", default_value = "1m", value_parser = humantime::parse_duration)]
    catch_up_window: Duration,
    /// When the previous run has not finished: skip this fire time, or allow overlapping runs.
    #[arg(long, value_name = "POLICY", default_value = "skip")]
    overlap: Overlap,
    /// Check TASK against these task sources (repeatable); by default against the version the
    /// nodes serve (as recorded in the database), else server.tasks.
    #[arg(long = "tasks", value_name = "DIR")]
    tasks: Vec<PathBuf>,
    #[command(flatten)]
    common: Common,
}

pub async fn schedules(mut config: Config, command: SchedulesCommand) -> anyhow::Result<ExitCode> {
    match command {
        SchedulesCommand::Add(args) => add(config, args).await,
        SchedulesCommand::List { common } => {
            let store = super::jobs::open_existing(&mut config, &common).await?;
            let schedules = store.schedules().await?;
            match common.format {
                Format::Json => println!("{}", Value::Array(schedules.iter().map(schedule_json).collect())),
                Format::Text => print_schedules(&schedules),
            }
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Show { schedule, common } => {
            let store = super::jobs::open_existing(&mut config, &common).await?;
            let schedule = store.schedule(&schedule).await?;
            match common.format {
                Format::Json => println!("{}", schedule_json(&schedule)),
                Format::Text => println!("{}", serde_json::to_string_pretty(&schedule_json(&schedule))?),
            }
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Next { schedule, cron, tz, count, common } => {
            let (spec, zone) = match (schedule, cron) {
                (_, Some(cron)) => (CronSpec::parse(&cron, &tz)?, tz),
                (Some(reference), None) => {
                    let store = super::jobs::open_existing(&mut config, &common).await?;
                    let schedule = store.schedule(&reference).await?;
                    (CronSpec::parse(&schedule.cron, &schedule.timezone)?, schedule.timezone)
                }
                (None, None) => anyhow::bail!("name a schedule, or preview an expression with --cron"),
            };
            let times = spec.upcoming(now_ms(), count as usize);
            match common.format {
                Format::Json => println!("{}", json!(times.iter().map(|&t| time(t)).collect::<Vec<_>>())),
                Format::Text => {
                    println!("{}", spec.describe());
                    for at in times {
                        let local = spec.local(at).map(|t| t.to_rfc3339()).unwrap_or_default();
                        println!("{}  ({local} {zone})", time(at));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Remove { schedule, common } => {
            let store = super::jobs::open(&mut config, &common).await?;
            let removed = store.remove_schedule(&schedule).await?;
            print_one(common.format, &removed, "removed");
            Ok(ExitCode::SUCCESS)
        }
        SchedulesCommand::Pause { schedule, common } => toggle(config, &schedule, &common, false).await,
        SchedulesCommand::Resume { schedule, common } => toggle(config, &schedule, &common, true).await,
    }
}

async fn toggle(
    mut config: Config,
    reference: &str,
    common: &Common,
    enabled: bool,
) -> anyhow::Result<ExitCode> {
    let store = super::jobs::open(&mut config, common).await?;
    let schedule = scheduler::set_enabled(&store, reference, enabled, now_ms()).await?;
    print_one(common.format, &schedule, if enabled { "resumed" } else { "paused" });
    Ok(ExitCode::SUCCESS)
}

async fn add(mut config: Config, args: AddArgs) -> anyhow::Result<ExitCode> {
    let input: Value = serde_json::from_str(&args.input_json).context("--input-json is not valid JSON")?;
    if !args.tasks.is_empty() {
        config.server.tasks = args.tasks.clone();
    }
    let store = super::jobs::open(&mut config, &args.common).await?;
    let registry = super::registry_for(&config, &store, &args.task, !args.tasks.is_empty()).await?;
    let new = NewSchedule {
        name: args.name.clone().unwrap_or_else(|| args.task.clone()),
        task: args.task,
        cron: args.cron,
        timezone: args.tz,
        input,
        catch_up: args.catch_up,
        catch_up_window: args.catch_up_window,
        overlap: args.overlap,
    };
    let schedule = scheduler::add_schedule(&store, &registry, new, now_ms()).await?;
    match args.common.format {
        Format::Json => println!("{}", schedule_json(&schedule)),
        Format::Text => {
            println!("{}", schedule.id);
            let spec = CronSpec::parse(&schedule.cron, &schedule.timezone)?;
            eprintln!("schedule `{}`: {} ({})", schedule.name, spec.describe(), schedule.timezone);
            for at in spec.upcoming(now_ms(), 3) {
                eprintln!("  next: {}", time(at));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_one(format: Format, schedule: &Schedule, what: &str) {
    match format {
        Format::Json => println!("{}", schedule_json(schedule)),
        Format::Text => println!("{what} schedule {} ({})", schedule.name, schedule.id),
    }
}

fn print_schedules(schedules: &[Schedule]) {
    println!("{:<20}  {:<20}  {:<18}  {:<14}  {:<7}  NEXT", "NAME", "TASK", "CRON", "ZONE", "STATE");
    for s in schedules {
        let next = s.next_fire_at.map_or_else(|| "never".into(), time);
        let state = if s.enabled { "active" } else { "paused" };
        println!("{:<20}  {:<20}  {:<18}  {:<14}  {state:<7}  {next}", s.name, s.task, s.cron, s.timezone);
    }
}

fn schedule_json(s: &Schedule) -> Value {
    ratchet_views::json(&ratchet_views::ScheduleView::from(s))
}
