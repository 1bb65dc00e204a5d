//! Group commit of a node's queue writes: the ends of the jobs its consumers ran and its
//! claims of more, in one transaction.
//!
//! Committed one by one, each end (the attempt's end and its execution) and each claim paid its
//! own `BEGIN`, pause read, claim and `COMMIT`, one after another on SQLite (one writer): the
//! queue, not the workers, set the pace. Here the steps waiting when the writer becomes free
//! are committed together: one fenced `UPDATE` per ended job, one insert for all their
//! failed attempts and one for all their executions, then one claim of as many jobs as the
//! steps ask for ([`Claim::up_to`]). A lone step is committed alone, and under load a batch
//! holds every end sent meanwhile (a consumer sends its end with [`ConsumerCommit::send`] and
//! runs its next job while the end commits). A batch of several ends waits up to 15
//! milliseconds for more steps ([`Gather`]): nobody waits for an end's commit, and fuller
//! batches cost the database less per job. A claim waits with them only as long as its node's
//! claimed jobs keep its workers busy ([`Claim::may_wait`]): an idle node's claim, or one for
//! consumers that ran out of jobs, never waits.
//!
//! The guarantees are the single path's. Each end is fenced by its attempt: a fenced end
//! changes nothing about its job (its execution is still recorded) and its step claims
//! nothing. A claim takes at most what its step asks for, each job leased and fenced like any
//! claim; how many a node asks for is bounded by its intake (`ratchet-service`'s `intake`),
//! and other nodes claim the rest. When the batch's transaction fails (another node's claim took a concurrency
//! slot, a PostgreSQL deadlock with a lease rescue, a bad record) every step is committed again
//! on its own, so that one step cannot fail the others. One batch commits at a time, on both
//! backends: see [`commit_batches`].

use std::collections::HashSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait, Value as SqlValue};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::notify::EndNews;
use super::queue::{Ask, ClaimCommit, Job, JobStatus, Outcome, QueueError};
use super::{ConcurrencyLimits, ExecutionRecord, Store};

/// Most steps one transaction commits.
const MAX_BATCH: usize = 64;

/// How long a batch of ends waits for more before it commits, and how many it waits for.
///
/// Only a batch of at least two steps waits, each an end or a claim that may wait
/// ([`Claim::may_wait`], and never past its allowance): a claim an idle node or starved
/// consumers need commits at once, and so does a lone end (a node that runs few jobs, a serial
/// task). Nobody waits for an end's commit (consumers run their next job meanwhile): the wait
/// costs an end's job only the time until its status shows.
/// Measured (10,000-job drains over REST, one release build with the window switched by a
/// temporary setting, interleaved): three PostgreSQL nodes committed 9.0-9.4 consumer steps per
/// commit with 6 ms against 4.4-4.6 without, PostgreSQL's CPU per job 0.30-0.31 ms against
/// 0.37-0.47, 1,690-1,791 jobs/s against 1,260-1,633; one node 2,151-2,329 against
/// 2,056-2,180 (PostgreSQL) and 2,481-2,830 against 2,326-2,617 (SQLite), each with fewer
/// commits and less CPU per job. The window was then raised from 6 ms to 15 (same method, 3
/// interleaved rounds each, 2026-12-03): three PostgreSQL nodes committed 11-16 steps per
/// commit against 8-12 and drained faster in 5 pairs of 6 (1,755-2,833 jobs/s against
/// 1,687-2,519), one SQLite node in 3 of 3 (3,751-3,861 against 3,560-3,651); one PostgreSQL
/// node, whose batches already held about 21 steps, was unchanged within noise. 25 ms was no
/// faster than 15. Claims that may wait joined the gathering later (same method, 4 rounds
/// each, 2026-12-03): three PostgreSQL nodes 21.6-24.6 steps per commit against 13.3-15.2,
/// PostgreSQL's CPU per job 0.12-0.16 ms against 0.15-0.21, faster in 4 of 4 (2,826-3,702
/// jobs/s against 2,475-3,351); one node 28-29 steps against 20-21, PostgreSQL 0.11-0.14 ms
/// against 0.13-0.16, the drain within noise; no later start (add-to-start p99 4 ms).
#[derive(Debug, Clone, Copy)]
pub struct Gather {
    /// The longest a batch of ends waits, from when the commit task took it up.
    pub window: Duration,
    /// A batch this large commits without waiting further.
    pub fill: usize,
}

impl Gather {
    pub const DEFAULT: Gather = Gather { window: Duration::from_millis(15), fill: 32 };
}

/// What a consumer asks of the queue: to end the job it ran, to claim its next job, or both.
#[derive(Debug, Clone)]
pub struct Step {
    pub end: Option<Ending>,
    pub claim: Option<Claim>,
    /// The time of the step (milliseconds since the epoch): the end's, and the claim's.
    pub now: i64,
}

/// The end of a running attempt, fenced by `attempt`.
#[derive(Debug, Clone)]
pub struct Ending {
    pub job: String,
    pub attempt: u32,
    pub outcome: Ended,
    /// The run's record, stored whether or not the attempt still owns the job.
    pub execution: Option<ExecutionRecord>,
}

/// How an attempt ended (the owned [`Outcome`]).
#[derive(Debug, Clone)]
pub enum Ended {
    Completed(Value),
    Failed(String),
}

impl Ended {
    fn outcome(&self) -> Outcome<'_> {
        match self {
            Ended::Completed(output) => Outcome::Completed(output),
            Ended::Failed(error) => Outcome::Failed(error),
        }
    }
}

/// A claim of up to `up_to` jobs for `owner`, each leased for `lease`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub owner: String,
    pub lease: Duration,
    pub up_to: usize,
    /// The claiming node runs and holds no job: its claim is the whole path from a job's due
    /// time to its start. On PostgreSQL such a claim, when committed on its own, does not wait
    /// for its WAL flush (see `queue::LAZY_COMMIT`).
    pub idle: bool,
    /// How long the claim may wait in a gathering batch for more steps (at most the
    /// [`Gather`] window, from when the commit task takes it up): zero when the node needs the
    /// jobs now, else a part of the time its claimed jobs keep its workers busy. Left out of
    /// the gathering, a busy node's claims cut its batches short: three PostgreSQL nodes
    /// committed 13-15 steps per commit (single-worker nodes 8-9) against one node's 21.
    pub may_wait: Duration,
}

/// What a step did: the ended job's new status (when it ended one) and the jobs it claimed,
/// most urgent first. A fenced end is [`QueueError::Fenced`], and claims nothing.
pub type Stepped = Result<(Option<JobStatus>, Vec<Job>), QueueError>;

/// The handle consumers share. Its task ends once the last handle is dropped and every step
/// sent before that is committed.
#[derive(Clone)]
pub struct ConsumerCommit {
    queue: mpsc::UnboundedSender<Pending>,
}

/// Hears the number of steps of each committed batch (for the node's metrics).
pub type BatchObserver = Box<dyn Fn(usize) + Send + Sync>;

struct Pending {
    step: Step,
    done: oneshot::Sender<Stepped>,
}

impl ConsumerCommit {
    /// Starts the task that commits steps on `store`, on the current Tokio runtime; `observe`
    /// hears the size of each batch once it is committed.
    pub fn start(store: Store, observe: Option<BatchObserver>) -> ConsumerCommit {
        ConsumerCommit::gathering(store, Gather::DEFAULT, observe)
    }

    /// [`ConsumerCommit::start`], with batches of ends gathered as `gather` says.
    pub fn gathering(store: Store, gather: Gather, observe: Option<BatchObserver>) -> ConsumerCommit {
        let (queue, pending) = mpsc::unbounded_channel();
        tokio::spawn(commit_batches(store, pending, gather, observe));
        ConsumerCommit { queue }
    }

    /// Commits `step` in the next batch, and returns what it did once that batch is committed.
    pub async fn step(&self, step: Step) -> Stepped {
        self.send(step).await
    }

    /// Queues `step` for the next batch at once; the future answers what it did once that
    /// batch is committed. A consumer that need not wait (the end of a job it ran) goes on
    /// with its next job meanwhile.
    pub fn send(&self, step: Step) -> impl std::future::Future<Output = Stepped> + Send + 'static {
        let (done, result) = oneshot::channel();
        let sent = self.queue.send(Pending { step, done }).map_err(|_| stopped());
        async move {
            sent?;
            result.await.map_err(|_| stopped())?
        }
    }
}

fn stopped() -> QueueError {
    QueueError::Db(sea_orm::DbErr::Custom(
        "the queue's writer has stopped; the process is shutting down".into(),
    ))
}

/// Commits the waiting steps as one batch, then the steps sent meanwhile as the next, until
/// every handle is dropped. One batch at a time, on PostgreSQL too: two at once (each on its own
/// pooled connection, so that one commit's WAL flush overlapped the other's statements) halved
/// the batches of a CPU-bound node (4.4 steps per commit instead of 9.5 in a 10,000-job drain,
/// 2 cores) and so doubled the statements per job, which cost more than the overlap saved:
/// 10,000-job drain, 8 interleaved pairs, median 1,324 -> 1,421 jobs/s with one node and
/// 1,165 -> 1,297 with three (6 pairs, all faster), less CPU per job in 12 of the 14.
async fn commit_batches(
    store: Store,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    gather: Gather,
    observe: Option<BatchObserver>,
) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        gather_steps(&mut queue, &mut batch, gather).await;
        commit_batch(&store, batch, observe.as_deref()).await;
    }
}

/// Adds to `batch` the steps that arrive within `gather`'s window while every step in it may
/// wait, it holds at least two, and fewer than its fill (see [`Gather`]); a claim shortens the
/// wait to its own allowance, and one that may not wait ends it.
async fn gather_steps(
    queue: &mut mpsc::UnboundedReceiver<Pending>,
    batch: &mut Vec<Pending>,
    gather: Gather,
) {
    if batch.len() < 2 {
        return;
    }
    let started = tokio::time::Instant::now();
    let mut until = started + gather.window;
    for pending in batch.iter() {
        match patience(&pending.step, gather) {
            Some(wait) => until = until.min(started + wait),
            None => return,
        }
    }
    while batch.len() < gather.fill.min(MAX_BATCH) {
        match tokio::time::timeout_at(until, queue.recv()).await {
            Ok(Some(pending)) => {
                let wait = patience(&pending.step, gather);
                batch.push(pending);
                match wait {
                    Some(wait) => until = until.min(tokio::time::Instant::now() + wait),
                    None => return,
                }
            }
            // The window passed, or every handle is gone: commit what is here.
            Ok(None) | Err(_) => return,
        }
    }
}

/// How long `step` may wait in a gathering batch: an end, the window; a claim, its allowance
/// within the window; `None` when it may not wait.
fn patience(step: &Step, gather: Gather) -> Option<Duration> {
    match (&step.end, &step.claim) {
        (_, Some(claim)) => Some(claim.may_wait.min(gather.window)).filter(|wait| !wait.is_zero()),
        (Some(_), None) => Some(gather.window),
        (None, None) => None,
    }
}

async fn commit_batch(store: &Store, batch: Vec<Pending>, observe: Option<&(dyn Fn(usize) + Send + Sync)>) {
    // Taken apart, not cloned: a step carries its run's whole record (logs, HTTP exchanges).
    let (steps, done): (Vec<Step>, Vec<_>) =
        batch.into_iter().map(|pending| (pending.step, pending.done)).unzip();
    let results = match steps.len() {
        1 => vec![store.step(&steps[0]).await],
        _ => match store.steps_together(&steps).await {
            Ok(results) => results,
            Err(error) => {
                tracing::debug!(
                    "a batch of {} queue steps failed ({error}); committing them one by one",
                    steps.len()
                );
                let mut results = Vec::with_capacity(steps.len());
                for step in &steps {
                    results.push(store.step(step).await);
                }
                results
            }
        },
    };
    if let Some(observe) = observe {
        observe(steps.len());
    }
    for (done, result) in done.into_iter().zip(results) {
        let _ = done.send(result);
    }
}

/// What a batch did with a step's end.
enum EndDone<'a> {
    /// The step ended no job.
    NoEnd,
    /// The attempt owned its job, which now has this status.
    Owned(JobStatus),
    /// The attempt no longer owned its job: nothing changed.
    Fenced(&'a Ending),
}

impl Store {
    /// Commits one step on its own: [`Store::finish_then_claim`], or [`Store::claim_up_to`].
    pub async fn step(&self, step: &Step) -> Stepped {
        let claim = step.claim.as_ref().map(|claim| (claim.owner.as_str(), claim.lease, claim.up_to));
        match &step.end {
            Some(end) => {
                let outcome = end.outcome.outcome();
                let (status, next) = self
                    .finish_then_claim(
                        &end.job,
                        end.attempt,
                        outcome,
                        end.execution.as_ref(),
                        claim,
                        step.now,
                    )
                    .await?;
                Ok((Some(status), next))
            }
            None => match &step.claim {
                Some(claim) => {
                    let commit = if claim.idle { ClaimCommit::Lazy } else { ClaimCommit::Durable };
                    let ask = Ask {
                        commit,
                        owner: &claim.owner,
                        lease: claim.lease,
                        now: step.now,
                        n: claim.up_to,
                    };
                    Ok((None, self.claim_committed(ask).await?))
                }
                None => Ok((None, Vec::new())),
            },
        }
    }

    /// Commits `steps` in one transaction, and returns what each did, in order. An error means
    /// nothing was committed.
    pub async fn steps_together(&self, steps: &[Step]) -> Result<Vec<Stepped>, QueueError> {
        let transaction = self.writer().begin().await?;
        // Per step: `None` when it ends nothing, else the ended job's status (`None`: fenced).
        let mut ended: Vec<EndDone<'_>> = Vec::with_capacity(steps.len());
        let mut failures = Vec::new();
        let mut executions = Vec::new();
        let completed: Vec<(&Ending, &Value, i64)> = steps
            .iter()
            .filter_map(|step| match step.end.as_ref() {
                Some(end @ Ending { outcome: Ended::Completed(output), .. }) => Some((end, output, step.now)),
                _ => None,
            })
            .collect();
        let limits = self.concurrency_limits();
        let mut news = EndNews::default();
        let completed = self.complete_together(&transaction, &completed, &limits, &mut news).await?;
        for step in steps {
            let Some(end) = &step.end else {
                ended.push(EndDone::NoEnd);
                continue;
            };
            let (status, owned) = match &end.outcome {
                Ended::Completed(_) => {
                    (JobStatus::Completed, completed.contains(&(end.job.as_str(), end.attempt)))
                }
                Ended::Failed(_) => {
                    let outcome = end.outcome.outcome();
                    let statement = self.end_statement(&end.job, end.attempt, outcome, step.now).await?;
                    let row =
                        transaction.query_one_raw(self.statement(statement.sql, statement.values)).await?;
                    if let Some(row) = &row {
                        news.ended(&limits, &row.try_get::<String>("", "task")?, statement.retry_at);
                    }
                    (statement.status, row.is_some())
                }
            };
            // A completed attempt is read from its job's row (see `Store::attempts`).
            if let (true, Ended::Failed(error)) = (owned, &end.outcome) {
                failures.push((end, error.as_str(), step.now));
            }
            executions.extend(end.execution.as_ref());
            ended.push(if owned { EndDone::Owned(status) } else { EndDone::Fenced(end) });
        }
        self.insert_failures(&transaction, &failures).await?;
        self.insert_executions(&transaction, &executions).await?;
        let (next, none_left) = self.claim_for(&transaction, steps, &ended).await?;
        self.tell_nodes_at_commit(&transaction, &news, none_left).await?;
        transaction.commit().await?;

        let mut results = Vec::with_capacity(steps.len());
        for (ended, next) in ended.into_iter().zip(next) {
            results.push(match ended {
                EndDone::NoEnd => Ok((None, next)),
                EndDone::Owned(status) => Ok((Some(status), next)),
                EndDone::Fenced(end) => Err(self.fenced(&end.job, end.attempt).await),
            });
        }
        Ok(results)
    }

    /// Claims the jobs of every step that asks for some and whose end (if any) was not
    /// fenced, with one claim per owner and lease; the most urgent jobs to the first step.
    /// Also says whether a claim took fewer jobs than it asked for: then no job was left
    /// claimable.
    async fn claim_for(
        &self,
        connection: &impl ConnectionTrait,
        steps: &[Step],
        ended: &[EndDone<'_>],
    ) -> Result<(Vec<Vec<Job>>, bool), QueueError> {
        let mut next: Vec<Vec<Job>> = vec![Vec::new(); steps.len()];
        let mut wanting: Vec<(usize, &Claim)> = steps
            .iter()
            .zip(ended)
            .enumerate()
            .filter(|(_, (_, ended))| !matches!(ended, EndDone::Fenced(_)))
            .filter_map(|(index, (step, _))| step.claim.as_ref().map(|claim| (index, claim)))
            .collect();
        let now = steps.iter().map(|step| step.now).max().unwrap_or_default();
        let mut none_left = false;
        while let Some(&(_, first)) = wanting.first() {
            let (same, others): (Vec<_>, Vec<_>) = wanting
                .into_iter()
                .partition(|(_, claim)| claim.owner == first.owner && claim.lease == first.lease);
            let wanted = same.iter().map(|(_, claim)| claim.up_to).sum();
            // A batch of several steps is a busy node's: its claims wait for the flush.
            let ask =
                Ask { commit: ClaimCommit::Durable, owner: &first.owner, lease: first.lease, now, n: wanted };
            let jobs = self.claim_up_to_on(connection, ask).await?;
            none_left |= jobs.len() < wanted;
            let mut jobs = jobs.into_iter();
            for (index, claim) in same {
                next[index].extend(jobs.by_ref().take(claim.up_to));
            }
            wanting = others;
        }
        Ok((next, none_left))
    }

    /// Completes the jobs of `ends` (each with its output, at its time) in one statement per
    /// [`MAX_BATCH`], each fenced by its attempt; returns the ends that owned their job (the
    /// others changed nothing), and adds them to `news`.
    async fn complete_together<'a>(
        &self,
        connection: &impl ConnectionTrait,
        ends: &[(&'a Ending, &Value, i64)],
        limits: &ConcurrencyLimits,
        news: &mut EndNews,
    ) -> Result<HashSet<(&'a str, u32)>, QueueError> {
        let mut owned = HashSet::with_capacity(ends.len());
        for chunk in ends.chunks(MAX_BATCH) {
            let mut values: Vec<SqlValue> = Vec::with_capacity(chunk.len().next_power_of_two() * 4);
            for (end, output, now) in chunk {
                values.extend([
                    end.job.clone().into(),
                    i64::from(end.attempt).into(),
                    output.to_string().into(),
                    (*now).into(),
                ]);
            }
            // A padding row's NULL id matches no job.
            let rows = super::padded_rows("(?, ?, ?, ?)", &mut values);
            let sql = format!(
                "WITH ended (job_id, job_attempt, job_output, ended_at) AS (VALUES {rows}) \
                 UPDATE jobs SET status = 'completed', output = ended.job_output, lease_owner = NULL, \
                 lease_expires_at = NULL, updated_at = ended.ended_at FROM ended \
                 WHERE jobs.id = ended.job_id AND jobs.attempt = ended.job_attempt AND jobs.status = 'running' \
                 RETURNING id, attempt, task"
            );
            for row in connection.query_all_raw(self.statement(&sql, values)).await? {
                let (id, attempt) = (row.try_get::<String>("", "id")?, super::row::int(&row, "attempt")?);
                news.ended(limits, &row.try_get::<String>("", "task")?, None);
                // The end's own strings, so the answer borrows from the steps.
                if let Some((end, _, _)) =
                    chunk.iter().find(|(end, _, _)| end.job == id && i64::from(end.attempt) == attempt)
                {
                    owned.insert((end.job.as_str(), end.attempt));
                }
            }
        }
        Ok(owned)
    }

    /// Records the failed ends of `failures` (each with its error, at its time) in one
    /// statement. A completed attempt needs no row: its job's row says how it ended.
    async fn insert_failures(
        &self,
        connection: &impl ConnectionTrait,
        failures: &[(&Ending, &str, i64)],
    ) -> Result<(), QueueError> {
        if failures.is_empty() {
            return Ok(());
        }
        let rows = vec!["(?, ?, 'failed', ?, ?)"; failures.len()].join(", ");
        let sql =
            format!("INSERT INTO job_attempts (job_id, attempt, outcome, error, finished_at) VALUES {rows}");
        let mut values: Vec<SqlValue> = Vec::with_capacity(failures.len() * 4);
        for (end, error, now) in failures {
            values.extend([
                end.job.clone().into(),
                i64::from(end.attempt).into(),
                (*error).into(),
                (*now).into(),
            ]);
        }
        connection.execute_raw(self.statement(&sql, values)).await?;
        Ok(())
    }
}
