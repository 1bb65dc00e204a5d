//! The egress policy: which URLs and addresses a task's `fetch` may reach.
//!
//! By default only public addresses. Loopback, private, link-local (cloud metadata lives at
//! 169.254.169.254), unspecified and other special-purpose addresses are denied unless the
//! host is allow-listed by the operator (`egress.allow_hosts`, `--allow-host`). A task may
//! narrow this further with `allowed_hosts` in its metadata. Checks run on the URL (every
//! hop of a redirect chain) and on every address DNS returns.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// `host` or `host:port`, as written in configuration, metadata or `--allow-host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// Lower-case host name, or an IP address in canonical form.
    host: String,
    port: Option<u16>,
}

impl HostRule {
    pub fn parse(text: &str) -> Result<HostRule, String> {
        let text = text.trim();
        let url = Url::parse(&format!("http://{text}/"))
            .map_err(|_| format!("`{text}` is not a host or host:port"))?;
        let host = match url.host() {
            Some(Host::Domain(name)) => name.to_ascii_lowercase(),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(format!("`{text}` has no host")),
        };
        let clean = url.path() == "/" && url.query().is_none() && url.username().is_empty();
        if !clean || text.contains('/') {
            return Err(format!("`{text}` must be a host or host:port, without scheme or path"));
        }
        // `url` drops a port equal to the scheme default; keep what the user wrote.
        let port = url.port().or_else(|| text.ends_with(":80").then_some(80));
        Ok(HostRule { host, port })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        self.host == host && self.port.is_none_or(|p| p == port)
    }

    pub fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Display for HostRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) if self.host.contains(':') => write!(f, "[{}]:{port}", self.host),
            Some(port) => write!(f, "{}:{port}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// Why a request was refused, phrased for the task author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub rule: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rule)
    }
}

/// The operator's rules plus, for one run, the task's own list.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Hosts that may be reached even at non-public addresses.
    pub allow: Vec<HostRule>,
    /// When non-empty, the only hosts the task may reach at all.
    pub task_hosts: Vec<HostRule>,
}

/// A URL's host and port, normalised for matching.
pub struct Target {
    pub host: String,
    pub port: u16,
    pub ip: Option<IpAddr>,
}

impl EgressPolicy {
    /// Checks what can be known from the URL alone. IP literals (in any spelling the URL
    /// standard accepts: decimal, hex, octal, IPv4-mapped IPv6) are checked here; names are
    /// checked again on their resolved addresses.
    pub fn check_url(&self, url: &Url) -> Result<Target, Denied> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(denied(format!("scheme `{}` is not allowed; use http or https", url.scheme())));
        }
        let (host, ip) = match url.host() {
            Some(Host::Domain(name)) => (name.to_ascii_lowercase(), None),
            Some(Host::Ipv4(ip)) => (ip.to_string(), Some(IpAddr::V4(ip))),
            Some(Host::Ipv6(ip)) => (ip.to_string(), Some(IpAddr::V6(ip))),
            None => return Err(denied("the URL has no host".into())),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        if !self.task_hosts.is_empty() && !self.task_hosts.iter().any(|r| r.matches(&host, port)) {
            return Err(denied(format!(
                "{host}:{port} is not in the task's allowed_hosts ({})",
                list(&self.task_hosts)
            )));
        }
        if let Some(ip) = ip {
            self.check_address(&host, port, ip)?;
        }
        Ok(Target { host, port, ip })
    }

    /// Checks one address `host` resolved to.
    pub fn check_address(&self, host: &str, port: u16, ip: IpAddr) -> Result<(), Denied> {
        match non_public(ip) {
            Some(class) if !self.allows(host, port) => {
                let what = if host == ip.to_string() {
                    format!("{ip} is")
                } else {
                    format!("{host} resolves to {ip},")
                };
                Err(denied(format!(
                    "{what} a {class} address; allow-list `{}` (egress.allow_hosts or --allow-host) to reach it",
                    HostRule { host: host.to_owned(), port: Some(port) }
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether the operator allow-listed `host` on `port`.
    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.allow.iter().any(|r| r.matches(host, port))
    }

    /// Whether the operator allow-listed `host` on some port (all the DNS resolver knows).
    pub fn allows_name(&self, host: &str) -> bool {
        self.allow.iter().any(|r| r.host == host)
    }
}

fn denied(rule: String) -> Denied {
    Denied { rule }
}

fn list(rules: &[HostRule]) -> String {
    rules.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// The kind of special-purpose address `ip` is, or `None` for a public address.
pub fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => non_public_v4(ip),
        IpAddr::V6(ip) => non_public_v6(ip),
    }
}

fn non_public_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip.is_unspecified() || a == 0 => Some("unspecified"),
        _ if ip.is_loopback() => Some("loopback"),
        _ if ip.is_private() => Some("private"),
        _ if ip.is_link_local() => Some("link-local"),
        (100, 64..=127, _) => Some("shared (carrier-grade NAT)"),
        (192, 0, 0) => Some("IETF protocol"),
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => Some("documentation"),
        (198, 18..=19, _) => Some("benchmarking"),
        _ if ip.is_multicast() => Some("multicast"),
        _ if ip.is_broadcast() || a >= 240 => Some("reserved"),
        _ => None,
    }
}

fn non_public_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return non_public_v4(v4);
    }
    let segments = ip.segments();
    let embedded_v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match segments {
        _ if ip.is_unspecified() => Some("unspecified"),
        _ if ip.is_loopback() => Some("loopback"),
        [0, 0, 0, 0, 0, 0, high, low] => non_public_v4(embedded_v4(high, low)).or(Some("IPv4-compatible")),
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => non_public_v4(embedded_v4(high, low)),
        [0x2002, high, low, ..] => non_public_v4(embedded_v4(high, low)),
        [first, ..] if first & 0xfe00 == 0xfc00 => Some("private (unique local)"),
        [first, ..] if first & 0xffc0 == 0xfe80 => Some("link-local"),
        [first, ..] if first & 0xff00 == 0xff00 => Some("multicast"),
        [0x2001, 0xdb8, ..] => Some("documentation"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, allow: &[&str], task: &[&str]) -> Result<(), String> {
        let policy = EgressPolicy {
            allow: allow.iter().map(|r| HostRule::parse(r).unwrap()).collect(),
            task_hosts: task.iter().map(|r| HostRule::parse(r).unwrap()).collect(),
        };
        let url = Url::parse(url).map_err(|e| e.to_string())?;
        policy.check_url(&url).map(|_| ()).map_err(|d| d.rule)
    }

    #[test]
    fn every_spelling_of_an_inside_address_is_denied() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://0x7f.0.0.1/",
            "http://[::1]/",
            "http://[0:0:0:0:0:0:0:1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://0.0.0.0/",
            "http://0/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://100.64.0.1/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
        ] {
            let result = check(url, &[], &[]);
            assert!(result.as_ref().is_err_and(|r| r.contains("address")), "{url}: {result:?}");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_url_check() {
        for url in ["https://example.com/x", "http://93.184.216.34/", "https://[2606:2800:220:1::]/"] {
            assert_eq!(check(url, &[], &[]), Ok(()), "{url}");
        }
    }

    #[test]
    fn allow_rules_match_host_and_port() {
        assert_eq!(check("http://127.0.0.1:8080/", &["127.0.0.1:8080"], &[]), Ok(()));
        assert_eq!(check("http://127.0.0.1:8080/", &["127.0.0.1"], &[]), Ok(()));
        assert!(check("http://127.0.0.1:9090/", &["127.0.0.1:8080"], &[]).is_err());
        assert_eq!(check("http://[::1]:81/", &["[::1]:81"], &[]), Ok(()));
    }

    #[test]
    fn task_hosts_narrow_the_policy() {
        assert_eq!(check("https://api.example.com/", &[], &["api.example.com"]), Ok(()));
        let denied = check("https://other.example.com/", &[], &["api.example.com"]).unwrap_err();
        assert!(denied.contains("not in the task's allowed_hosts (api.example.com)"), "{denied}");
    }

    #[test]
    fn other_schemes_are_denied() {
        assert!(check("file:///etc/passwd", &[], &[]).unwrap_err().contains("scheme `file`"));
        assert!(check("ftp://example.com/", &[], &[]).is_err());
    }

    #[test]
    fn host_rules_parse_or_explain() {
        assert_eq!(HostRule::parse("Example.COM:8443").unwrap().to_string(), "example.com:8443");
        assert_eq!(HostRule::parse("[::1]:80").unwrap().to_string(), "[::1]:80");
        assert_eq!(HostRule::parse("localhost").unwrap().to_string(), "localhost");
        for bad in ["http://x.com", "x.com/path", "", "a b"] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }
}
