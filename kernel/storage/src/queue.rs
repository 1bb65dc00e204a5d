//! The job queue, with the semantics of River and Oban: at-least-once delivery, atomic
//! claiming, leases renewed by heartbeat, rescue of expired leases, and the attempt number as
//! a fencing token so that a rescued attempt's late result can never overwrite a newer one.
//!
//! States: `queued` -> `running` -> `completed` | `retrying` -> `running` ... -> `failed`;
//! `cancelled` from any non-final state. Every attempt's end is kept: in `job_attempts`, except
//! the attempt that completed its job, which the job's row records ([`Store::attempts`]).
//!
//! Every function takes `now` (milliseconds since the epoch) so tests can inject a clock.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr, QueryResult, TransactionTrait, Value as SqlValue};
use serde_json::Value;

use super::limits::{SLOT_RETRIES, is_slot_taken};
use super::notify::EndNews;
use super::pauses::NOT_PAUSED;
use super::row::{int, json, opt_int, opt_json};
use super::{ExecutionRecord, Store, Waiting};

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    /// Task name or id.
    pub task: String,
    pub input: Value,
    /// Higher runs first.
    pub priority: i32,
    /// Not before this time; now when `None`.
    pub run_at: Option<i64>,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub timeout: Option<Duration>,
    /// A second enqueue with the same key returns the first job.
    pub idempotency_key: Option<String>,
    /// The version of the task (its digest) the job runs, whatever the task's files hold when
    /// it starts; `None` runs the version the node has then.
    pub task_digest: Option<String>,
    /// The trace the job belongs to (32 hex digits, W3C Trace Context); every attempt runs
    /// on it.
    pub trace_id: Option<String>,
    /// Jobs of the task sharing this key run at most the task's `per_key` limit at once.
    pub concurrency_key: Option<String>,
}

impl NewJob {
    pub fn new(task: impl Into<String>, input: Value) -> NewJob {
        NewJob {
            task: task.into(),
            input,
            priority: 0,
            run_at: None,
            max_attempts: 3,
            backoff: Backoff::default(),
            timeout: None,
            idempotency_key: None,
            task_digest: None,
            trace_id: None,
            concurrency_key: None,
        }
    }
}

/// Exponential backoff between attempts: `base * 2^(attempt-1)`, capped at `max`, with equal
/// jitter (half fixed, half random) so retries of many jobs spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_secs(1), max: Duration::from_secs(600) }
    }
}

impl Backoff {
    /// The delay before the attempt after `attempt` (1-based), with jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self.base.saturating_mul(1u32 << exponent).min(self.max);
        let half = full / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Retrying,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Retrying => "retrying",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn is_final(self) -> bool {
        matches!(self, JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        JobStatus::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
            let names: Vec<_> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
            format!("`{text}` is not a job status; use one of {}", names.join(", "))
        })
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub task: String,
    pub input: Value,
    pub priority: i32,
    pub run_at: i64,
    pub status: JobStatus,
    /// The current (or last) attempt; the fencing token of the running attempt.
    pub attempt: u32,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub timeout: Option<Duration>,
    pub idempotency_key: Option<String>,
    /// The task version it runs ([`NewJob::task_digest`]).
    pub task_digest: Option<String>,
    /// [`NewJob::trace_id`].
    pub trace_id: Option<String>,
    /// [`NewJob::concurrency_key`].
    pub concurrency_key: Option<String>,
    /// Why the job, queued or retrying, is not running yet; set by [`Store::mark_waiting`]
    /// (`None` otherwise, or when it waits only for a free worker).
    pub waiting: Option<Waiting>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub output: Option<Value>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The end of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempt: u32,
    /// `completed`, `failed`, `expired` or `released`.
    pub outcome: String,
    pub error: Option<String>,
    pub finished_at: i64,
}

/// How an attempt ended, for [`Store::finish`].
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    Completed(&'a Value),
    Failed(&'a str),
}

/// The fenced `UPDATE` that ends an attempt ([`Store::end_statement`]).
pub(crate) struct EndStatement {
    /// The job's status once it ran.
    pub status: JobStatus,
    pub sql: &'static str,
    pub values: Vec<SqlValue>,
    /// When the job retries (a failed attempt with attempts left).
    pub retry_at: Option<i64>,
}

/// What `enqueue` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Enqueued {
    pub job: Job,
    /// False when the idempotency key matched an existing job, which is returned instead.
    pub created: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// What was not found: `job ID`, `execution ID`, `schedule NAME`.
    #[error("no {0}")]
    NotFound(String),
    /// A result from an attempt that no longer owns the job (rescued, cancelled, superseded).
    #[error(
        "attempt {attempt} of job {job} no longer owns it (the job is {status} at attempt {current}); its result was discarded"
    )]
    Fenced { job: String, attempt: u32, status: JobStatus, current: u32 },
    #[error("job {job} is already {status}")]
    Final { job: String, status: JobStatus },
    #[error("invalid job: {0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("corrupt job row: {0}")]
    Corrupt(String),
}

/// Rows per `INSERT` of a batch: 15 values each, well below SQLite's 32,766 variables.
const BATCH_ROWS: usize = 1_000;

/// A new job's row in [`COLUMNS`] order: 15 placeholders.
const NEW_ROW: &str = "(?, ?, ?, ?, ?, 'queued', 0, ?, ?, ?, ?, ?, NULL, NULL, NULL, NULL, ?, ?, ?, ?, ?)";

fn new_row(id: &str, new: &NewJob, now: i64) -> Vec<SqlValue> {
    vec![
        id.into(),
        new.task.clone().into(),
        new.input.to_string().into(),
        new.priority.into(),
        new.run_at.unwrap_or(now).into(),
        i64::from(new.max_attempts).into(),
        millis(new.backoff.base).into(),
        millis(new.backoff.max).into(),
        new.timeout.map(millis).into(),
        new.idempotency_key.clone().into(),
        now.into(),
        now.into(),
        new.task_digest.clone().into(),
        new.trace_id.clone().into(),
        new.concurrency_key.clone().into(),
    ]
}

/// What an insert does when its idempotency key is taken. The predicate names the partial
/// unique index PostgreSQL keeps over the keys (see the migration
/// `m20261201_000019_partial_idempotency_index`); SQLite's full unique constraint satisfies it too.
const ON_KEY_TAKEN: &str = "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";

/// How the transaction a claim is part of commits, on PostgreSQL (SQLite has one way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimCommit {
    /// The commit waits for its WAL flush, as every end's does.
    Durable,
    /// The commit does not wait for its WAL flush ([`LAZY_COMMIT`]): for the claim of a node
    /// that runs and holds nothing, whose claim is the whole path from a job's due time to its
    /// start. Only for a transaction of claims alone: one that ends jobs must wait.
    Lazy,
}

/// What one claim statement asks for: up to `n` jobs for `owner`, each leased for `lease` from
/// `now`, committed as `commit` says.
#[derive(Clone, Copy)]
pub(crate) struct Ask<'a> {
    pub commit: ClaimCommit,
    pub owner: &'a str,
    pub lease: Duration,
    pub now: i64,
    pub n: usize,
}

/// The claim's condition that turns `synchronous_commit` off until the end of its transaction,
/// on PostgreSQL: evaluated for each row the claim takes, it sets the transaction's setting as
/// `SET LOCAL` would, without a statement of its own. A one-row update that waited for its
/// flush took 0.33-0.44 ms here on an idle machine against 0.16 ms without, and 3.4-4.1 ms
/// against 0.2-0.3 ms while a build wrote to the disk (`pgbench -M extended`). Losing such a
/// claim costs nothing a lease expiry does not: a PostgreSQL crash that loses it leaves the job
/// queued under its earlier attempt, so it runs again (at least once), and the run that started
/// from the lost claim is fenced by attempt number and status like any other (reliability row
/// J23). Any later synchronous commit (each end's) flushes the WAL up to itself, the claim
/// included. Only idle nodes' claims use it: lazy claims in every transaction of claims alone
/// made 10,000-job drains 8-27% slower (7 of 7 interleaved pairs).
const LAZY_COMMIT: &str = " AND set_config('synchronous_commit', 'off', true) = 'off'";

pub(super) const COLUMNS: &str = "id, task, input, priority, run_at, status, attempt, max_attempts, backoff_base_ms, \
     backoff_max_ms, timeout_ms, idempotency_key, lease_owner, lease_expires_at, output, last_error, \
     created_at, updated_at, task_digest, trace_id, concurrency_key";

impl Store {
    /// Adds a job. With an idempotency key already used, returns the existing job instead.
    pub async fn enqueue(&self, new: NewJob, now: i64) -> Result<Enqueued, QueueError> {
        if new.max_attempts == 0 {
            return Err(QueueError::Invalid("max_attempts must be at least 1".into()));
        }
        if new.idempotency_key.as_deref().is_some_and(str::is_empty) {
            return Err(QueueError::Invalid("an idempotency key must not be empty".into()));
        }
        // The new row comes back from the insert itself: reading it back would cost a round
        // trip before the node's idle claimer is woken.
        let sql = format!("INSERT INTO jobs ({COLUMNS}) VALUES {NEW_ROW} {ON_KEY_TAKEN} RETURNING {COLUMNS}");
        let row =
            self.writer().query_one_raw(self.statement(&sql, new_row(&crate::new_id(), &new, now))).await?;
        let inserted = row.map(|row| job_from_row(&row)).transpose()?;
        if inserted.is_some() {
            self.ring_doorbell();
        }
        match (inserted, &new.idempotency_key) {
            (Some(job), _) => Ok(Enqueued { job, created: true }),
            (None, Some(key)) => Ok(Enqueued { job: self.job_by_key(key).await?, created: false }),
            (None, None) => Err(QueueError::Corrupt("insert affected no row".into())),
        }
    }

    /// Inserts a job unless its idempotency key is taken; true when inserted.
    pub(crate) async fn insert_job(
        &self,
        connection: &impl ConnectionTrait,
        id: &str,
        new: &NewJob,
        now: i64,
    ) -> Result<bool, QueueError> {
        let sql = format!("INSERT INTO jobs ({COLUMNS}) VALUES {NEW_ROW} {ON_KEY_TAKEN}");
        Ok(connection.execute_raw(self.statement(&sql, new_row(id, new, now))).await?.rows_affected() == 1)
    }

    /// Adds `jobs` in one transaction: all of them, or none when anything fails. Returns each
    /// job's id, and whether it was created (false: its idempotency key named an existing job,
    /// whose id it is), in order. `progress` hears how many are written after each statement.
    pub async fn enqueue_batch(
        &self,
        jobs: &[NewJob],
        now: i64,
        mut progress: impl FnMut(usize),
    ) -> Result<Vec<(String, bool)>, QueueError> {
        for (index, job) in jobs.iter().enumerate() {
            if job.max_attempts == 0 {
                return Err(QueueError::Invalid(format!("job {index}: max_attempts must be at least 1")));
            }
            if job.idempotency_key.as_deref().is_some_and(str::is_empty) {
                return Err(QueueError::Invalid(format!(
                    "job {index}: an idempotency key must not be empty"
                )));
            }
        }
        let transaction = self.writer().begin().await?;
        let mut written = Vec::with_capacity(jobs.len());
        for chunk in jobs.chunks(BATCH_ROWS) {
            let ids: Vec<String> = chunk.iter().map(|_| crate::new_id()).collect();
            let rows = vec![NEW_ROW; chunk.len()].join(", ");
            let values: Vec<SqlValue> =
                chunk.iter().zip(&ids).flat_map(|(job, id)| new_row(id, job, now)).collect();
            if chunk.iter().all(|job| job.idempotency_key.is_none()) {
                // No key, no conflict: every row goes in. Without `RETURNING` the ids do not
                // come back one row at a time (on SQLite, a hop between threads for each row).
                let sql = format!("INSERT INTO jobs ({COLUMNS}) VALUES {rows}");
                let inserted = transaction.execute_raw(self.statement(&sql, values)).await?.rows_affected();
                if inserted != chunk.len() as u64 {
                    return Err(QueueError::Corrupt(format!(
                        "{inserted} of a batch's {} jobs were inserted",
                        chunk.len()
                    )));
                }
                written.extend(ids.into_iter().map(|id| (id, true)));
                progress(written.len());
                continue;
            }
            let sql = format!("INSERT INTO jobs ({COLUMNS}) VALUES {rows} {ON_KEY_TAKEN} RETURNING id");
            let inserted: std::collections::HashSet<String> = transaction
                .query_all_raw(self.statement(&sql, values))
                .await?
                .iter()
                .map(|row| row.try_get::<String>("", "id"))
                .collect::<Result<_, _>>()?;
            for (job, id) in chunk.iter().zip(ids) {
                if inserted.contains(&id) {
                    written.push((id, true));
                    continue;
                }
                let Some(key) = &job.idempotency_key else {
                    return Err(QueueError::Corrupt("a job of the batch was not inserted".into()));
                };
                let sql = "SELECT id FROM jobs WHERE idempotency_key = ?";
                let row = transaction.query_one_raw(self.statement(sql, vec![key.clone().into()])).await?;
                let existing = row.ok_or_else(|| QueueError::Corrupt(format!("no job has the key {key}")))?;
                written.push((existing.try_get("", "id")?, false));
            }
            progress(written.len());
        }
        transaction.commit().await?;
        self.ring_doorbell();
        Ok(written)
    }

    /// Atomically takes the most urgent runnable job for `owner`, leasing it until
    /// `now + lease`. The returned job's `attempt` is this attempt's fencing token.
    pub async fn claim(&self, owner: &str, lease: Duration, now: i64) -> Result<Option<Job>, QueueError> {
        Ok(self.claim_up_to(owner, lease, now, 1).await?.pop())
    }

    /// [`Store::claim`] of up to `n` jobs at once, most urgent first, each leased and fenced
    /// on its own.
    pub async fn claim_up_to(
        &self,
        owner: &str,
        lease: Duration,
        now: i64,
        n: usize,
    ) -> Result<Vec<Job>, QueueError> {
        self.claim_committed(Ask { commit: ClaimCommit::Durable, owner, lease, now, n }).await
    }

    /// The claim `ask`, in a transaction of its own.
    pub(crate) async fn claim_committed(&self, ask: Ask<'_>) -> Result<Vec<Job>, QueueError> {
        if self.concurrency_limits().is_empty() {
            return self.claim_up_to_on(self.writer(), ask).await;
        }
        // The running jobs are read and the claim made in one transaction (see `limits`).
        let mut retries = 0;
        loop {
            let transaction = self.writer().begin().await?;
            match self.claim_up_to_on(&transaction, ask).await {
                Err(error) if is_slot_taken(&error) && retries < SLOT_RETRIES => {
                    retries += 1;
                    transaction.rollback().await?;
                }
                Err(error) => return Err(error),
                Ok(jobs) => {
                    transaction.commit().await?;
                    return Ok(jobs);
                }
            }
        }
    }

    /// Claims what `ask` asks for on `connection`, most urgent first. With concurrency limits
    /// one at a time: each claim takes a free slot the next one must see.
    pub(crate) async fn claim_up_to_on(
        &self,
        connection: &impl ConnectionTrait,
        ask: Ask<'_>,
    ) -> Result<Vec<Job>, QueueError> {
        let limits = self.concurrency_limits();
        if limits.is_empty() {
            return self.claim_together(connection, &limits, ask).await;
        }
        let mut claimed = Vec::with_capacity(ask.n);
        while claimed.len() < ask.n {
            match self.claim_together(connection, &limits, Ask { n: 1, ..ask }).await?.pop() {
                Some(job) => claimed.push(job),
                None => break,
            }
        }
        Ok(claimed)
    }

    /// One statement that claims up to `n` jobs (at most one when `limits` are not empty: the
    /// slots it assigns are per task).
    async fn claim_together(
        &self,
        connection: &impl ConnectionTrait,
        limits: &super::ConcurrencyLimits,
        ask: Ask<'_>,
    ) -> Result<Vec<Job>, QueueError> {
        let Ask { commit, owner, lease, now, n } = ask;
        if n == 0 {
            return Ok(Vec::new());
        }
        // SQLite without statistics (a new database; `ANALYZE` never ran) sorts every due job
        // before its `LIMIT`: a claim then costs time in proportion to the queue's depth
        // (measured: 300 claims over 2,000 queued jobs, 0.29 s; in the index's order, 0.10 s).
        let (lock, order) = match self.backend() {
            sea_orm::DbBackend::Postgres => (" FOR UPDATE SKIP LOCKED", ""),
            _ => ("", " INDEXED BY jobs_claim_order"),
        };
        let lazy = match (self.backend(), commit) {
            (sea_orm::DbBackend::Postgres, ClaimCommit::Lazy) => LAZY_COMMIT,
            _ => "",
        };
        // The pauses are read first, and the claim names the paused tasks: a pause check inside
        // the claim's subquery made every claim several times slower on PostgreSQL through
        // sqlx (measured: 315 instead of 791 claims and finishes a second).
        if !limits.is_empty() {
            self.write_first(connection).await?;
        }
        let paused = self.paused_scopes(connection).await?;
        if paused.iter().any(|scope| scope == super::WHOLE_QUEUE) {
            return Ok(Vec::new());
        }
        let mut at_limit = self.at_limit(connection, limits).await?;
        at_limit.tasks.extend(paused);
        let (left_aside, aside_values) = at_limit.condition();
        let (slots, slot_values) = at_limit.slots();
        // One job: `=`, which PostgreSQL plans as one index lookup after the subquery (`IN`
        // adds a hash aggregate), on the path of a lone job on an idle node.
        let matches = if n == 1 { "=" } else { "IN" };
        let sql = format!(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, lease_owner = ?, lease_expires_at = ?, \
             updated_at = ?{slots} WHERE id {matches} (SELECT id FROM jobs{order} WHERE status IN ('queued', 'retrying') \
             AND run_at <= ?{left_aside} ORDER BY priority DESC, run_at, created_at, id LIMIT ?{lock}){lazy} \
             RETURNING {COLUMNS}"
        );
        let mut values: Vec<SqlValue> = vec![owner.into(), (now + millis(lease)).into(), now.into()];
        values.extend(slot_values);
        values.push(now.into());
        values.extend(aside_values);
        values.push(i64::try_from(n).unwrap_or(i64::MAX).into());
        let rows = connection.query_all_raw(self.statement(&sql, values)).await?;
        let mut jobs = rows.iter().map(job_from_row).collect::<Result<Vec<_>, _>>()?;
        // `RETURNING` follows no order: the most urgent first, as the claim chose them.
        jobs.sort_by(|a, b| {
            (b.priority, a.run_at, a.created_at, &a.id).cmp(&(a.priority, b.run_at, b.created_at, &b.id))
        });
        Ok(jobs)
    }

    /// The earliest time after `now` at which a waiting job becomes due (a delayed job, a
    /// retry's backoff, a schedule's future fire), paused tasks' jobs aside; `None` when no job
    /// waits for a time. An idle consumer sleeps until then rather than a whole poll interval.
    pub async fn next_due(&self, now: i64) -> Result<Option<i64>, QueueError> {
        let sql = format!(
            "SELECT MIN(run_at) AS due FROM jobs WHERE status IN ('queued', 'retrying') AND run_at > ? AND {NOT_PAUSED}"
        );
        let row = self.connection().query_one_raw(self.statement(&sql, vec![now.into()])).await?;
        Ok(row.map(|row| row.try_get::<Option<i64>>("", "due")).transpose()?.flatten())
    }

    /// Extends the lease of the running attempt. False when the attempt no longer owns the job
    /// (rescued or cancelled): its runner should stop.
    pub async fn heartbeat(
        &self,
        id: &str,
        attempt: u32,
        owner: &str,
        until: i64,
        now: i64,
    ) -> Result<bool, QueueError> {
        let sql = "UPDATE jobs SET lease_expires_at = ?, updated_at = ? \
                   WHERE id = ? AND attempt = ? AND lease_owner = ? AND status = 'running'";
        let values: Vec<SqlValue> =
            vec![until.into(), now.into(), id.into(), i64::from(attempt).into(), owner.into()];
        Ok(self.writer().execute_raw(self.statement(sql, values)).await?.rows_affected() == 1)
    }

    /// Records the success of `attempt`. Fenced: refused unless that attempt still owns the job.
    pub async fn complete(&self, id: &str, attempt: u32, output: &Value, now: i64) -> Result<(), QueueError> {
        self.finish(id, attempt, Outcome::Completed(output), None, now).await.map(|_| ())
    }

    /// Records the failure of `attempt`: the job retries after its backoff, or fails for good
    /// when it has used its attempts. Fenced like [`Store::complete`]. Returns the new status.
    pub async fn fail(&self, id: &str, attempt: u32, error: &str, now: i64) -> Result<JobStatus, QueueError> {
        self.finish(id, attempt, Outcome::Failed(error), None, now).await
    }

    /// Ends `attempt` with `outcome` and, in the same transaction, stores the run's
    /// `execution` record: one commit per job. Fenced: when the attempt no longer owns the job
    /// nothing about the job changes (the execution is still recorded) and `Fenced` is returned.
    pub async fn finish(
        &self,
        id: &str,
        attempt: u32,
        outcome: Outcome<'_>,
        execution: Option<&ExecutionRecord>,
        now: i64,
    ) -> Result<JobStatus, QueueError> {
        let (status, _) = self.finish_then_claim(id, attempt, outcome, execution, None, now).await?;
        Ok(status)
    }

    /// [`Store::finish`], and in the same transaction the claim of the next job for `claim`
    /// (owner and lease), as [`Store::claim`] would: a consumer that goes on working commits
    /// once per job instead of twice. A fenced attempt claims nothing.
    pub async fn finish_then_claim(
        &self,
        id: &str,
        attempt: u32,
        outcome: Outcome<'_>,
        execution: Option<&ExecutionRecord>,
        claim: Option<(&str, Duration, usize)>,
        now: i64,
    ) -> Result<(JobStatus, Vec<Job>), QueueError> {
        let end = self.end_statement(id, attempt, outcome, now).await?;
        let error = match outcome {
            Outcome::Completed(_) => None,
            Outcome::Failed(error) => Some(error),
        };
        let mut retries = 0;
        loop {
            let transaction = self.writer().begin().await?;
            let Some(row) = transaction.query_one_raw(self.statement(end.sql, end.values.clone())).await?
            else {
                transaction.rollback().await?;
                if let Some(execution) = execution {
                    self.insert_execution(self.writer(), execution).await?;
                }
                return Err(self.fenced(id, attempt).await);
            };
            let task: String = row.try_get("", "task")?;
            // A completed attempt is read from its job's row (see [`Store::attempts`]).
            if let Some(error) = error {
                self.record_attempt(&transaction, id, attempt, "failed", Some(error), now).await?;
            }
            if let Some(execution) = execution {
                self.insert_execution(&transaction, execution).await?;
            }
            let next = match claim {
                Some((owner, lease, up_to)) => {
                    let ask = Ask { commit: ClaimCommit::Durable, owner, lease, now, n: up_to };
                    match self.claim_up_to_on(&transaction, ask).await {
                        // Another node's claim took the slot: the whole transaction again.
                        Err(error) if is_slot_taken(&error) && retries < SLOT_RETRIES => {
                            retries += 1;
                            transaction.rollback().await?;
                            continue;
                        }
                        next => next?,
                    }
                }
                None => Vec::new(),
            };
            let mut news = EndNews::default();
            news.ended(&self.concurrency_limits(), &task, end.retry_at);
            let none_left = claim.is_some_and(|(_, _, up_to)| next.len() < up_to);
            self.tell_nodes_at_commit(&transaction, &news, none_left).await?;
            transaction.commit().await?;
            return Ok((end.status, next));
        }
    }

    /// The job's status after `attempt` ended with `outcome`, and the fenced `UPDATE` that
    /// sets it and returns the job's task (no row changes when the attempt no longer owns the
    /// job).
    pub(crate) async fn end_statement(
        &self,
        id: &str,
        attempt: u32,
        outcome: Outcome<'_>,
        now: i64,
    ) -> Result<EndStatement, QueueError> {
        Ok(match outcome {
            Outcome::Completed(output) => EndStatement {
                status: JobStatus::Completed,
                sql: "UPDATE jobs SET status = 'completed', output = ?, lease_owner = NULL, lease_expires_at = NULL, \
                      updated_at = ? WHERE id = ? AND attempt = ? AND status = 'running' RETURNING task",
                values: vec![output.to_string().into(), now.into(), id.into(), i64::from(attempt).into()],
                retry_at: None,
            },
            Outcome::Failed(error) => {
                let job = self.job(id).await?;
                let status =
                    if attempt >= job.max_attempts { JobStatus::Failed } else { JobStatus::Retrying };
                let run_at = now + millis(job.backoff.delay(attempt));
                EndStatement {
                    status,
                    sql: "UPDATE jobs SET status = ?, run_at = ?, last_error = ?, lease_owner = NULL, \
                          lease_expires_at = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND status = 'running' \
                          RETURNING task",
                    values: vec![
                        status.as_str().into(),
                        run_at.into(),
                        error.into(),
                        now.into(),
                        id.into(),
                        i64::from(attempt).into(),
                    ],
                    retry_at: (status == JobStatus::Retrying).then_some(run_at),
                }
            }
        })
    }

    /// Releases every running job whose lease expired before `now` (its worker or node died):
    /// it retries at once, or fails when it has used its attempts. Returns how many.
    pub async fn rescue_expired(&self, now: i64) -> Result<u64, QueueError> {
        const ERROR: &str = "the lease expired: the worker or node running this attempt stopped heartbeating";
        let transaction = self.writer().begin().await?;
        let sql = "UPDATE jobs SET status = CASE WHEN attempt >= max_attempts THEN 'failed' ELSE 'retrying' END, \
                   run_at = ?, last_error = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
                   WHERE status = 'running' AND lease_expires_at < ? RETURNING id, attempt";
        let values: Vec<SqlValue> = vec![now.into(), ERROR.into(), now.into(), now.into()];
        let rescued = transaction.query_all_raw(self.statement(sql, values)).await?;
        for row in &rescued {
            let id: String = row.try_get("", "id")?;
            let attempt: i32 = row.try_get("", "attempt")?;
            self.record_attempt(&transaction, &id, attempt as u32, "expired", Some(ERROR), now).await?;
        }
        if !rescued.is_empty() {
            self.wake_nodes_at_commit(&transaction).await?;
        }
        transaction.commit().await?;
        if !rescued.is_empty() {
            self.ring_doorbell();
        }
        Ok(rescued.len() as u64)
    }

    /// Gives a running attempt back to the queue unfinished (a draining node). It does not use
    /// up an attempt: `max_attempts` grows by one, while `attempt` stays monotonic as the
    /// fencing token. Fenced like [`Store::complete`].
    pub async fn release(&self, id: &str, attempt: u32, now: i64) -> Result<(), QueueError> {
        self.release_because(id, attempt, "released by a draining node", now).await
    }

    /// [`Store::release`], with `why` recorded as the attempt's error.
    pub async fn release_because(
        &self,
        id: &str,
        attempt: u32,
        why: &str,
        now: i64,
    ) -> Result<(), QueueError> {
        let transaction = self.writer().begin().await?;
        let sql = "UPDATE jobs SET status = 'retrying', run_at = ?, max_attempts = max_attempts + 1, lease_owner = NULL, \
                   lease_expires_at = NULL, updated_at = ? WHERE id = ? AND attempt = ? AND status = 'running'";
        let values: Vec<SqlValue> = vec![now.into(), now.into(), id.into(), i64::from(attempt).into()];
        if transaction.execute_raw(self.statement(sql, values)).await?.rows_affected() != 1 {
            transaction.rollback().await?;
            return Err(self.fenced(id, attempt).await);
        }
        self.record_attempt(&transaction, id, attempt, "released", Some(why), now).await?;
        self.wake_nodes_at_commit(&transaction).await?;
        transaction.commit().await?;
        self.ring_doorbell();
        Ok(())
    }

    /// Cancels a job that has not finished. A running attempt learns it at its next heartbeat
    /// and its result is then fenced out.
    pub async fn cancel(&self, id: &str, now: i64) -> Result<Job, QueueError> {
        let sql = "UPDATE jobs SET status = 'cancelled', lease_owner = NULL, lease_expires_at = NULL, updated_at = ? \
                   WHERE id = ? AND status IN ('queued', 'retrying', 'running')";
        let values: Vec<SqlValue> = vec![now.into(), id.into()];
        let cancelled = self.writer().execute_raw(self.statement(sql, values)).await?.rows_affected() == 1;
        let job = self.job(id).await?;
        if !cancelled {
            return Err(QueueError::Final { job: job.id, status: job.status });
        }
        // A running job of a limited task held a concurrency slot, free now: the other nodes
        // may claim a job that waited for it (or find it at their next poll, when this fails).
        if self.concurrency_limits().get(&job.task).is_some()
            && let Err(error) = self.notify(super::JOBS_CHANNEL, super::WAKE_PAYLOAD).await
        {
            tracing::warn!(job = %job.id, "cannot tell the other nodes that a cancel freed a slot: {error}");
        }
        Ok(job)
    }

    pub async fn job(&self, id: &str) -> Result<Job, QueueError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = ?");
        let row = self.connection().query_one_raw(self.statement(&sql, vec![id.into()])).await?;
        row.map(|row| job_from_row(&row))
            .transpose()?
            .ok_or_else(|| QueueError::NotFound(format!("job {id}")))
    }

    async fn job_by_key(&self, key: &str) -> Result<Job, QueueError> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE idempotency_key = ?");
        let row = self.connection().query_one_raw(self.statement(&sql, vec![key.into()])).await?;
        row.map(|row| job_from_row(&row))
            .transpose()?
            .ok_or_else(|| QueueError::NotFound(format!("job with key {key}")))
    }

    /// Jobs, newest first, optionally of one status.
    pub async fn jobs(&self, status: Option<JobStatus>, limit: u64) -> Result<Vec<Job>, QueueError> {
        let (filter, mut values): (&str, Vec<SqlValue>) = match status {
            Some(status) => ("WHERE status = ?", vec![status.as_str().into()]),
            None => ("", Vec::new()),
        };
        values.push((limit.min(i64::MAX as u64) as i64).into());
        let sql = format!("SELECT {COLUMNS} FROM jobs {filter} ORDER BY created_at DESC, id LIMIT ?");
        let rows = self.connection().query_all_raw(self.statement(&sql, values)).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Whether the database answers a query: in constant time, whatever it holds.
    pub async fn ping(&self) -> Result<(), QueueError> {
        self.connection().execute_raw(self.statement("SELECT 1", Vec::new())).await?;
        Ok(())
    }

    /// Jobs per status: a scan of every job, finished ones included, so its cost grows with
    /// the history kept (`retention`).
    pub async fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>, QueueError> {
        self.counts_by_status("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").await
    }

    /// Jobs waiting or running, per status: a range of the status index, so its cost follows
    /// the live work, not the history (3 million finished jobs on PostgreSQL: under 1 ms,
    /// against 0.3 s for [`Store::job_counts`]).
    pub async fn live_job_counts(&self) -> Result<Vec<(JobStatus, u64)>, QueueError> {
        self.counts_by_status(
            "SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'retrying', 'running') \
             GROUP BY status",
        )
        .await
    }

    async fn counts_by_status(&self, sql: &str) -> Result<Vec<(JobStatus, u64)>, QueueError> {
        let rows = self.connection().query_all_raw(self.statement(sql, Vec::new())).await?;
        let mut counts = Vec::new();
        for row in rows {
            let status: String = row.try_get("", "status")?;
            let n: i64 = row.try_get("", "n")?;
            counts.push((status.parse().map_err(QueueError::Corrupt)?, n as u64));
        }
        Ok(counts)
    }

    /// How each attempt of the job ended, in order. `job_attempts` keeps the attempts that did
    /// not complete; the one that completed its job is that job's row (its attempt, and its last
    /// update for the time), which saves each job an insert, an index entry and a foreign-key
    /// check on the queue's hot path. Rows written for completed attempts before that change
    /// are read as they are.
    pub async fn attempts(&self, id: &str) -> Result<Vec<Attempt>, QueueError> {
        let sql = "SELECT attempt, outcome, error, finished_at FROM job_attempts WHERE job_id = ? \
                   UNION ALL SELECT attempt, 'completed' AS outcome, NULL AS error, updated_at AS finished_at \
                   FROM jobs WHERE id = ? AND status = 'completed' AND NOT EXISTS \
                   (SELECT 1 FROM job_attempts WHERE job_id = jobs.id AND attempt = jobs.attempt) \
                   ORDER BY attempt";
        let rows = self.connection().query_all_raw(self.statement(sql, vec![id.into(), id.into()])).await?;
        rows.iter()
            .map(|row| {
                Ok(Attempt {
                    attempt: row.try_get::<i32>("", "attempt")? as u32,
                    outcome: row.try_get("", "outcome")?,
                    error: row.try_get("", "error")?,
                    finished_at: row.try_get("", "finished_at")?,
                })
            })
            .collect()
    }

    pub(crate) async fn record_attempt(
        &self,
        connection: &impl ConnectionTrait,
        id: &str,
        attempt: u32,
        outcome: &str,
        error: Option<&str>,
        now: i64,
    ) -> Result<(), QueueError> {
        let sql =
            "INSERT INTO job_attempts (job_id, attempt, outcome, error, finished_at) VALUES (?, ?, ?, ?, ?)";
        let values: Vec<SqlValue> = vec![
            id.into(),
            i64::from(attempt).into(),
            outcome.into(),
            error.map(str::to_owned).into(),
            now.into(),
        ];
        connection.execute_raw(self.statement(sql, values)).await?;
        Ok(())
    }

    /// Why a result of `attempt` was refused.
    pub(crate) async fn fenced(&self, id: &str, attempt: u32) -> QueueError {
        match self.job(id).await {
            Ok(job) => QueueError::Fenced { job: job.id, attempt, status: job.status, current: job.attempt },
            Err(error) => error,
        }
    }
}

pub(super) fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

pub(super) fn job_from_row(row: &QueryResult) -> Result<Job, QueueError> {
    let text = |column: &str| -> Result<String, QueueError> { Ok(row.try_get("", column)?) };
    Ok(Job {
        id: text("id")?,
        task: text("task")?,
        input: json(row, "input")?,
        priority: int(row, "priority")? as i32,
        run_at: int(row, "run_at")?,
        status: text("status")?.parse().map_err(QueueError::Corrupt)?,
        attempt: int(row, "attempt")? as u32,
        max_attempts: int(row, "max_attempts")? as u32,
        backoff: Backoff {
            base: Duration::from_millis(int(row, "backoff_base_ms")?.max(0) as u64),
            max: Duration::from_millis(int(row, "backoff_max_ms")?.max(0) as u64),
        },
        timeout: opt_int(row, "timeout_ms")?.map(|ms| Duration::from_millis(ms.max(0) as u64)),
        idempotency_key: row.try_get("", "idempotency_key")?,
        task_digest: row.try_get("", "task_digest")?,
        trace_id: row.try_get("", "trace_id")?,
        concurrency_key: row.try_get("", "concurrency_key")?,
        waiting: None,
        lease_owner: row.try_get("", "lease_owner")?,
        lease_expires_at: opt_int(row, "lease_expires_at")?,
        output: opt_json(row, "output")?,
        last_error: row.try_get("", "last_error")?,
        created_at: int(row, "created_at")?,
        updated_at: int(row, "updated_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_equal_jitter_and_is_capped() {
        let backoff = Backoff { base: Duration::from_secs(2), max: Duration::from_secs(20) };
        for _ in 0..100 {
            let first = backoff.delay(1);
            assert!(first >= Duration::from_secs(1) && first <= Duration::from_secs(2), "{first:?}");
            let third = backoff.delay(3);
            assert!(third >= Duration::from_secs(4) && third <= Duration::from_secs(8), "{third:?}");
            let late = backoff.delay(40);
            assert!(late >= Duration::from_secs(10) && late <= Duration::from_secs(20), "{late:?}");
        }
    }

    #[test]
    fn statuses_parse_or_list_the_choices() {
        assert_eq!("retrying".parse::<JobStatus>(), Ok(JobStatus::Retrying));
        assert!("done".parse::<JobStatus>().unwrap_err().contains("queued, running, retrying"));
    }
}
