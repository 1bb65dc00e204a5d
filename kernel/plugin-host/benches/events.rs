//! Event creation: what a run pays to tell the sinks about itself. Each sample builds an
//! `execution.failed` event as the service does (kind, task, execution id, a data object with
//! the job, attempt, duration, error and trace id) and hands it to a sink set of two sinks
//! (each queue a bounded channel drained by its own thread). Run through `cargo xtask bench`;
//! the argument is the number of events (default 100,000).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ratchet_plugin_host::{Event, PluginError, Sink, SinkSet};
use serde_json::json;

/// Counts what it is given.
struct Counting(Arc<AtomicU64>);

impl Sink for Counting {
    fn name(&self) -> &str {
        "counting"
    }

    fn write(&mut self, events: &[Event]) -> Result<(), PluginError> {
        self.0.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(())
    }
}

/// Events emitted before the bench waits for the sinks to catch up (below the queue size, so
/// nothing is dropped and every sample pays for a delivered event).
const ROUND: usize = 1_000;

fn main() {
    let events: usize = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let delivered = Arc::new(AtomicU64::new(0));
    let mut sinks = SinkSet::default();
    sinks.add(Box::new(Counting(Arc::clone(&delivered))));
    sinks.add(Box::new(Counting(Arc::clone(&delivered))));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut times: Vec<Duration> = Vec::with_capacity(events);
    let mut created: Vec<Duration> = Vec::with_capacity(events);
    for round in 0..events.div_ceil(ROUND) {
        for n in 0..ROUND.min(events - round * ROUND) {
            let started = Instant::now();
            let event = Event::new(
                "execution.failed",
                Some("fetch-weather"),
                Some("0193a1b2-7c4d-7e8f-9a0b-1c2d3e4f5a6b"),
                json!({
                    "job": "0193a1b2-7c4d-7e8f-9a0b-000000000001",
                    "attempt": n % 3 + 1,
                    "duration_ms": 12.5,
                    "error": {"kind": "task_error", "message": "TypeError: cannot read property 'x' of undefined"},
                }),
            )
            .traced(trace);
            created.push(started.elapsed());
            sinks.emit(event);
            times.push(started.elapsed());
        }
        let expected = 2 * times.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
    let dropped: u64 = sinks.stats().iter().map(|(_, _, _, dropped)| dropped).sum();
    times.sort();
    created.sort();
    let at = |times: &[Duration], q: f64| {
        times[((times.len() as f64 * q) as usize).min(times.len() - 1)].as_secs_f64() * 1e6
    };
    println!(
        "events: creation, {events} events: p50 {:.2} µs, p95 {:.2} µs, p99 {:.2} µs",
        at(&created, 0.50),
        at(&created, 0.95),
        at(&created, 0.99),
    );
    println!(
        "events: creation + hand-off to 2 sinks: p50 {:.2} µs, p95 {:.2} µs, p99 {:.2} µs ({} delivered, {dropped} dropped)",
        at(&times, 0.50),
        at(&times, 0.95),
        at(&times, 0.99),
        delivered.load(Ordering::Relaxed)
    );
    sinks.close();
}
