//! Group commit of run records, on SQLite (PostgreSQL takes them concurrently: see `Store`).
//!
//! Every synchronous run ends with one `INSERT` into `executions`. Committed one by one,
//! each insert rewrites the same few pages (the table's last leaf and one leaf per index)
//! into SQLite's write-ahead log, about 15 KB per run, and pays a `BEGIN`/`COMMIT` of its
//! own. The recorder instead takes every record already waiting when it becomes free and
//! writes them in one transaction. Nothing waits for a batch to fill: one waiting record is
//! written at once, alone, so a lone run is recorded as fast as before, and under load the
//! batch grows with the queue.
//!
//! Each caller still learns whether its own record was stored. When a batch fails, its
//! records are written again one by one, so one bad record cannot take the others with it.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, TransactionTrait, Value as SqlValue};
use tokio::sync::{mpsc, oneshot};

use super::queue::QueueError;
use super::statement;

/// Most records one transaction writes.
const MAX_BATCH: usize = 64;

/// The handle every `Store` clone shares. The writing task ends once the last handle is
/// dropped and every record queued before that is written.
#[derive(Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

struct Pending {
    values: Vec<SqlValue>,
    done: oneshot::Sender<Result<(), DbErr>>,
}

impl GroupCommit {
    /// Starts the task that executes `sql` (`?` placeholders) for each record, on the current
    /// Tokio runtime.
    pub(super) fn start(writer: DatabaseConnection, sql: &'static str) -> GroupCommit {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(writer, sql, pending));
        GroupCommit { queue }
    }

    /// Writes the record `values` in the next batch, and returns when that batch is committed.
    pub(super) async fn execute(&self, values: Vec<SqlValue>) -> Result<(), QueueError> {
        let (done, result) = oneshot::channel();
        self.queue.send(Pending { values, done }).map_err(|_| stopped())?;
        Ok(result.await.map_err(|_| stopped())??)
    }
}

fn stopped() -> QueueError {
    QueueError::Db(DbErr::Custom("the run-record writer has stopped; the process is shutting down".into()))
}

async fn write_batches(
    writer: DatabaseConnection,
    sql: &'static str,
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        if batch.len() == 1 || write_together(&writer, sql, &batch).await.is_err() {
            write_one_by_one(&writer, sql, &mut batch).await;
        } else {
            for pending in batch.drain(..) {
                let _ = pending.done.send(Ok(()));
            }
        }
    }
}

async fn write_together(writer: &DatabaseConnection, sql: &str, batch: &[Pending]) -> Result<(), DbErr> {
    let backend = writer.get_database_backend();
    let transaction = writer.begin().await?;
    for pending in batch {
        // A copy: should the batch fail, each record is written again on its own.
        transaction.execute_raw(statement(backend, sql, pending.values.clone())).await?;
    }
    transaction.commit().await
}

async fn write_one_by_one(writer: &DatabaseConnection, sql: &str, batch: &mut Vec<Pending>) {
    let backend = writer.get_database_backend();
    for pending in batch.drain(..) {
        let result = writer.execute_raw(statement(backend, sql, pending.values)).await.map(drop);
        let _ = pending.done.send(result);
    }
}
