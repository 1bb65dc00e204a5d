//! Storage: one code path for SQLite (the embedded default) and PostgreSQL, through sea-orm.
//!
//! Times are stored as integer milliseconds since the Unix epoch, so both backends share one
//! schema and every comparison is an integer comparison. JSON documents are stored as text.
//! Queue operations are single SQL statements written once; the only backend difference is
//! PostgreSQL's `FOR UPDATE SKIP LOCKED` when claiming (SQLite serialises writers anyway).

mod consumer_commit;
mod doorbell;
mod executions;
mod group_commit;
mod limits;
mod listing;
mod logs;
mod migrations;
mod nodes;
mod notify;
mod pauses;
pub mod queue;
mod retention;
mod row;
mod schedules;
mod secrets;
mod write_health;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};
use sea_orm_migration::MigratorTrait;

pub use consumer_commit::{BatchObserver, Claim, ConsumerCommit, Ended, Ending, Gather, Step, Stepped};
pub use executions::ExecutionRecord;
pub use limits::{ConcurrencyLimits, TaskLimit, Waiting};
pub use listing::{ExecutionFilter, JobFilter, Listed, Page};
pub use logs::{LogHit, LogSearch, LogsFound, MAX_SCANNED, TrendBucket, level_rank};
pub use nodes::{KnownVersion, Node, TaskRow, TaskVersion, WorkerRow};
pub use notify::{JOBS_CHANNEL, Listener, MAX_NOTIFY_PAYLOAD, SCHEDULES_PAYLOAD, WAKE_PAYLOAD};
pub use pauses::{Pause, WHOLE_QUEUE};
pub use queue::{Attempt, Backoff, Enqueued, Job, JobStatus, NewJob, Outcome, QueueError};
pub use retention::Pruned;
pub use schedules::{NewSchedule, Schedule, fire_key};
pub use secrets::SealedSecret;
pub use write_health::{PROBE_BYTES, WriteFailure};

/// The file of the embedded database inside a data directory.
pub const SQLITE_FILE: &str = "ratchet.db";

/// A connected, migrated database.
///
/// On SQLite every write goes through one dedicated connection (`writer`): SQLite admits one
/// writer at a time, and writers that contend on its lock wait in its busy handler, which
/// sleeps in steps of milliseconds. Queueing them in the pool instead keeps each write at its
/// own cost. Reads use the shared pool. On PostgreSQL writes have a pool of their own as well
/// ([`WRITERS`] connections), whose sessions plan without sorting where they can
/// ([`postgres_writer_options`]).
///
/// On SQLite a background task also checkpoints the write-ahead log (see [`Checkpointer`]).
/// The records of runs outside the queue are committed in groups there (see [`group_commit`]).
/// PostgreSQL takes them concurrently over its pool, and shares WAL flushes between
/// concurrent commits itself; one writing task would serialise them instead (and over TCP,
/// sqlx 0.9.0 stalls ~40 ms on each large statement: see the README).
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    writer: DatabaseConnection,
    checkpointer: Option<Arc<Checkpointer>>,
    group_commit: Option<group_commit::GroupCommit>,
    /// The last write that failed, until one succeeds again (a full disk, a read-only file
    /// system): readiness reports it, since reads still work.
    write_failure: Arc<std::sync::Mutex<Option<WriteFailure>>>,
    /// The concurrency limits this node's claims enforce ([`limits`]).
    limits: limits::SharedLimits,
    /// On an SQLite file, what wakes an idle node in another process ([`doorbell`]).
    doorbell: Option<Arc<doorbell::Doorbell>>,
    /// The node that writes through this store, if it said ([`StoreOptions::node`]).
    node: Option<String>,
}

/// The file in the data folder that keeps room to open the database on a full disk.
pub const RESERVE_FILE: &str = "ratchet.reserve";
/// Its size.
pub const RESERVE_BYTES: usize = 4 * 1024 * 1024;

/// Writes the reserve file when it is missing (real blocks, not a sparse file); a disk too
/// full for it goes without.
fn keep_reserve(path: &Path) {
    use std::io::Write as _;
    if path.is_file() {
        return;
    }
    let written = std::fs::File::create(path).and_then(|mut file| {
        let chunk = vec![0u8; 64 * 1024];
        for _ in 0..RESERVE_BYTES / chunk.len() {
            file.write_all(&chunk)?;
        }
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(path);
        tracing::warn!("cannot keep a reserve of {} MiB in {}: {error}", RESERVE_BYTES >> 20, path.display());
    }
}

/// How often the SQLite write-ahead log is checkpointed in the background.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

/// WAL pages at which a commit checkpoints inline, should the background task fall behind
/// (SQLite's default is 1,000).
const INLINE_CHECKPOINT_PAGES: &str = "10000";

/// Copies committed pages from SQLite's write-ahead log into the database file, on a pooled
/// read connection, every [`CHECKPOINT_EVERY`]. Left to SQLite, the commit that fills the log
/// past 1,000 pages checkpoints inline: every few hundred runs one write took milliseconds
/// while every write queued behind it waited (a fifth of the p99 of a synchronous run with 16
/// clients). A passive checkpoint blocks no writer. Stops when the last `Store` is dropped.
struct Checkpointer {
    task: tokio::task::JoinHandle<()>,
    /// Held by whoever checkpoints: SQLite runs one checkpoint at a time and answers a second
    /// one "busy", which would leave `reclaim_space`'s truncation undone.
    lock: Arc<tokio::sync::Mutex<()>>,
    /// Wakes the task before its interval is up ([`Store::checkpoint_in_background`]).
    wake: Arc<tokio::sync::Notify>,
    /// Checkpoints done so far.
    done: tokio::sync::watch::Receiver<u64>,
}

impl Checkpointer {
    fn start(db: DatabaseConnection, every: Duration) -> Checkpointer {
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        let wake = Arc::new(tokio::sync::Notify::new());
        let (count, done) = tokio::sync::watch::channel(0u64);
        let (held, woken) = (Arc::clone(&lock), Arc::clone(&wake));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = woken.notified() => {}
                }
                let _checkpointing = held.lock().await;
                if let Err(error) = db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
                    tracing::warn!("cannot checkpoint the SQLite write-ahead log: {error}");
                }
                count.send_modify(|done| *done += 1);
            }
        });
        Checkpointer { task, lock, wake, done }
    }
}

/// How a [`Store`] runs its background work.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// How often the SQLite write-ahead log is checkpointed in the background.
    pub checkpoint_every: Duration,
    /// Keep the data folder's reserve file ([`RESERVE_FILE`]): a long-running node does, so
    /// that it can start again on a full disk; a one-off command leaves the folder alone.
    pub keep_reserve: bool,
    /// On SQLite, ring the file beside the database that idle nodes watch after each commit
    /// that may make jobs claimable ([`Store::doorbell`]) from the start. A node's store starts
    /// without: a node wakes its own claimer in-process, and rings only while other nodes share
    /// its database ([`Store::set_doorbell_ringing`]).
    pub ring_doorbell: bool,
    /// The node that writes through this store. On PostgreSQL its write sessions say so
    /// (the `ratchet.node` setting), and the wake-up the database sends for jobs they add
    /// names it ([`WAKE_PAYLOAD`]): the node already woke its own claimer in-process and
    /// ignores it, while every other node claims. `None` (the CLI): wake-ups name no node.
    pub node: Option<String>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            checkpoint_every: CHECKPOINT_EVERY,
            keep_reserve: false,
            ring_doorbell: true,
            node: None,
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot open the database {url}: {message}")]
    Connect { url: String, message: String },
    #[error("cannot migrate the database {url}: {message}")]
    Migrate { url: String, message: String },
    #[error("cannot create the data directory {path}: {message}")]
    DataDir { path: String, message: String },
}

impl Store {
    /// Opens the embedded SQLite database in `dir` (created if missing).
    pub async fn open_data_dir(dir: &Path) -> Result<Store, StoreError> {
        Store::open_data_dir_with(dir, StoreOptions::default()).await
    }

    /// With a full file system SQLite cannot even open the database (it must write its
    /// shared-memory index), so the data folder keeps a reserve file of [`RESERVE_BYTES`]: an
    /// open that fails for want of space releases it and tries again, and the node starts
    /// (not ready until writes work). The reserve is made again at the next start with room.
    pub async fn open_data_dir_with(dir: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::DataDir { path: dir.display().to_string(), message: e.to_string() })?;
        let url = format!("sqlite://{}?mode=rwc", dir.join(SQLITE_FILE).display());
        let reserve = dir.join(RESERVE_FILE);
        match Store::connect_with(&url, options.clone()).await {
            // SQLite's word for it, or the system's (the lock file beside the database).
            Err(StoreError::Connect { message, .. })
                if (message.contains("disk is full") || message.contains("No space left on device"))
                    && reserve.is_file() =>
            {
                tracing::warn!(
                    "the file system of {} is full: released the {} MiB reserve to open the database; free some space",
                    dir.display(),
                    RESERVE_BYTES >> 20
                );
                let _ = std::fs::remove_file(&reserve);
                Store::connect_with(&url, options).await
            }
            Ok(store) => {
                if options.keep_reserve {
                    keep_reserve(&reserve);
                }
                Ok(store)
            }
            failed => failed,
        }
    }

    /// Connects to `url` (`sqlite://...` or `postgres://...`) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::connect_with(url, StoreOptions::default()).await
    }

    pub async fn connect_with(url: &str, store_options: StoreOptions) -> Result<Store, StoreError> {
        let shown = redact(url);
        // One process at a time opens and migrates an SQLite file (released when this returns):
        // on a new file, the first connection's `journal_mode = WAL` and the first migration
        // need it alone, and another process's open then fails "database is locked" at once
        // (SQLite does not wait on its busy handler there) when nodes start together.
        let _opening = match sqlite_file(url) {
            Some(database) => Some(
                lock_file(&database)
                    .await
                    .map_err(|message| StoreError::Connect { url: shown.clone(), message })?,
            ),
            None => None,
        };
        let db = Database::connect(options(url, READERS))
            .await
            .map_err(|e| StoreError::Connect { url: shown.clone(), message: e.to_string() })?;
        migrate(url, &db).await.map_err(|message| StoreError::Migrate { url: shown.clone(), message })?;
        let (writer, checkpointer, group_commit) = match db.get_database_backend() {
            DbBackend::Sqlite => {
                let writer = Database::connect(options(url, 1))
                    .await
                    .map_err(|e| StoreError::Connect { url: shown, message: e.to_string() })?;
                let checkpointer = Arc::new(Checkpointer::start(db.clone(), store_options.checkpoint_every));
                let group_commit =
                    group_commit::GroupCommit::start(writer.clone(), executions::INSERT.as_str());
                (writer, Some(checkpointer), Some(group_commit))
            }
            DbBackend::Postgres => {
                let writer = Database::connect(postgres_writer_options(url, store_options.node.clone()))
                    .await
                    .map_err(|e| StoreError::Connect { url: shown, message: e.to_string() })?;
                (writer, None, None)
            }
            _ => (db.clone(), None, None),
        };
        let doorbell = sqlite_file(url)
            .map(|file| Arc::new(doorbell::Doorbell::beside(&file, store_options.ring_doorbell)));
        Ok(Store {
            db,
            writer,
            checkpointer,
            group_commit,
            write_failure: Arc::default(),
            limits: Arc::default(),
            doorbell,
            node: store_options.node,
        })
    }

    /// The node that writes through this store, if it said ([`StoreOptions::node`]).
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    pub fn backend(&self) -> DbBackend {
        self.db.get_database_backend()
    }

    /// The pool for reads.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Waits until no background checkpoint runs, and keeps it so while the guard lives.
    pub(crate) async fn hold_checkpoints(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.checkpointer {
            Some(checkpointer) => Some(checkpointer.lock.lock().await),
            None => None,
        }
    }

    /// Wakes the background checkpointer now and waits until it has checkpointed once; at
    /// once on PostgreSQL, which has none.
    pub async fn checkpoint_in_background(&self) {
        let Some(checkpointer) = &self.checkpointer else { return };
        let mut done = checkpointer.done.clone();
        let before = *done.borrow_and_update();
        checkpointer.wake.notify_one();
        let _ = done.wait_for(|count| *count > before).await;
    }

    /// The file an idle node watches to hear of jobs other processes made claimable, on an
    /// SQLite file (`DATABASE-wake`; on PostgreSQL the database notifies instead, see
    /// [`WAKE_PAYLOAD`]). It changes after each commit that adds jobs, lifts a pause, gives a
    /// job back or rescues leases, by the CLI and by nodes that share the database with others
    /// ([`Store::set_doorbell_ringing`]); [`Store::doorbell_rung_by_another`] tells a node
    /// whether a change was another process's.
    pub fn doorbell(&self) -> Option<&Path> {
        self.doorbell.as_deref().map(doorbell::Doorbell::path)
    }

    /// Whether this store rings the doorbell from now on (a node: while other nodes share its
    /// database); whether it did before. Nothing on PostgreSQL or an in-memory database.
    pub fn set_doorbell_ringing(&self, rings: bool) -> bool {
        self.doorbell.as_ref().is_some_and(|doorbell| doorbell.set_ringing(rings))
    }

    /// Whether this store rings the doorbell after its commits now.
    pub fn rings_doorbell(&self) -> bool {
        self.doorbell.as_ref().is_some_and(|doorbell| doorbell.rings())
    }

    /// Rings the doorbell once, whether or not this store rings after its commits: a node that
    /// has just recorded itself tells the nodes already running on the file, which count
    /// their peers again when they hear another's ring while they do not ring themselves.
    pub fn announce_on_doorbell(&self) {
        if let Some(doorbell) = &self.doorbell {
            doorbell.ring_anyway();
        }
    }

    /// Whether the doorbell's last ring came from another store than this one (another
    /// process, most often): what a node that heard the file change asks before it claims.
    /// True when it cannot be told.
    pub fn doorbell_rung_by_another(&self) -> bool {
        self.doorbell.as_ref().is_none_or(|doorbell| doorbell.rung_by_another())
    }

    /// Tells idle nodes in other processes that jobs may have become claimable, or that a
    /// schedule was added or changed, after the commit that made it so (a node woken before it
    /// would not see it).
    pub(crate) fn ring_doorbell(&self) {
        if let Some(doorbell) = &self.doorbell {
            doorbell.ring();
        }
    }

    /// The connection for writes (see [`Store`]).
    pub(crate) fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    pub async fn close(self) {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.task.abort();
        }
        let _ = self.writer.close().await;
        let _ = self.db.close().await;
    }

    /// A statement for this backend; `sql` uses `?` placeholders, rewritten to `$n` for PostgreSQL.
    pub(crate) fn statement(&self, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
        statement(self.backend(), sql, values)
    }
}

/// The PostgreSQL advisory lock a node holds while it migrates ("ratchet migrate" in ASCII).
const MIGRATION_LOCK: i64 = 0x7261_7463_686d_6967;

/// Applies the pending migrations, one node at a time. Nodes started together on a new
/// database would otherwise race: both see migration 1 pending, and the loser fails with
/// "table jobs already exists". PostgreSQL: an advisory lock held by a connection of its own;
/// SQLite: the caller holds an exclusive lock on a file beside the database while it opens
/// and migrates it (none for an in-memory one).
async fn migrate(url: &str, db: &DatabaseConnection) -> Result<(), String> {
    if db.get_database_backend() != DbBackend::Postgres {
        return migrations::Migrator::up(db, None).await.map_err(|e| e.to_string());
    }
    let lock = Database::connect(options(url, 1)).await.map_err(|e| e.to_string())?;
    let take = format!("SELECT pg_advisory_lock({MIGRATION_LOCK})");
    lock.execute_unprepared(&take).await.map_err(|e| format!("cannot take the migration lock: {e}"))?;
    let migrated = migrations::Migrator::up(db, None).await.map_err(|e| e.to_string());
    // Closing the connection releases the lock as well.
    let _ = lock.execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})")).await;
    let _ = lock.close().await;
    migrated
}

/// The database file of a `sqlite://PATH?...` URL; `None` for an in-memory database.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://")?.split('?').next()?;
    (!path.is_empty() && !path.contains(":memory:")).then(|| Path::new(path).to_path_buf())
}

/// Waits for, then holds, the exclusive lock on `DATABASE-migrate.lock` (released on drop):
/// the lock to open and migrate the SQLite file `database`.
async fn lock_file(database: &Path) -> Result<std::fs::File, String> {
    let mut name = database.as_os_str().to_owned();
    name.push("-migrate.lock");
    let path = std::path::PathBuf::from(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open the migration lock {}: {e}", path.display()))?;
    tokio::task::spawn_blocking(move || file.lock().map(|()| file))
        .await
        .map_err(|e| format!("the migration lock's waiter failed: {e}"))?
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))
}

/// Connections of the pool for reads (on SQLite, of the pool for everything but writes).
const READERS: u32 = 16;
/// Connections of PostgreSQL's write pool.
const WRITERS: u32 = 8;

/// The options of PostgreSQL's write pool: each session runs `SET enable_sort = off`, so a
/// claim walks `jobs_claim_order` in the queue's order instead of sorting every due job (what
/// SQLite's claim forces with `INDEXED BY`). The planner judges by the table's statistics,
/// and a burst of new jobs makes them wrong until autovacuum analyzes the table again (up to a
/// minute on a default server): statistics gathered while nearly every job had ended predict
/// a few waiting jobs, and sorting a few looks cheaper than walking the index. Each claim then
/// sorted the whole burst: 12-15 ms a claim with 10,000 jobs waiting, instead of 0.3 ms. A write
/// that cannot avoid a sort still sorts; `enable_sort` only steers the planner's choice.
/// Sessions also name their node (`ratchet.node`, when [`StoreOptions::node`] says), so that
/// the wake-ups for the jobs they add do too.
fn postgres_writer_options(url: &str, node: Option<String>) -> ConnectOptions {
    let mut options = options(url, WRITERS);
    let node: Option<Arc<str>> = node.filter(|node| !node.is_empty()).map(Arc::from);
    options.map_sqlx_postgres_pool_opts(move |pool| {
        let node = node.clone();
        pool.after_connect(move |connection, _| {
            let node = node.clone();
            Box::pin(async move {
                use sea_orm::sqlx::Executor;
                connection.execute("SET enable_sort = off").await?;
                if let Some(node) = node {
                    sea_orm::sqlx::query("SELECT set_config('ratchet.node', $1, false)")
                        .bind(&*node)
                        .execute(&mut *connection)
                        .await?;
                }
                Ok(())
            })
        })
    });
    options
}

fn options(url: &str, connections: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url);
    options.sqlx_logging(false).max_connections(connections).acquire_timeout(Duration::from_secs(30));
    options.map_sqlx_sqlite_before_acquire(|connection, _| {
        Box::pin(async move { Ok(outside_transactions(connection)) })
    });
    options.map_sqlx_postgres_before_acquire(|connection, _| {
        Box::pin(async move { Ok(outside_transactions(connection)) })
    });
    options.map_sqlx_sqlite_opts(|sqlite| {
        use sea_orm::sqlx::sqlite::{SqliteAutoVacuum, SqliteJournalMode, SqliteSynchronous};
        // WAL with synchronous=NORMAL: durable across process crashes; a power loss may
        // lose the last commits but never corrupts the database.
        sqlite
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("wal_autocheckpoint", INLINE_CHECKPOINT_PAGES)
            // Takes effect on a new database; older ones convert at their first prune.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
    });
    options
}

/// Whether an idle pooled connection may be handed out: not when sqlx still counts it inside a
/// transaction. That happens after a transaction failed in a way that made the database roll
/// it back by itself (SQLite does on `SQLITE_FULL` and `SQLITE_IOERR`): sqlx's own `ROLLBACK`
/// then fails, its depth counter stays at 1, and the connection's next transaction opens a
/// savepoint instead. Should that one fail as well, `ROLLBACK TO` leaves SQLite inside an open
/// transaction, and every later statement on the connection, each acknowledged, stays
/// uncommitted: invisible to readers and lost when the connection closes. Such a connection is
/// closed instead (the pool opens a fresh one); nothing acknowledged is ever pending on it.
fn outside_transactions(connection: &impl sea_orm::sqlx::Connection) -> bool {
    let clean = !connection.is_in_transaction();
    if !clean {
        tracing::warn!("replacing a database connection left inside a failed transaction");
    }
    clean
}

pub(crate) fn statement(backend: DbBackend, sql: &str, values: Vec<sea_orm::Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => numbered_placeholders(sql),
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The rows of a multi-row `VALUES` list for `values` (each `row`, as many to a row as it has
/// placeholders), padded
/// with rows of NULLs to the next power of two, the NULLs added to `values`. A database that
/// prepares statements (PostgreSQL, through sqlx's cache of each connection's statements) then
/// sees a handful of texts, each parsed and planned once and reused, instead of one per batch
/// size: three PostgreSQL nodes, whose batches vary more, parsed and planned their ends' and
/// executions' statements seven times as often as one node (docs/benchmarks.md). The statement
/// must make a padding row change nothing: match no row, or be filtered out.
pub(crate) fn padded_rows(row: &str, values: &mut Vec<sea_orm::Value>) -> String {
    let per_row = row.matches('?').count().max(1);
    let rows = values.len() / per_row;
    if rows == 0 {
        return String::new();
    }
    let nulls: Vec<sea_orm::Value> = values[..per_row].iter().map(sea_orm::Value::as_null).collect();
    let padded = rows.next_power_of_two();
    for _ in rows..padded {
        values.extend(nulls.iter().cloned());
    }
    vec![row; padded].join(", ")
}

fn numbered_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

pub use ratchet_core::time::{new_id, now_ms};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        assert_eq!(numbered_placeholders("a = ? AND b IN (?, ?)"), "a = $1 AND b IN ($2, $3)");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite://x.db?mode=rwc"), "sqlite://x.db?mode=rwc");
    }

    #[test]
    fn rows_are_padded_to_a_power_of_two_with_nulls_of_the_first_rows_types() {
        let row = |n: i64| [sea_orm::Value::from(format!("id{n}")), sea_orm::Value::from(n)];
        let mut values: Vec<sea_orm::Value> = (0..3).flat_map(row).collect();
        assert_eq!(padded_rows("(?, ?)", &mut values), "(?, ?), (?, ?), (?, ?), (?, ?)");
        let padding = [sea_orm::Value::String(None), sea_orm::Value::BigInt(None)];
        assert_eq!(values[6..], padding);
        let mut four: Vec<sea_orm::Value> = (0..4).flat_map(row).collect();
        assert_eq!(padded_rows("(?, ?)", &mut four).matches('?').count(), 8, "a power of two stays");
        assert_eq!(four.len(), 8);
        assert_eq!(padded_rows("(?, ?)", &mut Vec::new()), "", "no rows, no list");
    }

    /// The doorbell (an idle node's wake-up on SQLite) rings after the commits that make jobs
    /// claimable, and not for those that do not; a node's store rings only once told that
    /// other nodes share its database, and each store tells another's ring from its own.
    #[tokio::test]
    async fn commits_that_make_jobs_claimable_or_change_schedules_ring_the_doorbell_and_name_the_ringer() {
        let dir = tempfile::tempdir().unwrap();
        let quiet = StoreOptions { ring_doorbell: false, ..StoreOptions::default() };
        let node = Store::open_data_dir_with(dir.path(), quiet).await.unwrap();
        let cli = Store::open_data_dir(dir.path()).await.unwrap();
        let bell = node.doorbell().unwrap().to_owned();
        assert_eq!(bell, dir.path().join("ratchet.db-wake"));
        assert_eq!(cli.doorbell(), Some(bell.as_path()));
        // A ring writes the ringer's token into the file; the test empties it between steps.
        let rung = || {
            let rung = std::fs::metadata(&bell).is_ok_and(|file| file.len() > 0);
            if rung {
                std::fs::File::options().write(true).open(&bell).unwrap().set_len(0).unwrap();
            }
            rung
        };
        let job = || NewJob::new("t", serde_json::json!({}));
        node.enqueue(job(), now_ms()).await.unwrap();
        assert!(!rung(), "a lone node's store rang for its own job");
        assert!(!node.rings_doorbell());
        node.announce_on_doorbell();
        assert!(!node.doorbell_rung_by_another(), "the node took its own announcement for another's ring");
        assert!(cli.doorbell_rung_by_another(), "the others took a node's announcement for their own ring");
        assert!(rung(), "a node that started did not announce itself");
        assert!(!node.rings_doorbell(), "announcing made the node ring after its commits");
        assert!(!node.set_doorbell_ringing(true), "the node's store rang before it was told to");
        assert!(node.rings_doorbell());
        node.enqueue(job(), now_ms()).await.unwrap();
        assert!(!node.doorbell_rung_by_another(), "the node's store took its own ring for another's");
        assert!(cli.doorbell_rung_by_another(), "the CLI took the node's ring for its own");
        assert!(rung(), "a node sharing its database did not ring for its job");
        assert!(node.set_doorbell_ringing(false));
        node.enqueue(job(), now_ms()).await.unwrap();
        assert!(!rung(), "a node's store rang after it was told to stop");
        cli.enqueue(job(), now_ms()).await.unwrap();
        assert!(node.doorbell_rung_by_another(), "the node took the CLI's ring for its own");
        assert!(!cli.doorbell_rung_by_another());
        assert!(rung(), "adding a job did not ring");
        cli.enqueue_batch(&[job(), job()], now_ms(), |_| {}).await.unwrap();
        assert!(rung(), "adding jobs together did not ring");
        cli.pause(WHOLE_QUEUE, false, None, now_ms()).await.unwrap();
        assert!(!rung(), "a pause rang");
        assert!(!cli.resume("no-such-task").await.unwrap());
        assert!(!rung(), "lifting no pause rang");
        assert!(cli.resume(WHOLE_QUEUE).await.unwrap());
        assert!(rung(), "lifting the pause did not ring");
        let claimed = cli.claim("a node", Duration::from_secs(30), now_ms()).await.unwrap().unwrap();
        assert!(!rung(), "a claim rang");
        cli.release(&claimed.id, claimed.attempt, now_ms()).await.unwrap();
        assert!(rung(), "giving a job back did not ring");
        cli.claim("a node", Duration::from_secs(30), now_ms()).await.unwrap().unwrap();
        assert_eq!(cli.rescue_expired(now_ms()).await.unwrap(), 0);
        assert!(!rung(), "rescuing no lease rang");
        assert_eq!(cli.rescue_expired(now_ms() + 60_000).await.unwrap(), 1);
        assert!(rung(), "rescuing a lease did not ring");

        let schedule = NewSchedule {
            name: "s".into(),
            task: "t".into(),
            cron: "0 * * * * *".into(),
            timezone: "UTC".into(),
            input: serde_json::json!({}),
            catch_up: ratchet_core::schedule::CatchUp::Skip,
            catch_up_window: Duration::ZERO,
            overlap: ratchet_core::schedule::Overlap::Allow,
        };
        let added = cli.add_schedule(schedule.clone(), Some(now_ms() + 60_000), now_ms()).await.unwrap();
        assert!(rung(), "adding a schedule did not ring");
        cli.update_schedule(&added.id, schedule, Some(now_ms() + 60_000), now_ms()).await.unwrap();
        assert!(rung(), "changing a schedule did not ring");
        cli.set_schedule_enabled(&added.id, false, None, now_ms()).await.unwrap();
        assert!(rung(), "pausing a schedule did not ring");
        cli.close().await;
        node.close().await;
    }

    /// A node counts the others that run on its database: not itself, not a stopped one, not
    /// one whose heartbeat is older than the bound.
    #[tokio::test]
    async fn a_node_counts_the_other_nodes_that_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_data_dir(dir.path()).await.unwrap();
        for node in ["a", "b", "c"] {
            store.register_node(node, "host", 1, 1_000).await.unwrap();
        }
        assert_eq!(store.other_running_nodes("a", 1_000, 30_000).await.unwrap(), 2);
        store.stop_node("c", 2_000).await.unwrap();
        assert_eq!(store.other_running_nodes("a", 2_000, 30_000).await.unwrap(), 1);
        store.node_heartbeat("a", &[], 40_000).await.unwrap();
        assert_eq!(
            store.other_running_nodes("a", 40_000, 30_000).await.unwrap(),
            0,
            "b's heartbeat is stale"
        );
        assert_eq!(store.other_running_nodes("b", 40_000, 30_000).await.unwrap(), 1);
        store.close().await;
    }

    /// A transaction that SQLite rolled back by itself (as it does on a full disk; here a
    /// trigger's `RAISE(ROLLBACK)`), followed by one that fails an ordinary statement, must
    /// not leave the writer inside a transaction: the acknowledged write after them is
    /// committed, so a reader sees it.
    #[tokio::test]
    async fn writes_after_a_transaction_the_database_rolled_back_are_committed() {
        use sea_orm::TransactionTrait;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_data_dir(dir.path()).await.unwrap();
        let writer = store.writer();
        for sql in [
            "CREATE TABLE probe (x TEXT)",
            "CREATE TRIGGER rolls_back BEFORE INSERT ON probe WHEN NEW.x = 'rollback' \
             BEGIN SELECT RAISE(ROLLBACK, 'rolled back by the database'); END",
            "CREATE TRIGGER aborts BEFORE INSERT ON probe WHEN NEW.x = 'abort' \
             BEGIN SELECT RAISE(ABORT, 'statement refused'); END",
        ] {
            writer.execute_unprepared(sql).await.unwrap();
        }
        for refused in ["rollback", "abort"] {
            let transaction = writer.begin().await.unwrap();
            let insert = format!("INSERT INTO probe VALUES ('{refused}')");
            assert!(transaction.execute_unprepared(&insert).await.is_err(), "{refused} was not refused");
        }
        writer.execute_unprepared("INSERT INTO probe VALUES ('acknowledged')").await.unwrap();

        let count = Statement::from_string(DbBackend::Sqlite, "SELECT count(*) AS n FROM probe");
        let row = store.connection().query_one_raw(count).await.unwrap().unwrap();
        assert_eq!(row.try_get::<i64>("", "n").unwrap(), 1, "the acknowledged write is not committed");
        // And the writer still runs transactions.
        let transaction = writer.begin().await.unwrap();
        transaction.execute_unprepared("INSERT INTO probe VALUES ('later')").await.unwrap();
        transaction.commit().await.unwrap();
        store.close().await;
    }
}
