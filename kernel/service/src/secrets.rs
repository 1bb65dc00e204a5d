//! Secrets: values tasks need (API tokens) kept out of task folders and configuration.
//!
//! Each value is sealed with AES-256-GCM under a key the node reads from `RATCHET_SECRETS_KEY`
//! or `secrets.key_file`, with the secret's name as associated data (a sealed value moved to
//! another name does not open). The database holds sealed values and the key's fingerprint,
//! never the key. A node whose key does not match the stored fingerprints refuses to start
//! (see [`Secrets::open`]). A task receives only the secrets its metadata declares, and the
//! kernel masks their values in everything the run leaves behind.

use std::collections::BTreeMap;
use std::path::Path;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

use ratchet_core::Config;
use ratchet_storage::{QueueError, SealedSecret, Store, now_ms};

use crate::remote::index::hex;

/// The environment variable holding the key (64 hex digits); it wins over `secrets.key_file`.
pub const KEY_VARIABLE: &str = "RATCHET_SECRETS_KEY";

/// The shortest value accepted: a shorter one could not be masked without masking ordinary text.
pub const MIN_VALUE_CHARS: usize = 4;
/// The longest value accepted.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// The longest name accepted.
pub const MAX_NAME_BYTES: usize = 128;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretError {
    #[error(
        "the database holds {count} secret(s) but this node has no key to open them; set {KEY_VARIABLE} or \
         secrets.key_file to the key they were sealed with"
    )]
    NoKey { count: usize },
    #[error(
        "the secrets were sealed with the key {stored}, but this node's key is {ours}; give this node the key \
         they were sealed with ({KEY_VARIABLE} or secrets.key_file)"
    )]
    WrongKey { stored: String, ours: String },
    #[error("no secrets key: set {KEY_VARIABLE} or secrets.key_file (`ratchet secrets keygen` makes a key)")]
    KeyMissing,
    #[error("{0}")]
    BadKey(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no secret named {0}")]
    NotFound(String),
    #[error(
        "the secret {0} does not open with this key: it was changed outside Ratchet, or sealed under another name"
    )]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] QueueError),
}

/// The key that seals and opens secrets, and its fingerprint.
pub struct SecretKey {
    key: LessSafeKey,
    /// The first 16 hex digits of a SHA-256 of the key: names it without revealing it.
    pub id: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("id", &self.id).finish_non_exhaustive()
    }
}

impl SecretKey {
    /// A key written as 64 hex digits.
    pub fn parse(text: &str, origin: &str) -> Result<SecretKey, SecretError> {
        let bytes = unhex(text.trim()).filter(|bytes| bytes.len() == 32).ok_or_else(|| {
            SecretError::BadKey(format!(
                "{origin} is not a secrets key: write 64 hex digits (32 bytes), as `ratchet secrets keygen` prints"
            ))
        })?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| SecretError::BadKey(format!("{origin} is not an AES-256 key")))?;
        let digest = Sha256::new().chain_update(b"ratchet secrets key\0").chain_update(&bytes).finalize();
        Ok(SecretKey { key: LessSafeKey::new(unbound), id: hex(&digest[..8]) })
    }

    /// The node's key: `RATCHET_SECRETS_KEY`, else the file `secrets.key_file` names, else none.
    pub fn load(config: &Config) -> Result<Option<SecretKey>, SecretError> {
        if let Ok(text) = std::env::var(KEY_VARIABLE) {
            return SecretKey::parse(&text, KEY_VARIABLE).map(Some);
        }
        let Some(file) = &config.secrets.key_file else { return Ok(None) };
        SecretKey::read(file).map(Some)
    }

    fn read(file: &Path) -> Result<SecretKey, SecretError> {
        let text = std::fs::read_to_string(file).map_err(|error| {
            SecretError::BadKey(format!(
                "cannot read the secrets key file {} (secrets.key_file): {error}",
                file.display()
            ))
        })?;
        SecretKey::parse(&text, &format!("the secrets key file {}", file.display()))
    }

    /// A new random key, as 64 hex digits.
    pub fn generate() -> Result<String, SecretError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretError::BadKey("the system cannot provide random bytes".into()))?;
        Ok(hex(&bytes))
    }

    fn seal(&self, name: &str, value: &str) -> Result<String, SecretError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretError::BadKey("the system cannot provide random bytes".into()))?;
        let mut sealed = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(name.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SecretError::Invalid(format!("cannot seal the secret {name}")))?;
        Ok(format!("{}{}", hex(&nonce), hex(&sealed)))
    }

    fn open(&self, secret: &SealedSecret) -> Result<String, SecretError> {
        let corrupt = || SecretError::Corrupt(secret.name.clone());
        let bytes = unhex(&secret.sealed).filter(|bytes| bytes.len() > NONCE_LEN).ok_or_else(corrupt)?;
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
        let mut sealed = sealed.to_vec();
        let opened = self
            .key
            .open_in_place(nonce, Aad::from(secret.name.as_bytes()), &mut sealed)
            .map_err(|_| corrupt())?;
        String::from_utf8(opened.to_vec()).map_err(|_| corrupt())
    }
}

/// A secret as listed: never its value.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretInfo {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The secrets of a database, opened with a node's key (or none).
pub struct Secrets {
    store: Store,
    key: Option<SecretKey>,
}

impl Secrets {
    /// The secrets of `store` under `key`; refused when secrets exist that `key` cannot open
    /// (no key, or another key than the one that sealed them).
    pub async fn open(store: Store, key: Option<SecretKey>) -> Result<Secrets, SecretError> {
        let stored = store.secrets().await?;
        if let Some(first) = stored.first() {
            let Some(key) = &key else {
                return Err(SecretError::NoKey { count: stored.len() });
            };
            if let Some(other) = stored.iter().find(|secret| secret.key_id != key.id) {
                return Err(SecretError::WrongKey { stored: other.key_id.clone(), ours: key.id.clone() });
            }
            key.open(first)?;
        }
        Ok(Secrets { store, key })
    }

    /// No secrets at all: tasks that declare some run without them.
    pub fn none(store: Store) -> Secrets {
        Secrets { store, key: None }
    }

    /// Seals and stores `value` under `name`; true when the secret is new.
    pub async fn set(&self, name: &str, value: &str) -> Result<bool, SecretError> {
        check_name(name)?;
        if value.chars().count() < MIN_VALUE_CHARS || value.len() > MAX_VALUE_BYTES {
            return Err(SecretError::Invalid(format!(
                "a secret's value must be {MIN_VALUE_CHARS} characters to {MAX_VALUE_BYTES} bytes (a shorter one \
                 could not be masked in logs without masking ordinary text)"
            )));
        }
        let key = self.key.as_ref().ok_or(SecretError::KeyMissing)?;
        let sealed = key.seal(name, value)?;
        Ok(self.store.put_secret(name, &sealed, &key.id, now_ms()).await?)
    }

    pub async fn list(&self) -> Result<Vec<SecretInfo>, SecretError> {
        let stored = self.store.secrets().await?;
        Ok(stored
            .into_iter()
            .map(|s| SecretInfo { name: s.name, created_at: s.created_at, updated_at: s.updated_at })
            .collect())
    }

    /// One secret as listed; `NotFound` when there is none of that name.
    pub async fn info(&self, name: &str) -> Result<SecretInfo, SecretError> {
        let secret = self.store.secret(name).await?.ok_or_else(|| SecretError::NotFound(name.to_owned()))?;
        Ok(SecretInfo { name: secret.name, created_at: secret.created_at, updated_at: secret.updated_at })
    }

    pub async fn remove(&self, name: &str) -> Result<(), SecretError> {
        if self.store.remove_secret(name).await? {
            Ok(())
        } else {
            Err(SecretError::NotFound(name.to_owned()))
        }
    }

    /// The values of the secrets `task` declares, by name; a declared secret that is not set
    /// is absent (and logged).
    pub async fn for_task(&self, task: &ratchet_core::Task) -> Result<BTreeMap<String, String>, SecretError> {
        let declared = &task.metadata.secrets;
        if declared.is_empty() {
            return Ok(BTreeMap::new());
        }
        let Some(key) = &self.key else {
            tracing::warn!(task = task.name(), "the task declares secrets, but this node has no secrets key");
            return Ok(BTreeMap::new());
        };
        let mut values = BTreeMap::new();
        for secret in self.store.secrets_named(declared).await? {
            values.insert(secret.name.clone(), key.open(&secret)?);
        }
        for missing in declared.iter().filter(|name| !values.contains_key(*name)) {
            tracing::warn!(task = task.name(), "the task declares the secret {missing}, which is not set");
        }
        Ok(values)
    }
}

/// A secret's name: a letter or `_`, then letters, digits and `_` (`GITHUB_TOKEN`).
pub fn check_name(name: &str) -> Result<(), SecretError> {
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !starts || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') || name.len() > MAX_NAME_BYTES {
        return Err(SecretError::Invalid(format!(
            "`{name}` is not a secret name: a letter or _, then letters, digits and _ (GITHUB_TOKEN), at most \
             {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(name: &str, sealed: String, key: &SecretKey) -> SealedSecret {
        SealedSecret { name: name.into(), sealed, key_id: key.id.clone(), created_at: 0, updated_at: 0 }
    }

    #[test]
    fn a_value_opens_under_its_name_and_key_only() {
        let key = SecretKey::parse(&SecretKey::generate().unwrap(), "test").unwrap();
        let other = SecretKey::parse(&SecretKey::generate().unwrap(), "test").unwrap();
        assert_ne!(key.id, other.id);
        let text = key.seal("GITHUB_TOKEN", "ghp_abc123").unwrap();
        assert!(!text.contains("ghp_abc123"));
        assert_eq!(key.open(&sealed("GITHUB_TOKEN", text.clone(), &key)).unwrap(), "ghp_abc123");
        assert!(matches!(key.open(&sealed("OTHER", text.clone(), &key)), Err(SecretError::Corrupt(_))));
        assert!(matches!(other.open(&sealed("GITHUB_TOKEN", text, &key)), Err(SecretError::Corrupt(_))));
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(key.seal("A", "same").unwrap(), key.seal("A", "same").unwrap());
    }

    #[test]
    fn keys_and_names_are_checked() {
        for bad in ["", "abc", &"0".repeat(63), &"g".repeat(64)] {
            assert!(
                SecretKey::parse(bad, "the key").unwrap_err().to_string().contains("64 hex digits"),
                "{bad}"
            );
        }
        assert!(
            SecretKey::parse(&format!(" {}\n", "ab".repeat(32)), "file").is_ok(),
            "white space is trimmed"
        );
        for good in ["GITHUB_TOKEN", "_x", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1A", "A-B", "A B", "Ä"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
