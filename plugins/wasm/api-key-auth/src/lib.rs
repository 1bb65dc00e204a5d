//! API keys, stored hashed. A request presents its key as `Authorization: Bearer KEY` or
//! `X-API-Key: KEY`; the plugin hashes it (SHA-256) and compares it, in constant time, with
//! the hashes in its config. Roles nest: `admin` can do what `runner` can, `runner` what
//! `viewer` can; the principal lists every role it holds.
//!
//! Config: `{"keys": [{"id": "ci", "sha256": "<64 hex digits>", "role": "runner"}]}`, and
//! optionally `"expires": "2026-12-31T00:00:00Z"` (RFC 3339, UTC) on a key: from that instant
//! the key is refused, saying so. `printf %s "$KEY" | sha256sum` gives the hash.

use plugin_api::guest::{Auth, Manifest, PluginError, Principal};
use serde_json::Value;
use sha2::{Digest, Sha256};

struct ApiKeyAuth;

const ROLES: [&str; 3] = ["viewer", "runner", "admin"];

fn presented(headers: &[(String, String)]) -> Option<String> {
    headers.iter().find_map(|(name, value)| {
        let name = name.to_ascii_lowercase();
        if name == "x-api-key" {
            return Some(value.trim().to_owned());
        }
        if name == "authorization" {
            let (scheme, token) = value.trim().split_once(' ')?;
            if scheme.eq_ignore_ascii_case("bearer") {
                return Some(token.trim().to_owned());
            }
        }
        None
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Equal without leaking where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth for ApiKeyAuth {
    fn manifest() -> Manifest {
        Manifest::new(
            "api-key-auth",
            env!("CARGO_PKG_VERSION"),
            "API keys stored as SHA-256 hashes, with roles",
        )
    }

    fn authenticate(headers: Vec<(String, String)>) -> Result<Principal, PluginError> {
        let key = presented(&headers).ok_or_else(|| {
            PluginError::Denied("no API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`".into())
        })?;
        let digest = hex(&Sha256::digest(key.as_bytes()));
        let mut found = None;
        for stored in keys()? {
            if same(stored.sha256.as_bytes(), digest.as_bytes()) {
                found = Some(stored);
            }
        }
        let key = found.ok_or_else(|| PluginError::Denied("unknown API key".into()))?;
        if let Some((expires, shown)) = &key.expires
            && std::time::SystemTime::now() >= *expires
        {
            return Err(PluginError::Denied(format!(
                "API key `{}` expired at {shown}; ask an admin for a new key",
                key.id
            )));
        }
        let level = ROLES.iter().position(|r| *r == key.role).ok_or_else(|| {
            PluginError::InvalidInput(format!("key role `{}` is not one of viewer, runner, admin", key.role))
        })?;
        Ok(Principal { id: key.id.clone(), roles: ROLES[..=level].iter().map(|r| (*r).to_owned()).collect() })
    }
}

/// One configured key.
struct Key {
    id: String,
    /// Lowercase hex.
    sha256: String,
    role: String,
    /// When the key stops working, and that instant as configured.
    expires: Option<(std::time::SystemTime, String)>,
}

/// The configured keys, parsed once per instance (every request would otherwise parse them).
fn keys() -> Result<&'static [Key], PluginError> {
    static KEYS: std::sync::OnceLock<Result<Vec<Key>, PluginError>> = std::sync::OnceLock::new();
    KEYS.get_or_init(parse_keys).as_deref().map_err(Clone::clone)
}

fn parse_keys() -> Result<Vec<Key>, PluginError> {
    let config: Value = serde_json::from_str(&plugin_api::guest::config())
        .map_err(|e| PluginError::InvalidInput(format!("config is not JSON: {e}")))?;
    let text = |entry: &Value, field: &str, default: &str| {
        entry.get(field).and_then(Value::as_str).unwrap_or(default).to_owned()
    };
    let entries = config.get("keys").and_then(Value::as_array).cloned().unwrap_or_default();
    entries
        .iter()
        .map(|entry| {
            let id = text(entry, "id", "api-key");
            let expires = entry.get("expires").map(|value| expiry(&id, value)).transpose()?;
            Ok(Key {
                sha256: text(entry, "sha256", "").to_ascii_lowercase(),
                role: text(entry, "role", "viewer"),
                id,
                expires,
            })
        })
        .collect()
}

/// A key's `expires`: an RFC 3339 UTC time.
fn expiry(id: &str, value: &Value) -> Result<(std::time::SystemTime, String), PluginError> {
    let refused = || {
        PluginError::InvalidInput(format!(
            "key `{id}`: `expires` must be an RFC 3339 UTC time such as 2026-12-31T00:00:00Z, not {value}"
        ))
    };
    let text = value.as_str().ok_or_else(refused)?;
    let at = humantime::parse_rfc3339(text).map_err(|_| refused())?;
    Ok((at, text.to_owned()))
}

plugin_api::export_auth!(ApiKeyAuth);
