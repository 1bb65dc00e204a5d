//! Live log lines across nodes. A job attempt's lines are live on the node that runs it (the
//! supervisor's broadcast); a `jobLogs` subscriber may be connected to another node. On
//! PostgreSQL each node therefore publishes the lines of the attempts it runs on the
//! [`CHANNEL`] channel, a batch every [`BATCH`], and hands the lines other nodes publish to its
//! own subscribers ([`Service::follow_remote_logs`]). The recorded execution stays the truth:
//! a line lost on the way (a full batch, a dropped connection, a line too long to send) reaches
//! its subscriber from the record when the attempt ends. SQLite serves one node: nothing to relay.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::Service;
use crate::listening::{Hearing, start_listening};
use ratchet_core::supervisor::LiveLine;
use ratchet_storage::MAX_NOTIFY_PAYLOAD;

/// The PostgreSQL channel the lines travel on.
pub const CHANNEL: &str = "ratchet_logs";
/// How long a node gathers lines before it publishes them.
const BATCH: Duration = Duration::from_millis(50);
/// Lines from other nodes a slow subscriber may fall behind by before it misses some.
pub const REMOTE_BUFFER: usize = 4_096;

/// A log line of a job attempt running on another node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteLine {
    pub job: String,
    pub execution: String,
    /// The line's position in the attempt's log, from 0.
    pub index: usize,
    pub level: worker_protocol::LogLevel,
    pub message: String,
    /// The task's name (absent from nodes older than trace ids).
    #[serde(default)]
    pub task: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
}

/// What one notification carries.
#[derive(Debug, Serialize, Deserialize)]
struct Batch {
    node: String,
    lines: Vec<RemoteLine>,
}

/// Starts publishing this node's job lines and hearing the other nodes' (PostgreSQL only);
/// both stop with `stop`.
pub fn start(service: &Arc<Service>, stop: watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
    if !service.store.is_shared() {
        return Vec::new();
    }
    let live = service.kernel.follow_logs();
    // A line lost with the connection reaches its subscriber from the record.
    let hearing = Hearing { channel: CHANNEL, what: "live log lines", hear, lost: |_| {}, listening: |_| {} };
    vec![
        tokio::spawn(publish(Arc::clone(service), live, stop.clone())),
        start_listening(service, hearing, stop),
    ]
}

async fn publish(
    service: Arc<Service>,
    mut live: broadcast::Receiver<LiveLine>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            line = live.recv() => line,
            _ = stop.changed() => return,
        };
        let mut lines = match first {
            Ok(line) => vec![line],
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(
                    "{missed} live log line(s) were not relayed; subscribers get them from the record"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let gathered = tokio::time::sleep(BATCH);
        tokio::pin!(gathered);
        loop {
            tokio::select! {
                line = live.recv() => match line {
                    Ok(line) => lines.push(line),
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                () = &mut gathered => break,
            }
        }
        for payload in payloads(&service.node, relayable(&service, lines)) {
            if let Err(error) = service.store.notify(CHANNEL, &payload).await {
                tracing::debug!("cannot relay live log lines: {error}");
            }
        }
    }
}

/// The lines of job attempts (a synchronous run's are followed on its own node).
fn relayable(service: &Service, lines: Vec<LiveLine>) -> Vec<RemoteLine> {
    lines
        .into_iter()
        .filter_map(|line| {
            let job = service.job_of(&line.execution_id)?;
            Some(RemoteLine {
                job,
                execution: line.execution_id.to_string(),
                index: line.index,
                level: line.level,
                message: line.message,
                task: line.label.task.to_string(),
                trace_id: line.label.trace_id.as_deref().map(str::to_owned),
            })
        })
        .collect()
}

/// `lines` as notification payloads of at most [`MAX_NOTIFY_PAYLOAD`] bytes each (a [`Batch`]
/// each); a line that cannot fit alone is left to the record.
fn payloads(node: &str, lines: Vec<RemoteLine>) -> Vec<String> {
    let head = format!(r#"{{"node":{},"lines":["#, serde_json::Value::from(node));
    let close = "]}";
    let mut payloads = Vec::new();
    let mut payload = head.clone();
    for line in lines {
        let Ok(json) = serde_json::to_string(&line) else { continue };
        if head.len() + json.len() + close.len() > MAX_NOTIFY_PAYLOAD {
            continue;
        }
        if payload.len() + 1 + json.len() + close.len() > MAX_NOTIFY_PAYLOAD {
            payloads.push(std::mem::replace(&mut payload, head.clone()) + close);
        }
        if payload.len() > head.len() {
            payload.push(',');
        }
        payload.push_str(&json);
    }
    if payload.len() > head.len() {
        payloads.push(payload + close);
    }
    payloads
}

/// Hands the lines of another node's batch to this node's subscribers.
fn hear(service: &Service, payload: &str) {
    match serde_json::from_str::<Batch>(payload) {
        Ok(batch) if batch.node != service.node => {
            for line in batch.lines {
                let _ = service.remote_logs.send(Arc::new(line));
            }
        }
        Ok(_) => {}
        Err(error) => tracing::debug!("ignored a malformed {CHANNEL} notification: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(index: usize, message: &str) -> RemoteLine {
        RemoteLine {
            job: "job-1".into(),
            execution: "execution-1".into(),
            index,
            level: worker_protocol::LogLevel::Info,
            message: message.into(),
            task: "task".into(),
            trace_id: None,
        }
    }

    #[test]
    fn a_line_from_a_node_older_than_trace_ids_is_read() {
        let old = r#"{"job":"j","execution":"e","index":0,"level":"info","message":"hi"}"#;
        let line: RemoteLine = serde_json::from_str(old).unwrap();
        assert_eq!((line.task.as_str(), line.trace_id), ("", None));
    }

    #[test]
    fn lines_are_split_into_payloads_postgres_accepts_and_none_that_fits_is_lost() {
        let message = "\"quoted\" \u{1}".repeat(200); // 2,200 bytes, 3,600 once escaped
        let lines: Vec<RemoteLine> = (0..40).map(|i| line(i, &message)).collect();
        let mut sent = lines.clone();
        sent.insert(7, line(99, &"\u{2}".repeat(2_000))); // 12,000 bytes escaped: from the record
        let sent = payloads("node-a", sent);
        assert!(sent.len() > 1, "{} payload(s)", sent.len());
        let mut relayed = Vec::new();
        for payload in &sent {
            assert!(payload.len() <= MAX_NOTIFY_PAYLOAD, "{} bytes", payload.len());
            let batch: Batch = serde_json::from_str(payload).unwrap();
            assert_eq!(batch.node, "node-a");
            relayed.extend(batch.lines);
        }
        assert_eq!(relayed, lines);
        assert!(payloads("node-a", Vec::new()).is_empty());
    }
}
