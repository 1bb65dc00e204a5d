//! What one `fetch` did, kept for the result envelope, recordings and replay; and its HAR 1.2
//! form. Secrets are masked whenever an exchange leaves the process.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use worker_protocol::JsError;

use super::mask::Masker;

/// One `fetch` call of a task: the request as the task made it and what came back.
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    pub started: SystemTime,
    pub duration: Duration,
    pub method: String,
    pub url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body: Option<String>,
    pub outcome: ExchangeOutcome,
    /// Bodies kept only in part: the run's recording budget was spent.
    pub truncated: Truncation,
}

/// Which bodies of an exchange were recorded only in part, with what the whole was.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Truncation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<BodyDigest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<BodyDigest>,
}

impl Truncation {
    pub fn is_empty(&self) -> bool {
        self.request_body.is_none() && self.response_body.is_none()
    }
}

/// A body recorded only in part: its whole size and SHA-256, and how many bytes were kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BodyDigest {
    pub size: u64,
    pub sha256: String,
    pub kept: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExchangeOutcome {
    Response(HttpResponse),
    /// No response: `error.name` is the JS class the task saw (`NetworkError`, `TimeoutError`).
    Failed {
        error: JsError,
        denied: bool,
    },
}

/// A response as the task sees it, after redirects.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpResponse {
    pub status: u16,
    pub status_text: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// URLs followed by redirects, in order.
    pub redirects: Vec<String>,
}

/// Secret headers masked with the built-in rules ([`Masker`]).
pub fn mask_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    Masker::default().headers(headers)
}

/// A URL masked with the built-in rules ([`Masker`]).
pub fn mask_url(url: &str) -> String {
    Masker::default().url(url)
}

// HAR 1.2 (http://www.softwareishard.com/blog/har-12-spec/), the subset Ratchet writes and
// reads. Field names follow the spec's camelCase.

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Har {
    pub log: HarLog,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HarLog {
    pub version: String,
    pub creator: HarCreator,
    pub entries: Vec<HarEntry>,
    /// Why the log is incomplete, when it is (requests past the run's recording budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HarCreator {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HarEntry {
    pub started_date_time: String,
    pub time: f64,
    pub request: HarRequest,
    pub response: HarResponse,
    #[serde(default)]
    pub cache: serde_json::Map<String, serde_json::Value>,
    pub timings: HarTimings,
    /// Ratchet's extension: failures and redirects that HAR has no field for.
    #[serde(rename = "_ratchet", default, skip_serializing_if = "Option::is_none")]
    pub ratchet: Option<HarExtension>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HarRequest {
    pub method: String,
    pub url: String,
    pub http_version: String,
    #[serde(default)]
    pub cookies: Vec<serde_json::Value>,
    pub headers: Vec<HarHeader>,
    #[serde(default)]
    pub query_string: Vec<HarHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_data: Option<HarPostData>,
    pub headers_size: i64,
    pub body_size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HarResponse {
    pub status: u16,
    pub status_text: String,
    pub http_version: String,
    #[serde(default)]
    pub cookies: Vec<serde_json::Value>,
    pub headers: Vec<HarHeader>,
    pub content: HarContent,
    #[serde(rename = "redirectURL", default)]
    pub redirect_url: String,
    pub headers_size: i64,
    pub body_size: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HarHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HarPostData {
    pub mime_type: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HarContent {
    pub size: i64,
    pub mime_type: String,
    #[serde(default)]
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HarTimings {
    pub send: f64,
    pub wait: f64,
    pub receive: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HarExtension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JsError>,
    #[serde(default)]
    pub denied: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<String>,
    /// Bodies recorded only in part: such an entry cannot be replayed.
    #[serde(default, skip_serializing_if = "Truncation::is_empty")]
    pub truncated: Truncation,
}

impl Har {
    /// The HAR of `exchanges`, secrets masked; `unrecorded` requests came after the run's
    /// recording budget was spent and left no entry.
    pub fn from_exchanges(exchanges: &[Exchange], unrecorded: u64) -> Har {
        let comment = (unrecorded > 0).then(|| {
            format!(
                "{unrecorded} further request(s) were not recorded: the run spent recording.max_http_bytes"
            )
        });
        Har {
            log: HarLog {
                version: "1.2".into(),
                creator: HarCreator { name: "ratchet".into(), version: env!("CARGO_PKG_VERSION").into() },
                entries: exchanges.iter().map(HarEntry::from_exchange).collect(),
                comment,
            },
        }
    }
}

fn har_headers(headers: &[(String, String)]) -> Vec<HarHeader> {
    mask_headers(headers).into_iter().map(|(name, value)| HarHeader { name, value }).collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

impl HarEntry {
    fn from_exchange(exchange: &Exchange) -> HarEntry {
        let url = mask_url(&exchange.url);
        let query_string = url::Url::parse(&url)
            .map(|u| {
                u.query_pairs()
                    .map(|(n, v)| HarHeader { name: n.into_owned(), value: v.into_owned() })
                    .collect()
            })
            .unwrap_or_default();
        let post_data = exchange.request_body.as_ref().map(|text| HarPostData {
            mime_type: header(&exchange.request_headers, "content-type").unwrap_or("text/plain").to_owned(),
            text: text.clone(),
        });
        let time = exchange.duration.as_secs_f64() * 1000.0;
        let request = HarRequest {
            method: exchange.method.clone(),
            url,
            http_version: "HTTP/1.1".into(),
            cookies: Vec::new(),
            headers: har_headers(&exchange.request_headers),
            query_string,
            body_size: match &exchange.truncated.request_body {
                Some(whole) => whole.size as i64,
                None => exchange.request_body.as_ref().map_or(0, |b| b.len() as i64),
            },
            post_data,
            headers_size: -1,
        };
        let (mut response, extension) = match &exchange.outcome {
            ExchangeOutcome::Response(response) => (
                har_response(response),
                HarExtension { redirects: response.redirects.clone(), ..Default::default() },
            ),
            ExchangeOutcome::Failed { error, denied } => (
                failed_response(),
                HarExtension { error: Some(error.clone()), denied: *denied, ..Default::default() },
            ),
        };
        if let Some(whole) = &exchange.truncated.response_body {
            response.content.size = whole.size as i64;
            response.body_size = whole.size as i64;
        }
        let extension = HarExtension { truncated: exchange.truncated.clone(), ..extension };
        let empty =
            extension.error.is_none() && extension.redirects.is_empty() && extension.truncated.is_empty();
        let ratchet = (!empty).then_some(extension);
        HarEntry {
            started_date_time: humantime::format_rfc3339_millis(exchange.started).to_string(),
            time,
            request,
            response,
            cache: Default::default(),
            timings: HarTimings { send: 0.0, wait: time, receive: 0.0 },
            ratchet,
        }
    }

    /// What the task saw: the response, or the error it got. A response recorded only in
    /// part cannot be given again: the task gets a `NetworkError` saying so.
    pub fn outcome(&self) -> ExchangeOutcome {
        if let Some(HarExtension { error: Some(error), denied, .. }) = &self.ratchet {
            return ExchangeOutcome::Failed { error: error.clone(), denied: *denied };
        }
        if let Some(whole) = self.ratchet.as_ref().and_then(|r| r.truncated.response_body.as_ref()) {
            return ExchangeOutcome::Failed {
                error: JsError {
                    name: "NetworkError".into(),
                    message: format!(
                        "replay: the recording kept only {} of this response's {} bytes (recording.max_http_bytes); \
                         it cannot be replayed",
                        whole.kept, whole.size
                    ),
                    stack: None,
                },
                denied: false,
            };
        }
        ExchangeOutcome::Response(HttpResponse {
            status: self.response.status,
            status_text: self.response.status_text.clone(),
            headers: self.response.headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect(),
            body: self.response.content.text.clone(),
            redirects: self.ratchet.as_ref().map(|r| r.redirects.clone()).unwrap_or_default(),
        })
    }
}

fn har_response(response: &HttpResponse) -> HarResponse {
    HarResponse {
        status: response.status,
        status_text: response.status_text.clone(),
        http_version: "HTTP/1.1".into(),
        cookies: Vec::new(),
        headers: har_headers(&response.headers),
        content: HarContent {
            size: response.body.len() as i64,
            mime_type: header(&response.headers, "content-type").unwrap_or("").to_owned(),
            text: response.body.clone(),
        },
        redirect_url: String::new(),
        headers_size: -1,
        body_size: response.body.len() as i64,
    }
}

/// HAR has no shape for "no response"; browsers write status 0, and so does Ratchet.
fn failed_response() -> HarResponse {
    HarResponse {
        status: 0,
        status_text: String::new(),
        http_version: String::new(),
        cookies: Vec::new(),
        headers: Vec::new(),
        content: HarContent { size: 0, mime_type: String::new(), text: String::new() },
        redirect_url: String::new(),
        headers_size: -1,
        body_size: -1,
    }
}
