//! The scheduler: turns due cron fire times into jobs. Any number of nodes may run it against
//! one database; each fire time is enqueued once (see `storage::schedules`).

use std::time::Duration;

use ratchet_core::config::QueueConfig;
use ratchet_core::schedule::{CronSpec, Overlap, due_fire_times};
use ratchet_storage::{Backoff, NewJob, NewSchedule, QueueError, Schedule, Store, fire_key};

use super::{ServiceError, TaskRegistry};

/// What one scheduler tick did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TickReport {
    /// Every job enqueued.
    pub enqueued: Vec<Fired>,
    /// Fire times dropped because the previous fire's job had not finished.
    pub skipped_for_overlap: usize,
    /// Schedules another scheduler fired first.
    pub lost_races: usize,
    /// Fire times dropped because their task's queue is paused with `skip_schedules`.
    pub skipped_for_pause: usize,
}

/// A job a schedule's fire time enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    pub schedule: String,
    pub task: String,
    /// The fire time (ms since the epoch).
    pub at: i64,
    pub job: String,
}

/// Enqueues the jobs of every fire time due at `now`, following each schedule's catch-up and
/// overlap policies.
pub async fn tick(store: &Store, queue: &QueueConfig, now: i64) -> Result<TickReport, QueueError> {
    let mut report = TickReport::default();
    let due = store.due_schedules(now).await?;
    let pauses = if due.is_empty() { Vec::new() } else { store.pauses().await? };
    for schedule in due {
        let skip = pauses.iter().any(|p| p.skip_schedules && p.covers(&schedule.task));
        fire(store, queue, &schedule, now, skip, &mut report).await?;
    }
    Ok(report)
}

async fn fire(
    store: &Store,
    queue: &QueueConfig,
    schedule: &Schedule,
    now: i64,
    paused: bool,
    report: &mut TickReport,
) -> Result<(), QueueError> {
    let Some(next_due) = schedule.next_fire_at else { return Ok(()) };
    let (mut times, following) = match CronSpec::parse(&schedule.cron, &schedule.timezone) {
        Ok(spec) => due_fire_times(&spec, next_due, now, schedule.catch_up, schedule.catch_up_window),
        Err(error) => {
            // Only possible if the cron library changed under a stored schedule: stop it, loudly.
            tracing::error!(schedule = %schedule.name, "disabling the schedule: {error}");
            (Vec::new(), None)
        }
    };
    if paused && !times.is_empty() {
        tracing::info!(schedule = %schedule.name, "skipping {} fire time(s): the queue of {} is paused", times.len(), schedule.task);
        report.skipped_for_pause += times.len();
        times.clear();
    }
    if schedule.overlap == Overlap::Skip && !times.is_empty() {
        if previous_still_running(store, schedule).await? {
            tracing::info!(schedule = %schedule.name, "skipping {} fire time(s): the previous run has not finished", times.len());
            report.skipped_for_overlap += times.len();
            times.clear();
        } else if times.len() > 1 {
            report.skipped_for_overlap += times.len() - 1;
            times.drain(..times.len() - 1);
        }
    }
    let jobs: Vec<NewJob> = times.iter().map(|&at| job(queue, schedule, at)).collect();
    match store.fire_schedule(schedule, times.last().copied(), &jobs, following, now).await? {
        Some(created) => {
            for (at, id) in times.iter().zip(created) {
                if let Some(id) = id {
                    report.enqueued.push(Fired {
                        schedule: schedule.name.clone(),
                        task: schedule.task.clone(),
                        at: *at,
                        job: id,
                    });
                }
            }
        }
        None => report.lost_races += 1,
    }
    Ok(())
}

async fn previous_still_running(store: &Store, schedule: &Schedule) -> Result<bool, QueueError> {
    let Some(id) = &schedule.last_job_id else { return Ok(false) };
    match store.job(id).await {
        Ok(job) => Ok(!job.status.is_final()),
        Err(QueueError::NotFound(_)) => Ok(false),
        Err(error) => Err(error),
    }
}

fn job(queue: &QueueConfig, schedule: &Schedule, fire_time: i64) -> NewJob {
    NewJob {
        task: schedule.task.clone(),
        input: schedule.input.clone(),
        priority: 0,
        run_at: Some(fire_time),
        max_attempts: queue.max_attempts,
        backoff: Backoff {
            base: Duration::from_secs_f64(queue.backoff_base_secs),
            max: Duration::from_secs_f64(queue.backoff_max_secs),
        },
        timeout: None,
        idempotency_key: Some(fire_key(&schedule.id, fire_time)),
        // A schedule runs its task as it is when each fire starts.
        task_digest: None,
        // Each fire is a trace of its own.
        trace_id: Some(ratchet_core::trace::TraceContext::root().trace_id().to_owned()),
        concurrency_key: None,
    }
}

/// Checks the task, the input and the expression, then adds the schedule; its first fire
/// time is the first after `now`.
pub async fn add_schedule(
    store: &Store,
    registry: &TaskRegistry,
    mut new: NewSchedule,
    now: i64,
) -> Result<Schedule, ServiceError> {
    let (task, input) = super::checked_task(registry, &new.task, std::mem::take(&mut new.input)).await?;
    new.task = task.name().to_owned();
    new.input = input;
    let spec = CronSpec::parse(&new.cron, &new.timezone).map_err(ServiceError::Schedule)?;
    let first = spec.next_after(now);
    Ok(store.add_schedule(new, first, now).await?)
}

/// Changes a schedule: `change` edits a copy of it, then the task, the input and the
/// expression are checked as when adding, and the next fire time is the first after `now`.
pub async fn update_schedule(
    store: &Store,
    registry: &TaskRegistry,
    reference: &str,
    change: impl FnOnce(&mut NewSchedule),
    now: i64,
) -> Result<Schedule, ServiceError> {
    let current = store.schedule(reference).await?;
    let mut new = NewSchedule {
        name: current.name,
        task: current.task,
        cron: current.cron,
        timezone: current.timezone,
        input: current.input,
        catch_up: current.catch_up,
        catch_up_window: current.catch_up_window,
        overlap: current.overlap,
    };
    change(&mut new);
    let (task, input) = super::checked_task(registry, &new.task, std::mem::take(&mut new.input)).await?;
    new.task = task.name().to_owned();
    new.input = input;
    let spec = CronSpec::parse(&new.cron, &new.timezone).map_err(ServiceError::Schedule)?;
    Ok(store.update_schedule(&current.id, new, spec.next_after(now), now).await?)
}

/// Resumes (with the next fire time after `now`, so the pause is not caught up) or pauses.
pub async fn set_enabled(
    store: &Store,
    reference: &str,
    enabled: bool,
    now: i64,
) -> Result<Schedule, ServiceError> {
    let schedule = store.schedule(reference).await?;
    let spec = CronSpec::parse(&schedule.cron, &schedule.timezone).map_err(ServiceError::Schedule)?;
    Ok(store.set_schedule_enabled(reference, enabled, spec.next_after(now), now).await?)
}
