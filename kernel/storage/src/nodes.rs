//! Nodes (running `ratchet serve` processes), their workers, and the tasks they loaded with
//! every version seen. A node heartbeats; one whose heartbeat is stale is shown as `lost`.

use ratchet_core::supervisor::SlotState;
use sea_orm::{ConnectionTrait, QueryResult, TransactionTrait, Value as SqlValue};
use serde_json::Value;

use super::Store;
use super::queue::QueueError;
use super::row::{int, json, opt_int};

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub pid: u32,
    pub version: String,
    /// `running`, `stopped`, or `lost` (running but no heartbeat for a while).
    pub status: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub stopped_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkerRow {
    pub id: String,
    pub node: String,
    pub pid: Option<u32>,
    pub state: SlotState,
    pub runs: u64,
    pub last_error: Option<String>,
    pub updated_at: i64,
}

/// One version of a task, identified by the digest of its files.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskVersion {
    pub task: String,
    pub uuid: Option<String>,
    pub digest: String,
    pub version: String,
    pub origin: String,
    pub metadata: Value,
    pub input_schema: Value,
    pub output_schema: Value,
    pub code: String,
}

/// A version of a task as listed: which, since when.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownVersion {
    pub version: String,
    pub digest: String,
    pub first_seen_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub name: String,
    pub uuid: Option<String>,
    pub version: String,
    pub digest: String,
    pub origin: String,
    /// The source the task came from (`server.tasks`, a registry source, a loader plugin).
    pub source: Option<String>,
    /// Why the task's latest change did not load, while its recorded version keeps serving.
    pub load_error: Option<String>,
    pub updated_at: i64,
    pub versions: u64,
}

impl Store {
    /// Records that node `id` started (or restarted under the same id).
    pub async fn register_node(
        &self,
        id: &str,
        hostname: &str,
        pid: u32,
        now: i64,
    ) -> Result<(), QueueError> {
        let sql = "INSERT INTO nodes (id, hostname, pid, version, status, started_at, heartbeat_at, stopped_at) \
                   VALUES (?, ?, ?, ?, 'running', ?, ?, NULL) ON CONFLICT (id) DO UPDATE SET status = 'running', \
                   started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at, stopped_at = NULL";
        let values: Vec<SqlValue> = vec![
            id.into(),
            hostname.into(),
            i64::from(pid).into(),
            env!("CARGO_PKG_VERSION").into(),
            now.into(),
            now.into(),
        ];
        self.writer().execute_raw(self.statement(sql, values)).await?;
        Ok(())
    }

    /// Renews node `id`'s heartbeat and replaces its workers' rows with `workers`.
    pub async fn node_heartbeat(&self, id: &str, workers: &[WorkerRow], now: i64) -> Result<(), QueueError> {
        let beat = self.write_heartbeat(id, workers, now).await;
        self.note_small_write(&beat);
        beat
    }

    async fn write_heartbeat(&self, id: &str, workers: &[WorkerRow], now: i64) -> Result<(), QueueError> {
        let transaction = self.writer().begin().await?;
        let sql = "UPDATE nodes SET heartbeat_at = ?, status = 'running' WHERE id = ?";
        transaction.execute_raw(self.statement(sql, vec![now.into(), id.into()])).await?;
        transaction
            .execute_raw(self.statement("DELETE FROM workers WHERE node = ?", vec![id.into()]))
            .await?;
        for worker in workers {
            let sql = "INSERT INTO workers (id, node, pid, state, runs, last_error, updated_at) \
                       VALUES (?, ?, ?, ?, ?, ?, ?)";
            let values: Vec<SqlValue> = vec![
                worker.id.clone().into(),
                id.into(),
                worker.pid.map(i64::from).into(),
                worker.state.as_str().into(),
                (worker.runs.min(i64::MAX as u64) as i64).into(),
                worker.last_error.clone().into(),
                now.into(),
            ];
            transaction.execute_raw(self.statement(sql, values)).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Marks node `id` stopped and forgets its workers.
    pub async fn stop_node(&self, id: &str, now: i64) -> Result<(), QueueError> {
        let transaction = self.writer().begin().await?;
        let sql = "UPDATE nodes SET status = 'stopped', stopped_at = ? WHERE id = ?";
        transaction.execute_raw(self.statement(sql, vec![now.into(), id.into()])).await?;
        transaction
            .execute_raw(self.statement("DELETE FROM workers WHERE node = ?", vec![id.into()]))
            .await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Every node, newest first; a running node silent for longer than `stale_after_ms` is `lost`.
    pub async fn nodes(&self, now: i64, stale_after_ms: i64) -> Result<Vec<Node>, QueueError> {
        let sql = "SELECT id, hostname, pid, version, status, started_at, heartbeat_at, stopped_at FROM nodes \
                   ORDER BY started_at DESC";
        let rows = self.connection().query_all_raw(self.statement(sql, Vec::new())).await?;
        rows.iter()
            .map(|row| {
                let mut node = node_from_row(row)?;
                if node.status == "running" && now - node.heartbeat_at > stale_after_ms {
                    node.status = "lost".into();
                }
                Ok(node)
            })
            .collect()
    }

    /// How many nodes other than `id` run against this database: those marked running whose
    /// last heartbeat is at most `stale_after_ms` old.
    pub async fn other_running_nodes(
        &self,
        id: &str,
        now: i64,
        stale_after_ms: i64,
    ) -> Result<u64, QueueError> {
        let sql =
            "SELECT COUNT(*) AS n FROM nodes WHERE status = 'running' AND id <> ? AND heartbeat_at >= ?";
        let values = vec![id.into(), (now - stale_after_ms).into()];
        let row = self.connection().query_one_raw(self.statement(sql, values)).await?;
        let count = row.map(|row| row.try_get::<i64>("", "n")).transpose()?.unwrap_or(0);
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// The workers of running nodes, as last reported.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, QueueError> {
        let sql = "SELECT id, node, pid, state, runs, last_error, updated_at FROM workers ORDER BY node, id";
        let rows = self.connection().query_all_raw(self.statement(sql, Vec::new())).await?;
        rows.iter()
            .map(|row| {
                Ok(WorkerRow {
                    id: row.try_get("", "id")?,
                    node: row.try_get("", "node")?,
                    pid: opt_int(row, "pid")?.map(|p| p as u32),
                    state: {
                        let state: String = row.try_get("", "state")?;
                        SlotState::parse(&state).unwrap_or(SlotState::Stopped)
                    },
                    runs: int(row, "runs")?.max(0) as u64,
                    last_error: row.try_get("", "last_error")?,
                    updated_at: int(row, "updated_at")?,
                })
            })
            .collect()
    }

    /// Records the task version a node loaded: the task points at it, and the version is kept
    /// (once per digest) so executions of older versions stay explainable.
    pub async fn record_task_version(
        &self,
        task: &TaskVersion,
        source: &str,
        now: i64,
    ) -> Result<(), QueueError> {
        let transaction = self.writer().begin().await?;
        self.write_task_version(&transaction, task, source, now).await?;
        transaction.commit().await?;
        Ok(())
    }

    /// Records many task versions (a node's start-up) in one transaction: one commit, not one
    /// per task (10,000 tasks took 2 s one by one on SQLite).
    pub async fn record_task_versions(
        &self,
        tasks: &[(TaskVersion, String)],
        now: i64,
    ) -> Result<(), QueueError> {
        let transaction = self.writer().begin().await?;
        for (task, source) in tasks {
            self.write_task_version(&transaction, task, source, now).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn write_task_version(
        &self,
        connection: &impl ConnectionTrait,
        task: &TaskVersion,
        source: &str,
        now: i64,
    ) -> Result<(), QueueError> {
        let sql = "INSERT INTO task_versions (task, digest, version, metadata, input_schema, output_schema, code, \
                   first_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (task, digest) DO NOTHING";
        let values: Vec<SqlValue> = vec![
            task.task.clone().into(),
            task.digest.clone().into(),
            task.version.clone().into(),
            task.metadata.to_string().into(),
            task.input_schema.to_string().into(),
            task.output_schema.to_string().into(),
            task.code.clone().into(),
            now.into(),
        ];
        connection.execute_raw(self.statement(sql, values)).await?;
        let sql = "INSERT INTO tasks (name, uuid, version, digest, origin, source, load_error, updated_at) \
                   VALUES (?, ?, ?, ?, ?, ?, NULL, ?) \
                   ON CONFLICT (name) DO UPDATE SET uuid = excluded.uuid, version = excluded.version, \
                   digest = excluded.digest, origin = excluded.origin, source = excluded.source, \
                   load_error = NULL, updated_at = excluded.updated_at";
        let values: Vec<SqlValue> = vec![
            task.task.clone().into(),
            task.uuid.clone().into(),
            task.version.clone().into(),
            task.digest.clone().into(),
            task.origin.clone().into(),
            source.into(),
            now.into(),
        ];
        connection.execute_raw(self.statement(sql, values)).await?;
        Ok(())
    }

    /// The files of a version of the task `name`: the one with `digest`, or (`None`) the one
    /// the task points at, which the node that loaded last recorded.
    pub async fn stored_task(
        &self,
        name: &str,
        digest: Option<&str>,
    ) -> Result<Option<TaskVersion>, QueueError> {
        let (sql, values): (&str, Vec<SqlValue>) = match digest {
            Some(digest) => (
                "SELECT v.task, v.digest, v.version, v.metadata, v.input_schema, v.output_schema, v.code, \
                 t.uuid, t.origin FROM task_versions v LEFT JOIN tasks t ON t.name = v.task \
                 WHERE v.task = ? AND v.digest = ?",
                vec![name.into(), digest.into()],
            ),
            None => (
                "SELECT v.task, v.digest, v.version, v.metadata, v.input_schema, v.output_schema, v.code, \
                 t.uuid, t.origin FROM tasks t JOIN task_versions v ON v.task = t.name AND v.digest = t.digest \
                 WHERE t.name = ? OR t.uuid = ?",
                vec![name.into(), name.into()],
            ),
        };
        let Some(row) = self.connection().query_one_raw(self.statement(sql, values)).await? else {
            return Ok(None);
        };
        Ok(Some(TaskVersion {
            task: row.try_get("", "task")?,
            uuid: row.try_get("", "uuid")?,
            digest: row.try_get("", "digest")?,
            version: row.try_get("", "version")?,
            origin: row.try_get::<Option<String>>("", "origin")?.unwrap_or_default(),
            metadata: json(&row, "metadata")?,
            input_schema: json(&row, "input_schema")?,
            output_schema: json(&row, "output_schema")?,
            code: row.try_get("", "code")?,
        }))
    }

    /// Records why the latest change of the task `name` did not load (its recorded version
    /// keeps serving).
    pub async fn note_task_load_error(&self, name: &str, error: &str, now: i64) -> Result<(), QueueError> {
        let sql = "UPDATE tasks SET load_error = ?, updated_at = ? WHERE name = ?";
        let values: Vec<SqlValue> = vec![error.into(), now.into(), name.into()];
        self.writer().execute_raw(self.statement(sql, values)).await?;
        Ok(())
    }

    /// Every version of the task `name` seen, newest first.
    pub async fn task_versions(&self, name: &str) -> Result<Vec<KnownVersion>, QueueError> {
        let sql = "SELECT version, digest, first_seen_at FROM task_versions WHERE task = ? \
                   ORDER BY first_seen_at DESC, digest";
        let rows = self.connection().query_all_raw(self.statement(sql, vec![name.into()])).await?;
        rows.iter()
            .map(|row| {
                Ok(KnownVersion {
                    version: row.try_get("", "version")?,
                    digest: row.try_get("", "digest")?,
                    first_seen_at: int(row, "first_seen_at")?,
                })
            })
            .collect()
    }

    /// Every task seen, with how many versions.
    pub async fn tasks(&self) -> Result<Vec<TaskRow>, QueueError> {
        let sql = "SELECT t.name, t.uuid, t.version, t.digest, t.origin, t.source, t.load_error, t.updated_at, \
                   (SELECT COUNT(*) FROM task_versions v WHERE v.task = t.name) AS versions \
                   FROM tasks t ORDER BY t.name";
        let rows = self.connection().query_all_raw(self.statement(sql, Vec::new())).await?;
        rows.iter()
            .map(|row| {
                Ok(TaskRow {
                    name: row.try_get("", "name")?,
                    uuid: row.try_get("", "uuid")?,
                    version: row.try_get("", "version")?,
                    digest: row.try_get("", "digest")?,
                    origin: row.try_get("", "origin")?,
                    source: row.try_get("", "source")?,
                    load_error: row.try_get("", "load_error")?,
                    updated_at: int(row, "updated_at")?,
                    versions: int(row, "versions")?.max(0) as u64,
                })
            })
            .collect()
    }
}

fn node_from_row(row: &QueryResult) -> Result<Node, QueueError> {
    Ok(Node {
        id: row.try_get("", "id")?,
        hostname: row.try_get("", "hostname")?,
        pid: int(row, "pid")?.max(0) as u32,
        version: row.try_get("", "version")?,
        status: row.try_get("", "status")?,
        started_at: int(row, "started_at")?,
        heartbeat_at: int(row, "heartbeat_at")?,
        stopped_at: opt_int(row, "stopped_at")?,
    })
}
