//! The record of every run.

use std::sync::LazyLock;

use ratchet_core::RunStatus;
use sea_orm::{ConnectionTrait, QueryResult, Value as SqlValue};
use serde_json::Value;

use super::Store;
use super::queue::QueueError;
use super::row::{int, json, opt_json};

/// One run as stored. JSON documents stay JSON: `error` is the error document of
/// `recording::error_json`, `logs` a list of `{level, message}`, `http` a HAR document.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRecord {
    pub id: String,
    pub job_id: Option<String>,
    pub attempt: u32,
    pub task: String,
    /// `success` or `failure`.
    pub status: RunStatus,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub logs: Value,
    pub http: Value,
    pub started_at: i64,
    pub finished_at: i64,
    pub duration_us: i64,
    pub worker: Option<String>,
    pub node: Option<String>,
    /// Who or what caused the run when a surface says so: an MCP call's principal, tool and
    /// the SHA-256 of its arguments.
    pub caused_by: Option<Value>,
    /// The trace the run belongs to: its job's, or the request's that ran it.
    pub trace_id: Option<String>,
}

pub(super) const COLUMNS: &str = "id, job_id, attempt, task, status, input, output, error, logs, http, started_at, \
     finished_at, duration_us, worker, node, caused_by, trace_id";

/// One record's placeholders, for its values in [`values`]' order.
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

/// The insert of one record.
pub(super) static INSERT: LazyLock<String> =
    LazyLock::new(|| format!("INSERT INTO executions ({COLUMNS}) VALUES {ROW}"));

/// Records per multi-row insert: 17 values each, well below SQLite's 32,766 variables.
const ROWS_PER_INSERT: usize = 256;

impl Store {
    /// Stores the record of a run outside the queue, and returns once it is committed. On
    /// SQLite, records that arrive together are committed together (see
    /// [`super::group_commit`]).
    pub async fn record_execution(&self, record: &ExecutionRecord) -> Result<(), QueueError> {
        let recorded = match &self.group_commit {
            Some(group_commit) => group_commit.execute(values(record)).await,
            None => self.insert_execution(self.writer(), record).await,
        };
        self.note_write(&recorded);
        recorded
    }

    pub(crate) async fn insert_execution(
        &self,
        connection: &impl ConnectionTrait,
        record: &ExecutionRecord,
    ) -> Result<(), QueueError> {
        connection.execute_raw(self.statement(&INSERT, values(record))).await?;
        Ok(())
    }

    /// Stores `records` with as few statements as it takes.
    pub(crate) async fn insert_executions(
        &self,
        connection: &impl ConnectionTrait,
        records: &[&ExecutionRecord],
    ) -> Result<(), QueueError> {
        for chunk in records.chunks(ROWS_PER_INSERT) {
            let mut values: Vec<SqlValue> = chunk.iter().flat_map(|record| values(record)).collect();
            // A padding row (its `id`, the first column, NULL) is left out.
            let rows = super::padded_rows(ROW, &mut values);
            let sql = format!(
                "INSERT INTO executions ({COLUMNS}) SELECT * FROM (VALUES {rows}) AS batch \
                 WHERE batch.column1 IS NOT NULL"
            );
            connection.execute_raw(self.statement(&sql, values)).await?;
        }
        Ok(())
    }

    pub async fn execution(&self, id: &str) -> Result<ExecutionRecord, QueueError> {
        let sql = format!("SELECT {COLUMNS} FROM executions WHERE id = ?");
        let row = self.connection().query_one_raw(self.statement(&sql, vec![id.into()])).await?;
        row.map(|row| from_row(&row))
            .transpose()?
            .ok_or_else(|| QueueError::NotFound(format!("execution {id}")))
    }

    /// Executions, newest first; of one job when `job_id` is given.
    pub async fn executions(
        &self,
        job_id: Option<&str>,
        limit: u64,
    ) -> Result<Vec<ExecutionRecord>, QueueError> {
        let (filter, mut values): (&str, Vec<SqlValue>) = match job_id {
            Some(job) => ("WHERE job_id = ?", vec![job.into()]),
            None => ("", Vec::new()),
        };
        values.push((limit.min(i64::MAX as u64) as i64).into());
        let sql = format!("SELECT {COLUMNS} FROM executions {filter} ORDER BY started_at DESC, id LIMIT ?");
        let rows = self.connection().query_all_raw(self.statement(&sql, values)).await?;
        rows.iter().map(from_row).collect()
    }
}

fn values(record: &ExecutionRecord) -> Vec<SqlValue> {
    vec![
        record.id.clone().into(),
        record.job_id.clone().into(),
        i64::from(record.attempt).into(),
        record.task.clone().into(),
        record.status.as_str().into(),
        record.input.to_string().into(),
        record.output.as_ref().map(Value::to_string).into(),
        record.error.as_ref().map(Value::to_string).into(),
        record.logs.to_string().into(),
        record.http.to_string().into(),
        record.started_at.into(),
        record.finished_at.into(),
        record.duration_us.into(),
        record.worker.clone().into(),
        record.node.clone().into(),
        record.caused_by.as_ref().map(Value::to_string).into(),
        record.trace_id.clone().into(),
    ]
}

pub(super) fn from_row(row: &QueryResult) -> Result<ExecutionRecord, QueueError> {
    Ok(ExecutionRecord {
        id: row.try_get("", "id")?,
        job_id: row.try_get("", "job_id")?,
        attempt: int(row, "attempt")? as u32,
        task: row.try_get("", "task")?,
        status: {
            let status: String = row.try_get("", "status")?;
            RunStatus::parse(&status).unwrap_or(RunStatus::Failure)
        },
        input: json(row, "input")?,
        output: opt_json(row, "output")?,
        error: opt_json(row, "error")?,
        logs: json(row, "logs")?,
        http: json(row, "http")?,
        started_at: int(row, "started_at")?,
        finished_at: int(row, "finished_at")?,
        duration_us: int(row, "duration_us")?,
        worker: row.try_get("", "worker")?,
        node: row.try_get("", "node")?,
        caused_by: opt_json(row, "caused_by")?,
        trace_id: row.try_get("", "trace_id")?,
    })
}
