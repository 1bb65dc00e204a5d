//! Concurrency limits: at most N running jobs of a task, and at most M running jobs of a task
//! that share a concurrency key (one customer, one account), on every node at once.
//!
//! The claim enforces them: before it picks a job it counts the running jobs of the limited
//! tasks and leaves aside the tasks and keys at their limit, so their jobs stay queued while
//! other jobs behind them run (no head-of-line blocking). The count and the claim share one
//! transaction; on PostgreSQL that transaction first takes an advisory lock, so two nodes
//! cannot both see a free slot and both fill it (under READ COMMITTED each statement after the
//! lock sees every claim committed before it). SQLite admits one writer at a time anyway.
//!
//! A node enforces the limits its own tasks and configuration declare
//! ([`Store::set_concurrency_limits`]); nodes that serve the same tasks agree.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, RwLock};

use sea_orm::{ConnectionTrait, DbBackend, Value as SqlValue};

use super::{Job, JobStatus, QueueError, Store, WHOLE_QUEUE};

/// The limits of one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TaskLimit {
    /// Running jobs of the task, all keys together.
    pub limit: Option<u32>,
    /// Running jobs of the task that share one concurrency key.
    pub per_key: Option<u32>,
}

/// Every task's limits, by task name; tasks without limits are absent.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConcurrencyLimits(BTreeMap<String, TaskLimit>);

impl ConcurrencyLimits {
    pub fn new(limits: impl IntoIterator<Item = (String, TaskLimit)>) -> ConcurrencyLimits {
        ConcurrencyLimits(
            limits
                .into_iter()
                .filter(|(_, limit)| limit.limit.is_some() || limit.per_key.is_some())
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, task: &str) -> Option<TaskLimit> {
        self.0.get(task).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, TaskLimit)> {
        self.0.iter().map(|(task, limit)| (task.as_str(), *limit))
    }
}

/// Why a queued job is not running yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Its `run_at` (a delay, a retry's backoff) is still ahead.
    Scheduled,
    /// Its task's queue, or the whole queue, is paused.
    Paused,
    /// Its task, or its concurrency key, has as many jobs running as its limit allows.
    Concurrency,
}

impl Waiting {
    pub fn as_str(self) -> &'static str {
        match self {
            Waiting::Scheduled => "scheduled",
            Waiting::Paused => "paused",
            Waiting::Concurrency => "concurrency",
        }
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tasks and (task, key) pairs at their limit now.
#[derive(Debug, Default)]
pub(crate) struct AtLimit {
    pub tasks: Vec<String>,
    pub keys: Vec<(String, String)>,
}

impl AtLimit {
    fn holds(&self, job: &Job) -> bool {
        self.tasks.contains(&job.task)
            || job
                .concurrency_key
                .as_ref()
                .is_some_and(|key| self.keys.iter().any(|(task, held)| *task == job.task && held == key))
    }

    /// The claim's condition leaving these aside, and its values; empty when none is at its limit.
    pub fn condition(&self) -> (String, Vec<SqlValue>) {
        let mut sql = String::new();
        let mut values: Vec<SqlValue> = Vec::new();
        if !self.tasks.is_empty() {
            sql.push_str(&format!(" AND task NOT IN ({})", vec!["?"; self.tasks.len()].join(", ")));
            values.extend(self.tasks.iter().cloned().map(SqlValue::from));
        }
        if !self.keys.is_empty() {
            let pairs = vec!["NOT (task = ? AND concurrency_key = ?)"; self.keys.len()].join(" AND ");
            sql.push_str(&format!(" AND (concurrency_key IS NULL OR ({pairs}))"));
            for (task, key) in &self.keys {
                values.push(task.clone().into());
                values.push(key.clone().into());
            }
        }
        (sql, values)
    }
}

/// The advisory lock PostgreSQL claims take while limits are in force ("ratchet" in ASCII).
const LIMITS_LOCK: i64 = 0x0072_6174_6368_6574;

pub(crate) type SharedLimits = Arc<RwLock<Arc<ConcurrencyLimits>>>;

impl Store {
    /// The limits this node's claims enforce from now on (its tasks' and its configuration's).
    pub fn set_concurrency_limits(&self, limits: ConcurrencyLimits) {
        let mut held = self.limits.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *held = Arc::new(limits);
    }

    pub fn concurrency_limits(&self) -> Arc<ConcurrencyLimits> {
        Arc::clone(&self.limits.read().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Serialises the claims of every node while limits are in force (PostgreSQL; SQLite
    /// serialises writers itself). Held until the transaction ends.
    pub(crate) async fn lock_limits(&self, connection: &impl ConnectionTrait) -> Result<(), QueueError> {
        let sql = match self.backend() {
            DbBackend::Postgres => "SELECT pg_advisory_xact_lock(?)",
            // A write first, so the transaction holds SQLite's write lock before it counts: a
            // transaction that reads first cannot wait for the lock when another process holds
            // it, and fails "database is locked" instead (several nodes on one file).
            _ => "UPDATE queue_pauses SET scope = scope WHERE scope = ? AND 0 = 1",
        };
        let value: SqlValue = match self.backend() {
            DbBackend::Postgres => LIMITS_LOCK.into(),
            _ => "".into(),
        };
        connection.execute_raw(self.statement(sql, vec![value])).await?;
        Ok(())
    }

    /// The limited tasks and keys that have as many running jobs as `limits` allow.
    pub(crate) async fn at_limit(
        &self,
        connection: &impl ConnectionTrait,
        limits: &ConcurrencyLimits,
    ) -> Result<AtLimit, QueueError> {
        if limits.is_empty() {
            return Ok(AtLimit::default());
        }
        let tasks: Vec<SqlValue> = limits.iter().map(|(task, _)| task.to_owned().into()).collect();
        let sql = format!(
            "SELECT task, concurrency_key, COUNT(*) AS n FROM jobs WHERE status = 'running' AND task IN ({}) \
             GROUP BY task, concurrency_key",
            vec!["?"; tasks.len()].join(", ")
        );
        let rows = connection.query_all_raw(self.statement(&sql, tasks)).await?;
        let mut by_task: HashMap<String, i64> = HashMap::new();
        let mut at_limit = AtLimit::default();
        for row in rows {
            let task: String = row.try_get("", "task")?;
            let key: Option<String> = row.try_get("", "concurrency_key")?;
            let running: i64 = row.try_get("", "n")?;
            let limit = limits.get(&task).unwrap_or_default();
            *by_task.entry(task.clone()).or_default() += running;
            if let (Some(key), Some(per_key)) = (key, limit.per_key)
                && running >= i64::from(per_key)
            {
                at_limit.keys.push((task, key));
            }
        }
        for (task, running) in by_task {
            if limits
                .get(&task)
                .and_then(|limit| limit.limit)
                .is_some_and(|limit| running >= i64::from(limit))
            {
                at_limit.tasks.push(task);
            }
        }
        Ok(at_limit)
    }

    /// Sets [`Job::waiting`] on each waiting job of `jobs`: why it is not running yet.
    pub async fn mark_waiting(&self, jobs: &mut [Job], now: i64) -> Result<(), QueueError> {
        let waiting = |job: &Job| matches!(job.status, JobStatus::Queued | JobStatus::Retrying);
        if !jobs.iter().any(waiting) {
            return Ok(());
        }
        let paused = self.paused_scopes(self.connection()).await?;
        let at_limit = self.at_limit(self.connection(), &self.concurrency_limits()).await?;
        for job in jobs.iter_mut().filter(|job| waiting(job)) {
            job.waiting = if paused.iter().any(|scope| scope == WHOLE_QUEUE || *scope == job.task) {
                Some(Waiting::Paused)
            } else if job.run_at > now {
                Some(Waiting::Scheduled)
            } else if at_limit.holds(job) {
                Some(Waiting::Concurrency)
            } else {
                None
            };
        }
        Ok(())
    }
}
