//! Which client a request comes from, for the per-client rate limit.
//!
//! The peer address, unless the peer is one of `server.trusted_proxies`: then the header
//! `X-Forwarded-For` is read from its last entry backwards (each proxy appends the address it
//! heard from), skipping trusted proxies, and the first address that is not one is the client.
//! A client cannot pose as another by sending the header itself: only entries appended by
//! trusted proxies are believed, and an entry that is not an address ends the walk.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;

const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client behind `peer` (see the module documentation).
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| trusted.iter().any(|range| range.contains(address));
    if !is_trusted(&peer) {
        return peer;
    }
    // Several header lines are one list, in order; a line that is not text is no address.
    let lines = headers.get_all(FORWARDED_FOR).iter().rev().map(|v| v.to_str().unwrap_or(""));
    let mut client = peer;
    for entry in lines.flat_map(|line| line.rsplit(',')) {
        let Some(address) = parse(entry.trim()) else {
            return client;
        };
        if !is_trusted(&address) {
            return address;
        }
        client = address;
    }
    client
}

/// An address as proxies write it: `203.0.113.7`, `2001:db8::1`, or either with a port.
fn parse(entry: &str) -> Option<IpAddr> {
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(FORWARDED_FOR, line.parse().expect("a header value"));
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    fn client(peer: &str, lines: &[&str], trusted: &[&str]) -> IpAddr {
        let trusted: Vec<IpNet> = trusted.iter().map(|t| t.parse().expect("a range")).collect();
        client_address(ip(peer), &headers(lines), &trusted)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        assert_eq!(client("198.51.100.9", &["203.0.113.7"], &[]), ip("198.51.100.9"));
        assert_eq!(client("198.51.100.9", &["203.0.113.7"], &["10.0.0.0/8"]), ip("198.51.100.9"));
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_entry_is_the_client() {
        // The client spoofs an entry; the proxy appends the address it really heard from.
        let chain = ["1.1.1.1, 203.0.113.7"];
        assert_eq!(client("10.0.0.5", &chain, &["10.0.0.0/8"]), ip("203.0.113.7"));
        // Two proxies, the header split over two lines, one entry with a port.
        let lines = ["203.0.113.7:51000, 10.0.0.9", "10.0.0.6"];
        assert_eq!(client("10.0.0.5", &lines, &["10.0.0.0/8"]), ip("203.0.113.7"));
        assert_eq!(client("::1", &["2001:db8::7"], &["::1/128"]), ip("2001:db8::7"));
    }

    #[test]
    fn without_a_usable_header_the_last_trusted_hop_is_the_client() {
        assert_eq!(client("10.0.0.5", &[], &["10.0.0.0/8"]), ip("10.0.0.5"));
        assert_eq!(client("10.0.0.5", &["203.0.113.7, garbage"], &["10.0.0.0/8"]), ip("10.0.0.5"));
        assert_eq!(client("10.0.0.5", &["garbage, 10.0.0.6"], &["10.0.0.0/8"]), ip("10.0.0.6"));
        assert_eq!(client("10.0.0.5", &["10.0.0.7"], &["10.0.0.0/8"]), ip("10.0.0.7"));
    }
}
