//! PostgreSQL's `NOTIFY` and `LISTEN`: messages between the nodes sharing one database. SQLite
//! serves one node, which has no one to tell; the CLI wakes it through a file instead
//! ([`doorbell`](crate::doorbell)).

use sea_orm::sqlx::postgres::{PgListener, PgNotification};
use sea_orm::{ConnectionTrait, DbBackend};

use super::{ConcurrencyLimits, QueueError, Store};

/// The largest payload [`Store::notify`] sends: PostgreSQL refuses 8,000 bytes or more.
pub const MAX_NOTIFY_PAYLOAD: usize = 7_900;

/// The channel the nodes' job changes travel on, and the database's wake-ups.
pub const JOBS_CHANNEL: &str = "ratchet_jobs";
/// What the database sends on [`JOBS_CHANNEL`] when jobs may have become claimable (a pause
/// lifted, by trigger; a job given back or leases rescued, by `Store::wake_nodes_at_commit`):
/// a batch of the job feed from no node, with no changes, that asks idle nodes to claim now.
/// Nodes that predate it read it as an empty batch. For jobs added, the trigger names the
/// node whose session added them and adds the earliest due time among them
/// (`{"node":NODE,"wake":true,"due":MS}`, milliseconds since the epoch; NODE is empty for the
/// CLI, see `StoreOptions::node`): nodes wait for that time when it is ahead, and the node
/// that added them, which woke its own claimer already, ignores it.
pub const WAKE_PAYLOAD: &str = r#"{"node":"","wake":true}"#;

/// What the database sends on [`JOBS_CHANNEL`] when a schedule was added, or its expression,
/// time zone or state changed (by trigger): a batch of the job feed from no node that asks
/// the nodes' schedulers to look again. Nodes that predate it read it as an empty batch.
pub const SCHEDULES_PAYLOAD: &str = r#"{"node":"","schedules":true}"#;

/// A subscription to one channel, on a connection of its own that reconnects when it is lost.
pub struct Listener(PgListener);

impl Listener {
    /// The next message's payload, or `None` when the connection was lost and has been made
    /// again (listening once more): what was sent meanwhile is missed, and the caller should
    /// look at the database again. An error means the connection is gone and could not be
    /// made again; the next call tries again.
    ///
    /// sqlx's `recv` would make the connection again without a word (an administrator's
    /// `pg_terminate_backend`, a restarted server or a proxy closing the connection all end
    /// it that way), and the node would never learn that it missed wake-ups.
    pub async fn next(&mut self) -> Result<Option<String>, QueueError> {
        self.0
            .try_recv()
            .await
            .map(|notification| {
                notification.map(|notification: PgNotification| notification.payload().to_owned())
            })
            .map_err(connection_error)
    }
}

impl Store {
    /// Whether other nodes can share this database (and hear [`Store::notify`]).
    pub fn is_shared(&self) -> bool {
        self.backend() == DbBackend::Postgres
    }

    /// Sends `payload` (at most [`MAX_NOTIFY_PAYLOAD`] bytes) to every listener of `channel`, on
    /// every node. Nothing on SQLite.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), QueueError> {
        if !self.is_shared() {
            return Ok(());
        }
        if payload.len() > MAX_NOTIFY_PAYLOAD {
            return Err(QueueError::Invalid(format!(
                "a notification of {} bytes is over PostgreSQL's limit ({MAX_NOTIFY_PAYLOAD})",
                payload.len()
            )));
        }
        let sql = "SELECT pg_notify(?, ?)";
        self.writer().execute_raw(self.statement(sql, vec![channel.into(), payload.into()])).await?;
        Ok(())
    }

    /// Tells every node that jobs may have become claimable ([`WAKE_PAYLOAD`]) when the
    /// transaction `connection` is in commits (PostgreSQL delivers notifications at commit,
    /// and none when it rolls back), for what the migrations' triggers do not see: jobs given
    /// back or rescued (updates, which would cost every completion a trigger call). Nothing on
    /// SQLite, where the caller rings the doorbell after the commit ([`Store::doorbell`]).
    pub(crate) async fn wake_nodes_at_commit(
        &self,
        connection: &impl ConnectionTrait,
    ) -> Result<(), QueueError> {
        if !self.is_shared() {
            return Ok(());
        }
        let values = vec![JOBS_CHANNEL.into(), WAKE_PAYLOAD.into()];
        connection.execute_raw(self.statement("SELECT pg_notify(?, ?)", values)).await?;
        Ok(())
    }

    /// Tells every node, when the transaction `connection` is in commits, what its ends
    /// mean for them ([`EndNews`]): a freed concurrency slot wakes them at once, unless
    /// `none_left` (a claim in the transaction, after the ends, took fewer jobs than it asked
    /// for: no job was left claimable); else a retry sets their alarms for its time. Nothing
    /// else an end does makes a job claimable, so most transactions say nothing. Nothing on
    /// SQLite, whose other nodes poll.
    pub(crate) async fn tell_nodes_at_commit(
        &self,
        connection: &impl ConnectionTrait,
        news: &EndNews,
        none_left: bool,
    ) -> Result<(), QueueError> {
        if !self.is_shared() {
            return Ok(());
        }
        let payload = match (news.freed_slot && !none_left, news.retry_at) {
            (true, _) => WAKE_PAYLOAD.to_owned(),
            (false, Some(due)) => format!(r#"{{"node":"","wake":true,"due":{due}}}"#),
            (false, None) => return Ok(()),
        };
        let values = vec![JOBS_CHANNEL.into(), payload.into()];
        connection.execute_raw(self.statement("SELECT pg_notify(?, ?)", values)).await?;
        Ok(())
    }

    /// Listens on `channel`; `None` on SQLite.
    pub async fn listen(&self, channel: &str) -> Result<Option<Listener>, QueueError> {
        if !self.is_shared() {
            return Ok(None);
        }
        let pool = self.connection().get_postgres_connection_pool();
        let mut listener = PgListener::connect_with(pool).await.map_err(connection_error)?;
        listener.listen(channel).await.map_err(connection_error)?;
        Ok(Some(Listener(listener)))
    }
}

/// What the ends a transaction commits mean for the other nodes' idle claimers.
#[derive(Debug, Default)]
pub(crate) struct EndNews {
    /// An ended job's task has a concurrency limit: the slot it held is free, and a job of the
    /// task that waited for one may be claimable now.
    freed_slot: bool,
    /// The earliest time a failed attempt's job retries.
    retry_at: Option<i64>,
}

impl EndNews {
    /// Adds an owned end of a job of `task`, retrying at `retry_at`.
    pub(crate) fn ended(&mut self, limits: &ConcurrencyLimits, task: &str, retry_at: Option<i64>) {
        self.freed_slot |= limits.get(task).is_some();
        self.retry_at = match (self.retry_at, retry_at) {
            (Some(earlier), Some(at)) => Some(earlier.min(at)),
            (earlier, at) => earlier.or(at),
        };
    }
}

fn connection_error(error: sea_orm::sqlx::Error) -> QueueError {
    QueueError::Db(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into())))
}
