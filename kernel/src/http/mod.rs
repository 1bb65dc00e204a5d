//! HTTP for tasks. The worker never touches the network: a task's `fetch` arrives as a
//! `FetchRequest` frame, and the run's [`HttpSession`] answers it live (under the egress
//! policy), from mocks, from a recording, or not at all. Every exchange is kept for the
//! result, the recording and replay.

mod exchange;
mod live;
mod mock;
pub mod policy;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use worker_protocol::{FetchOutcome, FetchRequest, JsError};

pub use exchange::{Exchange, ExchangeOutcome, Har, HarEntry, HttpResponse, mask_headers, mask_url};
pub use live::{Egress, FetchFailure};
pub use mock::Mocks;
pub use policy::{EgressPolicy, HostRule};

/// Where a run's requests are answered from.
#[derive(Clone)]
pub enum HttpMode {
    /// The network, through the kernel's egress client and policy.
    Live(Arc<Egress>, EgressPolicy),
    /// A test case's mocks; anything unmatched fails without touching the network.
    Mocked(Mocks),
    /// A recording: each request takes the next unused entry with the same method and URL.
    Replay(Arc<Mutex<VecDeque<HarEntry>>>),
    /// No HTTP at all (script checks).
    Disabled,
}

/// The HTTP side of one run.
pub struct HttpSession {
    mode: HttpMode,
    exchanges: Mutex<Vec<Exchange>>,
}

impl HttpSession {
    pub fn new(mode: HttpMode) -> HttpSession {
        HttpSession { mode, exchanges: Mutex::new(Vec::new()) }
    }

    /// Answers one `fetch` of the task and records the exchange.
    pub async fn fetch(&self, request: &FetchRequest) -> FetchOutcome {
        let started = SystemTime::now();
        let clock = Instant::now();
        let outcome = self.answer(request).await;
        let exchange = Exchange {
            started,
            duration: clock.elapsed(),
            method: request.method.clone(),
            url: request.url.clone(),
            request_headers: request.headers.clone(),
            request_body: request.body.clone(),
            outcome: outcome.clone(),
        };
        if let Ok(mut exchanges) = self.exchanges.lock() {
            exchanges.push(exchange);
        }
        to_wire(outcome)
    }

    /// The exchanges so far, in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().map(|e| e.clone()).unwrap_or_default()
    }

    async fn answer(&self, request: &FetchRequest) -> ExchangeOutcome {
        match &self.mode {
            HttpMode::Live(egress, policy) => match egress.fetch(request, policy).await {
                Ok(response) => ExchangeOutcome::Response(response),
                Err(failure) => failed(failure, &request.method, &request.url),
            },
            HttpMode::Mocked(mocks) => match mocks.answer(&request.method, &request.url) {
                Some(response) => ExchangeOutcome::Response(response),
                None => network_error(format!(
                    "no mock matches {} {}; this test case's requests never reach the network",
                    request.method, request.url
                )),
            },
            HttpMode::Replay(entries) => replay(entries, request),
            HttpMode::Disabled => {
                network_error(format!("fetch is not available here ({} {})", request.method, request.url))
            }
        }
    }
}

fn replay(entries: &Mutex<VecDeque<HarEntry>>, request: &FetchRequest) -> ExchangeOutcome {
    let url = mask_url(&request.url);
    let Ok(mut entries) = entries.lock() else {
        return network_error("the recording is unavailable".into());
    };
    let position = entries
        .iter()
        .position(|e| e.request.method.eq_ignore_ascii_case(&request.method) && e.request.url == url);
    match position.and_then(|index| entries.remove(index)) {
        Some(entry) => entry.outcome(),
        None => network_error(format!(
            "replay: the recording has no (further) response for {} {}; the task made a request it did not make when recorded",
            request.method, url
        )),
    }
}

fn failed(failure: FetchFailure, method: &str, url: &str) -> ExchangeOutcome {
    let (name, message, denied) = match failure {
        FetchFailure::Denied(denied) => {
            ("NetworkError", format!("{method} {url} denied by the egress policy: {denied}"), true)
        }
        FetchFailure::Network(message) => {
            ("NetworkError", format!("{method} {url} failed: {message}"), false)
        }
        FetchFailure::Timeout(limit) => (
            "TimeoutError",
            format!(
                "{method} {url} got no response within {}s (egress.request_timeout_secs)",
                limit.as_secs_f64()
            ),
            false,
        ),
    };
    ExchangeOutcome::Failed { error: JsError { name: name.into(), message, stack: None }, denied }
}

fn network_error(message: String) -> ExchangeOutcome {
    ExchangeOutcome::Failed {
        error: JsError { name: "NetworkError".into(), message, stack: None },
        denied: false,
    }
}

fn to_wire(outcome: ExchangeOutcome) -> FetchOutcome {
    match outcome {
        ExchangeOutcome::Response(response) => FetchOutcome::Response {
            status: response.status,
            status_text: response.status_text,
            headers: response.headers,
            body: response.body,
        },
        ExchangeOutcome::Failed { error, .. } => FetchOutcome::Failed { error },
    }
}
