//! Hearing what the other nodes publish on a PostgreSQL channel ([`log_relay`](crate::log_relay)'s
//! log lines, [`job_feed`](crate::job_feed)'s job changes), on a connection of its own that is
//! made again when it is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Service;

/// The longest an idle node on PostgreSQL goes without looking for jobs and schedules while it
/// hears the database's wake-ups. The database says when jobs become claimable (added, given
/// back, rescued, retried, a pause lifted, a concurrency slot freed) and when schedules change,
/// and a node that loses its connection looks again once it is back: this poll only catches
/// what no one says (a limit raised in another node's configuration). At the 200 ms default
/// poll an idle node made 5 claims and 5 reads of the next due time a second, and its
/// scheduler 2 reads; now one of each every 5 s.
pub(crate) const HEARD_POLL: Duration = Duration::from_secs(5);

/// What a listener does with what it hears.
pub(crate) struct Hearing {
    pub channel: &'static str,
    /// What the channel carries, for the log (`job changes`).
    pub what: &'static str,
    /// Handles one notification's payload.
    pub hear: fn(&Service, &str),
    /// Called when the connection was lost (notifications may have been missed), whether or
    /// not it could be made again at once.
    pub lost: fn(&Service),
    /// Called each time the channel is listened to (the first time, and after each lost
    /// connection is made again): from then on, nothing said on it is missed.
    pub listening: fn(&Service),
}

impl Service {
    /// What this node does not hear from the other nodes sharing its database (the channels
    /// not listened to yet, or lost and being made again); `None` when it hears everything, or
    /// has no one to hear (SQLite).
    pub fn not_hearing(&self) -> Option<String> {
        let hearing = self.hearing.lock().ok()?;
        let deaf: Vec<&str> =
            hearing.iter().filter(|(_, heard)| !**heard).map(|(channel, _)| *channel).collect();
        (!deaf.is_empty()).then(|| format!("not listening yet on {} (connecting)", deaf.join(", ")))
    }

    /// How long this node's idle claimer and scheduler go at most without looking at the
    /// database, given `poll` (`queue.poll_interval_ms`): [`HEARD_POLL`] (or `poll`, when
    /// longer) while it hears the database's wake-ups on PostgreSQL, else `poll`.
    pub(crate) fn idle_poll(&self, poll: Duration) -> Duration {
        let hears = self.store.is_shared()
            && self.hearing.lock().is_ok_and(|hearing| hearing.get(crate::job_feed::CHANNEL) == Some(&true));
        if hears { poll.max(HEARD_POLL) } else { poll }
    }

    fn set_hearing(&self, channel: &'static str, heard: bool) {
        if let Ok(mut hearing) = self.hearing.lock() {
            hearing.insert(channel, heard);
        }
    }
}

/// Starts listening (until `stop`) on PostgreSQL: until the channel is listened to, the node
/// says so in [`Service::not_hearing`].
pub(crate) fn start_listening(
    service: &Arc<Service>,
    hearing: Hearing,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    if service.store.is_shared() {
        service.set_hearing(hearing.channel, false);
    }
    tokio::spawn(listen(Arc::clone(service), hearing, stop))
}

/// Listens until `stop`; nothing on SQLite.
async fn listen(service: Arc<Service>, hearing: Hearing, mut stop: watch::Receiver<bool>) {
    let Hearing { channel, what, hear, lost, listening } = hearing;
    while !*stop.borrow() {
        let mut listener = match service.store.listen(channel).await {
            Ok(Some(listener)) => {
                service.set_hearing(channel, true);
                listening(&service);
                listener
            }
            Ok(None) => return,
            Err(error) => {
                tracing::warn!("cannot listen for other nodes' {what} (retrying in 1 s): {error}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                continue;
            }
        };
        loop {
            let payload = tokio::select! {
                payload = listener.next() => payload,
                _ = stop.changed() => return,
            };
            match payload {
                Ok(Some(payload)) => hear(&service, &payload),
                Ok(None) => {
                    tracing::warn!(
                        "lost the connection for other nodes' {what}; listening again on a new one \
                         (what they said meanwhile was missed, so this node looks at the database again)"
                    );
                    lost(&service);
                    listening(&service);
                }
                Err(error) => {
                    tracing::warn!("lost the connection for other nodes' {what}: {error}");
                    service.set_hearing(channel, false);
                    lost(&service);
                    break;
                }
            }
        }
    }
}
