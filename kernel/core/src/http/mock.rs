//! HTTP mocks of task test cases, in the original Ratchet's shape:
//!
//! ```json
//! "mock": {"http": {"url": "https://api.example.com/users/1", "method": "GET",
//!                   "response": {"status": 200, "headers": {...}, "body": {...}}}}
//! ```
//!
//! `http` is one mock or a list. `url` matches exactly, or as a prefix when it ends in `*`;
//! `method` is optional. A mocked case never touches the network.

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

    /// The response of the first mock matching `method` and `url`.
    pub fn answer(&self, method: &str, url: &str) -> Option<HttpResponse> {
        self.0.iter().find(|m| m.matches(method, url)).map(Mock::response)
    }
}

impl Mock {
    fn matches(&self, method: &str, url: &str) -> bool {
        let method_ok = self.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method));
        let url_ok = match self.url.strip_suffix('*') {
            Some(prefix) => url.starts_with(prefix),
            None => self.url == url,
        };
        method_ok && url_ok
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
    fn malformed_mocks_are_explained() {
        assert!(Mocks::parse(&json!({})).unwrap_err().contains("needs an `http` entry"));
        assert!(Mocks::parse(&json!({"http": {"method": "GET"}})).unwrap_err().contains("need `url`"));
        assert!(Mocks::parse(&json!({"http": {"url": "x", "respnse": {}}})).is_err());
    }
}
