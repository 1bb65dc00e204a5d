//! The mutations, each checking its role: enqueue, cancel, retry, run, schedules.

use super::*;

/// Jobs per batch at most, as over REST.
const MAX_BATCH_JOBS: usize = 10_000;

pub struct Mutation;

/// One job of `enqueueBatch`.
#[derive(async_graphql::InputObject)]
pub struct JobInput {
    task: String,
    input: Json<Value>,
    priority: Option<i32>,
    idempotency_key: Option<String>,
    max_attempts: Option<u32>,
    /// Seconds each attempt may run, replacing the task's timeout (at most limits.max_timeout_secs).
    timeout_secs: Option<f64>,
    /// Jobs of the task sharing this key run at most its per-key concurrency limit at once.
    concurrency_key: Option<String>,
}

#[Object]
impl Mutation {
    /// Enqueue many jobs at once (runner), all or none: a job that cannot be enqueued refuses
    /// the batch, naming it by index. Returns the jobs' ids in order.
    async fn enqueue_batch(
        &self,
        ctx: &Context<'_>,
        jobs: Vec<JobInput>,
    ) -> async_graphql::Result<Vec<String>> {
        need(ctx, Role::Runner)?;
        let state = state(ctx)?;
        if jobs.is_empty() || jobs.len() > MAX_BATCH_JOBS {
            return Err(async_graphql::Error::new(format!(
                "a batch holds 1 to {MAX_BATCH_JOBS} jobs, not {}",
                jobs.len()
            )));
        }
        let max = state.service.config().limits.max_timeout_secs;
        let mut batch = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.into_iter().enumerate() {
            if job.max_attempts == Some(0) {
                return Err(async_graphql::Error::new(format!(
                    "job {index}: max_attempts must be at least 1"
                )));
            }
            let timeout = job
                .timeout_secs
                .map(|secs| ratchet_service::job_timeout(secs, max))
                .transpose()
                .map_err(|error| async_graphql::Error::new(format!("job {index}: {error}")))?;
            let options = EnqueueOptions {
                priority: job.priority.unwrap_or(0),
                max_attempts: job.max_attempts,
                idempotency_key: job.idempotency_key,
                timeout,
                trace: Some(trace(ctx)),
                concurrency_key: job.concurrency_key,
                ..Default::default()
            };
            batch.push(ratchet_service::BatchJob { task: job.task, input: job.input.0, options });
        }
        let written = state.service.enqueue_batch(batch).await.map_err(gql)?;
        Ok(written.into_iter().map(|(id, _)| id).collect())
    }

    /// Enqueue a job (runner). A repeated idempotency key returns the existing job.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one of the mutation's arguments in the schema"
    )]
    async fn enqueue(
        &self,
        ctx: &Context<'_>,
        task: String,
        input: Json<Value>,
        priority: Option<i32>,
        idempotency_key: Option<String>,
        #[graphql(
            desc = "Seconds each attempt may run, replacing the task's timeout (at most limits.max_timeout_secs)."
        )]
        timeout_secs: Option<f64>,
        #[graphql(
            desc = "Jobs of the task sharing this key run at most its per-key concurrency limit at once."
        )]
        concurrency_key: Option<String>,
    ) -> async_graphql::Result<JobView> {
        need(ctx, Role::Runner)?;
        let state = state(ctx)?;
        let max = state.service.config().limits.max_timeout_secs;
        let timeout = timeout_secs.map(|secs| ratchet_service::job_timeout(secs, max)).transpose()?;
        let options = EnqueueOptions {
            priority: priority.unwrap_or(0),
            idempotency_key,
            timeout,
            trace: Some(trace(ctx)),
            concurrency_key,
            ..Default::default()
        };
        let enqueued = state.service.enqueue(&task, input.0, options).await.map_err(gql)?;
        Ok(JobView::from(&enqueued.job))
    }

    /// Cancel a job that has not ended (runner).
    async fn cancel_job(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<JobView> {
        need(ctx, Role::Runner)?;
        Ok(JobView::from(&state(ctx)?.service.cancel(&id).await.map_err(gql)?))
    }

    /// Enqueue a failed or cancelled job again as a new job with the same task and input
    /// (runner).
    async fn retry_job(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<JobView> {
        need(ctx, Role::Runner)?;
        Ok(JobView::from(&state(ctx)?.service.retry(&id).await.map_err(gql)?.job))
    }

    /// Run a task now and wait for its recorded execution (runner), at most
    /// server.run_wait_secs.
    async fn run_task(
        &self,
        ctx: &Context<'_>,
        name: String,
        input: Json<Value>,
    ) -> async_graphql::Result<ExecutionDetail> {
        need(ctx, Role::Runner)?;
        let state = state(ctx)?;
        let (task, input) = state.service.check_input(&name, input.0).await.map_err(gql)?;
        let permit = state.sync_runs.clone().try_acquire_owned().map_err(|_| {
            async_graphql::Error::new(
                "too many synchronous runs in progress (server.max_sync_runs); retry shortly",
            )
        })?;
        let options = ratchet_service::RunOptions { trace: Some(trace(ctx)), ..Default::default() };
        let (id, done) = state.service.run_now_with(task, input, permit, options);
        match tokio::time::timeout(ratchet_server::seconds(state.config.run_wait_secs), done).await {
            Ok(Ok(Ok(record))) => Ok(record.into()),
            Ok(Ok(Err(unrecorded))) => Err(async_graphql::Error::new(format!(
                "run {id} ended ({}) but the database refused its record ({}); it is not in the history",
                unrecorded.record.status, unrecorded.error
            ))),
            Ok(Err(_)) => Err(async_graphql::Error::new(format!("run {id} ended without a result"))),
            Err(_) => Err(async_graphql::Error::new(format!(
                "run {id} is still going after server.run_wait_secs; query execution(id: \"{id}\") later"
            ))),
        }
    }

    /// Add a cron schedule (admin).
    async fn add_schedule(
        &self,
        ctx: &Context<'_>,
        task: String,
        cron: String,
        timezone: Option<String>,
        input: Option<Json<Value>>,
        name: Option<String>,
    ) -> async_graphql::Result<ScheduleView> {
        need(ctx, Role::Admin)?;
        let state = state(ctx)?;
        let new = NewSchedule {
            name: name.unwrap_or_else(|| task.clone()),
            task,
            cron,
            timezone: timezone.unwrap_or_else(|| "UTC".into()),
            input: input.map_or_else(|| serde_json::json!({}), |i| i.0),
            catch_up: Default::default(),
            catch_up_window: Duration::from_secs(60),
            overlap: Default::default(),
        };
        let schedule = state.service.add_schedule(new).await.map_err(gql)?;
        Ok(ScheduleView::from(&schedule))
    }

    /// Pause a task's jobs, or every job when `task` is null (admin): they stay queued, running
    /// ones finish. With `skipSchedules` its schedules skip their fires meanwhile.
    async fn pause_queue(
        &self,
        ctx: &Context<'_>,
        task: Option<String>,
        skip_schedules: Option<bool>,
    ) -> async_graphql::Result<PauseView> {
        need(ctx, Role::Admin)?;
        let by = ctx.data::<Caller>()?.id.clone();
        let pause = state(ctx)?
            .service
            .pause(task.as_deref(), skip_schedules.unwrap_or(false), &by)
            .await
            .map_err(gql)?;
        Ok(PauseView::from(&pause))
    }

    /// Resume a task's jobs, or the whole queue when `task` is null (admin); the pauses left.
    async fn resume_queue(
        &self,
        ctx: &Context<'_>,
        task: Option<String>,
    ) -> async_graphql::Result<Vec<PauseView>> {
        need(ctx, Role::Admin)?;
        let service = &state(ctx)?.service;
        service.resume(task.as_deref()).await.map_err(gql)?;
        Ok(service.pauses().await.map_err(gql)?.iter().map(PauseView::from).collect())
    }

    /// Set a secret (admin); its value is sealed and never returned. True when it is new.
    async fn set_secret(
        &self,
        ctx: &Context<'_>,
        name: String,
        value: String,
    ) -> async_graphql::Result<bool> {
        need(ctx, Role::Admin)?;
        state(ctx)?.service.secrets().set(&name, &value).await.map_err(gql)
    }

    /// Remove a secret (admin).
    async fn remove_secret(&self, ctx: &Context<'_>, name: String) -> async_graphql::Result<bool> {
        need(ctx, Role::Admin)?;
        state(ctx)?.service.secrets().remove(&name).await.map_err(gql)?;
        Ok(true)
    }

    /// Remove a schedule by id or name (admin).
    async fn remove_schedule(&self, ctx: &Context<'_>, id: String) -> async_graphql::Result<ScheduleView> {
        need(ctx, Role::Admin)?;
        Ok(ScheduleView::from(&state(ctx)?.service.remove_schedule(&id).await.map_err(gql)?))
    }

    /// Pause or resume a schedule (admin).
    async fn set_schedule_enabled(
        &self,
        ctx: &Context<'_>,
        id: String,
        enabled: bool,
    ) -> async_graphql::Result<ScheduleView> {
        need(ctx, Role::Admin)?;
        let schedule = state(ctx)?.service.set_schedule_enabled(&id, enabled).await.map_err(gql)?;
        Ok(ScheduleView::from(&schedule))
    }
}
