//! One app's `[cors]`, applied to requests (the Fetch standard's CORS
//! protocol, server side).
//!
//! - A request without `Origin`, or from an origin not listed, gets no
//!   CORS headers; a browser then keeps the answer from the page.
//! - A preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) is answered here, `204` with what
//!   the origin may do, or `403` saying what it may not.
//! - Every answer varies by `Origin`, so a cache never gives one origin's
//!   answer to another.

use crate::section::CorsSpec;
use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body_util::BodyExt;
use nubo_gateway::{Body, Cors, TimedRequest};

pub struct Policy {
    pub spec: CorsSpec,
}

impl Policy {
    fn allows(&self, origin: &str) -> bool {
        self.spec.origins.iter().any(|o| matches(o, origin))
    }

    /// The `Access-Control-Allow-Origin` for `origin`.
    fn allow_origin(&self, origin: &str) -> Option<HeaderValue> {
        if self.spec.origins.iter().any(|o| o == "*") && !self.spec.credentials {
            return Some(HeaderValue::from_static("*"));
        }
        HeaderValue::from_str(origin).ok()
    }

    fn common(&self, origin: &str) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = vec![(VARY, HeaderValue::from_static("Origin"))];
        if let Some(v) = self.allow_origin(origin) {
            out.push((ACCESS_CONTROL_ALLOW_ORIGIN, v));
        }
        if self.spec.credentials {
            out.push((
                ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            ));
        }
        out
    }

    /// Why a preflight from an allowed origin is refused, if it is.
    fn refused(&self, method: &str, headers: &[String]) -> Option<String> {
        if !self.spec.methods.iter().any(|m| m == method) && !is_simple(method) {
            return Some(format!("method {method} is not in [cors] methods"));
        }
        let any = self.spec.headers.iter().any(|h| h == "*") && !self.spec.credentials;
        headers
            .iter()
            .find(|h| !any && !self.spec.headers.contains(h))
            .map(|h| format!("request header `{h}` is not in [cors] headers"))
    }
}

/// Whether `pattern` (`https://*.example.com`, `*`, or an origin) covers
/// `origin`.
fn matches(pattern: &str, origin: &str) -> bool {
    if pattern == "*" || pattern.eq_ignore_ascii_case(origin) {
        return true;
    }
    let Some((scheme, host)) = pattern.split_once("://*.") else {
        return false;
    };
    origin
        .strip_prefix(scheme)
        .and_then(|o| o.strip_prefix("://"))
        .and_then(|o| o.strip_suffix(host))
        .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
}

fn is_simple(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "POST")
}

fn origin(h: &HeaderMap) -> Option<&str> {
    h.get(ORIGIN).and_then(|v| v.to_str().ok())
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(
        http_body_util::Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = status;
    r
}

impl Cors for Policy {
    fn preflight(&self, req: &TimedRequest) -> Option<Response<Body>> {
        let h = req.headers();
        if req.method() != Method::OPTIONS {
            return None;
        }
        let origin = origin(h)?;
        let method = h.get(ACCESS_CONTROL_REQUEST_METHOD)?.to_str().unwrap_or("");
        if !self.allows(origin) {
            return Some(text(
                StatusCode::FORBIDDEN,
                format!("origin {origin} may not call this app ([cors] origins)\n"),
            ));
        }
        let asked: Vec<String> = h
            .get_all(ACCESS_CONTROL_REQUEST_HEADERS)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(why) = self.refused(method, &asked) {
            return Some(text(StatusCode::FORBIDDEN, format!("{why}\n")));
        }
        let mut r = text(StatusCode::NO_CONTENT, String::new());
        let out = r.headers_mut();
        out.extend(self.common(origin));
        out.insert(
            VARY,
            HeaderValue::from_static(
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            ),
        );
        if let Ok(v) = HeaderValue::from_str(&self.spec.methods.join(", ")) {
            out.insert(ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if !asked.is_empty()
            && let Ok(v) = HeaderValue::from_str(&asked.join(", "))
        {
            out.insert(ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        out.insert(
            ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(self.spec.max_age_s),
        );
        Some(r)
    }

    fn headers(&self, request: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
        let Some(origin) = origin(request).filter(|o| self.allows(o)) else {
            return match origin(request) {
                // Another origin's answer must not be cached for this one.
                Some(_) => vec![(VARY, HeaderValue::from_static("Origin"))],
                None => Vec::new(),
            };
        };
        let mut out = self.common(origin);
        if !self.spec.expose_headers.is_empty()
            && let Ok(v) = HeaderValue::from_str(&self.spec.expose_headers.join(", "))
        {
            out.push((ACCESS_CONTROL_EXPOSE_HEADERS, v));
        }
        out
    }

    fn credentialed(&self, request: &HeaderMap) -> bool {
        self.spec.credentials && origin(request).is_some_and(|o| self.allows(o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_origins_cover_subdomains_only() {
        assert!(matches("https://*.example.com", "https://app.example.com"));
        assert!(matches("https://*.example.com", "https://a.b.example.com"));
        assert!(!matches("https://*.example.com", "https://example.com"));
        assert!(!matches("https://*.example.com", "https://evilexample.com"));
        assert!(!matches("https://*.example.com", "http://app.example.com"));
        assert!(matches("https://app.example", "https://app.example"));
        assert!(!matches("https://app.example", "https://app.example.evil"));
    }
}
