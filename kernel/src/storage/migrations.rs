//! Schema migrations, applied in order at connect time. A released migration never changes:
//! add a new one.

// sea-orm-migration's trait writes `&SchemaManager` without its lifetime; so must we.
#![allow(elided_lifetimes_in_paths)]

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, big_integer_null, integer, string, string_null, text, text_null,
};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateJobs), Box::new(CreateExecutions), Box::new(ClaimOrderIndex)]
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
