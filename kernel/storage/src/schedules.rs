//! Cron schedules as stored, and firing them exactly once per fire time.
//!
//! Firing is one transaction: a compare-and-set of `next_fire_at` (only the scheduler that saw
//! the current value wins; any other node's attempt changes nothing) plus the jobs, each keyed
//! `schedule:{id}:{fire time}` so that even a replayed fire can never enqueue twice.

use std::time::Duration;

use sea_orm::{ConnectionTrait, QueryResult, TransactionTrait, Value as SqlValue};
use serde_json::Value;

use super::Store;
use super::queue::{NewJob, QueueError, millis};
use super::row::{int, json, opt_int};
use ratchet_core::schedule::{CatchUp, Overlap};

/// A schedule to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    /// Unique; how the CLI and the API refer to it besides its id.
    pub name: String,
    pub task: String,
    pub cron: String,
    /// An IANA time zone name.
    pub timezone: String,
    pub input: Value,
    pub catch_up: CatchUp,
    pub catch_up_window: Duration,
    pub overlap: Overlap,
}

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    pub task: String,
    pub cron: String,
    pub timezone: String,
    pub input: Value,
    pub catch_up: CatchUp,
    pub catch_up_window: Duration,
    pub overlap: Overlap,
    pub enabled: bool,
    /// The next fire time to enqueue; `None` when the expression never fires again.
    pub next_fire_at: Option<i64>,
    pub last_fire_at: Option<i64>,
    /// The job of the last fire time enqueued (for the overlap policy).
    pub last_job_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The idempotency key of the job of one fire time.
pub fn fire_key(schedule_id: &str, fire_time: i64) -> String {
    format!("schedule:{schedule_id}:{fire_time}")
}

const COLUMNS: &str = "id, name, task, cron, timezone, input, catch_up, catch_up_window_ms, overlap, enabled, \
     next_fire_at, last_fire_at, last_job_id, created_at, updated_at";

impl Store {
    /// Adds a schedule whose first fire time is `next_fire_at`. A taken name is a `Conflict`.
    pub async fn add_schedule(
        &self,
        new: NewSchedule,
        next_fire_at: Option<i64>,
        now: i64,
    ) -> Result<Schedule, QueueError> {
        if new.name.trim().is_empty() {
            return Err(QueueError::Invalid("a schedule name must not be empty".into()));
        }
        let id = crate::new_id();
        let sql = format!(
            "INSERT INTO schedules ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, NULL, NULL, ?, ?) \
             ON CONFLICT (name) DO NOTHING"
        );
        let values: Vec<SqlValue> = vec![
            id.clone().into(),
            new.name.clone().into(),
            new.task.into(),
            new.cron.into(),
            new.timezone.into(),
            new.input.to_string().into(),
            new.catch_up.as_str().into(),
            millis(new.catch_up_window).into(),
            new.overlap.as_str().into(),
            next_fire_at.into(),
            now.into(),
            now.into(),
        ];
        if self.writer().execute_raw(self.statement(&sql, values)).await?.rows_affected() != 1 {
            return Err(QueueError::Conflict(format!(
                "a schedule named `{}` exists; pick another --name or remove it first",
                new.name
            )));
        }
        // The nodes' schedulers look again (PostgreSQL's trigger tells them there).
        self.ring_doorbell();
        self.schedule(&id).await
    }

    /// A schedule by id or name.
    pub async fn schedule(&self, reference: &str) -> Result<Schedule, QueueError> {
        self.find_schedule(reference)
            .await?
            .ok_or_else(|| QueueError::NotFound(format!("schedule `{reference}` (by id or name)")))
    }

    async fn find_schedule(&self, reference: &str) -> Result<Option<Schedule>, QueueError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = ? OR name = ?");
        let row = self
            .connection()
            .query_one_raw(self.statement(&sql, vec![reference.into(), reference.into()]))
            .await?;
        row.map(|row| schedule_from_row(&row)).transpose()
    }

    /// Every schedule, by name.
    pub async fn schedules(&self) -> Result<Vec<Schedule>, QueueError> {
        let sql = format!("SELECT {COLUMNS} FROM schedules ORDER BY name");
        let rows = self.connection().query_all_raw(self.statement(&sql, Vec::new())).await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// Removes a schedule; jobs it already enqueued stay.
    pub async fn remove_schedule(&self, reference: &str) -> Result<Schedule, QueueError> {
        let schedule = self.schedule(reference).await?;
        let sql = "DELETE FROM schedules WHERE id = ?";
        self.writer().execute_raw(self.statement(sql, vec![schedule.id.clone().into()])).await?;
        Ok(schedule)
    }

    /// Replaces what a schedule runs and when (`changed`), with `next_fire_at` as its next fire
    /// time. A name another schedule holds is a `Conflict`.
    pub async fn update_schedule(
        &self,
        id: &str,
        changed: NewSchedule,
        next_fire_at: Option<i64>,
        now: i64,
    ) -> Result<Schedule, QueueError> {
        if changed.name.trim().is_empty() {
            return Err(QueueError::Invalid("a schedule name must not be empty".into()));
        }
        if let Some(other) = self.find_schedule(&changed.name).await?
            && other.id != id
        {
            return Err(QueueError::Conflict(format!("a schedule named `{}` exists", changed.name)));
        }
        let sql = "UPDATE schedules SET name = ?, task = ?, cron = ?, timezone = ?, input = ?, catch_up = ?, \
                   catch_up_window_ms = ?, overlap = ?, next_fire_at = ?, updated_at = ? WHERE id = ?";
        let values: Vec<SqlValue> = vec![
            changed.name.into(),
            changed.task.into(),
            changed.cron.into(),
            changed.timezone.into(),
            changed.input.to_string().into(),
            changed.catch_up.as_str().into(),
            millis(changed.catch_up_window).into(),
            changed.overlap.as_str().into(),
            next_fire_at.into(),
            now.into(),
            id.into(),
        ];
        if self.writer().execute_raw(self.statement(sql, values)).await?.rows_affected() != 1 {
            return Err(QueueError::NotFound(format!("schedule `{id}`")));
        }
        self.ring_doorbell();
        self.schedule(id).await
    }

    /// Pauses or resumes a schedule. Resuming sets the next fire time to `next_fire_at`, so
    /// the pause is not caught up.
    pub async fn set_schedule_enabled(
        &self,
        reference: &str,
        enabled: bool,
        next_fire_at: Option<i64>,
        now: i64,
    ) -> Result<Schedule, QueueError> {
        let schedule = self.schedule(reference).await?;
        let sql = "UPDATE schedules SET enabled = ?, next_fire_at = ?, updated_at = ? WHERE id = ?";
        let next = if enabled { next_fire_at } else { schedule.next_fire_at };
        let values: Vec<SqlValue> =
            vec![i32::from(enabled).into(), next.into(), now.into(), schedule.id.clone().into()];
        self.writer().execute_raw(self.statement(sql, values)).await?;
        self.ring_doorbell();
        self.schedule(&schedule.id).await
    }

    /// Enabled schedules whose next fire time is at or before `now`.
    pub async fn due_schedules(&self, now: i64) -> Result<Vec<Schedule>, QueueError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM schedules WHERE enabled = 1 AND next_fire_at <= ? ORDER BY next_fire_at"
        );
        let rows = self.connection().query_all_raw(self.statement(&sql, vec![now.into()])).await?;
        rows.iter().map(schedule_from_row).collect()
    }

    /// The earliest next fire time of any enabled schedule.
    pub async fn earliest_fire_time(&self) -> Result<Option<i64>, QueueError> {
        let sql = "SELECT MIN(next_fire_at) AS next FROM schedules WHERE enabled = 1";
        let row = self.connection().query_one_raw(self.statement(sql, Vec::new())).await?;
        Ok(match row {
            Some(row) => opt_int(&row, "next")?,
            None => None,
        })
    }

    /// Enqueues `jobs` and moves `schedule` from the fire time it was read with to
    /// `next_fire_at`, in one transaction. Returns, per job, its id when created (`None` when its
    /// key was taken), or `None` when another scheduler fired this fire time first (then
    /// nothing changes).
    pub async fn fire_schedule(
        &self,
        schedule: &Schedule,
        fired_at: Option<i64>,
        jobs: &[NewJob],
        next_fire_at: Option<i64>,
        now: i64,
    ) -> Result<Option<Vec<Option<String>>>, QueueError> {
        let transaction = self.writer().begin().await?;
        let mut created = Vec::with_capacity(jobs.len());
        for job in jobs {
            let id = crate::new_id();
            let inserted = self.insert_job(&transaction, &id, job, now).await?;
            created.push(inserted.then_some(id));
        }
        let sql = "UPDATE schedules SET next_fire_at = ?, last_fire_at = COALESCE(?, last_fire_at), \
                   last_job_id = COALESCE(?, last_job_id), updated_at = ? \
                   WHERE id = ? AND enabled = 1 AND next_fire_at = ?";
        let values: Vec<SqlValue> = vec![
            next_fire_at.into(),
            fired_at.into(),
            created.iter().rev().find_map(Clone::clone).into(),
            now.into(),
            schedule.id.clone().into(),
            schedule.next_fire_at.into(),
        ];
        if transaction.execute_raw(self.statement(sql, values)).await?.rows_affected() != 1 {
            // Another scheduler fired this fire time first: undo our jobs too.
            transaction.rollback().await?;
            return Ok(None);
        }
        transaction.commit().await?;
        if created.iter().any(Option::is_some) {
            self.ring_doorbell();
        }
        Ok(Some(created))
    }
}

fn schedule_from_row(row: &QueryResult) -> Result<Schedule, QueueError> {
    let text = |column: &str| -> Result<String, QueueError> { Ok(row.try_get("", column)?) };
    Ok(Schedule {
        id: text("id")?,
        name: text("name")?,
        task: text("task")?,
        cron: text("cron")?,
        timezone: text("timezone")?,
        input: json(row, "input")?,
        catch_up: CatchUp::parse(&text("catch_up")?).map_err(QueueError::Corrupt)?,
        catch_up_window: Duration::from_millis(int(row, "catch_up_window_ms")?.max(0) as u64),
        overlap: text("overlap")?.parse().map_err(QueueError::Corrupt)?,
        enabled: int(row, "enabled")? != 0,
        next_fire_at: opt_int(row, "next_fire_at")?,
        last_fire_at: opt_int(row, "last_fire_at")?,
        last_job_id: row.try_get("", "last_job_id")?,
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
    })
}
