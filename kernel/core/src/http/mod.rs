//! HTTP for tasks. The worker never touches the network: a task's `fetch` arrives as a
//! `FetchRequest` frame, and the run's [`HttpSession`] answers it live (under the egress
//! policy), from mocks, from a recording, or not at all. Every exchange is kept for the
//! result, the recording and replay.

mod exchange;
mod live;
pub mod mask;
mod mock;
pub mod policy;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use worker_protocol::{FetchOutcome, FetchRequest, JsError};

use crate::trace::{TRACEPARENT, TraceContext};

pub use exchange::{
    BodyDigest, Exchange, ExchangeOutcome, Har, HarEntry, HttpResponse, Truncation, mask_headers, mask_url,
};
pub use live::{Egress, FetchFailure};
pub use mask::{MASK, Masker};
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

/// What a run's recording of its HTTP may hold, and how secrets in it are masked.
#[derive(Debug, Clone)]
pub struct RecordingBudget {
    /// Bytes of URLs, headers and bodies kept for the run.
    pub max_bytes: u64,
    pub masker: Masker,
}

impl Default for RecordingBudget {
    fn default() -> Self {
        RecordingBudget { max_bytes: 8 * 1024 * 1024, masker: Masker::default() }
    }
}

/// Exchanges recorded per run at most: past it further requests are counted, not recorded.
const MAX_EXCHANGES: usize = 10_000;

/// The HTTP side of one run.
pub struct HttpSession {
    mode: HttpMode,
    budget: RecordingBudget,
    recorded: Mutex<Recorded>,
    /// Live requests carry it as `traceparent` (unless the task set one).
    trace: Option<TraceContext>,
}

#[derive(Default)]
struct Recorded {
    exchanges: Vec<Exchange>,
    bytes: u64,
    /// Requests that left no exchange: past [`MAX_EXCHANGES`].
    unrecorded: u64,
}

impl HttpSession {
    pub fn new(mode: HttpMode, budget: RecordingBudget) -> HttpSession {
        HttpSession { mode, budget, recorded: Mutex::new(Recorded::default()), trace: None }
    }

    /// The session of a run on `trace`.
    pub fn traced(mut self, trace: Option<TraceContext>) -> HttpSession {
        self.trace = trace;
        self
    }

    /// Answers one `fetch` of the task and records the exchange, masked and within the budget.
    pub async fn fetch(&self, request: &FetchRequest) -> FetchOutcome {
        let started = SystemTime::now();
        let clock = Instant::now();
        let request = self.traceparent(request);
        let outcome = self.answer(&request).await;
        self.record(&request, &outcome, started, clock.elapsed());
        to_wire(outcome)
    }

    /// `request` as it leaves: on a traced live run, with a `traceparent` naming the run's
    /// trace and a new span, unless the task sent its own.
    fn traceparent<'a>(&self, request: &'a FetchRequest) -> std::borrow::Cow<'a, FetchRequest> {
        let (Some(trace), HttpMode::Live(..)) = (&self.trace, &self.mode) else {
            return std::borrow::Cow::Borrowed(request);
        };
        if request.headers.iter().any(|(name, _)| name.eq_ignore_ascii_case(TRACEPARENT)) {
            return std::borrow::Cow::Borrowed(request);
        }
        let mut traced = request.clone();
        traced.headers.push((TRACEPARENT.to_owned(), trace.child_header()));
        std::borrow::Cow::Owned(traced)
    }

    /// Keeps the exchange while the budget allows: whole, or with its bodies cut (their size
    /// and digest kept), or, once even its URL and headers do not fit, only counted.
    fn record(
        &self,
        request: &FetchRequest,
        outcome: &ExchangeOutcome,
        started: SystemTime,
        duration: Duration,
    ) {
        let Ok(mut recorded) = self.recorded.lock() else { return };
        let masker = &self.budget.masker;
        let mut exchange = Exchange {
            started,
            duration,
            method: request.method.clone(),
            url: masker.url(&request.url),
            request_headers: masker.headers(&request.headers),
            request_body: None,
            outcome: match outcome {
                ExchangeOutcome::Response(response) => ExchangeOutcome::Response(HttpResponse {
                    status: response.status,
                    status_text: response.status_text.clone(),
                    headers: masker.headers(&response.headers),
                    body: String::new(),
                    redirects: response.redirects.iter().map(|url| masker.url(url)).collect(),
                }),
                failed => failed.clone(),
            },
            truncated: Truncation::default(),
        };
        let fixed = fixed_size(&exchange);
        if recorded.exchanges.len() >= MAX_EXCHANGES || recorded.bytes + fixed > self.budget.max_bytes {
            recorded.unrecorded += 1;
            return;
        }
        let mut room = self.budget.max_bytes - recorded.bytes - fixed;
        exchange.request_body = request
            .body
            .as_deref()
            .map(|body| kept(&masker.values(body), &mut room, &mut exchange.truncated.request_body));
        if let (ExchangeOutcome::Response(whole), ExchangeOutcome::Response(kept_response)) =
            (outcome, &mut exchange.outcome)
        {
            kept_response.body =
                kept(&masker.values(&whole.body), &mut room, &mut exchange.truncated.response_body);
        }
        recorded.bytes = self.budget.max_bytes - room;
        recorded.exchanges.push(exchange);
    }

    /// The exchanges so far, in order, and how many requests were not recorded.
    pub fn exchanges(&self) -> (Vec<Exchange>, u64) {
        self.recorded.lock().map(|r| (r.exchanges.clone(), r.unrecorded)).unwrap_or_default()
    }

    pub fn masker(&self) -> &Masker {
        &self.budget.masker
    }

    async fn answer(&self, request: &FetchRequest) -> ExchangeOutcome {
        match &self.mode {
            HttpMode::Live(egress, policy) => match egress.fetch(request, policy).await {
                Ok(response) => ExchangeOutcome::Response(response),
                Err(failure) => failed(failure, &request.method, &request.url, &self.budget.masker),
            },
            HttpMode::Mocked(mocks) => match mocks.answer(&request.method, &request.url) {
                Some(response) => ExchangeOutcome::Response(response),
                None => network_error(format!(
                    "no mock matches {} {}; this test case's requests never reach the network",
                    request.method,
                    self.budget.masker.url(&request.url)
                )),
            },
            HttpMode::Replay(entries) => replay(entries, request, &self.budget.masker),
            HttpMode::Disabled => network_error(format!(
                "fetch is not available here ({} {})",
                request.method,
                self.budget.masker.url(&request.url)
            )),
        }
    }
}

/// Bytes an exchange costs besides its bodies: its URL, headers and error message.
fn fixed_size(exchange: &Exchange) -> u64 {
    let headers =
        |headers: &[(String, String)]| headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
    let outcome = match &exchange.outcome {
        ExchangeOutcome::Response(response) => {
            headers(&response.headers) + response.redirects.iter().map(String::len).sum::<usize>()
        }
        ExchangeOutcome::Failed { error, .. } => error.message.len(),
    };
    (exchange.url.len() + headers(&exchange.request_headers) + outcome) as u64
}

/// As much of `body` as `room` allows (cut at a character boundary); when it is cut, its whole
/// size and digest go to `digest`.
fn kept(body: &str, room: &mut u64, digest: &mut Option<BodyDigest>) -> String {
    let size = body.len() as u64;
    if size <= *room {
        *room -= size;
        return body.to_owned();
    }
    let mut cut = *room as usize;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    use sha2::Digest as _;
    let sha256 = sha2::Sha256::digest(body.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    *digest = Some(BodyDigest { size, sha256, kept: cut as u64 });
    *room -= cut as u64;
    body[..cut].to_owned()
}

fn replay(entries: &Mutex<VecDeque<HarEntry>>, request: &FetchRequest, masker: &Masker) -> ExchangeOutcome {
    let url = masker.url(&request.url);
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

/// The error the task sees for a request without a response; secrets in the URL (and in any
/// URL the underlying error quotes) masked.
fn failed(failure: FetchFailure, method: &str, url: &str, masker: &Masker) -> ExchangeOutcome {
    let url = masker.url(url);
    let (name, message, denied) = match failure {
        FetchFailure::Denied(denied) => {
            ("NetworkError", format!("{method} {url} denied by the egress policy: {denied}"), true)
        }
        FetchFailure::Network(message) => {
            ("NetworkError", format!("{method} {url} failed: {}", masker.text(&message)), false)
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
