//! The jobs a node has claimed and not started yet, and how many more it may claim.
//!
//! One claimer per node takes jobs from the queue in batches (one statement for many, riding in
//! the same group commit as the consumers' ends) and puts them here; consumers take them one at
//! a time and run them. A consumer that ends a job sends its end to the group commit and takes
//! its next job at once, so a worker never waits for a commit.
//!
//! What a node holds (running here plus waiting here) is bounded: one job per consumer, plus,
//! for short jobs, what its workers start within [`HORIZON`] judged by recent run times (at
//! most [`MOST_AHEAD_PER_WORKER`] per worker). Jobs that take seconds are claimed one per
//! consumer, as before, so a node never holds more than it starts well within a lease, and
//! other nodes get the rest. Recent run times can mislead (short jobs, then long ones): a job
//! that waits here longer than it should ([`Intake::take_stale`]) goes back to the queue, for
//! any node to run, and the node stops claiming ahead until its runs are short again.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// How far ahead a node claims: the jobs its workers start within this time, at recent run
/// times.
pub const HORIZON: Duration = Duration::from_millis(100);
/// Most jobs a node claims ahead per worker, however short its jobs. The claimer has one claim
/// in flight, and on PostgreSQL a claim takes about two group commits (the one under way, then
/// its own): at 16 a 2-worker node draining sub-millisecond jobs ran out of claimed jobs about
/// 300 times a second. 32 is ~25 ms of such jobs; 64 made each claim so large that claims took
/// longer than the jobs they fed (10,000-job drain, 2,000 jobs/s against 3,000 at 32).
pub const MOST_AHEAD_PER_WORKER: usize = 32;
/// How long a claimed job may wait here for a worker before it goes back to the queue (at most
/// a quarter of the lease).
pub const STALE_AFTER: Duration = Duration::from_secs(1);

/// The waiting jobs (`J`: a [`ratchet_storage::Job`]) and the bookkeeping of how many to hold.
pub(crate) struct Intake<J> {
    state: Mutex<State<J>>,
    /// Jobs arrived.
    arrived: Notify,
    /// A run ended: there may be room to claim more.
    room: Notify,
    /// Mean run time of recent jobs, in microseconds; 0 before the first.
    mean_run_us: AtomicU64,
    consumers: usize,
    workers: usize,
}

struct State<J> {
    /// Each job with when it was claimed.
    waiting: VecDeque<(J, Instant)>,
    running: usize,
}

impl<J> Intake<J> {
    pub(crate) fn new(consumers: usize, workers: usize) -> Intake<J> {
        Intake {
            state: Mutex::new(State { waiting: VecDeque::new(), running: 0 }),
            arrived: Notify::new(),
            room: Notify::new(),
            mean_run_us: AtomicU64::new(0),
            consumers: consumers.max(1),
            workers: workers.max(1),
        }
    }

    /// Most jobs the node should hold now: one per consumer, plus what its workers start
    /// within [`HORIZON`] at recent run times.
    pub(crate) fn target(&self) -> usize {
        let mean = self.mean_run_us.load(Ordering::Relaxed);
        let ahead = match mean {
            0 => 0,
            mean => {
                let startable = self.workers as u128 * HORIZON.as_micros() / u128::from(mean);
                usize::try_from(startable).unwrap_or(usize::MAX).min(MOST_AHEAD_PER_WORKER * self.workers)
            }
        };
        self.consumers + ahead
    }

    /// How many jobs to claim now; 0 while the node holds enough. Claims wait until a quarter
    /// of the target is free (so each claims several), unless no job waits.
    pub(crate) fn wanted(&self) -> usize {
        let target = self.target();
        let Ok(state) = self.state.lock() else { return 0 };
        let free = target.saturating_sub(state.waiting.len() + state.running);
        if state.waiting.is_empty() || free >= (target / 4).max(1) { free } else { 0 }
    }

    /// Jobs claimed at `now`, most urgent first.
    pub(crate) fn add(&self, jobs: Vec<J>, now: Instant) {
        if jobs.is_empty() {
            return;
        }
        if let Ok(mut state) = self.state.lock() {
            state.waiting.extend(jobs.into_iter().map(|job| (job, now)));
        }
        self.arrived.notify_waiters();
    }

    /// The jobs that have waited longer than `limit` at `now`, taken out to go back to the
    /// queue. Runs took longer than the recent ones: the mean run time is raised to at least
    /// `limit` per worker, so the node claims nothing ahead until short runs bring it down.
    pub(crate) fn take_stale(&self, now: Instant, limit: Duration) -> Vec<J> {
        let Ok(mut state) = self.state.lock() else { return Vec::new() };
        // Claimed in order, so the oldest are first.
        let mut stale = Vec::new();
        while state
            .waiting
            .front()
            .is_some_and(|(_, claimed)| now.saturating_duration_since(*claimed) > limit)
        {
            stale.extend(state.waiting.pop_front().map(|(job, _)| job));
        }
        if !stale.is_empty() {
            let slow = u64::try_from(limit.max(HORIZON).as_micros()).unwrap_or(u64::MAX);
            let workers = self.workers as u64;
            self.mean_run_us.fetch_max(slow.saturating_mul(workers), Ordering::Relaxed);
        }
        stale
    }

    /// The next job, once there is one; counted as running until [`Intake::ran`]. Cancel-safe:
    /// a job is taken only when this returns.
    pub(crate) async fn take(&self) -> J {
        loop {
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(job) = self.pop() {
                return job;
            }
            arrived.await;
        }
    }

    fn pop(&self) -> Option<J> {
        let mut state = self.state.lock().ok()?;
        let (job, _) = state.waiting.pop_front()?;
        state.running += 1;
        Some(job)
    }

    /// A run taken with [`Intake::take`] ended after `took`.
    pub(crate) fn ran(&self, took: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.running = state.running.saturating_sub(1);
        }
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        // A moving mean of about the last eight runs.
        let _ = self.mean_run_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
            Some(if mean == 0 { took } else { (mean * 7 + took) / 8 })
        });
        self.room.notify_one();
    }

    /// Waits until a run ends.
    pub(crate) async fn room(&self) {
        self.room.notified().await;
    }

    /// Every job still waiting, taken out (the node stops: they go back to the queue).
    pub(crate) fn drain(&self) -> Vec<J> {
        self.state
            .lock()
            .map(|mut state| state.waiting.drain(..).map(|(job, _)| job).collect())
            .unwrap_or_default()
    }

    /// Whether the node neither runs nor holds a job taken from here.
    pub(crate) fn holds_nothing(&self) -> bool {
        self.state.lock().is_ok_and(|state| state.waiting.is_empty() && state.running == 0)
    }

    /// How long the jobs waiting here keep the workers busy at recent run times; zero when
    /// none waits or before the first run.
    pub(crate) fn lasts(&self) -> Duration {
        let mean = self.mean_run_us.load(Ordering::Relaxed);
        let busy_us = (self.waiting() as u64).saturating_mul(mean) / self.workers as u64;
        Duration::from_micros(busy_us)
    }

    /// Jobs waiting to start.
    pub(crate) fn waiting(&self) -> usize {
        self.state.lock().map(|state| state.waiting.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Enough runs of 300 µs that the mean is theirs.
    fn after_short_runs(intake: &Intake<u32>) {
        for _ in 0..64 {
            intake.ran(Duration::from_micros(300));
        }
    }

    #[test]
    fn a_node_claims_ahead_only_for_short_jobs_and_never_past_the_bound() {
        let intake = Intake::<u32>::new(4, 2);
        assert_eq!((intake.target(), intake.wanted()), (4, 4), "before any run: one per consumer");
        intake.ran(Duration::from_secs(5));
        assert_eq!(intake.target(), 4, "jobs of seconds: nothing ahead");
        after_short_runs(&intake);
        assert_eq!(intake.target(), 4 + 64, "short jobs: at most 32 ahead per worker");
        for _ in 0..64 {
            intake.ran(Duration::from_millis(20));
        }
        assert_eq!(intake.target(), 4 + 10, "20 ms jobs: what two workers start in 100 ms");
    }

    #[tokio::test]
    async fn claims_come_in_batches_and_what_a_node_holds_stays_within_its_target() {
        let intake = Intake::<u32>::new(4, 2);
        after_short_runs(&intake);
        assert_eq!(intake.wanted(), 68, "nothing held: claim the whole target");
        assert!(intake.holds_nothing(), "an idle node's claim may commit lazily");
        intake.add((1..=55).collect(), Instant::now());
        assert!(!intake.holds_nothing(), "jobs wait");
        assert_eq!(intake.wanted(), 0, "13 free of 68 is not worth a claim while jobs wait");
        assert_eq!(intake.lasts(), Duration::from_micros(55 * 300 / 2), "55 runs of 300 µs on two workers");
        let mut taken = Vec::new();
        for _ in 0..5 {
            taken.push(intake.take().await);
        }
        assert_eq!(taken, [1, 2, 3, 4, 5], "in the order claimed");
        assert_eq!(intake.wanted(), 0, "taking a job does not free a place: it runs");
        for _ in 0..4 {
            intake.ran(Duration::from_micros(300));
        }
        assert_eq!(intake.wanted(), 17, "four runs ended: a quarter of the target is free");
        assert_eq!(intake.drain(), (6..=55).collect::<Vec<_>>(), "stopping gives back what waits");
        assert_eq!((intake.waiting(), intake.wanted()), (0, 67), "one still runs");
        assert_eq!(intake.lasts(), Duration::ZERO, "nothing waits: a claim is needed now");
        assert!(!intake.holds_nothing(), "one still runs");
        intake.ran(Duration::from_micros(300));
        assert!(intake.holds_nothing(), "the last run ended");
    }

    #[tokio::test]
    async fn jobs_that_wait_too_long_go_back_and_the_node_stops_claiming_ahead() {
        let intake = Intake::<u32>::new(4, 2);
        after_short_runs(&intake);
        assert_eq!(intake.target(), 68, "short runs: claims ahead");
        let start = Instant::now();
        intake.add(vec![1, 2], start);
        intake.add(vec![3], start + Duration::from_millis(900));
        let limit = Duration::from_secs(1);
        assert!(intake.take_stale(start + limit, limit).is_empty(), "none has waited over the limit yet");
        assert_eq!(intake.target(), 68);
        let stale = intake.take_stale(start + Duration::from_millis(1_500), limit);
        assert_eq!((stale, intake.waiting()), (vec![1, 2], 1), "the two oldest go back; the third stays");
        assert_eq!(intake.target(), 4, "runs are long now: one job per consumer, nothing ahead");
        assert_eq!(intake.take().await, 3);
        after_short_runs(&intake);
        assert_eq!(intake.target(), 68, "short runs again: claims ahead again");
    }

    #[tokio::test]
    async fn a_consumer_waiting_for_a_job_gets_the_next_one_claimed() {
        let intake = std::sync::Arc::new(Intake::<u32>::new(1, 1));
        let waiting = tokio::spawn({
            let intake = std::sync::Arc::clone(&intake);
            async move { intake.take().await }
        });
        tokio::task::yield_now().await;
        intake.add(vec![7], Instant::now());
        let taken = tokio::time::timeout(Duration::from_secs(30), waiting).await;
        assert_eq!(taken.ok().and_then(Result::ok), Some(7));
    }
}
