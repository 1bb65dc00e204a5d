//! Masking of secrets: the one function every piece of a run's data passes before it leaves
//! the process (HAR recordings, result envelopes, stored executions, logs, error messages).
//!
//! A header or query parameter is secret when its name is one of a few known ones
//! (`Authorization`, `Cookie`, `auth`, `sig`...), contains one of [`SECRET_PARTS`], or is one the
//! operator added (`recording.mask_names`). Its value becomes [`MASK`]; an `Authorization`
//! scheme word (`Bearer`) is kept. Credentials in a URL's user part are masked too, and free
//! text is scanned for URLs. The values of the secrets a run was given are masked wherever
//! they appear, as they are written.

use std::borrow::Cow;
use std::sync::LazyLock;

pub const MASK: &str = "***";

/// Names masked whatever they contain.
const SECRET_NAMES: [&str; 9] =
    ["authorization", "proxy-authorization", "cookie", "set-cookie", "auth", "sig", "jwt", "passwd", "pwd"];

/// A name containing one of these is masked: `client_secret`, `refresh_token`, `X-Goog-Api-Key`,
/// `Ocp-Apim-Subscription-Key`, `X-Amz-Signature`, `X-Amz-Credential`, `session_id`...
pub const SECRET_PARTS: [&str; 7] =
    ["secret", "token", "key", "password", "signature", "credential", "session"];

/// URLs in free text: a scheme, `://`, and everything up to white space or a quote.
static URL_IN_TEXT: LazyLock<regex::Regex> = LazyLock::new(|| {
    regex::Regex::new(r#"(?i)\b[a-z][a-z0-9+.\-]*://[^\s"'<>`]+"#).expect("a valid pattern")
});

/// Which names are secret: the built-in rules plus the operator's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Masker {
    /// Lower-case.
    extra: Vec<String>,
    /// Secret values, longest first (so a value that contains another is masked whole).
    values: std::sync::Arc<[String]>,
}

impl Masker {
    pub fn new(extra: &[String]) -> Masker {
        Masker {
            extra: extra.iter().map(|name| name.trim().to_ascii_lowercase()).collect(),
            values: std::sync::Arc::default(),
        }
    }

    /// This masker, also masking each of `values` wherever it appears.
    pub fn with_values<'a>(&self, values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut all: Vec<String> = self.values.iter().cloned().collect();
        all.extend(values.into_iter().filter(|value| !value.is_empty()).map(str::to_owned));
        all.sort_by_key(|value| std::cmp::Reverse(value.len()));
        all.dedup();
        Masker { extra: self.extra.clone(), values: all.into() }
    }

    /// `text` with every secret value in it masked.
    pub fn values<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut masked = Cow::Borrowed(text);
        for value in self.values.iter() {
            if masked.contains(value.as_str()) {
                masked = Cow::Owned(masked.replace(value.as_str(), MASK));
            }
        }
        masked
    }

    /// A JSON document with every secret value in its strings (and keys) masked.
    pub fn json(&self, value: serde_json::Value) -> serde_json::Value {
        use serde_json::Value;
        if self.values.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.values(&text).into_owned()),
            Value::Array(items) => Value::Array(items.into_iter().map(|item| self.json(item)).collect()),
            Value::Object(fields) => Value::Object(
                fields
                    .into_iter()
                    .map(|(key, item)| (self.values(&key).into_owned(), self.json(item)))
                    .collect(),
            ),
            other => other,
        }
    }

    pub fn is_secret(&self, name: &str) -> bool {
        let name = name.to_ascii_lowercase();
        SECRET_NAMES.contains(&name.as_str())
            || SECRET_PARTS.iter().any(|part| name.contains(part))
            || self.extra.contains(&name)
    }

    /// Headers with secret values masked; an `Authorization` scheme word (`Bearer`) is kept.
    pub fn headers(&self, headers: &[(String, String)]) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|(name, value)| {
                if !self.is_secret(name) {
                    return (name.clone(), self.values(value).into_owned());
                }
                let masked = match value.split_once(' ') {
                    Some((scheme, _)) if name.to_ascii_lowercase().ends_with("authorization") => {
                        format!("{scheme} {MASK}")
                    }
                    _ => MASK.to_owned(),
                };
                (name.clone(), masked)
            })
            .collect()
    }

    /// The URL with secret query parameters and user-part credentials masked (a user name
    /// with no password is masked too: tokens travel that way). Applied the same way when
    /// recording and when matching during replay, so masked recordings still replay.
    pub fn url(&self, url: &str) -> String {
        let url = &*self.values(url);
        let Ok(mut parsed) = url::Url::parse(url) else {
            return url.to_owned();
        };
        let mut changed = false;
        if parsed.password().is_some() {
            changed |= parsed.set_password(Some(MASK)).is_ok();
        } else if !parsed.username().is_empty() {
            changed |= parsed.set_username(MASK).is_ok();
        }
        if parsed.query().is_some() {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(k, v)| {
                    let secret = self.is_secret(&k);
                    changed |= secret;
                    (k.into_owned(), if secret { MASK.to_owned() } else { v.into_owned() })
                })
                .collect();
            if changed {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
        }
        if changed { parsed.to_string() } else { url.to_owned() }
    }

    /// Free text (a log line, an error message) with every URL in it masked.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let text = self.values(text);
        if !text.contains("://") {
            return text;
        }
        let masked = URL_IN_TEXT.replace_all(&text, |found: &regex::Captures<'_>| {
            // A URL ending a sentence keeps its punctuation outside the parse.
            let whole = &found[0];
            let trimmed = whole.trim_end_matches(['.', ',', ';', ':', ')', ']', '}']);
            format!("{}{}", self.url(trimmed), &whole[trimmed.len()..])
        });
        Cow::Owned(masked.into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_headers_parameters_and_credentials_are_masked() {
        let masker = Masker::new(&["X-Tenant".to_owned()]);
        let headers: Vec<(String, String)> = [
            ("Authorization", "Bearer abc.def"),
            ("X-Api-Key", "k-123"),
            ("X-Goog-Api-Key", "g"),
            ("Ocp-Apim-Subscription-Key", "o"),
            ("X-Session-Token", "t"),
            ("x-tenant", "acme"),
            ("Accept", "application/json"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect();
        let masked: Vec<String> = masker.headers(&headers).into_iter().map(|(_, v)| v).collect();
        assert_eq!(masked, ["Bearer ***", "***", "***", "***", "***", "***", "application/json"]);
        assert_eq!(
            masker.url("https://api.example.com/v1?q=rust&api_key=s3cret&Token=x&client_secret=c&refresh_token=r&auth=a"),
            "https://api.example.com/v1?q=rust&api_key=***&Token=***&client_secret=***&refresh_token=***&auth=***"
        );
        assert_eq!(
            masker.url(
                "https://b.s3.amazonaws.com/o?X-Amz-Credential=AK%2F1&X-Amz-Signature=ff&X-Amz-Expires=60"
            ),
            "https://b.s3.amazonaws.com/o?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Expires=60"
        );
        assert_eq!(masker.url("http://user:PW@host.example/x"), "http://user:***@host.example/x");
        assert_eq!(masker.url("https://ghp_token@github.com/o/r"), "https://***@github.com/o/r");
        assert_eq!(masker.url("https://example.com/plain?q=1"), "https://example.com/plain?q=1");
        assert_eq!(
            masker.text("GET https://h.example/a?api_key=X denied (see http://u:p@h.example/)."),
            "GET https://h.example/a?api_key=*** denied (see http://u:***@h.example/)."
        );
        assert_eq!(masker.text("no url here"), "no url here");
        let with = masker.with_values(["s3cr3t-v4lue", "s3cr3t"]);
        assert_eq!(
            with.text("token s3cr3t-v4lue and s3cr3t, https://h.example/?q=s3cr3t"),
            "token *** and ***, https://h.example/?q=***"
        );
        assert_eq!(
            with.json(serde_json::json!({"s3cr3t": ["a s3cr3t"], "n": 1})),
            serde_json::json!({"***": ["a ***"], "n": 1})
        );
        let plain: Vec<(String, String)> = vec![("X-Note".into(), "is s3cr3t".into())];
        assert_eq!(with.headers(&plain)[0].1, "is ***");
    }
}
