//! An issuer's public keys, fetched from its JWKS URL and kept.
//!
//! The URL is fetched the way a component's outbound request is: an
//! `https://` name that resolves to a loopback, private or link-local
//! address is refused (it would reach the node's own network), and
//! plain `http://` is taken only to an IP address written in the URL,
//! which names that address on purpose. A fetch has [`FETCH_TIMEOUT`]
//! and reads at most [`MAX_BODY`].
//!
//! Keys are kept for [`KEEP`]. A token whose key id is not among them
//! fetches the set again (the issuer rotated its keys), at most once per
//! [`REFETCH_GAP`], so tokens with made-up key ids cannot make the node
//! fetch on every request.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use std::net::IpAddr;
use std::time::{Duration, Instant};

pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
pub const MAX_BODY: usize = 1 << 20;
pub const KEEP: Duration = Duration::from_secs(600);
pub const REFETCH_GAP: Duration = Duration::from_secs(5);

/// Whether `url` may be a JWKS URL; why not.
pub fn check_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|_| "is not a URL".to_string())?;
    let host = uri.host().ok_or("has no host")?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if literal(host).is_some() => Ok(()),
        Some("http") => Err("plain http:// needs an IP address; use https://".into()),
        _ => Err("is not an https:// URL".into()),
    }
}

fn literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// One key of a set: its id and what verifies with it.
pub struct Key {
    pub kid: Option<String>,
    pub key: DecodingKey,
}

/// The keys of one JWKS URL.
pub struct Jwks {
    url: String,
    state: tokio::sync::Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    keys: std::sync::Arc<Vec<Key>>,
    fetched: Option<Instant>,
}

impl Jwks {
    pub fn new(url: String) -> Self {
        Self {
            url,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// The key `kid` names (with no `kid`, the set's only key), fetching
    /// the set if it is not kept, is old, or lacks that key.
    pub async fn key(&self, kid: Option<&str>) -> Result<Option<DecodingKey>, String> {
        let mut kept = self.state.lock().await;
        let fresh = kept.fetched.is_some_and(|t| t.elapsed() < KEEP);
        if fresh && let Some(k) = pick(&kept.keys, kid) {
            return Ok(Some(k));
        }
        let may_fetch = kept.fetched.is_none_or(|t| t.elapsed() >= REFETCH_GAP);
        if may_fetch {
            let keys = fetch(&self.url).await;
            kept.fetched = Some(Instant::now());
            match keys {
                Ok(keys) => kept.keys = std::sync::Arc::new(keys),
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "fetching JWKS failed");
                    if kept.keys.is_empty() {
                        return Err(format!("the issuer's keys could not be fetched: {e}"));
                    }
                }
            }
        }
        Ok(pick(&kept.keys, kid))
    }
}

fn pick(keys: &[Key], kid: Option<&str>) -> Option<DecodingKey> {
    match kid {
        Some(id) => keys.iter().find(|k| k.kid.as_deref() == Some(id)),
        None if keys.len() == 1 => keys.first(),
        None => None,
    }
    .map(|k| k.key.clone())
}

async fn fetch(url: &str) -> Result<Vec<Key>, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?;
    if literal(host).is_none() {
        let port = uri.port_u16().unwrap_or(443);
        let addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        if let Some(a) = addrs.into_iter().find(|a| nubo_wasm::is_local(a.ip())) {
            return Err(format!(
                "{host} resolves to {}, an address of the node's own network",
                a.ip()
            ));
        }
    }
    let client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(connector(uri.scheme_str() == Some("https"))?);
    let req = http::Request::get(uri)
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let got = tokio::time::timeout(FETCH_TIMEOUT, async {
        let resp = client.request(req).await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("{url} answered {}", resp.status()));
        }
        http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| format!("reading {url}: {e}"))
    })
    .await
    .map_err(|_| format!("{url} did not answer in {FETCH_TIMEOUT:?}"))??;
    let set: JwkSet = serde_json::from_slice(&got).map_err(|e| format!("not a JWK set: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Key {
                kid: jwk.common.key_id.clone(),
                key,
            })
        })
        .collect())
}

/// Only an `https://` URL needs the system's trusted roots, so a machine
/// without any still fetches from an `http://` address.
fn connector(https: bool) -> Result<HttpsConnector<HttpConnector>, String> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = hyper_rustls::HttpsConnectorBuilder::new();
    let builder = if https {
        builder
            .with_provider_and_native_roots(provider)
            .map_err(|e| format!("no trusted CA certificates: {e}"))?
    } else {
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        builder.with_tls_config(config)
    };
    Ok(builder.https_or_http().enable_http1().build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwks_url_is_https_or_names_its_address() {
        assert!(check_url("https://issuer.example/jwks.json").is_ok());
        assert!(check_url("http://127.0.0.1:8080/jwks").is_ok());
        assert!(check_url("http://[::1]:8080/jwks").is_ok());
        assert!(check_url("http://issuer.example/jwks").is_err());
        assert!(check_url("ftp://issuer.example/jwks").is_err());
        assert!(check_url("not a url").is_err());
    }
}
