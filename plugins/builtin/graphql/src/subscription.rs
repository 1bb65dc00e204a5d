//! The subscriptions over WebSocket: a job's status, an execution's log, a job's log on
//! whichever node runs it.

use super::*;

/// How often subscriptions look for changes in the database (which any node may make).
const POLL: Duration = Duration::from_millis(100);

pub struct Subscription;

#[Subscription]
impl Subscription {
    /// The job each time its status or attempt changes, from its current state; ends when it
    /// reaches a final state.
    async fn job_status(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<impl Stream<Item = JobView>> {
        let state = std::sync::Arc::clone(state(ctx)?);
        state.service.job(&id).await.map_err(gql)?;
        Ok(stream::unfold(
            (state, id, None::<(JobStatus, u32)>, false),
            |(state, id, last, ended)| async move {
                if ended {
                    return None;
                }
                loop {
                    let job = state.service.job(&id).await.ok()?;
                    let seen = (job.status, job.attempt);
                    if last != Some(seen) {
                        let ended = job.status.is_final();
                        return Some((JobView::from(&job), (state, id, Some(seen), ended)));
                    }
                    tokio::time::sleep(POLL).await;
                }
            },
        ))
    }

    /// Jobs as they change state (enqueued, started, ended, cancelled) on this node and, on
    /// PostgreSQL, on the others: one job's, one task's, or all. The database stays the truth: a
    /// job rescued from a lost node's lease is not announced. Never ends by itself.
    async fn job_changes(
        &self,
        ctx: &Context<'_>,
        job_id: Option<String>,
        task: Option<String>,
    ) -> async_graphql::Result<impl Stream<Item = GqlJobChange>> {
        use ratchet_service::job_feed::FeedItem;
        use tokio::sync::broadcast::error::RecvError;
        let feed = state(ctx)?.service.follow_jobs();
        let wanted = move |change: &ratchet_service::job_feed::JobChange| {
            change.concerns(job_id.as_deref(), task.as_deref())
        };
        Ok(stream::unfold((feed, wanted), |(mut feed, wanted)| async move {
            loop {
                let item = match feed.recv().await {
                    Ok(FeedItem::Changed(change)) if wanted(&change) => GqlJobChange::changed(&change),
                    Ok(FeedItem::Changed(_)) => continue,
                    Ok(FeedItem::Missed(missed)) | Err(RecvError::Lagged(missed)) => {
                        GqlJobChange::missing(missed)
                    }
                    Err(RecvError::Closed) => return None,
                };
                return Some((item, (feed, wanted)));
            }
        }))
    }

    /// The log lines of an execution: live as the task writes them when this node runs it,
    /// then any line missed from its record; ends when the execution is recorded. Lines carry
    /// their `index` in the run's log (a follower that joined late gets the early lines last).
    async fn execution_logs(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<impl Stream<Item = GqlLogLine>> {
        let state = std::sync::Arc::clone(state(ctx)?);
        let live = state.service.follow_logs();
        let recorded = state.service.execution(&id).await.is_ok();
        if !recorded && !state.service.is_running(&id) {
            return Err(async_graphql::Error::new(format!(
                "no execution {id}: it is neither recorded nor running on this node"
            )));
        }
        Ok(spawn_stream(move |lines| async move {
            follow_execution(&state, &id, &lines, live).await;
        }))
    }

    /// The log lines of every attempt of a job: live for an attempt this node runs and, on
    /// PostgreSQL, for one another node runs; from the record for the others (and for any line
    /// the relay between nodes missed); ends when the job reaches a final state.
    async fn job_logs(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<impl Stream<Item = GqlLogLine>> {
        let state = std::sync::Arc::clone(state(ctx)?);
        state.service.job(&id).await.map_err(gql)?;
        let mut remote = state.service.follow_remote_logs();
        Ok(spawn_stream(move |lines| async move {
            // Executions whose lines were all sent (followed live here, or from the record).
            let mut done: HashSet<String> = HashSet::new();
            // Lines other nodes relayed and that were sent, by execution.
            let mut relayed: HashMap<String, HashSet<usize>> = HashMap::new();
            loop {
                let live = state.service.follow_logs();
                let Ok(job) = state.service.job(&id).await else { return };
                if let Some(execution) = state.service.running_execution(&id)
                    && done.insert(execution.clone())
                {
                    if !follow_execution(&state, &execution, &lines, live).await {
                        return;
                    }
                    continue;
                }
                let filter = ExecutionFilter { job_id: Some(id.clone()), ..Default::default() };
                let page = Page { limit: 100, offset: 0, sort: "started_at", descending: false };
                let Ok(executions) = state.service.executions(&filter, page).await else { return };
                for execution in &executions.items {
                    if !done.insert(execution.id.clone()) {
                        continue;
                    }
                    let sent = relayed.remove(&execution.id).unwrap_or_default();
                    for line in log_lines(execution).into_iter().filter(|l| !sent.contains(&l.index)) {
                        if lines.send(line).await.is_err() {
                            return;
                        }
                    }
                }
                if job.status.is_final() {
                    return;
                }
                let relaying = Relaying { job: &id, done: &done, relayed: &mut relayed, lines: &lines };
                if !relaying.forward(&mut remote, POLL).await {
                    return;
                }
            }
        }))
    }
}

/// Forwards the lines other nodes relay for one job's attempts.
struct Relaying<'a> {
    job: &'a str,
    /// Executions whose lines were all sent: their relayed lines are late.
    done: &'a HashSet<String>,
    relayed: &'a mut HashMap<String, HashSet<usize>>,
    lines: &'a tokio::sync::mpsc::Sender<GqlLogLine>,
}

impl Relaying<'_> {
    /// Sends the job's relayed lines heard during `wait`, each once. False when the subscriber
    /// went away.
    async fn forward(
        self,
        remote: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<RemoteLine>>,
        wait: Duration,
    ) -> bool {
        use tokio::sync::broadcast::error::RecvError;
        let waited = tokio::time::sleep(wait);
        tokio::pin!(waited);
        loop {
            tokio::select! {
                line = remote.recv() => match line {
                    Ok(line) if line.job == self.job && !self.done.contains(&line.execution) => {
                        if !self.relayed.entry(line.execution.clone()).or_default().insert(line.index) {
                            continue;
                        }
                        let line = GqlLogLine {
                            execution_id: line.execution.clone(),
                            index: line.index,
                            attempt: None,
                            level: line.level.as_str().to_owned(),
                            message: line.message.clone(),
                        };
                        if self.lines.send(line).await.is_err() {
                            return false;
                        }
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => {
                        waited.as_mut().await;
                        return true;
                    }
                },
                () = &mut waited => return true,
            }
        }
    }
}

/// A stream fed by `produce`, which runs on a task of its own until it returns or the
/// subscriber goes away (its sends then fail).
fn spawn_stream<T, F, Fut>(produce: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (sender, receiver) = tokio::sync::mpsc::channel(256);
    tokio::spawn(produce(sender));
    stream::unfold(receiver, |mut receiver| async move { receiver.recv().await.map(|item| (item, receiver)) })
}

/// Sends the lines of execution `id`: live ones from `live` while it runs, then those missing
/// from its record. False when the subscriber went away.
async fn follow_execution(
    state: &AppState,
    id: &str,
    lines: &tokio::sync::mpsc::Sender<GqlLogLine>,
    mut live: tokio::sync::broadcast::Receiver<ratchet_core::supervisor::LiveLine>,
) -> bool {
    use tokio::sync::broadcast::error::RecvError;
    let mut sent = HashSet::new();
    let mut ticker = tokio::time::interval(POLL);
    let mut closed = false;
    loop {
        tokio::select! {
            line = live.recv(), if !closed => match line {
                Ok(line) if &*line.execution_id == id => {
                    sent.insert(line.index);
                    let line = GqlLogLine {
                        execution_id: id.to_owned(),
                        index: line.index,
                        attempt: None,
                        level: line.level.as_str().to_owned(),
                        message: line.message,
                    };
                    if lines.send(line).await.is_err() {
                        return false;
                    }
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => closed = true,
            },
            _ = ticker.tick() => {
                let Ok(record) = state.service.execution(id).await else { continue };
                for line in log_lines(&record).into_iter().filter(|l| !sent.contains(&l.index)) {
                    if lines.send(line).await.is_err() {
                        return false;
                    }
                }
                return true;
            }
        }
    }
}

fn log_lines(execution: &ratchet_storage::ExecutionRecord) -> Vec<GqlLogLine> {
    execution
        .logs
        .as_array()
        .map(|lines| {
            lines
                .iter()
                .enumerate()
                .map(|(index, line)| GqlLogLine {
                    execution_id: execution.id.clone(),
                    index,
                    attempt: Some(execution.attempt),
                    level: line["level"].as_str().unwrap_or("info").to_owned(),
                    message: line["message"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}
