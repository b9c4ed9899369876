//! `allowed_outbound_hosts`: which URLs a component may call.
//!
//! The default is none, as in Spin: a component that was not granted a host
//! cannot reach it. Rules are `scheme://host[:port]` where scheme may be `*`,
//! host may be `*` or `*.suffix`, and port may be `*`; a missing port means
//! the scheme's default.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundRule {
    /// `http`, `https` or `*`.
    pub scheme: String,
    /// Lower-case host, `*`, or `*.suffix`.
    pub host: String,
    /// `None` means any port.
    pub port: Option<u16>,
}

/// Why an `allowed_outbound_hosts` entry is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("`{0}` is not of the form scheme://host[:port]")]
    NotARule(String),
    #[error("unsupported scheme `{0}`: use http, https or *")]
    Scheme(String),
    #[error("`{0}` has a path; give scheme://host[:port] only")]
    HasPath(String),
    #[error("invalid port `{0}`")]
    Port(String),
    #[error("invalid host `{0}`")]
    Host(String),
}

impl OutboundRule {
    pub fn parse(s: &str) -> Result<Self, OutboundError> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| OutboundError::NotARule(s.into()))?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "*") {
            return Err(OutboundError::Scheme(scheme));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            return Err(OutboundError::HasPath(s.into()));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, "*")) => (h, None),
            Some((h, p)) => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| OutboundError::Port(p.into()))?;
                (h, Some(port))
            }
            None => {
                let default = match scheme.as_str() {
                    "http" => Some(80),
                    "https" => Some(443),
                    _ => None,
                };
                (rest, default)
            }
        };
        let host = host.to_ascii_lowercase();
        let valid_host = !host.is_empty()
            && (host == "*"
                || host.strip_prefix("*.").unwrap_or(&host).chars().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '[' | ']' | ':')
                }));
        if !valid_host {
            return Err(OutboundError::Host(host));
        }
        Ok(Self { scheme, host, port })
    }

    /// Whether a request to `scheme://host:port` is allowed by this rule.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let scheme_ok = self.scheme == "*" || self.scheme.eq_ignore_ascii_case(scheme);
        let host = host.to_ascii_lowercase();
        let host_ok = if self.host == "*" {
            true
        } else if let Some(suffix) = self.host.strip_prefix("*.") {
            host.len() > suffix.len() + 1
                && host.ends_with(suffix)
                && host[..host.len() - suffix.len()].ends_with('.')
        } else {
            self.host == host
        };
        let port_ok = self.port.is_none_or(|p| p == port);
        scheme_ok && host_ok && port_ok
    }
}

impl OutboundRule {
    /// Whether this rule names `ip` itself (`http://10.0.0.5:5432`), as a
    /// private or local address must be named to be reached.
    pub fn names_address(&self, ip: std::net::IpAddr) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.parse::<std::net::IpAddr>()
            .is_ok_and(|named| named == ip || named.to_canonical() == ip.to_canonical())
    }
}

impl fmt::Display for OutboundRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(p) => write!(f, "{}://{}:{p}", self.scheme, self.host),
            None => write!(f, "{}://{}:*", self.scheme, self.host),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{OutboundError, OutboundRule};

    #[test]
    fn exact_host_and_default_port() {
        let r = OutboundRule::parse("https://api.example.com").unwrap();
        assert!(r.allows("https", "api.example.com", 443));
        assert!(r.allows("https", "API.example.com", 443));
        assert!(!r.allows("http", "api.example.com", 443));
        assert!(!r.allows("https", "api.example.com", 8443));
        assert!(!r.allows("https", "evil.com", 443));
    }

    #[test]
    fn wildcards() {
        let r = OutboundRule::parse("http://*.example.com:*").unwrap();
        assert!(r.allows("http", "a.example.com", 8080));
        assert!(!r.allows("http", "example.com", 80));
        assert!(!r.allows("http", "aexample.com", 80));
        let any = OutboundRule::parse("*://*:*").unwrap();
        assert!(any.allows("https", "x.y", 1));
        let local = OutboundRule::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.allows("http", "127.0.0.1", 8080));
    }

    #[test]
    fn rejects_malformed() {
        let err = |r: &str| OutboundRule::parse(r).err();
        assert!(matches!(
            err("api.example.com"),
            Some(OutboundError::NotARule(_))
        ));
        assert!(matches!(err("ftp://x"), Some(OutboundError::Scheme(_))));
        assert!(matches!(
            err("https://x/path"),
            Some(OutboundError::HasPath(_))
        ));
        assert!(matches!(
            err("https://x:99999"),
            Some(OutboundError::Port(_))
        ));
        assert!(matches!(err("https://"), Some(OutboundError::Host(_))));
    }
}
