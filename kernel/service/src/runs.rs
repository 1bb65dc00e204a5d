//! Synchronous runs (`run_now`), and what every run produces besides its result: the error
//! patterns' classification, the events for sinks, and the execution record.

use super::*;
use ratchet_core::trace::TraceContext;

impl Service {
    /// Runs `task` now, outside the queue (the API's synchronous run), and records it. The
    /// execution id is known at once; the record arrives on the receiver when the run ends,
    /// and the run finishes and is recorded even when nobody waits for it any more. `guard`
    /// (a concurrency permit) is held until the run is recorded. `input` has passed
    /// [`Service::check_input`] for this task: it is not checked again.
    pub fn run_now(
        self: &Arc<Self>,
        task: Arc<ratchet_core::Task>,
        input: Value,
        guard: impl Send + 'static,
    ) -> (String, tokio::sync::oneshot::Receiver<Result<ExecutionRecord, Unrecorded>>) {
        self.run_now_with(task, input, guard, RunOptions::default())
    }

    /// [`Service::run_now`] as `options` say: stopped when its `cancel` is cancelled (the run
    /// fails as `cancelled` and is recorded so), and recorded with who caused it.
    pub fn run_now_with(
        self: &Arc<Self>,
        task: Arc<ratchet_core::Task>,
        input: Value,
        guard: impl Send + 'static,
        options: RunOptions,
    ) -> (String, tokio::sync::oneshot::Receiver<Result<ExecutionRecord, Unrecorded>>) {
        let RunOptions { cancel, caused_by, trace } = options;
        let trace = trace.unwrap_or_else(TraceContext::root);
        let id = ratchet_storage::new_id();
        let (done, receiver) = tokio::sync::oneshot::channel();
        let service = Arc::clone(self);
        let execution_id = id.clone();
        if let Ok(mut running) = self.running_now.lock() {
            running.insert(id.clone());
        }
        // At WARN, so the warnings a node logs by default carry the run's trace.
        // At WARN, so the warnings a node logs by default carry the run's trace.
        let span = tracing::warn_span!("run", trace_id = %trace.trace_id(), execution = %id);
        let run = async move {
            let started = now_ms();
            let name = task.name().to_owned();
            let trace_id = trace.trace_id().to_owned();
            service.emit(|| {
                Event::new("execution.started", Some(&name), Some(&execution_id), json!({})).traced(&trace_id)
            });
            let http = service.kernel.live_http(&task);
            let secrets = service.secrets_for(&task).await;
            let execution = service
                .kernel
                .run_as(
                    RunIdentity {
                        input_checked: true,
                        cancel,
                        trace: Some(trace),
                        secrets,
                        ..RunIdentity::new(execution_id)
                    },
                    &task,
                    input.clone(),
                    http,
                )
                .await;
            let classification = service.classify(&name, &execution).await;
            service.metrics.run(&name, execution.outcome.is_ok(), execution.duration);
            service.emit_outcome(&name, None, &trace_id, &execution, &classification);
            let run = Run { job_id: None, attempt: 1, task: &name, input: &input, trace_id: &trace_id };
            let mut record = record(run, &execution, &classification, started, &service.node);
            record.caused_by = caused_by;
            service.note_failure(&mut record, &task);
            let recorded = match service.store.record_execution(&record).await {
                Ok(()) => Ok(record),
                Err(error) => {
                    tracing::error!(execution = %record.id, "cannot record the run: {error}");
                    Err(Unrecorded { record, error: error.to_string() })
                }
            };
            if let Ok(mut running) = service.running_now.lock() {
                running.remove(&execution.id);
            }
            let _ = done.send(recorded);
            drop(guard);
        };
        tokio::spawn(tracing::Instrument::instrument(run, span));
        (id, receiver)
    }

    /// A failed run's record keeps, for its report, the node's state at its end
    /// (`error.system`) and the version of the task that ran (`error.task_digest`).
    pub(crate) fn note_failure(&self, record: &mut ExecutionRecord, task: &ratchet_core::Task) {
        if let Some(error) = record.error.as_mut().and_then(Value::as_object_mut) {
            error.insert("system".into(), self.system_state());
            error.insert("task_digest".into(), Value::from(task.digest.as_str()));
        }
    }

    /// What the error-pattern plugins make of a failed run (nothing for a success).
    pub(crate) async fn classify(&self, task: &str, execution: &Execution) -> Vec<Suggestion> {
        let Err(error) = &execution.outcome else { return Vec::new() };
        if self.plugins.patterns.is_empty() {
            return Vec::new();
        }
        let failure = FailedRun {
            kind: error.kind().to_owned(),
            name: Some(error.name().to_owned()),
            message: error.to_string(),
            task: task.to_owned(),
            logs: execution.logs.iter().map(|line| line.message.clone()).collect(),
        };
        self.plugins.patterns.classify(failure).await
    }

    pub(crate) fn emit_outcome(
        &self,
        task: &str,
        job: Option<&Job>,
        trace_id: &str,
        execution: &Execution,
        classification: &[Suggestion],
    ) {
        if self.plugins.sinks.is_empty() {
            return;
        }
        let id = Some(execution.id.as_str());
        let duration_ms = execution.duration.as_secs_f64() * 1000.0;
        let base = match job {
            Some(job) => json!({
                "job": job.id, "attempt": job.attempt, "duration_ms": duration_ms, "trace_id": trace_id,
            }),
            None => json!({"duration_ms": duration_ms, "trace_id": trace_id}),
        };
        match &execution.outcome {
            Ok(_) => self.emit(|| Event::new("execution.succeeded", Some(task), id, base)),
            Err(error) => {
                let mut data = base;
                data["error"] = json!({"kind": error.kind(), "message": error.to_string()});
                if !classification.is_empty() {
                    data["classification"] = json!(classification);
                }
                if error.kind() == "worker_crashed" {
                    self.emit(|| Event::new("worker.crashed", Some(task), id, data.clone()));
                }
                self.emit(|| Event::new("execution.failed", Some(task), id, data));
            }
        }
    }
}

/// How [`Service::run_now_with`] runs.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Cancelling it stops the run.
    pub cancel: Option<tokio_util::sync::CancellationToken>,
    /// Stored with the record ([`ExecutionRecord::caused_by`]).
    pub caused_by: Option<Value>,
    /// The trace of the request that runs it (its `traceparent`); a new trace when `None`.
    pub trace: Option<TraceContext>,
}

/// What an execution ran: a job's attempt, or a direct run (no job).
pub(crate) struct Run<'a> {
    pub(crate) job_id: Option<&'a str>,
    pub(crate) attempt: u32,
    pub(crate) task: &'a str,
    pub(crate) input: &'a Value,
    pub(crate) trace_id: &'a str,
}

/// The stored record of `execution`, its error carrying the error patterns' classification.
pub(crate) fn record(
    run: Run<'_>,
    execution: &Execution,
    classification: &[Suggestion],
    started: i64,
    node: &str,
) -> ExecutionRecord {
    let har = serde_json::to_value(Har::from_exchanges(&execution.http, execution.http_unrecorded))
        .unwrap_or(Value::Null);
    let mut error = execution.outcome.as_ref().err().map(ratchet_core::recording::error_json);
    if let (Some(error), false) = (error.as_mut(), classification.is_empty()) {
        error["classification"] = json!(classification);
    }
    ExecutionRecord {
        id: execution.id.clone(),
        job_id: run.job_id.map(str::to_owned),
        attempt: run.attempt,
        task: run.task.to_owned(),
        status: execution.status(),
        input: run.input.clone(),
        output: execution.outcome.as_ref().ok().cloned(),
        error,
        logs: ratchet_core::recording::logs_json(&execution.logs),
        http: har,
        started_at: started,
        finished_at: now_ms(),
        duration_us: execution.duration.as_micros() as i64,
        worker: execution.worker.as_ref().map(|w| w.worker_id.clone()),
        node: Some(node.to_owned()),
        caused_by: None,
        trace_id: Some(run.trace_id.to_owned()),
    }
}
