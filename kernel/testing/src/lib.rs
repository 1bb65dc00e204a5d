//! `ratchet test`: a task's `tests/*.json` cases, run through one kernel and judged.
//!
//! The core parses test cases when it loads a task (so a bad case is a load error); judging
//! them lives here because only `ratchet test` needs it: the server never does. The format is
//! the original Ratchet's as well as Ratchet's own (README, "Test cases"):
//!
//! - `expected_output`: compared exactly, or, in a case that also has `assertions`, as a subset
//!   (each field it names must match; fields it does not name are ignored); matcher strings may
//!   stand for values ([`compare`]).
//! - `expected_error`: the run fails, with this error name and a message containing this text.
//! - `assertions`: each must hold ([`assertion`]).

pub mod assertion;
pub mod compare;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use ratchet_core::execution::{ExecutionError, Kernel};
use ratchet_core::http::HttpMode;
use ratchet_core::task::{Expectation, Task, TestCase};

use crate::compare::{Comparison, compare};

/// How one case went.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    /// `None` when the case passed; otherwise what differed.
    pub failure: Option<String>,
    pub duration: Duration,
}

/// Runs every case concurrently (bounded by the pool) and reports them in file order;
/// `finished` is called as each case ends, in the order they end (for progress).
pub async fn run_cases(
    kernel: Arc<Kernel>,
    task: Arc<Task>,
    finished: impl Fn(&CaseReport) + Send + Sync + 'static,
) -> Vec<CaseReport> {
    let finished = Arc::new(finished);
    let mut handles = Vec::with_capacity(task.tests.len());
    for index in 0..task.tests.len() {
        let (kernel, task, finished) = (Arc::clone(&kernel), Arc::clone(&task), Arc::clone(&finished));
        handles.push(tokio::spawn(async move {
            let report = run_case(&kernel, &task, &task.tests[index]).await;
            finished(&report);
            report
        }));
    }
    let mut reports = Vec::with_capacity(handles.len());
    for (handle, case) in handles.into_iter().zip(&task.tests) {
        reports.push(handle.await.unwrap_or_else(|e| CaseReport {
            name: case.name.clone(),
            failure: Some(format!("the case's runner failed: {e}")),
            duration: Duration::ZERO,
        }));
    }
    reports
}

async fn run_case(kernel: &Kernel, task: &Task, case: &TestCase) -> CaseReport {
    let http = match &case.mock {
        Some(mocks) => HttpMode::Mocked(mocks.clone()),
        None => kernel.live_http(task),
    };
    let execution = kernel.run_with(task, case.input.clone(), http).await;
    let failure = judge(case, &execution.outcome);
    CaseReport { name: case.name.clone(), failure, duration: execution.duration }
}

/// `None` when the outcome meets the case: its expectation, then every assertion.
pub fn judge(case: &TestCase, outcome: &Result<Value, ExecutionError>) -> Option<String> {
    if let Some(failure) = expectation(case, outcome) {
        return Some(failure);
    }
    let (output, error) = match outcome {
        Ok(output) => (Some(output), None),
        Err(error) => (None, Some(error.message())),
    };
    case.assertions.iter().find_map(|a| assertion::check(a, output, error.as_deref()).err())
}

fn expectation(case: &TestCase, outcome: &Result<Value, ExecutionError>) -> Option<String> {
    let comparison = if case.assertions.is_empty() { Comparison::Exact } else { Comparison::Subset };
    match (&case.expect, outcome) {
        (Expectation::Assertions, _) => None,
        (Expectation::Output(expected), Ok(actual)) => compare(expected, actual, comparison)
            .err()
            .map(|mismatch| format!("expected output {expected}, got {actual}: {mismatch}")),
        (Expectation::Output(_), Err(error)) => Some(format!("expected an output, the run failed: {error}")),
        (Expectation::Error { .. }, Ok(actual)) => {
            Some(format!("expected an error, the task returned {actual}"))
        }
        (Expectation::Error { name, message }, Err(error)) => {
            if let Some(name) = name
                && name != error.name()
            {
                return Some(format!("expected error {name}, got {}: {error}", error.name()));
            }
            match message {
                Some(message) if !error.to_string().contains(message.as_str()) => {
                    Some(format!("expected an error message containing {message:?}, got: {error}"))
                }
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn error_expectations() {
        let thrown = Err(ExecutionError::Task(worker_protocol::JsError {
            name: "DataError".into(),
            message: "bad row 3".into(),
            stack: None,
        }));
        let expect = |name: Option<&str>, message: Option<&str>| TestCase {
            name: "case".into(),
            description: None,
            input: json!({}),
            expect: Expectation::Error { name: name.map(Into::into), message: message.map(Into::into) },
            assertions: Vec::new(),
            mock: None,
        };
        assert_eq!(judge(&expect(Some("DataError"), Some("row 3")), &thrown), None);
        assert_eq!(judge(&expect(None, None), &thrown), None);
        assert!(judge(&expect(Some("TypeError"), None), &thrown).is_some());
        assert!(judge(&expect(None, Some("row 4")), &thrown).is_some());
        assert!(judge(&expect(None, None), &Ok(json!(1))).is_some());
    }
}
