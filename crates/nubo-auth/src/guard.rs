//! One app's sign-in at the gateway: the routes under its prefix
//! (`signup`, `login`, `logout`, `password`, `me`) and the identity a
//! request's session cookie carries.
//!
//! Sessions are an opaque random token in the `nubo_session` cookie
//! (`HttpOnly`, `SameSite=Lax`, `Path` the app's base), a new one at each
//! sign-in. Over TLS the cookie is `Secure` and named `__Host-nubo_session`
//! (`__Secure-nubo_session` for an app under a base path, since `__Host-`
//! needs `Path=/`).
//! A bearer credential (`Authorization: Bearer`, or `x-api-key` for an
//! API key) is read before the cookie: an API key when the app takes
//! them and the credential starts with [`KEY_PREFIX`], else a JWT when
//! the app lists issuers. A bearer credential the app takes none of is
//! left to the component.
//!
//! Cross-site request forgery: a request whose `Origin` (or, without it,
//! `Sec-Fetch-Site`) says another site sent it carries no identity from
//! its cookie, and the sign-in routes refuse it; a non-browser client
//! sends neither header and is not affected.

use crate::jwt::Issuers;
use crate::password;
use crate::section::AuthSpec;
use crate::store::{Accounts, Resolved, User};
use crate::throttle::Throttle;
use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::BodyExt;
use nubo_gateway::{Body, Carried, Guard, GuardFuture, TimedRequest};
use serde::Deserialize;
use serde_json::json;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

pub const COOKIE: &str = "nubo_session";
/// The cookie's name over TLS for an app at `/`: the browser then takes
/// it only with `Secure`, `Path=/` and no `Domain`, so no other host or
/// plain-HTTP page can set it.
pub const HOST_COOKIE: &str = "__Host-nubo_session";
/// Its name over TLS for an app under a base path (`__Host-` needs
/// `Path=/`).
pub const SECURE_COOKIE: &str = "__Secure-nubo_session";
/// What every API key starts with.
pub const KEY_PREFIX: &str = "nubo_";
/// The most a sign-in body may be.
const MAX_BODY: usize = 16 * 1024;

pub struct AppGuard {
    pub spec: AuthSpec,
    /// The app's base path: the cookie's `Path`, so that apps under one
    /// host keep their sessions apart.
    pub base: String,
    pub accounts: Accounts,
    pub throttle: Arc<Throttle>,
    pub issuers: Issuers,
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
struct NewPassword {
    current: String,
    new: String,
}

impl Guard for AppGuard {
    fn serve<'a>(
        &'a self,
        req: TimedRequest,
        path: &'a str,
        client: Option<IpAddr>,
    ) -> GuardFuture<'a, Result<Response<Body>, TimedRequest>> {
        Box::pin(async move {
            let Some(action) = path
                .strip_prefix(self.spec.prefix.as_str())
                .and_then(|rest| rest.strip_prefix('/'))
                .map(str::to_string)
            else {
                return Err(req);
            };
            Ok(self.answer(&action, req, client).await)
        })
    }

    fn identify<'a>(&'a self, req: &'a TimedRequest) -> GuardFuture<'a, Carried> {
        Box::pin(async move {
            if let Some((credential, is_key)) = bearer(req) {
                if self.spec.api_keys && (is_key || credential.starts_with(KEY_PREFIX)) {
                    return self.api_key(credential).await;
                }
                if !is_key && !self.issuers.is_empty() {
                    return self.issuers.verify(credential).await;
                }
            }
            let Some(token) = self.cookie(req) else {
                return Carried::Nobody;
            };
            if cross_site(req) {
                return Carried::Invalid("a cross-site request carries no session".into());
            }
            match self.user_of(&token).await {
                Ok(Some(u)) => Carried::Identity(u.identity.clone()),
                Ok(None) => Carried::Invalid("the session has ended: sign in again".into()),
                Err(e) => {
                    tracing::error!(error = %e, "reading a session failed");
                    Carried::Invalid("the session could not be read".into())
                }
            }
        })
    }
}

impl AppGuard {
    async fn answer(
        &self,
        action: &str,
        req: TimedRequest,
        client: Option<IpAddr>,
    ) -> Response<Body> {
        if cross_site(&req) {
            return reply(
                StatusCode::FORBIDDEN,
                json!({ "error": "cross-site requests may not sign in or out" }),
            );
        }
        match (req.method().clone(), action) {
            (Method::POST, "signup") => self.signup(req).await,
            (Method::POST, "login") => self.login(req, client).await,
            (Method::POST, "logout") => self.logout(&req).await,
            (Method::POST, "password") => self.password(req).await,
            (Method::GET, "me") => match self.cookie(&req) {
                Some(t) => match self.user_of(&t).await {
                    Ok(Some(u)) => reply(StatusCode::OK, json!({ "user": public(&u.record) })),
                    _ => reply(
                        StatusCode::UNAUTHORIZED,
                        json!({ "error": "not signed in" }),
                    ),
                },
                None => reply(
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "not signed in" }),
                ),
            },
            (_, "signup" | "login" | "logout" | "password" | "me") => reply(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "error": "method not allowed" }),
            ),
            _ => reply(
                StatusCode::NOT_FOUND,
                json!({ "error": format!("no sign-in route {action}") }),
            ),
        }
    }

    /// The signed-in account of a session token, unless it is disabled.
    async fn user_of(&self, token: &str) -> Result<Option<Arc<Resolved<User>>>, nubo_kv::KvError> {
        Ok(self
            .accounts
            .session(token)
            .await?
            .filter(|u| !u.record.disabled))
    }

    async fn api_key(&self, key: &str) -> Carried {
        match self.accounts.key(key).await {
            Ok(Some(k)) => Carried::Identity(k.identity.clone()),
            Ok(None) => Carried::Invalid("the API key is not valid (revoked or mistyped)".into()),
            Err(e) => {
                tracing::error!(error = %e, "reading an API key failed");
                Carried::Invalid("the API key could not be read".into())
            }
        }
    }

    async fn signup(&self, req: TimedRequest) -> Response<Body> {
        let tls = over_tls(&req);
        let c: Credentials = match body(req).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let email = c.email.trim().to_lowercase();
        if let Err(why) = check_email(&email).and(check_password(&c.password)) {
            return reply(StatusCode::BAD_REQUEST, json!({ "error": why }));
        }
        let Some(hash) = password::hash(c.password).await else {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": "hashing failed" }),
            );
        };
        let Some(id) = crate::random_token() else {
            return no_randomness();
        };
        let user = User {
            id: id[..16].to_string(),
            email: email.clone(),
            hash,
            roles: Vec::new(),
            disabled: false,
            created_ms: now_ms(),
            generation: 0,
        };
        match self.accounts.create(&user).await {
            Ok(true) => self.signed_in(&user, StatusCode::CREATED, tls).await,
            Ok(false) => reply(
                StatusCode::CONFLICT,
                json!({ "error": "an account with this email exists; sign in" }),
            ),
            Err(e) => store_failed(e),
        }
    }

    async fn login(&self, req: TimedRequest, client: Option<IpAddr>) -> Response<Body> {
        let tls = over_tls(&req);
        let c: Credentials = match body(req).await {
            Ok(c) => c,
            Err(r) => return r,
        };
        let email = c.email.trim().to_lowercase();
        let keys = [
            format!("email:{email}"),
            format!("ip:{}", client.map(|a| a.to_string()).unwrap_or_default()),
        ];
        if let Some(wait) = self.throttle.blocked(&keys) {
            let mut r = reply(
                StatusCode::TOO_MANY_REQUESTS,
                json!({ "error": "too many failed sign-ins; wait and try again" }),
            );
            if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return r;
        }
        let user = match self.accounts.user(&email).await {
            Ok(u) => u,
            Err(e) => return store_failed(e),
        };
        // The same work, and the same answer, for an unknown email.
        let ok = password::verify(c.password, user.as_ref().map(|u| u.hash.clone())).await;
        match user {
            Some(u) if ok && !u.disabled => {
                self.throttle.forget(&keys);
                self.signed_in(&u, StatusCode::OK, tls).await
            }
            _ => {
                self.throttle.failed(&keys);
                reply(
                    StatusCode::UNAUTHORIZED,
                    json!({ "error": "wrong email or password" }),
                )
            }
        }
    }

    async fn logout(&self, req: &TimedRequest) -> Response<Body> {
        if let Some(t) = self.cookie(req)
            && let Err(e) = self.accounts.close_session(&t).await
        {
            return store_failed(e);
        }
        let mut r = reply(StatusCode::OK, json!({ "signed_out": true }));
        self.set_cookie(&mut r, over_tls(req), "", 0);
        r
    }

    async fn password(&self, req: TimedRequest) -> Response<Body> {
        let tls = over_tls(&req);
        let user = match self.cookie(&req) {
            Some(t) => self
                .user_of(&t)
                .await
                .ok()
                .flatten()
                .map(|u| u.record.clone()),
            None => None,
        };
        let Some(mut user) = user else {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "sign in first" }),
            );
        };
        let p: NewPassword = match body(req).await {
            Ok(p) => p,
            Err(r) => return r,
        };
        if !password::verify(p.current, Some(user.hash.clone())).await {
            return reply(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "the current password is wrong" }),
            );
        }
        if let Err(why) = check_password(&p.new) {
            return reply(StatusCode::BAD_REQUEST, json!({ "error": why }));
        }
        let Some(hash) = password::hash(p.new).await else {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({ "error": "hashing failed" }),
            );
        };
        // A new password ends every session, this one too; the answer
        // carries a new one.
        user.hash = hash;
        user.generation += 1;
        match self.accounts.save(&user).await {
            Ok(()) => self.signed_in(&user, StatusCode::OK, tls).await,
            Err(e) => store_failed(e),
        }
    }

    /// A new session for `user`, in the answer's cookie.
    async fn signed_in(&self, user: &User, status: StatusCode, tls: bool) -> Response<Body> {
        let ttl = Duration::from_secs(self.spec.session_ttl_s);
        let Some(token) = crate::random_token() else {
            return no_randomness();
        };
        if let Err(e) = self.accounts.open_session(&token, user, ttl).await {
            return store_failed(e);
        }
        let mut r = reply(status, json!({ "user": public(user) }));
        self.set_cookie(&mut r, tls, &token, ttl.as_secs());
        r
    }

    /// The session cookie's name for a request over TLS or not.
    fn cookie_name(&self, tls: bool) -> &'static str {
        match (tls, self.base.as_str()) {
            (false, _) => COOKIE,
            (true, "/") => HOST_COOKIE,
            (true, _) => SECURE_COOKIE,
        }
    }

    /// The session token of the request's cookie.
    fn cookie(&self, req: &TimedRequest) -> Option<String> {
        let name = self.cookie_name(over_tls(req));
        req.headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| {
                let (n, value) = pair.trim().split_once('=')?;
                (n == name && !value.is_empty()).then(|| value.to_string())
            })
    }

    /// Sets (or, with `max_age` 0, clears) the session cookie.
    fn set_cookie(&self, r: &mut Response<Body>, tls: bool, token: &str, max_age: u64) {
        let secure = if tls { "; Secure" } else { "" };
        let value = format!(
            "{}={token}; Path={}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}",
            self.cookie_name(tls),
            self.base
        );
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
    }
}

fn over_tls(req: &TimedRequest) -> bool {
    req.extensions().get::<nubo_gateway::OverTls>().is_some()
}

fn public(u: &User) -> serde_json::Value {
    json!({ "id": u.id, "email": u.email, "roles": u.roles })
}

/// The credential of `x-api-key` (then `true`: it can only be an API
/// key), or of `Authorization: Bearer …`.
fn bearer(req: &TimedRequest) -> Option<(&str, bool)> {
    let h = req.headers();
    if let Some(key) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some((key.trim(), true));
    }
    let auth = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = auth.split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some((credential, false))
}

/// Whether a browser says another site sent the request, from an origin
/// the app's `[cors]` does not let send credentials.
fn cross_site(req: &TimedRequest) -> bool {
    if req
        .extensions()
        .get::<nubo_gateway::CredentialedOrigin>()
        .is_some()
    {
        return false;
    }
    let h = req.headers();
    if let Some(origin) = h.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = h
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        return origin == "null" || !origin_host.eq_ignore_ascii_case(host);
    }
    h.get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|s| s == "cross-site")
}

/// A JSON or form body.
async fn body<T: for<'de> Deserialize<'de>>(req: TimedRequest) -> Result<T, Response<Body>> {
    let form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let limited = http_body_util::Limited::new(req.into_body(), MAX_BODY);
    let bytes: Bytes = match limited.collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "the body is unreadable or over 16 KiB" }),
            ));
        }
    };
    let parsed = if form {
        serde_json::to_value(crate::form::parse(&bytes)).and_then(serde_json::from_value)
    } else {
        serde_json::from_slice(&bytes)
    };
    parsed.map_err(|e| {
        reply(
            StatusCode::BAD_REQUEST,
            json!({ "error": format!("invalid body: {e}") }),
        )
    })
}

fn check_email(email: &str) -> Result<(), String> {
    let ok = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(a, d)| !a.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err("an email address like ada@example.com".into())
    }
}

fn check_password(p: &str) -> Result<(), String> {
    match p.chars().count() {
        n if n < 8 => Err("a password is at least 8 characters".into()),
        _ if p.len() > 1024 => Err("a password is at most 1024 bytes".into()),
        _ => Ok(()),
    }
}

fn reply(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let body = http_body_util::Full::new(Bytes::from(value.to_string()))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn store_failed(e: nubo_kv::KvError) -> Response<Body> {
    tracing::error!(error = %e, "the account store failed");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": "the account store failed; try again" }),
    )
}

fn no_randomness() -> Response<Body> {
    tracing::error!("the system gave no randomness: no account or session made");
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({ "error": "the node cannot make a secret now; try again" }),
    )
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
