//! Delivering events to sinks: each sink gets its own thread and a bounded queue, so a slow
//! or hung sink never holds up a run. Sinks fail open: an error is logged and counted, and
//! events that do not fit the queue are dropped and counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::{Event, PluginError};

/// Events waiting per sink before new ones are dropped.
pub const QUEUE: usize = 10_000;
/// Events per `write` call at most.
pub const BATCH: usize = 256;

/// A sink as the kernel drives it.
pub trait Sink: Send {
    fn name(&self) -> &str;
    fn write(&mut self, events: &[Event]) -> Result<(), PluginError>;
}

#[derive(Debug, Default)]
pub struct SinkStats {
    pub delivered: AtomicU64,
    pub failed_batches: AtomicU64,
    pub dropped: AtomicU64,
}

struct Running {
    name: String,
    queue: SyncSender<Arc<Event>>,
    stats: Arc<SinkStats>,
    thread: Option<JoinHandle<()>>,
}

/// Every enabled sink.
#[derive(Default)]
pub struct SinkSet {
    sinks: Vec<Running>,
}

impl SinkSet {
    pub fn add(&mut self, sink: Box<dyn Sink>) {
        let (queue, events) = mpsc::sync_channel(QUEUE);
        let stats = Arc::new(SinkStats::default());
        let name = sink.name().to_owned();
        let thread_stats = Arc::clone(&stats);
        let thread = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || deliver(sink, &events, &thread_stats))
            .ok();
        self.sinks.push(Running { name, queue, stats, thread });
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Hands `event` to every sink without waiting: one shared copy, queued for each sink's
    /// thread (which does any copying, off the caller's path).
    pub fn emit(&self, event: Event) {
        let event = Arc::new(event);
        for sink in &self.sinks {
            match sink.queue.try_send(Arc::clone(&event)) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    sink.stats.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Per sink: (name, delivered, failed batches, dropped).
    pub fn stats(&self) -> Vec<(String, u64, u64, u64)> {
        self.sinks
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    s.stats.delivered.load(Ordering::Relaxed),
                    s.stats.failed_batches.load(Ordering::Relaxed),
                    s.stats.dropped.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Delivers what is queued, then stops every sink thread.
    pub fn close(&mut self) {
        for sink in self.sinks.drain(..) {
            let Running { queue, thread, .. } = sink;
            drop(queue);
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for SinkSet {
    fn drop(&mut self) {
        self.close();
    }
}

/// How long a sink's thread gathers events after the first of a batch.
const GATHER: Duration = Duration::from_millis(5);

fn deliver(mut sink: Box<dyn Sink>, events: &Receiver<Arc<Event>>, stats: &SinkStats) {
    while let Ok(first) = events.recv() {
        let mut batch = vec![Arc::unwrap_or_clone(first)];
        // Whatever else arrives within a few milliseconds goes in the same call. The thread
        // sleeps rather than waits on the queue meanwhile, so an emitter never pays to wake it.
        std::thread::sleep(GATHER);
        while batch.len() < BATCH {
            match events.try_recv() {
                Ok(event) => batch.push(Arc::unwrap_or_clone(event)),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        match sink.write(&batch) {
            Ok(()) => {
                stats.delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
            Err(error) => {
                stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("sink dropped {} event(s): {error}", batch.len());
            }
        }
    }
}
