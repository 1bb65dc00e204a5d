//! What one `fetch` did, kept for the result envelope, recordings and replay; and its HAR 1.2
//! form. Secrets are masked whenever an exchange leaves the process.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use worker_protocol::JsError;

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

/// Header names whose values never leave the process.
const SECRET_HEADERS: [&str; 9] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "x-auth-token",
    "x-access-token",
];

/// Query parameters whose values never leave the process.
const SECRET_PARAMS: [&str; 9] =
    ["api_key", "apikey", "key", "token", "access_token", "secret", "password", "signature", "sig"];

pub const MASK: &str = "***";

fn is_secret_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_HEADERS.contains(&name.as_str()) || name.contains("secret") || name.contains("token")
}

/// Masks secret header values; an `Authorization` scheme word (`Bearer`) is kept.
pub fn mask_headers(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            if !is_secret_header(name) {
                return (name.clone(), value.clone());
            }
            let masked = match value.split_once(' ') {
                Some((scheme, _)) if name.eq_ignore_ascii_case("authorization") => {
                    format!("{scheme} {MASK}")
                }
                _ => MASK.to_owned(),
            };
            (name.clone(), masked)
        })
        .collect()
}

/// Masks secret query parameter values. Applied the same way when recording and when
/// matching during replay, so masked recordings still replay.
pub fn mask_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    if parsed.query().is_none() {
        return url.to_owned();
    }
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(k, v)| {
            let secret = SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str());
            (k.into_owned(), if secret { MASK.to_owned() } else { v.into_owned() })
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
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
}

impl Har {
    /// The HAR of `exchanges`, secrets masked.
    pub fn from_exchanges(exchanges: &[Exchange]) -> Har {
        Har {
            log: HarLog {
                version: "1.2".into(),
                creator: HarCreator { name: "ratchet".into(), version: env!("CARGO_PKG_VERSION").into() },
                entries: exchanges.iter().map(HarEntry::from_exchange).collect(),
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
            body_size: exchange.request_body.as_ref().map_or(0, |b| b.len() as i64),
            post_data,
            headers_size: -1,
        };
        let (response, ratchet) = match &exchange.outcome {
            ExchangeOutcome::Response(response) => {
                let extension = (!response.redirects.is_empty())
                    .then(|| HarExtension { redirects: response.redirects.clone(), ..Default::default() });
                (har_response(response), extension)
            }
            ExchangeOutcome::Failed { error, denied } => {
                let extension =
                    HarExtension { error: Some(error.clone()), denied: *denied, redirects: Vec::new() };
                (failed_response(), Some(extension))
            }
        };
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

    /// What the task saw: the response, or the error it got.
    pub fn outcome(&self) -> ExchangeOutcome {
        if let Some(HarExtension { error: Some(error), denied, .. }) = &self.ratchet {
            return ExchangeOutcome::Failed { error: error.clone(), denied: *denied };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked() {
        let headers = vec![
            ("Authorization".to_owned(), "Bearer abc.def".to_owned()),
            ("X-Api-Key".to_owned(), "k-123".to_owned()),
            ("X-Session-Token".to_owned(), "t".to_owned()),
            ("Accept".to_owned(), "application/json".to_owned()),
        ];
        let masked = mask_headers(&headers);
        assert_eq!(masked[0].1, "Bearer ***");
        assert_eq!(masked[1].1, "***");
        assert_eq!(masked[2].1, "***");
        assert_eq!(masked[3].1, "application/json");
        assert_eq!(
            mask_url("https://api.example.com/v1?q=rust&api_key=s3cret&Token=x"),
            "https://api.example.com/v1?q=rust&api_key=***&Token=***"
        );
        assert_eq!(mask_url("https://example.com/plain"), "https://example.com/plain");
    }
}
