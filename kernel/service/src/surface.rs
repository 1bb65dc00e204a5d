//! What the API surfaces ask of the node: reads of the queue, the history, the schedules and
//! the nodes, and the changes they may make, each as one method. Surfaces go through these,
//! never through the store, the kernel or the registry directly, so the node stays the one
//! place that knows how they fit together (the clock, the fencing, the registry's checks).

use std::sync::Arc;

use serde_json::Value;

use ratchet_core::Task;
use ratchet_core::config::Config;
use ratchet_core::execution::{Execution, ValidateError};
use ratchet_core::http::HttpMode;
use ratchet_core::supervisor::{LiveLine, SlotStatus};
use ratchet_storage::{
    Attempt, ExecutionFilter, ExecutionRecord, Job, JobFilter, JobStatus, KnownVersion, Listed, NewSchedule,
    Node, Page, Pause, QueueError, Schedule, WHOLE_QUEUE, WorkerRow, now_ms,
};

use crate::{NODE_STALE_AFTER_MS, Service, ServiceError, scheduler};

impl Service {
    /// The configuration the node runs with.
    pub fn config(&self) -> &Config {
        self.kernel.config()
    }

    /// Hands an event of `kind` to the sinks (an audit record, say); `data` is built only when
    /// some sink listens.
    pub fn publish(
        &self,
        kind: &str,
        task: Option<&str>,
        execution_id: Option<&str>,
        data: impl FnOnce() -> Value,
    ) {
        self.emit(|| ratchet_plugin_host::Event::new(kind, task, execution_id, data()));
    }

    /// The task a name or uuid refers to.
    pub fn task(&self, reference: &str) -> Option<Arc<Task>> {
        self.registry().get(reference)
    }

    /// Every task the node serves, with its source and any load error, by name.
    pub fn tasks(&self) -> Vec<crate::TaskEntry> {
        self.registry().entries().cloned().collect()
    }

    /// The task a name or uuid refers to, with its source and any load error.
    pub fn task_entry(&self, reference: &str) -> Option<crate::TaskEntry> {
        self.registry().entry(reference).cloned()
    }

    /// Task folders and ZIPs that hold no serving task, and why.
    pub fn task_problems(&self) -> Vec<crate::Rejected> {
        self.registry().problems().cloned().collect()
    }

    /// The task `reference` names, once `input` matches its input schema.
    pub async fn check_input(
        &self,
        reference: &str,
        input: Value,
    ) -> Result<(Arc<Task>, Value), ServiceError> {
        crate::checked_task(&self.registry(), reference, input).await
    }

    /// Checks the task's script in a worker.
    pub async fn validate_task(&self, task: &Task) -> Result<(), ValidateError> {
        self.kernel.validate(task).await
    }

    /// Runs `task` with its requests answered by `http` (a replay), unrecorded.
    pub async fn run_with(&self, task: &Task, input: Value, http: HttpMode) -> Execution {
        self.kernel.run_with(task, input, http).await
    }

    /// Every version of a task this database has seen.
    pub async fn task_versions(&self, name: &str) -> Result<Vec<KnownVersion>, QueueError> {
        self.store.task_versions(name).await
    }

    /// Log lines of recorded runs ([`ratchet_storage::LogSearch`]).
    pub async fn search_logs(
        &self,
        search: &ratchet_storage::LogSearch,
    ) -> Result<ratchet_storage::LogsFound, QueueError> {
        self.store.search_logs(search).await
    }

    /// Runs and failures per bucket since `since`, by task and by error pattern.
    pub async fn failure_trends(
        &self,
        since: i64,
        bucket_ms: i64,
    ) -> Result<Vec<ratchet_storage::TrendBucket>, QueueError> {
        self.store.failure_trends(since, bucket_ms).await
    }

    /// A job, with why it waits when it does.
    pub async fn job(&self, id: &str) -> Result<Job, QueueError> {
        let mut job = self.store.job(id).await?;
        self.store.mark_waiting(std::slice::from_mut(&mut job), now_ms()).await?;
        Ok(job)
    }

    /// How each finished attempt of a job ended.
    pub async fn attempts(&self, id: &str) -> Result<Vec<Attempt>, QueueError> {
        self.store.attempts(id).await
    }

    /// A page of jobs, each with why it waits when it does.
    pub async fn jobs(&self, filter: &JobFilter, page: Page) -> Result<Listed<Job>, QueueError> {
        let mut listed = self.store.list_jobs(filter, page).await?;
        self.store.mark_waiting(&mut listed.items, now_ms()).await?;
        Ok(listed)
    }

    /// Cancels a job that has not ended.
    pub async fn cancel(&self, id: &str) -> Result<Job, QueueError> {
        let job = self.store.cancel(id, now_ms()).await?;
        self.job_changed(&job.id, &job.task, job.status, job.attempt);
        Ok(job)
    }

    /// Pauses the queue of `task` (every task's when `None`): its jobs stay queued, running
    /// ones finish, every node obeys; with `skip_schedules` its schedules skip their fires
    /// meanwhile (otherwise they keep enqueueing, and the jobs wait). An unknown task is refused.
    pub async fn pause(
        &self,
        task: Option<&str>,
        skip_schedules: bool,
        by: &str,
    ) -> Result<Pause, ServiceError> {
        let scope = match task {
            Some(reference) => crate::known_task(&self.registry(), reference)?.name().to_owned(),
            None => WHOLE_QUEUE.to_owned(),
        };
        Ok(self.store.pause(&scope, skip_schedules, Some(by), now_ms()).await?)
    }

    /// Lifts the pause of `task` (of the whole queue when `None`); `NotFound` when there was
    /// none. A task's own pause and the whole queue's are separate: lifting one leaves the other.
    pub async fn resume(&self, task: Option<&str>) -> Result<(), QueueError> {
        let scope = task.unwrap_or(WHOLE_QUEUE);
        if !self.store.resume(scope).await? {
            let what =
                if scope == WHOLE_QUEUE { "the whole queue".to_owned() } else { format!("task {scope}") };
            return Err(QueueError::NotFound(format!("pause of {what} (it is not paused)")));
        }
        self.wake.notify_one();
        Ok(())
    }

    /// The pauses in force.
    pub async fn pauses(&self) -> Result<Vec<Pause>, QueueError> {
        self.store.pauses().await
    }

    /// Jobs per status (a scan of every job kept), counted at most as often as the count's cost
    /// allows: a count is reused for ten times what it took, at most 5 s ([`crate::shared_count`]).
    pub async fn job_counts(&self) -> Result<Vec<(JobStatus, u64)>, QueueError> {
        self.job_counts.get(std::time::Instant::now, || self.store.job_counts()).await
    }

    /// Whether the database answers, in constant time (readiness).
    pub async fn database_ping(&self) -> Result<(), QueueError> {
        self.store.ping().await
    }

    /// Jobs waiting and running, per status, as this node's heartbeat last counted them (every
    /// [`crate::NODE_HEARTBEAT`]), and when; `None` before the first count.
    pub fn queue_as_counted(&self) -> Option<(i64, Value)> {
        self.queue_seen.lock().ok().and_then(|seen| seen.clone())
    }

    pub async fn execution(&self, id: &str) -> Result<ExecutionRecord, QueueError> {
        self.store.execution(id).await
    }

    pub async fn executions(
        &self,
        filter: &ExecutionFilter,
        page: Page,
    ) -> Result<Listed<ExecutionRecord>, QueueError> {
        self.store.list_executions(filter, page).await
    }

    pub async fn schedule(&self, reference: &str) -> Result<Schedule, QueueError> {
        self.store.schedule(reference).await
    }

    pub async fn schedules(&self) -> Result<Vec<Schedule>, QueueError> {
        self.store.schedules().await
    }

    /// Adds a schedule after checking its task, input and expression.
    pub async fn add_schedule(&self, new: NewSchedule) -> Result<Schedule, ServiceError> {
        let added = scheduler::add_schedule(&self.store, &self.registry(), new, now_ms()).await?;
        self.schedules_changed.notify_one();
        Ok(added)
    }

    /// Changes a schedule: `change` edits a copy, then it is checked as when adding.
    pub async fn update_schedule(
        &self,
        reference: &str,
        change: impl FnOnce(&mut NewSchedule),
    ) -> Result<Schedule, ServiceError> {
        let updated =
            scheduler::update_schedule(&self.store, &self.registry(), reference, change, now_ms()).await?;
        self.schedules_changed.notify_one();
        Ok(updated)
    }

    /// Pauses or resumes a schedule (resumed from its next fire time).
    pub async fn set_schedule_enabled(
        &self,
        reference: &str,
        enabled: bool,
    ) -> Result<Schedule, ServiceError> {
        let set = scheduler::set_enabled(&self.store, reference, enabled, now_ms()).await?;
        self.schedules_changed.notify_one();
        Ok(set)
    }

    pub async fn remove_schedule(&self, reference: &str) -> Result<Schedule, QueueError> {
        self.store.remove_schedule(reference).await
    }

    /// The nodes using this database; a silent one is `lost`.
    pub async fn nodes(&self) -> Result<Vec<Node>, QueueError> {
        self.store.nodes(now_ms(), NODE_STALE_AFTER_MS).await
    }

    /// The workers of running nodes, as last reported.
    pub async fn workers(&self) -> Result<Vec<WorkerRow>, QueueError> {
        self.store.workers().await
    }

    /// This node's worker slots.
    pub fn worker_status(&self) -> Vec<SlotStatus> {
        self.kernel.pool().status()
    }

    /// Why no worker can run, when none can.
    pub fn workers_unavailable(&self) -> Option<String> {
        self.kernel.pool().unavailable()
    }

    /// Why the database refuses writes, while it does.
    pub fn write_failure(&self) -> Option<ratchet_storage::WriteFailure> {
        self.store.write_failure()
    }

    /// The log lines of this node's runs from now on, as the tasks write them.
    pub fn follow_logs(&self) -> tokio::sync::broadcast::Receiver<LiveLine> {
        self.kernel.follow_logs()
    }

    /// How many tasks the node serves.
    pub fn task_count(&self) -> usize {
        self.registry().len()
    }
}
