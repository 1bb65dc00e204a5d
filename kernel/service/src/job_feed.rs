//! Job changes as they happen, for whoever follows them (`/api/v1/events`, which the dashboard
//! reads to redraw a page when a job it shows moves on). A node announces what it does to jobs:
//! enqueues, starts, ends, cancels, and the jobs its scheduler fires. On PostgreSQL each node
//! also publishes its changes on the [`CHANNEL`] channel, at most one notification every
//! [`BATCH`], and passes on what the other nodes publish; a batch too large for one
//! notification goes out as a count ([`FeedItem::Missed`]) and followers read the database
//! again. The database stays the truth: the feed says when to look, not what is there. Across
//! nodes a job's changes may arrive out of order (a job enqueued on B and run at once on A is
//! heard running and completed on A before B's batch with its enqueue arrives). Jobs a node
//! rescues from an expired lease are not announced (a follower sees them at its next read).
//!
//! The database speaks on the channel too: each statement that adds jobs or lifts a pause
//! (triggers, see `ratchet-storage`'s migrations) and each transaction that gives a job back
//! or rescues expired leases sends [`ratchet_storage::WAKE_PAYLOAD`] (so do ends that make a job
//! claimable: a retry, with its due time; a freed concurrency slot), and a node that hears it
//! (or lost its connection, and with it what was said meanwhile) wakes its idle claimer.
//! The wake-up for jobs added carries the earliest due time among them: when that is ahead, a
//! node sets its claimer's alarm for it instead (`due_alarm`). A schedule added, changed,
//! paused or resumed (trigger) sends [`ratchet_storage::SCHEDULES_PAYLOAD`], which wakes each
//! node's scheduler.
//! Jobs enqueued or given back by the CLI or another node, and a resume, reach an idle node at
//! once instead of at its next poll (`queue.poll_interval_ms`).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::Service;
use crate::listening::{Hearing, start_listening};
use ratchet_storage::{JobStatus, MAX_NOTIFY_PAYLOAD};

/// The PostgreSQL channel the changes travel on.
pub const CHANNEL: &str = ratchet_storage::JOBS_CHANNEL;
/// How long a node gathers changes before it publishes them.
const BATCH: Duration = Duration::from_millis(50);
/// Changes a slow follower may fall behind by before it is told it missed some.
pub const FEED_BUFFER: usize = 4_096;

/// A job's new state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobChange {
    pub job: String,
    pub task: String,
    pub status: JobStatus,
    /// The attempt it is on (0 before its first start).
    pub attempt: u32,
}

impl JobChange {
    /// Whether the change is of job `job` (any when `None`) and of a job of `task` (any when
    /// `None`): a follower's filter.
    pub fn concerns(&self, job: Option<&str>, task: Option<&str>) -> bool {
        job.is_none_or(|job| job == self.job) && task.is_none_or(|task| task == self.task)
    }
}

/// What followers of the feed receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedItem {
    Changed(Arc<JobChange>),
    /// This many changes were not sent one by one (another node's that did not fit its
    /// notification, or any made while the connection to the others was lost): read the
    /// database again.
    Missed(u64),
}

/// What one notification carries: the node's changes, or how many there were when they did
/// not fit.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    node: String,
    #[serde(default)]
    changes: Vec<JobChange>,
    #[serde(default)]
    missed: u64,
    /// Jobs may have become claimable: sent by the database ([`ratchet_storage::WAKE_PAYLOAD`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    wake: bool,
    /// With `wake`, for jobs added: the earliest time one of them is due (milliseconds since
    /// the epoch). A node sets its alarm for a time ahead instead of claiming now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    due: Option<i64>,
    /// A schedule was added, changed, paused or resumed: sent by the database
    /// ([`ratchet_storage::SCHEDULES_PAYLOAD`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    schedules: bool,
}

/// The broadcasts behind the feed: everything followers see, and this node's own changes (which
/// it publishes to the others).
pub(crate) struct Feed {
    all: broadcast::Sender<FeedItem>,
    own: broadcast::Sender<Arc<JobChange>>,
}

impl Default for Feed {
    fn default() -> Feed {
        Feed { all: broadcast::channel(FEED_BUFFER).0, own: broadcast::channel(FEED_BUFFER).0 }
    }
}

impl Service {
    /// Job changes from now on: this node's, and on PostgreSQL the other nodes'.
    pub fn follow_jobs(&self) -> broadcast::Receiver<FeedItem> {
        self.feed.all.subscribe()
    }

    /// Whether anyone hears job changes: a follower, or on PostgreSQL the other nodes.
    pub(crate) fn announces_jobs(&self) -> bool {
        self.feed.all.receiver_count() > 0 || self.feed.own.receiver_count() > 0
    }

    /// Announces that job `job` of `task` is now `status` on `attempt`; costs nothing when no
    /// one hears ([`Service::announces_jobs`]).
    pub(crate) fn job_changed(&self, job: &str, task: &str, status: JobStatus, attempt: u32) {
        let (all, own) = (self.feed.all.receiver_count(), self.feed.own.receiver_count());
        if all == 0 && own == 0 {
            return;
        }
        let change = Arc::new(JobChange { job: job.to_owned(), task: task.to_owned(), status, attempt });
        if own > 0 {
            let _ = self.feed.own.send(Arc::clone(&change));
        }
        let _ = self.feed.all.send(FeedItem::Changed(change));
    }
}

/// Starts publishing this node's changes and hearing the other nodes' (PostgreSQL only); both
/// stop with `stop`.
pub fn start(service: &Arc<Service>, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    if !service.store.is_shared() {
        return Vec::new();
    }
    let own = service.feed.own.subscribe();
    let hearing = Hearing {
        channel: CHANNEL,
        what: "job changes",
        hear,
        // Changes may have been missed meanwhile.
        lost: |service| {
            let _ = service.feed.all.send(FeedItem::Missed(1));
        },
        // Wake-ups may have been missed before: the claimer and the scheduler look once, and
        // from now on each hears what it is told.
        listening: |service| {
            service.wake.notify_one();
            service.schedules_changed.notify_one();
        },
    };
    vec![
        tokio::spawn(publish(Arc::clone(service), own, stop.clone())),
        start_listening(service, hearing, stop),
    ]
}

async fn publish(
    service: Arc<Service>,
    mut own: broadcast::Receiver<Arc<JobChange>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let mut changes = Vec::new();
        let mut missed = 0;
        tokio::select! {
            change = own.recv() => match change {
                Ok(change) => changes.push(change),
                Err(RecvError::Lagged(n)) => missed += n,
                Err(RecvError::Closed) => return,
            },
            _ = stop.changed() => return,
        }
        let gathered = tokio::time::sleep(BATCH);
        tokio::pin!(gathered);
        loop {
            tokio::select! {
                change = own.recv() => match change {
                    Ok(change) => changes.push(change),
                    Err(RecvError::Lagged(n)) => missed += n,
                    Err(RecvError::Closed) => break,
                },
                () = &mut gathered => break,
            }
        }
        let payload = payload(&service.node, &changes, missed);
        if let Err(error) = service.store.notify(CHANNEL, &payload).await {
            tracing::debug!("cannot publish job changes to the other nodes: {error}");
        }
    }
}

/// One notification of `changes` (and `missed` more), within [`MAX_NOTIFY_PAYLOAD`]: the
/// changes themselves when they fit, otherwise only how many there were.
fn payload(node: &str, changes: &[Arc<JobChange>], missed: u64) -> String {
    let batch = Batch {
        node: node.to_owned(),
        changes: changes.iter().map(|c| (**c).clone()).collect(),
        missed,
        wake: false,
        due: None,
        schedules: false,
    };
    match serde_json::to_string(&batch) {
        Ok(json) if json.len() <= MAX_NOTIFY_PAYLOAD => json,
        _ => {
            let count = Batch { missed: missed + changes.len() as u64, changes: Vec::new(), ..batch };
            serde_json::to_string(&count).unwrap_or_default()
        }
    }
}

/// Hands another node's batch to this node's followers, and wakes the idle claimer when the
/// database says jobs may be claimable (at their due time when that is ahead).
fn hear(service: &Service, payload: &str) {
    match serde_json::from_str::<Batch>(payload) {
        // Jobs this node added: it woke its own claimer as it added them.
        Ok(Batch { wake: true, node, .. }) if node == service.node => {}
        Ok(Batch { wake: true, due, .. }) => service.wake_for(due),
        Ok(Batch { schedules: true, .. }) => service.schedules_changed.notify_one(),
        Ok(batch) if batch.node != service.node => {
            for change in batch.changes {
                let _ = service.feed.all.send(FeedItem::Changed(Arc::new(change)));
            }
            if batch.missed > 0 {
                let _ = service.feed.all.send(FeedItem::Missed(batch.missed));
            }
        }
        Ok(_) => {}
        Err(error) => tracing::debug!("ignored a malformed {CHANNEL} notification: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: usize) -> Arc<JobChange> {
        Arc::new(JobChange {
            job: format!("job-{n:030}"),
            task: "a-task-with-a-long-name".repeat(3),
            status: JobStatus::Running,
            attempt: 1,
        })
    }

    #[test]
    fn changes_that_fit_one_notification_travel_whole_and_more_travel_as_a_count() {
        let few: Vec<_> = (0..5).map(change).collect();
        let batch: Batch = serde_json::from_str(&payload("node-a", &few, 0)).unwrap();
        assert_eq!((batch.node.as_str(), batch.changes.len(), batch.missed), ("node-a", 5, 0));
        assert_eq!(batch.changes[4], *few[4]);

        let many: Vec<_> = (0..1_000).map(change).collect();
        let json = payload("node-a", &many, 3);
        assert!(json.len() <= MAX_NOTIFY_PAYLOAD, "{} bytes", json.len());
        let batch: Batch = serde_json::from_str(&json).unwrap();
        assert_eq!((batch.changes.len(), batch.missed), (0, 1_003));
        assert!(!json.contains("wake"), "{json}");
    }

    #[test]
    fn the_databases_wake_up_reads_as_a_wake_up_with_no_changes() {
        let batch: Batch = serde_json::from_str(ratchet_storage::WAKE_PAYLOAD).unwrap();
        assert!(batch.wake);
        assert_eq!((batch.node.as_str(), batch.changes.len(), batch.missed, batch.due), ("", 0, 0, None));
        let for_jobs: Batch = serde_json::from_str(r#"{"node":"","wake":true,"due":1800000000000}"#).unwrap();
        assert_eq!((for_jobs.wake, for_jobs.due), (true, Some(1_800_000_000_000)));
        let schedules: Batch = serde_json::from_str(ratchet_storage::SCHEDULES_PAYLOAD).unwrap();
        assert_eq!((schedules.wake, schedules.schedules, schedules.node.as_str()), (false, true, ""));
    }
}
