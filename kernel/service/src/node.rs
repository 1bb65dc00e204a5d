//! The node's own life: registering in the database, its background loops (scheduler,
//! heartbeat, retention, the rescue of expired leases) and how it reports its workers.

use super::*;

/// When a node counted the other nodes on its SQLite file (for its log).
#[derive(Clone, Copy)]
enum Counted {
    AtHeartbeat,
    OnAnotherRing,
}

impl Service {
    /// Records this node and the versions of the tasks it loaded.
    pub async fn register(&self) -> Result<(), QueueError> {
        let registered = self.write_registration().await;
        self.store.note_write(&registered);
        if registered.is_ok() {
            self.registered.store(true, std::sync::atomic::Ordering::Relaxed);
            // The nodes already running on this SQLite file hear it, count their peers and ring
            // for this one from now on.
            self.store.announce_on_doorbell();
        }
        registered
    }

    async fn write_registration(&self) -> Result<(), QueueError> {
        let now = now_ms();
        self.store.register_node(&self.node, &hostname(), std::process::id(), now).await?;
        let registry = self.registry();
        let versions: Vec<_> =
            registry.entries().map(|e| (task_version(&e.task), e.source.clone())).collect();
        self.store.record_task_versions(&versions, now).await?;
        for entry in registry.entries() {
            let task = &entry.task;
            self.emit(|| {
                Event::new(
                    "task.loaded",
                    Some(task.name()),
                    None,
                    json!({"version": task.metadata.version, "digest": task.digest}),
                )
            });
        }
        self.store.node_heartbeat(&self.node, &self.worker_rows(), now).await
    }

    /// Writes this node's heartbeat now (or its registration, until that succeeded).
    pub async fn beat(&self) -> Result<(), QueueError> {
        if !self.registered.load(std::sync::atomic::Ordering::Relaxed) {
            return self.register().await;
        }
        self.store.node_heartbeat(&self.node, &self.worker_rows(), now_ms()).await
    }

    /// While writes fail, whether they work again: the heartbeat (or registration), then a
    /// write the size of a large run record (`ratchet_storage::PROBE_BYTES`); at most once per
    /// [`WRITE_PROBE_INTERVAL`], so that polling readiness on a full disk costs little. The
    /// outcome shows in [`Service::write_failure`].
    pub async fn probe_writes(&self) {
        let now = now_ms();
        let probed_at = self.write_probed_at.load(std::sync::atomic::Ordering::Relaxed);
        if now.saturating_sub(probed_at) < WRITE_PROBE_INTERVAL.as_millis() as i64 {
            return;
        }
        self.write_probed_at.store(now, std::sync::atomic::Ordering::Relaxed);
        if self.beat().await.is_ok() {
            let _ = self.store.probe_writes(&self.node).await;
        }
    }

    /// Marks this node stopped (end of a drain).
    pub async fn deregister(&self) {
        if let Err(error) = self.store.stop_node(&self.node, now_ms()).await {
            tracing::warn!("cannot mark node {} stopped: {error}", self.node);
        }
    }

    /// Starts the consumers and the background loops (lease rescue, scheduler, node
    /// heartbeat, retention); they stop when `stop` turns true, consumers after finishing the
    /// job they hold.
    pub fn start(self: &Arc<Self>, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<JoinHandle<()>> =
            (0..self.concurrency()).map(|_| tokio::spawn(Arc::clone(self).consume(stop.clone()))).collect();
        tasks.push(tokio::spawn(Arc::clone(self).claim_jobs(stop.clone())));
        tasks.push(tokio::spawn(Arc::clone(self).rescue(stop.clone())));
        tasks.push(tokio::spawn(Arc::clone(self).fire_schedules(stop.clone())));
        tasks.push(tokio::spawn(Arc::clone(self).heartbeat_node(stop.clone())));
        tasks.extend(log_relay::start(self, stop.clone()));
        tasks.extend(job_feed::start(self, stop.clone()));
        tasks.extend(doorbell::start(self, stop.clone()));
        tasks.push(tokio::spawn(Arc::clone(self).retain(stop)));
        tasks
    }

    /// Fires due schedules, waking at the earliest next fire time, and when a schedule is
    /// added or changed: here, or by another process (PostgreSQL's notification, SQLite's
    /// doorbell). At least every `queue.poll_interval_ms` (and at most once a second; every
    /// 5 s while it hears the database's wake-ups, see [`Service::idle_poll`]) it looks again
    /// anyway, for what those missed.
    async fn fire_schedules(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let poll = Duration::from_millis(self.queue.poll_interval_ms.max(1_000));
        while !*stop.borrow() {
            let fallback = i64::try_from(self.idle_poll(poll).as_millis()).unwrap_or(i64::MAX);
            let ticked = scheduler::tick(&self.store, &self.queue, now_ms()).await;
            let failed = ticked.is_err();
            match ticked {
                Ok(report) => {
                    if !report.enqueued.is_empty() {
                        self.wake.notify_one();
                    }
                    for fired in &report.enqueued {
                        tracing::info!(schedule = %fired.schedule, fire_time = fired.at, job = %fired.job, "schedule fired");
                        self.job_changed(&fired.job, &fired.task, JobStatus::Queued, 0);
                    }
                }
                Err(error) => tracing::warn!("the scheduler cannot reach the database: {error}"),
            }
            let wait = match self.store.earliest_fire_time().await {
                Ok(Some(next)) if !failed => (next - now_ms()).clamp(0, fallback),
                Ok(None) if !failed => fallback,
                // The database may be down for a while (J9), and will not say when it is back:
                // look again within a second.
                Ok(Some(next)) => (next - now_ms()).clamp(0, 1_000),
                _ => 1_000,
            };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait as u64)) => {}
                () = self.schedules_changed.notified() => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn heartbeat_node(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        self.count_queue().await;
        self.ring_for_other_nodes(Counted::AtHeartbeat).await;
        let mut next_beat = tokio::time::Instant::now() + NODE_HEARTBEAT;
        while !*stop.borrow() {
            tokio::select! {
                () = tokio::time::sleep_until(next_beat) => {}
                () = self.peers_changed.notified() => {
                    self.ring_for_other_nodes(Counted::OnAnotherRing).await;
                    continue;
                }
                _ = stop.changed() => return,
            }
            next_beat = tokio::time::Instant::now() + NODE_HEARTBEAT;
            if let Err(error) = self.beat().await {
                tracing::warn!("node heartbeat failed: {error}");
            }
            self.count_queue().await;
            self.ring_for_other_nodes(Counted::AtHeartbeat).await;
        }
    }

    /// On an SQLite file, rings the doorbell after this node's enqueues (and the other
    /// commits that make jobs claimable) while other nodes run on the same file, so that they
    /// need not wait for their poll; a lone node does not, as it wakes its own claimer
    /// in-process. Other nodes are counted at each heartbeat ([`NODE_HEARTBEAT`]) and when
    /// another process rings while this node does not: a node that starts rings once
    /// ([`Store::announce_on_doorbell`]), so it is rung for as soon as the others hear it.
    async fn ring_for_other_nodes(&self, counted: Counted) {
        let Some(bell) = self.store.doorbell() else { return };
        match self.store.other_running_nodes(&self.node, now_ms(), NODE_STALE_AFTER_MS).await {
            Ok(others) => {
                let rings = others > 0;
                if self.store.set_doorbell_ringing(rings) == rings {
                    return;
                }
                let (found, doing) = if rings {
                    ("other nodes run on this database", "ringing")
                } else {
                    ("no other node runs on this database", "not ringing")
                };
                let when = match counted {
                    Counted::AtHeartbeat => "at this node's heartbeat",
                    Counted::OnAnotherRing => "when another process rang",
                };
                tracing::info!("{found} (counted {when}): {doing} the doorbell {}", bell.display());
            }
            Err(error) => tracing::debug!("cannot count the other nodes on this database: {error}"),
        }
    }

    /// Counts the jobs waiting and running, per status, for [`Service::system_state`] and
    /// readiness. Not the finished ones: counting those scans the whole history, on every
    /// node at every heartbeat.
    pub(crate) async fn count_queue(&self) {
        if let Ok(counts) = self.store.live_job_counts().await {
            let counts: serde_json::Map<String, Value> =
                counts.into_iter().map(|(status, n)| (status.as_str().to_owned(), Value::from(n))).collect();
            if let Ok(mut seen) = self.queue_seen.lock() {
                *seen = Some((now_ms(), Value::Object(counts)));
            }
        }
    }

    /// This node as a failed run leaves it, for the run's record (`error.system`) and its
    /// report: its workers, the jobs and runs it holds, its memory, and the queue as its last
    /// heartbeat counted it.
    pub(crate) fn system_state(&self) -> Value {
        let workers: Vec<Value> = self
            .kernel
            .pool()
            .status()
            .iter()
            .map(|slot| json!({"state": slot.state.as_str(), "runs": slot.runs, "restarts": slot.restarts}))
            .collect();
        let (queue_at, queue) = match self.queue_seen.lock().ok().and_then(|seen| seen.clone()) {
            Some((at, counts)) => (Some(ratchet_core::time::format(at)), counts),
            None => (None, Value::Null),
        };
        json!({
            "at": ratchet_core::time::format(now_ms()),
            "node": self.node,
            "workers": workers,
            "jobs_in_flight": self.in_flight(),
            "runs_in_flight": self.running_now.lock().map_or(0, |running| running.len()),
            "rss_kib": resident_kib(),
            "queue": queue,
            "queue_counted_at": queue_at,
        })
    }

    async fn retain(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let retention = self.kernel.config().retention.clone();
        if retention.max_age_days <= 0.0 {
            return;
        }
        let max_age = Duration::from_secs_f64(retention.max_age_days * 86_400.0);
        while !*stop.borrow() {
            match self.store.prune(now_ms() - max_age.as_millis() as i64).await {
                Ok(pruned) if pruned.executions + pruned.jobs > 0 => tracing::info!(
                    executions = pruned.executions,
                    jobs = pruned.jobs,
                    "pruned history older than {} day(s)",
                    retention.max_age_days
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!("cannot prune old history: {error}"),
            }
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs_f64(retention.interval_secs)) => {}
                _ = stop.changed() => {}
            }
        }
    }

    fn worker_rows(&self) -> Vec<WorkerRow> {
        let now = now_ms();
        self.kernel
            .pool()
            .status()
            .into_iter()
            .enumerate()
            .map(|(slot, status)| WorkerRow {
                id: format!("{}/{slot}", self.node),
                node: self.node.clone(),
                pid: status.pid,
                state: status.state,
                runs: status.runs,
                last_error: status.last_error,
                updated_at: now,
            })
            .collect()
    }

    async fn rescue(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let every = self.lease() / 2;
        while !*stop.borrow() {
            match self.store.rescue_expired(now_ms()).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!("rescued {n} job(s) whose lease expired"),
                Err(error) => tracing::warn!("cannot rescue expired leases: {error}"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => {}
            }
        }
    }
}

pub(crate) fn task_version(task: &ratchet_core::Task) -> TaskVersion {
    TaskVersion {
        task: task.name().to_owned(),
        uuid: task.metadata.uuid.clone(),
        digest: task.digest.clone(),
        version: task.metadata.version.clone(),
        origin: task.origin.display().to_string(),
        metadata: task.metadata_document.clone(),
        input_schema: task.input_schema.document.clone(),
        output_schema: task.output_schema.document.clone(),
        code: task.code.to_string(),
    }
}

/// This process's node name (`HOST-PID`): its leases' owner, and what it writes to the
/// database says so (see `StoreOptions::node`).
pub fn node_name() -> String {
    format!("{}-{}", hostname(), std::process::id())
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "node".into())
}

/// This process's resident memory (Linux; `None` elsewhere).
fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
