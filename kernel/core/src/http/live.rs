//! Performing a task's request on the real network, within the egress policy.
//!
//! One `reqwest` client per kernel (connection pooling, TLS set up once). Its DNS resolver
//! applies the private-address rule to every address it returns, so the client only ever
//! connects to addresses that passed the policy (no DNS-rebinding window). Redirects are
//! followed here, not by reqwest, so each hop's URL is checked like the first.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LOCATION};
use reqwest::{Method, StatusCode};
use url::Url;
use worker_protocol::FetchRequest;

use super::exchange::HttpResponse;
use super::policy::{Denied, EgressPolicy, HostRule, non_public};
use crate::config::EgressConfig;

/// Limits on each request.
#[derive(Debug, Clone, Copy)]
pub struct EgressLimits {
    pub max_redirects: u32,
    pub timeout: Duration,
    pub max_request_bytes: u64,
    pub max_response_bytes: u64,
}

/// Why a request produced no response.
#[derive(Debug, Clone, PartialEq)]
pub enum FetchFailure {
    Denied(Denied),
    Network(String),
    Timeout(Duration),
}

/// The kernel's HTTP client for tasks.
pub struct Egress {
    /// Built on the first request: TLS set-up costs milliseconds that runs without `fetch`
    /// (and every cold `run-once`) should not pay.
    client: OnceLock<Result<reqwest::Client, String>>,
    allow: Vec<HostRule>,
    limits: EgressLimits,
}

impl Egress {
    pub fn new(config: &EgressConfig) -> Result<Egress, String> {
        let limits = EgressLimits {
            max_redirects: config.max_redirects,
            timeout: Duration::from_secs_f64(config.request_timeout_secs),
            max_request_bytes: config.max_request_bytes.0,
            max_response_bytes: config.max_response_bytes.0,
        };
        Ok(Egress { client: OnceLock::new(), allow: config.allow_rules()?, limits })
    }

    fn client(&self) -> Result<&reqwest::Client, FetchFailure> {
        self.client
            .get_or_init(|| build_client(&self.allow))
            .as_ref()
            .map_err(|e| FetchFailure::Network(e.clone()))
    }

    /// The operator's rules combined with a task's `allowed_hosts`.
    pub fn policy_for(&self, task_hosts: Vec<HostRule>) -> EgressPolicy {
        EgressPolicy { allow: self.allow.clone(), task_hosts }
    }

    /// Performs `request` under `policy`, following redirects, within the request timeout.
    pub async fn fetch(
        &self,
        request: &FetchRequest,
        policy: &EgressPolicy,
    ) -> Result<HttpResponse, FetchFailure> {
        match tokio::time::timeout(self.limits.timeout, self.follow(request, policy)).await {
            Ok(result) => result,
            Err(_) => Err(FetchFailure::Timeout(self.limits.timeout)),
        }
    }

    async fn follow(
        &self,
        request: &FetchRequest,
        policy: &EgressPolicy,
    ) -> Result<HttpResponse, FetchFailure> {
        let mut url =
            Url::parse(&request.url).map_err(|e| network(format!("invalid URL `{}`: {e}", request.url)))?;
        let mut method = Method::from_bytes(request.method.as_bytes())
            .map_err(|_| network(format!("invalid HTTP method `{}`", request.method)))?;
        let headers = header_map(&request.headers)?;
        let mut body = request.body.clone();
        if body.as_ref().is_some_and(|b| b.len() as u64 > self.limits.max_request_bytes) {
            return Err(network(format!(
                "request body exceeds the limit of {} bytes",
                self.limits.max_request_bytes
            )));
        }
        let mut redirects = Vec::new();
        loop {
            self.check_hop(&url, policy).await?;
            let mut builder = self.client()?.request(method.clone(), url.clone()).headers(headers.clone());
            if let Some(body) = &body {
                builder = builder.body(body.clone());
            }
            let response = builder.send().await.map_err(classify)?;
            let status = response.status();
            if let Some(next) = redirect_target(&url, &response) {
                if redirects.len() as u32 >= self.limits.max_redirects {
                    return Err(network(format!(
                        "more than {} redirects (last to {next})",
                        self.limits.max_redirects
                    )));
                }
                if status == StatusCode::SEE_OTHER
                    || (matches!(status, StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND)
                        && method == Method::POST)
                {
                    method = Method::GET;
                    body = None;
                }
                redirects.push(next.to_string());
                url = next;
                continue;
            }
            return self.read(response, redirects).await;
        }
    }

    /// The URL check, plus, for a name allow-listed only on other ports, its addresses.
    async fn check_hop(&self, url: &Url, policy: &EgressPolicy) -> Result<(), FetchFailure> {
        let target = policy.check_url(url).map_err(FetchFailure::Denied)?;
        if target.ip.is_none()
            && policy.allows_name(&target.host)
            && !policy.allows(&target.host, target.port)
        {
            let addresses = tokio::net::lookup_host((target.host.as_str(), target.port))
                .await
                .map_err(|e| network(format!("cannot resolve {}: {e}", target.host)))?;
            for address in addresses {
                policy
                    .check_address(&target.host, target.port, address.ip())
                    .map_err(FetchFailure::Denied)?;
            }
        }
        Ok(())
    }

    async fn read(
        &self,
        mut response: reqwest::Response,
        redirects: Vec<String>,
    ) -> Result<HttpResponse, FetchFailure> {
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned())
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if (body.len() + chunk.len()) as u64 > self.limits.max_response_bytes {
                return Err(network(format!(
                    "response body exceeds the limit of {} bytes",
                    self.limits.max_response_bytes
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status: status.as_u16(),
            status_text: status.canonical_reason().unwrap_or("").to_owned(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            redirects,
        })
    }
}

fn build_client(allow: &[HostRule]) -> Result<reqwest::Client, String> {
    // reqwest and sqlx both bring rustls; ring is the one provider compiled in.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let resolver = PolicyResolver { policy: EgressPolicy { allow: allow.to_vec(), task_hosts: Vec::new() } };
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // A proxy would connect on our behalf, past the address checks.
        .no_proxy()
        .dns_resolver(Arc::new(resolver))
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("ratchet/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

fn network(message: String) -> FetchFailure {
    FetchFailure::Network(message)
}

fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, FetchFailure> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| network(format!("invalid header name `{name}`")))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| network(format!("invalid value for header `{name}`")))?;
        map.append(name, value);
    }
    Ok(map)
}

fn redirect_target(url: &Url, response: &reqwest::Response) -> Option<Url> {
    if !response.status().is_redirection() {
        return None;
    }
    let location = response.headers().get(LOCATION)?.to_str().ok()?;
    url.join(location).ok()
}

/// Maps a reqwest error to what the task sees; a refusal by the resolver stays a denial.
fn classify(error: reqwest::Error) -> FetchFailure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(denied) = cause.downcast_ref::<ResolverDenied>() {
            return FetchFailure::Denied(denied.0.clone());
        }
        source = cause.source();
    }
    if error.is_timeout() {
        return FetchFailure::Network(format!("the request timed out: {}", chain(&error)));
    }
    FetchFailure::Network(chain(&error))
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    parts.join(": ")
}

/// The refusal the resolver returns, recognised again in [`classify`].
#[derive(Debug)]
struct ResolverDenied(Denied);

impl std::fmt::Display for ResolverDenied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "denied by the egress policy: {}", self.0)
    }
}

impl std::error::Error for ResolverDenied {}

/// Resolves with the system resolver and keeps only the addresses the policy allows.
struct PolicyResolver {
    policy: EgressPolicy,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_ascii_lowercase();
        let private_ok = self.policy.allows_name(&host);
        Box::pin(async move {
            let resolved: Vec<_> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<_> = resolved
                .into_iter()
                .filter(|address| match non_public(address.ip()) {
                    Some(class) if !private_ok => {
                        refused = Some(Denied {
                            rule: format!(
                                "{host} resolves to {}, a {class} address; allow-list `{host}` \
                                 (egress.allow_hosts or --allow-host) to reach it",
                                address.ip()
                            ),
                        });
                        false
                    }
                    _ => true,
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (true, Some(denied)) => {
                    Err(Box::new(ResolverDenied(denied)) as Box<dyn std::error::Error + Send + Sync>)
                }
                _ => Ok(Box::new(allowed.into_iter()) as Addrs),
            }
        })
    }
}
