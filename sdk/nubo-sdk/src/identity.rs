//! Who a request is from, as the gateway proved it (`[auth]` in
//! `nubo.toml`: a session cookie, a JWT or an API key), and who started
//! the work a task function or a queue handler runs.
//!
//! The gateway puts the identity in `nubo-user-id`, `nubo-user-email`,
//! `nubo-user-roles` and `nubo-auth`, and removes those headers from what
//! a client sends, so a component can trust them. A route with
//! `auth = "required"` only ever sees requests that carry one.
//!
//! ```ignore
//! fn mine(req: Request) -> Result<Json<Vec<Note>>, Error> {
//!     let user = nubo_sdk::identity::require(&req)?;
//!     // … only `user.id`'s rows
//! }
//! ```

use crate::{Error, Request, StatusCode};

/// A signed-in identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Stable: an account's id, a JWT's `sub`, or `key:NAME` for an API key.
    pub id: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    /// How it was proven: `session`, `jwt` or `api-key`.
    pub how: String,
}

impl User {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The request's identity, if it carries one.
pub fn user(req: &Request) -> Option<User> {
    let id = header(req, "nubo-user-id").filter(|id| !id.is_empty())?;
    Some(User {
        id: id.to_string(),
        email: header(req, "nubo-user-email").map(str::to_string),
        roles: header(req, "nubo-user-roles")
            .unwrap_or("")
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
        how: header(req, "nubo-auth").unwrap_or("").to_string(),
    })
}

/// Who started the work this instance runs: in an HTTP handler, the
/// request's identity (as [`user`]); in a task function, whoever's
/// request spawned the task or its root task; in a queue handler, whoever's
/// request published the messages (a batch holds one publisher's
/// messages). `None` for work no signed-in identity started, such as a
/// cron run.
pub fn caller() -> Option<User> {
    crate::bindings::nubo::platform::identity::caller().map(|p| User {
        id: p.id,
        email: p.email,
        roles: p.roles,
        how: p.how,
    })
}

/// The request's identity, or a `401` to answer with (for a route that is
/// `optional` or `public`, where the gateway lets anonymous requests in).
pub fn require(req: &Request) -> Result<User, Error> {
    user(req).ok_or_else(|| Error::new(StatusCode::UNAUTHORIZED, "sign in first"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_headers_are_read() {
        let mut req = http::Request::new(Vec::new());
        assert!(user(&req).is_none());
        assert_eq!(
            require(&req).err().map(|e| e.status()),
            Some(StatusCode::UNAUTHORIZED)
        );
        let h = req.headers_mut();
        h.insert("nubo-user-id", "u1".parse().unwrap());
        h.insert("nubo-user-email", "ada@example.com".parse().unwrap());
        h.insert("nubo-user-roles", "admin,staff".parse().unwrap());
        h.insert("nubo-auth", "session".parse().unwrap());
        let u = require(&req).unwrap();
        assert_eq!(u.id, "u1");
        assert!(u.has_role("staff") && !u.has_role("owner"));
        assert_eq!(u.how, "session");
    }
}
