//! Paged, filtered and sorted lists of jobs and executions, with their total, for the APIs.

use sea_orm::{ConnectionTrait, Value as SqlValue};

use super::Store;
use super::executions::{COLUMNS as EXECUTION_COLUMNS, from_row as execution_from_row};
use super::queue::{COLUMNS as JOB_COLUMNS, job_from_row};
use super::row::int;
use super::{ExecutionRecord, Job, JobStatus, QueueError};

/// Which slice of a list, in which order. `column` comes from the caller's allow-list of
/// sortable columns, never from a request verbatim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u64,
    pub offset: u64,
    pub sort: &'static str,
    pub descending: bool,
}

/// One page of a list and how many items the whole list holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub task: Option<String>,
    /// Jobs created at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Jobs created before this time (ms since the epoch).
    pub until: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecutionFilter {
    pub task: Option<String>,
    /// `success` or `failure`.
    pub status: Option<ratchet_core::RunStatus>,
    pub job_id: Option<String>,
    /// The runs of one trace ([`ExecutionRecord::trace_id`]).
    pub trace_id: Option<String>,
    /// Runs that started at or after this time (ms since the epoch).
    pub since: Option<i64>,
    /// Runs that started before this time (ms since the epoch).
    pub until: Option<i64>,
}

/// `WHERE` clauses joined with `AND`, and their values.
#[derive(Default)]
struct Conditions {
    clauses: Vec<&'static str>,
    values: Vec<SqlValue>,
}

impl Conditions {
    fn add(&mut self, clause: &'static str, value: Option<impl Into<SqlValue>>) {
        if let Some(value) = value {
            self.clauses.push(clause);
            self.values.push(value.into());
        }
    }

    fn sql(&self) -> String {
        if self.clauses.is_empty() { String::new() } else { format!("WHERE {}", self.clauses.join(" AND ")) }
    }
}

impl Store {
    pub async fn list_jobs(&self, filter: &JobFilter, page: Page) -> Result<Listed<Job>, QueueError> {
        let mut conditions = Conditions::default();
        conditions.add("status = ?", filter.status.map(|s| s.as_str()));
        conditions.add("task = ?", filter.task.clone());
        conditions.add("created_at >= ?", filter.since);
        conditions.add("created_at < ?", filter.until);
        let rows = self.page("jobs", JOB_COLUMNS, &conditions, page).await?;
        let items = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
        Ok(Listed { items, total: self.count("jobs", &conditions).await? })
    }

    pub async fn list_executions(
        &self,
        filter: &ExecutionFilter,
        page: Page,
    ) -> Result<Listed<ExecutionRecord>, QueueError> {
        let mut conditions = Conditions::default();
        conditions.add("task = ?", filter.task.clone());
        conditions.add("status = ?", filter.status.map(|s| s.as_str()));
        conditions.add("job_id = ?", filter.job_id.clone());
        conditions.add("trace_id = ?", filter.trace_id.clone());
        conditions.add("started_at >= ?", filter.since);
        conditions.add("started_at < ?", filter.until);
        let rows = self.page("executions", EXECUTION_COLUMNS, &conditions, page).await?;
        let items = rows.iter().map(execution_from_row).collect::<Result<_, _>>()?;
        Ok(Listed { items, total: self.count("executions", &conditions).await? })
    }

    async fn page(
        &self,
        table: &str,
        columns: &str,
        conditions: &Conditions,
        page: Page,
    ) -> Result<Vec<sea_orm::QueryResult>, QueueError> {
        let direction = if page.descending { "DESC" } else { "ASC" };
        let sql = format!(
            "SELECT {columns} FROM {table} {} ORDER BY {} {direction}, id {direction} LIMIT ? OFFSET ?",
            conditions.sql(),
            page.sort
        );
        let mut values = conditions.values.clone();
        values.push(clamp(page.limit).into());
        values.push(clamp(page.offset).into());
        Ok(self.connection().query_all_raw(self.statement(&sql, values)).await?)
    }

    async fn count(&self, table: &str, conditions: &Conditions) -> Result<u64, QueueError> {
        let sql = format!("SELECT COUNT(*) AS n FROM {table} {}", conditions.sql());
        let row = self.connection().query_one_raw(self.statement(&sql, conditions.values.clone())).await?;
        Ok(row.map(|row| int(&row, "n")).transpose()?.unwrap_or(0).max(0) as u64)
    }
}

fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}
