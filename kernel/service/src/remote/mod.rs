//! HTTPS task registries: a node polls each one's signed `index.json` (with `If-None-Match`),
//! verifies it ([`index`]), downloads each listed ZIP it does not have, checking size and
//! SHA-256 while the bytes arrive, keeps it in the data folder by digest, and serves the
//! listed versions. The last accepted index and its signature are kept too, so a node restarts
//! with the registry unreachable and serves the same tasks; they are verified again then.
//!
//! Data folder layout: `registry/SOURCE/index.json`, `index.json.minisig`, `state.json` (the
//! serial accepted and the ETag), and `registry/cache/SHA256/NAME.zip`.

pub mod index;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use ratchet_core::config::{LimitConfig, RemoteSource, registry_url_allowed};
use ratchet_core::task::TaskError;

use crate::{Reload, Service, now_ms};
use index::{Entry, Index, MAX_INDEX_BYTES, SIGNATURE_SUFFIX};

/// How long one request to a registry may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What a node remembers of a registry between polls and restarts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    serial: Option<u64>,
    etag: Option<String>,
}

/// What one poll found.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// A new index was accepted and applied.
    Updated { serial: u64 },
    /// The registry answered 304: nothing changed.
    NotModified,
    /// The registry could not be reached or refused; the last accepted index serves.
    Offline { serial: u64, error: String },
}

/// A registry's client and its folder in the data folder.
pub struct Registry {
    source: RemoteSource,
    client: reqwest::Client,
    folder: PathBuf,
    cache: PathBuf,
}

impl Registry {
    pub fn new(source: RemoteSource, data_dir: &Path) -> Result<Registry, String> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let redirects = reqwest::redirect::Policy::custom(|attempt| {
            if attempt.previous().len() >= 5 {
                attempt.error("too many redirects")
            } else if registry_url_allowed(attempt.url()) {
                attempt.follow()
            } else {
                attempt.error("a registry redirect must stay on HTTPS")
            }
        });
        let client = reqwest::Client::builder()
            .redirect(redirects)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("ratchet/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the registry client: {e}"))?;
        let folder = data_dir.join("registry").join(&source.name);
        let cache = data_dir.join("registry").join("cache");
        for dir in [&folder, &cache] {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        Ok(Registry { source, client, folder, cache })
    }

    pub fn name(&self) -> &str {
        &self.source.name
    }

    /// The index to serve: a new one from the registry, or (on 304, or when the registry
    /// cannot be reached or refuses) the last accepted one, verified again.
    async fn index(&self) -> Result<(Index, Polled), String> {
        let state = self.state();
        let kept = self.folder.join("index.json").is_file();
        match self.fetch_index(&state, kept).await {
            Ok(Some((index, bytes, signature, etag))) => {
                write(&self.folder.join("index.json"), &bytes)?;
                write(&self.folder.join(format!("index.json{SIGNATURE_SUFFIX}")), signature.as_bytes())?;
                let state = State { serial: Some(index.serial), etag };
                write(&self.folder.join("state.json"), &serde_json::to_vec(&state).unwrap_or_default())?;
                let serial = index.serial;
                Ok((index, Polled::Updated { serial }))
            }
            Ok(None) => {
                let index = self.stored_index().ok_or("the registry answered 304 but no index is kept")??;
                Ok((index, Polled::NotModified))
            }
            Err(error) => match self.stored_index() {
                Some(Ok(index)) => {
                    let serial = index.serial;
                    Ok((index, Polled::Offline { serial, error }))
                }
                Some(Err(kept)) => Err(format!("{error}; the kept index does not verify either: {kept}")),
                None => Err(error),
            },
        }
    }

    /// The index the registry holds now, verified; `None` on 304.
    async fn fetch_index(
        &self,
        state: &State,
        conditional: bool,
    ) -> Result<Option<(Index, Vec<u8>, String, Option<String>)>, String> {
        let mut request = self.client.get(&self.source.url);
        if conditional && let Some(etag) = &state.etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = request.send().await.map_err(|e| format!("cannot fetch {}: {e}", self.source.url))?;
        if response.status() == reqwest::StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(format!("{} answered {}", self.source.url, response.status()));
        }
        let etag =
            response.headers().get(reqwest::header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = read_limited(response, MAX_INDEX_BYTES, "the index").await?;
        let signature_url = format!("{}{SIGNATURE_SUFFIX}", self.source.url);
        let signature = self.client.get(&signature_url).send().await.map_err(|e| e.to_string())?;
        if !signature.status().is_success() {
            return Err(format!("{signature_url} answered {}", signature.status()));
        }
        let signature = read_limited(signature, 64 * 1024, "the signature").await?;
        let signature = String::from_utf8_lossy(&signature).into_owned();
        let index = Index::verify(&bytes, &signature, &self.source.public_keys, state.serial, now_ms())
            .map_err(|e| e.to_string())?;
        Ok(Some((index, bytes, signature, etag)))
    }

    fn state(&self) -> State {
        std::fs::read(self.folder.join("state.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// The last accepted index, verified again (its signature, its expiry).
    fn stored_index(&self) -> Option<Result<Index, String>> {
        let bytes = std::fs::read(self.folder.join("index.json")).ok()?;
        let signature =
            std::fs::read_to_string(self.folder.join(format!("index.json{SIGNATURE_SUFFIX}"))).ok()?;
        Some(
            Index::verify(&bytes, &signature, &self.source.public_keys, None, now_ms())
                .map_err(|e| e.to_string()),
        )
    }

    /// Where the ZIP of `entry` is kept: by its digest, under its task's name (the name a
    /// task without one in its metadata takes).
    fn cached_path(&self, entry: &Entry) -> PathBuf {
        self.cache.join(&entry.sha256).join(format!("{}.zip", entry.name))
    }

    /// The ZIP of `entry` in the cache, downloaded first when missing or damaged.
    async fn zip(&self, entry: &Entry) -> Result<PathBuf, String> {
        let path = self.cached_path(entry);
        if let Ok(bytes) = std::fs::read(&path)
            && bytes.len() as u64 == entry.size
            && index::sha256_hex(&bytes) == entry.sha256
        {
            return Ok(path);
        }
        let base = url::Url::parse(&self.source.url).map_err(|e| e.to_string())?;
        let url = base.join(&entry.url).map_err(|e| format!("the entry's url `{}`: {e}", entry.url))?;
        if !registry_url_allowed(&url) {
            return Err(format!("{url}: ZIPs are fetched over HTTPS"));
        }
        let response =
            self.client.get(url.clone()).send().await.map_err(|e| format!("cannot fetch {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let bytes = read_checked(response, entry).await.map_err(|e| format!("{url}: {e}"))?;
        std::fs::create_dir_all(path.parent().unwrap_or(&self.cache)).map_err(|e| e.to_string())?;
        write(&path, &bytes)?;
        Ok(path)
    }
}

impl Service {
    /// Polls `registry` once and serves what its index lists: new versions load (a ZIP that
    /// fails its checks is reported and its task keeps the version it had), versions no longer
    /// listed stop serving.
    pub async fn poll_registry(&self, registry: &Registry) -> Result<Polled, String> {
        let (index, polled) = registry.index().await?;
        let current = self.registry();
        if polled == Polled::NotModified && !current.paths_of(registry.name()).is_empty() {
            return Ok(polled);
        }
        let mut listed: BTreeSet<PathBuf> = BTreeSet::new();
        let mut failed_names: BTreeSet<&str> = BTreeSet::new();
        let mut loaded: Vec<(Option<Result<ratchet_core::Task, TaskError>>, PathBuf)> = Vec::new();
        let limits = self.kernel.config().limits.clone();
        for entry in &index.tasks {
            let path = registry.cached_path(entry);
            listed.insert(path.clone());
            // A version already serving from its cached ZIP needs neither a download nor a load.
            if current.serving_digest(&path).as_deref() == Some(entry.digest.as_str()) {
                continue;
            }
            let task = match registry.zip(entry).await {
                Ok(path) => load_entry(&path, entry, &limits),
                Err(error) => {
                    failed_names.insert(&entry.name);
                    let message = format!("task {} {}: {error}", entry.name, entry.version);
                    Err(TaskError::Archive { archive: path.clone(), message })
                }
            };
            loaded.push((Some(task), path));
        }
        // Versions no longer listed stop serving (first, so a new version may take the name),
        // unless their task's new version failed.
        let gone: Vec<_> = current
            .entries()
            .filter(|e| e.source == registry.name() && !listed.contains(&e.task.origin))
            .filter(|e| !failed_names.contains(e.task.name()))
            .map(|e| (None, e.task.origin.clone()))
            .collect();
        loaded.splice(0..0, gone);
        let reloads = self.apply_loaded(registry.name(), loaded).await;
        let failures = reloads.iter().filter(|r| matches!(r, Reload::Failed { .. })).count();
        if failures > 0 {
            tracing::warn!(source = registry.name(), "{failures} task(s) of the registry did not load");
        }
        Ok(polled)
    }

    /// Polls each registry every `poll` interval until `stop`.
    pub fn poll_registries(
        self: &Arc<Self>,
        registries: Vec<Registry>,
        stop: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        registries
            .into_iter()
            .map(|registry| {
                let (service, mut stop) = (Arc::clone(self), stop.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(registry.source.poll) => {}
                            _ = stop.changed() => return,
                        }
                        service.poll_and_log(&registry).await;
                    }
                })
            })
            .collect()
    }

    /// Polls `registry`, logging what happened.
    pub async fn poll_and_log(&self, registry: &Registry) {
        match self.poll_registry(registry).await {
            Ok(Polled::Updated { serial }) => {
                tracing::info!(source = registry.name(), "registry index serial {serial} accepted");
            }
            Ok(Polled::NotModified) => {}
            Ok(Polled::Offline { serial, error }) => tracing::warn!(
                source = registry.name(),
                "{error}; serving the index kept from before (serial {serial})"
            ),
            Err(error) => tracing::warn!(source = registry.name(), "{error}"),
        }
    }
}

/// The task in the cached ZIP at `path`, which must be the one `entry` names.
fn load_entry(path: &Path, entry: &Entry, limits: &LimitConfig) -> Result<ratchet_core::Task, TaskError> {
    let task = ratchet_core::task::load(path, limits)?;
    if task.digest == entry.digest && task.name() == entry.name {
        return Ok(task);
    }
    Err(TaskError::Archive {
        archive: path.to_owned(),
        message: format!(
            "holds task {} with digest {}, not {} with digest {} as the index says",
            task.name(),
            task.digest,
            entry.name,
            entry.digest
        ),
    })
}

/// The body of `response`, refused past `limit` bytes.
async fn read_limited(mut response: reqwest::Response, limit: u64, what: &str) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| format!("reading {what}: {e}"))? {
        if bytes.len() as u64 + chunk.len() as u64 > limit {
            return Err(format!("{what} is larger than {limit} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// The body of a ZIP's response, checked against the entry's size and SHA-256 as it arrives.
async fn read_checked(mut response: reqwest::Response, entry: &Entry) -> Result<Vec<u8>, String> {
    let mut hasher = Sha256::new();
    let mut bytes = Vec::with_capacity(entry.size.min(64 * 1024 * 1024) as usize);
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if bytes.len() as u64 + chunk.len() as u64 > entry.size {
            return Err(format!("larger than the {} bytes the index lists", entry.size));
        }
        hasher.update(&chunk);
        bytes.extend_from_slice(&chunk);
    }
    if bytes.len() as u64 != entry.size {
        return Err(format!("{} bytes, not the {} the index lists", bytes.len(), entry.size));
    }
    let sha256 = index::hex(&hasher.finalize());
    if sha256 != entry.sha256 {
        return Err(format!("SHA-256 {sha256}, not {} as the index lists: refusing it", entry.sha256));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` through a temporary file and a rename: a reader sees the old file
/// or the new one, never half of one.
fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
