//! HTTP mocks of task test cases, in the original Ratchet's shape:
//!
//! ```json
//! "mock": {"http": {"url": "https://api.example.com/users/1", "method": "GET",
//!                   "response": {"status": 200, "headers": {...}, "body": {...}}}}
//! ```
//!
//! `http` is one mock or a list; `method` is optional. A mock's `url` matches a request's URL
//! exactly, or as a prefix when it ends in `*`; failing both for every mock, as in the original
//! Ratchet, a mock matches when one URL contains the other (`"api.example.com/v1/now"` matches
//! `https://api.example.com/v1/now?tz=UTC`). The first mock that matches answers. A mocked case
//! never touches the network.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::exchange::HttpResponse;

#[derive(Debug, Clone, PartialEq)]
pub struct Mocks(Vec<Mock>);

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mock {
    url: String,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    response: MockResponse,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MockResponse {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default, rename = "statusText")]
    status_text: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Value,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Mock),
    Many(Vec<Mock>),
}

impl Mocks {
    /// Parses a case's `"mock"` value.
    pub fn parse(mock: &Value) -> Result<Mocks, String> {
        let Some(http) = mock.get("http") else {
            return Err("`mock` needs an `http` entry: one mock or a list of them".into());
        };
        let mocks = match serde_json::from_value::<OneOrMany>(http.clone()) {
            Ok(OneOrMany::One(mock)) => vec![mock],
            Ok(OneOrMany::Many(mocks)) => mocks,
            Err(_) => {
                return Err("`mock.http` entries need `url` and may have `method` and `response` \
                            (`status`, `statusText`, `ok`, `headers`, `body`)"
                    .into());
            }
        };
        Ok(Mocks(mocks))
    }

    /// The response of the first mock matching `method` and `url`: exactly or by prefix,
    /// else by containment.
    pub fn answer(&self, method: &str, url: &str) -> Option<HttpResponse> {
        let methods =
            || self.0.iter().filter(|m| m.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method)));
        methods()
            .find(|m| m.matches_exactly(url))
            .or_else(|| methods().find(|m| m.contains(url)))
            .map(Mock::response)
    }
}

impl Mock {
    fn matches_exactly(&self, url: &str) -> bool {
        match self.url.strip_suffix('*') {
            Some(prefix) => url.starts_with(prefix),
            None => self.url == url,
        }
    }

    /// The original Ratchet's rule: one URL contains the other.
    fn contains(&self, url: &str) -> bool {
        let own = self.url.trim_end_matches('*');
        !own.is_empty() && (url.contains(own) || own.contains(url))
    }

    fn response(&self) -> HttpResponse {
        let spec = &self.response;
        let status = spec.status.unwrap_or(if spec.ok == Some(false) { 500 } else { 200 });
        let status_text = spec.status_text.clone().unwrap_or_else(|| {
            reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
                .to_owned()
        });
        let (body, json) = match &spec.body {
            Value::String(text) => (text.clone(), false),
            Value::Null => (String::new(), false),
            other => (other.to_string(), true),
        };
        let mut headers: Vec<(String, String)> =
            spec.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
        if json && !headers.iter().any(|(k, _)| k == "content-type") {
            headers.push(("content-type".into(), "application/json".into()));
        }
        HttpResponse { status, status_text, headers, body, redirects: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_mock_or_a_list_with_exact_and_prefix_urls() {
        let mocks = Mocks::parse(&json!({"http": [
            {"url": "https://api.test/users/1", "method": "GET", "response": {"body": {"id": 1}}},
            {"url": "https://api.test/*", "response": {"status": 404, "body": "missing"}}
        ]}))
        .unwrap();
        let user = mocks.answer("GET", "https://api.test/users/1").unwrap();
        assert_eq!((user.status, user.status_text.as_str(), user.body.as_str()), (200, "OK", r#"{"id":1}"#));
        let other = mocks.answer("POST", "https://api.test/users/1").unwrap();
        assert_eq!((other.status, other.status_text.as_str()), (404, "Not Found"));
        assert!(mocks.answer("GET", "https://elsewhere.test/").is_none());
        let single =
            Mocks::parse(&json!({"http": {"url": "https://x.test/", "response": {"ok": false}}})).unwrap();
        assert_eq!(single.answer("GET", "https://x.test/").unwrap().status, 500);
    }

    #[test]
    fn original_style_urls_match_by_containment_after_exact_and_prefix() {
        let mocks = Mocks::parse(&json!({"http": [
            {"url": "api.openweathermap.org/data/2.5/weather", "response": {"body": {"temp": 1}}},
            {"url": "https://api.openweathermap.org/data/2.5/weather?q=Paris", "response": {"body": {"temp": 2}}}
        ]}))
        .unwrap();
        let exact = mocks.answer("GET", "https://api.openweathermap.org/data/2.5/weather?q=Paris").unwrap();
        assert_eq!(exact.body, r#"{"temp":2}"#, "an exact match wins over an earlier containment");
        let contained =
            mocks.answer("GET", "https://api.openweathermap.org/data/2.5/weather?q=Oslo").unwrap();
        assert_eq!(contained.body, r#"{"temp":1}"#);
        assert!(mocks.answer("GET", "https://api.example.com/").is_none());
    }

    #[test]
    fn malformed_mocks_are_explained() {
        assert!(Mocks::parse(&json!({})).unwrap_err().contains("needs an `http` entry"));
        assert!(Mocks::parse(&json!({"http": {"method": "GET"}})).unwrap_err().contains("need `url`"));
        assert!(Mocks::parse(&json!({"http": {"url": "x", "respnse": {}}})).is_err());
    }
}
