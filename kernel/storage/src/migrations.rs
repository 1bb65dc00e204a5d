//! Schema migrations, applied in order at connect time. A released migration never changes:
//! add a new one.

// sea-orm-migration's trait writes `&SchemaManager` without its lifetime; so must we.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, integer, integer_null, string, string_null, text, text_null,
};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(CreateJobs),
            Box::new(CreateExecutions),
            Box::new(ClaimOrderIndex),
            Box::new(CreateSchedules),
            Box::new(CreateNodesWorkersTasks),
            Box::new(ExecutionsOfJobs),
            Box::new(JobsPinTaskVersions),
            Box::new(TaskSourcesAndLoadErrors),
            Box::new(ExecutionsCausedBy),
            Box::new(TraceIds),
            Box::new(QueuePauses),
            Box::new(DueIndex),
            Box::new(ConcurrencyKeys),
            Box::new(Secrets),
            Box::new(ConcurrencySlots),
            Box::new(WriteProbes),
            Box::new(ListingIndexes),
            Box::new(DropUnusedJobIndexes),
            Box::new(PartialIdempotencyIndex),
            Box::new(WakeNodes),
            Box::new(WakeNodesWhenDue),
            Box::new(WakeSchedulers),
            Box::new(SignWakeUps),
        ]
    }
}

/// Jobs and the record of every attempt.
struct CreateJobs;

impl MigrationName for CreateJobs {
    fn name(&self) -> &str {
        "m20261126_000001_create_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateJobs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("jobs")
                    .col(string("id").primary_key())
                    .col(string("task"))
                    .col(text("input"))
                    .col(integer("priority"))
                    .col(big_integer("run_at"))
                    .col(string("status"))
                    .col(integer("attempt"))
                    .col(integer("max_attempts"))
                    .col(big_integer("backoff_base_ms"))
                    .col(big_integer("backoff_max_ms"))
                    .col(big_integer_null("timeout_ms"))
                    .col(string_null("idempotency_key").unique_key())
                    .col(string_null("lease_owner"))
                    .col(big_integer_null("lease_expires_at"))
                    .col(text_null("output"))
                    .col(text_null("last_error"))
                    .col(big_integer("created_at"))
                    .col(big_integer("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("jobs_claimable").table("jobs").col("status").col("run_at").to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("jobs_leases")
                    .table("jobs")
                    .col("status")
                    .col("lease_expires_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("job_attempts")
                    .col(string("job_id"))
                    .col(integer("attempt"))
                    .col(string("outcome"))
                    .col(text_null("error"))
                    .col(big_integer("finished_at"))
                    .primary_key(Index::create().col("job_id").col("attempt"))
                    .foreign_key(
                        ForeignKey::create()
                            .from("job_attempts", "job_id")
                            .to("jobs", "id")
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("job_attempts").to_owned()).await?;
        manager.drop_table(Table::drop().table("jobs").to_owned()).await
    }
}

/// Every run: input, output or error, logs, HTTP exchanges, timings.
struct CreateExecutions;

impl MigrationName for CreateExecutions {
    fn name(&self) -> &str {
        "m20261126_000002_create_executions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateExecutions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("executions")
                    .col(string("id").primary_key())
                    .col(string_null("job_id"))
                    .col(integer("attempt"))
                    .col(string("task"))
                    .col(string("status"))
                    .col(text("input"))
                    .col(text_null("output"))
                    .col(text_null("error"))
                    .col(text("logs"))
                    .col(text("http"))
                    .col(big_integer("started_at"))
                    .col(big_integer("finished_at"))
                    .col(big_integer("duration_us"))
                    .col(string_null("worker"))
                    .col(string_null("node"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("executions_by_time").table("executions").col("started_at").to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create().name("executions_by_job").table("executions").col("job_id").to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("executions").to_owned()).await
    }
}

/// The claim query's order, as a partial index over claimable jobs: without it every claim
/// sorts all waiting jobs (a drain of n jobs costs n^2). Plain SQL that both backends accept.
struct ClaimOrderIndex;

impl MigrationName for ClaimOrderIndex {
    fn name(&self) -> &str {
        "m20261126_000003_claim_order_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ClaimOrderIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX jobs_claim_order ON jobs (priority DESC, run_at, created_at, id) \
                 WHERE status IN ('queued', 'retrying')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX jobs_claim_order").await?;
        Ok(())
    }
}

/// Cron schedules. `next_fire_at` is also the compare-and-set token that lets exactly one
/// scheduler (of any node) fire each fire time.
struct CreateSchedules;

impl MigrationName for CreateSchedules {
    fn name(&self) -> &str {
        "m20261126_000004_create_schedules"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateSchedules {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("schedules")
                    .col(string("id").primary_key())
                    .col(string("name").unique_key())
                    .col(string("task"))
                    .col(string("cron"))
                    .col(string("timezone"))
                    .col(text("input"))
                    .col(string("catch_up"))
                    .col(big_integer("catch_up_window_ms"))
                    .col(string("overlap"))
                    .col(integer("enabled"))
                    .col(big_integer_null("next_fire_at"))
                    .col(big_integer_null("last_fire_at"))
                    .col(string_null("last_job_id"))
                    .col(big_integer("created_at"))
                    .col(big_integer("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("schedules_due")
                    .table("schedules")
                    .col("enabled")
                    .col("next_fire_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table("schedules").to_owned()).await
    }
}

/// The nodes that run (or ran) against this database, their workers, and the tasks they
/// loaded with every version seen.
struct CreateNodesWorkersTasks;

impl MigrationName for CreateNodesWorkersTasks {
    fn name(&self) -> &str {
        "m20261126_000005_create_nodes_workers_tasks"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateNodesWorkersTasks {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("nodes")
                    .col(string("id").primary_key())
                    .col(string("hostname"))
                    .col(integer("pid"))
                    .col(string("version"))
                    .col(string("status"))
                    .col(big_integer("started_at"))
                    .col(big_integer("heartbeat_at"))
                    .col(big_integer_null("stopped_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("workers")
                    .col(string("id").primary_key())
                    .col(string("node"))
                    .col(integer_null("pid"))
                    .col(string("state"))
                    .col(big_integer("runs"))
                    .col(text_null("last_error"))
                    .col(big_integer("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("tasks")
                    .col(string("name").primary_key())
                    .col(string_null("uuid"))
                    .col(string("version"))
                    .col(string("digest"))
                    .col(text("origin"))
                    .col(big_integer("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("task_versions")
                    .col(string("task"))
                    .col(string("digest"))
                    .col(string("version"))
                    .col(text("metadata"))
                    .col(text("input_schema"))
                    .col(text("output_schema"))
                    .col(text("code"))
                    .col(big_integer("first_seen_at"))
                    .primary_key(Index::create().col("task").col("digest"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["task_versions", "tasks", "workers", "nodes"] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}

/// A job's history is found through `executions_of_jobs`, which indexes only the runs of jobs.
/// Synchronous runs have no job, yet each one added a NULL entry to the old
/// `executions_by_job`: one more page written per run record (of four) for lookups that never
/// ask for NULL. `job_id = ?` implies `job_id IS NOT NULL`, so both backends use the partial
/// index for a job's history. A new name, created before the old index is dropped, and
/// `IF [NOT] EXISTS`: the step is safe to repeat if it was cut short.
struct ExecutionsOfJobs;

impl MigrationName for ExecutionsOfJobs {
    fn name(&self) -> &str {
        "m20261126_000006_executions_of_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ExecutionsOfJobs {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS executions_of_jobs ON executions (job_id) WHERE job_id IS NOT NULL",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS executions_by_job").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS executions_by_job ON executions (job_id)").await?;
        db.execute_unprepared("DROP INDEX IF EXISTS executions_of_jobs").await?;
        Ok(())
    }
}

/// A job runs the task version it was enqueued against: its digest, whose files
/// `task_versions` keeps. Existing jobs keep `NULL` and run the version a node has.
struct JobsPinTaskVersions;

impl MigrationName for JobsPinTaskVersions {
    fn name(&self) -> &str {
        "m20261129_000007_jobs_pin_task_versions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for JobsPinTaskVersions {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("ALTER TABLE jobs ADD COLUMN task_digest TEXT").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("ALTER TABLE jobs DROP COLUMN task_digest").await?;
        Ok(())
    }
}

/// Where each task came from, and why its latest change did not load, for `ratchet tasks`.
struct TaskSourcesAndLoadErrors;

impl MigrationName for TaskSourcesAndLoadErrors {
    fn name(&self) -> &str {
        "m20261129_000008_task_sources_and_load_errors"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TaskSourcesAndLoadErrors {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE tasks ADD COLUMN source TEXT").await?;
        db.execute_unprepared("ALTER TABLE tasks ADD COLUMN load_error TEXT").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE tasks DROP COLUMN load_error").await?;
        db.execute_unprepared("ALTER TABLE tasks DROP COLUMN source").await?;
        Ok(())
    }
}

/// Who or what caused a run (an agent's MCP call: principal, tool, digest of the arguments).
struct ExecutionsCausedBy;

impl MigrationName for ExecutionsCausedBy {
    fn name(&self) -> &str {
        "m20261129_000009_executions_caused_by"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ExecutionsCausedBy {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("ALTER TABLE executions ADD COLUMN caused_by TEXT")
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("ALTER TABLE executions DROP COLUMN caused_by").await?;
        Ok(())
    }
}

/// The trace each job and run belongs to, and finding a trace's runs.
struct TraceIds;

impl MigrationName for TraceIds {
    fn name(&self) -> &str {
        "m20261130_000010_trace_ids"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TraceIds {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE jobs ADD COLUMN trace_id TEXT").await?;
        db.execute_unprepared("ALTER TABLE executions ADD COLUMN trace_id TEXT").await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS executions_by_trace ON executions (trace_id) WHERE trace_id IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS executions_by_trace").await?;
        db.execute_unprepared("ALTER TABLE executions DROP COLUMN trace_id").await?;
        db.execute_unprepared("ALTER TABLE jobs DROP COLUMN trace_id").await?;
        Ok(())
    }
}

/// Paused tasks (or the whole queue, scope `*`), obeyed by every node's claim.
struct QueuePauses;

impl MigrationName for QueuePauses {
    fn name(&self) -> &str {
        "m20261130_000011_queue_pauses"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for QueuePauses {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE queue_pauses (scope TEXT PRIMARY KEY, skip_schedules INTEGER NOT NULL, \
                 paused_at BIGINT NOT NULL, paused_by TEXT)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE queue_pauses").await?;
        Ok(())
    }
}

/// The earliest due time of waiting jobs, for consumers that sleep until then.
struct DueIndex;

impl MigrationName for DueIndex {
    fn name(&self) -> &str {
        "m20261130_000012_due_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DueIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX IF NOT EXISTS jobs_waiting_due ON jobs (run_at) WHERE status IN ('queued', 'retrying')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP INDEX IF EXISTS jobs_waiting_due").await?;
        Ok(())
    }
}

/// Jobs' concurrency keys, and the running jobs a claim counts against the limits.
struct ConcurrencyKeys;

impl MigrationName for ConcurrencyKeys {
    fn name(&self) -> &str {
        "m20261130_000013_concurrency_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ConcurrencyKeys {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE jobs ADD COLUMN concurrency_key TEXT").await?;
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS jobs_running ON jobs (task, concurrency_key) WHERE status = 'running'",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_running").await?;
        db.execute_unprepared("ALTER TABLE jobs DROP COLUMN concurrency_key").await?;
        Ok(())
    }
}

/// Secrets, encrypted: the key is never in the database, only its fingerprint.
struct Secrets;

impl MigrationName for Secrets {
    fn name(&self) -> &str {
        "m20261130_000014_secrets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Secrets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE secrets (name TEXT PRIMARY KEY, sealed TEXT NOT NULL, key_id TEXT NOT NULL, \
                 created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE secrets").await?;
        Ok(())
    }
}

/// The slot each running job of a limited task holds: a unique index over the running jobs
/// bounds them by the limit without a lock (see `limits`). A job leaves its slot when it stops
/// running, since the indexes cover running jobs only.
struct ConcurrencySlots;

impl MigrationName for ConcurrencySlots {
    fn name(&self) -> &str {
        "m20261130_000015_concurrency_slots"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ConcurrencySlots {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE jobs ADD COLUMN concurrency_slot INTEGER").await?;
        db.execute_unprepared("ALTER TABLE jobs ADD COLUMN key_slot INTEGER").await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_task_slots ON jobs (task, concurrency_slot) \
             WHERE status = 'running' AND concurrency_slot IS NOT NULL",
        )
        .await?;
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_key_slots ON jobs (task, concurrency_key, key_slot) \
             WHERE status = 'running' AND key_slot IS NOT NULL",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_key_slots").await?;
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_task_slots").await?;
        db.execute_unprepared("ALTER TABLE jobs DROP COLUMN key_slot").await?;
        db.execute_unprepared("ALTER TABLE jobs DROP COLUMN concurrency_slot").await?;
        Ok(())
    }
}

/// Where readiness probes whether writes work again after they failed (see `write_health`):
/// one row per node, deleted right after it is committed.
struct WriteProbes;

impl MigrationName for WriteProbes {
    fn name(&self) -> &str {
        "m20261201_000016_write_probes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WriteProbes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE TABLE write_probes (node TEXT PRIMARY KEY, padding TEXT NOT NULL, written_at BIGINT NOT NULL)",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("DROP TABLE write_probes").await?;
        Ok(())
    }
}

/// Indexes for the listings' default orders, so that a page of jobs or executions (all, by
/// status, by task) reads its rows in order instead of sorting the whole table: with 100,000
/// jobs the first page of `GET /api/v1/jobs` took 245 ms without them.
struct ListingIndexes;

impl MigrationName for ListingIndexes {
    fn name(&self) -> &str {
        "m20261201_000017_listing_indexes"
    }
}

/// Each index of [`ListingIndexes`]: name, then definition.
const LISTING_INDEXES: [(&str, &str); 4] = [
    ("jobs_by_creation", "jobs (created_at, id)"),
    ("jobs_by_status_and_creation", "jobs (status, created_at, id)"),
    ("jobs_by_task_and_creation", "jobs (task, created_at, id)"),
    ("executions_by_status_and_time", "executions (status, started_at, id)"),
];

#[async_trait::async_trait]
impl MigrationTrait for ListingIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, definition) in LISTING_INDEXES {
            db.execute_unprepared(&format!("CREATE INDEX IF NOT EXISTS {name} ON {definition}")).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, _) in LISTING_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX IF EXISTS {name}")).await?;
        }
        Ok(())
    }
}

/// Drops the two indexes of the first schema that no query uses any more, each of which every
/// job paid for on each of its writes: a change of status is never a heap-only update, so a job
/// added, claimed and finished wrote six entries into them. The claim reads `jobs_claim_order`,
/// the wake-up `jobs_waiting_due`, and the lease rescue scans the running jobs through
/// `jobs_running` (its predicate is `status = 'running'`). `pg_stat_user_indexes` showed 0
/// scans of both after a 2,000-job drain. A lease renewal, which changes only
/// `lease_expires_at`, can now update its row in place.
struct DropUnusedJobIndexes;

impl MigrationName for DropUnusedJobIndexes {
    fn name(&self) -> &str {
        "m20261201_000018_drop_unused_job_indexes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DropUnusedJobIndexes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_claimable").await?;
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_leases").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS jobs_claimable ON jobs (status, run_at)").await?;
        db.execute_unprepared("CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (status, lease_expires_at)")
            .await?;
        Ok(())
    }
}

/// On PostgreSQL, the uniqueness of idempotency keys moves from the column's constraint to a
/// partial unique index over the keys that are set. A B-tree indexes NULL too, and no job
/// update is heap-only (each changes `status`, which other indexes hold), so every job without
/// a key (nearly all of them) wrote three entries into the constraint's index: when added,
/// claimed and finished. SQLite keeps its constraint: dropping it means copying the table.
/// Inserts name the predicate in their conflict target, which both forms satisfy.
struct PartialIdempotencyIndex;

impl MigrationName for PartialIdempotencyIndex {
    fn name(&self) -> &str {
        "m20261201_000019_partial_idempotency_index"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PartialIdempotencyIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (idempotency_key) \
             WHERE idempotency_key IS NOT NULL",
        )
        .await?;
        db.execute_unprepared("ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_idempotency_key_key").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "ALTER TABLE jobs ADD CONSTRAINT jobs_idempotency_key_key UNIQUE (idempotency_key)",
        )
        .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_by_idempotency_key").await?;
        Ok(())
    }
}

/// On PostgreSQL, the database itself tells every node when jobs may have become claimable:
/// each statement that adds jobs (whoever runs it: a node, the CLI, a scheduler) and each that
/// lifts a pause sends [`WAKE_PAYLOAD`](crate::WAKE_PAYLOAD) on the job feed's channel, at its
/// commit. Nodes that sleep until their next poll claim at once. Statement triggers: one
/// notification per statement (a batch of 10,000 jobs is one), none per row, and PostgreSQL
/// folds equal notifications of one transaction into one. [`WakeNodesWhenDue`] later gave the
/// wake-up for jobs added their earliest due time.
struct WakeNodes;

impl MigrationName for WakeNodes {
    fn name(&self) -> &str {
        "m20261203_000020_wake_nodes"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WakeNodes {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        // Written out, not formatted from the constants: a released migration never changes.
        // `queue::postgres_wakes_the_nodes_whenever_jobs_may_have_become_claimable` (tests) hears
        // JOBS_CHANNEL and WAKE_PAYLOAD from these triggers.
        db.execute_unprepared(
            r#"CREATE OR REPLACE FUNCTION ratchet_wake_nodes() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM pg_notify('ratchet_jobs', '{"node":"","wake":true}'); RETURN NULL; END $$"#,
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER jobs_wake_nodes AFTER INSERT ON jobs \
             FOR EACH STATEMENT EXECUTE FUNCTION ratchet_wake_nodes()",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER queue_pauses_wake_nodes AFTER DELETE ON queue_pauses \
             FOR EACH STATEMENT EXECUTE FUNCTION ratchet_wake_nodes()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS jobs_wake_nodes ON jobs").await?;
        db.execute_unprepared("DROP TRIGGER IF EXISTS queue_pauses_wake_nodes ON queue_pauses").await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS ratchet_wake_nodes()").await?;
        Ok(())
    }
}

/// Jobs added with a due time ahead wake no node early: the wake-up for added jobs carries the
/// earliest due time among them (`{"node":"","wake":true,"due":MS}`), and an idle node sets its
/// alarm for it instead of claiming at once (a claim that finds nothing, on every idle node).
/// A statement that adds no job (an idempotent enqueue of a job that exists) says nothing.
/// The wake-ups for a lifted pause stay as they were.
struct WakeNodesWhenDue;

impl MigrationName for WakeNodesWhenDue {
    fn name(&self) -> &str {
        "m20261204_000021_wake_nodes_when_due"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WakeNodesWhenDue {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        // `queue::postgres_wakes_the_nodes_whenever_jobs_may_have_become_claimable` (tests)
        // hears these payloads.
        db.execute_unprepared(&wake_nodes_for_added_jobs("''::text")).await?;
        db.execute_unprepared("DROP TRIGGER IF EXISTS jobs_wake_nodes ON jobs").await?;
        db.execute_unprepared(
            "CREATE TRIGGER jobs_wake_nodes AFTER INSERT ON jobs REFERENCING NEW TABLE AS added \
             FOR EACH STATEMENT EXECUTE FUNCTION ratchet_wake_nodes_for_added_jobs()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS jobs_wake_nodes ON jobs").await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS ratchet_wake_nodes_for_added_jobs()").await?;
        db.execute_unprepared(
            "CREATE TRIGGER jobs_wake_nodes AFTER INSERT ON jobs \
             FOR EACH STATEMENT EXECUTE FUNCTION ratchet_wake_nodes()",
        )
        .await?;
        Ok(())
    }
}

/// The function behind the wake-up for added jobs: `{"node":NODE,"wake":true,"due":MS}`, with
/// NODE the SQL text expression `node` (JSON-escaped here) and MS the earliest due time among
/// the jobs the statement added; nothing when it added none.
fn wake_nodes_for_added_jobs(node: &str) -> String {
    format!(
        r#"CREATE OR REPLACE FUNCTION ratchet_wake_nodes_for_added_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
           DECLARE due bigint;
           BEGIN
             SELECT min(run_at) INTO due FROM added;
             IF due IS NOT NULL THEN
               PERFORM pg_notify('ratchet_jobs',
                 '{{"node":' || to_json({node})::text || ',"wake":true,"due":' || due || '}}');
             END IF;
             RETURN NULL;
           END $$"#
    )
}

/// A schedule added, or its expression, time zone or state changed (by a node's API or the
/// CLI), tells every node's scheduler to look again ([`SCHEDULES_PAYLOAD`](crate::SCHEDULES_PAYLOAD)
/// on the job feed's channel, at commit): its first fire time may be sooner than the
/// scheduler's next look. A fire (which moves `next_fire_at`) says nothing.
struct WakeSchedulers;

impl MigrationName for WakeSchedulers {
    fn name(&self) -> &str {
        "m20261204_000022_wake_schedulers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for WakeSchedulers {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        // `queue::postgres_wakes_the_schedulers_when_schedules_change` (tests) hears this payload.
        db.execute_unprepared(
            r#"CREATE OR REPLACE FUNCTION ratchet_wake_schedulers() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN PERFORM pg_notify('ratchet_jobs', '{"node":"","schedules":true}'); RETURN NULL; END $$"#,
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER schedules_wake_schedulers AFTER INSERT OR UPDATE OF cron, timezone, enabled \
             ON schedules FOR EACH STATEMENT EXECUTE FUNCTION ratchet_wake_schedulers()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS schedules_wake_schedulers ON schedules").await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS ratchet_wake_schedulers()").await?;
        Ok(())
    }
}

/// The wake-up for added jobs names the node whose session added them (its `ratchet.node`
/// setting, see `StoreOptions::node`; empty for the CLI and older nodes): that node already
/// woke its own claimer in-process, and without the name it claimed a second time for each
/// job it added, on hearing its own wake-up.
struct SignWakeUps;

impl MigrationName for SignWakeUps {
    fn name(&self) -> &str {
        "m20261205_000023_sign_wake_ups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SignWakeUps {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        // `queue::postgres_wake_ups_for_jobs_added_name_the_node_that_added_them` (tests).
        let node = "coalesce(current_setting('ratchet.node', true), '')";
        manager.get_connection().execute_unprepared(&wake_nodes_for_added_jobs(node)).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        manager.get_connection().execute_unprepared(&wake_nodes_for_added_jobs("''::text")).await?;
        Ok(())
    }
}
