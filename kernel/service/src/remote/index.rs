//! The signed index of an HTTPS task registry, and how an operator publishes one.
//!
//! `index.json` lists each task's ZIP with its SHA-256 and size; `index.json.minisig` is its
//! minisign signature. A node accepts an index only when a configured public key verifies
//! it, its `serial` is not below the last one it accepted (no rollback) and it has not
//! expired; it accepts a ZIP only when its bytes match the listed size and digest.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use ratchet_core::config::LimitConfig;

/// The largest index accepted, in bytes.
pub const MAX_INDEX_BYTES: u64 = 8 * 1024 * 1024;

/// The signature's file: the index's URL or path with this appended.
pub const SIGNATURE_SUFFIX: &str = ".minisig";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// Grows with every publication; a node refuses an index below the last it accepted.
    pub serial: u64,
    /// RFC 3339 time after which the index is refused (a stale mirror cannot freeze nodes on
    /// old versions forever).
    pub expires: String,
    pub tasks: Vec<Entry>,
}

/// One task version of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub name: String,
    pub version: String,
    /// The task's digest, as `ratchet tasks` and the API show it.
    pub digest: String,
    /// The ZIP, relative to the index's URL or absolute.
    pub url: String,
    /// SHA-256 of the ZIP, in hex.
    pub sha256: String,
    /// Bytes of the ZIP.
    pub size: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("the index signature does not verify with any of the source's public keys ({0})")]
    BadSignature(String),
    #[error("a public key of the source is not a minisign public key: {0}")]
    BadKey(String),
    #[error("the index is not valid: {0}")]
    Invalid(String),
    #[error("the index has serial {got}, below {seen} already accepted: refusing a rollback")]
    Rollback { got: u64, seen: u64 },
    #[error("the index expired at {0}")]
    Expired(String),
}

impl Index {
    /// Parses and checks `bytes` against `signature` (a `.minisig` file's text) and the base64
    /// `public_keys`; `seen` is the highest serial accepted before, `now_ms` the time.
    pub fn verify(
        bytes: &[u8],
        signature: &str,
        public_keys: &[String],
        seen: Option<u64>,
        now_ms: i64,
    ) -> Result<Index, IndexError> {
        verify_signature(bytes, signature, public_keys)?;
        let index: Index = serde_json::from_slice(bytes).map_err(|e| IndexError::Invalid(e.to_string()))?;
        if let Some(seen) = seen
            && index.serial < seen
        {
            return Err(IndexError::Rollback { got: index.serial, seen });
        }
        let expires = ratchet_core::time::parse_rfc3339(&index.expires)
            .map_err(|e| IndexError::Invalid(format!("expires: {e}")))?;
        if expires <= now_ms {
            return Err(IndexError::Expired(index.expires.clone()));
        }
        for entry in &index.tasks {
            let plain =
                |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !plain(&entry.name)
                || entry.sha256.len() != 64
                || !entry.sha256.chars().all(|c| c.is_ascii_hexdigit())
            {
                return Err(IndexError::Invalid(format!(
                    "the entry `{}` needs a plain name and a 64-digit hex sha256",
                    entry.name
                )));
            }
        }
        Ok(index)
    }
}

fn verify_signature(bytes: &[u8], signature: &str, public_keys: &[String]) -> Result<(), IndexError> {
    let signature = minisign::SignatureBox::from_string(signature)
        .map_err(|e| IndexError::BadSignature(e.to_string()))?;
    let mut last = "no public key configured".to_owned();
    for key in public_keys {
        let key =
            minisign::PublicKey::from_base64(key.trim()).map_err(|e| IndexError::BadKey(e.to_string()))?;
        match minisign::verify(&key, &signature, std::io::Cursor::new(bytes), true, false, false) {
            Ok(()) => return Ok(()),
            Err(error) => last = error.to_string(),
        }
    }
    Err(IndexError::BadSignature(last))
}

/// SHA-256 of `bytes` in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// `bytes` in lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new key pair: the secret key file's text (unencrypted: keep it like a password) and the
/// public key in base64, as `registry.sources[].public_keys` takes it.
pub fn generate_keys() -> Result<(String, String), String> {
    let pair = minisign::KeyPair::generate_unencrypted_keypair().map_err(|e| e.to_string())?;
    let secret = pair.sk.to_box(Some("ratchet registry secret key")).map_err(|e| e.to_string())?;
    Ok((secret.into_string(), pair.pk.to_base64()))
}

/// What `publish` wrote.
#[derive(Debug)]
pub struct Published {
    pub index: Index,
    /// Folders or ZIPs under the source folder that are not tasks that load, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Builds a registry in `out` from the task folders and ZIPs in `tasks`: one ZIP per task
/// (named after its name, version and digest, so versions never overwrite each other),
/// `index.json` and its signature with `secret_key` (a minisign secret key file's text; an
/// encrypted one needs `password`). Tasks that do not load are skipped and reported.
pub fn publish(
    tasks: &Path,
    out: &Path,
    secret_key: &str,
    password: Option<String>,
    serial: u64,
    expires: &str,
    limits: &LimitConfig,
) -> Result<Published, String> {
    let secret = minisign::SecretKeyBox::from_string(secret_key)
        .map_err(|e| format!("not a minisign secret key: {e}"))?;
    let secret = match password {
        Some(password) => secret.into_secret_key(Some(password)),
        None => secret.into_unencrypted_secret_key(),
    }
    .map_err(|e| format!("cannot open the secret key: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut entries = Vec::new();
    let mut skipped = Vec::new();
    for path in ratchet_plugin_host::loaders::candidates(tasks)? {
        let task = match ratchet_core::task::load(&path, limits) {
            Ok(task) => task,
            Err(error) => {
                skipped.push((path, error.to_string()));
                continue;
            }
        };
        let file = format!("{}-{}-{}.zip", task.name(), task.metadata.version, &task.digest[..12]);
        let bytes = zip_task(&path, task.name())?;
        std::fs::write(out.join(&file), &bytes).map_err(|e| format!("cannot write {file}: {e}"))?;
        entries.push(Entry {
            name: task.name().to_owned(),
            version: task.metadata.version.clone(),
            digest: task.digest.clone(),
            url: file,
            sha256: sha256_hex(&bytes),
            size: bytes.len() as u64,
        });
    }
    let index = Index { serial, expires: expires.to_owned(), tasks: entries };
    let bytes = serde_json::to_vec_pretty(&index).map_err(|e| e.to_string())?;
    let comment = format!("ratchet registry index, serial {serial}");
    let signature = minisign::sign(None, &secret, std::io::Cursor::new(&bytes), Some(&comment), None)
        .map_err(|e| format!("cannot sign the index: {e}"))?;
    std::fs::write(out.join("index.json"), &bytes).map_err(|e| format!("cannot write index.json: {e}"))?;
    std::fs::write(out.join(format!("index.json{SIGNATURE_SUFFIX}")), signature.into_string())
        .map_err(|e| format!("cannot write the signature: {e}"))?;
    Ok(Published { index, skipped })
}

/// The task at `path` (a folder, or a ZIP copied as it is) as a ZIP with one top-level folder
/// named `name`, its entries in a fixed order and time, so the same files give the same bytes.
fn zip_task(path: &Path, name: &str) -> Result<Vec<u8>, String> {
    if path.is_file() {
        return std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    }
    let mut files = Vec::new();
    collect(path, path, &mut files)?;
    files.sort();
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .last_modified_time(zip::DateTime::default());
    for relative in files {
        let bytes =
            std::fs::read(path.join(&relative)).map_err(|e| format!("cannot read {relative}: {e}"))?;
        writer.start_file(format!("{name}/{relative}"), options).map_err(|e| e.to_string())?;
        writer.write_all(&bytes).map_err(|e| e.to_string())?;
    }
    Ok(writer.finish().map_err(|e| e.to_string())?.into_inner())
}

/// Every plain file under `dir`, `/`-separated and relative to `root`; hidden ones skipped.
fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) -> Result<(), String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if ratchet_plugin_host::loaders::is_hidden(&path) {
            continue;
        }
        let kind = entry.file_type().map_err(|e| e.to_string())?;
        if kind.is_dir() {
            collect(root, &path, files)?;
        } else if kind.is_file() {
            let relative = path.strip_prefix(root).map_err(|e| e.to_string())?;
            let parts: Vec<String> =
                relative.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
            files.push(parts.join("/"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(index: &Index, secret: &str) -> (Vec<u8>, String) {
        let bytes = serde_json::to_vec(index).unwrap();
        let secret =
            minisign::SecretKeyBox::from_string(secret).unwrap().into_unencrypted_secret_key().unwrap();
        let signature = minisign::sign(None, &secret, std::io::Cursor::new(&bytes), None, None).unwrap();
        (bytes, signature.into_string())
    }

    #[test]
    fn only_a_signed_current_index_not_older_than_the_last_is_accepted() {
        let (secret, public) = generate_keys().unwrap();
        let (_, other) = generate_keys().unwrap();
        let index = Index { serial: 5, expires: "2100-01-01T00:00:00Z".into(), tasks: Vec::new() };
        let (bytes, signature) = signed(&index, &secret);
        let now = 1_700_000_000_000;
        assert_eq!(
            Index::verify(&bytes, &signature, &[other.clone(), public.clone()], None, now),
            Ok(index.clone())
        );
        assert!(matches!(
            Index::verify(&bytes, &signature, &[other], None, now),
            Err(IndexError::BadSignature(_))
        ));
        let mut tampered = bytes.clone();
        tampered[10] ^= 1;
        assert!(matches!(
            Index::verify(&tampered, &signature, std::slice::from_ref(&public), None, now),
            Err(IndexError::BadSignature(_))
        ));
        assert_eq!(
            Index::verify(&bytes, &signature, std::slice::from_ref(&public), Some(6), now),
            Err(IndexError::Rollback { got: 5, seen: 6 })
        );
        assert!(Index::verify(&bytes, &signature, std::slice::from_ref(&public), Some(5), now).is_ok());
        let old = Index { expires: "2020-01-01T00:00:00Z".into(), ..index };
        let (bytes, signature) = signed(&old, &secret);
        assert!(matches!(
            Index::verify(&bytes, &signature, &[public], None, now),
            Err(IndexError::Expired(_))
        ));
    }
}
