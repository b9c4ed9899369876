//! Who a request is from, for an app that signs people in.
//!
//! The gateway knows no sign-in scheme: a capability (`nubo-auth`) gives
//! it a [`Guard`] per app through [`Guards`]. The guard answers the
//! requests it serves itself (sign-up, sign-in, sign-out) and says which
//! identity a request carries; the gateway holds each route to its
//! `auth` and `roles` and hands the component the identity in
//! `nubo-user-*` headers. A client can never send those itself: every
//! `nubo-` header it sends is removed first ([`crate::edge`]).

use crate::{Body, TimedRequest};
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use nubo_manifest::{Access, AuthLevel};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

/// A verified identity, with the `nubo-user-*` headers that carry it to
/// the component made once: a guard may keep it and hand it to every
/// request of the same session or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    /// How it was proven: `session`, `jwt` or `api-key`.
    pub how: &'static str,
    headers: Vec<(HeaderName, HeaderValue)>,
    /// The same, as the runtime carries it with the request to the
    /// component and with the work it starts.
    principal: Arc<nubo_manifest::Principal>,
    /// Its id, as usage counts it.
    user: Arc<str>,
}

impl Identity {
    pub fn new(
        user_id: String,
        email: Option<String>,
        roles: Vec<String>,
        how: &'static str,
    ) -> Self {
        let mut headers = Vec::with_capacity(4);
        let mut put = |name: &'static str, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                headers.push((HeaderName::from_static(name), v));
            }
        };
        put(NUBO_USER_ID, &user_id);
        if let Some(e) = &email {
            put(NUBO_USER_EMAIL, e);
        }
        put(NUBO_USER_ROLES, &roles.join(","));
        put(NUBO_AUTH, how);
        let principal = Arc::new(nubo_manifest::Principal {
            id: user_id.clone(),
            email: email.clone(),
            roles: roles.clone(),
            how: how.to_string(),
        });
        Self {
            user: Arc::from(user_id.as_str()),
            user_id,
            email,
            roles,
            how,
            headers,
            principal,
        }
    }
}

pub type GuardFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a request carries, as a guard reads it.
pub enum Carried {
    /// No credentials.
    Nobody,
    Identity(Arc<Identity>),
    /// Credentials that do not hold (an expired session, a bad token):
    /// why, for the `401`.
    Invalid(String),
}

/// One app's sign-in.
pub trait Guard: Send + Sync {
    /// Answers `req` if it is one the guard serves (its sign-in routes);
    /// else gives it back. `path` is the request's path below the app's
    /// base.
    fn serve<'a>(
        &'a self,
        req: TimedRequest,
        path: &'a str,
        client: Option<IpAddr>,
    ) -> GuardFuture<'a, Result<Response<Body>, TimedRequest>>;

    /// The identity `req` carries.
    fn identify<'a>(&'a self, req: &'a TimedRequest) -> GuardFuture<'a, Carried>;
}

/// Each app's guard; what the auth capability puts in the node's services.
pub trait Guards: Send + Sync {
    fn guard(&self, app: &str) -> Option<Arc<dyn Guard>>;
}

/// The headers a component reads the identity from.
pub const NUBO_USER_ID: &str = "nubo-user-id";
pub const NUBO_USER_EMAIL: &str = "nubo-user-email";
pub const NUBO_USER_ROLES: &str = "nubo-user-roles";
pub const NUBO_AUTH: &str = "nubo-auth";

/// Holds `req` to the route's `access`: the request, with the identity in
/// its headers and extensions, and the id of who sent it; or the answer
/// that refuses it.
pub(crate) async fn admit(
    guard: Option<&Arc<dyn Guard>>,
    access: &Access,
    mut req: TimedRequest,
) -> Result<(TimedRequest, Option<Arc<str>>), Response<Body>> {
    let carried = match guard {
        Some(g) => g.identify(&req).await,
        None => Carried::Nobody,
    };
    let identity = match carried {
        Carried::Identity(i) => Some(i),
        Carried::Invalid(why) if access.auth != AuthLevel::Public => {
            return Err(unauthorized(&why));
        }
        Carried::Invalid(_) | Carried::Nobody => None,
    };
    match (&identity, access.auth) {
        (None, AuthLevel::Required) => return Err(unauthorized("sign in first")),
        (Some(i), _)
            if !access.roles.is_empty() && !access.roles.iter().any(|r| i.roles.contains(r)) =>
        {
            return Err(crate::server::text(
                StatusCode::FORBIDDEN,
                format!(
                    "this route needs one of the roles: {}\n",
                    access.roles.join(", ")
                ),
            ));
        }
        _ => {}
    }
    let Some(i) = identity else {
        return Ok((req, None));
    };
    let h = req.headers_mut();
    for (name, value) in &i.headers {
        h.insert(name.clone(), value.clone());
    }
    req.extensions_mut().insert(i.principal.clone());
    Ok((req, Some(i.user.clone())))
}

fn unauthorized(why: &str) -> Response<Body> {
    let mut r = crate::server::text(StatusCode::UNAUTHORIZED, format!("{why}\n"));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"nubo\""),
    );
    r
}
