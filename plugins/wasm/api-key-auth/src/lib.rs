//! API keys, stored hashed. A request presents its key as `Authorization: Bearer KEY` or
//! `X-API-Key: KEY`; the plugin hashes it (SHA-256) and compares it, in constant time, with
//! the hashes in its config. Roles nest: `admin` can do what `runner` can, `runner` what
//! `viewer` can; the principal lists every role it holds.
//!
//! Config: `{"keys": [{"id": "ci", "sha256": "<64 hex digits>", "role": "runner"}]}`.
//! `printf %s "$KEY" | sha256sum` gives the hash.

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
        let config: Value = serde_json::from_str(&plugin_api::guest::config())
            .map_err(|e| PluginError::InvalidInput(format!("config is not JSON: {e}")))?;
        let digest = hex(&Sha256::digest(key.as_bytes()));
        let keys = config.get("keys").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut found = None;
        for entry in &keys {
            let stored = entry.get("sha256").and_then(Value::as_str).unwrap_or_default().to_ascii_lowercase();
            if same(stored.as_bytes(), digest.as_bytes()) {
                found = Some(entry);
            }
        }
        let entry = found.ok_or_else(|| PluginError::Denied("unknown API key".into()))?;
        let role = entry.get("role").and_then(Value::as_str).unwrap_or("viewer");
        let level = ROLES.iter().position(|r| *r == role).ok_or_else(|| {
            PluginError::InvalidInput(format!("key role `{role}` is not one of viewer, runner, admin"))
        })?;
        Ok(Principal {
            id: entry.get("id").and_then(Value::as_str).unwrap_or("api-key").to_owned(),
            roles: ROLES[..=level].iter().map(|r| (*r).to_owned()).collect(),
        })
    }
}

plugin_api::export_auth!(ApiKeyAuth);
