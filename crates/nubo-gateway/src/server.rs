//! The HTTP listener: connections, graceful shutdown, request dispatch.
//!
//! hyper does the protocol work (HTTP/1.1 and HTTP/2, malformed requests get
//! a 400 from it before Nubo sees them). Nubo adds routing, a request id on
//! every request and response, an access log line, and the mapping from a
//! component's failure to the status a client can act on.

use crate::body::{Body, BoxError, full};
use crate::client::TrustedProxies;
use crate::cors::CorsPolicies;
use crate::edge;
use crate::guard::Guards;
use crate::limits::{Limits, Verdict};
use crate::listener::{ConnLimits, TimedRequest, serve_connections};
use crate::mounts::Mounts;
use crate::router::{Route, Router, Target};
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Method, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use nubo_wasm::HandleError;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;
use tokio::net::TcpListener;

/// Header names the gateway sets on every request, parsed once: a name
/// given as a string is parsed and hashed again at each insert.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const NUBO_BASE_PATH: HeaderName = HeaderName::from_static("nubo-base-path");
const NUBO_MATCHED_ROUTE: HeaderName = HeaderName::from_static("nubo-matched-route");
const NUBO_PATH_INFO: HeaderName = HeaderName::from_static("nubo-path-info");

/// Routes requests to the current [`Mounts`], which can be replaced while
/// serving (in-flight requests keep the apps they started with).
pub struct Gateway {
    mounts: ArcSwap<Mounts>,
    ids: RequestIds,
    /// False while the node is still loading the apps it should serve: a
    /// request no loaded app answers then gets `503`, not a final `404`.
    ready: AtomicBool,
    /// Each app's sign-in, if the node has it.
    guards: std::sync::OnceLock<Arc<dyn Guards>>,
    /// Each app's rate limits, if the node has them.
    limits: std::sync::OnceLock<Arc<dyn Limits>>,
    /// Whose `X-Forwarded-For` is believed.
    proxies: std::sync::OnceLock<TrustedProxies>,
    /// Each app's cross-origin rules, if the node has them.
    cors: std::sync::OnceLock<Arc<dyn CorsPolicies>>,
    /// Where requests are counted, if the node counts them.
    meter: std::sync::OnceLock<Arc<nubo_wasm::Meter>>,
    /// Which apps are closed now, if anything can close one.
    gates: std::sync::OnceLock<Arc<dyn crate::Gates>>,
    /// Where requests are counted for `/metrics` ([`crate::metrics`]).
    pub(crate) metrics: std::sync::OnceLock<crate::metrics::HttpMetrics>,
    /// WebSocket connections open now.
    pub(crate) sockets: Arc<std::sync::atomic::AtomicUsize>,
}

impl Gateway {
    /// A gateway that serves `mounts` and is ready.
    pub fn new(mounts: Mounts) -> Arc<Self> {
        Arc::new(Self {
            mounts: ArcSwap::from_pointee(mounts),
            ids: RequestIds::new(),
            ready: AtomicBool::new(true),
            guards: std::sync::OnceLock::new(),
            limits: std::sync::OnceLock::new(),
            proxies: std::sync::OnceLock::new(),
            cors: std::sync::OnceLock::new(),
            meter: std::sync::OnceLock::new(),
            gates: std::sync::OnceLock::new(),
            metrics: std::sync::OnceLock::new(),
            sockets: Arc::default(),
        })
    }

    /// Whether every app the node should serve is loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the node as loaded (or, with `false`, as still starting).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn mounts(&self) -> Arc<Mounts> {
        self.mounts.load_full()
    }

    /// Replaces the table with `f(current)`; safe against concurrent updates.
    pub fn update(&self, f: impl Fn(&Mounts) -> Mounts) {
        self.mounts.rcu(|m| f(m));
    }

    /// Handles one request; never fails, every problem becomes a response.
    pub async fn handle(&self, mut req: TimedRequest, local: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let id = self.ids.next();
        let id_header = HeaderValue::from_str(&id).ok();
        edge::strip_reserved(req.headers_mut());
        let method = req.method().clone();
        // A clone of the URI shares its bytes; the path is kept for the
        // access log after the request has moved on.
        let uri = req.uri().clone();
        let path = uri.path();
        let mounts = self.mounts.load_full();
        let found = match edge::authority(&req) {
            Some(a) if edge::is_internal(a) => Err(text(
                StatusCode::BAD_REQUEST,
                format!(
                    "{} is the node's own domain: no client request may use it\n",
                    edge::INTERNAL_DOMAIN
                ),
            )),
            host => mounts.find(host, path).ok_or_else(|| self.unrouted(path)),
        };
        let (mount, app_path) = match found {
            Ok(found) => found,
            Err(mut r) => {
                if let Some(v) = id_header {
                    r.headers_mut().insert(X_REQUEST_ID, v);
                }
                return r;
            }
        };
        let router = mount.router.clone();
        let base = mount.base.clone();
        let cors = self.cors.get().and_then(|c| c.cors(router.app()));
        let mut cors_headers = Vec::new();
        if let Some(c) = &cors {
            if let Some(answer) = c.preflight(&req) {
                return self.finish(
                    answer, id_header, &router, &method, path, started, &id, None,
                );
            }
            cors_headers = c.headers(req.headers());
            if c.credentialed(req.headers()) {
                req.extensions_mut().insert(crate::CredentialedOrigin);
            }
        }
        if let Some(mut closed) = self.gates.get().and_then(|g| g.closed(router.app())) {
            closed.headers_mut().extend(cors_headers);
            return self.finish(
                closed, id_header, &router, &method, path, started, &id, None,
            );
        }
        let guard = self.guards.get().and_then(|g| g.guard(router.app()));
        let client = req.extensions().get::<crate::Peer>().map(|p| {
            let peer = p.0.ip();
            match self.proxies.get() {
                Some(t) => t.client(peer, req.headers()),
                None => peer,
            }
        });
        let req = match &guard {
            Some(g) => match g.serve(req, app_path, client).await {
                Ok(mut answered) => {
                    answered.headers_mut().extend(cors_headers);
                    return self.finish(
                        answered, id_header, &router, &method, path, started, &id, None,
                    );
                }
                Err(req) => req,
            },
            None => req,
        };
        let mut routed = None;
        let response = match router.find(app_path) {
            None => text(StatusCode::NOT_FOUND, format!("no route for {path}\n")),
            Some((route, rest)) => {
                routed = Some((route, None));
                let admitted = match crate::guard::admit(guard.as_ref(), &route.access, req).await {
                    Ok((req, user)) => {
                        routed = Some((route, user));
                        self.limit(router.app(), route, req, client).await
                    }
                    Err(refused) => Err(refused),
                };
                match admitted {
                    Err(refused) => refused,
                    Ok((mut req, headers)) => {
                        if let (Target::WebSocket(_), Some(meter), Some((_, user))) =
                            (&route.target, self.meter.get(), &routed)
                        {
                            req.extensions_mut().insert(crate::usage::SocketUsage {
                                meter: meter.clone(),
                                dims: nubo_wasm::Dims {
                                    app: router.app_name().clone(),
                                    component: route.component.clone(),
                                    route: route.label.clone(),
                                    user: user.clone().unwrap_or_else(|| Arc::from("")),
                                },
                            });
                        }
                        let mut r = self
                            .dispatch(
                                route,
                                rest,
                                req,
                                local,
                                &base,
                                &method,
                                path,
                                id_header.clone(),
                                &id,
                            )
                            .await;
                        r.headers_mut().extend(headers);
                        r
                    }
                }
            }
        };
        let mut response = response;
        response.headers_mut().extend(cors_headers);
        self.finish(
            response, id_header, &router, &method, path, started, &id, routed,
        )
    }

    /// Tags the answer with the request id, logs it, and counts it under
    /// the route it went to and who it was from, if it got that far.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        mut response: Response<Body>,
        id_header: Option<HeaderValue>,
        router: &Router,
        method: &Method,
        path: &str,
        started: Instant,
        id: &str,
        routed: Option<(&Route, Option<Arc<str>>)>,
    ) -> Response<Body> {
        if let Some(v) = id_header {
            response.headers_mut().insert(X_REQUEST_ID, v);
        }
        self.observe(router, routed.as_ref().map(|(r, _)| *r), &response, started);
        if let Some(meter) = self.meter.get() {
            let empty = || Arc::<str>::from("");
            let dims = nubo_wasm::Dims {
                app: router.app_name().clone(),
                route: routed.as_ref().map_or_else(empty, |(r, _)| r.label.clone()),
                component: routed
                    .as_ref()
                    .map_or_else(empty, |(r, _)| r.component.clone()),
                user: routed.and_then(|(_, u)| u).unwrap_or_else(empty),
            };
            response = crate::usage::count(meter, dims, response);
        }
        tracing::info!(
            target: "nubo::http",
            app = router.app(), request_id = %id,
            "{method} {path} {} {:.1}ms",
            response.status().as_u16(),
            started.elapsed().as_secs_f64() * 1000.0
        );
        response
    }

    /// The answer of the route's target.
    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        route: &Route,
        rest: &str,
        req: TimedRequest,
        local: SocketAddr,
        base: &str,
        method: &Method,
        path: &str,
        id_header: Option<HeaderValue>,
        id: &str,
    ) -> Response<Body> {
        match &route.target {
            Target::Stopped(name) => {
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{name}: component is stopped [request {id}]\n"),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
            Target::Queue(q) => publish(q.as_ref(), req).await,
            Target::Sse(feed) => crate::sockets::sse(feed.as_ref()),
            Target::WebSocket(feed) => {
                crate::sockets::websocket(feed.clone(), req, self.sockets.clone())
            }
            Target::Static(dir) => dir.serve(method, path, rest, req.headers()).await,
            Target::Component(c) => {
                let req = prepare(req, local, base, &route.pattern, rest, id_header);
                match c.handle(req, id).await {
                    Ok(r) => r.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()),
                    Err(e) => failure(c.name(), &e, id),
                }
            }
        }
    }

    /// Gives the gateway each app's sign-in; set once, when the node opens
    /// its capabilities.
    pub fn set_guards(&self, guards: Arc<dyn Guards>) {
        let _ = self.guards.set(guards);
    }

    /// Gives the gateway each app's cross-origin rules; set once.
    pub fn set_cors(&self, cors: Arc<dyn CorsPolicies>) {
        let _ = self.cors.set(cors);
    }

    /// Gives the gateway what can close an app; set once.
    pub fn set_gates(&self, gates: Arc<dyn crate::Gates>) {
        let _ = self.gates.set(gates);
    }

    /// Gives the gateway where to count each app's requests; set once.
    pub fn set_meter(&self, meter: Arc<nubo_wasm::Meter>) {
        let _ = self.meter.set(meter);
    }

    /// Gives the gateway each app's rate limits; set once.
    pub fn set_limits(&self, limits: Arc<dyn Limits>) {
        let _ = self.limits.set(limits);
    }

    /// Sets whose `X-Forwarded-For` names the client; set once.
    pub fn set_trusted_proxies(&self, proxies: TrustedProxies) {
        let _ = self.proxies.set(proxies);
    }

    /// Holds an admitted request to its app's rate limits: the request,
    /// with the headers its answer carries, or the refusal.
    async fn limit(
        &self,
        app: &str,
        route: &Route,
        req: TimedRequest,
        client: Option<std::net::IpAddr>,
    ) -> Result<(TimedRequest, Vec<(HeaderName, HeaderValue)>), Response<Body>> {
        let Some(limit) = self.limits.get().and_then(|l| l.limit(app)) else {
            return Ok((req, Vec::new()));
        };
        match limit.check(&route.pattern, &req, client).await {
            Verdict::Pass(headers) => Ok((req, headers)),
            Verdict::Refuse(r) => Err(r),
        }
    }
}

impl Gateway {
    /// The answer to a request no loaded app serves: final once the node
    /// is ready, "try again" while it is still loading its apps.
    fn unrouted(&self, path: &str) -> Response<Body> {
        if self.is_ready() {
            return text(StatusCode::NOT_FOUND, format!("no app serves {path}\n"));
        }
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the node is starting: its apps are still loading\n".into(),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        r
    }
}

/// Gives the request an absolute URI (wasi:http needs an authority) and
/// tells the guest which route matched, like Spin's `spin-path-info`.
fn prepare(
    mut req: TimedRequest,
    local: SocketAddr,
    base: &str,
    route: &nubo_manifest::RoutePattern,
    rest: &str,
    id: Option<HeaderValue>,
) -> TimedRequest {
    // The scheme is how the client connected, whatever its request says.
    let scheme = if req.extensions().get::<crate::OverTls>().is_some() {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    if req.uri().authority().is_none() || req.uri().scheme() != Some(&scheme) {
        let authority = req.uri().authority().cloned().or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                .or_else(|| Authority::try_from(local.to_string()).ok())
        });
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(scheme);
        parts.authority = authority;
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    // Every client `nubo-` header is gone already ([`edge`]).
    let h = req.headers_mut();
    if let Ok(v) = HeaderValue::from_str(base) {
        h.insert(NUBO_BASE_PATH, v);
    }
    if let Ok(v) = HeaderValue::from_str(&route.to_string()) {
        h.insert(NUBO_MATCHED_ROUTE, v);
    }
    if let Ok(v) = HeaderValue::from_str(rest) {
        h.insert(NUBO_PATH_INFO, v);
    }
    // The guest sees the id its log lines are tagged with.
    if let Some(v) = id {
        h.insert(X_REQUEST_ID, v);
    }
    req
}

/// Largest body a queue route accepts, as for `publish` from a guest.
const MAX_MESSAGE: usize = 1 << 20;

async fn publish(q: &dyn crate::router::Publish, req: TimedRequest) -> Response<Body> {
    if req.method() != http::Method::POST && req.method() != http::Method::PUT {
        let mut r = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "this route publishes to queue `{}`: send POST or PUT\n",
                q.queue()
            ),
        );
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, PUT"));
        return r;
    }
    let by = nubo_wasm::principal::of_request(&req);
    let body = match http_body_util::Limited::new(req.into_body(), MAX_MESSAGE)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a message may be at most {MAX_MESSAGE} bytes\n"),
            );
        }
        Err(e)
            if matches!(
                e.downcast_ref::<crate::listener::BodyError>(),
                Some(crate::listener::BodyError::TooSlow(_))
            ) =>
        {
            return text(StatusCode::REQUEST_TIMEOUT, format!("{e}\n"));
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n"),
            );
        }
    };
    match q.publish(body, by.as_deref().cloned()).await {
        Ok(id) => {
            let mut r = Response::new(full(Bytes::from(format!(
                "{{\"queue\":\"{}\",\"id\":{id}}}\n",
                q.queue()
            ))));
            *r.status_mut() = StatusCode::ACCEPTED;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r
        }
        Err(crate::router::PublishError::Full(e)) => {
            tracing::warn!(queue = q.queue(), "publish from a route refused: {e}");
            text(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("cannot publish: {e}\n"),
            )
        }
        Err(e) => {
            tracing::error!(queue = q.queue(), "publish from a route failed: {e}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot publish: {e}\n"),
            )
        }
    }
}

fn failure(component: &str, e: &HandleError, id: &str) -> Response<Body> {
    let status = match e {
        HandleError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        HandleError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        HandleError::MemoryLimit(_)
        | HandleError::CpuLimit(_)
        | HandleError::Trapped(_)
        | HandleError::GuestError(_)
        | HandleError::Host(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let summary = match e {
        HandleError::Trapped(_) | HandleError::GuestError(_) | HandleError::Host(_) => {
            "component failed (details in the node log)".to_string()
        }
        other => other.to_string(),
    };
    let mut r = text(status, format!("{component}: {summary} [request {id}]\n"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

pub(crate) fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(full(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves apps on `listener` until `shutdown` resolves, then stops
/// accepting and waits up to [`crate::SHUTDOWN_GRACE`] for in-flight requests.
/// With `tls`, over TLS only.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    limits: ConnLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let service = move |req: TimedRequest| {
        let gw = gateway.clone();
        async move { gw.handle(req, local).await }
    };
    serve_connections(listener, limits, tls, service, shutdown).await
}

/// Request ids: unique per node run, short enough to read in a log.
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        Self {
            prefix: h.finish() as u32,
            next: AtomicU64::new(1),
        }
    }

    fn next(&self) -> String {
        format!(
            "{:08x}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}
