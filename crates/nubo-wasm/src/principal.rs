//! Who started a run: the signed-in identity of an HTTP request (which
//! the gateway attaches to the request, and also puts in the
//! `nubo-user-*` headers the component reads and no client can send), and
//! of the work that request starts, so that a queue delivery or a task
//! run knows who published or spawned it.
//!
//! The runtime carries it without knowing sign-in: an [`Invocation`]
//! holds it, every instance has it in its states (a capability reads it
//! with `host.state::<Arc<Principal>>()`, to store it with a message or a
//! task), `nubo:platform/identity` gives it to the guest, and a request
//! the node sends a component itself carries it in the same headers.
//!
//! [`Invocation`]: crate::Invocation

pub use nubo_manifest::Principal;

pub const USER_ID: &str = "nubo-user-id";
pub const USER_EMAIL: &str = "nubo-user-email";
pub const USER_ROLES: &str = "nubo-user-roles";
pub const AUTH: &str = "nubo-auth";

/// The identity in a request's `nubo-user-*` headers; only the gateway
/// and the node set them.
pub fn from_headers(h: &http::HeaderMap) -> Option<Principal> {
    let text = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let id = text(USER_ID).filter(|id| !id.is_empty())?;
    Some(Principal {
        id: id.to_string(),
        email: text(USER_EMAIL).map(str::to_string),
        roles: text(USER_ROLES)
            .unwrap_or("")
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        how: text(AUTH).unwrap_or("").to_string(),
    })
}

/// Who sent `req`: the identity the gateway attached to it (made once per
/// session or key, so no request parses it again), else the one in its
/// headers (a request the node sends a component itself).
pub fn of_request<B>(req: &http::Request<B>) -> Option<std::sync::Arc<Principal>> {
    match req.extensions().get::<std::sync::Arc<Principal>>() {
        Some(p) => Some(p.clone()),
        None => from_headers(req.headers()).map(std::sync::Arc::new),
    }
}

/// The headers that carry `p`.
pub fn headers(p: &Principal) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (USER_ID, p.id.clone()),
        (USER_ROLES, p.roles.join(",")),
        (AUTH, p.how.clone()),
    ];
    if let Some(e) = &p.email {
        out.push((USER_EMAIL, e.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_carry_it_whole() {
        let p = Principal {
            id: "u1".into(),
            email: Some("ada@example.com".into()),
            roles: vec!["admin".into(), "staff".into()],
            how: "session".into(),
        };
        let mut h = http::HeaderMap::new();
        for (k, v) in headers(&p) {
            h.insert(k, v.parse().unwrap());
        }
        assert_eq!(from_headers(&h), Some(p));
        assert_eq!(from_headers(&http::HeaderMap::new()), None);
    }
}
