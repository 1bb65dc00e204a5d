//! Consumers: claim a job, run it on the worker pool with its lease renewed, record the
//! execution and report the outcome under the attempt's fencing token; what this node holds in
//! flight, and giving it back at the end of a drain.

use super::*;
use crate::runs::{Run, record};
use ratchet_core::trace::TraceContext;
use ratchet_storage::{Claim, ConsumerCommit, Ended, Ending, Step};
use tokio_util::sync::CancellationToken;

impl Service {
    /// Takes claimed jobs from the intake and runs them, one at a time, until `stop`; then
    /// waits until the ends it sent are committed.
    pub(crate) async fn consume(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        while !*stop.borrow() {
            let job = tokio::select! {
                job = self.intake.take() => job,
                _ = stop.changed() => break,
            };
            self.process(job).await;
        }
        self.ends_settled().await;
    }

    /// Claims jobs into the intake, as many as it has room for ([`Intake::wanted`]), until
    /// `stop`; then gives back the jobs that did not start. A claim that finds fewer jobs than
    /// it asked for, or none, is the last until the claimer is woken (or its poll is due).
    ///
    /// [`Intake::wanted`]: crate::intake::Intake::wanted
    pub(crate) async fn claim_jobs(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.queue.poll_interval_ms.max(1));
        // Well within a lease, so that a job given back was never rescued meanwhile.
        let stale = crate::intake::STALE_AFTER.min(self.lease() / 4);
        while !*stop.borrow() {
            self.give_back_stale(stale).await;
            let wanted = self.intake.wanted();
            if wanted == 0 {
                tokio::select! {
                    () = self.intake.room() => {}
                    () = tokio::time::sleep(stale / 2) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let claimed_at = std::time::Instant::now();
            let step = Step { end: None, claim: Some(self.claim(wanted)), now: now_ms() };
            match self.consumer_commit().step(step).await {
                Ok((_, jobs)) if !jobs.is_empty() => {
                    // Fewer than it asked for: no other job was claimable, and a claim now
                    // would find none (jobs that become claimable from now on wake it).
                    let all_there_was = jobs.len() < wanted;
                    self.intake.add(jobs, claimed_at);
                    if all_there_was {
                        self.sleep_while_idle(poll, &mut stop).await;
                    }
                }
                Ok(_) => self.sleep_while_idle(poll, &mut stop).await,
                Err(error) => {
                    // The database may be down for a while (J9): keep trying, slowly.
                    tracing::warn!("cannot claim jobs: {error}");
                    tokio::select! {
                        () = tokio::time::sleep(poll.max(Duration::from_secs(1))) => {}
                        _ = stop.changed() => {}
                    }
                }
            }
        }
        // Claimed as the stop came: back to the queue, their attempts not used up.
        for job in self.intake.drain() {
            if let Err(error) = self.store.release(&job.id, job.attempt, now_ms()).await {
                tracing::warn!(job = %job.id, "cannot release a job claimed while stopping: {error}");
            }
        }
    }

    /// Gives back to the queue the jobs that waited over `limit` for a worker here (runs take
    /// longer than recent ones did), so that any node may run them.
    async fn give_back_stale(&self, limit: Duration) {
        let stale = self.intake.take_stale(std::time::Instant::now(), limit);
        if stale.is_empty() {
            return;
        }
        tracing::info!(
            "giving back {} job(s) claimed ahead that waited over {limit:?} for a worker (runs now take longer)",
            stale.len()
        );
        for job in stale {
            let why = "given back: it waited too long for a worker on a node that had claimed it ahead";
            if let Err(error) = self.store.release_because(&job.id, job.attempt, why, now_ms()).await {
                tracing::warn!(job = %job.id, "cannot give back a job claimed ahead: {error}");
            }
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

    /// A claim of up to `up_to` jobs. It may wait to ride in a fuller group commit for half
    /// the time the jobs already claimed keep the workers busy (the other half is left for the
    /// commit itself), so the workers do not run dry waiting for it.
    fn claim(&self, up_to: usize) -> Claim {
        Claim {
            owner: self.node.clone(),
            lease: self.lease(),
            up_to,
            idle: self.intake.holds_nothing(),
            may_wait: self.intake.lasts() / 2,
        }
    }

    /// Wakes the idle claimer for jobs that became claimable: at once when they are due by
    /// `due` (milliseconds since the epoch) or `due` is not known, else at `due`
    /// ([`due_alarm`](crate::due_alarm)).
    pub(crate) fn wake_for(&self, due: Option<i64>) {
        match due {
            Some(due) if due > now_ms() => self.due_alarm.set(due),
            _ => self.wake.notify_one(),
        }
    }

    /// Sleeps after a claim found nothing: until the earliest time a waiting job becomes due
    /// (a delayed job, a retry's backoff), at most `poll`. Jobs added meanwhile wake it sooner
    /// (this node's at once; on PostgreSQL anyone's, and a resume, by the database's
    /// notification: see `job_feed`; on SQLite another process's by its doorbell: see
    /// `doorbell`), or, when they are due ahead, move its alarm earlier.
    async fn sleep_while_idle(&self, poll: Duration, stop: &mut watch::Receiver<bool>) {
        // Longer while the database's wake-ups are heard (PostgreSQL).
        let poll = self.idle_poll(poll);
        // The database's answer covers what was heard before it.
        let _ = self.due_alarm.take();
        let next_due = self.store.next_due(now_ms()).await.ok().flatten();
        let mut until = tokio::time::Instant::now() + next_due.map_or(poll, |due| wait_until(due).min(poll));
        loop {
            tokio::select! {
                () = self.wake.notified() => return,
                () = self.due_alarm.moved_earlier() => {
                    if let Some(due) = self.due_alarm.take() {
                        until = until.min(tokio::time::Instant::now() + wait_until(due).min(poll));
                    }
                }
                () = tokio::time::sleep_until(until) => return,
                _ = stop.changed() => return,
            }
        }
    }

    /// Runs one job taken from the intake, under its fencing token; its end is sent to the
    /// group commit, not waited for.
    async fn process(self: &Arc<Self>, job: Job) {
        let started = std::time::Instant::now();
        let task = match self.task_for(&job).await {
            Ok(task) => task,
            Err(message) => {
                self.intake.ran(started.elapsed());
                self.report_unknown_task(&job, message).await;
                return;
            }
        };
        let execution_id = ratchet_storage::new_id();
        // A job enqueued before trace ids existed gets one per attempt.
        let trace = job.trace_id.as_deref().and_then(TraceContext::resume).unwrap_or_else(TraceContext::root);
        // At WARN, so the warnings a node logs by default carry the run's trace.
        let span = tracing::warn_span!(
            "run", trace_id = %trace.trace_id(), job = %job.id, attempt = job.attempt, execution = %execution_id
        );
        let run = self.run_job(job, task, execution_id, trace, started);
        tracing::Instrument::instrument(run, span).await
    }

    /// Runs the claimed `job` (taken at `taken`) as execution `execution_id` on `trace`, and
    /// sends its record and end to the group commit; what the commit did is reported when it
    /// is done, while this consumer runs its next job.
    async fn run_job(
        self: &Arc<Self>,
        job: Job,
        task: Arc<ratchet_core::Task>,
        execution_id: String,
        trace: TraceContext,
        taken: std::time::Instant,
    ) {
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
        heartbeat.abort();
        self.intake.ran(taken.elapsed());
        let classification = self.classify(&job.task, &execution).await;
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
        let reported = self.consumer_commit().send(Step { end: Some(end), claim: None, now: now_ms() });
        let service = Arc::clone(self);
        self.ends.spawn(async move {
            let reported = reported.await;
            service.track(&job, None);
            match reported {
                Ok((Some(status), _)) => {
                    service.job_changed(&job.id, &job.task, status, job.attempt);
                    log_report(&job, Ok(status));
                }
                Ok((None, _)) => {}
                Err(error) => log_report(&job, Err(error)),
            }
        });
    }

    /// Waits until every end this node's consumers sent is committed (or refused). The node
    /// is stopping: ends sent after this still count, and are waited for too.
    async fn ends_settled(&self) {
        self.ends.close();
        self.ends.wait().await;
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

/// The time from now until `due` (milliseconds since the epoch), to the microsecond (a wait
/// from a whole-millisecond now would end up to a millisecond late); none when it is past.
fn wait_until(due: i64) -> Duration {
    let due = Duration::from_millis(due.max(0) as u64);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    due.saturating_sub(now)
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
