//! The HTTP listener: connections, graceful shutdown, request dispatch.
//!
//! hyper does the protocol work (HTTP/1.1 and HTTP/2, malformed requests get
//! a 400 from it before Nubo sees them). Nubo adds routing, a request id on
//! every request and response, an access log line, and the mapping from a
//! component's failure to the status a client can act on.

use crate::body::{Body, BoxError, full};
use crate::mounts::Mounts;
use crate::router::Target;
use arc_swap::ArcSwap;
use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use nubo_wasm::HandleError;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Header names the gateway sets on every request, parsed once: a name
/// given as a string is parsed and hashed again at each insert.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const NUBO_BASE_PATH: HeaderName = HeaderName::from_static("nubo-base-path");
const NUBO_MATCHED_ROUTE: HeaderName = HeaderName::from_static("nubo-matched-route");
const NUBO_PATH_INFO: HeaderName = HeaderName::from_static("nubo-path-info");

/// How long in-flight requests may take to finish after shutdown begins.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Routes requests to the current [`Mounts`], which can be replaced while
/// serving (in-flight requests keep the apps they started with).
pub struct Gateway {
    mounts: ArcSwap<Mounts>,
    ids: RequestIds,
}

impl Gateway {
    pub fn new(mounts: Mounts) -> Arc<Self> {
        Arc::new(Self {
            mounts: ArcSwap::from_pointee(mounts),
            ids: RequestIds::new(),
        })
    }

    pub fn mounts(&self) -> Arc<Mounts> {
        self.mounts.load_full()
    }

    /// Replaces the table with `f(current)`; safe against concurrent updates.
    pub fn update(&self, f: impl Fn(&Mounts) -> Mounts) {
        self.mounts.rcu(|m| f(m));
    }

    /// Handles one request; never fails, every problem becomes a response.
    pub async fn handle(&self, req: Request<Incoming>, local: SocketAddr) -> Response<Body> {
        let started = Instant::now();
        let id = self.ids.next();
        let id_header = HeaderValue::from_str(&id).ok();
        let method = req.method().clone();
        // A clone of the URI shares its bytes; the path is kept for the
        // access log after the request has moved on.
        let uri = req.uri().clone();
        let path = uri.path();
        let mounts = self.mounts.load_full();
        let found = {
            let host = req
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| uri.host());
            mounts.find(host, path)
        };
        let Some((mount, app_path)) = found else {
            let mut r = text(StatusCode::NOT_FOUND, format!("no app serves {path}\n"));
            if let Some(v) = id_header {
                r.headers_mut().insert(X_REQUEST_ID, v);
            }
            return r;
        };
        let router = mount.router.clone();
        let base = mount.base.clone();
        let mut response = match router.find(app_path) {
            None => text(StatusCode::NOT_FOUND, format!("no route for {path}\n")),
            Some((_, Target::Stopped(name), _)) => {
                let mut r = text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{name}: component is stopped [request {id}]\n"),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
                r
            }
            Some((_, Target::Queue(q), _)) => publish(q.as_ref(), req).await,
            Some((_, Target::Sse(feed), _)) => crate::sockets::sse(feed.as_ref()),
            Some((_, Target::WebSocket(feed), _)) => crate::sockets::websocket(feed.clone(), req),
            Some((_, Target::Static(dir), rest)) => {
                dir.serve(&method, path, rest, req.headers()).await
            }
            Some((pattern, Target::Component(c), rest)) => {
                let req = prepare(req, local, &base, pattern, rest, id_header.clone());
                match c.handle(req, &id).await {
                    Ok(r) => r.map(|b| b.map_err(|e| Box::new(e) as BoxError).boxed_unsync()),
                    Err(e) => failure(c.name(), &e, &id),
                }
            }
        };
        if let Some(v) = id_header {
            response.headers_mut().insert(X_REQUEST_ID, v);
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
}

/// Gives the request an absolute URI (wasi:http needs an authority) and
/// tells the guest which route matched, like Spin's `spin-path-info`.
fn prepare(
    mut req: Request<Incoming>,
    local: SocketAddr,
    base: &str,
    route: &nubo_manifest::RoutePattern,
    rest: &str,
    id: Option<HeaderValue>,
) -> Request<Incoming> {
    if req.uri().authority().is_none() {
        let authority = req
            .headers()
            .get(header::HOST)
            .and_then(|h| Authority::try_from(h.as_bytes()).ok())
            .or_else(|| Authority::try_from(local.to_string()).ok());
        let mut parts = req.uri().clone().into_parts();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = authority;
        if parts.path_and_query.is_none() {
            parts.path_and_query = Some(PathAndQuery::from_static("/"));
        }
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    let h = req.headers_mut();
    h.remove(NUBO_MATCHED_ROUTE);
    h.remove(NUBO_PATH_INFO);
    h.remove(NUBO_BASE_PATH);
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

async fn publish(q: &dyn crate::router::Publish, req: Request<Incoming>) -> Response<Body> {
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
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {e}\n"),
            );
        }
    };
    match q.publish(body).await {
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
        HandleError::MemoryLimit(_) | HandleError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let summary = match e {
        HandleError::Failed(_) => "component failed (details in the node log)".to_string(),
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

/// Serves until `shutdown` resolves, then stops accepting and waits up to
/// [`SHUTDOWN_GRACE`] for in-flight requests to finish.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let gw = gateway.clone();
        let service = service_fn(move |req| {
            let gw = gw.clone();
            async move { Ok::<_, Infallible>(gw.handle(req, local).await) }
        });
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let conn = graceful.watch(conn.into_owned());
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}");
        }
    }
    Ok(())
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
