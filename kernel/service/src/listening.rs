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

/// Listens until `stop`; nothing on SQLite.
pub(crate) async fn listen(service: Arc<Service>, hearing: Hearing, mut stop: watch::Receiver<bool>) {
    let Hearing { channel, what, hear, lost } = hearing;
    while !*stop.borrow() {
        let mut listener = match service.store.listen(channel).await {
            Ok(Some(listener)) => listener,
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
                    lost(&service);
                    break;
                }
            }
        }
    }
}
