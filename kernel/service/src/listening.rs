//! Hearing what the other nodes publish on a PostgreSQL channel ([`log_relay`](crate::log_relay)'s
//! log lines, [`job_feed`](crate::job_feed)'s job changes), on a connection of its own that is
//! made again when it is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Service;

/// What a listener does with what it hears.
pub(crate) struct Hearing {
    pub channel: &'static str,
    /// What the channel carries, for the log (`job changes`).
    pub what: &'static str,
    /// Handles one notification's payload.
    pub hear: fn(&Service, &str),
    /// Called when the connection was lost (notifications may have been missed).
    pub lost: fn(&Service),
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
    let Hearing { channel, what, hear, lost } = hearing;
    while !*stop.borrow() {
        let mut listener = match service.store.listen(channel).await {
            Ok(Some(listener)) => {
                service.set_hearing(channel, true);
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
                Ok(payload) => hear(&service, &payload),
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
