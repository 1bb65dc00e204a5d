//! Concurrency limits: at most N running jobs of a task, and at most M running jobs of a task
//! that share a concurrency key (one customer, one account), on every node at once.
//!
//! The claim enforces them with slots. A limit of N gives its task the slots 0 to N-1, and a
//! claimed job takes one that no running job of its task holds (and, with a per-key limit, one
//! of its key's M slots). Unique indexes over the running jobs' slots (migration 15) make two
//! running jobs holding one slot impossible, so the database bounds the running jobs by the
//! limit whichever node claims them, without a lock that would make the claims of every node
//! wait for each other.
//!
//! Before it picks a job the claim reads the running jobs of the limited tasks. It leaves aside
//! the tasks and keys with no free slot, so their jobs stay queued while other jobs behind them
//! run (no head-of-line blocking), and it offers each limited task and key a free slot picked
//! at random. Two claims that pick the same slot at the same time cannot both commit: the
//! second fails on the index, and its transaction is retried ([`is_slot_taken`]). SQLite
//! admits one writer at a time, so there the read is exact and slots never collide.
//!
//! A node enforces the limits its own tasks and configuration declare
//! ([`Store::set_concurrency_limits`]); nodes that serve the same tasks agree. A limit lowered
//! while more jobs run than it allows lets no new job in until enough of them end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, RwLock};

use sea_orm::{ConnectionTrait, DbBackend, SqlErr, Value as SqlValue};

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

/// What a claim under limits knows: the tasks and (task, key) pairs at their limit now, and a
/// free slot for each limited task and key that has room.
#[derive(Debug, Default)]
pub(crate) struct AtLimit {
    pub tasks: Vec<String>,
    pub keys: Vec<(String, String)>,
    /// A free slot of each task with a limit and room.
    task_slots: Vec<(String, u32)>,
    /// A free slot of each key with running jobs and room.
    key_slots: Vec<(String, String, u32)>,
    /// A slot for a key with no running job, by task with a per-key limit.
    new_key_slots: Vec<(String, u32)>,
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

    /// The claim's assignments of the slots the claimed job takes (none for a task without
    /// limits), and their values.
    pub fn slots(&self) -> (String, Vec<SqlValue>) {
        let mut values: Vec<SqlValue> = Vec::new();
        let mut task_case = String::from("NULL");
        if !self.task_slots.is_empty() {
            task_case = String::from("CASE");
            for (task, slot) in &self.task_slots {
                task_case.push_str(" WHEN task = ? THEN ?");
                values.push(task.clone().into());
                values.push(i64::from(*slot).into());
            }
            task_case.push_str(" ELSE NULL END");
        }
        let mut key_case = String::from("NULL");
        if !self.key_slots.is_empty() || !self.new_key_slots.is_empty() {
            key_case = String::from("CASE");
            for (task, key, slot) in &self.key_slots {
                key_case.push_str(" WHEN task = ? AND concurrency_key = ? THEN ?");
                values.extend([task.clone().into(), key.clone().into(), i64::from(*slot).into()]);
            }
            for (task, slot) in &self.new_key_slots {
                key_case.push_str(" WHEN task = ? AND concurrency_key IS NOT NULL THEN ?");
                values.extend([task.clone().into(), i64::from(*slot).into()]);
            }
            key_case.push_str(" ELSE NULL END");
        }
        (format!(", concurrency_slot = {task_case}, key_slot = {key_case}"), values)
    }
}

/// Whether `error` is a claim's slot taken by another node's claim committed meanwhile: the
/// claim's transaction is then retried, and reads the slots again.
pub(crate) fn is_slot_taken(error: &QueueError) -> bool {
    match error {
        QueueError::Db(error) => matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))),
        _ => false,
    }
}

/// How many times a claim whose slot was taken is retried before the error is returned.
pub(crate) const SLOT_RETRIES: u32 = 16;

/// A slot below `limit` that none of `used` holds, picked at random so that claims running at
/// the same time rarely pick the same one; `None` when every slot is held.
fn free_slot(limit: u32, used: &HashSet<u32>) -> Option<u32> {
    if limit == 0 {
        return None;
    }
    let start = fastrand::u32(0..limit);
    (start..limit).chain(0..start).find(|slot| !used.contains(slot))
}

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

    /// On SQLite, takes the database's write lock before the claim reads the running jobs: a
    /// transaction that reads first cannot wait for the lock when another process holds it, and
    /// fails "database is locked" instead (several nodes on one file). Holding it, the read is
    /// exact. PostgreSQL needs nothing: the slots' indexes settle races there.
    pub(crate) async fn write_first(&self, connection: &impl ConnectionTrait) -> Result<(), QueueError> {
        if self.backend() == DbBackend::Postgres {
            return Ok(());
        }
        let sql = "UPDATE queue_pauses SET scope = scope WHERE scope = ? AND 0 = 1";
        connection.execute_raw(self.statement(sql, vec!["".into()])).await?;
        Ok(())
    }

    /// The limited tasks and keys that have as many running jobs as `limits` allow, and a free
    /// slot for each of the others.
    pub(crate) async fn at_limit(
        &self,
        connection: &impl ConnectionTrait,
        limits: &ConcurrencyLimits,
    ) -> Result<AtLimit, QueueError> {
        if limits.is_empty() {
            return Ok(AtLimit::default());
        }
        // Rows: the running jobs of limited tasks, at most as many as the workers of every node.
        let tasks: Vec<SqlValue> = limits.iter().map(|(task, _)| task.to_owned().into()).collect();
        let sql = format!(
            "SELECT task, concurrency_key, concurrency_slot, key_slot FROM jobs WHERE status = 'running' \
             AND task IN ({})",
            vec!["?"; tasks.len()].join(", ")
        );
        let rows = connection.query_all_raw(self.statement(&sql, tasks)).await?;
        let mut running: HashMap<&str, (u32, HashSet<u32>)> = HashMap::new();
        let mut by_key: BTreeMap<(String, String), (u32, HashSet<u32>)> = BTreeMap::new();
        for row in rows {
            let task: String = row.try_get("", "task")?;
            let key: Option<String> = row.try_get("", "concurrency_key")?;
            let slot: Option<i32> = row.try_get("", "concurrency_slot")?;
            let key_slot: Option<i32> = row.try_get("", "key_slot")?;
            let Some((task, _)) = limits.0.get_key_value(&task) else { continue };
            let entry = running.entry(task.as_str()).or_default();
            entry.0 += 1;
            entry.1.extend(slot.and_then(|slot| u32::try_from(slot).ok()));
            if let Some(key) = key {
                let entry = by_key.entry((task.clone(), key)).or_default();
                entry.0 += 1;
                entry.1.extend(key_slot.and_then(|slot| u32::try_from(slot).ok()));
            }
        }
        let none = HashSet::new();
        let mut at_limit = AtLimit::default();
        for (task, limit) in limits.iter() {
            if let Some(max) = limit.limit {
                let (count, used) =
                    running.get(task).map(|(count, used)| (*count, used)).unwrap_or((0, &none));
                match free_slot(max, used).filter(|_| count < max) {
                    Some(slot) => at_limit.task_slots.push((task.to_owned(), slot)),
                    None => at_limit.tasks.push(task.to_owned()),
                }
            }
            if let Some(per_key) = limit.per_key
                && let Some(slot) = free_slot(per_key, &none)
            {
                at_limit.new_key_slots.push((task.to_owned(), slot));
            }
        }
        for ((task, key), (count, used)) in by_key {
            let Some(per_key) = limits.get(&task).and_then(|limit| limit.per_key) else { continue };
            match free_slot(per_key, &used).filter(|_| count < per_key) {
                Some(slot) => at_limit.key_slots.push((task, key, slot)),
                None => at_limit.keys.push((task, key)),
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
