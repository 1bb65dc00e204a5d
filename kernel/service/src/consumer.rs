//! Consumers: claim a job, run it on the worker pool with its lease renewed, record the
//! execution and report the outcome under the attempt's fencing token; what this node holds in
//! flight, and giving it back at the end of a drain.

use super::*;
use crate::runs::{Run, record};
use ratchet_core::trace::TraceContext;
use ratchet_storage::{Claim, ConsumerCommit, Ended, Ending, Step};
use tokio_util::sync::CancellationToken;

impl Service {
    pub(crate) async fn consume(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.queue.poll_interval_ms.max(1));
        // The job claimed together with the end of the previous one.
        let mut next: Option<Job> = None;
        while !*stop.borrow() {
            let claimed = match next.take() {
                Some(job) => Ok(Some(job)),
                None => {
                    let step = Step { end: None, claim: Some(self.claim()), now: now_ms() };
                    self.consumer_commit().step(step).await.map(|(_, job)| job)
                }
            };
            match claimed {
                Ok(Some(job)) => next = self.process_then_claim(job, true).await,
                Ok(None) => {
                    let idle = self.idle_wait(poll).await;
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(idle) => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(error) => {
                    // The database may be down for a while (J9): keep trying, slowly.
                    tracing::warn!("cannot claim jobs: {error}");
                    tokio::time::sleep(poll.max(Duration::from_secs(1))).await;
                }
            }
        }
        // Claimed as the stop came: back to the queue, its attempt not used up.
        if let Some(job) = next
            && let Err(error) = self.store.release(&job.id, job.attempt, now_ms()).await
        {
            tracing::warn!(job = %job.id, "cannot release a job claimed while stopping: {error}");
        }
    }

    /// The writer that commits this node's consumers' steps together.
    fn consumer_commit(&self) -> &ConsumerCommit {
        self.consumer_commit.get_or_init(|| {
            let metrics = Arc::clone(&self.metrics);
            let observe = Box::new(move |steps: usize| metrics.queue_commit(steps));
            ConsumerCommit::start(self.store.clone(), Some(observe))
        })
    }

    fn claim(&self) -> Claim {
        Claim { owner: self.node.clone(), lease: self.lease() }
    }

    /// How long an idle consumer sleeps: until the earliest time a waiting job becomes due (a
    /// delayed job, a retry's backoff), at most `poll`; jobs enqueued meanwhile wake it sooner
    /// (this node's at once, other nodes' by notification or at the poll).
    async fn idle_wait(&self, poll: Duration) -> Duration {
        match self.store.next_due(now_ms()).await {
            Ok(Some(due)) => Duration::from_millis(due.saturating_sub(now_ms()).max(0) as u64).min(poll),
            Ok(None) | Err(_) => poll,
        }
    }

    /// Runs one claimed job to its end, under its fencing token.
    pub async fn process(&self, job: Job) {
        self.process_then_claim(job, false).await;
    }

    /// `process`, then (when `claim_next`) the next job, claimed in the transaction that
    /// records this one's end.
    async fn process_then_claim(&self, job: Job, claim_next: bool) -> Option<Job> {
        let task = match self.task_for(&job).await {
            Ok(task) => task,
            Err(message) => {
                self.report_unknown_task(&job, message).await;
                return None;
            }
        };
        let execution_id = ratchet_storage::new_id();
        // A job enqueued before trace ids existed gets one per attempt.
        let trace = job.trace_id.as_deref().and_then(TraceContext::resume).unwrap_or_else(TraceContext::root);
        // At WARN, so the warnings a node logs by default carry the run's trace.
        let span = tracing::warn_span!(
            "run", trace_id = %trace.trace_id(), job = %job.id, attempt = job.attempt, execution = %execution_id
        );
        let run = self.run_job(job, task, execution_id, trace, claim_next);
        tracing::Instrument::instrument(run, span).await
    }

    /// Runs the claimed `job` as execution `execution_id` on `trace`, records it, and reports
    /// its end (claiming the next job in the same transaction when `claim_next`).
    async fn run_job(
        &self,
        job: Job,
        task: Arc<ratchet_core::Task>,
        execution_id: String,
        trace: TraceContext,
        claim_next: bool,
    ) -> Option<Job> {
        let trace_id = trace.trace_id().to_owned();
        self.track(&job, Some(&execution_id));
        self.job_changed(&job.id, &job.task, JobStatus::Running, job.attempt);
        // A cancelled (or rescued) job's attempt is stopped at its next heartbeat.
        let lost = tokio_util::sync::CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            self.store.clone(),
            job.clone(),
            self.node.clone(),
            self.lease(),
            lost.clone(),
        ));
        let started = now_ms();
        self.emit(|| {
            Event::new(
                "execution.started",
                Some(&job.task),
                None,
                json!({"job": job.id, "attempt": job.attempt}),
            )
            .traced(&trace_id)
        });
        let http = self.kernel.live_http(&task);
        let identity = RunIdentity {
            execution_id,
            attempt: job.attempt,
            timeout: job.timeout,
            input_checked: false,
            cancel: Some(lost),
            trace: Some(trace),
            secrets: self.secrets_for(&task).await,
        };
        let execution = self.kernel.run_as(identity, &task, job.input.clone(), http).await;
        let classification = self.classify(&job.task, &execution).await;
        heartbeat.abort();
        self.metrics.run(&job.task, execution.outcome.is_ok(), execution.duration);
        self.emit_outcome(&job.task, Some(&job), &trace_id, &execution, &classification);
        let run = Run {
            job_id: Some(&job.id),
            attempt: job.attempt,
            task: &job.task,
            input: &job.input,
            trace_id: &trace_id,
        };
        let mut record = record(run, &execution, &classification, started, &self.node);
        self.note_failure(&mut record, &task);
        let outcome = match execution.outcome {
            Ok(output) => Ended::Completed(output),
            Err(error) => Ended::Failed(error.to_string()),
        };
        let end = Ending { job: job.id.clone(), attempt: job.attempt, outcome, execution: Some(record) };
        let step = Step { end: Some(end), claim: claim_next.then(|| self.claim()), now: now_ms() };
        let reported = self.consumer_commit().step(step).await;
        self.track(&job, None);
        match reported {
            Ok((status, next)) => {
                if let Some(status) = status {
                    self.job_changed(&job.id, &job.task, status, job.attempt);
                    log_report(&job, Ok(status));
                }
                next
            }
            Err(error) => {
                log_report(&job, Err(error));
                None
            }
        }
    }

    pub(crate) async fn report_unknown_task(&self, job: &Job, message: String) {
        let reported = self.store.fail(&job.id, job.attempt, &message, now_ms()).await;
        if let Ok(status) = &reported {
            self.job_changed(&job.id, &job.task, *status, job.attempt);
        }
        log_report(job, reported);
    }

    /// Records (`Some(execution id)`) or forgets (`None`) a job this node runs.
    pub(crate) fn track(&self, job: &Job, execution: Option<&str>) {
        if let Ok(mut in_flight) = self.in_flight.lock() {
            match execution {
                Some(id) => in_flight.insert(job.id.clone(), (job.attempt, id.to_owned())),
                None => in_flight.remove(&job.id),
            };
        }
    }

    /// Whether this node is running the execution `id` now (a job's or a synchronous run).
    pub fn is_running(&self, id: &str) -> bool {
        let sync = self.running_now.lock().is_ok_and(|running| running.contains(id));
        sync || self.job_of(id).is_some()
    }

    /// The job whose attempt this node runs as execution `id`, if any.
    pub fn job_of(&self, id: &str) -> Option<String> {
        let in_flight = self.in_flight.lock().ok()?;
        in_flight.iter().find(|(_, (_, execution))| execution == id).map(|(job, _)| job.clone())
    }

    /// The live log lines of the job attempts other nodes run, from now on (PostgreSQL; none on
    /// SQLite). A follower that falls [`log_relay::REMOTE_BUFFER`] lines behind misses some.
    pub fn follow_remote_logs(&self) -> tokio::sync::broadcast::Receiver<Arc<log_relay::RemoteLine>> {
        self.remote_logs.subscribe()
    }

    /// The execution of job `job_id` this node is running now, if any.
    pub fn running_execution(&self, job_id: &str) -> Option<String> {
        self.in_flight.lock().ok()?.get(job_id).map(|(_, execution)| execution.clone())
    }

    /// Gives every job still running on this node back to the queue (end of a drain).
    pub async fn release_in_flight(&self) -> usize {
        let jobs: Vec<(String, u32)> = self
            .in_flight
            .lock()
            .map(|j| j.iter().map(|(id, (attempt, _))| (id.clone(), *attempt)).collect())
            .unwrap_or_default();
        let mut released = 0;
        for (id, attempt) in jobs {
            if self.store.release(&id, attempt, now_ms()).await.is_ok() {
                released += 1;
            }
        }
        released
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|j| j.len()).unwrap_or(0)
    }
}

fn log_report(job: &Job, reported: Result<JobStatus, QueueError>) {
    match reported {
        Ok(status) => {
            tracing::info!(job = %job.id, attempt = job.attempt, task = %job.task, "job {status}")
        }
        Err(QueueError::Fenced { .. }) => {
            tracing::info!(job = %job.id, attempt = job.attempt, "result discarded: the attempt no longer owns the job")
        }
        Err(error) => tracing::error!(job = %job.id, "cannot record the job's result: {error}"),
    }
}

/// Renews the lease every third of its length until aborted or refused; a refusal (the job
/// was cancelled, or rescued by another node) cancels `lost`, which stops the run.
async fn heartbeat(store: Store, job: Job, node: String, lease: Duration, lost: CancellationToken) {
    loop {
        tokio::time::sleep(lease / 3).await;
        let now = now_ms();
        let until = now + lease.as_millis() as i64;
        match store.heartbeat(&job.id, job.attempt, &node, until, now).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(job = %job.id, "the job was cancelled or rescued; stopping this attempt, whose result will be discarded");
                lost.cancel();
                return;
            }
            Err(error) => tracing::warn!(job = %job.id, "heartbeat failed: {error}"),
        }
    }
}
