//! Routing, JSON and error answers for HTTP handlers.
//!
//! ```ignore
//! use nubo_sdk::{Error, Json, Request, Router, StatusCode, param};
//!
//! fn show(req: Request) -> Result<Json<Product>, Error> {
//!     let id = param(&req, "id").unwrap_or_default();
//!     find(id).map(Json).ok_or_else(|| Error::not_found(format!("no product {id}")))
//! }
//!
//! fn create(req: Request) -> Result<(StatusCode, Json<Product>), Error> {
//!     let Json(new) = Json::<NewProduct>::from_request(&req)?;
//!     Ok((StatusCode::CREATED, Json(save(new)?)))
//! }
//!
//! fn handle(req: Request) -> nubo_sdk::Response {
//!     Router::new()
//!         .get("/products/:id", show)
//!         .post("/products", create)
//!         .handle(req)
//! }
//!
//! nubo_sdk::http_handler!(handle);
//! ```
//!
//! A path matches when every segment does: a literal segment itself,
//! `:name` any one segment (its value, percent-decoded, is
//! [`param`]`(&req, "name")`), and a last `*name` the rest of the path. A
//! trailing `/` is ignored. A path that matches with another method gets
//! `405` with `Allow`; no match gets `404`; `HEAD` is served by `GET`.

use crate::{IntoResponse, Request, Response};
use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

type Handler = Box<dyn Fn(Request) -> Response>;

/// Handlers by method and path pattern, tried in the order they were
/// added.
#[derive(Default)]
pub struct Router {
    routes: Vec<(Method, Vec<Segment>, Handler)>,
}

enum Segment {
    Literal(String),
    Param(String),
    Rest(String),
}

/// The values of a matched route's `:name` and `*name` segments, kept in
/// the request's extensions.
#[derive(Clone, Debug, Default)]
struct Params(Vec<(String, String)>);

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `method` requests whose path matches `pattern` to `handler`.
    pub fn route<R: IntoResponse>(
        mut self,
        method: Method,
        pattern: &str,
        handler: impl Fn(Request) -> R + 'static,
    ) -> Self {
        let segments = segments(pattern)
            .map(|s| {
                if let Some(name) = s.strip_prefix(':') {
                    Segment::Param(name.to_string())
                } else if let Some(name) = s.strip_prefix('*') {
                    Segment::Rest(name.to_string())
                } else {
                    Segment::Literal(s.to_string())
                }
            })
            .collect();
        let handler: Handler = Box::new(move |req| handler(req).into_response());
        self.routes.push((method, segments, handler));
        self
    }

    pub fn get<R: IntoResponse>(self, p: &str, h: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::GET, p, h)
    }

    pub fn post<R: IntoResponse>(self, p: &str, h: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::POST, p, h)
    }

    pub fn put<R: IntoResponse>(self, p: &str, h: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::PUT, p, h)
    }

    pub fn patch<R: IntoResponse>(self, p: &str, h: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::PATCH, p, h)
    }

    pub fn delete<R: IntoResponse>(self, p: &str, h: impl Fn(Request) -> R + 'static) -> Self {
        self.route(Method::DELETE, p, h)
    }

    /// Answers `req` with the first route that matches it.
    pub fn handle(&self, mut req: Request) -> Response {
        let path = req.uri().path().to_string();
        let mut allowed: Vec<&str> = Vec::new();
        for (method, pattern, handler) in &self.routes {
            let Some(params) = matches(pattern, &path) else {
                continue;
            };
            let head_as_get = req.method() == Method::HEAD && method == Method::GET;
            if method == req.method() || head_as_get {
                req.extensions_mut().insert(params);
                return handler(req);
            }
            allowed.push(method.as_str());
        }
        if allowed.is_empty() {
            return Error::not_found(format!("no route for {path}")).into_response();
        }
        allowed.dedup();
        let mut r = Error::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        )
        .into_response();
        if let Ok(v) = http::HeaderValue::from_str(&allowed.join(", ")) {
            r.headers_mut().insert(http::header::ALLOW, v);
        }
        r
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

fn matches(pattern: &[Segment], path: &str) -> Option<Params> {
    let mut params = Vec::new();
    let mut parts = segments(path);
    for (i, seg) in pattern.iter().enumerate() {
        match seg {
            Segment::Rest(name) if i + 1 == pattern.len() => {
                let rest: Vec<&str> = parts.by_ref().collect();
                params.push((name.clone(), decode(&rest.join("/"))));
            }
            Segment::Literal(l) => (parts.next()? == l).then_some(())?,
            Segment::Param(name) | Segment::Rest(name) => {
                params.push((name.clone(), decode(parts.next()?)));
            }
        }
    }
    parts.next().is_none().then_some(Params(params))
}

/// `%XX` escapes decoded; text that would not be UTF-8 is kept as sent.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let v = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(v as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// The value of the matched route's `:name` (or `*name`) segment.
pub fn param<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    let params = req.extensions().get::<Params>()?;
    params
        .0
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The first value of `name` in the request's query string (`?q=a+b`
/// gives `"a b"`), decoded; `None` when it is absent.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(&k.replace('+', " ")) == name).then(|| decode(&v.replace('+', " ")))
    })
}

/// A JSON body: as an answer, `200` with `application/json`; from a
/// request, [`Json::from_request`].
pub struct Json<T>(pub T);

impl<T: DeserializeOwned> Json<T> {
    /// The request's body as a `T`, or a `400` that says why not.
    pub fn from_request(req: &Request) -> Result<Self, Error> {
        serde_json::from_slice(req.body())
            .map(Json)
            .map_err(|e| Error::bad_request(format!("invalid JSON body: {e}")))
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec_pretty(&self.0) {
            Ok(body) => crate::response(200, "application/json", body),
            Err(e) => Error::from(format!("cannot write the answer as JSON: {e}")).into_response(),
        }
    }
}

/// Any answer with its status set: `(StatusCode::CREATED, Json(link))`.
impl<R: IntoResponse> IntoResponse for (StatusCode, R) {
    fn into_response(self) -> Response {
        let mut r = self.1.into_response();
        *r.status_mut() = self.0;
        r
    }
}

/// An answer that went wrong: a status and a message, sent as JSON
/// `{"error": "…"}`. Any error converts into it with `?` as a `500`,
/// whose message is also written to stderr (Nubo logs it with the
/// request id).
///
/// It does not implement `Display` on purpose, so that `From` can take
/// every error that does.
#[derive(Debug)]
pub struct Error {
    status: StatusCode,
    message: String,
}

impl Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// `400`: the request is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// `404`: nothing is there.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl<E: std::fmt::Display> From<E> for Error {
    fn from(e: E) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            eprintln!("handler error: {}", self.message);
        }
        let body = serde_json::json!({ "error": self.message }).to_string();
        let mut r = crate::response(self.status.as_u16(), "application/json", body.into_bytes());
        *r.status_mut() = self.status;
        r
    }
}

impl<T: IntoResponse> IntoResponse for Result<T, Error> {
    fn into_response(self) -> Response {
        match self {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

/// A `302 Found` to `location`.
pub fn redirect(location: &str) -> Response {
    let mut r = crate::text(302, format!("→ {location}\n"));
    if let Ok(v) = http::HeaderValue::from_str(location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method, path: &str) -> Request {
        let mut r = http::Request::new(Vec::new());
        *r.method_mut() = method;
        *r.uri_mut() = path.parse().unwrap_or_default();
        r
    }

    fn show(req: Request) -> String {
        format!(
            "{} {}",
            param(&req, "code").unwrap_or("-"),
            param(&req, "rest").unwrap_or("-")
        )
    }

    fn router() -> Router {
        Router::new()
            .get("/links/:code", show)
            .post("/links", |_| (StatusCode::CREATED, "made"))
            .get("/files/*rest", show)
            .get("/", |_| "root")
    }

    #[test]
    fn query_values_are_decoded() {
        let r = req(Method::GET, "/s?q=rust+wasm&tag=a%26b&empty&q=second");
        assert_eq!(query(&r, "q").as_deref(), Some("rust wasm"));
        assert_eq!(query(&r, "tag").as_deref(), Some("a&b"));
        assert_eq!(query(&r, "empty").as_deref(), Some(""));
        assert_eq!(query(&r, "none"), None);
    }

    fn call(method: Method, path: &str) -> (u16, String) {
        let r = router().handle(req(method, path));
        (
            r.status().as_u16(),
            String::from_utf8_lossy(r.body()).into(),
        )
    }

    #[test]
    fn routes_match_by_segment_and_method() {
        assert_eq!(call(Method::GET, "/links/k3"), (200, "k3 -".into()));
        assert_eq!(call(Method::GET, "/links/a%20b/"), (200, "a b -".into()));
        assert_eq!(call(Method::HEAD, "/links/k3").0, 200);
        assert_eq!(call(Method::POST, "/links"), (201, "made".into()));
        assert_eq!(
            call(Method::GET, "/files/a/b.txt"),
            (200, "- a/b.txt".into())
        );
        assert_eq!(call(Method::GET, "/"), (200, "root".into()));
        assert_eq!(call(Method::GET, "/links/k3/more").0, 404);
        let r = router().handle(req(Method::DELETE, "/links"));
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[http::header::ALLOW], "POST");
    }

    #[test]
    fn errors_answer_json_with_their_status() {
        let failing = |_: Request| -> Result<Json<u32>, Error> { Err(Error::from("disk full")) };
        let r = Router::new()
            .get("/", failing)
            .handle(req(Method::GET, "/"));
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(r.body(), br#"{"error":"disk full"}"#);
        let mut bad = req(Method::POST, "/");
        *bad.body_mut() = b"{".to_vec();
        let e = Json::<u32>::from_request(&bad).err().map(|e| e.status());
        assert_eq!(e, Some(StatusCode::BAD_REQUEST));
    }
}
