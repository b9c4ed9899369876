//! Outbound HTTP from a guest: only to `allowed_outbound_hosts`, and never
//! to the node's own network by accident.
//!
//! Matching a request's host name against the rules is not enough: a
//! wildcard rule, or a name whose DNS answer is (or later becomes)
//! `127.0.0.1`, `10.x` or `169.254.169.254`, would reach the control API,
//! `/metrics`, NATS, a cloud's metadata service or another app. So the
//! name is resolved here, and an address in a loopback, private,
//! link-local, shared or unspecified range is refused unless a rule names
//! that very address (`http://10.0.0.5:5432`). Plain HTTP then connects to
//! the address that was checked, so a second DNS answer cannot differ;
//! HTTPS connects by name, where the certificate check stops a rebound
//! name from reaching a local service.
//!
//! An instance holds at most [`MAX_OPEN`] outbound connections at once
//! (each is a socket, a TLS session and buffers in the host). One more
//! waits up to [`SLOT_WAIT`] for an earlier one to end (its response body
//! read to the end or dropped; a dropped response's connection closes a
//! moment later, on another task), then is refused with
//! `connection-limit-reached`.

use crate::logs::LogTags;
use nubo_manifest::OutboundRule;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// Outbound connections one instance may hold open at once.
pub const MAX_OPEN: usize = 32;
/// How long a request past [`MAX_OPEN`] waits for a connection to end.
pub const SLOT_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) struct OutboundPolicy {
    rules: Arc<Vec<OutboundRule>>,
    tags: LogTags,
    /// One permit per connection this instance may still open.
    open: Arc<tokio::sync::Semaphore>,
    /// Where the run's outbound requests are counted.
    tally: Arc<crate::usage::Tally>,
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type SendFuture =
    Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send>;

impl OutboundPolicy {
    pub(crate) fn new(
        rules: Arc<Vec<OutboundRule>>,
        tags: LogTags,
        tally: Arc<crate::usage::Tally>,
    ) -> Self {
        Self {
            rules,
            tags,
            open: Arc::new(tokio::sync::Semaphore::new(MAX_OPEN)),
            tally,
        }
    }

    fn deny(&self, target: &str, why: &str) -> SendFuture {
        let t = &self.tags;
        tracing::warn!(
            target: "nubo::guest",
            app = %t.app, component = %t.component, request_id = %t.request_id,
            "outbound request to {target} denied: {why}"
        );
        Box::new(async { Err(HttpError::HttpRequestDenied) })
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: IoFuture,
    ) -> SendFuture {
        let uri = request.uri();
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host().unwrap_or("").to_string();
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "http" { 80 } else { 443 });
        let target = format!("{scheme}://{host}:{port}");
        if !self.rules.iter().any(|r| r.allows(&scheme, &host, port)) {
            return self.deny(&target, "not in allowed_outbound_hosts");
        }
        self.tally.count(crate::usage::OUTBOUND_REQUESTS, 1);
        let usage = crate::usage::RunUsage(self.tally.clone());
        let counted = move |body: WasiBody, metric: crate::usage::Metric| -> WasiBody {
            http_body_util::BodyExt::boxed_unsync(crate::usage::CountedBody {
                inner: body,
                usage: usage.clone(),
                metric,
            })
        };
        let mut request = request.map(|b| counted(b, crate::usage::OUTBOUND_BYTES_SENT));
        let open = self.open.clone();
        let rules = self.rules.clone();
        let tags = self.tags.clone();
        Box::new(async move {
            let permit = match tokio::time::timeout(SLOT_WAIT, open.acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => {
                    tracing::warn!(
                        target: "nubo::guest",
                        app = %tags.app, component = %tags.component, request_id = %tags.request_id,
                        "outbound request to {target} refused: this instance has {MAX_OPEN} outbound connections open; read or drop a response first"
                    );
                    return Err(HttpError::ConnectionLimitReached);
                }
            };
            let addr = match resolve(&host, port).await {
                Ok(addrs) => match addrs.iter().find(|a| !allowed_address(&rules, a.ip())) {
                    Some(bad) => {
                        tracing::warn!(
                            target: "nubo::guest",
                            app = %tags.app, component = %tags.component, request_id = %tags.request_id,
                            "outbound request to {target} denied: it resolves to {}, a private or local address; name that address in allowed_outbound_hosts to allow it",
                            bad.ip()
                        );
                        return Err(HttpError::DestinationIpProhibited);
                    }
                    None => addrs.into_iter().next(),
                },
                Err(e) => return Err(e),
            };
            if scheme == "http"
                && let Some(addr) = addr
                && let Some(pinned) = with_authority(request.uri(), addr)
            {
                // `Host` keeps the name: the request was built with it.
                *request.uri_mut() = pinned;
            }
            let send = wasmtime_wasi_http::default_hooks().send_request(request, options, fut);
            let (response, io) = Box::into_pin(send).await?;
            let response = response.map(|b| counted(b, crate::usage::OUTBOUND_BYTES_RECEIVED));
            // The connection lives as long as its I/O future: the permit
            // goes back when that ends.
            let io: IoFuture = Box::new(async move {
                let done = Box::into_pin(io).await;
                drop(permit);
                done
            });
            Ok((response, io))
        })
    }
}

/// Every address `host` stands for (an IP literal stands for itself).
async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, HttpError> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    match tokio::net::lookup_host((host, port)).await {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(HttpError::DestinationNotFound)
            } else {
                Ok(addrs)
            }
        }
        Err(_) => Err(HttpError::DnsError {
            rcode: None,
            info_code: None,
        }),
    }
}

/// Public addresses pass; others only where a rule names the address.
fn allowed_address(rules: &[OutboundRule], ip: IpAddr) -> bool {
    !is_local(ip) || rules.iter().any(|r| r.names_address(ip))
}

/// `uri` with its authority replaced by `addr`.
fn with_authority(uri: &http::Uri, addr: SocketAddr) -> Option<http::Uri> {
    let mut parts = uri.clone().into_parts();
    parts.authority = Some(addr.to_string().parse().ok()?);
    http::Uri::from_parts(parts).ok()
}

/// Loopback, private (RFC 1918, ULA), link-local (cloud metadata lives
/// there), shared (RFC 6598), unspecified, broadcast and multicast
/// addresses, IPv4 inside IPv6 included.
pub fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ranges() {
        for a in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(is_local(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(!is_local(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn a_local_address_needs_a_rule_that_names_it() {
        let rules = [
            OutboundRule::parse("http://*:*").unwrap(),
            OutboundRule::parse("http://10.0.0.5:5432").unwrap(),
        ];
        assert!(allowed_address(&rules, "1.1.1.1".parse().unwrap()));
        assert!(allowed_address(&rules, "10.0.0.5".parse().unwrap()));
        assert!(!allowed_address(&rules, "10.0.0.6".parse().unwrap()));
        assert!(!allowed_address(&rules, "127.0.0.1".parse().unwrap()));
    }
}
