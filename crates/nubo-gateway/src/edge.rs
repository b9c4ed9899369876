//! What a client's request may carry past the front door.
//!
//! The node talks to components over the same `wasi:http` handler that
//! serves clients: a task run, a queue delivery, a cron run and a
//! WebSocket message are requests the node builds itself and hands to the
//! component directly, never through this gateway. They say what they are
//! in `nubo-*` headers and an authority under `nubo.internal`. A client
//! must never be able to dress a request up as one of them, and later
//! features (the signed-in user's `nubo-user-*` headers) rely on the same
//! rule, so the gateway removes every `nubo-` header a client sends and
//! refuses a request addressed to a `nubo.internal` host. What the gateway
//! itself then adds (`nubo-base-path`, `nubo-matched-route`,
//! `nubo-path-info`) is the only `nubo-` data a component sees on a
//! client's request.

use http::{HeaderMap, HeaderName, Request};

/// The host name suffix of the node's own requests to components.
pub const INTERNAL_DOMAIN: &str = "nubo.internal";

/// Removes every header whose name starts with `nubo-`. Header names are
/// lower case in `http`, so one prefix test covers every spelling.
pub(crate) fn strip_reserved(headers: &mut HeaderMap) {
    let reserved: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("nubo-"))
        .cloned()
        .collect();
    for name in reserved {
        headers.remove(&name);
    }
}

/// The authority a request is addressed to, as RFC 9112 §3.2.2 and
/// RFC 9113 §8.3.1 order them: the target URI's own authority (an
/// absolute-form HTTP/1.1 target, or HTTP/2's `:authority`, which hyper
/// puts into the URI) before the `Host` header.
pub(crate) fn authority<B>(req: &Request<B>) -> Option<&str> {
    req.uri().authority().map(|a| a.as_str()).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
    })
}

/// Whether `authority` names the node's internal domain (any case, any
/// port, with or without a trailing dot).
pub(crate) fn is_internal(authority: &str) -> bool {
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(']') => h,
        _ => authority,
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == INTERNAL_DOMAIN
        || host
            .strip_suffix(INTERNAL_DOMAIN)
            .is_some_and(|rest| rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nubo_header_is_removed_and_others_stay() {
        let mut h = HeaderMap::new();
        for name in [
            "nubo-task-function",
            "NUBO-Queue",
            "nubo-cron-schedule",
            "nubo-user-id",
            "nubo-",
            "x-nubo-kept",
            "accept",
        ] {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "v".parse().unwrap(),
            );
        }
        strip_reserved(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["accept", "x-nubo-kept"]);
    }

    #[test]
    fn internal_names_in_any_spelling() {
        for a in [
            "nubo.internal",
            "app.task.nubo.internal",
            "APP.Queue.NUBO.Internal:80",
            "x.cron.nubo.internal.",
        ] {
            assert!(is_internal(a), "{a}");
        }
        for a in [
            "example.com",
            "nubo.internal.example.com",
            "evilnubo.internal",
            "[::1]:80",
        ] {
            assert!(!is_internal(a), "{a}");
        }
    }

    #[test]
    fn the_target_authority_wins_over_host() {
        let req = Request::builder()
            .uri("http://a.example/x")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(authority(&req), Some("a.example"));
        let req = Request::builder()
            .uri("/x")
            .header("host", "b.example")
            .body(())
            .unwrap();
        assert_eq!(authority(&req), Some("b.example"));
    }
}
