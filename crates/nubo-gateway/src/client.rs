//! Which address a request comes from.
//!
//! The socket's peer, unless that peer is one of the node's trusted
//! proxies (`nubo node --trusted-proxies`): then `X-Forwarded-For` is
//! read from the right, skipping trusted proxies, and the first address
//! that is not one is the client. Addresses to the left of it were
//! written by the client itself and are never believed. Without trusted
//! proxies the header is ignored, so a client cannot choose its address.

use ipnet::IpNet;
use std::net::IpAddr;

/// The node's trusted proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop.parse::<IpAddr>() {
                Ok(ip) if self.trusts(ip) => client = ip,
                Ok(ip) => return ip,
                Err(_) => return client,
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_addresses_count_only_through_trusted_proxies() {
        let none = TrustedProxies::default();
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(none.client(peer, &headers("1.2.3.4")), peer);
        let lb = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(lb.client(peer, &headers("1.2.3.4")).to_string(), "1.2.3.4");
        // The client wrote the leftmost address itself.
        assert_eq!(
            lb.client(peer, &headers("6.6.6.6, 1.2.3.4, 10.0.0.9"))
                .to_string(),
            "1.2.3.4"
        );
        assert_eq!(lb.client(peer, &http::HeaderMap::new()), peer);
        let outside: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(lb.client(outside, &headers("1.2.3.4")), outside);
    }
}
