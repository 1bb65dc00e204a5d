//! Retention: deleting old history and giving the space back.
//!
//! On SQLite the database uses incremental auto-vacuum, so freed pages go back to the file
//! system after a prune (a database created before that setting is converted by one full
//! `VACUUM` at its first prune). On PostgreSQL, autovacuum makes the space reusable.

use sea_orm::{ConnectionTrait, DbBackend, TransactionTrait, Value as SqlValue};

use super::Store;
use super::queue::QueueError;
use super::row::int;

/// Tries at truncating the write-ahead log, 50 ms apart.
const TRUNCATE_ATTEMPTS: u32 = 20;

/// What a prune removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub executions: u64,
    pub jobs: u64,
    pub nodes: u64,
}

impl Store {
    /// Deletes executions that finished before `cutoff`, finished jobs last updated before it
    /// (with their attempts), and nodes stopped before it. Running and waiting work is never
    /// touched. Then reclaims the space.
    pub async fn prune(&self, cutoff: i64) -> Result<Pruned, QueueError> {
        let transaction = self.writer().begin().await?;
        let cut = |sql: &'static str| self.statement(sql, vec![SqlValue::from(cutoff)]);
        let executions = transaction
            .execute_raw(cut("DELETE FROM executions WHERE finished_at < ?"))
            .await?
            .rows_affected();
        transaction
            .execute_raw(cut("DELETE FROM job_attempts WHERE job_id IN (SELECT id FROM jobs WHERE \
                 status IN ('completed', 'failed', 'cancelled') AND updated_at < ?)"))
            .await?;
        let jobs = transaction
            .execute_raw(cut(
                "DELETE FROM jobs WHERE status IN ('completed', 'failed', 'cancelled') AND updated_at < ?",
            ))
            .await?
            .rows_affected();
        let nodes = transaction
            .execute_raw(cut("DELETE FROM nodes WHERE status = 'stopped' AND stopped_at < ?"))
            .await?
            .rows_affected();
        transaction.commit().await?;
        if executions + jobs > 0 {
            self.reclaim_space().await?;
        }
        Ok(Pruned { executions, jobs, nodes })
    }

    /// Gives freed pages back to the file system (SQLite); PostgreSQL's autovacuum does its own.
    pub async fn reclaim_space(&self) -> Result<(), QueueError> {
        if self.backend() != DbBackend::Sqlite {
            return Ok(());
        }
        let db = self.writer();
        let mode = db.query_one_raw(self.statement("PRAGMA auto_vacuum", Vec::new())).await?;
        let incremental = match mode {
            Some(row) => int(&row, "auto_vacuum")? == 2,
            None => false,
        };
        if incremental {
            db.execute_unprepared("PRAGMA incremental_vacuum").await?;
        } else {
            // Created before incremental auto-vacuum: convert once (a full rewrite).
            db.execute_unprepared("PRAGMA auto_vacuum = INCREMENTAL").await?;
            db.execute_unprepared("VACUUM").await?;
        }
        self.truncate_log().await
    }

    /// Checkpoints the whole write-ahead log and truncates it to nothing. A reader still on an
    /// older snapshot makes SQLite answer "busy"; that is retried for a while, then left to the
    /// next prune.
    async fn truncate_log(&self) -> Result<(), QueueError> {
        let _no_background_checkpoint = self.hold_checkpoints().await;
        let truncate = self.statement("PRAGMA wal_checkpoint(TRUNCATE)", Vec::new());
        for _ in 0..TRUNCATE_ATTEMPTS {
            let row = self.writer().query_one_raw(truncate.clone()).await?;
            if row.map(|row| int(&row, "busy")).transpose()?.unwrap_or(0) == 0 {
                return Ok(());
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        tracing::warn!("the SQLite write-ahead log stayed busy; its space comes back at the next prune");
        Ok(())
    }
}
